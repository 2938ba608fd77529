"""Values the experiment services read from requests: numbers and units."""

from __future__ import annotations

import math

import numpy as np

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


def finite_all(values: list) -> list:
    """[finite(v) for v in values], without a Python call per value in the common cases: all
    plain floats (the predictions, already JSON-safe) and no numbers at all."""
    types = set(map(type, values))
    if types == {float}:
        if np.isfinite(np.fromiter(values, dtype=np.float64, count=len(values))).all():
            return list(values)
    elif not any(issubclass(t, (int, float)) for t in types):
        return [None] * len(values)
    return [finite(value) for value in values]


def unit_value(value) -> str | None:
    """A unit as stored: a non-empty string (at most 200 characters, no NUL: PostgreSQL's
    text cannot hold one) or an integer."""
    if isinstance(value, str):
        return value if 0 < len(value) <= MAX_UNIT_CHARS and "\x00" not in value else None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return None


def unit_values(values: list) -> list[str] | None:
    """[unit_value(v) for v in values] when every value is a unit, in one pass without a
    Python call per value when they are all strings (or all integers); None when any is not
    (the caller then finds which, row by row)."""
    types = set(map(type, values))
    if types == {str}:
        lengths = set(map(len, values))
        valid = min(lengths) > 0 and max(lengths) <= MAX_UNIT_CHARS and "\x00" not in "".join(values)
        return list(values) if valid else None
    if types == {int}:
        return list(map(str, values))
    units = [unit_value(value) for value in values]
    return None if None in units else units
