"""Partial dependence (PD) and individual conditional expectation (ICE) curves. Plain
numpy/pandas, no Django.

For a feature and a grid of its values (``grid_points`` quantiles of a numeric or date
feature, its most frequent levels for a categorical one), every row of a subsample gets each
grid value in turn (all the raw columns that move with the feature: for forecasting's series,
the attributes of the series the level names) and the model's output on the explanation's
scale is read: an ICE curve per row, their mean the PD curve. One 2-D PD for the top two
numeric features shows an interaction.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from .adapters import feature_values

# Rows averaged into a PD curve (the ICE rows are the first of them), fewer for a model whose
# row is expensive (adapters.Adapter.row_cost): grid x rows x row_cost stays within PD_BUDGET.
PD_ROWS = 100
PD_BUDGET = 100_000
# A 2-D grid's points per axis, and its rows.
GRID_2D = 10
PD_ROWS_2D = 60


def grid(values: pd.Series, kind: str, points: int) -> list:
    """The grid of a feature: quantiles (numeric, date) or the most frequent levels."""
    v = values.dropna()
    if len(v) == 0:
        return []
    if kind == "categorical":
        counts = v.astype(object).value_counts(sort=True)
        return list(counts.index[: max(1, points)])
    q = np.linspace(0.0, 1.0, max(2, points))
    if kind == "date":
        dates = pd.to_datetime(v).astype("datetime64[ns]")
        stamps = dates.astype("int64").to_numpy()
        picked = pd.to_datetime(np.unique(np.quantile(stamps, q).round().astype("int64")))
        # days stay days (a daily or weekly model's dates), hours stay hours (an hourly one)
        whole_days = bool((dates == dates.dt.normalize()).all())
        picked = picked.normalize() if whole_days else picked.floor("h")
        return list(picked.unique())
    numbers = pd.to_numeric(v, errors="coerce").to_numpy(dtype=float)
    numbers = numbers[np.isfinite(numbers)]
    if numbers.size == 0:
        return []
    picked = np.quantile(numbers, q)
    if pd.api.types.is_integer_dtype(values.dtype) or np.all(numbers == np.round(numbers)):
        picked = np.round(picked)
    return [float(x) for x in np.unique(picked)]


def _with_values(
    frame: pd.DataFrame, cols: list[str], keys: pd.Series, values: list, source: pd.DataFrame
) -> pd.DataFrame:
    """``frame`` tiled once per value, the feature set to each value in turn. A feature of
    several columns takes them all from a row of ``source`` whose key (``keys``) is the value."""
    n = len(frame)
    tiled = frame.iloc[np.tile(np.arange(n), len(values))].reset_index(drop=True)
    if len(cols) == 1:
        col = cols[0]
        column = pd.Series(list(values))
        try:
            column = column.astype(frame[col].dtype)
        except (TypeError, ValueError):  # e.g. a float grid for an integer column with gaps
            pass
        tiled[col] = column.array.take(np.repeat(np.arange(len(values)), n))
        return tiled
    holder = source.reset_index(drop=True)
    first = {v: i for i, v in reversed(list(enumerate(keys.astype(object))))}
    idx = np.repeat([first[v] for v in values], n)
    for col in cols:
        tiled[col] = holder[col].array.take(idx)
    return tiled


def _json_value(v):
    if isinstance(v, pd.Timestamp):
        return v.date().isoformat() if v == v.normalize() else v.isoformat()
    if isinstance(v, np.generic):
        return v.item()
    return v


def curves(adapter, sample: pd.DataFrame, feature: str, *, points: int, ice_rows: int) -> dict | None:
    """``{"feature", "kind", "grid", "pd", "ice"}`` of one feature (None without a grid)."""
    kind = adapter.kinds.get(feature, "numeric")
    cols = adapter.groups[feature]
    keys = feature_values(adapter, sample, feature)
    values = grid(keys, kind, points)
    if not values:
        return None
    affordable = int(PD_BUDGET // (len(values) * max(1.0, float(adapter.row_cost))))
    rows = sample.iloc[: max(int(ice_rows), min(len(sample), PD_ROWS, affordable))].reset_index(drop=True)
    frame = _with_values(rows, cols, keys, values, sample)
    out = np.asarray(adapter.output(frame), dtype=float).reshape(len(values), len(rows))
    return {
        "feature": feature,
        "kind": "categorical" if kind == "categorical" else "numeric",
        "grid": [_json_value(v) for v in values],
        "pd": out.mean(axis=1).tolist(),
        "ice": out[:, : int(ice_rows)].T.tolist(),
    }


def interaction(adapter, sample: pd.DataFrame, a: str, b: str, *, points: int) -> dict | None:
    """The 2-D PD of two numeric features: ``{"features", "grid_a", "grid_b", "pd"}`` with
    ``pd[i][j]`` at ``(grid_a[i], grid_b[j])``."""
    ga = grid(sample[a], "numeric", min(points, GRID_2D))
    gb = grid(sample[b], "numeric", min(points, GRID_2D))
    if not ga or not gb:
        return None
    affordable = int(PD_BUDGET // (len(ga) * len(gb) * max(1.0, float(adapter.row_cost))))
    rows = sample.iloc[: max(1, min(len(sample), PD_ROWS_2D, affordable))].reset_index(drop=True)
    by_a = _with_values(rows, adapter.groups[a], sample[a], ga, sample)
    both = _with_values(by_a, adapter.groups[b], sample[b], gb, sample)
    # both: for each b value, for each a value, every row
    out = np.asarray(adapter.output(both), dtype=float).reshape(len(gb), len(ga), len(rows)).mean(axis=2)
    return {"features": [a, b], "grid_a": ga, "grid_b": gb, "pd": out.T.tolist()}


def dependence(adapter, sample: pd.DataFrame, order: list[str], config: dict) -> dict:
    """The document's ``dependence`` section for the first ``top_features`` of ``order``."""
    top = order[: int(config["top_features"])]
    features = []
    for feature in top:
        entry = curves(
            adapter, sample, feature, points=int(config["grid_points"]), ice_rows=int(config["ice_rows"])
        )
        if entry is not None:
            features.append(entry)
    pair = None
    if config.get("interaction"):
        numeric = [f for f in order if adapter.kinds.get(f) == "numeric"][:2]
        if len(numeric) == 2:
            pair = interaction(adapter, sample, numeric[0], numeric[1], points=int(config["grid_points"]))
    return {"features": features, "interaction": pair}
