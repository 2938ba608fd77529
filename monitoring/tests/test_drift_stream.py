"""DriftStream (monitoring/drift.py): a batch fed in chunks gets exactly drift_report's figures
(no Django)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitoring import drift

N = 30_000  # above drift._KS_EXACT_MAX_N: KS takes the asymptotic path
FEATURES = ["normal", "ties", "heavy", "with_nan", "region", "member", "empty", "absent", "unknown"]


def make_frame(n: int, seed: int, shift: float = 0.0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    with_nan = rng.normal(5 + shift, 1, n)
    with_nan[rng.random(n) < 0.05] = np.nan
    with_nan[rng.random(n) < 0.01] = np.inf
    with_nan[rng.random(n) < 0.01] = -np.inf
    regions = ["north", "south", "east", "west"] + (["mars", "venus"] if shift else [])
    region = rng.choice(regions, n).astype(object)
    region[rng.random(n) < 0.03] = None
    return pd.DataFrame(
        {
            "normal": rng.normal(10 + shift, 2, n),
            "ties": rng.poisson(3 + shift, n).astype("int64"),
            "heavy": rng.standard_cauchy(n) * (1 + shift),  # the grid gives up: chunks are sorted
            "with_nan": with_nan,
            "region": region,
            "member": rng.random(n) < 0.3 + shift / 10,
            "empty": np.full(n, np.nan),
        }
    )


@pytest.fixture(scope="module")
def profile():
    ref = make_frame(20_000, seed=1)
    values = np.random.default_rng(2).normal(size=len(ref))
    ref["empty"] = values  # the profile has values, the current batch none
    ref["absent"] = values  # in the profile, not in the current batch
    return drift.build_profile(
        ref, FEATURES[:-1], prediction=ref["normal"].to_numpy() * 2, sample_size=3000, seed=4
    )


def split(frame: pd.DataFrame, parts: int, seed: int = 0) -> list[pd.DataFrame]:
    """Row slices of uneven sizes (some tiny), in order."""
    if parts == 1:
        return [frame]
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(frame)), parts - 1, replace=False))
    return [frame.iloc[a:b] for a, b in zip([0, *cuts], [*cuts, len(frame)], strict=True)]


def assert_same_report(got: dict, expected: dict) -> None:
    """Equal, floats within 1e-12 (in practice identical)."""
    json.dumps(got, allow_nan=False)  # plain JSON, as snapshots store it
    assert got.keys() == expected.keys()
    for key in expected:
        if key in ("features",):
            assert got[key].keys() == expected[key].keys()
            for name in expected[key]:
                assert_same_entry(got[key][name], expected[key][name], name)
        elif key == "prediction":
            assert_same_entry(got[key], expected[key], key)
        elif isinstance(expected[key], float):
            assert got[key] == pytest.approx(expected[key], abs=1e-12, rel=0)
        else:
            assert got[key] == expected[key], key


def assert_same_entry(got: dict, expected: dict, name: str) -> None:
    assert got.keys() == expected.keys(), name
    for k, v in expected.items():
        if isinstance(v, float):
            assert math.isclose(got[k], v, rel_tol=0, abs_tol=1e-12), (name, k, got[k], v)
        else:
            assert got[k] == v, (name, k)


@pytest.mark.parametrize("method", ["PSI", "KS"])
@pytest.mark.parametrize("parts", [1, 3, 17])
def test_chunks_give_exactly_drift_reports_figures(profile, method, parts):
    current = make_frame(N, seed=7, shift=0.3)
    prediction = current["normal"].to_numpy() * 2.1
    expected = drift.drift_report(
        profile, current, method=method, threshold=0.1, features=FEATURES, prediction=prediction
    )
    stream = drift.DriftStream(profile, method=method, threshold=0.1, features=FEATURES)
    for chunk in split(current, parts, seed=parts):
        stream.add(chunk)
    got = stream.report(prediction)
    assert_same_report(got, expected)
    assert stream.rows == N
    f = got["features"]
    # The entries take every path: the KS statistic on the asymptotic path, errors named.
    assert f["absent"]["error"] == "missing column" and f["unknown"]["error"] == "not in profile"
    assert f["empty"]["error"] == "no non-null values"
    assert f["region"]["kind"] == "categorical" and f["region"]["psi"] > 0.2  # unseen categories
    assert f["with_nan"]["n_cur"] == int(np.isfinite(current["with_nan"]).sum())
    metric = "ks" if method == "KS" else "psi"
    assert all(f[name][metric] is not None for name in ("normal", "ties", "heavy", "with_nan"))
    if method == "KS":
        for name in ("normal", "ties", "heavy", "with_nan"):
            x = current[name].to_numpy(dtype=float)
            scipy = stats.ks_2samp(profile["features"][name]["sample"], x[np.isfinite(x)])
            assert f[name]["ks"] == pytest.approx(scipy.statistic, abs=1e-12)
            assert f[name]["p_value"] == pytest.approx(scipy.pvalue, abs=1e-9)


@pytest.mark.parametrize("n, parts", [(6_000, 5), (12_000, 17), (10_000, 3)])
def test_ks_small_batches_take_scipys_exact_test_across_chunks(profile, n, parts):
    """Up to 10,000 values scipy's exact p-value is used: the chunks keep their values until
    the total passes that, then switch to counts (12,000 crosses it mid-stream)."""
    current = make_frame(n, seed=n, shift=0.1)
    expected = drift.drift_report(profile, current, method="KS", threshold=0.1, features=FEATURES)
    stream = drift.DriftStream(profile, method="KS", threshold=0.1, features=FEATURES)
    for chunk in split(current, parts, seed=n):
        stream.add(chunk)
    assert_same_report(stream.report(), expected)
    x = current["normal"].to_numpy()
    exact = stats.ks_2samp(profile["features"]["normal"]["sample"], x)
    assert stream.report()["features"]["normal"]["p_value"] == pytest.approx(exact.pvalue, abs=1e-12)


def test_threads_and_column_subset_change_nothing(profile):
    current = make_frame(N, seed=9, shift=0.2)
    expected = drift.drift_report(profile, current, method="KS", threshold=0.1, features=FEATURES)
    stream = drift.DriftStream(profile, method="KS", threshold=0.1, features=FEATURES, workers=2)
    needed = stream.columns(current.columns)
    # only the profile's features that the table has: not "unknown" (no profile) nor "absent"
    assert needed == ["normal", "ties", "heavy", "with_nan", "region", "member", "empty"]
    for chunk in split(current[needed], 4):
        stream.add(chunk)
    assert_same_report(stream.report(), expected)


def test_a_stream_is_not_fooled_by_chunks_counted_twice_or_dropped(profile):
    """The equality above is not vacuous: feeding a chunk twice, or leaving one out, moves
    the figures."""
    current = make_frame(N, seed=11, shift=0.3)
    chunks = split(current, 3, seed=1)
    expected = drift.drift_report(profile, current, method="PSI", threshold=0.1, features=FEATURES)
    twice = drift.DriftStream(profile, method="PSI", threshold=0.1, features=FEATURES)
    for chunk in [*chunks, chunks[0]]:
        twice.add(chunk)
    dropped = drift.DriftStream(profile, method="PSI", threshold=0.1, features=FEATURES)
    dropped.add(chunks[0])
    for stream in (twice, dropped):
        report = stream.report()
        assert report["features"]["normal"]["n_cur"] != expected["features"]["normal"]["n_cur"]
        assert report["features"]["normal"]["psi"] != expected["features"]["normal"]["psi"]


def test_nothing_added_and_all_null_chunks(profile):
    stream = drift.DriftStream(profile, method="PSI", features=["normal", "region"])
    report = stream.report()
    assert [e["error"] for e in report["features"].values()] == ["missing column", "missing column"]
    assert report["max_psi"] is None and report["drifted_count"] == 0
    # Every chunk null: the same error as a whole batch of nulls.
    nulls = pd.DataFrame({"normal": [np.nan] * 5, "region": [None] * 5})
    for _ in range(3):
        stream.add(nulls)
    features = stream.report()["features"]
    assert features["normal"]["error"] == features["region"]["error"] == "no non-null values"
    assert drift.drift_report(profile, pd.concat([nulls] * 3), features=["normal", "region"])["features"] == (
        features
    )
    with pytest.raises(ValueError, match="method"):
        drift.DriftStream(profile, method="chi2")


def test_a_categorical_dtype_whose_chunks_hold_different_categories(profile):
    """Parquet row groups read as pandas categoricals carry their own category lists; the counts
    are by the values' str form, so it does not matter."""
    current = make_frame(3_000, seed=5, shift=0.3)
    current["region"] = current["region"].astype("category")
    expected = drift.drift_report(profile, current, features=["region"])
    stream = drift.DriftStream(profile, features=["region"])
    for chunk in split(current, 3):
        chunk = chunk.copy()
        chunk["region"] = chunk["region"].cat.remove_unused_categories()
        stream.add(chunk)
    assert_same_report(stream.report(), expected)


def test_ks_keeps_at_most_the_exact_tests_values_in_memory(profile):
    """Memory is bounded by the counts, not the rows: past 10,000 values a KS feature keeps no
    values at all (only its counts at the sample's points)."""
    stream = drift.DriftStream(profile, method="KS", features=["normal"])
    acc = stream._features["normal"].acc
    for i in range(40):
        stream.add(make_frame(1_000, seed=100 + i)[["normal"]])
        kept = 0 if acc.buffer is None else sum(part.size for part in acc.buffer)
        assert kept <= drift._KS_EXACT_MAX_N
        assert (acc.buffer is None) == (stream.rows > drift._KS_EXACT_MAX_N)
    assert stream.report()["features"]["normal"]["n_cur"] == 40_000
