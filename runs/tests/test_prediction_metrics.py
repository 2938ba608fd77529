"""Each family's prediction_metrics: evaluate()'s metrics recomputed from the predictions
frame evaluate() returned (the comparison's bootstrap resamples that frame)."""

from __future__ import annotations

import functools
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from recipes import baselines as recipe_baselines
from runs.families import get_family, worlds
from runs.metrics import forecasting as fm
from runs.metrics import location_scoring as location_metrics
from runs.metrics import next_best_action as nba_metrics
from runs.metrics import ranking

FAMILIES = ["forecasting", "pricing", "next_best_action", "location_scoring"]
# Small worlds, big enough for every metric to be defined (forecasting: 3 series).
ROWS = {"forecasting": 3 * 1095, "pricing": 2000, "next_best_action": 2000, "location_scoring": 2000}


@functools.cache
def _evaluated(name: str):
    """A model trained on a small world of the family's baseline recipe, evaluated on its
    holdout: (name, family, manifest, metrics, predictions)."""
    family = get_family(name)
    manifest = recipe_baselines.manifest(name)
    frame = worlds.generate(family, worlds.resolve(family, {"rows": ROWS[name], "seed": 1}))
    frame = family.prepare(frame, manifest)
    train, test = family.split(frame, manifest)
    model = family.fit(train, manifest, threads=1, log=lambda *_: None)
    metrics, predictions, _plots = family.evaluate(model, test, manifest)
    return name, family, manifest, metrics, predictions


@pytest.fixture(params=FAMILIES)
def evaluated(request):
    return _evaluated(request.param)


def test_full_predictions_give_evaluates_metrics(evaluated):
    name, family, manifest, metrics, predictions = evaluated
    again = family.prediction_metrics(predictions, manifest)
    assert list(again) == list(metrics)
    assert again == pytest.approx(metrics, rel=1e-12, abs=1e-12)
    finite = [k for k, v in metrics.items() if math.isfinite(v)]
    assert len(finite) == len(metrics), f"{name}: every metric is defined on this window: {metrics}"


def test_duplicated_rows_count_twice_and_keep_the_metrics(evaluated):
    """A unit drawn twice by the bootstrap: every metric of these families is a ratio of sums
    (or of a ranking), so the frame taken twice has the same metrics (on a row count whose
    top-k is a whole number of rows)."""
    _name, family, manifest, _metrics, predictions = evaluated
    part = predictions.head(len(predictions) // 100 * 100)
    assert len(part) >= 100
    once = family.prediction_metrics(part, manifest)
    twice = family.prediction_metrics(part.take(np.repeat(np.arange(len(part)), 2)), manifest)
    assert twice == pytest.approx(once, rel=1e-9)


def test_a_subset_is_scored_on_its_own_rows(evaluated):
    name, family, manifest, metrics, predictions = evaluated
    half = predictions.iloc[: len(predictions) // 2]
    sub = family.prediction_metrics(half, manifest)
    assert set(sub) == set(metrics)
    changed = [k for k in metrics if k not in family.CONSTANT_METRICS and sub[k] != metrics[k]]
    assert changed, f"{name}: no metric moved on half of the rows"
    for k in family.CONSTANT_METRICS:
        assert sub[k] == metrics[k]


def test_bootstrap_groups_and_constants_name_real_columns_and_metrics(evaluated):
    _name, family, manifest, metrics, predictions = evaluated
    assert family.BOOTSTRAP_GROUPS
    assert set(family.BOOTSTRAP_GROUPS) <= set(predictions.columns)
    assert set(family.CONSTANT_METRICS) <= set(metrics)
    # METRIC_COLUMNS are all prediction_metrics reads
    only = family.prediction_metrics(predictions[family.METRIC_COLUMNS], manifest)
    assert only == pytest.approx(metrics, rel=1e-12)
    with pytest.raises(KeyError):
        family.prediction_metrics(predictions[family.METRIC_COLUMNS[1:]], manifest)


def test_forecasting_subset_equals_the_metric_definitions():
    _name, family, manifest, _metrics, predictions = _evaluated("forecasting")
    rows = predictions[predictions["series_id"] == predictions["series_id"].iloc[0]]
    a = rows["actual"].to_numpy(dtype=float)
    expected = fm.all_metrics(a, rows["prediction"], rows["lower"], rows["upper"])
    assert family.prediction_metrics(rows, manifest) == pytest.approx(expected)


def test_forecasting_rows_without_an_actual_are_left_out():
    family = get_family("forecasting")
    frame = pd.DataFrame(
        {
            "series_id": ["a", "a", "b"],
            "actual": [10.0, np.nan, 20.0],
            "prediction": [12.0, 99.0, 15.0],
            "lower": [8.0, 0.0, 21.0],
            "upper": [14.0, 200.0, 30.0],
        }
    )
    got = family.prediction_metrics(frame, {})
    assert got["MAE"] == pytest.approx(3.5)
    assert got["MAPE"] == pytest.approx((0.2 + 0.25) / 2)
    assert got["coverage"] == pytest.approx(0.5)


def test_pricing_predictions_keep_their_columns_and_carry_what_the_metrics_need():
    family = get_family("pricing")
    manifest = recipe_baselines.manifest("pricing")
    frame = family.prepare(family.generate(2000, 1), manifest)
    train, test = family.split(frame, manifest)
    model = family.fit(train, manifest, threads=1)
    metrics, predictions, _ = family.evaluate(model, test, manifest)
    assert list(predictions.columns)[:9] == [
        "product_id",
        "store_id",
        "week",
        "segment",
        "price",
        "units",
        "predicted_units",
        "recommended_price",
        "predicted_units_at_recommended",
    ]
    np.testing.assert_allclose(
        predictions["recommended_price"], np.round(predictions["price"] * predictions["price_multiplier"], 2)
    )
    assert (predictions["overall_elasticity"] == model["overall_elasticity"]["estimate"]).all()
    assert metrics["elasticity"] == model["overall_elasticity"]["estimate"]
    assert family.CONSTANT_METRICS == {"elasticity"}


@pytest.mark.parametrize("name", ["next_best_action", "location_scoring", "pricing", "forecasting"])
def test_an_empty_frame_gives_nan_not_an_error(name):
    family = get_family(name)
    columns = {
        "forecasting": ["series_id", "actual", "prediction", "lower", "upper"],
        "pricing": [
            "price",
            "units",
            "predicted_units",
            "predicted_units_at_recommended",
            "price_multiplier",
            "unit_cost",
            "overall_elasticity",
        ],
        "next_best_action": ["customer_id", "treatment", "converted", "revenue", "uplift_score"],
        "location_scoring": ["site_id", "actual", "prediction"],
    }[name]
    got = family.prediction_metrics(pd.DataFrame({c: pd.Series([], dtype=float) for c in columns}), {})
    assert got and all(math.isnan(v) for v in got.values())


# ----------------------------------------------------------------------------- ranking helpers


@pytest.mark.parametrize(
    "values",
    [
        np.random.default_rng(0).random(500),  # no ties
        np.round(np.random.default_rng(1).random(500), 2),  # many ties
        np.random.default_rng(2).integers(-3, 4, 500).astype(float),  # small whole numbers
        np.random.default_rng(3).integers(0, 2, 500) * 1e6,  # whole, but too large for int16
        np.repeat(np.random.default_rng(4).random(50), 10),  # every value ten times (a bootstrap)
        np.array([0.0, -0.0, 1.5, 1.5, np.inf, -np.inf, 0.0]),
        np.array([]),
    ],
)
def test_descending_order_is_the_stable_descending_sort(values):
    order = ranking.descending_order(values)
    assert order.tolist() == np.argsort(-values, kind="stable").tolist()
    if values.size and np.isfinite(values).all():
        expected = location_metrics.average_ranks(values)
        assert ranking.average_ranks_from_order(values, order).tolist() == expected.tolist()


def test_average_ranks_match_scipy():
    values = np.round(np.random.default_rng(5).normal(size=300), 1)
    assert location_metrics.average_ranks(values).tolist() == stats.rankdata(values).tolist()


def test_location_all_metrics_equal_the_functions_one_by_one():
    rng = np.random.default_rng(6)
    actual = np.round(rng.lognormal(size=400), 1)
    predicted = np.round(actual * rng.lognormal(0, 0.5, size=400), 1)
    got = location_metrics.all_metrics(actual, predicted, 0.1)
    assert got == pytest.approx(
        {
            "rank_correlation": stats.spearmanr(actual, predicted).statistic,
            "hit_rate@k": location_metrics.hit_rate_at_k(actual, predicted, 0.1),
            "lift": location_metrics.lift(actual, predicted, 0.1),
            "calibration": location_metrics.calibration(actual, predicted),
            "RMSE": location_metrics.rmse(actual, predicted),
        },
        rel=1e-12,
    )
    top = set(np.argsort(-actual, kind="stable")[:40]) & set(np.argsort(-predicted, kind="stable")[:40])
    assert got["hit_rate@k"] == len(top) / 40


def test_nba_compute_all_equals_the_functions_one_by_one():
    rng = np.random.default_rng(7)
    y, t = rng.integers(0, 2, 600), rng.integers(0, 2, 600)
    score = np.round(rng.normal(size=600), 1)  # ties
    revenue = y * rng.uniform(10, 50, 600)
    got = nba_metrics.compute_all(y, t, score, revenue, k=0.2, offer_cost=1.0, population=None)
    assert list(got) == list(nba_metrics.METRIC_NAMES)
    assert got == {
        "uplift": nba_metrics.uplift(y, t, score, 0.2),
        "uplift@k": nba_metrics.uplift_at_k(y, t, score, 0.2),
        "precision@k": nba_metrics.precision_at_k(y, t, score, 0.2),
        "qini_coefficient": nba_metrics.qini_coefficient(y, t, score),
        "auuc": nba_metrics.auuc(y, t, score),
        "incremental_revenue": nba_metrics.incremental_revenue(
            revenue, t, score, 0.2, offer_cost=1.0, population=None
        ),
    }
    top = np.argsort(-score, kind="stable")[:120]
    treated = t[top] == 1
    assert got["precision@k"] == pytest.approx(y[top][treated].mean())
