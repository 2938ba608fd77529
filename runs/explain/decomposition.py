"""A forecaster's decomposition per series: trend, seasonality, holidays and regressors for
each of its largest series (issue #17 §3, forecasting). Plain numpy/pandas, no Django.

Two methods, and the document names which one produced it (``decomposition.method``):

``prophet_components``
    Prophet's own components of each series' stored forecast (the periods after its
    history, regressors at the series' median): ``trend``; ``seasonality`` = its daily,
    weekly and yearly terms; ``holidays``; ``regressors`` = what is left of Prophet's yhat
    (the extra regressors' term in additive mode). The parts add up to yhat; ``base_value`` 0.
``shapley_groups``
    Every other algorithm: the exact interventional Shapley values of the series' held-out
    rows (``runs.explain.shapley``, the same method and background as the per-prediction
    contributions), summed by the kind of feature: ``trend`` ← the series itself (its level
    and recent course, which the forecast reads from its history), ``seasonality`` ← the date
    (the calendar and the distance from the history), ``holidays`` ← known features named
    holiday…, ``regressors`` ← the other known features. The parts add up to the forecast minus
    ``base_value`` (the mean forecast of the background rows) exactly.

Only the ``series`` largest series by held-out volume are kept (the explain stage's
``decomposition_series``), each for at most ``PERIODS`` periods, so the document stays small.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from . import shapley

PARTS = ("trend", "seasonality", "holidays", "regressors")
# Periods of a series' decomposition kept (from the first held-out / forecast period).
PERIODS = 60
# Decimals kept in the document (its size: 20 series x 60 periods x 5 lists); None keeps all.
DIGITS = 5
_SEASONS = ("daily", "weekly", "yearly")


def interval_ratios(model) -> tuple[float, float] | None:
    """A forecaster's interval as ratios of its forecast (its validation window's, which
    ``forecasting.predict`` applies), or None when the model has none."""
    iv = model.get("interval") or {}
    if "lower_ratio" not in iv or "upper_ratio" not in iv:
        return None
    return float(iv["lower_ratio"]), float(iv["upper_ratio"])


def _floats(values, digits: int | None = None) -> list[float]:
    a = np.asarray(values, dtype=float)
    return [float(v) for v in (a if digits is None else np.round(a, digits))]


def feature_groups(adapter, time_col: str) -> dict[str, list[str]]:
    """A forecasting adapter's features by the part they make up (see the module doc): the
    series (the feature named by its key columns), the date, and the known features."""
    groups: dict[str, list[str]] = {p: [] for p in PARTS}
    for f in adapter.features:
        if f == time_col:
            groups["seasonality"].append(f)
        elif f in adapter.keys:
            groups["trend"].append(f)
        else:
            groups["holidays" if "holiday" in f.lower() else "regressors"].append(f)
    return groups


def _largest(keys: np.ndarray, volume: np.ndarray, n: int) -> dict[str, float]:
    """The ``n`` series of most volume (ties by key), largest first: {key: its whole volume}."""
    table = pd.DataFrame({"key": keys, "volume": volume}).groupby("key", sort=True)["volume"].sum()
    table = table.sort_values(ascending=False, kind="stable")
    return {str(k): float(v) for k, v in table.iloc[:n].items()}


def shapley_groups(
    adapter,
    rows: pd.DataFrame,
    keys: np.ndarray,
    volume: np.ndarray,
    background: pd.DataFrame,
    *,
    time_col: str,
    series: int,
    periods: int = PERIODS,
    seed: int = 0,
    digits: int | None = DIGITS,
    interval: tuple[float, float] | None = None,
) -> dict:
    """The ``shapley_groups`` decomposition of the ``series`` largest series of ``rows`` (the
    held-out rows, their model-input columns; ``keys`` their series, ``volume`` their label
    or 1), each on its first ``periods`` rows by date, rounded to ``digits`` decimals.
    ``interval``: the model's interval ratios (lower, upper: its forecast interval is the
    forecast times them), given to each series as ``lower`` / ``upper``."""
    groups = feature_groups(adapter, time_col)
    keys = np.asarray(keys).astype(str)  # as _largest names them
    picked = _largest(keys, volume, series)
    chosen = []
    for key in picked:
        at = np.flatnonzero(keys == key)
        dates = pd.to_datetime(rows[time_col].iloc[at], errors="coerce").to_numpy()
        chosen.append(at[np.argsort(dates, kind="stable")][:periods])
    out = {
        "method": "shapley_groups",
        "groups": groups,
        "base_value": None,
        "series": [],
    }
    if not chosen:
        return out
    index = np.concatenate(chosen)
    frame = rows.iloc[index].reset_index(drop=True)
    att = shapley.attributions(adapter, frame, background, seed=seed)
    phi, output, base = att["phi"], att["output"], att["base"]
    out["base_value"] = float(np.mean(base))
    column = {f: j for j, f in enumerate(adapter.features)}
    start = 0
    for key, at in zip(picked, chosen, strict=True):
        part = slice(start, start + len(at))
        start += len(at)
        entry = {
            "series": key,
            # the series' whole held-out volume (what ranks it), not only its kept periods'
            "volume": picked[key],
            "date": [str(d)[:19].removesuffix("T00:00:00") for d in frame[time_col].iloc[part].astype(str)],
            "forecast": _floats(output[part], digits),
        }
        if interval is not None:
            entry["lower"] = _floats(output[part] * interval[0], digits)
            entry["upper"] = _floats(output[part] * interval[1], digits)
        for name in PARTS:
            cols = [column[f] for f in groups[name]]
            entry[name] = _floats(phi[part][:, cols].sum(axis=1) if cols else np.zeros(len(at)), digits)
        out["series"].append(entry)
    return out


def prophet_groups(
    model: dict, volume: dict[str, float] | None, *, series: int, periods: int = PERIODS
) -> dict | None:
    """The ``prophet_components`` decomposition of a Prophet forecaster's ``series`` largest
    series (``volume``: held-out volume per series key; the model's own order when None), or
    None for another algorithm or a state without components."""
    state = model.get("state") or {}
    parts = state.get("components") or {}
    if model.get("algorithm") != "prophet" or not parts or "paths" not in state:
        return None
    keys = [str(k) for k in model["series"]]
    n = min(periods, len(state.get("dates") or []))
    paths = np.asarray(state["paths"], dtype=float)[:, :n]
    arrays = {name: np.asarray(v, dtype=float)[:, :n] for name, v in parts.items()}
    if volume:
        order = sorted(range(len(keys)), key=lambda i: (-float(volume.get(keys[i], 0.0)), keys[i]))
    else:
        order = list(range(len(keys)))
    out = {
        "method": "prophet_components",
        "groups": {
            "trend": ["trend"],
            "seasonality": [s for s in _SEASONS if s in arrays],
            "holidays": ["holidays"] if "holidays" in arrays else [],
            "regressors": list(state.get("known") or []),
        },
        "base_value": 0.0,
        "series": [],
    }
    for i in order[:series]:
        zero = np.zeros(n)
        trend = arrays["trend"][i] if "trend" in arrays else zero
        seasonality = sum((arrays[s][i] for s in _SEASONS if s in arrays), zero)
        holidays = arrays["holidays"][i] if "holidays" in arrays else zero
        out["series"].append(
            {
                "series": keys[i],
                "volume": float((volume or {}).get(keys[i], 0.0)),
                "date": list(state["dates"][:n]),
                "forecast": _floats(paths[i]),
                **{
                    bound: _floats(np.asarray(state[bound], dtype=float)[i, :n])
                    for bound in ("lower", "upper")
                    if bound in state  # Prophet's own interval
                },
                "trend": _floats(trend),
                "seasonality": _floats(seasonality),
                "holidays": _floats(holidays),
                # Prophet's yhat less its other terms: the extra regressors (at the series'
                # median) in additive mode; in multiplicative mode also the seasonal terms'
                # product with the trend, which the note says
                "regressors": _floats(paths[i] - trend - seasonality - holidays),
            }
        )
    return out


def method_note(decomposition: dict, algorithm: str) -> str:
    """What produced a decomposition, in words (the document's ``decomposition.method_note``)."""
    if decomposition["method"] == "prophet_components":
        return (
            "Prophet's own components of each series' forecast for the periods after its history "
            "(regressors at the series' median): trend, seasonality (its daily, weekly and yearly "
            "terms), holidays, and regressors as what is left of Prophet's forecast (yhat), so the "
            "parts add up to it. With multiplicative seasonality the remainder also holds the "
            "seasonal terms' product with the trend."
        )
    g = decomposition["groups"]

    def named(part: str) -> str:
        return ", ".join(g[part]) if g[part] else "none"

    return (
        f"The {algorithm} forecaster has no decomposition of its own: the parts are its exact "
        "Shapley contributions on each series' held-out periods, summed by kind of feature — "
        f"trend ← the series ({named('trend')}: its level and recent course, read from its history), "
        f"seasonality ← the date ({named('seasonality')}: the calendar and the distance from the "
        f"history), holidays ← {named('holidays')}, regressors ← {named('regressors')}. Base value "
        "(the mean forecast of the background rows) plus the parts is the forecast exactly."
    )
