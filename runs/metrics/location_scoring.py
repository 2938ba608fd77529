"""Location-scoring metrics (plain numpy, no Django).

Names match ``recipes.catalog.METRICS["location_scoring"]``:

``rank_correlation``  Spearman rank correlation of predicted vs actual (higher is better).
``hit_rate@k``        Overlap of the predicted and actual top-k sites (higher is better).
``lift``              Mean actual of the predicted top-k over the overall mean (higher is better).
``calibration``       ``|mean(predicted) / mean(actual) - 1|`` (lower is better).
``RMSE``              Root mean squared error in units of the target (lower is better).

"Top-k" everywhere means the ``top_count(n, k)`` rows with the largest values, where ``k``
is a fraction in (0, 1]; ties are broken by position (the earlier row wins), so results
are deterministic.  Inputs are 1-D array-likes of equal length; NaN inputs are not
allowed (the caller drops them).
"""

from __future__ import annotations

import math

import numpy as np

from runs.metrics.ranking import average_ranks_from_order, descending_order

__all__ = [
    "all_metrics",
    "average_ranks",
    "calibration",
    "decile_lift",
    "hit_rate_at_k",
    "lift",
    "rank_correlation",
    "rmse",
    "top_count",
    "top_k_indices",
]


def _pair(actual, predicted) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(actual, dtype=float).ravel()
    p = np.asarray(predicted, dtype=float).ravel()
    if a.shape != p.shape:
        raise ValueError(f"actual and predicted differ in length ({a.size} vs {p.size})")
    if a.size == 0:
        raise ValueError("metrics need at least one row")
    if np.isnan(a).any() or np.isnan(p).any():
        raise ValueError("metrics do not accept NaN values")
    return a, p


def _check_k(k: float) -> float:
    k = float(k)
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be a fraction in (0, 1], got {k}")
    return k


def top_count(n: int, k: float) -> int:
    """Number of rows in the top-k: ``max(1, ceil(k * n))`` (k a fraction in (0, 1]).

    A tiny tolerance keeps e.g. ``k=0.1, n=100`` at exactly 10 despite float rounding.
    """
    k = _check_k(k)
    return max(1, min(n, math.ceil(k * n - 1e-9)))


def top_k_indices(values, k: float) -> np.ndarray:
    """Indices of the ``top_count(len(values), k)`` largest values (ties: earlier row first)."""
    v = np.asarray(values, dtype=float).ravel()
    return descending_order(v)[: top_count(v.size, k)]


def average_ranks(values) -> np.ndarray:
    """1-based ranks with ties given the average of the ranks they span (like ``rankdata``)."""
    v = np.asarray(values, dtype=float).ravel()
    return average_ranks_from_order(v, descending_order(v))


def rank_correlation(actual, predicted) -> float:
    """Spearman rank correlation: the Pearson correlation of the average ranks.

    ``rho = cov(rank(a), rank(p)) / (std(rank(a)) * std(rank(p)))`` with tied values
    given their average rank (same as ``scipy.stats.spearmanr``).  NaN when either side
    is constant (the correlation is undefined).
    """
    a, p = _pair(actual, predicted)
    return _spearman(average_ranks(a), average_ranks(p))


def _spearman(ra: np.ndarray, rp: np.ndarray) -> float:
    ra = ra - ra.mean()
    rp = rp - rp.mean()
    # plain sums, not BLAS dot products: a BLAS thread pool on busy cores can take 100x
    # longer for vectors this short, and a bootstrap computes this hundreds of times
    denom = math.sqrt(float(np.sum(ra * ra)) * float(np.sum(rp * rp)))
    if denom == 0.0:
        return float("nan")
    return float(np.clip(np.sum(ra * rp) / denom, -1.0, 1.0))


def hit_rate_at_k(actual, predicted, k: float = 0.1) -> float:
    """``|top_k(predicted) ∩ top_k(actual)| / top_count(n, k)``.

    The share of the truly best ``top_count(n, k)`` sites that the model also puts in its
    own top ``top_count(n, k)`` (both sets have the same size, so this is both a precision
    and a recall).  A random ranking scores about ``k`` on average.
    """
    a, p = _pair(actual, predicted)
    return _hit_rate(top_k_indices(a, k), top_k_indices(p, k), a.size)


def _hit_rate(top_a: np.ndarray, top_p: np.ndarray, n: int) -> float:
    in_top_a = np.zeros(n, dtype=bool)
    in_top_a[top_a] = True
    return float(np.count_nonzero(in_top_a[top_p]) / top_a.size)


def lift(actual, predicted, k: float = 0.1) -> float:
    """``mean(actual[top_k(predicted)]) / mean(actual)``.

    How much better the sites the model ranks in its top-k perform than the average site
    (1.0 = no better than random).  NaN when ``mean(actual)`` is 0.
    """
    a, p = _pair(actual, predicted)
    return _lift(a, top_k_indices(p, k))


def _lift(a: np.ndarray, top_p: np.ndarray) -> float:
    overall = a.mean()
    if overall == 0.0:
        return float("nan")
    return float(a[top_p].mean() / overall)


def calibration(actual, predicted) -> float:
    """Absolute calibration error ``|mean(predicted) / mean(actual) - 1|``.

    0 means the predictions are right on average; NaN when ``mean(actual)`` is 0.
    """
    a, p = _pair(actual, predicted)
    overall = a.mean()
    if overall == 0.0:
        return float("nan")
    return float(abs(p.mean() / overall - 1.0))


def rmse(actual, predicted) -> float:
    """Root mean squared error ``sqrt(mean((predicted - actual) ** 2))``."""
    a, p = _pair(actual, predicted)
    return float(np.sqrt(np.mean((p - a) ** 2)))


def decile_lift(actual, predicted, groups: int = 10) -> list[float]:
    """Lift per predicted-score group, best first.

    Rows are ordered by prediction (descending, ties by position), cut into ``groups``
    near-equal groups (``numpy.array_split``) and each group's ``mean(actual)`` is divided
    by the overall ``mean(actual)``.  Group 1 is the model's top decile.
    """
    a, p = _pair(actual, predicted)
    overall = a.mean()
    order = np.argsort(-p, kind="stable")
    parts = np.array_split(order, min(groups, a.size))
    if overall == 0.0:
        return [float("nan")] * len(parts)
    return [float(a[idx].mean() / overall) for idx in parts]


def all_metrics(actual, predicted, k: float = 0.1) -> dict[str, float]:
    """Every location-scoring metric, keyed by its catalog name (``rank_correlation``,
    ``hit_rate@k``, ``lift``, ``calibration``, ``RMSE``): the same values as the functions one
    by one, with one sort of each side serving the ranks and the top k."""
    a, p = _pair(actual, predicted)
    count = top_count(a.size, k)
    order_a, order_p = descending_order(a), descending_order(p)
    return {
        "rank_correlation": _spearman(
            average_ranks_from_order(a, order_a), average_ranks_from_order(p, order_p)
        ),
        "hit_rate@k": _hit_rate(order_a[:count], order_p[:count], a.size),
        "lift": _lift(a, order_p[:count]),
        "calibration": calibration(a, p),
        "RMSE": rmse(a, p),
    }
