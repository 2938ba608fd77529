"""Next best action: uplift models that decide which customers to send an offer to.

Data (``generate``): one row per customer (grain ``customer_id``) of a randomised campaign:
the offer is sent to about half of the customers at random (``treatment``), and we observe
whether the customer converted (``converted``) and the revenue it brought (``revenue``).
The true effect of the offer is heterogeneous: on the logit scale it depends on the
contact channel, on how recently the customer last bought (a bump around 60 days), on a
low purchase frequency and on the premium segment (which responds negatively: "sleeping
dogs"). ``ground_truth(seed)`` gives the parameters and ``true_uplift(df)`` the true
``P(convert | treated) - P(convert | control)`` of any frame with the feature columns.

Models (training stage config ``algorithm``), all on LightGBM boosters saved as model text:

``two_model`` (default)
    One classifier on the treated rows and one on the control rows;
    ``uplift = p_treated(x) - p_control(x)``.
``class_transformation``
    One classifier of ``z = y * t + (1 - y) * (1 - t)`` with sample weights that re-balance
    treated and control to 50/50 (Jaskowski & Jaroszewicz 2012); ``uplift = 2 P(z=1|x) - 1``.
``x_learner``
    Künzel et al. 2019: outcome classifiers ``mu_t``, ``mu_c``; regressors ``tau_t`` on the
    treated imputed effects ``y - mu_c(x)`` and ``tau_c`` on the control ones
    ``mu_t(x) - y``; ``uplift = e * tau_c(x) + (1 - e) * tau_t(x)`` with ``e`` the share
    of treated rows in the training data (a randomised experiment: constant propensity).

The recommended action is ``send_offer`` when the uplift exceeds the training config's
``action_threshold`` (default 0), else ``no_offer``.

Stage configs (``runs.families.stage_config``):

``feature_prep``: ``dedupe`` (true: keep the latest row per customer_id), ``drop_missing_labels``
(true: drop rows whose treatment/converted is missing), ``caps`` ({column: upper cap}
clipping numeric features, default {}), ``fill_numeric`` (null: leave NaN to LightGBM, or a
number to fill missing numeric features with).

``training``: ``algorithm`` (two_model | class_transformation | x_learner), ``features``
(default: every default feature present in the training frame), ``action_threshold`` (0.0),
``hyperparameters``: ``n_estimators`` (200), ``learning_rate`` (0.05), ``num_leaves`` (15),
``min_child_samples`` (200), ``reg_lambda`` (1.0), ``feature_fraction`` (1.0),
``bagging_fraction`` (1.0), ``max_depth`` (-1), ``seed`` (42).

``evaluation``: ``k`` (0.1, fraction targeted), ``offer_cost`` (0.0, subtracted per
targeted customer in incremental_revenue), ``revenue_population`` (1000: incremental
revenue per this many scored customers; null = total over the holdout), ``curve_points``
(101).

Validation (``manifest["evaluation"]["validation"]``): ``method`` random_holdout (default)
| time_holdout (last ``test_size`` share of the event_time range); ``test_size`` (0.2);
``seed`` (42). ``folds()``: rolling_origin when the method is rolling_origin or
time_holdout, otherwise shuffled kfold; ``folds`` (3).

``evaluate`` returns:

* metrics -- ``uplift``, ``uplift@k``, ``precision@k``, ``qini_coefficient``, ``auuc``,
  ``incremental_revenue`` (definitions in ``runs.metrics.next_best_action``);
* predictions -- ``customer_id, event_time, treatment, converted, revenue, uplift_score,
  recommended_action`` per holdout row (``prediction_metrics(predictions, manifest)``
  computes the metrics from them, so from any resample of the rows: a comparison's bootstrap
  resamples customers, ``BOOTSTRAP_GROUPS``);
* plot -- two charts, each ``{"type", "title", "x_label", "y_label", "x": [...],
  "series": {name: [...]}}``:

  - ``"qini_curve"`` (type ``line``): x = share of customers targeted (``curve_points``
    points from 0 to 1), series ``model`` (the Qini curve: incremental conversions among the
    targeted) and ``random`` (the straight random-targeting line);
  - ``"uplift_by_decile"`` (type ``bar``): x = decile 1..10 of the uplift score (1 = highest),
    series ``observed`` (treated minus control conversion rate), ``predicted`` (mean
    score) and ``random`` (the holdout's overall observed uplift, the same in every decile).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path

import lightgbm as lgb
import numpy as np
import pandas as pd
from threadpoolctl import threadpool_limits

from runs.families import lgb_watch, stage_config, worlds
from runs.metrics import next_best_action as nba_metrics

NAME = "next_best_action"
PREDICTION_COLUMN = "uplift_score"  # what predict() returns, as a score run's column
# Data larger than TRAIN_MAX_ROWS is sampled by rows: each row is one customer's treatment and
# response, independent of the others, so a uniform row sample keeps the treatment/control
# balance and the uplift estimate unbiased (runs.data.read_sample).
# Or, with `distributed: "dask"` in the training config, every row trains on a Dask cluster
# (fit_dask, runs.distributed): prepare() is row-local but for `dedupe`, which then keeps a
# customer's latest row across the whole file (a first pass records each customer's latest row by a
# hash of its key: runs.distributed.LatestRows), and the category codes
# come from a first pass over the whole dataset, not from the training rows.
SAMPLE_BY_SERIES = False
DEFAULT_ROWS = 100_000

GRAIN = "customer_id"
TIME = "event_time"
TREATMENT = "treatment"
LABEL = "converted"
REVENUE = "revenue"
NUMERIC_FEATURES = ["tenure_months", "recency_days", "frequency", "monetary"]
CATEGORICAL_FEATURES = ["segment", "channel"]
DEFAULT_FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
ALGORITHMS = ("two_model", "class_transformation", "x_learner")
SEND, HOLD = "send_offer", "no_offer"
# For a comparison's bootstrap (monitoring.comparison): the predictions column of the unit to
# resample (a customer), the metrics that are not a function of the rows (none here) and the
# predictions columns prediction_metrics reads (the only ones a replicate needs to copy).
BOOTSTRAP_GROUPS: list[str] = [GRAIN]
CONSTANT_METRICS: set[str] = set()
METRIC_COLUMNS: list[str] = [TREATMENT, LABEL, REVENUE, "uplift_score"]

SCHEMA: list[dict] = [
    {"name": "customer_id", "dtype": "string", "role": "grain", "description": "Customer identifier."},
    {
        "name": "event_time",
        "dtype": "datetime",
        "role": "time",
        "description": "When the customer entered the campaign (offer decision time).",
    },
    {
        "name": "tenure_months",
        "dtype": "int",
        "role": "feature",
        "description": "Months since the customer's first purchase.",
    },
    {
        "name": "recency_days",
        "dtype": "int",
        "role": "feature",
        "description": "Days since the customer's last purchase, at event_time.",
    },
    {
        "name": "frequency",
        "dtype": "int",
        "role": "feature",
        "description": "Purchases in the 12 months before event_time.",
    },
    {
        "name": "monetary",
        "dtype": "float",
        "role": "feature",
        "description": "Average order value over the last 12 months (currency units).",
    },
    {
        "name": "segment",
        "dtype": "string",
        "role": "segment",
        "description": "Customer value segment: value | mainstream | premium (also a model feature).",
    },
    {
        "name": "channel",
        "dtype": "string",
        "role": "feature",
        "description": "Preferred contact channel: email | sms | app | web.",
    },
    {
        "name": "treatment",
        "dtype": "int",
        "role": "treatment",
        "description": "1 if the offer was sent (randomised, about 50%), else 0.",
    },
    {
        "name": "converted",
        "dtype": "int",
        "role": "label",
        "description": "1 if the customer purchased within 14 days of event_time.",
    },
    {
        "name": "revenue",
        "dtype": "float",
        "role": "label",
        "description": "Revenue of that purchase (0 if none), net of the offer's 10% discount.",
    },
]

FEATURE_SETS: dict[str, list[str]] = {
    "customer_profile": ["tenure_months", "segment"],
    "rfm": ["recency_days", "frequency", "monetary"],
    "channel_preferences": ["channel"],
    "campaign": ["treatment", "event_time"],
    "outcomes": ["converted", "revenue"],
}

# ---------------------------------------------------------------------------------------
# Synthetic data with a known ground truth
# ---------------------------------------------------------------------------------------

_START = pd.Timestamp("2024-01-01")
ORIGIN = "2024-01-01"  # the world's day 0
PERIOD_DAYS = 1
_CALENDAR = worlds.Calendar(ORIGIN, PERIOD_DAYS)
CONCEPTS = {
    "offer_stops_working": (
        "The offer stops working: treated customers convert like untreated ones (true uplift 0), "
        "while the customers look the same"
    ),
}
_DAYS = 365
_SEGMENTS = ["value", "mainstream", "premium"]
_SEGMENT_P = [0.35, 0.45, 0.20]
_SEGMENT_AOV = {"value": 35.0, "mainstream": 60.0, "premium": 140.0}
_CHANNELS = ["email", "sms", "app", "web"]
_CHANNEL_P = [0.35, 0.15, 0.25, 0.25]

_BASE = {
    "intercept": -1.9,
    "log1p_frequency": 0.35,
    "recency_days": -0.006,
    "log_monetary_over_60": 0.10,
    "tenure_months_capped_60": 0.006,
    "channel": {"email": 0.0, "sms": -0.1, "app": 0.25, "web": 0.1},
}
_UPLIFT = {
    "intercept": -0.35,
    "channel": {"email": 0.6, "sms": 0.3, "app": 0.4, "web": -0.1},
    "recency_bump": {"height": 1.0, "center_days": 60.0, "width_days": 40.0},
    "low_frequency": {"max_frequency": 2, "effect": 0.4},
    "premium_segment": -0.7,
}
_DISCOUNT = 0.10


def ground_truth(seed: int) -> dict:
    """The parameters behind ``generate`` (the same for every seed; the seed only draws rows).

    Conversion probability: ``p = sigmoid(base(x) + treatment * tau(x))`` with
    ``base(x) = intercept + 0.35 log1p(frequency) - 0.006 recency_days
    + 0.10 log(monetary / 60) + 0.006 min(tenure_months, 60) + channel effect`` and the
    treatment effect on the logit scale ``tau(x) = -0.35 + channel uplift
    + 1.0 exp(-((recency_days - 60) / 40)^2) + 0.4 [frequency <= 2] - 0.7 [premium]``.
    Revenue of a conversion: ``monetary * lognormal(0, 0.25) * (1 - 0.10 treatment)``.
    """
    return {
        "seed": int(seed),
        "treatment_share": 0.5,
        "base_logit": json.loads(json.dumps(_BASE)),
        "uplift_logit": json.loads(json.dumps(_UPLIFT)),
        "revenue": {"order_value": "monetary * lognormal(0, 0.25)", "discount_when_treated": _DISCOUNT},
        "true_uplift": "sigmoid(base + tau) - sigmoid(base); see true_uplift(df)",
        "converted_window_days": 14,
    }


def _sigmoid(z: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-z))


def _logits(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    freq = df["frequency"].to_numpy(float)
    rec = df["recency_days"].to_numpy(float)
    mon = df["monetary"].to_numpy(float)
    ten = df["tenure_months"].to_numpy(float)
    chan = df["channel"].astype(str)
    base = (
        _BASE["intercept"]
        + _BASE["log1p_frequency"] * np.log1p(freq)
        + _BASE["recency_days"] * rec
        + _BASE["log_monetary_over_60"] * np.log(np.maximum(mon, 1.0) / 60.0)
        + _BASE["tenure_months_capped_60"] * np.minimum(ten, 60.0)
        + np.nan_to_num(worlds.lookup(chan, _BASE["channel"]), nan=0.0)
    )
    bump = _UPLIFT["recency_bump"]
    tau = (
        _UPLIFT["intercept"]
        + np.nan_to_num(worlds.lookup(chan, _UPLIFT["channel"]), nan=0.0)
        + bump["height"] * np.exp(-(((rec - bump["center_days"]) / bump["width_days"]) ** 2))
        + _UPLIFT["low_frequency"]["effect"] * (freq <= _UPLIFT["low_frequency"]["max_frequency"])
        + _UPLIFT["premium_segment"] * (df["segment"].astype(str).to_numpy() == "premium")
    )
    return base, tau


def true_uplift(df: pd.DataFrame) -> np.ndarray:
    """The true ``P(convert | treated, x) - P(convert | control, x)`` for every row of ``df``."""
    base, tau = _logits(df)
    return _sigmoid(base + tau) - _sigmoid(base)


def layout(rows: int) -> tuple[dict, int]:
    """The world of a ``rows``-row training batch: a base of ``rows`` customers whose offer
    events spread over a year (a later window of more rows than that also reaches customers
    who joined since: see ``generate``)."""
    rows = int(rows)
    if rows < 1:
        raise ValueError("rows must be >= 1")
    return {"customers": rows, "events_per_day": round(rows / _DAYS, 6)}, _DAYS


def window_periods(world: dict, rows: int) -> int:
    """Days of events that hold about ``rows`` events at the world's rate."""
    return max(1, round(int(rows) / float(world["events_per_day"])))


def window_rows(world: dict, periods: int, rows: int | None = None) -> int:
    return int(rows) if rows else max(1, round(float(world["events_per_day"]) * int(periods)))


def describe_world(world: dict) -> str:
    return f"{int(world['customers']):,} customers, about {float(world['events_per_day']):,.0f} offer events a day"


# Customers who joined after the world's first year are drawn in blocks of this many, each
# block from its own stream, so a new customer's attributes do not depend on the window.
_NEW_CUSTOMER_BLOCK = 65_536


def _customers(rng: np.random.Generator, n: int) -> tuple[np.ndarray, ...]:
    """Segment, preferred channel, tenure (months) and typical order value of ``n`` customers."""
    segment = rng.choice(_SEGMENTS, size=n, p=_SEGMENT_P)
    channel = rng.choice(_CHANNELS, size=n, p=_CHANNEL_P)
    tenure = np.minimum(np.round(rng.gamma(2.0, 12.0, size=n)), 240).astype(np.int64)
    aov = worlds.lookup(segment, _SEGMENT_AOV)
    monetary = np.round(aov * rng.lognormal(0.0, 0.4, size=n), 2)
    return segment, channel, tenure, monetary


def _new_customers(seed: int, n: int) -> tuple[np.ndarray, ...]:
    """The first ``n`` customers who joined after the world's first year (``_customers`` of
    block ``b`` drawn from the stream ``[seed, 2, b]``)."""
    blocks = [
        _customers(np.random.default_rng([seed, 2, b]), _NEW_CUSTOMER_BLOCK)
        for b in range(-(-n // _NEW_CUSTOMER_BLOCK))
    ]
    return tuple(np.concatenate([block[i] for block in blocks])[:n] for i in range(4))


def generate(
    rows: int, seed: int, *, world: dict | None = None, window: dict | None = None, concept: str | None = None
) -> pd.DataFrame:
    """``rows`` offer events of a randomised campaign (deterministic in rows, seed and window).

    The seed fixes the world's customers (segment, preferred channel, tenure, typical order
    value); a window (``{"start", "periods"}`` in days, default the first year) draws which
    customers get an offer when (each customer at most once: the grain), their recency and
    frequency at that time, the random treatment and the outcome. A window of more rows than
    the world has customers (a large scoring batch) also reaches customers who joined after
    the world's first year: ids ``customers + 1 ..``, drawn from the same distributions
    (``_new_customers``: a new customer is the same in every window). Windows of at most
    ``customers`` rows are as they always were. ``concept="offer_stops_working"``: the offer
    has no effect any more (treated customers convert like untreated ones)."""
    rows = int(rows)
    sizes, first = layout(rows)
    world = world or sizes
    start, days = (0, first) if window is None else worlds.span(_CALENDAR, window)
    n_customers = int(world["customers"])

    # the entities: the world's customers, and the customers who joined since if the window
    # has more rows than the world has customers
    segment_of, channel_of, tenure_of, monetary_of = _customers(np.random.default_rng([seed, 0]), n_customers)
    if rows > n_customers:
        extra = _new_customers(seed, rows - n_customers)
        segment_of, channel_of, tenure_of, monetary_of = (
            np.concatenate([old, new])
            for old, new in zip((segment_of, channel_of, tenure_of, monetary_of), extra, strict=True)
        )

    rng = np.random.default_rng([seed, 1, start, days])  # this window's events
    who = np.sort(rng.choice(max(n_customers, rows), size=rows, replace=False))
    seconds = np.sort(rng.integers(0, days * 86_400, size=rows))
    event_time = pd.Timestamp(ORIGIN) + pd.Timedelta(days=start) + pd.to_timedelta(seconds, unit="s")
    segment, channel, tenure = segment_of[who], channel_of[who], tenure_of[who]
    seg_freq = worlds.lookup(segment, {"value": -0.2, "mainstream": 0.0, "premium": 0.3})
    lam = np.exp(0.6 + 0.25 * np.log1p(tenure) + seg_freq)
    frequency = rng.poisson(lam).astype(np.int64)
    recency = np.minimum(np.round(rng.exponential(25.0 + 240.0 / (1.0 + frequency))), 730).astype(np.int64)
    monetary = monetary_of[who]
    treatment = (rng.random(rows) < 0.5).astype(np.int64)
    order = rng.permutation(rows)  # customers in event order, not id order
    df = pd.DataFrame(
        {
            "customer_id": pd.array([f"C{i + 1:07d}" for i in who[order]], dtype="string"),
            "event_time": pd.Series(event_time).astype("datetime64[ns]"),
            "tenure_months": tenure[order],
            "recency_days": recency[order],
            "frequency": frequency[order],
            "monetary": monetary[order].astype(float),
            "segment": pd.array(segment[order], dtype="string"),
            "channel": pd.array(channel[order], dtype="string"),
            "treatment": treatment,
        }
    )
    base, tau = _logits(df)
    if concept == "offer_stops_working":
        tau = np.zeros_like(tau)
    p = _sigmoid(base + treatment * tau)
    converted = (rng.random(rows) < p).astype(np.int64)
    order_value = df["monetary"].to_numpy(float) * rng.lognormal(0.0, 0.25, size=rows)
    order_value *= 1.0 - _DISCOUNT * treatment
    df["converted"] = converted
    df["revenue"] = np.round(converted * order_value, 2).astype(float)
    return df


# ---------------------------------------------------------------------------------------
# Stages: prepare, split, folds
# ---------------------------------------------------------------------------------------


def _noop(message: str) -> None:
    pass


def prepare(df: pd.DataFrame, manifest: dict, *, log=_noop) -> pd.DataFrame:
    """The feature_prep stage: types, dedupe, missing labels, caps (see module docstring)."""
    cfg = stage_config(manifest, "feature_prep")
    out = df.copy()
    if TIME in out.columns:
        out[TIME] = pd.to_datetime(out[TIME])
    for col in NUMERIC_FEATURES:
        if col in out.columns:
            out[col] = pd.to_numeric(out[col], errors="coerce")
    for col in CATEGORICAL_FEATURES:
        if col in out.columns:
            out[col] = out[col].astype("string")
    if cfg.get("drop_missing_labels", True):
        present = [c for c in (TREATMENT, LABEL) if c in out.columns]
        before = len(out)
        out = out.dropna(subset=present)
        if len(out) < before:
            log(f"feature_prep: dropped {before - len(out)} rows with missing {'/'.join(present)}")
    for col in (TREATMENT, LABEL):
        if col in out.columns:
            values = out[col]
            if values.dtype == object or pd.api.types.is_string_dtype(values):
                values = (
                    values.astype(str).str.strip().str.lower().map({"true": 1, "false": 0}).fillna(values)
                )
            out[col] = pd.to_numeric(values).astype(np.int64)
    if REVENUE in out.columns:
        out[REVENUE] = pd.to_numeric(out[REVENUE], errors="coerce").fillna(0.0).astype(float)
    if cfg.get("dedupe", True) and GRAIN in out.columns:
        before = len(out)
        if TIME in out.columns:
            out = out.sort_values(TIME, kind="stable")
        out = out.drop_duplicates(subset=[GRAIN], keep="last")
        if TIME in out.columns:
            out = out.sort_values(TIME, kind="stable")
        if len(out) < before:
            log(f"feature_prep: removed {before - len(out)} duplicate {GRAIN} rows (kept the latest)")
    for col, cap in (cfg.get("caps") or {}).items():
        if col in out.columns:
            out[col] = out[col].clip(upper=cap)
    fill = cfg.get("fill_numeric")
    if fill is not None:
        for col in NUMERIC_FEATURES:
            if col in out.columns:
                out[col] = out[col].fillna(fill)
    log(f"feature_prep: {len(out)} rows, {len(out.columns)} columns")
    return out.reset_index(drop=True)


def _validation(manifest: dict) -> dict:
    return (manifest.get("evaluation") or {}).get("validation") or {}


def _test_size(validation: dict) -> float:
    size = float(validation.get("test_size", 0.2))
    if not 0.0 < size < 1.0:
        raise ValueError(f"validation.test_size must be in (0, 1), got {size}")
    return size


def split(df: pd.DataFrame, manifest: dict) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Holdout split: random_holdout (seeded permutation) or time_holdout (last share of time)."""
    validation = _validation(manifest)
    method = validation.get("method", "random_holdout")
    size = _test_size(validation)
    if len(df) < 2:
        raise ValueError("need at least 2 rows to split")
    if method == "time_holdout":
        times = pd.to_datetime(df[TIME])
        lo, hi = times.min(), times.max()
        cutoff = hi - (hi - lo) * size
        is_test = (times > cutoff).to_numpy()
        if is_test.all() or not is_test.any():
            raise ValueError("time_holdout produced an empty train or test set")
    elif method in ("random_holdout", "kfold", "random"):
        rng = np.random.default_rng(int(validation.get("seed", 42)))
        n_test = min(len(df) - 1, max(1, int(round(size * len(df)))))
        is_test = np.zeros(len(df), dtype=bool)
        is_test[rng.permutation(len(df))[:n_test]] = True
    else:
        raise ValueError(f"unsupported validation method for next_best_action: {method!r}")
    return df[~is_test].reset_index(drop=True), df[is_test].reset_index(drop=True)


def folds(df: pd.DataFrame, manifest: dict) -> list[tuple[pd.DataFrame, pd.DataFrame]]:
    """Backtest folds: rolling_origin on event_time (rolling_origin/time_holdout), else kfold."""
    validation = _validation(manifest)
    method = validation.get("method", "random_holdout")
    n_folds = int(validation.get("folds", 3))
    if n_folds < 2 and method != "rolling_origin":
        raise ValueError("folds must be >= 2")
    if n_folds < 1:
        raise ValueError("folds must be >= 1")
    out = []
    if method in ("rolling_origin", "time_holdout"):
        ordered = df.sort_values(TIME, kind="stable").reset_index(drop=True)
        times = pd.to_datetime(ordered[TIME])
        lo, hi = times.min(), times.max()
        edges = [lo + (hi - lo) * (i / (n_folds + 1)) for i in range(n_folds + 2)]
        for i in range(1, n_folds + 1):
            train_mask = (times <= edges[i]).to_numpy()
            test_mask = ((times > edges[i]) & (times <= edges[i + 1])).to_numpy()
            if train_mask.any() and test_mask.any():
                out.append(
                    (ordered[train_mask].reset_index(drop=True), ordered[test_mask].reset_index(drop=True))
                )
    else:
        rng = np.random.default_rng(int(validation.get("seed", 42)))
        parts = np.array_split(rng.permutation(len(df)), n_folds)
        for i, test_idx in enumerate(parts):
            train_idx = np.concatenate([p for j, p in enumerate(parts) if j != i])
            out.append(
                (
                    df.iloc[np.sort(train_idx)].reset_index(drop=True),
                    df.iloc[np.sort(test_idx)].reset_index(drop=True),
                )
            )
    if not out:
        raise ValueError("no non-empty folds")
    return out


# ---------------------------------------------------------------------------------------
# Model
# ---------------------------------------------------------------------------------------

_HYPER_DEFAULTS = {
    "n_estimators": 200,
    "learning_rate": 0.05,
    "num_leaves": 15,
    "min_child_samples": 200,
    "reg_lambda": 1.0,
    "feature_fraction": 1.0,
    "bagging_fraction": 1.0,
    "max_depth": -1,
    "seed": 42,
}


@dataclass
class UpliftModel:
    """A fitted uplift model: LightGBM boosters plus the metadata needed to score rows."""

    algorithm: str
    features: list[str]
    categories: dict[str, list[str]]
    boosters: dict[str, lgb.Booster]
    propensity: float = 0.5
    action_threshold: float = 0.0
    hyperparameters: dict = field(default_factory=dict)
    train_rows: int = 0

    def meta(self) -> dict:
        return {
            "family": NAME,
            "format": 1,
            "algorithm": self.algorithm,
            "features": self.features,
            "categories": self.categories,
            "propensity": self.propensity,
            "action_threshold": self.action_threshold,
            "hyperparameters": self.hyperparameters,
            "train_rows": self.train_rows,
            "boosters": sorted(self.boosters),
        }


def _matrix(rows: pd.DataFrame, features: list[str], categories: dict[str, list[str]]) -> np.ndarray:
    """Feature matrix: numeric as float, categoricals as codes of the training categories."""
    missing = [c for c in features if c not in rows.columns]
    if missing:
        raise ValueError(f"missing feature column(s): {', '.join(missing)}")
    X = np.empty((len(rows), len(features)), dtype=np.float64)
    for j, col in enumerate(features):
        if col in categories:
            lookup = {v: float(i) for i, v in enumerate(categories[col])}
            values = rows[col].astype("string")
            X[:, j] = values.map(lookup).astype("Float64").to_numpy(dtype=float, na_value=np.nan)
        else:
            X[:, j] = pd.to_numeric(rows[col], errors="coerce").to_numpy(dtype=float, na_value=np.nan)
    return X


def _lgb_params(hp: dict, objective: str, threads: int) -> dict:
    params = {
        "objective": objective,
        "learning_rate": float(hp["learning_rate"]),
        "num_leaves": int(hp["num_leaves"]),
        "min_data_in_leaf": int(hp["min_child_samples"]),
        "lambda_l2": float(hp["reg_lambda"]),
        "feature_fraction": float(hp["feature_fraction"]),
        "max_depth": int(hp["max_depth"]),
        "seed": int(hp["seed"]),
        "deterministic": True,
        "force_col_wise": True,
        "num_threads": int(threads),
        "verbose": -1,
    }
    if float(hp["bagging_fraction"]) < 1.0:
        params.update(bagging_fraction=float(hp["bagging_fraction"]), bagging_freq=1)
    return params


def _train(X, y, cat_idx, hp, objective, threads, weight=None, *, watch=None) -> lgb.Booster:
    """One booster. ``watch``: ``(callbacks, valid, name)`` with ``valid`` ``(X, y, weight)``
    or None: the callbacks see the loss per iteration on the training rows and on ``valid``
    (runs.families.lgb_watch); the booster is the same with or without."""
    data = lgb.Dataset(
        X,
        label=y,
        weight=weight,
        categorical_feature=cat_idx,
        free_raw_data=True,
        params={"verbose": -1, "num_threads": int(threads)},
    )
    kwargs = {}
    if watch is not None and watch[0]:
        callbacks, valid, name = watch
        valid_set = None
        if valid is not None and len(valid[1]):
            valid_set = lgb.Dataset(
                valid[0], label=valid[1], weight=valid[2], reference=data, free_raw_data=True
            )
        kwargs = lgb_watch(callbacks, data, valid_set, name)
    return lgb.train(
        _lgb_params(hp, objective, threads), data, num_boost_round=int(hp["n_estimators"]), **kwargs
    )


def _valid_rows(valid: pd.DataFrame | None, features: list[str], categories: dict) -> tuple | None:
    """``(X, treated, y)`` of the validation rows with a treatment and a label, or None."""
    if valid is None or TREATMENT not in valid.columns or LABEL not in valid.columns:
        return None
    rows = valid[valid[TREATMENT].notna() & valid[LABEL].notna()]
    if rows.empty:
        return None
    return (
        _matrix(rows, features, categories),
        rows[TREATMENT].to_numpy(dtype=float).astype(bool),
        rows[LABEL].to_numpy(dtype=float),
    )


def fit(
    train: pd.DataFrame,
    manifest: dict,
    *,
    threads: int = 1,
    log=_noop,
    callbacks: list | None = None,
    valid: pd.DataFrame | None = None,
) -> UpliftModel:
    """The training stage: fit the configured uplift learner on ``train``.

    ``callbacks`` are appended to every booster's ``lightgbm.train``; with them each
    booster's loss is evaluated per iteration on its training rows and on its rows of
    ``valid`` (never trained on, e.g. the holdout), named ``train``/``valid`` for the one
    booster of ``class_transformation`` and ``train.<booster>``/``valid.<booster>``
    otherwise (``treated``, ``control``; ``mu_treated``… for ``x_learner``). The boosters
    are the same with or without."""
    cfg = stage_config(manifest, "training")
    algorithm = cfg.get("algorithm", "two_model")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r} (choose one of {', '.join(ALGORITHMS)})")
    hp = {**_HYPER_DEFAULTS, **(cfg.get("hyperparameters") or {})}
    features = list(cfg.get("features") or [c for c in DEFAULT_FEATURES if c in train.columns])
    if not features:
        raise ValueError("no feature columns: expected some of " + ", ".join(DEFAULT_FEATURES))
    for col in (TREATMENT, LABEL, *features):
        if col not in train.columns:
            raise ValueError(f"missing column: {col}")
    t = train[TREATMENT].to_numpy(dtype=float).astype(bool)
    y = train[LABEL].to_numpy(dtype=float)
    if t.all() or not t.any():
        raise ValueError("training data needs both treated and control rows")
    categories = {
        col: sorted(str(v) for v in train[col].dropna().astype(str).unique())
        for col in features
        if col in CATEGORICAL_FEATURES or not pd.api.types.is_numeric_dtype(train[col])
    }
    cat_idx = [j for j, col in enumerate(features) if col in categories]
    propensity = float(t.mean())
    threads = max(1, int(threads))
    log(
        f"training: {algorithm} on {len(train)} rows ({int(t.sum())} treated, {int((~t).sum())} control), "
        f"features {features}, {hp['n_estimators']} rounds, {threads} thread(s)"
    )
    with threadpool_limits(threads):
        X = _matrix(train, features, categories)
        v = _valid_rows(valid, features, categories) if callbacks else None

        def watch(name: str, subset=None, target=None, weight=None):
            """The callbacks and the validation rows (`subset` of them, labelled `target`)."""
            if not callbacks:
                return None
            if v is None:
                return (callbacks, None, name)
            xv, yv = (v[0], v[2]) if subset is None else (v[0][subset], v[2][subset])
            return (callbacks, (xv, yv if target is None else target, weight), name)

        boosters: dict[str, lgb.Booster] = {}
        if algorithm == "two_model":
            tv = v[1] if v is not None else None
            boosters["treated"] = _train(
                X[t], y[t], cat_idx, hp, "binary", threads, watch=watch("treated", tv)
            )
            boosters["control"] = _train(
                X[~t],
                y[~t],
                cat_idx,
                hp,
                "binary",
                threads,
                watch=watch("control", None if tv is None else ~tv),
            )
        elif algorithm == "class_transformation":
            z = np.where(t, y, 1.0 - y)
            weight = np.where(t, 0.5 / propensity, 0.5 / (1.0 - propensity))
            vz = vw = None
            if v is not None:
                vz = np.where(v[1], v[2], 1.0 - v[2])
                vw = np.where(v[1], 0.5 / propensity, 0.5 / (1.0 - propensity))
            boosters["transformed"] = _train(
                X, z, cat_idx, hp, "binary", threads, weight=weight, watch=watch("", None, vz, vw)
            )
        else:  # x_learner
            tv = v[1] if v is not None else None
            mu_t = _train(X[t], y[t], cat_idx, hp, "binary", threads, watch=watch("mu_treated", tv))
            mu_c = _train(
                X[~t],
                y[~t],
                cat_idx,
                hp,
                "binary",
                threads,
                watch=watch("mu_control", None if tv is None else ~tv),
            )
            d_t = y[t] - mu_c.predict(X[t], num_threads=threads)
            d_c = mu_t.predict(X[~t], num_threads=threads) - y[~t]
            vd_t = vd_c = None
            if v is not None:
                vd_t = v[2][tv] - mu_c.predict(v[0][tv], num_threads=threads)
                vd_c = mu_t.predict(v[0][~tv], num_threads=threads) - v[2][~tv]
            boosters.update(
                mu_treated=mu_t,
                mu_control=mu_c,
                tau_treated=_train(
                    X[t], d_t, cat_idx, hp, "regression", threads, watch=watch("tau_treated", tv, vd_t)
                ),
                tau_control=_train(
                    X[~t],
                    d_c,
                    cat_idx,
                    hp,
                    "regression",
                    threads,
                    watch=watch("tau_control", None if tv is None else ~tv, vd_c),
                ),
            )
    model = UpliftModel(
        algorithm=algorithm,
        features=features,
        categories=categories,
        boosters=boosters,
        propensity=propensity,
        action_threshold=float(cfg.get("action_threshold", 0.0)),
        hyperparameters=hp,
        train_rows=len(train),
    )
    log(f"training: done ({len(boosters)} booster(s))")
    return model


def fit_dask(frames, manifest: dict, *, levels: dict, cluster, log=_noop) -> tuple[UpliftModel, int]:
    """The training stage on a Dask cluster (``runs.distributed``): (model, rows trained on).

    ``frames`` are the dataset's prepared training rows, chunk by chunk; ``levels`` every text
    column's levels in the whole dataset (the first pass: ``segment``, ``channel``), which fix
    the category codes before the first chunk is encoded. Each chunk is encoded here and its
    treated and control rows are scattered to the cluster; each booster of the configured
    learner trains there with ``fit``'s hyperparameters: ``two_model`` on each group's rows,
    ``class_transformation`` on every row with the re-balancing weights (the propensity counted
    over the chunks), ``x_learner``'s effect regressors on imputed effects computed on the
    cluster by its outcome boosters. The boosters are the same kind as ``fit``'s (same files,
    same predict path); no training curves (lightgbm.dask keeps them on the workers)."""
    cfg = stage_config(manifest, "training")
    algorithm = cfg.get("algorithm", "two_model")
    if algorithm not in ALGORITHMS:
        raise ValueError(f"unknown algorithm {algorithm!r} (choose one of {', '.join(ALGORITHMS)})")
    hp = {**_HYPER_DEFAULTS, **(cfg.get("hyperparameters") or {})}
    features: list[str] | None = list(cfg.get("features") or []) or None
    categories: dict[str, list[str]] = {}
    treated_parts, control_parts = [], []
    rows = treated = 0
    for chunk in frames:
        if features is None:  # as fit: every default feature the data has
            features = [c for c in DEFAULT_FEATURES if c in chunk.columns]
            if not features:
                raise ValueError("no feature columns: expected some of " + ", ".join(DEFAULT_FEATURES))
            categories = {c: list(levels.get(c, [])) for c in features if c in CATEGORICAL_FEATURES}
        elif not categories:
            categories = {c: list(levels.get(c, [])) for c in features if c in CATEGORICAL_FEATURES}
        for col in (TREATMENT, LABEL, *features):
            if col not in chunk.columns:
                raise ValueError(f"missing column: {col}")
        t = chunk[TREATMENT].to_numpy(dtype=float).astype(bool)
        y = chunk[LABEL].to_numpy(dtype=float)
        X = _matrix(chunk, features, categories)
        if t.any():
            treated_parts.append(cluster.scatter(X[t], y[t]))
        if (~t).any():
            control_parts.append(cluster.scatter(X[~t], y[~t]))
        rows += len(t)
        treated += int(t.sum())
    if not treated_parts or not control_parts:
        raise ValueError("training data needs both treated and control rows")
    cat_idx = [j for j, col in enumerate(features) if col in categories]
    propensity = treated / rows
    rounds = int(hp["n_estimators"])
    log(
        f"training: {algorithm} on the Dask cluster on {rows} rows ({treated} treated, {rows - treated} "
        f"control), features {features}, {rounds} rounds"
    )
    (xt, yt), (xc, yc) = cluster.concat(treated_parts), cluster.concat(control_parts)

    def train(X, y, objective, weight=None) -> lgb.Booster:
        return cluster.fit(X, y, _lgb_params(hp, objective, 1), rounds, weight=weight, categorical=cat_idx)

    boosters: dict[str, lgb.Booster] = {}
    if algorithm == "two_model":
        boosters["treated"] = train(xt, yt, "binary")
        boosters["control"] = train(xc, yc, "binary")
    elif algorithm == "class_transformation":
        # z = y for treated rows, 1 - y for control rows; weights re-balance the groups to 50/50
        X, z = cluster.stack(xt, xc), cluster.stack(yt, 1.0 - yc)
        weight = cluster.stack(yt * 0.0 + 0.5 / propensity, yc * 0.0 + 0.5 / (1.0 - propensity))
        boosters["transformed"] = train(X, z, "binary", weight=weight)
    else:  # x_learner: imputed effects computed on the cluster by the outcome boosters
        mu_t, mu_c = train(xt, yt, "binary"), train(xc, yc, "binary")
        boosters.update(
            mu_treated=mu_t,
            mu_control=mu_c,
            tau_treated=train(xt, yt - cluster.predict(mu_c, xt), "regression"),
            tau_control=train(xc, cluster.predict(mu_t, xc) - yc, "regression"),
        )
    model = UpliftModel(
        algorithm=algorithm,
        features=features,
        categories=categories,
        boosters=boosters,
        propensity=propensity,
        action_threshold=float(cfg.get("action_threshold", 0.0)),
        hyperparameters=hp,
        train_rows=rows,
    )
    log(f"training: done ({len(boosters)} booster(s))")
    return model, rows


def _scores(model: UpliftModel, rows: pd.DataFrame, threads: int = 1) -> np.ndarray:
    X = _matrix(rows, model.features, model.categories)
    if len(X) == 0:
        return np.zeros(0)
    b = model.boosters
    with threadpool_limits(threads):
        if model.algorithm == "two_model":
            return b["treated"].predict(X, num_threads=threads) - b["control"].predict(X, num_threads=threads)
        if model.algorithm == "class_transformation":
            return 2.0 * b["transformed"].predict(X, num_threads=threads) - 1.0
        if model.algorithm == "x_learner":
            e = model.propensity
            tau_c = b["tau_control"].predict(X, num_threads=threads)
            tau_t = b["tau_treated"].predict(X, num_threads=threads)
            return e * tau_c + (1.0 - e) * tau_t
    raise ValueError(f"unknown algorithm {model.algorithm!r}")


def predict(model: UpliftModel, rows: pd.DataFrame) -> list:
    """Uplift scores (``P(convert | offer) - P(convert | no offer)``), one float per row."""
    return [float(v) for v in _scores(model, rows)]


def recommend(model: UpliftModel, rows: pd.DataFrame) -> list[dict]:
    """Per row: ``{"uplift_score", "recommended_action"}`` (send_offer if uplift > threshold)."""
    return [
        {"uplift_score": float(s), "recommended_action": SEND if s > model.action_threshold else HOLD}
        for s in _scores(model, rows)
    ]


def prediction_metrics(predictions: pd.DataFrame, manifest: dict) -> dict[str, float]:
    """``evaluate``'s metrics recomputed from its predictions frame (``treatment``,
    ``converted``, ``revenue``, ``uplift_score``) with the evaluation stage's ``k``,
    ``offer_cost`` and ``revenue_population``, for any subset or resample of its rows
    (every metric ``nan`` for an empty frame)."""
    cfg = stage_config(manifest, "evaluation")
    population = cfg.get("revenue_population", 1000)
    if predictions.empty:
        return dict.fromkeys(nba_metrics.METRIC_NAMES, math.nan)
    return nba_metrics.compute_all(
        predictions[LABEL].to_numpy(dtype=float),
        predictions[TREATMENT].to_numpy(dtype=float),
        predictions["uplift_score"].to_numpy(dtype=float),
        predictions[REVENUE].to_numpy(dtype=float),
        k=float(cfg.get("k", 0.1)),
        offer_cost=float(cfg.get("offer_cost", 0.0)),
        population=None if population is None else int(population),
    )


def evaluate(model: UpliftModel, test: pd.DataFrame, manifest: dict) -> tuple[dict, pd.DataFrame, dict]:
    """Metrics, holdout predictions and plot data (see the module docstring)."""
    cfg = stage_config(manifest, "evaluation")
    points = max(2, min(int(cfg.get("curve_points", 101)), 500))
    for col in (TREATMENT, LABEL, REVENUE):
        if col not in test.columns:
            raise ValueError(f"missing column: {col}")
    score = _scores(model, test)
    y = test[LABEL].to_numpy(dtype=float)
    t = test[TREATMENT].to_numpy(dtype=float)

    keep = [c for c in (GRAIN, TIME, TREATMENT, LABEL, REVENUE) if c in test.columns]
    predictions = test[keep].copy().reset_index(drop=True)
    predictions["uplift_score"] = score
    predictions["recommended_action"] = np.where(score > model.action_threshold, SEND, HOLD)
    metrics = prediction_metrics(predictions, manifest)

    n, q = nba_metrics.qini_curve(y, t, score)
    grid = np.linspace(0.0, 1.0, points)
    total = n[-1]
    model_curve = np.interp(grid * total, n, q)
    random_curve = grid * q[-1]
    deciles = nba_metrics.uplift_by_bins(y, t, score, bins=10)
    ate = float(y[t == 1].mean() - y[t == 0].mean()) if (t == 1).any() and (t == 0).any() else math.nan
    plot = {
        "qini_curve": {
            "type": "line",
            "title": "Qini curve",
            "x_label": "share of customers targeted",
            "y_label": "incremental conversions",
            "x": [round(float(v), 6) for v in grid],
            "series": {
                "model": [round(float(v), 4) for v in model_curve],
                "random": [round(float(v), 4) for v in random_curve],
            },
        },
        "uplift_by_decile": {
            "type": "bar",
            "title": "Observed uplift by decile of the uplift score",
            "x_label": "decile (1 = highest score)",
            "y_label": "treated minus control conversion rate",
            "x": deciles["bin"],
            "series": {
                "observed": [_json_float(v) for v in deciles["observed"]],
                "predicted": [_json_float(v) for v in deciles["predicted"]],
                "random": [_json_float(ate)] * len(deciles["bin"]),
            },
        },
    }
    return metrics, predictions, plot


def _json_float(v: float) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 6)


# ---------------------------------------------------------------------------------------
# Persistence (JSON + LightGBM model text; no pickle)
# ---------------------------------------------------------------------------------------


def save(model: UpliftModel, directory: Path) -> list[str]:
    """Write ``model.json`` and one ``booster_<name>.txt`` per booster; returns the file names."""
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    files = ["model.json"]
    (directory / "model.json").write_text(json.dumps(model.meta(), indent=2, sort_keys=True))
    for name, booster in sorted(model.boosters.items()):
        fname = f"booster_{name}.txt"
        (directory / fname).write_text(booster.model_to_string())
        files.append(fname)
    return files


def load(directory: Path) -> UpliftModel:
    """Read a model written by ``save``."""
    directory = Path(directory)
    meta = json.loads((directory / "model.json").read_text())
    if meta.get("family") != NAME:
        raise ValueError(f"not a {NAME} model: {meta.get('family')!r}")
    boosters = {
        name: lgb.Booster(model_str=(directory / f"booster_{name}.txt").read_text())
        for name in meta["boosters"]
    }
    return UpliftModel(
        algorithm=meta["algorithm"],
        features=list(meta["features"]),
        categories={k: list(v) for k, v in meta["categories"].items()},
        boosters=boosters,
        propensity=float(meta["propensity"]),
        action_threshold=float(meta["action_threshold"]),
        hyperparameters=dict(meta.get("hyperparameters") or {}),
        train_rows=int(meta.get("train_rows", 0)),
    )


def example_output(model: UpliftModel, rows: pd.DataFrame) -> dict:
    """Inputs and outputs for a few rows (JSON-able), for the recipe's synthetic example."""
    sample = rows.head(5)
    inputs = []
    for rec in sample[[c for c in [GRAIN, TIME, *model.features] if c in sample.columns]].to_dict("records"):
        inputs.append({k: _jsonable(v) for k, v in rec.items()})
    outputs = recommend(model, sample)
    if GRAIN in sample.columns:
        for out, cid in zip(outputs, sample[GRAIN].astype(str), strict=True):
            out[GRAIN] = cid
    return {
        "description": (
            f"{model.algorithm} uplift model: uplift_score = P(convert | offer) - P(convert | no offer); "
            f"recommended_action = {SEND} when uplift_score > {model.action_threshold}"
        ),
        "inputs": inputs,
        "outputs": [{GRAIN: o.get(GRAIN), **{k: v for k, v in o.items() if k != GRAIN}} for o in outputs],
    }


def _jsonable(v):
    if v is None:
        return None
    if isinstance(v, pd.Timestamp):
        return v.isoformat()
    if isinstance(v, np.integer):
        return int(v)
    if isinstance(v, np.floating | float):
        return None if not math.isfinite(float(v)) else float(v)
    if v is pd.NA:
        return None
    return v
