"""Pricing metrics (plain numpy): names match ``recipes.catalog.METRICS["pricing"]``.

All functions take array-likes and return a plain Python ``float`` (``nan`` when the
quantity is undefined, e.g. an empty input or a zero denominator).

``elasticity``
    Weighted mean of per-segment elasticity estimates: ``sum(w_s * e_s) / sum(w_s)``.
``revenue_lift``
    ``sum(new_price * new_units) / sum(price * units) - 1``.
``margin_impact``
    ``(sum((new_price - cost) * new_units) - sum((price - cost) * units)) / |sum((price - cost) * units)|``.
``calibration``
    ``|sum(predicted) / sum(actual) - 1|``.
``demand_mape``
    ``mean(|actual - predicted| / |actual|)`` over the rows with a non-zero actual.

How the pricing family feeds them (which units are actual and which come from the fitted
demand model) is documented in ``runs/families/pricing.py``.
"""

from __future__ import annotations

import numpy as np


def _arr(values) -> np.ndarray:
    return np.asarray(values, dtype=float).ravel()


def _same_length(*arrays: np.ndarray) -> None:
    if len({a.shape[0] for a in arrays}) > 1:
        raise ValueError("metric inputs must have the same length")


def elasticity(estimates, weights=None) -> float:
    """Overall elasticity as the weighted mean of segment estimates.

    ``sum(w_s * e_s) / sum(w_s)``; ``weights=None`` gives the plain mean. The pricing family
    weights each segment by its share of training rows. ``nan`` for no estimates or zero
    total weight.
    """
    e = _arr(estimates)
    w = np.ones_like(e) if weights is None else _arr(weights)
    _same_length(e, w)
    if e.size == 0 or w.sum() == 0:
        return float("nan")
    return float(np.sum(w * e) / np.sum(w))


def revenue_lift(price, units, new_price, new_units) -> float:
    """Relative revenue gain of new prices over current ones.

    ``sum(new_price * new_units) / sum(price * units) - 1`` where ``units`` is the demand at
    the current ``price`` and ``new_units`` the (expected) demand at ``new_price``.
    ``nan`` when the current revenue is zero.
    """
    p, q, p2, q2 = _arr(price), _arr(units), _arr(new_price), _arr(new_units)
    _same_length(p, q, p2, q2)
    base = float(np.sum(p * q))
    if base == 0:
        return float("nan")
    return float(np.sum(p2 * q2) / base - 1.0)


def margin_impact(price, unit_cost, units, new_price, new_units) -> float:
    """Relative margin gain of new prices over current ones.

    ``(M_new - M_cur) / |M_cur|`` with ``M_cur = sum((price - unit_cost) * units)`` and
    ``M_new = sum((new_price - unit_cost) * new_units)``. Dividing by ``|M_cur|`` keeps the
    sign meaningful (positive = more margin) even when the current margin is negative.
    ``nan`` when the current margin is zero.
    """
    p, c, q, p2, q2 = _arr(price), _arr(unit_cost), _arr(units), _arr(new_price), _arr(new_units)
    _same_length(p, c, q, p2, q2)
    base = float(np.sum((p - c) * q))
    if base == 0:
        return float("nan")
    new = float(np.sum((p2 - c) * q2))
    return float((new - base) / abs(base))


def calibration(actual, predicted) -> float:
    """Absolute calibration error ``|sum(predicted) / sum(actual) - 1|`` (0 = perfect).

    ``nan`` when the actuals sum to zero.
    """
    a, p = _arr(actual), _arr(predicted)
    _same_length(a, p)
    total = float(np.sum(a))
    if total == 0:
        return float("nan")
    return float(abs(np.sum(p) / total - 1.0))


def demand_mape(actual, predicted) -> float:
    """Mean absolute percentage error over rows with a non-zero actual (fraction, 0.2 = 20%).

    ``mean(|actual_i - predicted_i| / |actual_i|)`` for ``actual_i != 0``; ``nan`` if every
    actual is zero. Equals scikit-learn's ``mean_absolute_percentage_error`` when no actual is 0.
    """
    a, p = _arr(actual), _arr(predicted)
    _same_length(a, p)
    keep = a != 0
    if not keep.any():
        return float("nan")
    return float(np.mean(np.abs(a[keep] - p[keep]) / np.abs(a[keep])))
