"""The forecasting family at every frequency businesses plan in: hourly, daily, weekly,
monthly and quarterly (issue #19). Pure: the family's own functions on its synthetic world."""

import json
import math

import numpy as np
import pandas as pd
import pytest

from recipes import forecasting_config
from runs.families import forecasting as fc


def manifest(frequency: str, *, algorithm: str = "auto", horizon: int = 28, **prep) -> dict:
    return {
        "requirements": {"grain": ["series_id", "date"], "labels": ["sales"]},
        "evaluation": {"validation": {"method": "time_holdout", "test_size": 0.2}},
        "pipeline": {
            "stages": [
                {"name": "prep", "type": "feature_prep", "config": {"frequency": frequency, **prep}},
                {
                    "name": "train",
                    "type": "training",
                    "config": {
                        "algorithm": algorithm,
                        "horizon": horizon,
                        "hyperparameters": {"n_estimators": 30, "min_data_in_leaf": 5},
                    },
                },
            ]
        },
    }


@pytest.fixture(scope="module")
def daily():
    return fc.generate(4 * fc.HISTORY_DAYS, 3)


@pytest.mark.parametrize(
    ("frequency", "alias", "first", "periods_per_year"),
    [("M", "MS", "2022-02-01", 12), ("Q", "QS", "2022-04-01", 4), ("W", "W", "2022-01-03", 52)],
)
def test_daily_data_are_summed_into_whole_periods(daily, frequency, alias, first, periods_per_year):
    """Monthly and quarterly data are the daily sums of whole periods: the world starts on
    3 January 2022, so its first month (and quarter) is partial and dropped, as the last one."""
    m = manifest(alias)
    out = fc.prepare(daily, m, log=lambda _m: None)
    one = out[out["series_id"] == out["series_id"].iloc[0]]
    assert one["date"].min() == pd.Timestamp(first)
    assert abs(len(one) - 3 * periods_per_year) <= 2
    days = daily[daily["series_id"] == one["series_id"].iloc[0]].copy()
    start = one["date"].iloc[1]
    end = one["date"].iloc[2]
    expected = days.loc[(days["date"] >= start) & (days["date"] < end), "sales"].sum()
    assert one["sales"].iloc[1] == pytest.approx(expected)


@pytest.mark.parametrize("frequency", ["M", "Q"])
@pytest.mark.parametrize("algorithm", ["seasonal_naive", "ets", "arima", "lightgbm"])
def test_monthly_and_quarterly_models_train_evaluate_and_forecast(daily, frequency, algorithm):
    m = manifest(frequency, algorithm=algorithm, horizon=92)
    prepared = fc.prepare(daily, m, log=lambda _m: None)
    train, test = fc.split(prepared, m)
    model = fc.fit(train, m, log=lambda _m: None)
    assert model["spec"]["frequency"] == frequency
    assert model["training"]["horizon_periods"] == (4 if frequency == "M" else 2)
    last = pd.Timestamp(model["last_date"])
    assert last.day == 1 and (frequency == "M" or last.month in (1, 4, 7, 10))
    metrics, predictions, plot = fc.evaluate(model, test, m)
    assert math.isfinite(metrics["MAPE"]) and metrics["MAPE"] < 0.6
    assert plot["frequency"] == frequency
    # A date inside a later period is that period's forecast (as weekly models map days).
    row = test[test["series_id"] == test["series_id"].iloc[0]].iloc[[0]].copy()
    inside = row.assign(date=pd.Timestamp(row["date"].iloc[0]) + pd.Timedelta(days=9))
    assert fc.predict(model, inside) == fc.predict(model, row)


def test_a_monthly_model_beats_seasonal_naive_on_the_world():
    """Sanity of the monthly calendar: ETS on monthly totals does better than repeating
    the last year on the world's continuation."""
    data = fc.generate(10 * fc.HISTORY_DAYS, 11)
    scores = {}
    for algorithm in ("seasonal_naive", "ets"):
        m = manifest("M", algorithm=algorithm, horizon=92)
        train, test = fc.split(fc.prepare(data, m, log=lambda _m: None), m)
        scores[algorithm] = fc.evaluate(fc.fit(train, m, log=lambda _m: None), test, m)[0]["MAPE"]
    assert scores["ets"] < scores["seasonal_naive"]


def test_an_hourly_world_and_model():
    data = fc.generate(2 * 28, 5, days=28, hourly=True)
    assert len(data) == 2 * 28 * 24
    stamps = pd.to_datetime(data["date"])
    assert stamps.dt.hour.nunique() == 24
    # The hours of a day add up to a day's demand of the same world (the same means).
    per_hour = data.groupby(stamps.dt.hour)["sales"].mean()
    assert per_hour.idxmax() in (12, 17, 18, 19) and per_hour.min() < per_hour.max() / 3
    m = manifest("H", algorithm="lightgbm", horizon=2)
    m["pipeline"]["stages"][1]["config"]["hyperparameters"]["n_estimators"] = 150
    prepared = fc.prepare(data, m, log=lambda _m: None)
    assert len(prepared) == len(data)  # hours are kept, not summed into days
    train, test = fc.split(prepared, m)
    model = fc.fit(train, m, log=lambda _m: None)
    assert model["training"]["horizon_periods"] == 48
    assert "T" in model["last_date"]  # the hour is kept
    metrics, _, _ = fc.evaluate(model, test, m)
    assert math.isfinite(metrics["MAPE"])
    naive = fc.evaluate(fc.fit(train, manifest("H", algorithm="seasonal_naive", horizon=2)), test, m)[0]
    assert metrics["MAE"] < naive["MAE"] * 1.5
    # the hour of the day matters: the next two days' forecasts follow the world's hourly profile
    series = model["series"][0]
    fmt = data.loc[data["series_id"] == series, "store_format"].iloc[0]
    hours = pd.date_range(pd.Timestamp(model["last_date"]), periods=49, freq="h")[1:]
    rows = pd.DataFrame(
        {"series_id": series, "date": hours, "promo": 0, "price": float(data["price"].median())}
    )
    forecast = np.asarray(fc.predict(model, rows))
    assert np.corrcoef(forecast, fc.HOURLY_PROFILE[fmt][hours.hour])[0, 1] > 0.7


def test_frequencies_are_validated_with_their_path():
    good = manifest("MS")
    assert forecasting_config.check(good) == []
    bad = manifest("fortnightly")
    [(path, message)] = forecasting_config.check(bad)
    assert path == ("pipeline", "stages", 0, "config", "frequency")
    assert "'Q' (quarterly)" in message and "'H' (hourly)" in message
    bad_calendar = manifest("H", calendar_features=["hour", "minute"])
    [(path, message)] = forecasting_config.check(bad_calendar)
    assert path[-1] == "calendar_features" and "minute" in message


@pytest.mark.parametrize(
    ("frequency", "days", "periods"),
    [
        ("H", 2, 48),
        ("D", 28, 28),
        ("W", 28, 4),
        ("W", 29, 5),
        ("M", 28, 1),
        ("M", 92, 4),
        ("Q", 92, 2),
        ("Q", 365, 4),
    ],
)
def test_horizon_periods(frequency, days, periods):
    assert forecasting_config.horizon_periods(days, frequency) == periods


def test_old_daily_models_without_a_frequency_table_still_forecast(daily):
    """A model saved before this change has the same spec keys plus step_days: it loads and
    forecasts the same way."""
    m = manifest("D", algorithm="seasonal_naive")
    model = fc.fit(daily, m, log=lambda _m: None)
    model["spec"]["step_days"] = 1
    later = pd.DataFrame(
        {"series_id": [model["series"][0]], "date": [pd.Timestamp(model["last_date"]) + pd.Timedelta(days=3)]}
    )
    assert np.isfinite(fc.predict(model, later)).all()


# --- Prophet ------------------------------------------------------------------------------


def prophet_manifest(**training) -> dict:
    m = manifest("D", algorithm="prophet", horizon=28)
    m["pipeline"]["stages"][1]["config"].update(
        {"holidays": {"country": "GB"}, "prophet": {"uncertainty_samples": 100}, **training}
    )
    return m


@pytest.fixture(scope="module")
def prophet_model():
    data = fc.generate(3 * 730, 7, days=730)
    m = prophet_manifest()
    train, test = fc.split(fc.prepare(data, m, log=lambda _m: None), m)
    return fc.fit(train, m, threads=2, log=lambda _m: None), train, test, m


@pytest.mark.once  # pure and CPU-heavy: the database makes no difference
def test_prophet_trains_per_series_with_holidays_regressors_and_its_own_intervals(prophet_model, tmp_path):
    model, train, test, m = prophet_model
    assert model["algorithm"] == "prophet"
    state = model["state"]
    assert len(state["prophet_json"]) == len(model["series"]) == 3
    assert {"trend", "weekly", "yearly", "holidays"} <= set(state["components"])
    assert set(state["coef"]) == {"promo", "price"}
    # the world's demand falls with price: Prophet's price coefficient is negative
    assert all(c < 0 for c in state["coef"]["price"])
    metrics, predictions, _ = fc.evaluate(model, test, m)
    assert metrics["MAPE"] < 0.5 and 0.5 < metrics["coverage"] <= 1.0
    assert (predictions["lower"] <= predictions["prediction"]).all()
    assert (predictions["prediction"] <= predictions["upper"]).all()
    # Prophet's intervals, not a fixed ratio of the point forecast
    ratio = predictions["upper"] / predictions["prediction"]
    assert ratio.std() > 0.01
    # saved as Prophet's JSON (never pickle); loaded, it forecasts the same
    files = fc.save(model, tmp_path)
    assert "prophet_models.json" in files
    from prophet.serialize import model_from_json

    first = json.loads((tmp_path / "prophet_models.json").read_text())[0]
    assert model_from_json(first).history is not None
    again = fc.load(tmp_path)
    assert fc.predict(again, test.head(20)) == fc.predict(model, test.head(20))


@pytest.mark.once  # pure and CPU-heavy: the database makes no difference
def test_prophet_regressors_move_the_forecast(prophet_model):
    model, _, test, _ = prophet_model
    row = test.head(1)
    cheaper, dearer = row.assign(price=row["price"] * 0.8), row.assign(price=row["price"] * 1.2)
    assert fc.predict(model, cheaper)[0] > fc.predict(model, dearer)[0]
    # a request without the regressors uses each series' median
    assert np.isfinite(fc.predict(model, row.drop(columns=["price", "promo"]))).all()


@pytest.mark.once  # pure and CPU-heavy: the database makes no difference
def test_prophet_is_reproducible_and_auto_says_why_it_chose():
    data = fc.generate(2 * 400, 4, days=400)
    m = prophet_manifest(algorithm="auto", candidates=["seasonal_naive", "prophet"])
    lines = []
    first = fc.fit(data, m, threads=2, log=lines.append)
    second = fc.fit(data, m, threads=1, log=lambda _m: None)
    assert first["candidates"] == second["candidates"]
    assert first["state"].get("paths") == second["state"].get("paths")
    assert any(line.startswith("validation MAPE prophet") for line in lines)
    assert any(line.startswith("selected ") for line in lines)


def test_prophet_settings_are_validated_with_their_path(monkeypatch):
    base = ("pipeline", "stages", 1, "config")
    [(path, message)] = forecasting_config.check(prophet_manifest(holidays={"country": "XX"}))
    assert path == (*base, "holidays", "country") and "XX" in message
    [(path, _)] = forecasting_config.check(prophet_manifest(holidays={"dates": ["2024-13-01"]}))
    assert path == (*base, "holidays", "dates")
    [(path, _)] = forecasting_config.check(prophet_manifest(prophet={"seasonality_mode": "cubic"}))
    assert path == (*base, "prophet", "seasonality_mode")
    monkeypatch.setattr(forecasting_config, "installed", lambda module: module != "prophet")
    [(path, message)] = forecasting_config.check(prophet_manifest())
    assert path == (*base, "algorithm") and "pip install prophet" in message


# --- LSTM (Keras 3 on JAX: an optional extra, installed with the test dependencies) -------


def lstm_manifest(**lstm) -> dict:
    m = manifest("D", algorithm="lstm", horizon=14)
    m["pipeline"]["stages"][1]["config"]["lstm"] = {"epochs": 4, "max_windows": 3000, "units": 16, **lstm}
    return m


@pytest.fixture(scope="module")
def lstm_model():
    if not forecasting_config.installed("keras"):
        pytest.skip("the LSTM extra is not installed (make install-lstm)")
    data = fc.generate(3 * 240, 9, days=240)
    m = lstm_manifest()
    train, test = fc.split(fc.prepare(data, m, log=lambda _m: None), m)
    lines = []
    return fc.fit(train, m, log=lines.append), train, test, m, lines


@pytest.mark.once  # pure and CPU-heavy: the database makes no difference
def test_lstm_trains_with_early_stopping_and_forecasts(lstm_model, tmp_path):
    model, _, test, m, lines = lstm_model
    assert model["algorithm"] == "lstm"
    assert any(line.startswith("lstm: ") and "early stopping" in line for line in lines)
    metrics, predictions, _ = fc.evaluate(model, test, m)
    assert math.isfinite(metrics["MAPE"]) and metrics["MAPE"] < 1.0
    assert (predictions["prediction"] >= 0).all()
    # saved as a .keras file, loaded in safe mode: the same forecasts
    files = fc.save(model, tmp_path)
    assert "lstm.keras" in files and "model.json" in files
    assert "network" not in json.loads((tmp_path / "model.json").read_text())["state"]
    again = fc.load(tmp_path)
    assert np.allclose(fc.predict(again, test.head(30)), fc.predict(model, test.head(30)))


@pytest.mark.once  # pure and CPU-heavy: the database makes no difference
def test_lstm_is_reproducible_with_its_seed(lstm_model):
    model, train, test, m, _ = lstm_model
    twice = fc.fit(train, m, log=lambda _m: None)
    assert np.allclose(fc.predict(twice, test.head(30)), fc.predict(model, test.head(30)), rtol=1e-5)


def test_lstm_settings_are_validated_with_their_path(monkeypatch):
    base = ("pipeline", "stages", 1, "config")
    [(path, _)] = forecasting_config.check(lstm_manifest(units=0))
    assert path == (*base, "lstm", "units")
    [(path, message)] = forecasting_config.check(lstm_manifest(dropout=0.2))
    assert path == (*base, "lstm", "dropout") and "unknown LSTM setting" in message
    monkeypatch.setattr(forecasting_config, "installed", lambda module: module != "keras")
    [(path, message)] = forecasting_config.check(lstm_manifest())
    assert path == (*base, "algorithm") and "make install-lstm" in message


def test_an_hourly_recipe_trains_through_the_pipeline_on_its_hourly_world(tmp_path):
    """A synthetic batch of an hourly recipe is generated hour by hour (worlds.generate with
    the recipe: forecasting.generate_options), and the pipeline trains and evaluates on it."""
    from recipes import baselines
    from runs.pipeline import execute

    m = baselines.manifest("forecasting")
    m["requirements"]["min_history"] = "4 weeks"
    defaults = forecasting_config.PERIOD_DEFAULTS["H"]
    m["pipeline"]["stages"] = [s for s in m["pipeline"]["stages"] if s["type"] != "explain"]
    for stage in m["pipeline"]["stages"]:
        config = stage.get("config") or {}
        if stage["type"] == "feature_prep":
            config.update(frequency="H", lags=defaults["lags"], rolling_windows=defaults["rolling_windows"])
            config["calendar_features"] = defaults["calendar_features"]
        if stage["type"] == "training":
            config.update(algorithm="lightgbm", horizon=2, season_length=24, stat_history=672)
            config.update(share_window=168, max_forecast_periods=720)
            config["hyperparameters"]["n_estimators"] = 40
    lines = []
    result = execute(
        {
            "run_id": "run_hourly",
            "run_type": "train",
            "family": "forecasting",
            "manifest": m,
            "data": {"synthetic": {"rows": 2 * fc.HISTORY_DAYS, "seed": 3}},
            "artifact_dir": str(tmp_path),
            "model_dir": None,
            "threads": 1,
        },
        lambda kind, *message: lines.append((kind, *message)),
    )
    text = " ".join(str(m[-1]) for m in lines if m[0] == "log")
    assert "frequency H" in text and f"{2 * fc.HOURLY_DAYS * 24} rows" in text
    assert math.isfinite(result["metrics"]["MAPE"])
    saved = json.loads((tmp_path / "model" / "model.json").read_text())
    assert saved["spec"]["frequency"] == "H" and saved["training"]["horizon_periods"] == 48


@pytest.mark.once  # pure and CPU-heavy: the database makes no difference
def test_prophet_and_lstm_forecasts_are_explained_exactly(prophet_model, lstm_model):
    """The explainer forecasts each mixed row alone with a copy of its series' state: Prophet's
    per-series paths, intervals and coefficients and the LSTM's tails are aliased too, so the
    contributions add up to the forecast, and the regressors are features."""
    from runs.explain import explain_rows

    for model, _train, test in (prophet_model[:3], lstm_model[:3]):
        # the background: forecastable rows (after the model's history), as explain_model takes them
        background = test.groupby("series_id").nth([3, 6]).drop(columns="sales").reset_index(drop=True)
        rows = test.groupby("series_id").head(1).reset_index(drop=True)
        rows = rows[[c for c in rows.columns if c != "sales"]]
        items = explain_rows(fc, model, rows, background)
        assert np.allclose([i["output"] for i in items], fc.predict(model, rows), rtol=1e-6)
        for item in items:
            assert abs(item["base_value"] + sum(item["contributions"].values()) - item["output"]) < 1e-6
            assert {"price", "promo"} <= set(item["contributions"])


@pytest.mark.once  # pure and CPU-heavy: the database makes no difference
def test_a_prophet_forecast_is_decomposed_into_parts_that_add_up(prophet_model):
    from runs.explain.family_views import forecasting_view

    model = prophet_model[0]
    view, _ = forecasting_view(model, [{"feature": "price", "mean_abs": 1.0}])
    parts = view["components"]
    assert {"date", "trend", "weekly", "yearly", "holidays", "regressors"} <= set(parts)
    total = np.asarray(model["state"]["paths"], dtype=float)[:, : len(parts["date"])].sum(axis=0)
    summed = sum(np.asarray(parts[k]) for k in parts if k != "date")
    assert np.allclose(summed, total, atol=1e-2)
    assert view["regressors"] == [{"feature": "price", "mean_abs": 1.0}]
