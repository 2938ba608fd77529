"""Forecasting family: data generator, metrics, splits, models, persistence and the baseline."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import mean_absolute_error, mean_absolute_percentage_error, root_mean_squared_error

from recipes import forecasting_config
from recipes.catalog import HIGHER, METRICS
from runs.families import forecasting as fc
from runs.metrics import forecasting as fm

BASELINE = Path(__file__).resolve().parents[2] / "recipes" / "baselines" / "forecasting.json"
DAYS = 730
N_SERIES = 12
FAST_LGB = {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15}


def manifest(feature_prep=None, training=None, test_size=0.1, method="time_holdout", folds=3) -> dict:
    return {
        "requirements": {"grain": ["series_id", "date"], "labels": ["sales"]},
        "pipeline": {
            "stages": [
                {"name": "prep", "type": "feature_prep", "config": feature_prep or {}},
                {
                    "name": "train",
                    "type": "training",
                    "config": {"horizon": 28, "hyperparameters": FAST_LGB} | (training or {}),
                },
                {"name": "evaluate", "type": "evaluation", "config": {"plot_series": 2}},
            ]
        },
        "evaluation": {"validation": {"method": method, "test_size": test_size, "folds": folds}},
    }


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return fc.generate(N_SERIES * DAYS, 11, days=DAYS)


@pytest.fixture(scope="module")
def holdout(data):
    m = manifest()
    return fc.split(fc.prepare(data, m, log=quiet), m)


@pytest.fixture(scope="module")
def auto_model(holdout):
    train, _ = holdout
    return fc.fit(train, manifest(), threads=1, log=quiet)


@pytest.fixture(scope="module")
def naive_model(holdout):
    train, _ = holdout
    return fc.fit(train, manifest(training={"algorithm": "seasonal_naive"}), threads=1, log=quiet)


# --------------------------------------------------------------------------- data


def test_generate_is_deterministic_and_sized():
    a = fc.generate(3 * 400, 5, days=400)
    pd.testing.assert_frame_equal(a, fc.generate(3 * 400, 5, days=400))
    assert len(a) == 1200 and a["series_id"].nunique() == 3
    assert not a.equals(fc.generate(3 * 400, 6, days=400))
    # fewer rows than one history still gives one full series; series are a stable prefix
    assert len(fc.generate(10, 5, days=400)) == 400
    one = fc.generate(400, 5, days=400)
    pd.testing.assert_frame_equal(one, a.iloc[:400].reset_index(drop=True))
    assert fc.DEFAULT_ROWS == 200 * fc.HISTORY_DAYS == 219000


def test_schema_matches_frame(data):
    assert list(data.columns) == [c["name"] for c in fc.SCHEMA]
    checks = {
        "float": pd.api.types.is_float_dtype,
        "int": pd.api.types.is_integer_dtype,
        "string": pd.api.types.is_string_dtype,
        "date": pd.api.types.is_datetime64_any_dtype,
    }
    for col in fc.SCHEMA:
        assert checks[col["dtype"]](data[col["name"]]), col
    roles = {c["name"]: c["role"] for c in fc.SCHEMA}
    assert roles["date"] == "time" and roles["sales"] == "label" and roles["series_id"] == "grain"
    for cols in fc.FEATURE_SETS.values():
        assert set(cols) <= set(roles)
    assert not data.duplicated(["series_id", "date"]).any()
    assert data["date"].dt.normalize().equals(data["date"])


def test_ground_truth_matches_generated_data(data):
    gt = fc.ground_truth(11)
    first = gt["series"][0]
    s0 = data[data["series_id"] == first["series_id"]]
    assert len(s0) == DAYS
    assert (s0["store_format"] == first["store_format"]).all() and (s0["region"] == first["region"]).all()
    # promotions cut the price by PROMO_DISCOUNT: compare promo weeks with the week before
    weekly = (
        s0.assign(week=np.arange(DAYS) // 7)
        .groupby("week")
        .agg(promo=("promo", "max"), price=("price", "mean"))
    )
    cuts = [
        weekly["price"].iloc[w] / weekly["price"].iloc[w - 1]
        for w in range(1, len(weekly))
        if weekly["promo"].iloc[w] == 1 and weekly["promo"].iloc[w - 1] == 0 and w % 13 != 0
    ]
    # (the average price paid varies day to day: the week's mean is within a few percent)
    assert cuts and np.allclose(cuts, 1 - gt["promo_discount"], atol=0.05)
    assert abs(np.median(cuts) - (1 - gt["promo_discount"])) < 0.015
    # promotion days sell clearly more (lift * price effect ~ 1.4-1.8x)
    all_promo = data.groupby(["series_id", "promo"])["sales"].mean().unstack()
    ratio = (all_promo[1] / all_promo[0]).median()
    assert 1.3 < ratio < 2.0
    # weekly profile: hyper stores sell most on Saturday
    hyper = data[data["store_format"] == "hyper"]
    if len(hyper):
        assert hyper.groupby(hyper["date"].dt.day_of_week)["sales"].mean().idxmax() == 5


# --------------------------------------------------------------------------- metrics


def test_metrics_hand_values():
    a = [100.0, 200.0, 0.0, 50.0]
    f = [110.0, 180.0, 5.0, 50.0]
    assert fm.mape(a, f) == pytest.approx((0.1 + 0.1 + 0.0) / 3)
    assert fm.rmse(a, f) == pytest.approx(math.sqrt((100 + 400 + 25 + 0) / 4))
    assert fm.mae(a, f) == pytest.approx(35 / 4)
    assert fm.wape(a, f) == pytest.approx(35 / 350)
    assert fm.coverage(a, [101, 190, 1, 40], [105, 210, 10, 50]) == pytest.approx(
        0.5
    )  # 200 and 50 (inclusive)
    m = fm.all_metrics(a, f, [0, 0, 0, 0], [1e9] * 4)
    assert set(m) == set(METRICS["forecasting"]) and m["coverage"] == 1.0
    assert all(isinstance(v, float) for v in m.values())


def test_metrics_match_sklearn():
    rng = np.random.default_rng(0)
    a = rng.uniform(1, 100, 300)
    f = a + rng.normal(0, 10, 300)
    assert fm.mape(a, f) == pytest.approx(mean_absolute_percentage_error(a, f))
    assert fm.rmse(a, f) == pytest.approx(root_mean_squared_error(a, f))
    assert fm.mae(a, f) == pytest.approx(mean_absolute_error(a, f))
    a[:30] = 0.0  # zeros are left out of MAPE only
    nz = a != 0
    assert fm.mape(a, f) == pytest.approx(mean_absolute_percentage_error(a[nz], f[nz]))
    assert fm.mae(a, f) == pytest.approx(mean_absolute_error(a, f))


def test_metrics_edge_cases():
    assert math.isnan(fm.mape([0, 0], [1, 2]))
    assert math.isnan(fm.wape([0, 0], [1, 2]))
    assert math.isnan(fm.rmse([], []))
    with pytest.raises(ValueError):
        fm.mae([1, 2], [1])


# --------------------------------------------------------------------------- splits


def test_split_is_the_last_share_of_time(data):
    train, test = fc.split(data, manifest(test_size=0.1))
    assert train["date"].max() < test["date"].min()
    span = (data["date"].max() - data["date"].min()).days
    assert abs(test["date"].nunique() - 0.1 * span) <= 1
    assert len(train) + len(test) == len(data)
    with pytest.raises(ValueError, match="validation methods"):
        fc.split(data, manifest(method="random_holdout"))


def test_rolling_origin_folds(data):
    m = manifest(test_size=0.05, method="rolling_origin", folds=3)
    parts = fc.folds(data, m)
    assert len(parts) == 3
    ends = []
    for train, test in parts:
        assert train["date"].max() < test["date"].min()
        ends.append(test["date"].max())
    assert ends == sorted(ends) and ends[-1] == data["date"].max()
    for (_, t1), (tr2, _) in zip(parts, parts[1:], strict=False):
        assert t1["date"].max() <= tr2["date"].max()  # expanding window covers the earlier test
        assert len(tr2) > len(parts[0][0])
    pd.testing.assert_frame_equal(parts[-1][1], fc.split(data, m)[1])
    # time_holdout manifests backtest with rolling-origin folds too
    assert len(fc.folds(data, manifest(test_size=0.05, folds=2))) == 2


# --------------------------------------------------------------------------- models


def test_auto_beats_seasonal_naive_on_holdout(auto_model, naive_model, holdout):
    _, test = holdout
    m = manifest()
    metrics, predictions, plot = fc.evaluate(auto_model, test, m)
    naive_metrics, _, _ = fc.evaluate(naive_model, test, m)
    assert set(metrics) == set(METRICS["forecasting"])
    assert all(isinstance(v, float) and math.isfinite(v) for v in metrics.values())
    assert auto_model["algorithm"] in fc.ALGORITHMS
    assert metrics["MAPE"] < 0.85 * naive_metrics["MAPE"]
    assert metrics["WAPE"] < naive_metrics["WAPE"]
    # the reference in the plot is the same seasonal-naive forecast
    assert plot["reference"]["seasonal_naive_mape"] == pytest.approx(naive_metrics["MAPE"])
    # every candidate is reported with its validation MAPE, the selected one is the best
    cands = {c["name"]: c for c in plot["candidates"]}
    assert set(cands) == set(forecasting_config.DEFAULT_CANDIDATES)  # prophet only when named
    best = min(cands.values(), key=lambda c: c["validation_mape"])
    assert best["selected"] and best["name"] == auto_model["algorithm"]
    assert 0.7 <= metrics["coverage"] <= 0.99
    assert len(predictions) == len(test)
    assert {"series_id", "date", "actual", "prediction", "lower", "upper"} <= set(predictions.columns)
    assert (predictions["lower"] <= predictions["prediction"]).all()
    assert (predictions["prediction"] <= predictions["upper"]).all()
    # plot: total + 2 series, JSON-able, small
    assert len(plot["series"]) == 2 and len(plot["total"]["date"]) == test["date"].nunique()
    total_actual = test.groupby("date")["sales"].sum().to_numpy()
    assert np.allclose(plot["total"]["actual"], total_actual)
    assert len(json.dumps(plot)) < 60_000


def test_auto_beats_seasonal_naive_on_trended_seasonal_series():
    """A single series: linear trend, weekly and yearly seasonality, noise; no promotions."""
    rng = np.random.default_rng(3)
    days = 900
    t = np.arange(days)
    dates = pd.date_range("2021-01-04", periods=days, freq="D")
    weekly = np.array([0.8, 0.85, 0.9, 1.0, 1.1, 1.3, 1.05])[dates.day_of_week]
    mean = (100 + 0.08 * t) * weekly * (1 + 0.2 * np.sin(2 * np.pi * t / 365.25))
    df = pd.DataFrame({"series_id": "only", "date": dates, "sales": mean * rng.lognormal(0, 0.08, days)})
    m = manifest(
        feature_prep={"known_features": [], "static_features": []},
        training={"candidates": ["seasonal_naive", "ets", "arima"]},
        test_size=0.05,
    )
    train, test = fc.split(df, m)
    best = fc.fit(train, m, threads=1, log=quiet)
    naive = fc.fit(train, manifest(training={"algorithm": "seasonal_naive"}), threads=1, log=quiet)
    best_mape = fc.evaluate(best, test, m)[0]["MAPE"]
    naive_mape = fc.evaluate(naive, test, m)[0]["MAPE"]
    oracle_mape = fm.mape(test["sales"], mean[-len(test) :])  # noise floor: the true mean as forecast
    assert best["algorithm"] in ("ets", "arima")
    assert best_mape < 0.9 * naive_mape
    assert best_mape < 1.2 * oracle_mape


def test_seasonal_naive_repeats_last_season(naive_model, holdout):
    train, test = holdout
    sid = train["series_id"].iloc[0]
    last_week = train[train["series_id"] == sid].sort_values("date")["sales"].to_numpy()[-7:]
    rows = test[test["series_id"] == sid].sort_values("date").head(14).drop(columns=["sales"])
    assert np.array_equal(fc.predict(naive_model, rows), np.tile(last_week, 2))


def test_predict_without_labels_matches_evaluate(auto_model, holdout):
    _, test = holdout
    rows = test.drop(columns=["sales"]).sample(frac=1.0, random_state=0)  # any row order
    preds = fc.predict(auto_model, rows)
    assert len(preds) == len(rows) and all(isinstance(p, float) and p >= 0 for p in preds)
    _, predictions, _ = fc.evaluate(auto_model, test, manifest())
    expected = predictions.set_index(["series_id", "date"])["prediction"]
    got = pd.Series(preds, index=pd.MultiIndex.from_frame(rows[["series_id", "date"]]))
    assert np.allclose(got.sort_index().to_numpy(), expected.sort_index().to_numpy())


def test_predict_promotion_raises_lightgbm_forecast(holdout):
    train, test = holdout
    m = manifest(training={"algorithm": "lightgbm"})
    model = fc.fit(train, m, threads=1, log=quiet)
    rows = test[test["date"] == test["date"].min()].drop(columns=["sales"])
    off = fc.predict(model, rows.assign(promo=0))
    on = fc.predict(model, rows.assign(promo=1, price=rows["price"] * (1 - fc.PROMO_DISCOUNT)))
    assert np.mean(np.array(on) / np.array(off)) > 1.3  # truth: lift 1.2-1.5 x 0.85 ** -1.2


def test_missing_columns_and_bad_requests(auto_model, holdout):
    _, test = holdout
    rows = test.drop(columns=["sales"])
    needed = ["series_id", "date"] + (["promo", "price"] if auto_model["algorithm"] == "lightgbm" else [])
    for col in needed:
        with pytest.raises(ValueError, match=f"'{col}'"):
            fc.predict(auto_model, rows.drop(columns=[col]))
    with pytest.raises(ValueError, match="unknown series"):
        fc.predict(auto_model, rows.assign(series_id="nope"))
    with pytest.raises(ValueError, match="after the model's history"):
        fc.predict(auto_model, rows.assign(date=rows["date"] - pd.Timedelta(days=400)))


def test_save_load_round_trip(auto_model, holdout, tmp_path):
    _, test = holdout
    rows = test.drop(columns=["sales"])
    files = fc.save(auto_model, tmp_path)
    assert "model.json" in files and all((tmp_path / f).exists() for f in files)
    for f in files:  # text formats only, no pickle
        (tmp_path / f).read_text(encoding="utf-8")
    loaded = fc.load(tmp_path)
    assert fc.predict(loaded, rows) == fc.predict(auto_model, rows)
    assert fc.evaluate(loaded, test, manifest())[0] == fc.evaluate(auto_model, test, manifest())[0]


def test_stat_model_round_trip_and_series_level(holdout, tmp_path):
    train, test = holdout
    few = train[train["series_id"].isin(sorted(train["series_id"].unique())[:3])]
    m = manifest(training={"algorithm": "ets", "stat_level": "series"})
    model = fc.fit(few, m, threads=1, log=quiet)
    assert model["algorithm"] == "ets" and len(model["state"]["paths"]) == 3
    rows = test[test["series_id"].isin(model["series"])].drop(columns=["sales", "promo", "price"])
    fc.save(model, tmp_path)
    assert fc.predict(fc.load(tmp_path), rows) == fc.predict(model, rows)
    too_far = rows.head(1).assign(date=pd.Timestamp(model["last_date"]) + pd.Timedelta(days=5000))
    with pytest.raises(ValueError, match="max_forecast_periods"):
        fc.predict(model, too_far)


def test_weekly_frequency(data):
    m = manifest(
        feature_prep={"frequency": "W"}, training={"candidates": ["seasonal_naive", "ets"]}, test_size=0.15
    )
    weekly = fc.prepare(data, m, log=quiet)
    assert (weekly["date"].dt.day_of_week == 0).all()
    assert not weekly.duplicated(["series_id", "date"]).any()
    # full weeks only: each weekly total is the sum of its 7 days
    d = data.assign(week=data["date"] - pd.to_timedelta(data["date"].dt.day_of_week, unit="D"))
    sums = d.groupby(["series_id", "week"])["sales"].agg(["sum", "size"])
    sums = sums[sums["size"] == 7]["sum"]
    got = weekly.set_index(["series_id", "date"])["sales"]
    assert len(got) == len(sums) and np.allclose(got.sort_index().to_numpy(), sums.sort_index().to_numpy())
    pd.testing.assert_frame_equal(fc.prepare(weekly, m, log=quiet), weekly)  # idempotent
    train, test = fc.split(weekly, m)
    model = fc.fit(train, m, threads=1, log=quiet)
    assert model["spec"]["frequency"] == "W" and model["training"]["horizon_periods"] == 4
    metrics, predictions, _ = fc.evaluate(model, test, m)
    assert len(predictions) == len(test) and metrics["MAPE"] < 0.3
    # daily request rows map to their week's forecast
    sid = test["series_id"].iloc[0]
    week = test[test["series_id"] == sid]["date"].min()
    days = pd.DataFrame({"series_id": sid, "date": pd.date_range(week, periods=7, freq="D")})
    out = fc.predict(model, days)
    assert len(set(out)) == 1
    assert out[0] == pytest.approx(
        float(predictions[(predictions.series_id == sid) & (predictions.date == week)]["prediction"].iloc[0])
    )


def test_example_output_is_json(auto_model, data, holdout):
    out = fc.example_output(auto_model, data.head(5))
    json.dumps(out)
    assert out["forecast_origin"] == auto_model["last_date"] and len(out["outputs"]) == 7
    assert all(o["lower"] <= o["forecast"] <= o["upper"] for o in out["outputs"])
    future = fc.example_output(auto_model, holdout[1].head(3))
    assert [o["date"] for o in future["outputs"]] == [
        d.date().isoformat() for d in holdout[1]["date"].head(3)
    ]
    assert all("sales" not in i for i in future["inputs"])


def test_fit_validates_config(holdout):
    train, _ = holdout
    with pytest.raises(ValueError, match="algorithm"):
        fc.fit(train, manifest(training={"algorithm": "tbats"}), threads=1, log=quiet)
    with pytest.raises(ValueError, match="candidates"):
        fc.fit(train, manifest(training={"candidates": ["tbats"]}), threads=1, log=quiet)
    with pytest.raises(ValueError, match="not enough history"):
        fc.fit(
            train[train["date"] < train["date"].min() + pd.Timedelta(days=20)],
            manifest(),
            threads=1,
            log=quiet,
        )


# --------------------------------------------------------------------------- baseline manifest


def test_baseline_manifest():
    man = json.loads(BASELINE.read_text())
    assert man["metadata"]["id"] == "recipe_forecasting_base"
    assert man["metadata"]["name"] == "Forecasting Baseline v1"
    assert man["metadata"]["model_family"] == fc.NAME
    assert set(man["evaluation"]["metrics"]) == set(METRICS["forecasting"])
    for name, levels in man["evaluation"]["metrics"].items():
        t, w, c = levels["target"], levels["threshold_warning"], levels["threshold_critical"]
        if METRICS["forecasting"][name][0] == HIGHER:
            assert t >= w >= c, name
        else:
            assert t <= w <= c, name
    assert set(man["requirements"]["feature_sets"]["required"]) <= set(fc.FEATURE_SETS)
    assert man["evaluation"]["validation"]["method"] == "time_holdout"
    schema_cols = {c["name"] for c in fc.SCHEMA}
    assert set(man["monitoring"]["drift"]["features"]) <= schema_cols
    assert man["monitoring"]["freshness"] == {"max_age_hours": 48, "features": ["sales"]}
    assert man["deployment"]["mode"] == "batch" and len(man["deployment"]["schedule"].split()) == 5
    # its configs are accepted by the family
    spec = fc._spec(man)
    tc = fc._train_config(man, spec)
    assert tc["algorithm"] == "auto" and tc["horizon_periods"] == 56
