"""What each family's model is explained in terms of: its features, its output scale, how to
ask it for outputs, and how to phrase an effect. Plain numpy/pandas, no Django.

An ``Adapter`` names the *features* a person knows (raw model-input columns, some grouped:
forecasting's series key and the series attributes that come with it move together), the
*method* of per-prediction attributions, the *scale* they add up on, and ``output(frame)``:
the model's output for every row *as if that row were predicted alone* (what one
``POST /models/{id}/predict`` row gets).

Per family (why these features):

pricing
    ``price``, ``promo``, ``week``, ``segment``, ``product_id``, ``store_id``: exactly the
    columns the log-log demand model reads (``pricing.PREDICT_COLUMNS``); ``regular_price``
    and ``unit_cost`` are inputs the demand model never reads (their contribution would be
    identically 0), so they are left out. The identities stand for the fitted series,
    product and store effects; ``segment`` carries the elasticity. Scale: the log of the
    predicted units, on which the log-log model is additive (each contribution is a factor
    on demand, shown as a % change). On the units scale a hybrid row that puts one product's
    identity with another product's price level multiplies demand many times over, and the
    contributions became thousands of units that cancel out. Exact interventional Shapley
    values over a background sample.
next_best_action
    The model's own features (``model.features``: tenure, recency, frequency, monetary,
    segment, channel by default); ``customer_id`` and ``event_time`` are not read by the
    boosters. Scale: the uplift score (probability difference). Exact interventional
    Shapley values (the score is a difference of two boosters' probabilities, so the
    boosters' TreeSHAP on the logit scale would not add up to it).
location_scoring
    The model's features (``model.meta["features"]``); one-hot design columns are summed
    back to their raw column. Exact TreeSHAP (LightGBM ``pred_contrib``) on the booster's
    raw output: ``log1p(annual_sales)`` with the default log target (before the bias
    correction factor: ``prediction = target_scale * exp(output) - 1``), else the
    prediction.
forecasting
    The series (its key columns and the per-series attributes that come with them, moved as
    one feature named after the key), the ``date`` (the horizon and the calendar), and for
    a LightGBM forecaster its known regressors (``promo``, ``price``). A forecast row's
    value depends on the other rows of its series in the same call (the recursion reads
    their known features), so every hybrid row is forecast alone: the model is asked for
    all of them in one call where each row is its own alias series (a copy of its series'
    state), which gives exactly what one call per row would give (tested).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from runs.data import outcome_columns

from .shapley import MAX_EXACT_FEATURES, MAX_HYBRIDS_PER_ROW

# Background rows of a LightGBM forecaster's Shapley values: 2^4 x 8 = 128 hybrid rows per
# explained row. Chosen when each hybrid was a recursive forecast of its own; since they share
# their series' recursion (forecasting.predict_alone) it is kept so that the values stay those
# of earlier documents (bench/README.md, section 13).
FORECAST_BACKGROUND = 8
# forecast_alone's calls (_buckets): a call's fixed cost per period in booster rows, and the
# equal buckets of a large frame. Measured in bench/bench_explain.py.
FORECAST_CALL_ROWS = 30
FORECAST_BUCKETS = 4
FORECAST_MANY_ROWS = 2048
_PERIOD_WORD = {"H": "hour", "D": "day", "W": "week", "M": "month", "Q": "quarter"}
# Forecasting: the alias series column added to hybrid rows (see forecast_alone).
_ALIAS = "__explain_row"


@dataclass
class Adapter:
    family: str
    features: list[str]
    groups: dict[str, list[str]]  # feature -> the raw columns that move with it
    method: str  # "tree_shap" | "exact_shapley" (the sampled fallback is chosen by size)
    scale: str
    output_label: str
    model_algorithm: str
    output: object  # callable(frame) -> np.ndarray on `scale`
    log_scale: bool = False
    effect_unit: str = ""
    effect_factor: float = 1.0
    needs_background: bool = True
    kinds: dict[str, str] = field(default_factory=dict)  # feature -> numeric|categorical|date
    tree: object = None  # callable(frame) -> (contributions (n, d), base (n,)) for tree_shap
    # feature -> the columns whose values name its value (default: the feature's own column)
    keys: dict[str, list[str]] = field(default_factory=dict)
    # The relative cost of one row of output() (1 ~ a few microseconds), for the attribution
    # budget of explain_model; and a cap on the background rows when a row is expensive.
    row_cost: float = 1.0
    max_background: int | None = None
    background_note: str = ""

    def hybrids_per_row(self, background_rows: int) -> int:
        """Model rows one explained row costs (0 for TreeSHAP: no hybrid rows)."""
        if self.method == "tree_shap":
            return 0
        d = len(self.features)
        if d <= MAX_EXACT_FEATURES:
            return (2**d) * background_rows
        return MAX_HYBRIDS_PER_ROW

    def effect_text(self, value: float) -> str:
        """A contribution in words: "+12.3% annual sales", "−8.4 units"."""
        if self.log_scale:
            pct = (math.exp(value) - 1.0) * 100.0
            return f"{_signed(pct, 1)}% {self.effect_unit}".rstrip()
        shown = value * self.effect_factor
        return f"{_signed(shown, _decimals(shown))} {self.effect_unit}".rstrip()


def feature_values(adapter: Adapter, frame: pd.DataFrame, feature: str) -> pd.Series:
    """The value of ``feature`` in each row: its column, or its key columns joined by "|"."""
    cols = adapter.keys.get(feature) or [feature]
    if len(cols) == 1:
        return frame[cols[0]]
    return frame[cols].astype(str).agg("|".join, axis=1)


def _decimals(value: float) -> int:
    a = abs(value)
    if a >= 100:
        return 0
    if a >= 1:
        return 1
    if a >= 0.01:
        return 3
    return 4


def _signed(value: float, decimals: int) -> str:
    text = f"{abs(value):,.{decimals}f}"
    if float(text.replace(",", "")) == 0:
        return text
    return ("+" if value > 0 else "\u2212") + text


def input_columns(family, manifest: dict, frame: pd.DataFrame) -> list[str]:
    """The model-input columns of ``frame`` (schema.json's ``input_columns``, as the pipeline
    derives them: the family's schema columns that are not outcomes)."""
    outcomes = outcome_columns(manifest or {}, family.NAME)
    names = {c["name"] for c in family.SCHEMA}
    return [c for c in frame.columns if c in names and c not in outcomes]


def _kind(series: pd.Series) -> str:
    if pd.api.types.is_datetime64_any_dtype(series):
        return "date"
    if pd.api.types.is_bool_dtype(series) or not pd.api.types.is_numeric_dtype(series):
        return "categorical"
    return "numeric"


def _kinds(frame: pd.DataFrame, groups: dict[str, list[str]], categorical=()) -> dict[str, str]:
    out = {}
    for feature, cols in groups.items():
        if feature in categorical or len(cols) > 1 or feature not in frame.columns:
            out[feature] = "categorical"
        else:
            out[feature] = _kind(frame[feature])
    return out


def make_adapter(family, model, sample: pd.DataFrame) -> Adapter:
    """The adapter of a fitted model; ``sample`` (rows with the model's input columns) tells
    the feature kinds."""
    name = family.NAME
    if name == "pricing":
        return _pricing(family, model, sample)
    if name == "next_best_action":
        return _nba(family, model, sample)
    if name == "location_scoring":
        return _location(family, model, sample)
    if name == "forecasting":
        return _forecasting(family, model, sample)
    raise ValueError(f"no explanations for family {name!r}")


def _predict(family, model):
    def run(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(family.predict(model, frame), dtype=float)

    return run


# --------------------------------------------------------------------------- pricing


def _pricing(family, model, sample) -> Adapter:
    features = ["price", "promo", "week", "segment", "product_id", "store_id"]
    features = [f for f in features if f in sample.columns]
    groups = {f: [f] for f in features}
    run = _predict(family, model)

    def log_units(frame: pd.DataFrame) -> np.ndarray:
        return np.log(run(frame))

    return Adapter(
        family=family.NAME,
        features=features,
        groups=groups,
        method="exact_shapley",
        scale="log(predicted units)",
        output_label="predicted units",
        model_algorithm=str(model.get("algorithm", "log_log_ols")),
        output=log_units,
        log_scale=True,
        effect_unit="units",
        kinds=_kinds(sample, groups, categorical=("segment", "product_id", "store_id", "promo")),
    )


# --------------------------------------------------------------------------- next best action


def _nba(family, model, sample) -> Adapter:
    features = list(model.features)
    groups = {f: [f] for f in features}
    run = _predict(family, model)
    categorical = set(model.categories)
    trees = sum(b.num_trees() for b in model.boosters.values())
    return Adapter(
        family=family.NAME,
        features=features,
        groups=groups,
        method="exact_shapley",
        scale="prediction",
        output_label="predicted uplift (conversion probability with the offer minus without)",
        model_algorithm=str(model.algorithm),
        output=run,
        effect_unit="pp uplift",
        effect_factor=100.0,
        kinds=_kinds(sample, groups, categorical=categorical),
        row_cost=max(1.0, trees / 100.0),
    )


# --------------------------------------------------------------------------- location scoring


def location_design_groups(meta: dict) -> list[str]:
    """The raw feature of each design column of a location model (one-hot columns map back
    to their categorical column), in the design's order (``LocationModel.design``)."""
    out = []
    for col in meta["features"]:
        if col in meta["categories"] and meta["categorical_encoding"] == "onehot":
            out.extend([col] * len(meta["categories"][col]))
        else:
            out.append(col)
    return out


def _location(family, model, sample) -> Adapter:
    meta = model.meta
    features = list(meta["features"])
    groups = {f: [f] for f in features}
    owner = location_design_groups(meta)
    index = {f: i for i, f in enumerate(features)}
    columns = np.array([index[f] for f in owner])
    log_target = bool(meta["log_target"])

    def raw(frame: pd.DataFrame) -> np.ndarray:
        return np.asarray(
            model.booster.predict(model.design(frame), raw_score=True, num_threads=1), dtype=float
        )

    def tree(frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
        contrib = np.asarray(
            model.booster.predict(model.design(frame), pred_contrib=True, num_threads=1), dtype=float
        )
        per_feature = np.zeros((len(frame), len(features)))
        np.add.at(per_feature.T, columns, contrib[:, :-1].T)
        return per_feature, contrib[:, -1]

    label = getattr(family, "LABEL", "annual_sales")
    return Adapter(
        family=family.NAME,
        features=features,
        groups=groups,
        method="tree_shap",
        scale=f"log1p({label})" if log_target else "prediction",
        output_label="predicted annual sales",
        model_algorithm="lightgbm",
        output=raw,
        log_scale=log_target,
        effect_unit="annual sales" if log_target else "in annual sales",
        needs_background=False,
        kinds=_kinds(sample, groups, categorical=set(meta["categories"])),
        tree=tree,
    )


# --------------------------------------------------------------------------- forecasting


def _series_key(frame: pd.DataFrame, columns: list[str]) -> np.ndarray:
    # the forecasting family's key: the one column as text, or the columns joined with "|"
    if len(columns) == 1:
        return frame[columns[0]].astype(str).to_numpy(dtype=object)
    return frame[columns].astype(str).agg("|".join, axis=1).to_numpy(dtype=object)


# The per-series arrays of a forecasting model's state, by algorithm (rows = the model's
# series, in model["series"] order). A test checks that an aliased call forecasts every row
# as a call of its own would, so a change of the state's layout fails loudly.
_SERIES_ARRAYS = ("last_season", "shares", "tail", "scale", "lower", "upper")
_SERIES_DICTS = ("known_means", "known_fill", "static_codes", "coef", "components")


def _alias_state(state: dict, idx: np.ndarray) -> dict:
    out = dict(state)
    for key in _SERIES_ARRAYS:
        if key in out:
            out[key] = np.asarray(out[key], dtype=float)[idx]
    # per series: an ETS/ARIMA model fitted per series, and Prophet's (no "level": always per series)
    if "paths" in out and out.get("level", "series") == "series":
        out["paths"] = np.asarray(out["paths"], dtype=float)[idx]
    for key in _SERIES_DICTS:
        if key in out:
            out[key] = {k: np.asarray(v, dtype=float)[idx] for k, v in out[key].items()}
    return out


def state_arrays(state: dict) -> dict:
    """A forecasting state with its per-series JSON lists as arrays (converted once)."""
    out = dict(state)
    for key in (*_SERIES_ARRAYS, "paths"):
        if key in out:
            out[key] = np.asarray(out[key], dtype=float)
    for key in _SERIES_DICTS:
        if key in out:
            out[key] = {k: np.asarray(v, dtype=float) for k, v in out[key].items()}
    return out


def _buckets(dates: pd.Series, last: pd.Timestamp) -> list[np.ndarray]:
    """Rows cut into calls by date. A call forecasts all its rows up to its furthest period,
    at a cost of about (rows + FORECAST_CALL_ROWS) booster rows per period: a few rows go in
    one call or the cheapest two (split in date order), many in FORECAST_BUCKETS equal ones."""
    stamps = pd.to_datetime(dates, errors="coerce").to_numpy()
    order = np.argsort(stamps, kind="stable")
    n = len(order)
    if n >= FORECAST_MANY_ROWS:
        return [p for p in np.array_split(order, FORECAST_BUCKETS) if len(p)]
    days = np.maximum((stamps[order] - np.datetime64(last)) / np.timedelta64(1, "D"), 1.0)
    c = FORECAST_CALL_ROWS
    one = days[-1] * (n + c)
    i = np.arange(1, n)
    two = days[i - 1] * (i + c) + days[-1] * (n - i + c)
    if n < 2 or one <= two.min():
        return [order]
    cut = int(i[np.argmin(two)])
    return [order[:cut], order[cut:]]


def forecast_alone(family, model: dict, frame: pd.DataFrame, arrays: dict | None = None) -> np.ndarray:
    """Forecasting: every row's forecast as if it were the only row of its call, in one call
    (each row becomes its own alias series with a copy of its series' state)."""
    if len(frame) == 0:
        return np.zeros(0)
    if model["algorithm"] == "lightgbm":
        # the recursion of a series is shared by its rows (their known features differ only
        # at their own period): one recursion per series, not one forecast per row
        return np.asarray(family.predict_alone(model, frame, arrays), dtype=float)
    spec = model["spec"]
    keys = _series_key(frame, spec["series_columns"])
    idx = pd.Index(model["series"], dtype=object).get_indexer(pd.Index(keys, dtype=object))
    if (idx < 0).any():
        unknown = sorted({str(k) for k in keys[idx < 0]})
        raise ValueError(f"unknown series (not in the model's training data): {unknown[:5]}")
    rows = frame.reset_index(drop=True)
    state = arrays if arrays is not None else state_arrays(model["state"])
    out = np.empty(len(rows))
    for part in _buckets(rows[spec["time_column"]], pd.Timestamp(model["last_date"])):
        aliases = [str(i) for i in range(len(part))]
        aliased = {
            **model,
            "spec": {**spec, "series_columns": [_ALIAS]},
            "series": aliases,
            "state": _alias_state(state, idx[part]),
        }
        chunk = rows.iloc[part].reset_index(drop=True).assign(**{_ALIAS: aliases})
        out[part] = np.asarray(family.predict(aliased, chunk), dtype=float)
    return out


def _forecasting(family, model, sample) -> Adapter:
    spec = model["spec"]
    time_col = spec["time_column"]
    series_cols = list(spec["series_columns"])
    # the known features a forecast reads: LightGBM's, and Prophet's regressors / the LSTM's inputs
    known = {
        "lightgbm": list(model["known_features"]),
        "prophet": list(model["state"].get("known", [])),
        "lstm": list(model["state"].get("known", [])),
    }.get(model["algorithm"], [])
    series_name = series_cols[0] if len(series_cols) == 1 else "series"
    others = [c for c in sample.columns if c not in (time_col, *known, *series_cols)]
    groups = {series_name: [*series_cols, *others]}
    groups[time_col] = [time_col]
    for f in known:
        groups[f] = [f]
    features = list(groups)

    arrays = state_arrays(model["state"])

    def alone(frame: pd.DataFrame) -> np.ndarray:
        return forecast_alone(family, model, frame, arrays)

    kinds = _kinds(sample, groups, categorical=(series_name, "promo"))
    lgb_model = model["algorithm"] == "lightgbm"
    # A LightGBM forecast is recursive, but the rows of one series share its recursion
    # (forecasting.predict_alone: computed once per model and kept), so a row costs about one
    # booster row at its own period.
    booster = model["state"].get("booster") if lgb_model else None
    trees = booster.num_trees() if booster is not None else 100
    return Adapter(
        family=family.NAME,
        features=features,
        groups=groups,
        method="exact_shapley",
        scale="prediction",
        output_label=f"forecast {spec['label']} per {_PERIOD_WORD.get(str(spec.get('frequency')), 'period')}",
        model_algorithm=str(model["algorithm"]),
        output=alone,
        effect_unit=str(spec["label"]),
        kinds=kinds,
        keys={series_name: series_cols},
        row_cost=max(1.0, trees / 100.0) if lgb_model else 1.0,
        max_background=FORECAST_BACKGROUND if lgb_model else None,
        background_note=(
            f"a LightGBM forecast is recursive (a booster call per period), so its Shapley values "
            f"use {FORECAST_BACKGROUND} background rows"
        ),
    )
