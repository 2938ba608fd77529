"""Values the experiment services read from requests: numbers and units."""

from __future__ import annotations

import math

MAX_UNIT_CHARS = 200
MAX_ERRORS = 50  # per 400 answer


def finite(value) -> float | None:
    """A JSON number as a finite float; None for anything else (booleans, text, NaN, an
    integer too large for a float)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        number = float(value)
    except OverflowError:
        return None
    return number if math.isfinite(number) else None


def unit_value(value) -> str | None:
    """A unit as stored: a non-empty string (at most 200 characters) or an integer."""
    if isinstance(value, str):
        return value if 0 < len(value) <= MAX_UNIT_CHARS else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None
