"""monitoring/comparison.py: paired bootstrap intervals over the grain (pure, no database)."""

from __future__ import annotations

import functools
import json
import math

import numpy as np
import pandas as pd
import pytest

from monitoring.comparison import group_codes, paired_bootstrap, replicate_indices
from recipes import baselines as recipe_baselines
from runs.families import get_family, worlds


def errors(frame: pd.DataFrame) -> dict[str, float]:
    """A small metric function: mean absolute error, bias, and a ratio that can be undefined."""
    err = frame["prediction"].to_numpy() - frame["actual"].to_numpy()
    total = frame["actual"].sum()
    return {
        "MAE": float(np.abs(err).mean()) if len(err) else math.nan,
        "bias": float(err.mean()) if len(err) else math.nan,
        "ratio": float(frame["prediction"].sum() / total) if total else math.nan,
        "version": 3.0,
    }


def world(units: int = 40, rows_per_unit: int = 25, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    unit = np.repeat([f"u{i:03d}" for i in range(units)], rows_per_unit)
    level = np.repeat(rng.uniform(10, 50, units), rows_per_unit)
    actual = level + rng.normal(0, 3, unit.size)
    return pd.DataFrame({"unit": unit, "actual": actual})


def with_prediction(frame: pd.DataFrame, prediction) -> pd.DataFrame:
    return frame.assign(prediction=np.asarray(prediction, dtype=float))


@pytest.fixture
def frames():
    base = world()
    noise = np.random.default_rng(1).normal(0, 4, len(base))
    return {
        "champion": with_prediction(base, base["actual"] + noise),
        "perfect": with_prediction(base, base["actual"]),
    }


def test_intervals_cover_the_point_value_and_the_shape_is_strict_json(frames):
    out = paired_bootstrap(frames, errors, ["unit"], constant={"version"}, n=100)
    assert out["replicates"] == 100 and out["groups"] == 40 and out["level"] == 0.95
    assert set(out["models"]) == {"champion", "perfect"}
    assert set(out["difference"]) == {"perfect"}  # the reference has no difference of its own
    mae = out["models"]["champion"]["MAE"]
    assert mae["value"] == pytest.approx(errors(frames["champion"])["MAE"])
    assert mae["low"] < mae["value"] < mae["high"]
    bias = out["models"]["champion"]["bias"]
    assert bias["low"] <= bias["value"] <= bias["high"]
    json.dumps(out, allow_nan=False)


def test_a_clearly_better_model_has_a_difference_interval_excluding_zero(frames):
    out = paired_bootstrap(frames, errors, ["unit"], n=200)
    diff = out["difference"]["perfect"]["MAE"]
    assert diff["value"] == pytest.approx(-errors(frames["champion"])["MAE"])
    assert diff["high"] < 0
    assert out["models"]["perfect"]["MAE"] == {"value": 0.0, "low": 0.0, "high": 0.0}


def test_identical_models_differ_by_exactly_zero(frames):
    same = {"a": frames["champion"], "b": frames["champion"].copy()}
    out = paired_bootstrap(same, errors, ["unit"], n=50)
    for metric in ("MAE", "bias", "ratio", "version"):
        assert out["difference"]["b"][metric] == {"value": 0.0, "low": 0.0, "high": 0.0}
    assert out["models"]["a"] == out["models"]["b"]


def test_the_pairing_narrows_the_difference_interval(frames):
    """Two models that share most of their error: the paired interval of the difference is
    much narrower than either model's own interval."""
    base = frames["champion"]
    shared = base["prediction"] - base["actual"]
    a = with_prediction(base, base["actual"] + shared)
    b = with_prediction(base, base["actual"] + shared + 0.2)
    out = paired_bootstrap({"a": a, "b": b}, errors, ["unit"], n=200)
    own = out["models"]["b"]["bias"]
    assert own["high"] - own["low"] > 0.3  # unpaired, b would not be told apart from a
    diff = out["difference"]["b"]["bias"]
    assert diff["low"] == pytest.approx(0.2) and diff["high"] == pytest.approx(0.2)


def test_n_controls_the_replicates_and_the_seed_reproduces(frames):
    calls = []

    def counted(frame):
        calls.append(len(frame))
        return errors(frame)

    out = paired_bootstrap(frames, counted, ["unit"], n=7)
    assert out["replicates"] == 7
    assert len(calls) == 2 * (7 + 1)  # each model: the point value, then one call a replicate
    one = paired_bootstrap(frames, errors, ["unit"], n=30, seed=5)
    assert one == paired_bootstrap(frames, errors, ["unit"], n=30, seed=5)
    assert one != paired_bootstrap(frames, errors, ["unit"], n=30, seed=6)


def test_a_wider_level_gives_a_wider_interval(frames):
    narrow = paired_bootstrap(frames, errors, ["unit"], n=200, level=0.5)["models"]["champion"]["MAE"]
    wide = paired_bootstrap(frames, errors, ["unit"], n=200, level=0.99)["models"]["champion"]["MAE"]
    assert wide["low"] < narrow["low"] < narrow["high"] < wide["high"]


def test_constant_metrics_have_no_interval(frames):
    out = paired_bootstrap(frames, errors, ["unit"], constant={"version", "MAE"}, n=20)
    assert out["models"]["champion"]["version"] == {"value": 3.0, "low": 3.0, "high": 3.0}
    mae = errors(frames["champion"])["MAE"]
    assert out["models"]["champion"]["MAE"] == {"value": mae, "low": mae, "high": mae}
    assert out["difference"]["perfect"]["MAE"] == {"value": -mae, "low": -mae, "high": -mae}


def test_a_single_group_resamples_to_itself():
    frame = with_prediction(pd.DataFrame({"unit": ["x", "x", "x"], "actual": [1.0, 2.0, 4.0]}), [1, 3, 4])
    out = paired_bootstrap({"m": frame}, errors, ["unit"], n=10)
    assert out["groups"] == 1 and out["difference"] == {}
    assert out["models"]["m"]["MAE"] == {"value": pytest.approx(1 / 3), "low": 1 / 3, "high": 1 / 3}


def test_every_row_of_a_drawn_group_comes_along():
    frame = pd.DataFrame({"g": ["b", "a", "b", "c", "a", "b"], "h": [1, 1, 2, 1, 1, 2]})
    codes = group_codes(frame, ["g"])
    assert codes.tolist() == [0, 1, 0, 2, 1, 0]
    for idx in replicate_indices(codes, 20, seed=3):
        assert (np.diff(idx) >= 0).all()  # frame order
        drawn = frame["g"].to_numpy()[idx]
        counts = pd.Series(drawn).value_counts()
        sizes = frame["g"].value_counts()
        for g, c in counts.items():
            assert c % sizes[g] == 0  # whole groups only
        assert sum(counts[g] // sizes[g] for g in counts.index) == 3  # as many draws as groups
    two = group_codes(frame, ["g", "h"])
    assert len(set(two.tolist())) == 4


def test_a_missing_group_key_is_a_unit_of_its_own():
    frame = with_prediction(
        pd.DataFrame({"unit": ["a", None, "a", None, "b"], "actual": [1.0, 2.0, 3.0, 4.0, 5.0]}),
        [1, 2, 3, 4, 6],
    )
    assert group_codes(frame, ["unit"]).tolist() == [0, 1, 0, 1, 2]
    out = paired_bootstrap({"m": frame, "copy": frame.copy()}, errors, ["unit"], n=10)
    assert out["groups"] == 3
    assert out["difference"]["copy"]["MAE"] == {"value": 0.0, "low": 0.0, "high": 0.0}


def test_a_metric_mostly_undefined_gets_no_interval():
    frame = with_prediction(
        pd.DataFrame({"unit": ["a", "b", "c", "d"], "actual": [0.0, 0.0, 0.0, 5.0]}), [1, 1, 1, 5]
    )
    out = paired_bootstrap({"m": frame}, errors, ["unit"], n=200, seed=0)
    # "ratio" is nan whenever "d" is not drawn, (3/4)^4 = 32 % of the replicates: those are
    # left out and the others give the interval.
    ratio = out["models"]["m"]["ratio"]
    assert ratio["value"] == pytest.approx(8 / 5) and ratio["low"] is not None
    assert ratio["low"] <= 8 / 5 <= ratio["high"]

    def distinct(frame):  # undefined once a unit is drawn twice: in nearly every replicate
        return {"m": math.nan if frame["unit"].duplicated().any() else float(frame["actual"].mean())}

    got = paired_bootstrap({"m": frame}, distinct, ["unit"], n=200, seed=0)["models"]["m"]["m"]
    assert got == {"value": 1.25, "low": None, "high": None}


def test_a_non_finite_point_value_is_none():
    frame = with_prediction(pd.DataFrame({"unit": ["a", "b"], "actual": [0.0, 0.0]}), [1, 1])
    out = paired_bootstrap({"m": frame}, errors, ["unit"], n=5)
    assert out["models"]["m"]["ratio"] == {"value": None, "low": None, "high": None}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"groups": ["nope"]}, "no column 'nope'"),
        ({"groups": []}, "at least one column"),
        ({"n": 0}, "positive integer"),
        ({"level": 1.0}, "level"),
    ],
)
def test_bad_arguments_are_value_errors(frames, kwargs, message):
    args = {"groups": ["unit"], **kwargs}
    with pytest.raises(ValueError, match=message):
        paired_bootstrap(frames, errors, args.pop("groups"), **args)


def test_only_the_named_columns_reach_the_metric(frames):
    seen = []

    def spy(frame):
        seen.append(list(frame.columns))
        return errors(frame)

    full = paired_bootstrap(frames, errors, ["unit"], n=20, seed=2)
    only = paired_bootstrap(frames, spy, ["unit"], columns=["actual", "prediction"], n=20, seed=2)
    assert only == full
    assert all(cols == ["actual", "prediction"] for cols in seen)
    with pytest.raises(ValueError, match="no column 'nope'"):
        paired_bootstrap(frames, errors, ["unit"], columns=["actual", "nope"], n=2)


def test_models_on_different_rows_are_refused(frames):
    with pytest.raises(ValueError, match="same rows"):
        paired_bootstrap({"a": frames["champion"], "b": frames["perfect"].head(10)}, errors, ["unit"])
    shuffled = frames["perfect"].sample(frac=1.0, random_state=0)
    with pytest.raises(ValueError, match="same order"):
        paired_bootstrap({"a": frames["champion"], "b": shuffled}, errors, ["unit"])
    with pytest.raises(ValueError, match="empty"):
        paired_bootstrap({"a": frames["champion"].head(0)}, errors, ["unit"])


# ----------------------------------------------------------------------------- the families

FAMILIES = ["forecasting", "pricing", "next_best_action", "location_scoring"]
ROWS = {"forecasting": 4 * 1095, "pricing": 2000, "next_best_action": 2000, "location_scoring": 2000}


@functools.cache
def _two_models(name: str):
    """Two models of one family (trained on all / on half of a small world's training rows)
    evaluated on the same holdout."""
    family = get_family(name)
    manifest = recipe_baselines.manifest(name)
    frame = worlds.generate(family, worlds.resolve(family, {"rows": ROWS[name], "seed": 1}))
    train, test = family.split(family.prepare(frame, manifest), manifest)
    half = train.iloc[: len(train) // 2] if name != "forecasting" else train
    evaluated = {}
    for key, rows in (("full", train), ("half", half)):
        model = family.fit(rows, manifest, threads=1, log=lambda *_: None)
        evaluated[key] = family.evaluate(model, test, manifest)
    return family, manifest, evaluated


@pytest.mark.parametrize("name", FAMILIES)
def test_prediction_metrics_of_the_full_predictions_are_evaluates_metrics(name):
    family, manifest, evaluated = _two_models(name)
    metrics, predictions, _ = evaluated["full"]
    assert family.prediction_metrics(predictions, manifest) == pytest.approx(metrics)


@pytest.mark.parametrize("name", FAMILIES)
def test_a_family_comparison_reports_every_metric(name):
    family, manifest, evaluated = _two_models(name)
    frames = {key: value[1] for key, value in evaluated.items()}
    metric_fn = functools.partial(family.prediction_metrics, manifest=manifest)
    out = paired_bootstrap(
        frames,
        metric_fn,
        family.BOOTSTRAP_GROUPS,
        constant=family.CONSTANT_METRICS,
        columns=family.METRIC_COLUMNS,
        n=40,
    )
    assert set(out["models"]["full"]) == set(evaluated["full"][0])
    assert out["groups"] == frames["full"].groupby(family.BOOTSTRAP_GROUPS).ngroups
    for metric, entry in out["models"]["full"].items():
        assert entry["value"] == pytest.approx(evaluated["full"][0][metric])
        if metric in family.CONSTANT_METRICS:
            assert entry["low"] == entry["high"] == entry["value"]
        elif entry["low"] is not None:
            assert entry["low"] <= entry["high"]
    json.dumps(out, allow_nan=False)
