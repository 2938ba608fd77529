"""Pricing family: log-log demand regression with per-segment elasticities + a price optimiser.

Data (``generate``)
    Weekly product x store observations. Each product belongs to one ``segment`` with a
    known constant own-price elasticity (``SEGMENT_ELASTICITY``; their mean, -1.8, is the
    overall elasticity — segments get equal product counts, round-robin). Demand is
    ``units = round(base_p * store_s * series_ps * (price / list_price_p) ** e_segment
    * exp(0.15 * promo + seasonality + 0.03 * years + noise))`` with lognormal noise
    (sigma 0.25). Prices move through a mean-reverting product price path (AR(1), weekly
    0.95), store price zones, shelf noise and chain-wide promotions (10-30 % off); unit cost
    is 45-70 % of the list price.

World (``runs/families/worlds.py``)
    The seed fixes the products (segment, list price, cost ratio, demand level), the stores
    and the series effects; a window picks weeks from ``ORIGIN``: every random draw is
    indexed by week, so the weeks after a training batch continue its world.
    ``concept="less_price_sensitive"`` adds ``0.6 * log(price / 10)`` to log demand: every
    elasticity rises by 0.6, so demand at a given price changes with the price level.

Model (``fit``; training stage, ``algorithm: "log_log_ols"``)
    OLS of ``log(units)`` on ``log(price)`` x segment (one elasticity per segment, or one
    pooled elasticity with ``per_segment: false``), the promo flag, Fourier terms of the
    time of year and a linear trend, with product x store fixed effects absorbed by
    demeaning within each series. Standard errors: ``HC1`` (default) or ``nonrobust``; the
    confidence intervals use the normal quantile for ``ci_level``. The overall elasticity is
    the training-row-share weighted mean of the segment elasticities, its standard error
    ``sqrt(w' V w)``. Predictions are ``exp(fixed effect + x'beta) * smearing`` (Duan's
    smearing factor, the mean of ``exp(residual)``). Unseen series fall back to
    product/store/segment mean effects, unseen segments to the overall elasticity.
    The model is a JSON-able dict (saved as ``model.json``).

Optimiser
    For each product the recommended price maximises revenue ``p * q(p)`` or margin
    ``(p - cost) * q(p)`` (``objective``) on the fitted constant-elasticity curve
    ``q(p) = q0 * (p / p0) ** e`` within ``price_bounds`` of the current price ``p0``:
    ``p0 * (1 + min_change) <= p <= p0 * (1 + max_change)``. ``objective`` and
    ``price_bounds`` live in the *training* stage config (the evaluation stage config may
    override both). ``p0`` / cost are the product's median ``regular_price`` (``price`` if
    absent) / ``unit_cost`` over the last ``reference_weeks`` weeks of training data.
    Revenue optimum: lower bound if ``e < -1``, upper bound if ``-1 < e < 0``. Margin optimum:
    ``p* = cost * e / (1 + e)`` clipped to the bounds if ``e < -1``, the upper bound if
    ``-1 <= e < 0``. A non-negative elasticity has no optimum: the price is kept and a
    warning is logged (status ``no_optimum``).

Metrics (``evaluate``, on the holdout; definitions in ``runs.metrics.pricing``)
    ``elasticity``: the overall estimate. ``calibration`` / ``demand_mape``: predicted vs
    actual units at the observed prices. ``revenue_lift`` / ``margin_impact``: every holdout
    row gets its product's recommended price change, ``new_price = price * p*/p0``; the
    expected units are the *observed* units scaled by the fitted demand curve,
    ``new_units = units * q_hat(new_price) / q_hat(price)``; the lift compares
    ``sum(new_price * new_units)`` with the observed ``sum(price * units)`` (margin: with
    ``unit_cost`` subtracted). Both metrics score the same recommended prices (chosen for
    ``objective``), so one of them can be negative. ``prediction_metrics(predictions,
    manifest)`` computes them from ``evaluate``'s predictions frame (which carries
    ``price_multiplier``, ``unit_cost`` and ``overall_elasticity`` for it), so from any
    resample of its rows: a comparison's bootstrap resamples whole product x store series
    (``BOOTSTRAP_GROUPS``); ``elasticity`` is a model parameter (``CONSTANT_METRICS``).

Plot data (``evaluate``'s third value; at most a few hundred numbers)
    ``demand_curve``: for the typical holdout product (median holdout revenue) a price grid
    (``curve_points``, 0.6-1.4 x current for +-20 % bounds) with the mean predicted units per
    store-week, revenue and margin, plus ``product_id``, ``segment``, ``elasticity``,
    ``objective``, ``current_price``, ``chosen_price``, ``unit_cost`` and ``bounds``.
    ``segment_elasticity``: lists segment, estimate, ci_low, ci_high, n_rows.
    ``overall_elasticity``: estimate, se, ci_low, ci_high, ci_level. ``recommendations``: up to
    ``max_plot_products`` products with current and recommended price and change.

Stage configs (defaults)
    feature_prep: ``min_series_weeks`` 4, ``max_price_ratio`` 5.0 (drop rows whose price is
    more than this factor away from the product's median price).
    training: ``algorithm`` "log_log_ols", ``hyperparameters`` {``per_segment`` true,
    ``fourier_order`` 2, ``trend`` true, ``cov_type`` "HC1", ``ci_level`` 0.95,
    ``min_segment_rows`` 200}, ``objective`` "margin", ``price_bounds`` {``min_change``
    -0.2, ``max_change`` 0.2}, ``reference_weeks`` 4.
    evaluation: ``objective`` / ``price_bounds`` (default: the training ones),
    ``curve_points`` 41, ``max_plot_products`` 40.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
from scipy import signal, stats
from threadpoolctl import threadpool_limits

from runs.families import stage_config, worlds
from runs.metrics import pricing as pm

NAME = "pricing"
PREDICTION_COLUMN = "predicted_units"  # what predict() returns, as a score run's column
# Data larger than TRAIN_MAX_ROWS is sampled by rows: each row is one price observation of a
# product, and the demand model's fit needs representative observations, not whole histories
# (runs.data.read_sample).
SAMPLE_BY_SERIES = False
DEFAULT_ROWS = 100_000

SCHEMA: list[dict] = [
    {"name": "product_id", "dtype": "string", "role": "grain", "description": "Product identifier."},
    {"name": "store_id", "dtype": "string", "role": "grain", "description": "Store identifier."},
    {"name": "week", "dtype": "date", "role": "time", "description": "Week start (Monday)."},
    {"name": "segment", "dtype": "string", "role": "segment", "description": "Product category."},
    {"name": "price", "dtype": "float", "role": "feature", "description": "Average selling price paid."},
    {
        "name": "regular_price",
        "dtype": "float",
        "role": "feature",
        "description": "Shelf price before promotional discount.",
    },
    {"name": "unit_cost", "dtype": "float", "role": "feature", "description": "Unit cost of goods."},
    {"name": "promo", "dtype": "int", "role": "feature", "description": "1 if the product was on promotion."},
    {"name": "units", "dtype": "int", "role": "label", "description": "Units sold in the week."},
]
FEATURE_SETS: dict[str, list[str]] = {
    "price_history": ["price", "promo"],
    "product_attributes": ["segment"],
    "cost": ["unit_cost"],
    "regular_price": ["regular_price"],
}
GRAIN = ["product_id", "store_id"]
TIME = "week"
LABEL = "units"
PREDICT_COLUMNS = ["product_id", "store_id", "segment", "week", "price", "promo"]
# For a comparison's bootstrap (monitoring.comparison): the predictions columns of the unit to
# resample (a product x store series), the metrics that are not a function of the rows and
# the predictions columns prediction_metrics reads (the only ones a replicate needs to copy).
BOOTSTRAP_GROUPS: list[str] = ["product_id", "store_id"]
CONSTANT_METRICS: set[str] = {"elasticity"}
METRIC_COLUMNS: list[str] = [
    "price",
    LABEL,
    "predicted_units",
    "predicted_units_at_recommended",
    "price_multiplier",
    "unit_cost",
    "overall_elasticity",
]

SEGMENT_ELASTICITY = {"grocery": -1.2, "household": -1.6, "personal_care": -2.0, "electronics": -2.4}
OVERALL_ELASTICITY = -1.8
PROMO_LIFT = 0.15
SEASON_SIN1 = 0.20
SEASON_COS2 = 0.05
TREND_PER_YEAR = 0.03
NOISE_SIGMA = 0.25
PROMO_RATE = 0.12
PRICE_WALK_PHI = 0.95
PRICE_WALK_SIGMA = 0.01
START_WEEK = "2022-01-03"
ORIGIN = START_WEEK  # the world's week 0 (a Monday)
PERIOD_DAYS = 7
_CALENDAR = worlds.Calendar(ORIGIN, PERIOD_DAYS)
REFERENCE_PRICE = 10.0  # the geometric mean of the list prices (2 to 50)
CONCEPT_ELASTICITY_SHIFT = 0.6
CONCEPTS = {
    "less_price_sensitive": (
        "Shoppers become less price-sensitive: every segment's elasticity rises by 0.6 "
        "(e.g. -1.4 -> -0.8), so dear products sell more and cheap ones less than the model expects"
    ),
}
_EPOCH = pd.Timestamp("2000-01-01")
_SEGMENTS = tuple(SEGMENT_ELASTICITY)

DEFAULT_HYPERPARAMETERS = {
    "per_segment": True,
    "fourier_order": 2,
    "trend": True,
    "cov_type": "HC1",
    "ci_level": 0.95,
    "min_segment_rows": 200,
}
DEFAULT_BOUNDS = {"min_change": -0.2, "max_change": 0.2}
OBJECTIVES = ("revenue", "margin")


def _noop(_message: str) -> None:
    return None


# ----------------------------------------------------------------------------- data


def _year_fraction(weeks) -> np.ndarray:
    """Continuous time in years since 2000-01-01 (basis of the seasonal Fourier terms)."""
    days = (pd.DatetimeIndex(weeks) - _EPOCH) / pd.Timedelta(days=1)
    return np.asarray(days, dtype=float) / 365.25


def layout(rows: int) -> tuple[dict, int]:
    """The world a ``rows``-row training batch lives in, and how many weeks that batch covers:
    about 40 rows per series-week (8 to 104 weeks), products x stores series."""
    rows = int(rows)
    if rows < 1:
        raise ValueError("rows must be positive")
    n_weeks = int(np.clip(rows // 40, 8, 104))
    n_series = -(-rows // n_weeks)
    n_stores = int(np.clip(round(math.sqrt(n_series / 10)), 2, 10))
    n_products = -(-n_series // n_stores)
    return {"products": int(n_products), "stores": int(n_stores)}, n_weeks


def window_periods(world: dict, rows: int) -> int:
    """Weeks of every product x store series that hold about ``rows`` rows."""
    return max(1, round(int(rows) / (world["products"] * world["stores"])))


def window_rows(world: dict, periods: int, rows: int | None = None) -> int:
    return int(world["products"] * world["stores"] * periods)


def describe_world(world: dict) -> str:
    return f"{world['products']} products × {world['stores']} stores"


def _elasticity_shift(concept: str | None) -> float:
    return CONCEPT_ELASTICITY_SHIFT if concept == "less_price_sensitive" else 0.0


def generate(
    rows: int, seed: int, *, world: dict | None = None, window: dict | None = None, concept: str | None = None
) -> pd.DataFrame:
    """Synthetic weekly product x store sales with known elasticities (see module docstring).

    The seed fixes the world (products, stores, their prices, costs and demand levels); the
    window (``{"start": date or week index, "periods": weeks}``, default the first
    ``layout(rows)`` weeks) picks the weeks. Every random draw is indexed by week, so a week
    has the same data whichever window it is generated in. At most ``rows`` rows."""
    rows = int(rows)
    if rows < 1:
        raise ValueError("rows must be positive")
    sizes, first = layout(rows)
    world = world or sizes
    start, n_weeks = (0, first) if window is None else worlds.span(_CALENDAR, window)
    n_products, n_stores = int(world["products"]), int(world["stores"])
    n_series = n_products * n_stores
    end = start + n_weeks

    rng = np.random.default_rng([seed, 0])  # the entities
    seg_idx = np.arange(n_products) % len(_SEGMENTS)
    seg_e = np.array([SEGMENT_ELASTICITY[s] for s in _SEGMENTS])[seg_idx]
    list_price = np.exp(rng.uniform(np.log(2.0), np.log(50.0), n_products))
    cost_ratio = rng.uniform(0.45, 0.70, n_products)
    base = np.exp(rng.uniform(np.log(20.0), np.log(200.0), n_products))
    store_factor = np.exp(rng.normal(0.0, 0.3, n_stores))
    zone = rng.uniform(-0.05, 0.05, n_stores)
    series_effect = rng.normal(0.0, 0.1, n_series)

    def weekly(stream: int, draw):
        # (weeks x entities) draws in week order: week w's values do not depend on `end`
        return draw(np.random.default_rng([seed, stream]))[start:end].T

    # The product's price path is mean-reverting (AR(1), weekly), so the price level of a
    # product stays where the world put it however far the windows go.
    steps = np.random.default_rng([seed, 1]).normal(0.0, PRICE_WALK_SIGMA, (end, n_products))
    steps[0] /= math.sqrt(1.0 - PRICE_WALK_PHI**2)  # week 0 starts in the stationary spread
    walk = signal.lfilter([1.0], [1.0, -PRICE_WALK_PHI], steps, axis=0)[start:end].T
    promo = weekly(2, lambda r: r.random((end, n_products))) < PROMO_RATE
    depth = np.array([0.1, 0.2, 0.3])[weekly(3, lambda r: r.integers(0, 3, (end, n_products)))]
    cost_noise = weekly(4, lambda r: r.normal(0.0, 0.02, (end, n_products)))
    shelf_noise = weekly(5, lambda r: r.normal(0.0, 0.04, (end, n_series)))
    eps = weekly(6, lambda r: r.normal(0.0, NOISE_SIGMA, (end, n_series)))

    sp = np.arange(n_series) // n_stores
    ss = np.arange(n_series) % n_stores
    regular = np.round(list_price[sp, None] * np.exp(zone[ss, None] + walk[sp] + shelf_noise), 2)
    on_promo = promo[sp]
    price = np.round(regular * np.where(on_promo, 1.0 - depth[sp], 1.0), 2)
    cost = np.round(list_price[:, None] * cost_ratio[:, None] * np.exp(cost_noise), 2)[sp]

    weeks = pd.date_range(pd.Timestamp(ORIGIN) + pd.Timedelta(weeks=start), periods=n_weeks, freq="7D")
    yf = _year_fraction(weeks)
    season = SEASON_SIN1 * np.sin(2 * np.pi * yf) + SEASON_COS2 * np.cos(4 * np.pi * yf)
    years = np.arange(start, end) * 7.0 / 365.25
    log_mu = (
        np.log(base[sp])[:, None]
        + np.log(store_factor[ss])[:, None]
        + series_effect[:, None]
        + seg_e[sp][:, None] * np.log(price / list_price[sp, None])
        # a concept change: demand's response to the price level itself changes
        + _elasticity_shift(concept) * np.log(price / REFERENCE_PRICE)
        + PROMO_LIFT * on_promo
        + season[None, :]
        + TREND_PER_YEAR * years[None, :]
    )
    units = np.rint(np.exp(log_mu + eps - NOISE_SIGMA**2 / 2)).astype(np.int64)

    product_ids = np.array([f"P{i + 1:04d}" for i in range(n_products)], dtype=object)
    store_ids = np.array([f"S{i + 1:02d}" for i in range(n_stores)], dtype=object)
    segments = np.array(_SEGMENTS, dtype=object)[seg_idx]
    df = pd.DataFrame(
        {
            "product_id": np.repeat(product_ids[sp], n_weeks),
            "store_id": np.repeat(store_ids[ss], n_weeks),
            "week": np.tile(weeks.values, n_series),
            "segment": np.repeat(segments[sp], n_weeks),
            "price": price.ravel().astype(float),
            "regular_price": regular.ravel().astype(float),
            "unit_cost": cost.ravel().astype(float),
            "promo": on_promo.ravel().astype(np.int64),
            "units": units.ravel(),
        }
    )
    df = df.iloc[:rows].reset_index(drop=True)
    for col in ("product_id", "store_id", "segment"):
        df[col] = df[col].astype("str")
    df["week"] = pd.to_datetime(df["week"])
    return df[[c["name"] for c in SCHEMA]]


def ground_truth(seed: int) -> dict:
    """The structural parameters behind ``generate`` (identical for every seed)."""
    return {
        "seed": int(seed),
        "overall_elasticity": OVERALL_ELASTICITY,
        "segment_elasticities": dict(SEGMENT_ELASTICITY),
        "overall_definition": (
            "mean of the segment elasticities; segments get products round-robin, so with a "
            "product count that is not a multiple of 4 the row-share weighted mean (what fit "
            "estimates) differs slightly"
        ),
        "promo_lift_log": PROMO_LIFT,
        "seasonality": {"sin_1y": SEASON_SIN1, "cos_half_year": SEASON_COS2},
        "trend_log_per_year": TREND_PER_YEAR,
        "noise_sigma_log": NOISE_SIGMA,
        "promo_rate": PROMO_RATE,
        "promo_depths": [0.1, 0.2, 0.3],
        "cost_ratio_range": [0.45, 0.70],
    }


# ----------------------------------------------------------------------------- helpers


def _require(df: pd.DataFrame, columns) -> None:
    for col in columns:
        if col not in df.columns:
            raise ValueError(f"missing column: {col}")


def _weeks(series: pd.Series) -> pd.Series:
    return pd.to_datetime(series)


def _bounds(value) -> dict:
    b = dict(DEFAULT_BOUNDS)
    if value:
        b.update({k: float(v) for k, v in value.items() if k in ("min_change", "max_change")})
    if not (-1.0 < b["min_change"] <= 0.0 <= b["max_change"]):
        raise ValueError("price_bounds need -1 < min_change <= 0 <= max_change")
    return b


def _objective(value) -> str:
    if value not in OBJECTIVES:
        raise ValueError(f"objective must be one of {OBJECTIVES}, got {value!r}")
    return value


def _series_key(df: pd.DataFrame) -> pd.Series:
    return df["product_id"].astype(str) + "|" + df["store_id"].astype(str)


# ----------------------------------------------------------------------------- stages


def prepare(df: pd.DataFrame, manifest: dict, *, log=_noop) -> pd.DataFrame:
    """feature_prep: parse weeks, drop bad prices / price outliers / duplicate keys / short series."""
    cfg = stage_config(manifest, "feature_prep")
    min_weeks = int(cfg.get("min_series_weeks", 4))
    max_ratio = float(cfg.get("max_price_ratio", 5.0))
    _require(df, ["product_id", "store_id", TIME, "price"])
    out = df.copy()
    out[TIME] = _weeks(out[TIME])
    n0 = len(out)
    keep = out["price"].notna() & (out["price"] > 0)
    if LABEL in out.columns:
        keep &= out[LABEL].notna() & (out[LABEL] >= 0)
    out = out[keep]
    if max_ratio > 0 and len(out):
        med = out.groupby("product_id")["price"].transform("median")
        ratio = out["price"] / med
        out = out[(ratio <= max_ratio) & (ratio >= 1.0 / max_ratio)]
    n1 = len(out)
    out = out.drop_duplicates(subset=[*GRAIN, TIME], keep="last")
    n2 = len(out)
    if min_weeks > 1 and len(out):
        counts = out.groupby(GRAIN)[TIME].transform("size")
        out = out[counts >= min_weeks]
    out = out.sort_values([*GRAIN, TIME]).reset_index(drop=True)
    log(
        f"prepare: {n0} rows in, {n0 - n1} with invalid price/units or price outliers dropped, "
        f"{n1 - n2} duplicate keys dropped, {n2 - len(out)} in series shorter than {min_weeks} weeks "
        f"dropped, {len(out)} rows out"
    )
    return out


def _validation(manifest: dict) -> dict:
    v = dict((manifest.get("evaluation") or {}).get("validation") or {})
    v.setdefault("method", "time_holdout")
    v.setdefault("test_size", 0.2)
    v.setdefault("folds", 3)
    ts = float(v["test_size"])
    if not 0 < ts < 1:
        raise ValueError("test_size must be in (0, 1)")
    v["test_size"] = ts
    return v


def split(df: pd.DataFrame, manifest: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holdout split: ``time_holdout`` (last test_size of the time range) or ``random_holdout``."""
    v = _validation(manifest)
    method = v["method"]
    if method == "time_holdout":
        weeks = _weeks(df[TIME])
        tmin, tmax = weeks.min(), weeks.max()
        cutoff = tmax - (tmax - tmin) * v["test_size"]
        is_test = weeks > cutoff
    elif method == "random_holdout":
        rng = np.random.default_rng(int(v.get("seed", 42)))
        is_test = pd.Series(rng.random(len(df)) < v["test_size"], index=df.index)
    else:
        raise ValueError(f"unsupported validation method for pricing split: {method}")
    train, test = df[~is_test], df[is_test]
    if train.empty or test.empty:
        raise ValueError("holdout split produced an empty train or test set")
    return train.reset_index(drop=True), test.reset_index(drop=True)


def folds(df: pd.DataFrame, manifest: dict) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Backtest folds.

    ``rolling_origin`` (default; ``time_holdout`` maps here too): the last ``test_size`` of
    the time range is cut into ``folds`` consecutive windows; fold i trains on everything
    before window i and tests on window i. ``kfold``: shuffled row k-fold (seed 42).
    """
    v = _validation(manifest)
    k = int(v.get("folds", 3))
    if k < 1:
        raise ValueError("folds must be >= 1")
    method = v["method"]
    out = []
    if method in ("rolling_origin", "time_holdout"):
        weeks = _weeks(df[TIME])
        tmin, tmax = weeks.min(), weeks.max()
        span = tmax - tmin
        start = tmax - span * v["test_size"]
        step = (tmax - start) / k
        for i in range(k):
            lo, hi = start + step * i, start + step * (i + 1)
            train = df[weeks <= lo]
            test = df[(weeks > lo) & (weeks <= hi)]
            if len(train) and len(test):
                out.append((train.reset_index(drop=True), test.reset_index(drop=True)))
    elif method in ("kfold", "random_holdout"):
        rng = np.random.default_rng(int(v.get("seed", 42)))
        fold_of = rng.permutation(len(df)) % k
        for i in range(k):
            out.append((df[fold_of != i].reset_index(drop=True), df[fold_of == i].reset_index(drop=True)))
    else:
        raise ValueError(f"unsupported validation method for pricing folds: {method}")
    if not out:
        raise ValueError("no non-empty backtest folds")
    return out


# ----------------------------------------------------------------------------- model


def _controls(df: pd.DataFrame, fourier_order: int, trend: bool, t0: pd.Timestamp) -> tuple[np.ndarray, list]:
    weeks = _weeks(df[TIME])
    cols, names = [np.asarray(df["promo"], dtype=float)], ["promo"]
    yf = _year_fraction(weeks)
    for k in range(1, fourier_order + 1):
        cols += [np.sin(2 * np.pi * k * yf), np.cos(2 * np.pi * k * yf)]
        names += [f"sin{k}", f"cos{k}"]
    if trend:
        cols.append(np.asarray((weeks - t0) / pd.Timedelta(days=1), dtype=float) / 365.25)
        names.append("trend")
    return np.column_stack(cols), names


def _ci(estimate: float, se: float, level: float) -> dict:
    z = float(stats.norm.ppf(0.5 + level / 2))
    return {
        "estimate": float(estimate),
        "se": float(se),
        "ci_low": float(estimate - z * se),
        "ci_high": float(estimate + z * se),
    }


def fit(train: pd.DataFrame, manifest: dict, *, threads: int = 1, log=_noop) -> dict:
    """training: log-log OLS with series fixed effects; returns a JSON-able model dict."""
    cfg = stage_config(manifest, "training")
    algorithm = cfg.get("algorithm", "log_log_ols")
    if algorithm != "log_log_ols":
        raise ValueError(f"unsupported pricing algorithm: {algorithm}")
    hp = {**DEFAULT_HYPERPARAMETERS, **(cfg.get("hyperparameters") or {})}
    objective = _objective(cfg.get("objective", "margin"))
    bounds = _bounds(cfg.get("price_bounds"))
    reference_weeks = int(cfg.get("reference_weeks", 4))
    cov_type = hp["cov_type"]
    if cov_type not in ("HC1", "nonrobust"):
        raise ValueError(f"cov_type must be HC1 or nonrobust, got {cov_type!r}")
    ci_level = float(hp["ci_level"])
    fourier_order = int(hp["fourier_order"])
    _require(train, [*PREDICT_COLUMNS, LABEL])

    with threadpool_limits(threads):
        df = train[(train[LABEL] > 0) & (train["price"] > 0)].reset_index(drop=True)
        dropped = len(train) - len(df)
        if dropped:
            log(f"fit: {dropped} rows with zero units or non-positive price left out of the log-log fit")
        if df.empty:
            raise ValueError("no rows with positive units and price to fit")
        weeks = _weeks(df[TIME])
        t0 = weeks.min()
        y = np.log(df[LABEL].to_numpy(dtype=float))
        logp = np.log(df["price"].to_numpy(dtype=float))
        seg = df["segment"].astype(str).to_numpy()

        seg_names, seg_counts = np.unique(seg, return_counts=True)
        if hp["per_segment"]:
            big = {s for s, n in zip(seg_names, seg_counts, strict=True) if n >= int(hp["min_segment_rows"])}
            group_of = {s: (s if s in big else "_other") for s in seg_names}
        else:
            group_of = {s: "_all" for s in seg_names}
        groups = sorted(set(group_of.values()))
        row_group = np.array([group_of[s] for s in seg])

        ctrl, ctrl_names = _controls(df, fourier_order, bool(hp["trend"]), t0)
        elast_cols = np.column_stack([logp * (row_group == g) for g in groups])
        X = np.column_stack([elast_cols, ctrl])
        names = [f"elasticity:{g}" for g in groups] + ctrl_names

        codes, uniques = pd.factorize(_series_key(df))
        n_series = len(uniques)
        cnt = np.bincount(codes, minlength=n_series).astype(float)
        y_mean = np.bincount(codes, weights=y, minlength=n_series) / cnt
        X_mean = np.column_stack(
            [np.bincount(codes, weights=X[:, j], minlength=n_series) / cnt for j in range(X.shape[1])]
        )
        Xd = X - X_mean[codes]
        yd = y - y_mean[codes]

        scale = np.sqrt((Xd**2).mean(axis=0))
        keep = scale > 1e-9 * np.maximum(1.0, np.abs(X).max(axis=0))
        for j in np.flatnonzero(~keep):
            log(f"fit: warning: no within-series variation in {names[j]}; term dropped")
        if not keep[: len(groups)].any():
            raise ValueError("no within-series price variation: elasticity is not identified")
        Xk = Xd[:, keep]
        beta_k, *_ = np.linalg.lstsq(Xk, yd, rcond=None)
        resid = yd - Xk @ beta_k
        n, k = Xk.shape
        dof = n - k - n_series
        if dof <= 0:
            raise ValueError("too few rows for the number of series and terms")
        xtx_inv = np.linalg.pinv(Xk.T @ Xk)
        if cov_type == "nonrobust":
            cov_k = xtx_inv * float(resid @ resid) / dof
        else:
            xe = Xk * resid[:, None]
            cov_k = xtx_inv @ (xe.T @ xe) @ xtx_inv * (n / dof)
        beta = np.zeros(X.shape[1])
        beta[keep] = beta_k
        cov = np.zeros((X.shape[1], X.shape[1]))
        idx = np.flatnonzero(keep)
        cov[np.ix_(idx, idx)] = cov_k

        fe = y_mean - X_mean @ beta
        smearing = float(np.mean(np.exp(resid)))

    coef = {nm: float(b) for nm, b in zip(names, beta, strict=True)}
    n_groups = len(groups)
    group_ok = keep[:n_groups]
    group_rows = {g: int((row_group == g).sum()) for g in groups}
    usable = [i for i in range(n_groups) if group_ok[i]]
    w = np.zeros(n_groups)
    w[usable] = [group_rows[groups[i]] for i in usable]
    w = w / w.sum()
    e_overall = pm.elasticity(beta[:n_groups][usable], w[usable])
    se_overall = float(np.sqrt(w @ cov[:n_groups, :n_groups] @ w))
    overall = {**_ci(e_overall, se_overall, ci_level), "n_rows": int(n)}
    group_est = {
        g: {**_ci(beta[i], math.sqrt(max(cov[i, i], 0.0)), ci_level), "n_rows": group_rows[g]}
        for i, g in enumerate(groups)
        if group_ok[i]
    }
    segment_elasticity = {}
    for s in seg_names:
        g = group_of[s]
        if g in group_est:
            segment_elasticity[str(s)] = {**group_est[g], "group": g, "n_rows": int((seg == s).sum())}
        else:
            segment_elasticity[str(s)] = {**overall, "group": "_overall", "n_rows": int((seg == s).sum())}

    series_effects = {str(key): float(v) for key, v in zip(uniques, fe, strict=True)}
    first = df.groupby(codes).first()
    eff = pd.DataFrame(
        {
            "product_id": first["product_id"].astype(str).to_numpy(),
            "store_id": first["store_id"].astype(str).to_numpy(),
            "segment": first["segment"].astype(str).to_numpy(),
            "fe": fe,
        }
    )
    model = {
        "family": NAME,
        "algorithm": algorithm,
        "format_version": 1,
        "hyperparameters": {k2: hp[k2] for k2 in DEFAULT_HYPERPARAMETERS},
        "objective": objective,
        "price_bounds": bounds,
        "reference_weeks": reference_weeks,
        "t0": t0.isoformat(),
        "train_end": weeks.max().isoformat(),
        "coef_names": names,
        "coef": coef,
        "cov": [[float(x) for x in row] for row in cov],
        "segment_groups": {str(s): g for s, g in group_of.items()},
        "overall_elasticity": overall,
        "segment_elasticity": segment_elasticity,
        "series_effects": series_effects,
        "product_effects": {str(k2): float(v) for k2, v in eff.groupby("product_id")["fe"].mean().items()},
        "store_effects": {str(k2): float(v) for k2, v in eff.groupby("store_id")["fe"].mean().items()},
        "segment_effects": {str(k2): float(v) for k2, v in eff.groupby("segment")["fe"].mean().items()},
        "global_effect": float(fe.mean()),
        "smearing": smearing,
        "residual_sd": float(np.sqrt(resid @ resid / dof)),
        "n_train": int(n),
        "n_series": int(n_series),
    }
    log(
        f"fit: {n} rows, {n_series} series, overall elasticity {overall['estimate']:.3f} "
        f"[{overall['ci_low']:.3f}, {overall['ci_high']:.3f}]; "
        + ", ".join(f"{s} {v['estimate']:.3f}" for s, v in segment_elasticity.items())
    )
    refs = _references(train, reference_weeks, from_end=True)
    model["recommendations"] = _recommend(model, refs, objective, bounds, log)
    return model


def _row_elasticity(model: dict, segments: np.ndarray) -> np.ndarray:
    table = model["segment_elasticity"]
    overall = model["overall_elasticity"]["estimate"]
    return np.array([table[s]["estimate"] if s in table else overall for s in segments], dtype=float)


def _row_effects(model: dict, df: pd.DataFrame) -> np.ndarray:
    se, pe, ste, sge = (
        model["series_effects"],
        model["product_effects"],
        model["store_effects"],
        model["segment_effects"],
    )
    g = model["global_effect"]
    prods = df["product_id"].astype(str)
    series = _series_key(df).map(se)
    # unseen series: global + product (else segment) deviation + store deviation
    prod_dev = prods.map(pe).fillna(df["segment"].astype(str).map(sge)).fillna(g) - g
    store_dev = df["store_id"].astype(str).map(ste).fillna(g) - g
    fallback = g + prod_dev + store_dev
    return series.fillna(fallback).to_numpy(dtype=float)


def _predict_units(model: dict, rows: pd.DataFrame) -> np.ndarray:
    _require(rows, PREDICT_COLUMNS)
    hp = model["hyperparameters"]
    price = rows["price"].to_numpy(dtype=float)
    if (price <= 0).any() or np.isnan(price).any():
        raise ValueError("price must be positive")
    ctrl, ctrl_names = _controls(rows, int(hp["fourier_order"]), bool(hp["trend"]), pd.Timestamp(model["t0"]))
    gamma = np.array([model["coef"][nm] for nm in ctrl_names])
    e = _row_elasticity(model, rows["segment"].astype(str).to_numpy())
    log_q = _row_effects(model, rows) + e * np.log(price) + ctrl @ gamma
    return np.exp(log_q) * model["smearing"]


def predict(model: dict, rows: pd.DataFrame) -> list:
    """Expected units for each row at its price (needs PREDICT_COLUMNS; labels not needed)."""
    return [float(v) for v in _predict_units(model, rows)]


# ----------------------------------------------------------------------------- optimiser


def optimal_multiplier(
    elasticity, current_price, unit_cost, objective: str, min_change: float, max_change: float
):
    """Price multipliers ``p*/p0`` maximising revenue or margin on ``q = q0 (p/p0)^e``.

    Vectorised over products; returns ``(multiplier array, status list)`` with status
    ``optimised`` (interior), ``min_bound``/``max_bound`` (clipped) or ``no_optimum``
    (elasticity >= 0: keep the current price).
    """
    e = np.atleast_1d(np.asarray(elasticity, dtype=float))
    p0 = np.broadcast_to(np.asarray(current_price, dtype=float), e.shape)
    c = np.broadcast_to(np.asarray(unit_cost, dtype=float), e.shape)
    lo, hi = 1.0 + min_change, 1.0 + max_change
    m = np.ones_like(e)
    status = []
    for i in range(e.size):
        ei = e[i]
        if not np.isfinite(ei) or ei >= 0:
            status.append("no_optimum")
            continue
        if objective == "revenue":
            mi = lo if ei < -1 else (hi if ei > -1 else 1.0)
        elif objective == "margin":
            if not np.isfinite(c[i]):
                raise ValueError("margin objective needs unit_cost")
            mi = hi if ei >= -1 else ei * c[i] / ((1 + ei) * p0[i])
        else:
            raise ValueError(f"objective must be one of {OBJECTIVES}")
        mi = float(np.clip(mi, lo, hi))
        m[i] = mi
        if ei == -1 and objective == "revenue":
            status.append("optimised")
        elif mi <= lo + 1e-12 and lo < 1:
            status.append("min_bound")
        elif mi >= hi - 1e-12 and hi > 1:
            status.append("max_bound")
        else:
            status.append("optimised")
    return m, status


def _references(df: pd.DataFrame, weeks_back: int, *, from_end: bool) -> pd.DataFrame:
    """Per product: segment, current price (median regular_price or price) and unit cost."""
    _require(df, ["product_id", "segment", TIME, "price"])
    wk = _weeks(df[TIME])
    tail = (wk >= wk.max() - pd.Timedelta(weeks=max(weeks_back, 1) - 1)) if from_end else wk.notna()
    sub = df[tail]
    price_col = "regular_price" if "regular_price" in sub.columns else "price"
    agg = {"segment": ("segment", "first"), "current_price": (price_col, "median")}
    if "unit_cost" in sub.columns:
        agg["unit_cost"] = ("unit_cost", "median")
    ref = sub.groupby("product_id", sort=True).agg(**agg).reset_index()
    if "unit_cost" not in ref.columns:
        ref["unit_cost"] = np.nan
    ref["product_id"] = ref["product_id"].astype(str)
    ref["segment"] = ref["segment"].astype(str)
    return ref


def _recommend(model: dict, refs: pd.DataFrame, objective: str, bounds: dict, log) -> list[dict]:
    e = _row_elasticity(model, refs["segment"].to_numpy())
    m, status = optimal_multiplier(
        e,
        refs["current_price"].to_numpy(dtype=float),
        refs["unit_cost"].to_numpy(dtype=float),
        objective,
        bounds["min_change"],
        bounds["max_change"],
    )
    recs = []
    for i, row in enumerate(refs.itertuples(index=False)):
        if status[i] == "no_optimum":
            log(
                f"optimiser: warning: elasticity {e[i]:.3f} >= 0 for product {row.product_id} "
                f"(segment {row.segment}); no optimum, keeping the current price"
            )
        cost = float(row.unit_cost)
        recs.append(
            {
                "product_id": str(row.product_id),
                "segment": str(row.segment),
                "elasticity": float(e[i]),
                "current_price": float(row.current_price),
                "unit_cost": cost if np.isfinite(cost) else None,
                "multiplier": float(m[i]),
                "recommended_price": round(float(row.current_price * m[i]), 2),
                "change": round(float(m[i] - 1.0), 6),
                "status": status[i],
            }
        )
    return recs


def _recommendations_for(model: dict, rows: pd.DataFrame, objective: str, bounds: dict, log) -> dict:
    """Recommendations keyed by product: the model's stored ones (re-optimised if objective
    or bounds differ), plus products unseen in training referenced on ``rows``."""
    stored = pd.DataFrame(model["recommendations"])
    same = objective == model["objective"] and bounds == model["price_bounds"]
    if len(stored):
        refs = stored[["product_id", "segment", "current_price", "unit_cost"]].copy()
        refs["unit_cost"] = refs["unit_cost"].astype(float)
        recs = model["recommendations"] if same else _recommend(model, refs, objective, bounds, log)
    else:
        recs = []
    out = {r["product_id"]: r for r in recs}
    missing = rows[~rows["product_id"].astype(str).isin(out)]
    if len(missing):
        for r in _recommend(model, _references(missing, 0, from_end=False), objective, bounds, log):
            out[r["product_id"]] = r
    return out


# ----------------------------------------------------------------------------- evaluation


def prediction_metrics(predictions: pd.DataFrame, manifest: dict) -> dict[str, float]:
    """``evaluate``'s metrics recomputed from its predictions frame, for any subset or
    resample of its rows (module docstring): ``new_price = price * price_multiplier``,
    ``new_units = units * predicted_units_at_recommended / predicted_units``. ``elasticity``
    is the model's (the ``overall_elasticity`` column, the same on every row:
    ``CONSTANT_METRICS``); ``nan`` for an empty frame."""
    price = predictions["price"].to_numpy(dtype=float)
    actual = predictions[LABEL].to_numpy(dtype=float)
    q_hat = predictions["predicted_units"].to_numpy(dtype=float)
    new_price = price * predictions["price_multiplier"].to_numpy(dtype=float)
    new_units = actual * predictions["predicted_units_at_recommended"].to_numpy(dtype=float) / q_hat
    cost = predictions["unit_cost"].to_numpy(dtype=float)
    elasticity = predictions["overall_elasticity"].to_numpy(dtype=float)
    return {
        "elasticity": float(elasticity[0]) if elasticity.size else math.nan,
        "revenue_lift": pm.revenue_lift(price, actual, new_price, new_units),
        "margin_impact": pm.margin_impact(price, cost, actual, new_price, new_units),
        "calibration": pm.calibration(actual, q_hat),
        "demand_mape": pm.demand_mape(actual, q_hat),
    }


def evaluate(model: dict, test: pd.DataFrame, manifest: dict) -> tuple[dict, pd.DataFrame, dict]:
    """Holdout metrics, predictions and plot data (see module docstring)."""
    cfg = stage_config(manifest, "evaluation")
    objective = _objective(cfg.get("objective", model["objective"]))
    bounds = _bounds(cfg.get("price_bounds", model["price_bounds"]))
    curve_points = int(cfg.get("curve_points", 41))
    max_products = int(cfg.get("max_plot_products", 40))
    _require(test, [*PREDICT_COLUMNS, LABEL, "unit_cost"])
    if test.empty:
        raise ValueError("empty holdout")
    test = test.reset_index(drop=True)

    actual = test[LABEL].to_numpy(dtype=float)
    price = test["price"].to_numpy(dtype=float)
    cost = test["unit_cost"].to_numpy(dtype=float)
    q_hat = _predict_units(model, test)

    recs = _recommendations_for(model, test, objective, bounds, _noop)
    mult = np.array([recs[p]["multiplier"] for p in test["product_id"].astype(str)], dtype=float)
    new_price = price * mult
    moved = test.assign(price=new_price)
    q_hat_new = _predict_units(model, moved)

    predictions = pd.DataFrame(
        {
            "product_id": test["product_id"].astype(str),
            "store_id": test["store_id"].astype(str),
            "week": _weeks(test[TIME]),
            "segment": test["segment"].astype(str),
            "price": price,
            "units": actual,
            "predicted_units": q_hat,
            "recommended_price": np.round(new_price, 2),
            "predicted_units_at_recommended": q_hat_new,
            # what prediction_metrics needs besides the above: the exact (unrounded) price
            # change, the cost, and the model's overall elasticity (a constant)
            "price_multiplier": mult,
            "unit_cost": cost,
            "overall_elasticity": float(model["overall_elasticity"]["estimate"]),
        }
    )
    metrics = prediction_metrics(predictions, manifest)

    # typical product: the one with the median holdout revenue
    rev = (
        test.assign(_rev=price * actual).groupby(test["product_id"].astype(str))["_rev"].sum()
    ).sort_values(kind="stable")
    typical = rev.index[(len(rev) - 1) // 2]
    rec = recs[typical]
    p0 = rec["current_price"]
    rows_p = test[test["product_id"].astype(str) == typical]
    grid = p0 * np.linspace(
        max(0.05, 1 + 2 * bounds["min_change"]), 1 + 2 * bounds["max_change"], curve_points
    )
    unit_curve = np.array([_predict_units(model, rows_p.assign(price=g)).mean() for g in grid])
    c0 = rec["unit_cost"] if rec["unit_cost"] is not None else float(rows_p["unit_cost"].median())
    seg_tab = model["segment_elasticity"]
    seg_names = sorted(seg_tab)
    shown = sorted(recs.values(), key=lambda r: r["product_id"])[:max_products]
    plot = {
        "demand_curve": {
            "product_id": typical,
            "segment": rec["segment"],
            "elasticity": rec["elasticity"],
            "objective": objective,
            "price": [round(float(g), 4) for g in grid],
            "units": [float(u) for u in unit_curve],
            "revenue": [float(g * u) for g, u in zip(grid, unit_curve, strict=True)],
            "margin": [float((g - c0) * u) for g, u in zip(grid, unit_curve, strict=True)],
            "current_price": float(p0),
            "chosen_price": float(rec["recommended_price"]),
            "unit_cost": float(c0),
            "bounds": [float(p0 * (1 + bounds["min_change"])), float(p0 * (1 + bounds["max_change"]))],
        },
        "segment_elasticity": {
            "segment": seg_names,
            "estimate": [seg_tab[s]["estimate"] for s in seg_names],
            "ci_low": [seg_tab[s]["ci_low"] for s in seg_names],
            "ci_high": [seg_tab[s]["ci_high"] for s in seg_names],
            "n_rows": [seg_tab[s]["n_rows"] for s in seg_names],
        },
        "overall_elasticity": {
            k: model["overall_elasticity"][k] for k in ("estimate", "ci_low", "ci_high", "se")
        }
        | {"ci_level": float(model["hyperparameters"]["ci_level"])},
        "recommendations": {
            "product_id": [r["product_id"] for r in shown],
            "segment": [r["segment"] for r in shown],
            "current_price": [r["current_price"] for r in shown],
            "recommended_price": [r["recommended_price"] for r in shown],
            "change": [round(r["change"], 4) for r in shown],
        },
    }
    return metrics, predictions, plot


# ----------------------------------------------------------------------------- persistence


def save(model: dict, directory: Path) -> list[str]:
    """Write ``model.json`` (plain JSON, no pickle) into ``directory``."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "model.json").write_text(json.dumps(model, allow_nan=False))
    return ["model.json"]


def load(directory: Path) -> dict:
    model = json.loads((Path(directory) / "model.json").read_text())
    if model.get("family") != NAME:
        raise ValueError("not a pricing model")
    return model


def example_output(model: dict, rows: pd.DataFrame) -> dict:
    """Predicted units for up to 10 rows plus the recommended prices of their products."""
    head = rows.head(10)
    q = _predict_units(model, head)
    recs = _recommendations_for(model, head, model["objective"], model["price_bounds"], _noop)
    products = list(dict.fromkeys(head["product_id"].astype(str)))
    return {
        "predictions": [
            {
                "product_id": str(r.product_id),
                "store_id": str(r.store_id),
                "week": pd.Timestamp(getattr(r, TIME)).date().isoformat(),
                "price": float(r.price),
                "predicted_units": round(float(qi), 3),
            }
            for r, qi in zip(head.itertuples(index=False), q, strict=True)
        ],
        "recommended_prices": [
            {
                k: recs[p][k]
                for k in ("product_id", "segment", "current_price", "recommended_price", "change", "status")
            }
            for p in products
        ],
        "elasticity": {
            "overall": model["overall_elasticity"],
            "segments": {s: v["estimate"] for s, v in model["segment_elasticity"].items()},
        },
        "objective": model["objective"],
        "price_bounds": model["price_bounds"],
    }
