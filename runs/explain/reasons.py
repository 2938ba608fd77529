"""Reasons in words for one prediction: its largest contributions, each with the row's value
against the typical one. Plain Python/pandas, no Django.

"price 12% above its typical 9.80: −8.4 units" (a numeric feature: the row's value against
the median of the background rows, or of the explained sample); "segment = premium:
+3.1 pp uplift" (a categorical one); on a log scale the effect is a % change of the
prediction ("population_3km 40% above its typical 41,000: +11.2% annual sales").
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from .adapters import feature_values


def typical_values(adapter, frame: pd.DataFrame | None) -> dict:
    """The median of each numeric feature in ``frame`` (the background or a sample)."""
    out = {}
    if frame is None or len(frame) == 0:
        return out
    for feature in adapter.features:
        if adapter.kinds.get(feature) != "numeric":
            continue
        values = pd.to_numeric(feature_values(adapter, frame, feature), errors="coerce").to_numpy(dtype=float)
        values = values[np.isfinite(values)]
        if values.size:
            out[feature] = float(np.median(values))
    return out


def _number(value: float) -> str:
    a = abs(value)
    if a >= 1000:
        return f"{value:,.0f}"
    if a >= 10:
        return f"{value:,.1f}".rstrip("0").rstrip(".")
    return f"{value:.3g}"


def describe_value(adapter, feature: str, value, typical: dict) -> str:
    """The row's value of a feature in words."""
    kind = adapter.kinds.get(feature, "numeric")
    if value is None or (isinstance(value, float) and math.isnan(value)) or value is pd.NaT:
        return f"{feature} missing"
    if kind == "date":
        stamp = pd.Timestamp(value)
        text = stamp.date().isoformat() if stamp == stamp.normalize() else stamp.isoformat()
        return f"{feature} = {text}"
    if kind == "categorical":
        if isinstance(value, np.generic):
            value = value.item()
        return f"{feature} = {value}"
    try:
        number = float(value)
    except (TypeError, ValueError):
        return f"{feature} = {value}"
    ref = typical.get(feature)
    if ref is None or not math.isfinite(ref):
        return f"{feature} = {_number(number)}"
    if ref == 0:
        return f"{feature} = {_number(number)} (typical 0)"
    change = (number / ref - 1.0) * 100.0
    if abs(change) < 0.5:
        return f"{feature} at its typical {_number(ref)}"
    way = "above" if change > 0 else "below"
    return f"{feature} {abs(change):.0f}% {way} its typical {_number(ref)}"


def reasons(adapter, row: pd.Series, contributions: dict, typical: dict, top: int = 3) -> list[str]:
    """The ``top`` largest contributions by absolute value, in words."""
    ranked = sorted(contributions.items(), key=lambda kv: (-abs(kv[1]), kv[0]))
    out = []
    for feature, value in ranked[: max(1, int(top))]:
        cols = adapter.keys.get(feature) or [feature]
        shown = "|".join(str(row[c]) for c in cols) if len(cols) > 1 else row[cols[0]]
        out.append(f"{describe_value(adapter, feature, shown, typical)}: {adapter.effect_text(value)}")
    return out
