"""Plain JSON values from what numpy and pandas hand back (pure: no Django). One function,
used by the pipeline's results and the explanations' documents alike."""

from __future__ import annotations

import math

import numpy as np


def json_safe(value):
    """numpy scalars/arrays, NaN/inf (-> None) and dates/timestamps (-> ISO text) -> plain
    JSON values, through dicts, lists and tuples."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value
