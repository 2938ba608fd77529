"""Tests of monitoring/drift.py on small data (no Django)."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from monitoring import drift


def reference_psi(ref_shares, cur_shares, eps=1e-4):
    """Textbook PSI, one bin at a time."""
    total = 0.0
    for r, c in zip(ref_shares, cur_shares, strict=True):
        r = eps if r <= 0 else r
        c = eps if c <= 0 else c
        total += (c - r) * math.log(c / r)
    return total


def reference_bin_shares(values, inner_edges):
    """Shares of values in right-closed bins (-inf, e1], (e1, e2], ..., (ek, inf), by loops."""
    counts = [0] * (len(inner_edges) + 1)
    n = 0
    for v in values:
        if v is None or not math.isfinite(v):
            continue
        n += 1
        b = 0
        while b < len(inner_edges) and v > inner_edges[b]:
            b += 1
        counts[b] += 1
    return [c / n for c in counts]


def make_frame(n, seed=0, shift=0.0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "price": rng.normal(10 + shift, 2, n),
            "qty": rng.poisson(3, n).astype("int64"),
            "visits": rng.exponential(5, n),
            "region": rng.choice(["north", "south", "east", "west"], n, p=[0.4, 0.3, 0.2, 0.1]),
            "member": rng.random(n) < 0.3,
        }
    )


FEATURES = ["price", "qty", "visits", "region", "member"]


@pytest.fixture(scope="module")
def ref():
    return make_frame(4000, seed=1)


@pytest.fixture(scope="module")
def profile(ref):
    return drift.build_profile(ref, FEATURES, prediction=ref["price"].to_numpy() * 0.5, sample_size=1000)


# ---------------------------------------------------------------------------- psi


def test_psi_matches_reference_implementation():
    ref = [0.1, 0.2, 0.3, 0.4, 0.0]
    cur = [0.15, 0.15, 0.25, 0.3, 0.15]
    assert drift.psi(ref, cur) == pytest.approx(reference_psi(ref, cur), abs=1e-12)
    assert drift.psi(ref, ref) == 0.0
    with pytest.raises(ValueError):
        drift.psi([0.5, 0.5], [1.0])


def test_numeric_psi_matches_loops(ref, profile):
    cur = make_frame(1500, seed=7, shift=0.8)
    for name in ["price", "qty", "visits"]:
        entry = profile["features"][name]
        inner = [float(e) for e in entry["edges"][1:-1]]
        assert entry["edges"][0] == "-inf" and entry["edges"][-1] == "inf"
        # reference shares stored in the profile are the loop shares of the reference data
        assert entry["shares"] == pytest.approx(reference_bin_shares(ref[name].tolist(), inner), abs=1e-12)
        expected = reference_psi(entry["shares"], reference_bin_shares(cur[name].tolist(), inner))
        value, n_cur = drift.numeric_psi(entry, cur[name])
        assert value == pytest.approx(expected, abs=1e-12)
        assert n_cur == 1500


def test_numeric_bins_are_deciles_and_deduplicated_for_discrete_data(profile):
    price = profile["features"]["price"]
    assert len(price["edges"]) == 11  # 9 inner deciles + the two open ends
    assert all(s == pytest.approx(0.1, abs=0.002) for s in price["shares"])
    qty = profile["features"]["qty"]  # Poisson(3): few distinct values, so fewer bins
    inner = qty["edges"][1:-1]
    assert len(inner) == len(set(inner)) < 9
    assert sum(qty["shares"]) == pytest.approx(1.0)


def test_numeric_psi_ignores_nulls(profile):
    entry = profile["features"]["price"]
    values = pd.Series([9.0, 10.0, np.nan, 11.0, None, np.inf, 12.0])
    value, n_cur = drift.numeric_psi(entry, values)
    inner = [float(e) for e in entry["edges"][1:-1]]
    assert n_cur == 4
    assert value == pytest.approx(
        reference_psi(entry["shares"], reference_bin_shares([9.0, 10.0, 11.0, 12.0], inner)), abs=1e-12
    )


def test_categorical_psi_by_hand():
    ref = pd.DataFrame({"c": ["a"] * 50 + ["b"] * 30 + ["c"] * 20})
    prof = drift.build_profile(ref, ["c"], max_categories=2)
    entry = prof["features"]["c"]
    assert entry["categories"] == {"a": 0.5, "b": 0.3, "__other__": 0.2}
    # "c" is beyond the top 2 and "z" was never seen: both count as __other__
    cur = pd.Series(["a"] * 40 + ["b"] * 40 + ["c"] * 10 + ["z"] * 10 + [None] * 7)
    value, n_cur = drift.categorical_psi(entry, cur)
    expected = (0.4 - 0.5) * math.log(0.4 / 0.5) + (0.4 - 0.3) * math.log(0.4 / 0.3) + 0.0
    assert n_cur == 100
    assert value == pytest.approx(expected, abs=1e-12)
    # a category missing from the current batch uses eps
    value, _ = drift.categorical_psi(entry, pd.Series(["a"] * 8 + ["c"] * 2))
    expected = (0.8 - 0.5) * math.log(0.8 / 0.5) + (1e-4 - 0.3) * math.log(1e-4 / 0.3)
    assert value == pytest.approx(expected, abs=1e-12)


def test_categorical_profile_handles_bool_and_category_dtypes():
    df = pd.DataFrame(
        {
            "flag": [True, False, True, True],
            "cat": pd.Categorical(["x", "y", "x", None], categories=["x", "y", "unused"]),
        }
    )
    prof = drift.build_profile(df, ["flag", "cat"])
    assert prof["features"]["flag"]["categories"] == {"True": 0.75, "False": 0.25, "__other__": 0.0}
    cat = prof["features"]["cat"]
    assert cat["categories"] == {"x": pytest.approx(2 / 3), "y": pytest.approx(1 / 3), "__other__": 0.0}
    assert cat["n"] == 3 and cat["null_ratio"] == 0.25


# ---------------------------------------------------------------------------- KS


@pytest.mark.parametrize(
    "n_cur",
    [50, 3000, 25_000],  # exact p-value path (<= 10k) and the asymptotic path (> 10k)
)
def test_ks_equals_scipy_on_the_stored_sample(profile, n_cur):
    rng = np.random.default_rng(n_cur)
    current = rng.normal(10.4, 2.2, n_cur)
    sample = profile["features"]["price"]["sample"]
    stat, p_value, n = drift.ks_against_sample(sample, current)
    expected = stats.ks_2samp(sample, current)
    assert n == n_cur
    assert abs(stat - expected.statistic) < 1e-9
    assert abs(p_value - expected.pvalue) < 1e-9


@pytest.mark.parametrize(
    "make",
    [
        lambda rng: rng.integers(0, 6, 30_000).astype(float),  # heavy ties
        lambda rng: rng.lognormal(0, 2.5, 30_000),  # clustered points (sort fallback)
        lambda rng: np.r_[rng.normal(size=15_000), np.zeros(15_000)],  # a point mass
        lambda rng: rng.uniform(-1e6, 1e6, 30_000),
        lambda rng: rng.standard_cauchy(30_000),  # extreme tails (sort fallback)
    ],
)
def test_ks_fast_path_equals_scipy_on_awkward_data(make):
    rng = np.random.default_rng(3)
    ref = make(rng)
    sample = np.sort(rng.choice(ref, 2000, replace=False))
    current = make(rng) * 1.01
    stat, p_value, _ = drift.ks_against_sample(sample, current)
    expected = stats.ks_2samp(sample, current)
    assert abs(stat - expected.statistic) < 1e-9
    assert abs(p_value - expected.pvalue) < 1e-9


def test_profile_sample_is_bounded_seeded_and_sorted(ref):
    a = drift.build_profile(ref, ["price"], sample_size=300, seed=5)
    b = drift.build_profile(ref, ["price"], sample_size=300, seed=5)
    c = drift.build_profile(ref, ["price"], sample_size=300, seed=6)
    sample = a["features"]["price"]["sample"]
    assert len(sample) == 300 and sample == sorted(sample)
    assert sample == b["features"]["price"]["sample"]
    assert sample != c["features"]["price"]["sample"]
    assert set(sample) <= set(ref["price"].tolist())


# ---------------------------------------------------------------------------- report


def test_no_shift_batch_is_not_flagged(profile):
    same = make_frame(3000, seed=99)
    for method, threshold in [("PSI", 0.1), ("KS", 0.1)]:
        report = drift.drift_report(
            profile,
            same,
            method=method,
            threshold=threshold,
            features=FEATURES,
            prediction=same["price"].to_numpy() * 0.5,
        )
        assert report["drifted_features"] == [], (method, report)
        assert report["drifted_count"] == 0
        assert report["prediction"]["drifted"] is False


def test_shifted_batch_is_flagged(profile, ref):
    base = make_frame(3000, seed=99)
    shifted = drift.shift_batch(base, {"price": 1, "visits": 1, "region": 2}, profile, seed=1)
    # the numeric shift is k reference standard deviations
    assert shifted["price"].mean() - base["price"].mean() == pytest.approx(
        profile["features"]["price"]["std"]
    )
    # the most frequent reference category ("north", 40%) made twice as frequent
    assert (shifted["region"] == "north").mean() == pytest.approx(0.8, abs=0.01)
    for method, threshold in [("PSI", 0.2), ("KS", 0.1)]:
        report = drift.drift_report(profile, shifted, method=method, threshold=threshold, features=FEATURES)
        assert set(report["drifted_features"]) == {"price", "visits", "region"}, (method, report)
        assert report["drifted_count"] == 3
    # the same with the reference frame instead of the profile
    again = drift.shift_batch(base, {"price": 1}, ref, seed=1)
    assert again["price"].mean() - base["price"].mean() == pytest.approx(ref["price"].std())


def test_shift_batch_k_below_one_and_categorical_dtype(profile):
    base = make_frame(2000, seed=4)
    base["region"] = base["region"].astype("category")
    fewer = drift.shift_batch(base, {"region": 0.5}, profile, seed=2)
    assert isinstance(fewer["region"].dtype, pd.CategoricalDtype)
    assert (fewer["region"] == "north").mean() == pytest.approx(0.2, abs=0.01)
    assert fewer["region"].notna().all()


def test_report_shape_and_json(profile):
    cur = make_frame(1000, seed=3, shift=1.0)
    report = drift.drift_report(
        profile, cur, method="psi", threshold=0.2, features=FEATURES, prediction=cur["price"] * 0.5
    )
    assert json.loads(json.dumps(report)) == report
    assert set(report) == {
        "method",
        "threshold",
        "features",
        "prediction",
        "max_psi",
        "max_ks",
        "drifted_features",
        "drifted_count",
    }
    assert report["method"] == "PSI" and report["threshold"] == 0.2
    price = report["features"]["price"]
    assert set(price) == {"kind", "psi", "n_ref", "n_cur", "drifted"}
    assert price["kind"] == "numeric" and price["n_ref"] == 4000 and price["n_cur"] == 1000
    assert type(price["psi"]) is float and type(price["drifted"]) is bool
    assert report["features"]["region"]["kind"] == "categorical"
    assert report["max_psi"] == max(e["psi"] for e in report["features"].values())
    assert report["max_ks"] is None

    ks = drift.drift_report(profile, cur, method="KS", threshold=0.1, features=FEATURES)
    assert set(ks["features"]["price"]) == {"kind", "ks", "p_value", "n_ref", "n_cur", "drifted"}
    assert "psi" in ks["features"]["region"]  # categorical features always use PSI
    assert ks["max_ks"] == max(e["ks"] for e in ks["features"].values() if "ks" in e)
    assert ks["max_psi"] == max(ks["features"][f]["psi"] for f in ("region", "member"))
    assert "prediction" not in ks
    assert json.loads(json.dumps(ks)) == ks


def test_ks_flag_is_on_the_statistic(profile):
    cur = make_frame(2000, seed=3, shift=0.3)
    report = drift.drift_report(profile, cur, method="KS", threshold=0.1, features=["price"])
    entry = report["features"]["price"]
    assert entry["drifted"] is (entry["ks"] > 0.1)
    expected = stats.ks_2samp(profile["features"]["price"]["sample"], cur["price"])
    assert entry["ks"] == pytest.approx(expected.statistic, abs=1e-9)
    assert entry["p_value"] == pytest.approx(expected.pvalue, abs=1e-9)


def test_missing_and_unknown_columns_never_crash(profile):
    cur = make_frame(500, seed=3).drop(columns=["price", "region"])
    cur["visits"] = np.nan
    report = drift.drift_report(
        profile, cur, method="PSI", threshold=0.2, features=["price", "region", "visits", "qty", "nope"]
    )
    f = report["features"]
    assert f["price"]["error"] == "missing column" and f["price"]["drifted"] is False
    assert f["price"]["n_ref"] == 4000 and f["price"]["n_cur"] == 0
    assert f["region"]["error"] == "missing column"
    assert f["visits"]["error"] == "no non-null values" and f["visits"]["psi"] is None
    assert f["nope"]["error"] == "not in profile"
    assert "error" not in f["qty"]
    assert report["max_psi"] == f["qty"]["psi"]
    json.dumps(report)
    with pytest.raises(ValueError):
        drift.drift_report(profile, cur, method="chi2", threshold=0.1)


def test_report_defaults_to_all_profile_features_and_is_thread_independent(profile):
    cur = make_frame(800, seed=8, shift=0.5)
    a = drift.drift_report(profile, cur, method="KS", threshold=0.1, workers=1)
    b = drift.drift_report(profile, cur, method="KS", threshold=0.1, workers=4)
    assert a == b
    assert list(a["features"]) == FEATURES


def test_profile_is_json_round_trippable_and_small(ref, profile):
    assert json.loads(json.dumps(profile)) == profile
    json.dumps(profile, allow_nan=False)  # strict JSON: no NaN/Infinity
    assert set(profile["features"]) == set(FEATURES) | {"__prediction__"}
    for entry in profile["features"].values():
        assert {"kind", "n", "null_ratio"} <= set(entry)
        if entry["kind"] == "numeric":
            assert len(entry["sample"]) <= 1000
            assert len(entry["shares"]) == len(entry["edges"]) - 1
    big = pd.concat([ref] * 10, ignore_index=True)
    size = len(json.dumps(drift.build_profile(big, FEATURES, sample_size=500)))
    assert size < 60_000  # 40k rows -> bounded by the sample size, not the data


def test_profile_nulls_and_missing_columns():
    df = pd.DataFrame({"x": [1.0, None, 3.0, np.nan], "s": ["a", None, "b", "a"], "e": [np.nan] * 4})
    prof = drift.build_profile(df, ["x", "s", "e"])
    assert prof["features"]["x"]["null_ratio"] == 0.5 and prof["features"]["x"]["n"] == 2
    assert prof["features"]["s"]["null_ratio"] == 0.25
    assert prof["features"]["e"]["n"] == 0
    json.dumps(prof, allow_nan=False)
    report = drift.drift_report(prof, df, method="PSI", threshold=0.2)
    assert report["features"]["e"]["error"] == "no reference values"
    with pytest.raises(ValueError, match="missing"):
        drift.build_profile(df, ["x", "zzz"])


def test_high_cardinality_categorical_keeps_top_categories():
    values = [f"id{i}" for i in range(300)] + ["hot"] * 300
    prof = drift.build_profile(pd.DataFrame({"c": values}), ["c"], max_categories=10)
    cats = prof["features"]["c"]["categories"]
    assert len(cats) == 11 and cats["hot"] == 0.5
    assert cats["__other__"] == pytest.approx(1 - 0.5 - 9 / 600)
