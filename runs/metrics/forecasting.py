"""Forecasting metrics (plain numpy): names match ``recipes.catalog.METRICS["forecasting"]``.

Every function takes array-likes of equal length and returns a plain Python ``float``
(``nan`` when the quantity is undefined: an empty input, no non-zero actual, a zero
denominator). Inputs must be finite; the forecasting family drops rows without an actual
before calling them. With ``a`` the actuals, ``f`` the point forecasts, ``n`` the count:

``MAPE``
    ``mean(|a_i - f_i| / |a_i|)`` over the rows with ``a_i != 0`` (a fraction: 0.12 = 12 %).
``RMSE``
    ``sqrt(sum((a_i - f_i)^2) / n)``.
``MAE``
    ``sum(|a_i - f_i|) / n``.
``WAPE``
    ``sum(|a_i - f_i|) / sum(|a_i|)``.
``coverage``
    ``mean(lower_i <= a_i <= upper_i)``: the share of actuals inside the prediction interval
    (bounds inclusive).
"""

from __future__ import annotations

import numpy as np


def _arr(values) -> np.ndarray:
    return np.asarray(values, dtype=float).ravel()


def _pair(actual, forecast) -> tuple[np.ndarray, np.ndarray]:
    a, f = _arr(actual), _arr(forecast)
    if a.shape != f.shape:
        raise ValueError(f"metric inputs must have the same length ({a.size} != {f.size})")
    return a, f


def mape(actual, forecast) -> float:
    """Mean absolute percentage error over the non-zero actuals, as a fraction.

    ``mean(|a_i - f_i| / |a_i|)`` over ``{i : a_i != 0}``; rows with a zero actual are left
    out (their percentage error is undefined). ``nan`` if no actual is non-zero.
    """
    a, f = _pair(actual, forecast)
    keep = a != 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(a[keep] - f[keep]) / np.abs(a[keep])))


def rmse(actual, forecast) -> float:
    """Root mean squared error ``sqrt(mean((a_i - f_i)^2))``, in units of the target."""
    a, f = _pair(actual, forecast)
    if a.size == 0:
        return float("nan")
    return float(np.sqrt(np.mean((a - f) ** 2)))


def mae(actual, forecast) -> float:
    """Mean absolute error ``mean(|a_i - f_i|)``, in units of the target."""
    a, f = _pair(actual, forecast)
    if a.size == 0:
        return float("nan")
    return float(np.mean(np.abs(a - f)))


def wape(actual, forecast) -> float:
    """Weighted absolute percentage error ``sum(|a_i - f_i|) / sum(|a_i|)``.

    ``nan`` when ``sum(|a_i|)`` is zero (or the input is empty).
    """
    a, f = _pair(actual, forecast)
    denom = float(np.sum(np.abs(a)))
    if a.size == 0 or denom == 0:
        return float("nan")
    return float(np.sum(np.abs(a - f)) / denom)


def coverage(actual, lower, upper) -> float:
    """Share of actuals inside the prediction interval: ``mean(lower_i <= a_i <= upper_i)``.

    Bounds are inclusive. ``nan`` for an empty input.
    """
    a, lo = _pair(actual, lower)
    _, hi = _pair(actual, upper)
    if a.size == 0:
        return float("nan")
    return float(np.mean((a >= lo) & (a <= hi)))


def all_metrics(actual, forecast, lower, upper) -> dict[str, float]:
    """Every forecasting metric, keyed by its catalog name (MAPE, RMSE, MAE, WAPE, coverage)."""
    return {
        "MAPE": mape(actual, forecast),
        "RMSE": rmse(actual, forecast),
        "MAE": mae(actual, forecast),
        "WAPE": wape(actual, forecast),
        "coverage": coverage(actual, lower, upper),
    }
