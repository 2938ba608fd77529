"""Pricing family: data generator, log-log elasticity model, optimiser, metrics, persistence."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_percentage_error

from recipes.catalog import METRICS
from runs.families import pricing as P
from runs.metrics import pricing as pm


def manifest(objective="margin", evaluation=None, validation=None, hyper=None, bounds=None):
    training = {"algorithm": "log_log_ols", "hyperparameters": hyper or {}, "objective": objective}
    if bounds is not None:
        training["price_bounds"] = bounds
    return {
        "pipeline": {
            "stages": [
                {"name": "prep", "type": "feature_prep", "config": {"min_series_weeks": 4}},
                {"name": "train", "type": "training", "config": training},
                {"name": "evaluate", "type": "evaluation", "config": evaluation or {}},
            ]
        },
        "evaluation": {"validation": validation or {"method": "time_holdout", "test_size": 0.2}},
    }


@pytest.fixture(scope="module")
def default_run():
    m = manifest()
    df = P.prepare(P.generate(P.DEFAULT_ROWS, 42), m)
    train, test = P.split(df, m)
    logs: list[str] = []
    model = P.fit(train, m, threads=1, log=logs.append)
    return m, train, test, model, logs


@pytest.fixture(scope="module")
def small_run():
    m = manifest()
    df = P.generate(6000, 3)
    train, test = P.split(df, m)
    return m, train, test, P.fit(train, m, threads=1)


def share_weighted_truth(model) -> float:
    seg = model["segment_elasticity"]
    total = sum(v["n_rows"] for v in seg.values())
    return sum(P.SEGMENT_ELASTICITY[s] * v["n_rows"] for s, v in seg.items()) / total


# ----------------------------------------------------------------------------- data


def test_generate_is_deterministic():
    a, b = P.generate(3000, 7), P.generate(3000, 7)
    pd.testing.assert_frame_equal(a, b)
    assert not a["units"].equals(P.generate(3000, 8)["units"])


@pytest.mark.parametrize("rows", [1, 517, 3001])
def test_schema_matches_frame(rows):
    df = P.generate(rows, 1)
    assert len(df) == rows
    assert list(df.columns) == [c["name"] for c in P.SCHEMA]
    check = {
        "float": pd.api.types.is_float_dtype,
        "int": pd.api.types.is_integer_dtype,
        "string": pd.api.types.is_string_dtype,
        "date": pd.api.types.is_datetime64_any_dtype,
    }
    for col in P.SCHEMA:
        assert check[col["dtype"]](df[col["name"]]), col
    roles = {c["role"] for c in P.SCHEMA}
    assert "time" in roles and "label" in roles and "grain" in roles
    for cols in P.FEATURE_SETS.values():
        assert set(cols) <= set(df.columns)
    assert not df.duplicated(P.GRAIN + [P.TIME]).any()


def test_generated_data_is_plausible():
    df = P.generate(20000, 5)
    assert (df["price"] > 0).all() and (df["units"] >= 0).all()
    assert (df["unit_cost"] < df["regular_price"]).mean() > 0.99
    promo = df["promo"] == 1
    assert 0.08 < promo.mean() < 0.16
    assert (df.loc[promo, "price"] < df.loc[promo, "regular_price"]).all()
    assert (df.loc[~promo, "price"] == df.loc[~promo, "regular_price"]).all()
    assert set(df["segment"]) == set(P.SEGMENT_ELASTICITY)
    assert df["week"].dt.day_of_week.eq(0).all()


def test_ground_truth():
    gt = P.ground_truth(42)
    assert gt["overall_elasticity"] == pytest.approx(np.mean(list(gt["segment_elasticities"].values())))
    assert gt["segment_elasticities"] == P.SEGMENT_ELASTICITY


# ----------------------------------------------------------------------------- correctness


def test_elasticity_recovered_at_default_rows(default_run):
    _, _, _, model, logs = default_run
    overall = model["overall_elasticity"]
    assert abs(overall["estimate"] - P.OVERALL_ELASTICITY) < 0.1
    assert overall["ci_low"] < overall["estimate"] < overall["ci_high"]
    assert overall["ci_high"] - overall["ci_low"] < 0.1
    for seg, truth in P.SEGMENT_ELASTICITY.items():
        assert abs(model["segment_elasticity"][seg]["estimate"] - truth) < 0.1, seg
    # the per-segment estimates keep the true ordering
    est = [model["segment_elasticity"][s]["estimate"] for s in P.SEGMENT_ELASTICITY]
    assert est == sorted(est, reverse=True)
    assert any("overall elasticity" in line for line in logs)


def test_confidence_intervals_cover_the_truth():
    """95% CIs across 10 independent datasets: the overall CI (vs the row-share weighted
    true elasticity) and the 40 segment CIs contain the truth at about the nominal rate."""
    m = manifest()
    overall_hits = segment_hits = 0
    for seed in range(10):
        model = P.fit(P.generate(30000, seed), m, threads=1)
        o = model["overall_elasticity"]
        overall_hits += o["ci_low"] <= share_weighted_truth(model) <= o["ci_high"]
        for seg, v in model["segment_elasticity"].items():
            segment_hits += v["ci_low"] <= P.SEGMENT_ELASTICITY[seg] <= v["ci_high"]
    assert overall_hits >= 8
    assert segment_hits >= 34


def test_nonrobust_and_hc1_standard_errors_agree_on_homoskedastic_data(small_run):
    m, train, _, model = small_run
    plain = P.fit(train, manifest(hyper={"cov_type": "nonrobust"}), threads=1)
    assert plain["overall_elasticity"]["estimate"] == pytest.approx(model["overall_elasticity"]["estimate"])
    ratio = plain["overall_elasticity"]["se"] / model["overall_elasticity"]["se"]
    assert 0.8 < ratio < 1.25


def test_pooled_model_has_one_elasticity(small_run):
    _, train, _, _ = small_run
    pooled = P.fit(train, manifest(hyper={"per_segment": False}), threads=1)
    values = {round(v["estimate"], 12) for v in pooled["segment_elasticity"].values()}
    assert len(values) == 1
    assert abs(pooled["overall_elasticity"]["estimate"] - P.OVERALL_ELASTICITY) < 0.2


def test_margin_recommendations_raise_true_margin(default_run):
    """Under the generator's true demand curves the recommended (margin-optimal) price
    changes increase the expected margin of the holdout weeks."""
    _, _, test, model, _ = default_run
    recs = {r["product_id"]: r for r in model["recommendations"]}
    mult = test["product_id"].map(lambda p: recs[p]["multiplier"]).to_numpy()
    e_true = test["segment"].map(P.SEGMENT_ELASTICITY).to_numpy()
    price, cost = test["price"].to_numpy(), test["unit_cost"].to_numpy()
    units = test["units"].to_numpy(dtype=float)
    gain = pm.margin_impact(price, cost, units, price * mult, units * mult**e_true)
    assert gain > 0.05


# ----------------------------------------------------------------------------- optimiser


@pytest.mark.parametrize("objective", ["revenue", "margin"])
def test_optimiser_matches_brute_force_grid(objective):
    rng = np.random.default_rng(0)
    e = rng.uniform(-4.0, -0.2, 200)
    p0 = rng.uniform(1, 50, 200)
    c = p0 * rng.uniform(0.2, 0.9, 200)
    m, status = P.optimal_multiplier(e, p0, c, objective, -0.2, 0.15)
    grid = np.linspace(0.8, 1.15, 3501)

    def value(mult, i):
        q = mult ** e[i]
        return (mult * p0[i] - (c[i] if objective == "margin" else 0.0)) * q

    for i in range(e.size):
        assert 0.8 - 1e-12 <= m[i] <= 1.15 + 1e-12
        assert value(m[i], i) >= value(grid, i).max() - 1e-9 * abs(value(grid, i).max())
    assert {"min_bound", "max_bound"} & set(status)
    if objective == "revenue":
        assert np.allclose(m[e < -1], 0.8) and np.allclose(m[e > -1], 1.15)
    else:
        assert "optimised" in status


def test_optimiser_keeps_price_without_optimum():
    m, status = P.optimal_multiplier([0.0, 0.4, -1.5], [10.0, 10.0, 10.0], [5, 5, 5], "margin", -0.2, 0.2)
    assert list(m[:2]) == [1.0, 1.0] and status[:2] == ["no_optimum", "no_optimum"]
    # margin optimum cost * e / (1 + e) = 15 = 1.5 x the current price: clipped to +20 %
    assert m[2] == pytest.approx(1.2) and status[2] == "max_bound"
    m2, status2 = P.optimal_multiplier([-1.5], [10.0], [5.0], "margin", -0.2, 0.6)
    assert m2[0] == pytest.approx(1.5) and status2 == ["optimised"]


def test_positive_elasticity_keeps_current_price_and_warns():
    df = P.generate(4000, 11)
    rng = np.random.default_rng(0)
    rel = df["price"] / df.groupby("product_id")["price"].transform("median")
    df["units"] = np.rint(40 * rel**0.5 * np.exp(rng.normal(0, 0.1, len(df)))).astype("int64")
    logs: list[str] = []
    model = P.fit(df, manifest(), threads=1, log=logs.append)
    assert model["overall_elasticity"]["estimate"] > 0.3
    recs = model["recommendations"]
    assert all(
        r["status"] == "no_optimum" and r["recommended_price"] == round(r["current_price"], 2) for r in recs
    )
    assert any("warning" in line and "no optimum" in line for line in logs)


def test_price_bounds_are_respected_and_validated(small_run):
    _, train, _, _ = small_run
    model = P.fit(train, manifest(bounds={"min_change": -0.05, "max_change": 0.1}), threads=1)
    changes = np.array([r["change"] for r in model["recommendations"]])
    assert changes.min() >= -0.05 - 1e-9 and changes.max() <= 0.1 + 1e-9
    with pytest.raises(ValueError, match="price_bounds"):
        P.fit(train, manifest(bounds={"min_change": 0.1, "max_change": 0.2}), threads=1)
    with pytest.raises(ValueError, match="objective"):
        P.fit(train, manifest(objective="profit"), threads=1)


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_outputs(default_run):
    m, _, test, model, _ = default_run
    metrics, predictions, plot = P.evaluate(model, test, m)
    assert set(metrics) == set(METRICS["pricing"])
    assert all(type(v) is float and math.isfinite(v) for v in metrics.values())
    assert metrics["elasticity"] == model["overall_elasticity"]["estimate"]
    assert metrics["calibration"] < 0.03
    assert 0.1 < metrics["demand_mape"] < 0.3
    assert metrics["margin_impact"] > 0.05  # objective is margin

    assert len(predictions) == len(test)
    for col in ("product_id", "store_id", "week", "units", "predicted_units", "recommended_price"):
        assert col in predictions.columns
    np.testing.assert_allclose(predictions["predicted_units"], P.predict(model, test))

    # revenue_lift by hand: under the constant-elasticity curve q(new)/q(old) = mult ** e_segment
    recs = {r["product_id"]: r for r in model["recommendations"]}
    mult = test["product_id"].map(lambda p: recs[p]["multiplier"]).to_numpy()
    e = test["segment"].map(lambda s: model["segment_elasticity"][s]["estimate"]).to_numpy()
    p, q = test["price"].to_numpy(), test["units"].to_numpy(dtype=float)
    by_hand = np.sum(p * mult * q * mult**e) / np.sum(p * q) - 1
    assert metrics["revenue_lift"] == pytest.approx(by_hand, rel=1e-9)

    def n_numbers(obj):
        if isinstance(obj, dict):
            return sum(n_numbers(v) for v in obj.values())
        return len(obj) if isinstance(obj, list) else 1

    assert n_numbers(plot) <= 500
    json.dumps(plot, allow_nan=False)
    curve = plot["demand_curve"]
    assert len(curve["price"]) == len(curve["units"]) == len(curve["revenue"]) == 41
    assert np.all(np.diff(curve["units"]) < 0)  # downward-sloping demand
    lo, hi = curve["bounds"]
    assert lo - 0.01 <= curve["chosen_price"] <= hi + 0.01
    # the chosen price is the best grid point inside the bounds (margin objective)
    inside = [(mg, pr) for mg, pr in zip(curve["margin"], curve["price"], strict=True) if lo <= pr <= hi]
    best = max(inside)[1]
    assert abs(best - curve["chosen_price"]) <= (curve["price"][1] - curve["price"][0]) + 0.01
    seg = plot["segment_elasticity"]
    assert seg["segment"] == sorted(P.SEGMENT_ELASTICITY)
    assert all(
        lo_ < est < hi_ for lo_, est, hi_ in zip(seg["ci_low"], seg["estimate"], seg["ci_high"], strict=True)
    )
    assert plot["overall_elasticity"]["ci_level"] == 0.95


def test_evaluate_objective_override(small_run):
    m, _, test, model = small_run
    rev = P.evaluate(model, test, manifest(evaluation={"objective": "revenue"}))[0]
    mar = P.evaluate(model, test, m)[0]
    # all segments are elastic (e < -1): revenue-optimal = cut prices by 20 %
    e = test["segment"].map(lambda s: model["segment_elasticity"][s]["estimate"]).to_numpy()
    p, q = test["price"].to_numpy(), test["units"].to_numpy(dtype=float)
    assert rev["revenue_lift"] == pytest.approx(np.sum(p * 0.8 * q * 0.8**e) / np.sum(p * q) - 1)
    assert rev["revenue_lift"] > mar["revenue_lift"]
    assert mar["margin_impact"] > rev["margin_impact"]


def test_evaluate_handles_unseen_products(small_run):
    m, _, test, model = small_run
    other = test.copy()
    other["product_id"] = other["product_id"] + "_new"
    metrics, predictions, _ = P.evaluate(model, other, m)
    assert all(math.isfinite(v) for v in metrics.values())
    assert predictions["predicted_units"].gt(0).all()


# ----------------------------------------------------------------------------- predict / persistence


def test_save_load_round_trip(tmp_path, small_run):
    _, _, test, model = small_run
    files = P.save(model, tmp_path)
    assert files == ["model.json"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.json"]
    loaded = P.load(tmp_path)
    assert P.predict(loaded, test) == P.predict(model, test)
    assert loaded["recommendations"] == model["recommendations"]


def test_predict_without_labels(small_run):
    _, _, test, model = small_run
    rows = test[P.PREDICT_COLUMNS].head(50)
    preds = P.predict(model, rows)
    assert len(preds) == 50 and all(isinstance(v, float) and v > 0 for v in preds)
    # doubling the price divides expected units by 2 ** -elasticity
    doubled = P.predict(model, rows.assign(price=rows["price"] * 2))
    e = rows["segment"].map(lambda s: model["segment_elasticity"][s]["estimate"]).to_numpy()
    np.testing.assert_allclose(np.array(doubled) / np.array(preds), 2.0**e)
    # week given as ISO strings works too
    as_text = rows.assign(week=rows["week"].dt.strftime("%Y-%m-%d"))
    np.testing.assert_allclose(P.predict(model, as_text), preds)
    out = P.example_output(model, rows)
    assert len(out["predictions"]) == 10 and out["recommended_prices"]
    json.dumps(out, allow_nan=False)


@pytest.mark.parametrize("column", ["price", "segment", "promo", "week"])
def test_predict_missing_column(small_run, column):
    _, _, test, model = small_run
    with pytest.raises(ValueError, match=column):
        P.predict(model, test.drop(columns=[column]))


def test_unseen_series_fall_back_to_product_and_store_effects(small_run):
    _, _, test, model = small_run
    row = test.head(1)
    new_store = row.assign(store_id="S99")
    pe, g = model["product_effects"][row["product_id"].iloc[0]], model["global_effect"]
    seen = P.predict(model, row)[0]
    fe = model["series_effects"][f"{row['product_id'].iloc[0]}|{row['store_id'].iloc[0]}"]
    assert P.predict(model, new_store)[0] == pytest.approx(seen * math.exp(pe - fe))
    unseen_all = row.assign(product_id="PX", store_id="SX", segment="toys")
    assert P.predict(model, unseen_all)[0] > 0
    assert g == pytest.approx(np.mean(list(model["series_effects"].values())))


# ----------------------------------------------------------------------------- prep / split


def test_prepare_drops_invalid_rows():
    df = P.generate(2000, 2)
    bad = df.copy()
    bad.loc[0, "price"] = -1.0
    bad.loc[1, "price"] = bad.loc[1, "price"] * 50
    bad = pd.concat([bad, bad.iloc[[5]]], ignore_index=True)
    bad["week"] = bad["week"].dt.strftime("%Y-%m-%d")
    logs: list[str] = []
    out = P.prepare(bad, manifest(), log=logs.append)
    assert len(out) == len(df) - 2
    assert pd.api.types.is_datetime64_any_dtype(out["week"])
    assert not out.duplicated(P.GRAIN + [P.TIME]).any()
    assert logs and "rows out" in logs[0]


def test_time_holdout_split_and_folds():
    df = P.generate(5000, 4)
    train, test = P.split(df, manifest())
    assert train["week"].max() < test["week"].min()
    span = (df["week"].max() - df["week"].min()).days
    assert (df["week"].max() - test["week"].min()).days <= 0.2 * span
    assert len(train) + len(test) == len(df)
    fs = P.folds(df, manifest(validation={"method": "rolling_origin", "test_size": 0.3, "folds": 3}))
    assert len(fs) == 3
    for (tr, _te), (tr2, _) in zip(fs, fs[1:], strict=False):
        assert len(tr2) > len(tr)
    for tr, te in fs:
        assert tr["week"].max() < te["week"].min()
    kf = P.folds(df, manifest(validation={"method": "kfold", "test_size": 0.2, "folds": 4}))
    assert sum(len(te) for _, te in kf) == len(df)
    with pytest.raises(ValueError):
        P.split(df, manifest(validation={"method": "time_holdout", "test_size": 1.5}))
    with pytest.raises(ValueError):
        P.split(df, manifest(validation={"method": "stratified"}))


# ----------------------------------------------------------------------------- metrics


def test_metric_elasticity():
    assert pm.elasticity([-1.0, -2.0]) == pytest.approx(-1.5)
    assert pm.elasticity([-1.0, -2.0], [3, 1]) == pytest.approx(-1.25)
    assert math.isnan(pm.elasticity([]))


def test_metric_revenue_lift_by_hand():
    # current revenue 10*2 + 5*4 = 40; new 9*3 + 5*4 = 47 -> 0.175
    assert pm.revenue_lift([10, 5], [2, 4], [9, 5], [3, 4]) == pytest.approx(0.175)
    assert math.isnan(pm.revenue_lift([0], [1], [1], [1]))


def test_metric_margin_impact_by_hand():
    # current margin (10-6)*2 + (5-4)*4 = 12; new (12-6)*1.5 + (5-4)*4 = 13 -> 1/12
    assert pm.margin_impact([10, 5], [6, 4], [2, 4], [12, 5], [1.5, 4]) == pytest.approx(1 / 12)
    # negative current margin -4 -> new -2: improvement is positive (+0.5)
    assert pm.margin_impact([4], [6], [2], [5], [2]) == pytest.approx(0.5)


def test_metric_calibration_and_mape():
    assert pm.calibration([10, 30], [12, 30]) == pytest.approx(0.05)
    assert pm.calibration([10, 30], [8, 30]) == pytest.approx(0.05)
    actual = np.array([10.0, 20.0, 0.0, 5.0])
    pred = np.array([12.0, 15.0, 3.0, 5.0])
    assert pm.demand_mape(actual, pred) == pytest.approx((0.2 + 0.25 + 0.0) / 3)
    rng = np.random.default_rng(1)
    a, p = rng.uniform(1, 100, 50), rng.uniform(1, 100, 50)
    assert pm.demand_mape(a, p) == pytest.approx(mean_absolute_percentage_error(a, p))
    assert math.isnan(pm.demand_mape([0, 0], [1, 2]))
    with pytest.raises(ValueError):
        pm.calibration([1, 2], [1])
