"""Forecasting family: hourly, daily, weekly, monthly or quarterly demand per series with
seasonal-naive, ETS, ARIMA and a global LightGBM model, picked automatically on an internal
validation window.

Data (``generate``)
    Daily sales of store x product series: ``PRODUCTS_PER_STORE`` (10) products per store,
    series ``i`` is store ``i // 10``, product ``i % 10``. Every series has the same fixed
    history of ``HISTORY_DAYS`` = 1095 days (3 years from ``START_DATE``, a Monday), so
    ``generate(rows, seed)`` returns ``max(1, rows // 1095)`` series x 1095 days (a ``rows``
    below 1095 still gives one full series; the keyword ``days=`` shortens the history, for
    tests). ``DEFAULT_ROWS`` = 200 series x 1095 days = 219000. Parameters of series ``i``
    come from their own random stream (``seed``, store, product), so the first ``k`` series
    are the same whatever ``rows`` is. The mean demand is::

        mean_t = level * max(0.2, 1 + trend * years_t) * weekly[store_format][dow_t] ** w
                 * (1 + amp * cos(2 pi (doy_t - peak_day[region] - shift) / 365.25))
                 * (price_t / base_price) ** PRICE_ELASTICITY * lift ** promo_t

    and ``sales_t ~ Poisson(mean_t * Gamma(shape=1/NOISE_CV^2, scale=NOISE_CV^2))``.
    Promotions run in whole Monday-Sunday weeks (probability ``PROMO_WEEK_PROB`` per week)
    with a ``PROMO_DISCOUNT`` price cut; the regular price moves every 13 weeks around the
    series' base price (log AR(1): 0.5, steps of sd 0.02), and the average price paid varies
    from day to day (lognormal, sd 0.03).

    World (``runs/families/worlds.py``): the seed fixes the series (``layout(rows)``: their
    number) and every parameter; a window picks days from ``START_DATE``. Each kind of draw
    has its own stream per series, so the days after a training batch continue it.
    ``concept="trend_break"``: from the window's first day demand falls 30 % and then 20 %
    a year. ``concept="holidays"``: the public holidays of ``HOLIDAY_COUNTRY`` (GB, the
    ``holidays`` package's calendar, as Prophet's ``holidays: {country: GB}`` reads it) move
    demand: x ``HOLIDAY_EVE_FACTOR`` (1.6) on the day before a holiday, x ``HOLIDAY_FACTOR``
    (0.6) on the holiday itself (a holiday that is also the eve of the next, Christmas Day,
    takes the holiday's); ``"holidays_trend_break"`` is both. The data have no holiday
    column: a model learns the effect from the dates (Prophet's country holidays, the day
    of year). ``ground_truth(seed)`` returns the constants and the first series' parameters.
    ``hourly=True``: the window's last ``HOURLY_DAYS`` days hour by hour, each day's mean
    spread over its hours by the store format's ``HOURLY_PROFILE`` (quiet nights, two peaks).

Preparation (``prepare``, feature_prep stage)
    Parses the time column, drops rows without a series key or date, clips negative sales to
    0 and maps each timestamp to its period (``frequency``: ``H`` hours, ``D`` days, ``W``
    weeks starting on Monday, ``M`` calendar months, ``Q`` calendar quarters; periods are
    numbered on pandas' period calendar, so months of 28 to 31 days are one step each).
    Daily data of a weekly, monthly or quarterly recipe are aggregated (sales summed, known
    features averaged, other columns first value; a first or last period with fewer days
    than it has is dropped, as it would look like a demand drop). Duplicate (series,
    period) rows are aggregated the same way. It is idempotent; ``fit``/``evaluate`` apply it
    again, so they also accept unprepared data.
    The lag/rolling/calendar features are built inside the model (LightGBM forecasts
    recursively, so they must be rebuilt from its own forecasts), from the feature_prep
    config stored in the model.

Models (``fit``, training stage ``algorithm``)
    Data become a series x period matrix on a regular grid (gaps are missing values). The
    last ``horizon`` days (in periods: ``recipes.forecasting_config.horizon_periods``, e.g.
    ``ceil(horizon / 7)`` for weekly data, ``24 * horizon`` for hourly) of the
    training data are an internal validation window: every candidate (``auto``: the
    ``candidates`` list; otherwise the one algorithm) is fitted on the data before it and
    scored by MAPE on it; the best is refitted on all the training data.

    ``seasonal_naive``: repeats each series' last ``season_length`` periods.
    ``ets``: statsmodels Holt-Winters (``ExponentialSmoothing``; damped additive trend,
    multiplicative season of ``season_length`` by default). ``arima``: statsmodels
    ``SARIMAX`` (order ``(1,0,1)``, seasonal ``(0,1,1, season_length)``, drift). Both are
    fitted on the last ``stat_history`` periods. With ``stat_level: "total"`` (default, fast:
    one fit) they forecast the total over all series, split top-down by each series' share of
    the last ``share_window`` periods (per weekday for daily data); ``"series"`` fits one
    model per series (about 0.1 s (ETS) / 0.4 s (ARIMA) per series). Their forecast paths are
    computed at fit time for ``max_forecast_periods`` periods and stored in the model, so
    forecasts cannot reach further than that past the end of the history.
    ``lightgbm``: one global LightGBM regression on every (series, period): the target and
    its lags/rolling means are divided by the series' mean sales; features are the lags,
    the rolling means of the previous ``w`` periods, calendar features, the known features
    (promo, price) raw and relative to their series mean, static categoricals (store format,
    region) and the log series scale. Forecasts are recursive: the model keeps the last
    ``max(lags + rolling_windows)`` periods of each series and feeds its own forecasts back
    as lags.

    Prediction intervals (all algorithms): ``forecast * [q_lo, q_hi]`` where ``q_lo``/``q_hi``
    are the ``(1 -+ interval_level) / 2`` quantiles of ``actual / forecast`` of the selected
    algorithm on the internal validation window (pooled over series and steps).

    The model is a JSON-able dict (``state`` holds the selected algorithm's state and
    ``reference`` a seasonal-naive state); ``save`` writes ``model.json`` plus, for LightGBM,
    ``lightgbm_model.txt`` (``Booster.model_to_string``). ``hyperparameters`` go to
    ``lightgbm.train`` as params (``n_estimators`` = boosting rounds); ``num_threads`` is the
    ``threads`` argument and ``verbose`` -1 whatever the config says.

Validation (``split``, ``folds``)
    ``evaluation.validation.method`` "time_holdout" or "rolling_origin" (other methods raise
    ``ValueError``: shuffled splits leak the future). The holdout is every row after
    ``max - test_size * (max - min)`` of the time column. ``folds`` gives ``folds`` (default
    3) rolling-origin windows of the holdout's length ending at the last date, each trained
    on everything before it (expanding window); the last fold is the holdout.

Forecasting (``predict``, ``evaluate``)
    Rows carry the series key (``series_id``) and a date after the end of the model's
    history (the forecast origin); weekly, monthly and quarterly models map each date to its
    period (a Monday, the first of the month or quarter) and return that period's forecast. Known features (promo, price) are needed for LightGBM
    models; periods between the origin and a requested date without a row use the series'
    median of that feature. A date at or before the origin, an unknown series or a missing
    column raise ``ValueError`` (so the model cannot score its own training period: it is a
    forecaster, not an in-sample fit). ``evaluate`` skips test rows of series the model has
    not seen (counted in the plot's ``skipped_rows_unknown_series``). Only the series the
    rows name are forecast, each group of at most ``FORECAST_CELLS`` series x periods at
    once, so time and memory grow linearly with the batch (a series' forecast does not
    depend on the others: the result is the same however they are grouped).

Metrics (``evaluate``; definitions in ``runs.metrics.forecasting``)
    MAPE, RMSE, MAE, WAPE and coverage (interval) over the test rows with an actual.
    ``prediction_metrics(predictions, manifest)`` computes them from ``evaluate``'s
    predictions frame (so from any resample of its rows: a comparison's bootstrap resamples
    whole series, ``BOOTSTRAP_GROUPS``).

Plot data (``evaluate``'s third value)
    ``kind`` "forecast_vs_actual", ``frequency``, ``algorithm``, ``interval_level``;
    ``candidates``: ``[{name, validation_mape, selected}]`` (each candidate's MAPE on the
    internal validation window); ``reference``: ``{seasonal_naive_mape}`` on the test rows;
    ``total``: ``{date, actual, forecast, lower, upper}`` summed over all series (the
    summed bounds are a conservative band); ``series``: the same for the ``plot_series``
    series with the largest test sales, plus ``series_id``. Each line keeps its last
    ``plot_points`` periods (default 120), at most ~500 points in all.

Stage configs (defaults; ``D`` / ``W`` where they differ; the other frequencies' defaults
are ``recipes.forecasting_config.PERIOD_DEFAULTS``)
    feature_prep: ``frequency`` "D" ("H" | "D" | "W" | "M" | "Q"), ``time_column`` "date", ``lags``
    [1, 7, 14, 28, 364] / [1, 2, 4, 52], ``rolling_windows`` [7, 28] / [4, 13],
    ``calendar_features`` ["dayofweek", "dayofmonth", "dayofyear", "month"] / ["weekofyear",
    "month"] (any of hour, dayofweek, dayofmonth, dayofyear, weekofyear, month, quarter, year),
    ``known_features`` ["promo", "price"], ``static_features`` ["store_format", "region"]
    (features absent from the data are skipped).
    training: ``algorithm`` "auto" (seasonal_naive | ets | arima | lightgbm | auto),
    ``candidates`` ["seasonal_naive", "ets", "arima", "lightgbm"], ``horizon`` 28 (days),
    ``season_length`` 7 / 52, ``interval_level`` 0.9, ``stat_level`` "total",
    ``stat_history`` 364 / 156, ``share_window`` 56 / 13, ``max_forecast_periods`` 400 / 60,
    ``ets`` {``trend`` "add", ``damped_trend`` true, ``seasonal`` "mul"}, ``arima``
    {``order`` [1, 0, 1], ``seasonal_order`` [0, 1, 1] / [0, 1, 0], ``trend`` "c",
    ``maxiter`` 50}, ``hyperparameters`` (LightGBM) {``n_estimators`` 200, ``learning_rate``
    0.08, ``num_leaves`` 31, ``min_data_in_leaf`` 50, ``feature_fraction`` 0.9,
    ``lambda_l2`` 1.0, ``objective`` "regression", ``seed`` 42}.
    evaluation: ``plot_series`` 3, ``plot_points`` 120.
    The series key columns are ``requirements.grain`` without the time column (default
    ``["series_id"]``; several columns are joined with "|"), the label is
    ``requirements.labels[0]`` (default "sales").
"""

from __future__ import annotations

import json
import math
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import holidays
import lightgbm as lgb
import numpy as np
import pandas as pd
from scipy import signal
from threadpoolctl import threadpool_limits

from recipes import forecasting_config
from runs.families import lgb_watch, stage_config, worlds
from runs.metrics import forecasting as fm

NAME = "forecasting"
PREDICTION_COLUMN = "prediction"  # what predict() returns, as a score run's column
# Data larger than TRAIN_MAX_ROWS is sampled by whole series (grain keys), never by rows: a
# forecaster learns each series' lags, windows and seasonality from its consecutive history,
# which a row sample would leave full of gaps (runs.data.read_sample). A score run of more than
# SCORE_STREAM_ROWS rows keeps each series whole in one chunk for the same reason (its forecast
# is recursive): it streams only a file ordered by series, else scores it whole (runs.score_stream).
SAMPLE_BY_SERIES = True

HISTORY_DAYS = 1095
START_DATE = "2022-01-03"
PRODUCTS_PER_STORE = 10
DEFAULT_ROWS = 200 * HISTORY_DAYS

PRICE_ELASTICITY = -1.2
PROMO_DISCOUNT = 0.15
PROMO_WEEK_PROB = 0.12
NOISE_CV = 0.12
STORE_FORMATS = ("hyper", "super", "express")
FORMAT_PROB = (0.3, 0.45, 0.25)
FORMAT_LEVEL = {"hyper": 1.6, "super": 1.0, "express": 0.55}
WEEKLY_PROFILE = {  # Monday .. Sunday, mean 1
    "hyper": (0.85, 0.8, 0.85, 0.9, 1.1, 1.4, 1.1),
    "super": (0.9, 0.9, 0.95, 1.0, 1.1, 1.2, 0.95),
    "express": (1.1, 1.1, 1.1, 1.1, 1.05, 0.8, 0.75),
}
REGIONS = ("north", "south", "east", "west")
# An hourly world (``generate(..., hourly=True)``) spreads each day's demand over its hours:
# quiet nights, a lunchtime and an evening peak (express stores: a morning one instead).
_HOURS = np.arange(24)
HOURLY_PROFILE = {
    fmt: (lambda w: w * 24 / w.sum())(
        0.08 + np.exp(-(((_HOURS - first) / 2.0) ** 2)) + 1.2 * np.exp(-(((_HOURS - 18) / 2.5) ** 2))
    )
    for fmt, first in (("hyper", 12), ("super", 12), ("express", 8))
}
HOURLY_DAYS = 56  # an hourly batch holds the last 8 weeks of its window: 24 rows a day
ORIGIN = START_DATE  # the world's day 0
PERIOD_DAYS = 1
_CALENDAR = worlds.Calendar(ORIGIN, PERIOD_DAYS)
PRICE_STEP_PHI = 0.5
PRICE_STEP_SIGMA = 0.02
PRICE_DAY_SIGMA = 0.03
TREND_BREAK_DROP = 0.7
TREND_BREAK_PER_YEAR = -0.2
# The holiday world (concept "holidays"): the country whose public holidays move demand, and
# by how much (shoppers stock up the day before, stores are quiet on the day).
HOLIDAY_COUNTRY = "GB"
HOLIDAY_EVE_FACTOR = 1.6
HOLIDAY_FACTOR = 0.6
CONCEPTS = {
    "trend_break": (
        "Demand breaks its trend at the window's start: sales fall 30 % and keep falling "
        "20 % a year (prices and promotions unchanged)"
    ),
    "holidays": (
        f"Public holidays ({HOLIDAY_COUNTRY}) move demand: +60 % on the day before a holiday, "
        "-40 % on the holiday (no holiday column: the dates say it)"
    ),
    "holidays_trend_break": "Both: the holiday effects and the trend break at the window's start",
}
REGION_PEAK_DAY = {"north": 196, "south": 350, "east": 100, "west": 280}

SCHEMA = [
    {"name": "series_id", "dtype": "string", "role": "grain", "description": "Series key: store x product."},
    {"name": "store_id", "dtype": "string", "role": "segment", "description": "Store."},
    {"name": "product_id", "dtype": "string", "role": "segment", "description": "Product within the store."},
    {"name": "date", "dtype": "date", "role": "time", "description": "Calendar day."},
    {
        "name": "store_format",
        "dtype": "string",
        "role": "feature",
        "description": "Store format (hyper, super, express): sets the level and weekly profile.",
    },
    {
        "name": "region",
        "dtype": "string",
        "role": "feature",
        "description": "Region (north, south, east, west): sets the yearly peak.",
    },
    {"name": "promo", "dtype": "int", "role": "feature", "description": "1 on promotion days (whole weeks)."},
    {"name": "price", "dtype": "float", "role": "feature", "description": "Shelf price that day."},
    {"name": "sales", "dtype": "float", "role": "label", "description": "Units sold that day."},
]

FEATURE_SETS = {
    "demand_history": ["sales"],
    "calendar": ["date"],
    "promotions": ["promo"],
    "pricing": ["price"],
    "store_attributes": ["store_format", "region"],
}

ALGORITHMS = forecasting_config.ALGORITHMS
# predict() forecasts at most this many (series x period) cells at once (the LightGBM
# recursion holds 18 float32 features per cell: ~150 MB), in groups of series.
FORECAST_CELLS = 2_000_000
# A score run (runs.pipeline.score_rows) hands predict() this many rows at a time (whole
# series). Fewer, larger calls: each forecast period costs a booster call whatever the number
# of series in it, and predict() bounds its own memory with FORECAST_CELLS.
SCORE_CHUNK_ROWS = 1_000_000
CALENDAR_FEATURES = forecasting_config.CALENDAR_FEATURES
VALIDATION_METHODS = ("time_holdout", "rolling_origin")
# For a comparison's bootstrap (monitoring.comparison): the predictions column of the unit to
# resample (a whole series at a time; the default series key, ``requirements.grain`` without
# the time column), the metrics that are not a function of the rows (none here) and the
# predictions columns prediction_metrics reads (the only ones a replicate needs to copy).
BOOTSTRAP_GROUPS: list[str] = ["series_id"]
CONSTANT_METRICS: set[str] = set()
METRIC_COLUMNS: list[str] = ["actual", "prediction", "lower", "upper"]


# --------------------------------------------------------------------------- data


def _store_params(seed: int, store: int) -> dict:
    rng = np.random.default_rng([seed, 1, store])
    fmt = STORE_FORMATS[int(rng.choice(len(STORE_FORMATS), p=FORMAT_PROB))]
    region = REGIONS[int(rng.integers(len(REGIONS)))]
    factor = float(FORMAT_LEVEL[fmt] * rng.lognormal(0.0, 0.3))
    return {"store_format": fmt, "region": region, "store_factor": factor}


def _series_params(seed: int, store: int, product: int, sp: dict) -> dict:
    rng = np.random.default_rng([seed, 2, store, product])
    return {
        "series_id": f"s{store:03d}_p{product:02d}",
        "store_format": sp["store_format"],
        "region": sp["region"],
        "level": float(sp["store_factor"] * rng.lognormal(np.log(40.0), 0.5)),
        "trend_per_year": float(rng.normal(0.06, 0.08)),
        "weekly_strength": float(rng.uniform(0.7, 1.3)),
        "yearly_amplitude": float(rng.uniform(0.05, 0.35)),
        "peak_shift_days": float(rng.normal(0.0, 15.0)),
        "promo_lift": float(rng.uniform(1.2, 1.5)),
        "base_price": float(np.round(rng.uniform(1.5, 12.0), 2)),
    }


def layout(rows: int, days: int = HISTORY_DAYS) -> tuple[dict, int]:
    """The world of a ``rows``-row training batch (``max(1, rows // days)`` series) and its
    length in days."""
    return {"series": max(1, int(rows) // int(days))}, int(days)


def window_periods(world: dict, rows: int) -> int:
    """Days of every series that hold about ``rows`` rows (at least a week)."""
    return max(7, round(int(rows) / int(world["series"])))


def window_rows(world: dict, periods: int, rows: int | None = None) -> int:
    return int(world["series"]) * int(periods)


def describe_world(world: dict) -> str:
    n = int(world["series"])
    stores = -(-n // PRODUCTS_PER_STORE)
    return f"{n} store × product series in {stores} store{'s' if stores != 1 else ''}"


def holiday_days(dates: pd.DatetimeIndex) -> tuple[np.ndarray, np.ndarray]:
    """Masks over ``dates`` of ``HOLIDAY_COUNTRY``'s public holidays and of the days before
    them that are not holidays themselves."""
    days = pd.DatetimeIndex(dates).normalize()
    if not len(days):
        return np.zeros(0, dtype=bool), np.zeros(0, dtype=bool)
    years = range(days.year.min(), days.year.max() + 2)  # +1: the eve of 1 January
    calendar = pd.DatetimeIndex(sorted(holidays.country_holidays(HOLIDAY_COUNTRY, years=years)))
    on = days.isin(calendar)
    return on, days.isin(calendar - pd.Timedelta(days=1)) & ~on


def _concept_factor(concept: str | None, day_index: np.ndarray, break_day: int) -> np.ndarray:
    """The demand multiplier of a trend break that starts on ``break_day``."""
    if concept not in ("trend_break", "holidays_trend_break"):
        return np.ones(len(day_index))
    years_after = np.maximum(day_index - break_day, 0) / 365.25
    factor = TREND_BREAK_DROP * np.maximum(0.2, 1.0 + TREND_BREAK_PER_YEAR * years_after)
    return np.where(day_index >= break_day, factor, 1.0)


def _holiday_factor(concept: str | None, dates: pd.DatetimeIndex) -> np.ndarray | None:
    """The holiday concepts' demand multiplier of each day (None without one)."""
    if concept not in ("holidays", "holidays_trend_break"):
        return None
    on, eve = holiday_days(dates)
    return np.where(on, HOLIDAY_FACTOR, np.where(eve, HOLIDAY_EVE_FACTOR, 1.0))


def generate(
    rows: int,
    seed: int,
    *,
    days: int = HISTORY_DAYS,
    world: dict | None = None,
    window: dict | None = None,
    concept: str | None = None,
    hourly: bool = False,
) -> pd.DataFrame:
    """Synthetic daily demand of the world's series over a window (see module doc);
    ``hourly``: the same days' demand hour by hour (each day's mean spread over its hours by
    ``HOURLY_PROFILE``, each hour drawn on its own), ``date`` then being the hour.

    Without ``world``/``window``: ``max(1, rows // days)`` series x the first ``days`` days.
    The seed fixes every series' parameters; each kind of random draw has its own stream per
    series, indexed by day (week, quarter), so a day has the same data in every window that
    contains it. ``concept="trend_break"`` breaks the demand trend at the window's start;
    ``"holidays"`` adds the public holidays' effects (``"holidays_trend_break"``: both)."""
    days = int(days)
    if window is None and days < 14:
        raise ValueError("days must be at least 14")
    sizes, first = layout(rows, days)
    world = world or sizes
    start, length = (0, first) if window is None else worlds.span(_CALENDAR, window)
    n_series = int(world["series"])
    end = start + length
    if hourly:  # the window's last HOURLY_DAYS days, hour by hour (a day's draws are the same)
        start, length = max(start, end - HOURLY_DAYS), min(length, HOURLY_DAYS)
    # Every series is simulated from day 0 to the window's end (cheap: a few thousand
    # values) and cut to the window; each draw has its own stream, so a day's values are
    # the same in every window that contains it.
    day_index = np.arange(end)
    all_dates = pd.date_range(START_DATE, periods=end, freq="D")
    dates = all_dates[start:]
    dow = all_dates.day_of_week.to_numpy()
    doy = all_dates.day_of_year.to_numpy().astype(float)
    years = day_index / 365.25
    week_idx = day_index // 7
    quarter_idx = day_index // 91
    concept_factor = _concept_factor(concept, day_index, start)
    # The holiday days' sales are drawn on streams of their own, so every other day keeps the
    # draws it has without the concept (a Poisson stream's later draws depend on earlier means).
    holiday = _holiday_factor(concept, all_dates)
    moved = None if holiday is None else holiday != 1.0
    per_day = 24 if hourly else 1
    n = n_series * length * per_day
    cols = {
        name: np.empty(n, dtype=object) for name in ("series_id", "store_id", "product_id", "fmt", "region")
    }
    promo_all = np.empty(n, dtype=np.int64)
    price_all = np.empty(n, dtype=float)
    sales_all = np.empty(n, dtype=float)
    stores: dict[int, dict] = {}
    for i in range(n_series):
        store, product = divmod(i, PRODUCTS_PER_STORE)
        sp = stores.setdefault(store, _store_params(seed, store))
        p = _series_params(seed, store, product, sp)

        def stream(kind: int, _store=store, _product=product):
            return np.random.default_rng([seed, 3, _store, _product, kind])

        promo = (stream(0).random(week_idx[-1] + 1) < PROMO_WEEK_PROB)[week_idx].astype(np.int64)
        # the regular price moves every quarter around its base (AR(1), so it stays near it)
        steps = stream(1).normal(0.0, PRICE_STEP_SIGMA, quarter_idx[-1] + 1)
        steps[0] /= math.sqrt(1.0 - PRICE_STEP_PHI**2)
        drift = np.exp(signal.lfilter([1.0], [1.0, -PRICE_STEP_PHI], steps))[quarter_idx]
        shelf = np.exp(stream(4).normal(0.0, PRICE_DAY_SIGMA, end))  # the day's average price paid
        price = np.round(p["base_price"] * drift * shelf * (1.0 - PROMO_DISCOUNT * promo), 2)
        weekly = np.asarray(WEEKLY_PROFILE[p["store_format"]])[dow] ** p["weekly_strength"]
        peak = REGION_PEAK_DAY[p["region"]] + p["peak_shift_days"]
        yearly = 1.0 + p["yearly_amplitude"] * np.cos(2 * np.pi * (doy - peak) / 365.25)
        mean = (
            p["level"]
            * np.maximum(0.2, 1.0 + p["trend_per_year"] * years)
            * weekly
            * yearly
            * (price / p["base_price"]) ** PRICE_ELASTICITY
            * p["promo_lift"] ** promo
            * concept_factor
        )
        if hourly:
            hour_mean = mean[:, None] * HOURLY_PROFILE[p["store_format"]][None, :] / 24.0
            noise = stream(5).gamma(1.0 / NOISE_CV**2, NOISE_CV**2, (end, 24))
            sales = stream(6).poisson(hour_mean * noise).astype(float)
            if moved is not None:
                lam = hour_mean[moved] * holiday[moved][:, None] * noise[moved]
                sales[moved] = stream(8).poisson(lam)
            sales = sales[start:].ravel()
            promo, price = np.repeat(promo[start:], 24), np.repeat(price[start:], 24)
        else:
            noise = stream(2).gamma(1.0 / NOISE_CV**2, NOISE_CV**2, end)
            sales = stream(3).poisson(mean * noise).astype(float)
            if moved is not None:
                sales[moved] = stream(7).poisson(mean[moved] * holiday[moved] * noise[moved])
            sales = sales[start:]
            promo, price = promo[start:], price[start:]
        sl = slice(i * length * per_day, (i + 1) * length * per_day)
        cols["series_id"][sl] = p["series_id"]
        cols["store_id"][sl] = f"s{store:03d}"
        cols["product_id"][sl] = f"p{product:02d}"
        cols["fmt"][sl] = p["store_format"]
        cols["region"][sl] = p["region"]
        promo_all[sl] = promo
        price_all[sl] = price
        sales_all[sl] = sales
    return pd.DataFrame(
        {
            "series_id": pd.Series(cols["series_id"], dtype="str"),
            "store_id": pd.Series(cols["store_id"], dtype="str"),
            "product_id": pd.Series(cols["product_id"], dtype="str"),
            "date": np.tile(
                (dates.repeat(24) + pd.to_timedelta(np.tile(_HOURS, len(dates)), unit="h")).to_numpy()
                if hourly
                else dates.to_numpy(),
                n_series,
            ),
            "store_format": pd.Series(cols["fmt"], dtype="str"),
            "region": pd.Series(cols["region"], dtype="str"),
            "promo": promo_all,
            "price": price_all,
            "sales": sales_all,
        }
    )


def generate_options(manifest: dict) -> dict:
    """How a recipe's synthetic batches are generated (``worlds.generate``): an hourly recipe
    gets the world hour by hour (``hourly=True``), every other frequency the daily world its
    feature_prep aggregates."""
    freq = forecasting_config.frequency(stage_config(manifest, "feature_prep").get("frequency", "D"))
    return {"hourly": True} if freq == "H" else {}


def ground_truth(seed: int) -> dict:
    """The constants behind ``generate`` and the parameters of its first 10 series."""
    series = []
    stores: dict[int, dict] = {}
    for i in range(10):
        store, product = divmod(i, PRODUCTS_PER_STORE)
        sp = stores.setdefault(store, _store_params(seed, store))
        series.append(_series_params(seed, store, product, sp))
    return {
        "history_days": HISTORY_DAYS,
        "start_date": START_DATE,
        "products_per_store": PRODUCTS_PER_STORE,
        "price_elasticity": PRICE_ELASTICITY,
        "promo_discount": PROMO_DISCOUNT,
        "promo_week_probability": PROMO_WEEK_PROB,
        "promo_lift_range": [1.2, 1.5],
        "noise_cv": NOISE_CV,
        "weekly_profile": {k: list(v) for k, v in WEEKLY_PROFILE.items()},
        "format_level": dict(FORMAT_LEVEL),
        "region_peak_day": dict(REGION_PEAK_DAY),
        "season_lengths_days": [7, 365.25],
        "holidays": {  # concept "holidays": the demand multipliers
            "country": HOLIDAY_COUNTRY,
            "day_before_factor": HOLIDAY_EVE_FACTOR,
            "holiday_factor": HOLIDAY_FACTOR,
        },
        "series": series,
    }


# --------------------------------------------------------------------------- configuration


def _check(manifest: dict) -> None:
    """The settings recipes.forecasting_config allows (what validating the version checked):
    ValueError with the first problem, named by its path, for a manifest that was not."""
    problems = forecasting_config.check(manifest)
    if problems:
        path, message = problems[0]
        raise ValueError(f"{'.'.join(map(str, path))}: {message}")


def _spec(manifest: dict) -> dict:
    """Column roles and the feature_prep config, with defaults filled in."""
    _check(manifest)
    cfg = stage_config(manifest, "feature_prep")
    freq = forecasting_config.frequency(cfg.get("frequency", "D"))
    defaults = forecasting_config.PERIOD_DEFAULTS[freq]
    time_col = str(cfg.get("time_column", "date"))
    req = manifest.get("requirements", {}) or {}
    grain = req.get("grain") or ["series_id", time_col]
    if isinstance(grain, str):
        grain = [g.strip() for g in grain.split(",") if g.strip()]
    series_cols = [g for g in grain if g != time_col] or ["series_id"]
    labels = req.get("labels") or ["sales"]
    calendar = list(cfg.get("calendar_features", defaults["calendar_features"]))
    lags = sorted({int(k) for k in cfg.get("lags", defaults["lags"])})
    windows = sorted({int(w) for w in cfg.get("rolling_windows", defaults["rolling_windows"])})
    return {
        "frequency": freq,
        "time_column": time_col,
        "series_columns": series_cols,
        "label": str(labels[0]),
        "lags": lags,
        "rolling_windows": windows,
        "calendar_features": calendar,
        "known_features": list(cfg.get("known_features", ["promo", "price"])),
        "static_features": list(cfg.get("static_features", ["store_format", "region"])),
    }


def _train_config(manifest: dict, spec: dict) -> dict:
    cfg = stage_config(manifest, "training")
    defaults = forecasting_config.PERIOD_DEFAULTS[spec["frequency"]]
    algorithm = str(cfg.get("algorithm", "auto"))
    candidates = list(cfg.get("candidates", list(forecasting_config.DEFAULT_CANDIDATES)))
    horizon_days = int(cfg.get("horizon", 28))
    level = float(cfg.get("interval_level", 0.9))
    stat_level = str(cfg.get("stat_level", "total"))
    ets = {"trend": "add", "damped_trend": True, "seasonal": "mul"} | dict(cfg.get("ets") or {})
    arima = {
        "order": [1, 0, 1],
        "seasonal_order": defaults["arima_seasonal_order"],
        "trend": "c",
        "maxiter": 50,
    } | dict(cfg.get("arima") or {})
    hp = {
        "n_estimators": 200,
        "learning_rate": 0.08,
        "num_leaves": 31,
        "min_data_in_leaf": 50,
        "feature_fraction": 0.9,
        "lambda_l2": 1.0,
        "objective": "regression",
        "seed": 42,
    } | dict(cfg.get("hyperparameters") or {})
    return {
        "algorithm": algorithm,
        "candidates": candidates if algorithm == "auto" else [algorithm],
        "horizon_days": horizon_days,
        "horizon_periods": forecasting_config.horizon_periods(horizon_days, spec["frequency"]),
        "season_length": int(cfg.get("season_length", defaults["season_length"])),
        "interval_level": level,
        "stat_level": stat_level,
        "stat_history": int(cfg.get("stat_history", defaults["stat_history"])),
        "share_window": int(cfg.get("share_window", defaults["share_window"])),
        "max_forecast_periods": int(cfg.get("max_forecast_periods", defaults["max_forecast_periods"])),
        "ets": ets,
        "arima": arima,
        "hyperparameters": hp,
        "holidays": cfg.get("holidays"),
        "prophet": {
            "seasonality_mode": "additive",
            "changepoint_prior_scale": 0.05,
            "uncertainty_samples": 200,
        }
        | dict(cfg.get("prophet") or {}),
        "lstm": dict(forecasting_config.LSTM_DEFAULTS) | dict(cfg.get("lstm") or {}),
    }


# --------------------------------------------------------------------------- frames and panels


def _require(df: pd.DataFrame, columns: list[str]) -> None:
    for col in columns:
        if col not in df.columns:
            raise ValueError(f"missing column '{col}'")


# pandas' period of each frequency: a week runs Monday to Sunday, a quarter is a calendar one.
_PANDAS_PERIOD = forecasting_config.PANDAS_PERIODS


def _period_start(values, freq: str) -> pd.Series:
    """The start of the period (of ``freq``) each timestamp falls in: its hour, day, Monday,
    first of the month or of the quarter."""
    dates = pd.to_datetime(pd.Series(values).reset_index(drop=True))
    if freq == "H":
        return dates.dt.floor("h")
    dates = dates.dt.normalize()
    if freq == "D":
        return dates
    if freq == "W":
        return dates - pd.to_timedelta(dates.dt.day_of_week, unit="D")
    return dates.dt.to_period(_PANDAS_PERIOD[freq]).dt.start_time


def _ordinals(dates, freq: str) -> np.ndarray:
    """Each period start's number on the frequency's calendar (consecutive periods differ by 1)."""
    return pd.PeriodIndex(pd.DatetimeIndex(dates), freq=_PANDAS_PERIOD[freq]).asi8.astype(np.int64)


def _period_dates(first, periods: int, freq: str) -> pd.DatetimeIndex:
    """``periods`` consecutive period starts from the period of ``first``."""
    p = _PANDAS_PERIOD[freq]
    return pd.period_range(
        start=pd.Period(pd.Timestamp(first), freq=p), periods=periods, freq=p
    ).to_timestamp(how="start")


def _iso(stamp, freq: str) -> str:
    """A period start as text: the date, or the date and hour for hourly series."""
    stamp = pd.Timestamp(stamp)
    return stamp.isoformat() if freq == "H" else stamp.date().isoformat()


def _series_keys(df: pd.DataFrame, series_cols: list[str]) -> np.ndarray:
    if len(series_cols) == 1:
        return df[series_cols[0]].astype(str).to_numpy(dtype=object)
    return df[series_cols].astype(str).agg("|".join, axis=1).to_numpy(dtype=object)


def _normalise(df: pd.DataFrame, spec: dict, *, require_label: bool = True) -> pd.DataFrame:
    """Typed, sorted, one row per (series, period); weekly data aggregated (see prepare)."""
    time_col, label, series_cols = spec["time_column"], spec["label"], spec["series_columns"]
    _require(df, [*series_cols, time_col] + ([label] if require_label else []))
    out = df.reset_index(drop=True).copy()
    freq = spec["frequency"]
    raw = pd.to_datetime(out[time_col])
    starts = _period_start(raw, freq)
    out[time_col] = starts.to_numpy()
    # Data finer than the periods (days of a week, a month, a quarter) are summed into them.
    finer = freq in ("W", "M", "Q") and bool((raw.dt.normalize().to_numpy() != starts.to_numpy()).any())
    out["_day"] = raw.dt.normalize().to_numpy()
    keys = [*series_cols, time_col]
    out = out.dropna(subset=keys)
    if label in out.columns:
        out[label] = pd.to_numeric(out[label], errors="coerce").clip(lower=0)
    if finer or out.duplicated(keys).any():
        agg = {}
        for col in out.columns:
            if col in keys:
                continue
            numeric = pd.api.types.is_numeric_dtype(out[col])
            if col == label:
                agg[col] = "sum"
            elif col in spec["known_features"] and numeric:
                agg[col] = "mean"
            else:
                agg[col] = "first"
        if label in out.columns:
            out["_labelled"] = out[label].notna().astype(np.int64)
            agg["_labelled"] = "sum"
        agg["_day"] = "nunique"
        grouped = out.groupby(keys, sort=True, as_index=False).agg(agg)
        if label in grouped.columns:
            grouped.loc[grouped["_labelled"] == 0, label] = np.nan
        if finer:  # a partial first or last period would look like a demand drop
            t = grouped[time_col]
            days = ((t + _PERIOD_OFFSET[freq]) - t).dt.days.to_numpy()  # the period's length
            grouped = grouped[
                ~(((t == t.min()) | (t == t.max())).to_numpy() & (grouped["_day"].to_numpy() < days))
            ]
        out = grouped[[c for c in df.columns if c in grouped.columns]]
    else:
        out = out.drop(columns="_day").sort_values(keys, kind="stable")
    return out.reset_index(drop=True)


_PERIOD_OFFSET = {
    "W": pd.offsets.Week(1),
    "M": pd.offsets.MonthBegin(1),
    "Q": pd.offsets.QuarterBegin(1, startingMonth=1),
}


@dataclass
class _Panel:
    keys: list[str]
    dates: pd.DatetimeIndex
    y: np.ndarray  # (n_series, n_periods), NaN where missing
    known: dict[str, np.ndarray] = field(default_factory=dict)
    static: dict[str, list[str]] = field(default_factory=dict)
    series_values: dict[str, list] = field(default_factory=dict)

    def head(self, periods: int) -> _Panel:
        return _Panel(
            self.keys,
            self.dates[:periods],
            self.y[:, :periods],
            {k: v[:, :periods] for k, v in self.known.items()},
            self.static,
            self.series_values,
        )


def _build_panel(df: pd.DataFrame, spec: dict, known: list[str], static: list[str]) -> _Panel:
    keys = _series_keys(df, spec["series_columns"])
    codes, uniq = pd.factorize(pd.Series(keys, dtype=object).astype(str), sort=True)
    dates = pd.to_datetime(df[spec["time_column"]])
    ordinal = _ordinals(dates, spec["frequency"])
    t_idx = ordinal - ordinal.min()
    n, t = len(uniq), int(t_idx.max()) + 1
    y = np.full((n, t), np.nan)
    y[codes, t_idx] = df[spec["label"]].to_numpy(dtype=float)
    kn = {}
    for f in known:
        m = np.full((n, t), np.nan)
        m[codes, t_idx] = pd.to_numeric(df[f], errors="coerce").to_numpy(dtype=float)
        kn[f] = m
    firsts = (
        pd.DataFrame({c: df[c].to_numpy() for c in {*static, *spec["series_columns"]}}).groupby(codes).first()
    )
    return _Panel(
        keys=[str(k) for k in uniq],
        dates=_period_dates(dates.min(), t, spec["frequency"]),
        y=y,
        known=kn,
        static={c: [str(v) for v in firsts[c]] for c in static},
        series_values={
            c: [v.item() if hasattr(v, "item") else v for v in firsts[c]] for c in spec["series_columns"]
        },
    )


# --------------------------------------------------------------------------- components


def _to_json(a) -> list:
    a = np.asarray(a, dtype=float)
    if a.ndim == 1:
        return [None if math.isnan(v) else float(v) for v in a.tolist()]
    return [_to_json(row) for row in a]


def _arr(values) -> np.ndarray:
    return np.asarray(values, dtype=float)


def _future_dates(last_date: pd.Timestamp, periods: int, freq: str) -> pd.DatetimeIndex:
    return _period_dates(last_date, periods + 1, freq)[1:]


def _fit_naive(panel: _Panel, tc: dict) -> dict:
    m = max(1, min(tc["season_length"], panel.y.shape[1]))
    last = panel.y[:, -m:].copy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fill = np.nanmean(panel.y[:, -4 * m :], axis=1)
    fill = np.where(np.isnan(fill), 0.0, fill)
    last = np.where(np.isnan(last), fill[:, None], last)
    return {"last_season": _to_json(last)}


def _forecast_naive(state: dict, periods: int, series: np.ndarray | None = None) -> np.ndarray:
    last = _arr(state["last_season"])
    if series is not None:
        last = last[series]
    m = last.shape[1]
    return last[:, np.arange(periods) % m]


def _cycle_positions(dates: pd.DatetimeIndex, freq: str) -> tuple[np.ndarray, int]:
    """Each period's place in the short cycle a top-down split keeps (the weekday of a day,
    the hour of an hour; none for longer periods) and the cycle's length."""
    if freq == "D":
        return dates.day_of_week.to_numpy(), 7
    if freq == "H":
        return dates.hour.to_numpy(), 24
    return np.zeros(len(dates), dtype=np.int64), 1


def _fill_gaps(x: np.ndarray) -> np.ndarray:
    s = pd.Series(x).interpolate(limit_direction="both")
    return s.fillna(0.0).to_numpy(dtype=float)


def _stat_path(algo: str, x: np.ndarray, tc: dict, periods: int, log) -> np.ndarray:
    from statsmodels.tsa.holtwinters import ExponentialSmoothing
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    m = tc["season_length"]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if algo == "ets":
                e = tc["ets"]
                seasonal = e.get("seasonal") if m >= 2 and len(x) >= 2 * m + 2 else None
                trend = e.get("trend")
                if (seasonal == "mul" or trend == "mul") and x.min() <= 0:
                    seasonal = "add" if seasonal else None
                    trend = "add" if trend else None
                res = ExponentialSmoothing(
                    x,
                    trend=trend,
                    damped_trend=bool(e.get("damped_trend")) and trend is not None,
                    seasonal=seasonal,
                    seasonal_periods=m if seasonal else None,
                    initialization_method="estimated",
                ).fit()
            else:
                a = tc["arima"]
                seasonal = [int(v) for v in a["seasonal_order"]]
                if m < 2 or len(x) < (seasonal[1] + 2) * m + 10:
                    seasonal = [0, 0, 0]
                res = SARIMAX(
                    x,
                    order=tuple(int(v) for v in a["order"]),
                    seasonal_order=(*seasonal, m if any(seasonal) else 0),
                    trend=a.get("trend"),
                ).fit(disp=False, maxiter=int(a.get("maxiter", 50)))
            path = np.asarray(res.forecast(periods), dtype=float)
        if not np.all(np.isfinite(path)):
            raise ValueError("non-finite forecast")
    except Exception as exc:  # a failed fit falls back to repeating the last season
        log(f"{algo}: fit failed ({exc}); using the last season instead")
        season = x[-max(1, m) :]
        path = season[np.arange(periods) % len(season)]
    return np.clip(path, 0.0, None)


def _fit_stat(algo: str, panel: _Panel, tc: dict, spec: dict, log) -> dict:
    hist = min(tc["stat_history"], panel.y.shape[1])
    y = panel.y[:, -hist:]
    periods = max(tc["max_forecast_periods"], tc["horizon_periods"])
    state: dict = {"level": tc["stat_level"]}
    if tc["stat_level"] == "total":
        total = np.nansum(y, axis=0)
        state["paths"] = _to_json(_stat_path(algo, total, tc, periods, log)[None, :])
        window = min(tc["share_window"], panel.y.shape[1])
        yw = panel.y[:, -window:]
        pos, cycle = _cycle_positions(panel.dates[-window:], spec["frequency"])
        shares = np.full((len(panel.keys), cycle), 1.0 / len(panel.keys))
        for k in range(cycle):
            cols = pos == k
            if cols.any():
                num = np.nansum(yw[:, cols], axis=1)
                den = num.sum()
                if den > 0:
                    shares[:, k] = num / den
        state["shares"] = _to_json(shares)
    else:
        state["paths"] = _to_json(
            np.stack([_stat_path(algo, _fill_gaps(row), tc, periods, log) for row in y])
        )
    return state


def _forecast_stat(
    state: dict, future: pd.DatetimeIndex, freq: str, series: np.ndarray | None = None
) -> np.ndarray:
    paths = _arr(state["paths"])
    periods = len(future)
    if periods > paths.shape[1]:
        raise ValueError(
            f"the model's statistical forecast reaches {paths.shape[1]} periods past its history; "
            f"{periods} requested (raise training.max_forecast_periods)"
        )
    if state["level"] == "series":
        return (paths if series is None else paths[series])[:, :periods].copy()
    shares = _arr(state["shares"])
    if series is not None:
        shares = shares[series]
    pos = _cycle_positions(future, freq)[0] % shares.shape[1]
    return paths[0, :periods][None, :] * shares[:, pos]


def _lgb_feature_names(spec: dict, known: list[str], static: list[str]) -> list[str]:
    names = [f"lag_{k}" for k in spec["lags"]]
    names += [f"rolling_mean_{w}" for w in spec["rolling_windows"]]
    names += list(spec["calendar_features"])
    for f in known:
        names += [f, f"{f}_rel"]
    names += [f"static_{c}" for c in static]
    names.append("log_scale")
    return names


def _calendar(dates: pd.DatetimeIndex, name: str) -> np.ndarray:
    if name == "weekofyear":
        return dates.isocalendar().week.to_numpy(dtype=float)
    attr = {"dayofweek": "day_of_week", "dayofmonth": "day", "dayofyear": "day_of_year"}.get(name, name)
    # "hour" is dates.hour: 0 for every period longer than an hour
    return np.asarray(getattr(dates, attr), dtype=float)


def _lgb_features(
    ys: np.ndarray,
    cols: np.ndarray,
    dates: pd.DatetimeIndex,
    known: dict[str, np.ndarray],
    st: dict,
    spec: dict,
) -> np.ndarray:
    """Features at columns ``cols`` of the scaled matrix ``ys``: array (n_series, len(cols), F).

    ``dates`` are the dates of ``cols``; ``known[f]`` the known feature values at ``cols``.
    Lag ``k`` at column ``c`` is ``ys[:, c - k]``; rolling mean ``w`` is the mean of the
    non-missing values in ``ys[:, c - w : c]``.
    """
    n, c = ys.shape[0], len(cols)
    width = len(spec["lags"]) + len(spec["rolling_windows"]) + len(spec["calendar_features"])
    out = np.empty((n, c, width + 2 * len(st["known"]) + len(st["static"]) + 1), dtype=np.float32)
    j = 0
    for k in spec["lags"]:
        idx = cols - k
        out[:, :, j] = ys[:, np.clip(idx, 0, None)]
        out[:, idx < 0, j] = np.nan
        j += 1
    if spec["rolling_windows"]:
        filled = np.where(np.isnan(ys), 0.0, ys)
        csum = np.concatenate([np.zeros((n, 1)), np.cumsum(filled, axis=1)], axis=1)
        ccnt = np.concatenate([np.zeros((n, 1)), np.cumsum(~np.isnan(ys), axis=1)], axis=1)
        for w in spec["rolling_windows"]:
            lo = np.clip(cols - w, 0, None)
            cnt = ccnt[:, cols] - ccnt[:, lo]
            with np.errstate(invalid="ignore", divide="ignore"):
                out[:, :, j] = np.where(cnt > 0, (csum[:, cols] - csum[:, lo]) / cnt, np.nan)
            j += 1
    for name in spec["calendar_features"]:
        out[:, :, j] = _calendar(dates, name)[None, :]
        j += 1
    means = st["known_means"]
    for f in st["known"]:
        v = known[f]
        mean = _arr(means[f])[:, None]
        out[:, :, j] = v
        with np.errstate(invalid="ignore", divide="ignore"):
            out[:, :, j + 1] = np.where(mean != 0, v / mean, np.nan)
        j += 2
    for col in st["static"]:
        out[:, :, j] = _arr(st["static_codes"][col])[:, None]
        j += 1
    out[:, :, j] = np.log(_arr(st["scale"]))[:, None]
    return out


def _fit_lgb(
    panel: _Panel,
    tc: dict,
    spec: dict,
    known: list[str],
    static: list[str],
    threads: int,
    log,
    callbacks: list | None = None,
    valid_panel: _Panel | None = None,
) -> dict:
    """A global LightGBM model on ``panel``. With ``callbacks`` (appended to
    ``lightgbm.train``'s) the loss is evaluated per iteration on the training rows and, given
    ``valid_panel`` (``panel`` followed by later periods), on those later periods one step
    ahead (their lags are the actual sales, in the same scaled units as the training target);
    the booster is the same with or without."""
    y = panel.y
    n, t = y.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.nanmean(y, axis=1)
        known_means = {f: np.nanmean(panel.known[f], axis=1) for f in known}
        known_fill = {f: np.nanmedian(panel.known[f], axis=1) for f in known}
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    categories = {c: sorted(set(panel.static[c])) for c in static}
    st = {
        "known": known,
        "static": static,
        "scale": scale.tolist(),
        "known_means": {f: _to_json(np.nan_to_num(v, nan=0.0)) for f, v in known_means.items()},
        "known_fill": {f: _to_json(np.nan_to_num(v, nan=0.0)) for f, v in known_fill.items()},
        "static_categories": categories,
        "static_codes": {c: [float(categories[c].index(v)) for v in panel.static[c]] for c in static},
    }
    ys = y / scale[:, None]
    cols = np.arange(min(spec["lags"]), t)
    if len(cols) == 0:
        raise ValueError("not enough history for the LightGBM lags")
    x = _lgb_features(ys, cols, panel.dates[cols], {f: panel.known[f][:, cols] for f in known}, st, spec)
    target = ys[:, cols]
    keep = ~np.isnan(target) & ~np.isnan(x[:, :, 0])
    x, target = x[keep], target[keep]
    names = _lgb_feature_names(spec, known, static)
    hp = dict(tc["hyperparameters"])
    rounds = int(hp.pop("n_estimators", 200))
    params = {
        "objective": "regression",
        "verbose": -1,
        "num_threads": int(threads),
        "deterministic": True,
        "force_row_wise": True,
    } | hp
    params["num_threads"], params["verbose"] = int(threads), -1
    cat_idx = [names.index(f"static_{c}") for c in static]
    data = lgb.Dataset(x, target, feature_name=names, categorical_feature=cat_idx, free_raw_data=True)
    valid_set = _lgb_valid_set(valid_panel, t, st, spec, known, data) if callbacks else None
    booster = lgb.train(params, data, num_boost_round=rounds, **lgb_watch(callbacks, data, valid_set))
    log(f"lightgbm: {len(target)} training rows, {len(names)} features, {rounds} rounds")
    tail = max([*spec["lags"], *spec["rolling_windows"]])
    st["tail"] = _to_json(y[:, -tail:] if t >= tail else np.hstack([np.full((n, tail - t), np.nan), y]))
    st["feature_names"] = names
    st["booster"] = lgb.Booster(model_str=booster.model_to_string())
    return st


def _lgb_valid_set(valid_panel: _Panel | None, t: int, st: dict, spec: dict, known: list[str], data):
    """The periods of ``valid_panel`` after the first ``t`` as a one-step-ahead LightGBM
    validation set (features from the actual history, scaled by the training state ``st``),
    or None when there are none."""
    if valid_panel is None or valid_panel.y.shape[1] <= t:
        return None
    ys = valid_panel.y / _arr(st["scale"])[:, None]
    cols = np.arange(t, ys.shape[1])
    x = _lgb_features(
        ys, cols, valid_panel.dates[cols], {f: valid_panel.known[f][:, cols] for f in known}, st, spec
    )
    target = ys[:, cols]
    keep = ~np.isnan(target) & ~np.isnan(x[:, :, 0])
    if not keep.any():
        return None
    return lgb.Dataset(x[keep], target[keep], reference=data, free_raw_data=True)


def _forecast_lgb(
    st: dict,
    spec: dict,
    future: pd.DatetimeIndex,
    known_future: dict[str, np.ndarray],
    series: np.ndarray | None = None,
) -> np.ndarray:
    """The recursive LightGBM forecast (series x len(future)) of the model's series ``series``
    (indices; all when None); ``known_future[f]`` holds their known features per future period.

    One booster call per period for all the series at once; the features that do not depend
    on earlier forecasts (calendar, known, static, scale) are built for every period up
    front, and the rolling sums grow by one column per period, so the cost is linear in
    series x periods. Every feature is the value ``_lgb_features`` gives for that period
    (the same arithmetic in the same order: ``test_family_forecasting`` checks the
    forecasts against a step-by-step reference)."""
    ys, _, _, width, scale = _lgb_recursion(st, spec, future, known_future, series)
    return ys[:, width:] * scale[:, None]


def _lgb_local(st: dict, series: np.ndarray | None) -> dict:
    """The LightGBM state of the series ``series`` (indices; all when None)."""
    if series is None:
        return st
    return {
        **st,
        "tail": _arr(st["tail"])[series],
        "scale": _arr(st["scale"])[series],
        "known_means": {f: _arr(v)[series] for f, v in st["known_means"].items()},
        "static_codes": {c: _arr(v)[series] for c, v in st["static_codes"].items()},
    }


def _lgb_history_features(x, ys, csum, ccnt, c, lags: list[int], windows: list[int], rows=None) -> None:
    """Set the lag and rolling-mean columns of ``x`` (row ``i`` of ``x`` at column ``c`` of
    row ``rows[i]`` of ``ys``, ``rows`` all of them in order when None; ``c`` a number or one
    per row) from the values before ``c``, in place."""
    rows = np.arange(len(x)) if rows is None else rows
    for i, k in enumerate(lags):
        at = c - k
        x[:, i] = np.where(at >= 0, ys[rows, np.clip(at, 0, None)], np.nan)
    for i, w in enumerate(windows, start=len(lags)):
        lo = np.maximum(c - w, 0)
        cnt = ccnt[rows, c] - ccnt[rows, lo]
        with np.errstate(invalid="ignore", divide="ignore"):
            x[:, i] = np.where(cnt > 0, (csum[rows, c] - csum[rows, lo]) / cnt, np.nan)


def _lgb_recursion(st, spec, future, known_future, series=None):
    """The recursion of ``_forecast_lgb``: ``(ys, csum, ccnt, width, scale)``, ``ys`` the
    scaled history tail followed by the forecasts, ``csum``/``ccnt`` the running sums and
    counts of its non-missing values (``csum[:, c]`` over ``ys[:, :c]``)."""
    local = _lgb_local(st, series)
    tail, scale = _arr(local["tail"]), _arr(local["scale"])
    n, width = tail.shape
    periods = len(future)
    ys = np.hstack([tail / scale[:, None], np.full((n, periods), np.nan)])
    cols = width + np.arange(periods)
    # Every column for every period: lags and rolling means are wrong here (the periods they
    # read are not forecast yet) and are set period by period below.
    features = _lgb_features(ys, cols, future, known_future, local, spec)
    lags = [int(k) for k in spec["lags"]]
    windows = [int(w) for w in spec["rolling_windows"]]
    total = ys.shape[1]
    # csum[:, c] / ccnt[:, c]: sum and count of the non-missing values of ys[:, :c] (as the
    # cumulative sums in _lgb_features), extended by one column per forecast period.
    csum = np.zeros((n, total + 1))
    ccnt = np.zeros((n, total + 1), dtype=np.int64)
    head = ys[:, :width]
    csum[:, 1 : width + 1] = np.cumsum(np.where(np.isnan(head), 0.0, head), axis=1)
    ccnt[:, 1 : width + 1] = np.cumsum(~np.isnan(head), axis=1)
    booster = st["booster"]
    for j in range(periods):
        c = width + j
        x = features[:, j, :].copy()
        _lgb_history_features(x, ys, csum, ccnt, c, lags, windows)
        pred = np.clip(booster.predict(x, num_threads=1), 0.0, None)
        ys[:, c] = pred
        csum[:, c + 1] = csum[:, c] + np.where(np.isnan(pred), 0.0, pred)
        ccnt[:, c + 1] = ccnt[:, c] + ~np.isnan(pred)
    return ys, csum, ccnt, width, scale


# _lgb_usual's cache: the usual-path recursions of the last few LightGBM forecasters (an
# explained row reads its series' path; recomputing it cost one booster call per period, most
# of a one-row explanation's time), for models whose series x periods fit USUAL_CACHE_CELLS
# (about 24 bytes a cell: 2M cells ~ 48 MB).
USUAL_CACHE_MODELS = 4
USUAL_CACHE_CELLS = 2_000_000
_usual_cache: dict[int, tuple] = {}


def _lgb_usual(st: dict, spec: dict, last: pd.Timestamp, periods: int, series: np.ndarray, horizon: int):
    """``_lgb_recursion`` of the series ``series`` for ``periods`` periods with every known
    feature at the series' usual value (``known_fill``): the history an explained row reads.
    Computed for all the model's series (at least its horizon) and kept while it fits the
    cache; the rows of ``series`` of it (a series' recursion does not depend on the others)."""
    booster = st["booster"]
    n = len(st["scale"])
    want = max(periods, int(horizon))
    hit = _usual_cache.get(id(booster))
    if hit is not None and hit[0] is booster and hit[1] >= periods:
        _, _, ys, csum, ccnt, width, scale = hit
        return ys[series], csum[series], ccnt[series], width, scale[series]
    if n * want > USUAL_CACHE_CELLS:
        everyone, want = series, periods
    else:
        everyone = np.arange(n)
    future = _future_dates(last, want, spec["frequency"])
    usual = {f: np.repeat(_arr(st["known_fill"][f])[everyone][:, None], want, axis=1) for f in st["known"]}
    ys, csum, ccnt, width, scale = _lgb_recursion(st, spec, future, usual, everyone)
    if len(everyone) != n:
        return ys, csum, ccnt, width, scale
    while len(_usual_cache) >= USUAL_CACHE_MODELS:
        _usual_cache.pop(next(iter(_usual_cache)))
    _usual_cache[id(booster)] = (booster, want, ys, csum, ccnt, width, scale)
    return ys[series], csum[series], ccnt[series], width, scale[series]


def _lgb_alone(
    st: dict,
    spec: dict,
    last: pd.Timestamp,
    s_idx: np.ndarray,
    steps: np.ndarray,
    known: dict,
    horizon: int = 0,
) -> np.ndarray:
    """Each row's LightGBM forecast as if it were the only row of its call: row ``i`` of
    series ``s_idx[i]`` at period ``steps[i]`` with the known features ``known[f][i]`` there
    (NaN: the series' usual value) and the series' usual values (``known_fill``) before it.
    Those earlier periods are the same for every row of a series, so each series' recursion
    runs once (up to its furthest row) and only the rows' own periods are predicted per row,
    in one booster call: the same arithmetic as one ``_forecast_rows`` call per row."""
    series, where = np.unique(s_idx, return_inverse=True)
    periods = int(steps.max())
    future = _future_dates(last, periods, spec["frequency"])
    fill = {f: _arr(st["known_fill"][f])[series] for f in st["known"]}
    ys, csum, ccnt, width, scale = _lgb_usual(st, spec, last, periods, series, horizon)
    # Each row's own period: its features as _lgb_features builds them for its series, by
    # period (the calendar is per period). Its lags and rolling means are set from the series'
    # recursion below, so _lgb_features gets an empty history (one missing column) here.
    x = None
    values = {f: np.where(np.isnan(known[f]), fill[f][where], known[f]) for f in st["known"]}
    for step in np.unique(steps):
        hit = np.flatnonzero(steps == step)
        part = _lgb_features(
            np.full((len(hit), 1), np.nan),
            np.zeros(1, dtype=np.int64),
            future[step - 1 : step],
            {f: v[hit][:, None] for f, v in values.items()},
            _lgb_local(st, series[where[hit]]),
            spec,
        )
        if x is None:
            x = np.empty((len(steps), part.shape[2]), dtype=part.dtype)
        x[hit] = part[:, 0, :]
    c = width + steps - 1
    lags = [int(k) for k in spec["lags"]]
    windows = [int(w) for w in spec["rolling_windows"]]
    _lgb_history_features(x, ys, csum, ccnt, c, lags, windows, where)
    pred = np.clip(st["booster"].predict(x, num_threads=1), 0.0, None)
    return pred * scale[where]


# Prophet's seasonalities by frequency: what a period of that length can show.
_PROPHET_SEASONS = {
    "H": {"daily_seasonality": True, "weekly_seasonality": True, "yearly_seasonality": False},
    "D": {"daily_seasonality": False, "weekly_seasonality": True, "yearly_seasonality": True},
    "W": {"daily_seasonality": False, "weekly_seasonality": False, "yearly_seasonality": True},
    "M": {"daily_seasonality": False, "weekly_seasonality": False, "yearly_seasonality": True},
    "Q": {"daily_seasonality": False, "weekly_seasonality": False, "yearly_seasonality": True},
}


def _holiday_frame(config: dict | None, dates: pd.DatetimeIndex) -> pd.DataFrame | None:
    """The manifest's explicit holiday dates as Prophet's holidays frame (a country's holidays
    are added with ``add_country_holidays``)."""
    if not config or not config.get("dates"):
        return None
    return pd.DataFrame({"holiday": "holiday", "ds": pd.to_datetime(config["dates"])})


def _stan_arrays(prepare):
    """Prophet's CmdStanPy backend (``prepare_data``) hands Stan its data as Python lists,
    which stanio then walks value by value to write the data file (a quarter of a series' fit
    time here); given arrays, it converts each with one ``tolist`` call: the same JSON, so the
    same fit."""

    def prepare_arrays(init, data):
        inits, values = prepare(init, data)
        return inits, {k: np.asarray(v) if isinstance(v, list) else v for k, v in values.items()}

    return prepare_arrays


def _fit_prophet(
    panel: _Panel, tc: dict, spec: dict, known: list[str], threads: int, log, *, validation: bool = False
) -> dict:
    """One Prophet model per series (the manifest's holidays, the frequency's seasonalities,
    the known features as additive regressors), fitted ``threads`` series at a time (each fit
    is a Stan process). The forecast paths, Prophet's own intervals and the components (trend,
    seasonalities, holidays) are computed here for ``max_forecast_periods`` periods with each
    regressor at the series' median; a request's regressor values move the path by the
    regressor's coefficient (additive, so the same as Prophet's own predict), and the fitted
    models are kept as Prophet's JSON (``model_to_json``) for ``save``.

    ``validation``: the fit on the internal validation window, which only scores the point
    forecast of its ``horizon_periods``: no interval sampling, no path past the horizon and no
    JSON (the same Stan fit and point forecast, about a third less time per series; the
    refit on all the data is the model and has all of them)."""
    import logging
    import threading
    from concurrent.futures import ThreadPoolExecutor

    # lazy: Prophet loads cmdstanpy and its compiled Stan model (~1 s), only for this algorithm
    from prophet import Prophet
    from prophet.serialize import model_to_json
    from prophet.utilities import regressor_coefficients

    for name in ("cmdstanpy", "prophet"):
        logging.getLogger(name).setLevel(logging.WARNING)
    freq = spec["frequency"]
    periods = tc["horizon_periods"] if validation else max(tc["max_forecast_periods"], tc["horizon_periods"])
    future = _future_dates(panel.dates[-1], periods, freq)
    settings = tc["prophet"]
    samples = 0 if validation else int(settings["uncertainty_samples"])
    holidays_cfg = tc.get("holidays") or {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        fills = {f: np.nanmedian(panel.known[f], axis=1) for f in known}

    def one(i: int) -> dict:
        y = panel.y[i]
        ok = ~np.isnan(y)
        frame = pd.DataFrame({"ds": panel.dates[ok], "y": y[ok]})
        ahead = pd.DataFrame({"ds": future})
        model = Prophet(
            interval_width=tc["interval_level"],
            seasonality_mode=settings["seasonality_mode"],
            changepoint_prior_scale=float(settings["changepoint_prior_scale"]),
            uncertainty_samples=samples,
            holidays=_holiday_frame(holidays_cfg, panel.dates),
            **_PROPHET_SEASONS[freq],
        )
        backend = getattr(model, "stan_backend", None)
        if hasattr(backend, "prepare_data"):
            backend.prepare_data = _stan_arrays(backend.prepare_data)
        if holidays_cfg.get("country"):
            model.add_country_holidays(country_name=str(holidays_cfg["country"]).upper())
        used = []
        for f in known:
            x = panel.known[f][i]
            fill = 0.0 if np.isnan(fills[f][i]) else float(fills[f][i])
            x = np.where(np.isnan(x), fill, x)
            if np.nanstd(x[ok]) > 0:  # a constant regressor has no effect to estimate
                frame[f] = x[ok]
                ahead[f] = fill
                model.add_regressor(f, mode="additive")
                used.append(f)
        model.fit(frame)
        with sampling:  # Prophet's interval sampling draws from numpy's global generator
            np.random.seed(0)
            out = model.predict(ahead)
        components = {"trend": out["trend"].to_numpy()}
        for name in ("daily", "weekly", "yearly", "holidays"):
            if name in out.columns:
                components[name] = out[name].to_numpy()
        coef = {}
        if used:  # each regressor's effect on y per unit (additive): Prophet's own summary
            table = regressor_coefficients(model)
            coef = dict(zip(table["regressor"], table["coef"].astype(float), strict=True))
        path = out["yhat"].to_numpy()
        return {
            "path": path,
            "lower": out["yhat_lower"].to_numpy() if samples else path,
            "upper": out["yhat_upper"].to_numpy() if samples else path,
            "components": components,
            "coef": coef,
            "json": None if validation else model_to_json(model),
        }

    sampling = threading.Lock()
    with ThreadPoolExecutor(max_workers=max(1, int(threads))) as pool:
        fitted = list(pool.map(one, range(len(panel.keys))))
    log(f"prophet: {len(fitted)} series models, {periods} periods ahead, regressors {known or 'none'}")
    names = sorted({c for f in fitted for c in f["components"]})
    return {
        "dates": [_iso(d, freq) for d in future],
        "paths": _to_json(np.stack([f["path"] for f in fitted])),
        "lower": _to_json(np.stack([f["lower"] for f in fitted])),
        "upper": _to_json(np.stack([f["upper"] for f in fitted])),
        "components": {
            c: _to_json(np.stack([f["components"].get(c, np.zeros(periods)) for f in fitted])) for c in names
        },
        "known": known,
        "known_fill": {f: _to_json(np.nan_to_num(fills[f], nan=0.0)) for f in known},
        "coef": {f: [float(fit["coef"].get(f, 0.0)) for fit in fitted] for f in known},
        "prophet_json": [f["json"] for f in fitted],
    }


def _forecast_prophet(
    state: dict,
    future: pd.DatetimeIndex,
    known_future: dict[str, np.ndarray],
    series: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point, lower and upper forecasts (series x len(future)) from the stored paths, moved by
    each regressor's coefficient times the request's difference from the series' median."""
    paths, lower, upper = (_arr(state[k]) for k in ("paths", "lower", "upper"))
    periods = len(future)
    if periods > paths.shape[1]:
        raise ValueError(
            f"the model's Prophet forecast reaches {paths.shape[1]} periods past its history; "
            f"{periods} requested (raise training.max_forecast_periods)"
        )
    pick = slice(None) if series is None else series
    shift = np.zeros((paths[pick].shape[0], periods))
    for f in state["known"]:
        if f in known_future:
            coef = _arr(state["coef"][f])[pick][:, None]
            shift += coef * (known_future[f] - _arr(state["known_fill"][f])[pick][:, None])
    return tuple(np.clip(a[pick, :periods] + shift, 0.0, None) for a in (paths, lower, upper))


# --- LSTM: a global sequence model across series (Keras 3 on JAX, an optional install) ------

# The cycles an LSTM sees as sin/cos inputs, by frequency: (attribute of the dates, length).
_LSTM_CYCLES = {
    "H": (("hour", 24), ("day_of_week", 7)),
    "D": (("day_of_week", 7), ("day_of_year", 365.25)),
    "W": (("day_of_year", 365.25),),
    "M": (("month", 12),),
    "Q": (("quarter", 4),),
}


def _keras():
    """Keras on the JAX backend (imported on first use: 1–3 s in a fresh process, only for this algorithm)."""
    import os

    os.environ.setdefault("KERAS_BACKEND", "jax")
    import keras  # lazy: an optional package (requirements-lstm.txt), loaded only for LSTM

    return keras


def _lstm_exogenous(
    dates: pd.DatetimeIndex, freq: str, n: int, known: dict[str, np.ndarray], means: dict
) -> np.ndarray:
    """Per (series, period) the inputs known in advance: the frequency's cycles as sin/cos
    and each known feature relative to its series mean; (n, len(dates), k)."""
    parts = []
    for attr, length in _LSTM_CYCLES[freq]:
        angle = 2 * np.pi * np.asarray(getattr(dates, attr), dtype=float) / length
        parts += [np.sin(angle), np.cos(angle)]
    columns = [np.broadcast_to(np.stack(parts, axis=-1)[None], (n, len(dates), len(parts)))]
    for f, values in known.items():
        mean = np.asarray(means[f], dtype=float)[:, None]
        with np.errstate(invalid="ignore", divide="ignore"):
            columns.append(np.where(mean != 0, values / mean, 1.0)[:, :, None])
    return np.nan_to_num(np.concatenate(columns, axis=-1).astype(np.float32), nan=1.0)


def _lstm_windows(ys: np.ndarray, exo: np.ndarray, lookback: int, targets: np.ndarray):
    """Inputs and targets of one-step-ahead windows ending before each column of ``targets``:
    step j of a window holds the scaled value of period c - L + j (0 and a flag when missing)
    and the known inputs of period c - L + j + 1, so its last step carries the target period's
    known inputs."""
    x = np.concatenate([np.nan_to_num(ys, nan=0.0)[:, :, None], np.isnan(ys)[:, :, None]], axis=-1)
    rows, out_y = [], []
    for c in targets:
        rows.append(np.concatenate([x[:, c - lookback : c], exo[:, c - lookback + 1 : c + 1]], axis=-1))
        out_y.append(ys[:, c])
    return np.concatenate(rows).astype(np.float32), np.concatenate(out_y).astype(np.float32)


def _fit_lstm(panel: _Panel, tc: dict, spec: dict, known: list[str], log) -> dict:
    """One LSTM over every series (values scaled by the series mean, the frequency's cycles
    and the known features as inputs), trained on CPU with Adam and early stopping on the
    last ``horizon`` periods (an internal validation window, never trained on); seeds fixed so
    a run is reproducible on one machine. Forecasts are recursive, as LightGBM's. XLA chooses
    its own CPU threads: the run's thread budget (RUN_THREADS) does not bound this fit."""
    keras = _keras()
    cfg = tc["lstm"]
    freq = spec["frequency"]
    y = panel.y
    n, t = y.shape
    lookback = int(cfg.get("lookback") or min(2 * tc["season_length"], 56))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        scale = np.nanmean(y, axis=1)
        means = {f: np.nan_to_num(np.nanmean(panel.known[f], axis=1), nan=0.0) for f in known}
        fills = {f: np.nan_to_num(np.nanmedian(panel.known[f], axis=1), nan=0.0) for f in known}
    scale = np.where(np.isfinite(scale) & (scale > 0), scale, 1.0)
    ys = y / scale[:, None]
    exo = _lstm_exogenous(panel.dates, freq, n, {f: panel.known[f] for f in known}, means)
    h = min(tc["horizon_periods"], max(1, (t - lookback) // 5))
    if t - h <= lookback + 1:
        raise ValueError(f"not enough history for the LSTM: {t} periods, lookback {lookback} + horizon {h}")
    rng = np.random.default_rng(int(cfg["seed"]))
    train_cols = np.arange(lookback, t - h)
    keep = max(1, int(cfg["max_windows"]) // max(1, n))  # at most max_windows (series x periods)
    if len(train_cols) > keep:
        train_cols = np.sort(rng.choice(train_cols, keep, replace=False))
    x_train, y_train = _lstm_windows(ys, exo, lookback, train_cols)
    ok = np.isfinite(y_train)
    x_train, y_train = x_train[ok], y_train[ok]
    x_valid, y_valid = _lstm_windows(ys, exo, lookback, np.arange(t - h, t))
    ok = np.isfinite(y_valid)
    x_valid, y_valid = x_valid[ok], y_valid[ok]
    keras.utils.set_random_seed(int(cfg["seed"]))
    net = keras.Sequential(
        [
            keras.Input((lookback, x_train.shape[-1])),
            keras.layers.LSTM(int(cfg["units"])),
            keras.layers.Dense(1),
        ]
    )
    net.compile(optimizer=keras.optimizers.Adam(float(cfg["learning_rate"])), loss="mse")
    monitor = "val_loss" if len(y_valid) else "loss"
    history = net.fit(
        x_train,
        y_train,
        validation_data=(x_valid, y_valid) if len(y_valid) else None,
        epochs=int(cfg["epochs"]),
        batch_size=int(cfg["batch_size"]),
        shuffle=True,
        verbose=0,
        callbacks=[
            keras.callbacks.EarlyStopping(
                monitor=monitor, patience=int(cfg["patience"]), restore_best_weights=True
            )
        ],
    )
    epochs = len(history.history["loss"])
    best = min(history.history[monitor])
    log(
        f"lstm: {len(y_train)} windows of {lookback} periods x {x_train.shape[-1]} inputs, {epochs} epochs "
        f"(early stopping on the last {h} periods; best {monitor} {best:.4f})"
    )
    return {
        "lookback": lookback,
        "known": known,
        "scale": scale.tolist(),
        "known_means": {f: _to_json(v) for f, v in means.items()},
        "known_fill": {f: _to_json(v) for f, v in fills.items()},
        "tail": _to_json(y[:, -lookback:]),
        "tail_dates": [_iso(d, freq) for d in panel.dates[-lookback:]],
        "epochs": epochs,
        "network": net,
    }


def _forecast_lstm(
    state: dict, spec: dict, future: pd.DatetimeIndex, known_future: dict[str, np.ndarray], series=None
) -> np.ndarray:
    """The recursive LSTM forecast (series x len(future)): one network call per period for all
    the series, each forecast fed back as the next window's last value; a past window's known
    features are the series' medians."""
    pick = slice(None) if series is None else series
    tail = _arr(state["tail"])[pick]
    scale = _arr(state["scale"])[pick]
    lookback = int(state["lookback"])
    n, periods = tail.shape[0], len(future)
    dates = pd.DatetimeIndex(pd.to_datetime(state["tail_dates"])).append(pd.DatetimeIndex(future))
    means = {f: _arr(state["known_means"][f])[pick] for f in state["known"]}
    known = {}
    for f in state["known"]:
        fill = _arr(state["known_fill"][f])[pick][:, None]
        ahead = known_future.get(f)
        ahead = np.repeat(fill, periods, axis=1) if ahead is None else ahead
        known[f] = np.concatenate([np.repeat(fill, lookback, axis=1), ahead], axis=1)
    exo = _lstm_exogenous(dates, spec["frequency"], n, known, means)
    ys = np.hstack([tail / scale[:, None], np.full((n, periods), np.nan)])
    net = state["network"]
    for j in range(periods):
        x, _ = _lstm_windows(ys, exo, lookback, np.array([lookback + j]))
        # predict_on_batch: one compiled call (a plain net(x) runs every op eagerly, ~50x slower)
        ys[:, lookback + j] = np.clip(np.asarray(net.predict_on_batch(x), dtype=float).reshape(-1), 0.0, None)
    return ys[:, lookback:] * scale[:, None]


def _fit_component(
    algo, panel, tc, spec, known, static, threads, log, callbacks=None, valid_panel=None
) -> dict:
    if algo == "seasonal_naive":
        return _fit_naive(panel, tc)
    if algo in ("ets", "arima"):
        return _fit_stat(algo, panel, tc, spec, log)
    if algo == "prophet":  # fit() passes valid_panel (all the data) only to the validation fits
        return _fit_prophet(panel, tc, spec, known, threads, log, validation=valid_panel is not None)
    if algo == "lstm":
        return _fit_lstm(panel, tc, spec, known, log)
    return _fit_lgb(panel, tc, spec, known, static, threads, log, callbacks, valid_panel)


def _forecast_component(algo, state, spec, future, known_future, series=None) -> np.ndarray:
    """Forecasts (series x len(future)) of the model's series ``series`` (indices; all when
    None); a series' forecast does not depend on which other series are forecast with it."""
    if algo == "seasonal_naive":
        return _forecast_naive(state, len(future), series)
    if algo in ("ets", "arima"):
        return _forecast_stat(state, future, spec["frequency"], series)
    if algo == "prophet":
        return _forecast_prophet(state, future, known_future, series)[0]
    if algo == "lstm":
        return _forecast_lstm(state, spec, future, known_future, series)
    return _forecast_lgb(state, spec, future, known_future, series)


# --------------------------------------------------------------------------- pipeline stages


def prepare(df: pd.DataFrame, manifest: dict, *, log=print) -> pd.DataFrame:
    """feature_prep stage: typed dates, one row per (series, period), weekly aggregation."""
    spec = _spec(manifest)
    negative = (
        int((pd.to_numeric(df[spec["label"]], errors="coerce") < 0).sum()) if spec["label"] in df else 0
    )
    out = _normalise(df, spec, require_label=True)
    n_series = pd.Series(_series_keys(out, spec["series_columns"])).nunique()
    t = out[spec["time_column"]]
    log(
        f"prepare: {len(df)} rows -> {len(out)} rows, {n_series} series, frequency {spec['frequency']}, "
        f"{t.min().date()} .. {t.max().date()}; {negative} negative sales clipped to 0"
    )
    return out


def _validation(manifest: dict) -> tuple[str, float, int]:
    v = (manifest.get("evaluation", {}) or {}).get("validation", {}) or {}
    method = str(v.get("method", "time_holdout"))
    if method not in VALIDATION_METHODS:
        raise ValueError(
            f"forecasting supports validation methods {list(VALIDATION_METHODS)}, got {method!r}"
        )
    test_size = float(v.get("test_size", 0.2))
    if not 0 < test_size < 1:
        raise ValueError("validation.test_size must be in (0, 1)")
    return method, test_size, int(v.get("folds", 3))


def _times(df: pd.DataFrame, manifest: dict) -> pd.Series:
    spec = _spec(manifest)
    _require(df, [spec["time_column"]])
    return pd.to_datetime(df[spec["time_column"]])


def split(df: pd.DataFrame, manifest: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Time holdout: the test set is the last ``test_size`` share of the time range."""
    _, test_size, _ = _validation(manifest)
    t = _times(df, manifest)
    cutoff = t.max() - test_size * (t.max() - t.min())
    train, test = df[(t <= cutoff).to_numpy()], df[(t > cutoff).to_numpy()]
    if train.empty or test.empty:
        raise ValueError("time_holdout split left an empty train or test set")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def folds(df: pd.DataFrame, manifest: dict) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Rolling-origin backtest: ``folds`` consecutive test windows of the holdout's length
    ending at the last date (the last fold is the holdout), each trained on everything before
    its window (expanding window)."""
    _, test_size, n_folds = _validation(manifest)
    if n_folds < 1:
        raise ValueError("validation.folds must be at least 1")
    t = _times(df, manifest)
    window = test_size * (t.max() - t.min())
    out = []
    for i in range(n_folds):
        end = t.max() - (n_folds - 1 - i) * window
        start = end - window
        tr, te = (t <= start).to_numpy(), ((t > start) & (t <= end)).to_numpy()
        if not tr.any() or not te.any():
            raise ValueError(f"rolling_origin fold {i + 1} of {n_folds} has an empty train or test set")
        out.append((df[tr].reset_index(drop=True), df[te].reset_index(drop=True)))
    return out


def fit(
    train: pd.DataFrame, manifest: dict, *, threads: int = 1, log=print, callbacks: list | None = None
) -> dict:
    """training stage: validation-window selection among the candidates, then a refit.

    ``callbacks`` (LightGBM callbacks) are appended to the ``lightgbm.train`` of the LightGBM
    candidate on the internal validation window (not to the refit, which has no data left to
    validate on): they see its loss per iteration on the training periods (``"train"``) and,
    one step ahead, on the validation window (``"valid"``). The model is the same with or
    without."""
    spec = _spec(manifest)
    tc = _train_config(manifest, spec)
    df = _normalise(train, spec, require_label=True)
    known = [f for f in spec["known_features"] if f in df.columns]
    static = [c for c in spec["static_features"] if c in df.columns]
    panel = _build_panel(df, spec, known, static)
    n, t = panel.y.shape
    h = tc["horizon_periods"]
    min_train = max(tc["season_length"], min(spec["lags"])) + 1
    if t < h + min_train:
        raise ValueError(
            f"not enough history: {t} periods, need at least {h + min_train} (horizon {h} + {min_train})"
        )
    log(
        f"fit: {n} series x {t} periods ({spec['frequency']}), horizon {h} periods, candidates {tc['candidates']}"
    )
    val_panel = panel.head(t - h)
    actual = panel.y[:, t - h :]
    val_dates = panel.dates[t - h :]
    val_known = {f: panel.known[f][:, t - h :] for f in known}
    scores: dict[str, float] = {}
    forecasts: dict[str, np.ndarray] = {}
    with threadpool_limits(threads):
        for algo in tc["candidates"]:
            state = _fit_component(
                algo, val_panel, tc, spec, known, static, threads, log, callbacks=callbacks, valid_panel=panel
            )
            f = _forecast_component(algo, state, spec, val_dates, val_known)
            ok = ~np.isnan(actual)
            scores[algo] = fm.mape(actual[ok], f[ok])
            forecasts[algo] = f
            log(f"validation MAPE {algo}: {scores[algo]:.4f}")
        finite = [a for a in tc["candidates"] if math.isfinite(scores[a])]
        best = min(finite, key=lambda a: scores[a]) if finite else tc["candidates"][0]
        ok = ~np.isnan(actual) & (forecasts[best] > 0)
        ratio = actual[ok] / forecasts[best][ok]
        alpha = (1 - tc["interval_level"]) / 2
        lo, hi = (
            (float(np.quantile(ratio, alpha)), float(np.quantile(ratio, 1 - alpha)))
            if ratio.size
            else (1.0, 1.0)
        )
        state = _fit_component(best, panel, tc, spec, known, static, threads, log)
        reference = state if best == "seasonal_naive" else _fit_naive(panel, tc)
    log(f"selected {best} (validation MAPE {scores[best]:.4f}); interval ratios [{lo:.3f}, {hi:.3f}]")
    return {
        "family": NAME,
        "format_version": 1,
        "algorithm": best,
        "requested_algorithm": tc["algorithm"],
        "candidates": {a: scores[a] for a in tc["candidates"]},
        "spec": spec,
        "training": {k: v for k, v in tc.items() if k != "candidates"},
        "known_features": known,
        "static_features": static,
        "series": panel.keys,
        "series_values": panel.series_values,
        "last_date": _iso(panel.dates[-1], spec["frequency"]),
        "interval": {"level": tc["interval_level"], "lower_ratio": lo, "upper_ratio": hi},
        "validation_window": [_iso(val_dates[0], spec["frequency"]), _iso(val_dates[-1], spec["frequency"])],
        "state": state,
        "reference": reference,
    }


def _state_arrays(algorithm: str, state: dict) -> dict:
    """A model state with its JSON lists as arrays, converted once for all series groups."""
    out = dict(state)
    for key in ("last_season", "paths", "shares", "tail", "scale"):
        if key in out:
            out[key] = _arr(out[key])
    if algorithm == "lightgbm":
        for key in ("known_means", "known_fill", "static_codes"):
            out[key] = {k: _arr(v) for k, v in out[key].items()}
    return out


def _locate(model: dict, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, pd.Timestamp]:
    """Each row's series (index in the model's) and period (1 = the first after the history),
    and the history's last period; ValueError naming a missing column, an unknown series or
    a period not after the history."""
    spec = model["spec"]
    needed = [*spec["series_columns"], spec["time_column"]]
    if model["algorithm"] == "lightgbm":
        needed += model["known_features"]
    # Prophet's regressors are optional in a request: a missing one is the series' median.
    _require(rows, needed)
    keys = _series_keys(rows, spec["series_columns"])
    s_idx = pd.Index(model["series"], dtype=object).get_indexer(pd.Index(keys, dtype=object))
    if (s_idx < 0).any():
        unknown = sorted({str(k) for k in keys[s_idx < 0]})
        raise ValueError(f"unknown series (not in the model's training data): {unknown[:5]}")
    s_idx = s_idx.astype(np.int64)
    last = pd.Timestamp(model["last_date"])
    dates = _period_start(rows[spec["time_column"]], spec["frequency"])
    if dates.isna().any():
        raise ValueError(f"column '{spec['time_column']}' has missing dates")
    steps = _ordinals(dates, spec["frequency"]) - _ordinals([last], spec["frequency"])[0]
    if len(steps) and steps.min() < 1:
        raise ValueError(
            f"predict() forecasts periods after the model's history, which ends {model['last_date']}; "
            f"{int((steps < 1).sum())} rows are at or before it"
        )
    return s_idx, steps, last


def predict_alone(model: dict, rows: pd.DataFrame, state: dict | None = None) -> np.ndarray:
    """A LightGBM forecaster's point forecast of each row as if it were the only row of its
    ``predict`` call (``predict(model, rows.iloc[[i]])[0]`` for every ``i``, in one pass:
    the explanations' hybrid rows). ``state``: the model's state with its per-series lists
    as arrays, when the caller has converted them already."""
    if model["algorithm"] != "lightgbm":
        raise ValueError(f"predict_alone is for LightGBM forecasters, not {model['algorithm']!r}")
    rows = rows.reset_index(drop=True)
    s_idx, steps, last = _locate(model, rows)
    if len(steps) == 0:
        return np.zeros(0)
    st = state if state is not None else _state_arrays("lightgbm", model["state"])
    known = {f: pd.to_numeric(rows[f], errors="coerce").to_numpy(dtype=float) for f in st["known"]}
    horizon = int((model.get("training") or {}).get("horizon_periods") or 0)
    return _lgb_alone(st, model["spec"], last, s_idx, steps, known, horizon)


def _forecast_rows(model: dict, rows: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Point forecast, lower and upper bound for every row (aligned with ``rows``).

    Only the series the rows ask for are forecast, each up to its furthest requested period,
    in groups of series of at most ``FORECAST_CELLS`` (series x periods) cells, so time and
    memory grow with the batch, not with the model's series or with the batch squared."""
    spec = model["spec"]
    rows = rows.reset_index(drop=True)
    s_idx, steps, last = _locate(model, rows)
    if len(steps) == 0:
        return np.array([]), np.array([]), np.array([])
    algorithm = model["algorithm"]
    state = _state_arrays(algorithm, model["state"])
    known = {
        "lightgbm": model["known_features"],
        "prophet": [f for f in state.get("known", []) if f in rows.columns],
        "lstm": [f for f in state.get("known", []) if f in rows.columns],
    }.get(algorithm, [])
    values = {f: pd.to_numeric(rows[f], errors="coerce").to_numpy(dtype=float) for f in known}
    # The rows by series (stable: rows of one (series, period) keep their order, so a
    # duplicated period's known features average as before), cut into groups of series.
    order = np.argsort(s_idx, kind="stable")
    present, first = np.unique(s_idx[order], return_index=True)
    bounds = [*first.tolist(), len(order)]
    size = max(1, FORECAST_CELLS // int(steps.max()))
    point = np.empty(len(rows))
    lower = upper = None
    if algorithm == "prophet":  # Prophet's own interval, not the validation window's ratios
        lower, upper = np.empty(len(rows)), np.empty(len(rows))
    for g in range(0, len(present), size):
        series = present[g : g + size]
        at = order[bounds[g] : bounds[min(g + size, len(present))]]
        local = np.searchsorted(series, s_idx[at])
        step = steps[at]
        periods = int(step.max())
        future = _future_dates(last, periods, spec["frequency"])
        known_future = {}
        for f in known:
            vals = values[f][at]
            ok = ~np.isnan(vals)
            cell = local[ok] * periods + step[ok] - 1
            sums = np.bincount(cell, weights=vals[ok], minlength=len(series) * periods)
            cnts = np.bincount(cell, minlength=len(series) * periods)
            sums, cnts = sums.reshape(len(series), periods), cnts.reshape(len(series), periods)
            with np.errstate(invalid="ignore", divide="ignore"):
                known_future[f] = np.where(
                    cnts > 0, sums / cnts, _arr(state["known_fill"][f])[series][:, None]
                )
        if algorithm == "prophet":
            forecast, low, high = _forecast_prophet(state, future, known_future, series)
            lower[at], upper[at] = low[local, step - 1], high[local, step - 1]
        else:
            forecast = _forecast_component(algorithm, state, spec, future, known_future, series)
        point[at] = forecast[local, step - 1]
    if lower is not None:
        return point, lower, upper
    iv = model["interval"]
    return point, point * iv["lower_ratio"], point * iv["upper_ratio"]


def predict(model: dict, rows: pd.DataFrame) -> list:
    """Point forecasts (floats) for rows of series key + future date (+ known features)."""
    return [float(v) for v in _forecast_rows(model, rows)[0]]


def _line(frame: pd.DataFrame, time_col: str, points: int, freq: str = "D") -> dict:
    frame = frame.sort_values(time_col).tail(points)
    line = {"date": [_iso(d, freq) for d in pd.to_datetime(frame[time_col])]}
    for col in ("actual", "forecast", "lower", "upper"):
        line[col] = [None if math.isnan(v) else round(float(v), 4) for v in frame[col]]
    return line


def prediction_metrics(predictions: pd.DataFrame, manifest: dict) -> dict[str, float]:
    """``evaluate``'s metrics recomputed from its predictions frame (``actual``,
    ``prediction``, ``lower``, ``upper``), for any subset or resample of its rows; rows without
    an actual are left out, as ``evaluate`` leaves them out."""
    actual = predictions["actual"].to_numpy(dtype=float)
    ok = ~np.isnan(actual)
    point, lower, upper = (predictions[c].to_numpy(dtype=float)[ok] for c in ("prediction", "lower", "upper"))
    return fm.all_metrics(actual[ok], point, lower, upper)


def evaluate(model: dict, test: pd.DataFrame, manifest: dict) -> tuple[dict, pd.DataFrame, dict]:
    """Holdout metrics, per-row predictions and forecast-vs-actual plot data (module doc)."""
    spec = model["spec"]
    ec = stage_config(manifest, "evaluation")
    df = _normalise(test, spec, require_label=True)
    known_series = np.isin(_series_keys(df, spec["series_columns"]).astype(str), model["series"])
    skipped = int((~known_series).sum())
    df = df[known_series].reset_index(drop=True)
    if df.empty:
        raise ValueError("no test rows belong to a series the model was trained on")
    point, lower, upper = _forecast_rows(model, df)
    actual = df[spec["label"]].to_numpy(dtype=float)
    ok = ~np.isnan(actual)
    time_col = spec["time_column"]
    predictions = df[[*spec["series_columns"], time_col]].copy()
    predictions["actual"] = actual
    predictions["prediction"] = point
    predictions["lower"] = lower
    predictions["upper"] = upper
    metrics = prediction_metrics(predictions, manifest)

    ref_state = {"algorithm": "seasonal_naive", "state": model["reference"]}
    ref_point = _forecast_rows({**model, **ref_state}, df)[0]
    points = int(ec.get("plot_points", 120))
    plot_frame = predictions.rename(columns={"prediction": "forecast"}).assign(
        _key=_series_keys(df, spec["series_columns"])
    )
    total = plot_frame.groupby(time_col, as_index=False)[["actual", "forecast", "lower", "upper"]].sum(
        min_count=1
    )
    volume = plot_frame.groupby("_key")["actual"].sum().sort_values(ascending=False, kind="stable")
    series = []
    for key in list(volume.index[: int(ec.get("plot_series", 3))]):
        series.append(
            {
                "series_id": str(key),
                **_line(plot_frame[plot_frame["_key"] == key], time_col, points, spec["frequency"]),
            }
        )
    plot = {
        "kind": "forecast_vs_actual",
        "frequency": spec["frequency"],
        "algorithm": model["algorithm"],
        "interval_level": model["interval"]["level"],
        "candidates": [
            {
                "name": a,
                "validation_mape": (round(v, 6) if math.isfinite(v) else None),
                "selected": a == model["algorithm"],
            }
            for a, v in model["candidates"].items()
        ],
        "reference": {"seasonal_naive_mape": fm.mape(actual[ok], ref_point[ok])},
        "skipped_rows_unknown_series": skipped,
        "total": _line(total, time_col, points, spec["frequency"]),
        "series": series,
    }
    return metrics, predictions, plot


# --------------------------------------------------------------------------- persistence


def save(model: dict, directory: Path) -> list[str]:
    """``model.json`` (everything but the booster) and, for LightGBM, ``lightgbm_model.txt``;
    for Prophet ``prophet_models.json`` (each series' model as Prophet's ``model_to_json``,
    never pickle; forecasting reads the paths in model.json, so ``load`` leaves it)."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    data = dict(model)
    files = ["model.json"]
    if "prophet_json" in model["state"]:  # Prophet's own serialisation, one model per series
        data["state"] = {k: v for k, v in model["state"].items() if k != "prophet_json"}
        (directory / "prophet_models.json").write_text(json.dumps(model["state"]["prophet_json"]))
        files.append("prophet_models.json")
    if "network" in model["state"]:  # Keras' own format, weights and architecture, no pickle
        data["state"] = {k: v for k, v in model["state"].items() if k != "network"}
        model["state"]["network"].save(directory / "lstm.keras")
        files.append("lstm.keras")
    if "booster" in model["state"]:
        data["state"] = {k: v for k, v in model["state"].items() if k != "booster"}
        (directory / "lightgbm_model.txt").write_text(model["state"]["booster"].model_to_string())
        files.append("lightgbm_model.txt")
    (directory / "model.json").write_text(json.dumps(data, allow_nan=True))
    return files


def load(directory: Path) -> dict:
    directory = Path(directory)
    model = json.loads((directory / "model.json").read_text())
    if model.get("algorithm") == "lightgbm":
        text = (directory / "lightgbm_model.txt").read_text()
        model["state"]["booster"] = lgb.Booster(model_str=text)
    if model.get("algorithm") == "lstm":  # safe mode: no arbitrary code from the file
        model["state"]["network"] = _keras().saving.load_model(directory / "lstm.keras", safe_mode=True)
    return model


def example_output(model: dict, rows: pd.DataFrame) -> dict:
    """Forecasts for up to 3 series of ``rows``: for their rows after the model's history, or
    (when ``rows`` are historical) for the next ``min(7, horizon)`` periods, with the series'
    median known features."""
    spec = model["spec"]
    time_col = spec["time_column"]
    index = {k: i for i, k in enumerate(model["series"])}
    have = all(c in rows.columns for c in spec["series_columns"])
    keys = (
        [k for k in dict.fromkeys(_series_keys(rows, spec["series_columns"]).astype(str)) if k in index]
        if have
        else []
    )
    keys = keys[:3] or model["series"][:3]
    last = pd.Timestamp(model["last_date"])
    request = None
    if have and time_col in rows.columns:
        mask = np.isin(_series_keys(rows, spec["series_columns"]).astype(str), keys)
        future = rows[mask & (_period_start(rows[time_col], spec["frequency"]) > last).to_numpy()]
        if len(future) and all(f in future.columns for f in model["known_features"]):
            request = future.head(10).reset_index(drop=True)
    if request is None:
        periods = max(1, min(7, model["training"]["horizon_periods"]))
        dates = _future_dates(last, periods, spec["frequency"])
        recs = []
        for k in keys:
            i = index[k]
            for d in dates:
                rec = {c: model["series_values"][c][i] for c in spec["series_columns"]}
                rec[time_col] = d
                if model["algorithm"] == "lightgbm":
                    for f in model["known_features"]:
                        rec[f] = model["state"]["known_fill"][f][i]
                recs.append(rec)
        request = pd.DataFrame(recs)
    point, lower, upper = _forecast_rows(model, request)
    inputs = []
    for rec in request.drop(columns=[spec["label"]], errors="ignore").to_dict(orient="records"):
        inputs.append(
            {k: (_iso(v, spec["frequency"]) if k == time_col else _plain(v)) for k, v in rec.items()}
        )
    outputs = [
        {
            **{c: inp[c] for c in spec["series_columns"]},
            time_col: inp[time_col],
            "forecast": round(float(p), 4),
            "lower": round(float(lo), 4),
            "upper": round(float(hi), 4),
        }
        for inp, p, lo, hi in zip(inputs, point, lower, upper, strict=True)
    ]
    return {
        "algorithm": model["algorithm"],
        "frequency": spec["frequency"],
        "forecast_origin": model["last_date"],
        "interval_level": model["interval"]["level"],
        "inputs": inputs,
        "outputs": outputs,
    }


def _plain(v):
    if isinstance(v, np.generic):
        v = v.item()
    if isinstance(v, float) and math.isnan(v):
        return None
    return v
