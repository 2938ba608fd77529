"""Uplift metrics for the next best action family (plain numpy, no Django).

All functions take the holdout of a randomised experiment:

``y``
    The binary response (1 = converted), shape ``(N,)``.
``treatment``
    1 if the customer was treated (offer sent), 0 for control, shape ``(N,)``.
``score``
    The model's uplift score; higher means "target first", shape ``(N,)``.

Notation used in the definitions below: customers are ranked by ``score`` in descending
order. For the first ``n`` customers of that ranking, ``N_t(n)`` / ``N_c(n)`` are the
numbers of treated / control customers and ``Y_t(n)`` / ``Y_c(n)`` the numbers of treated /
control responders; ``N = N_t(N) + N_c(N)``.

Ties. The curve functions (``qini_curve``, ``uplift_curve`` and so ``qini_coefficient``
and ``auuc``) only place points at the end of a group of tied scores and join those points
with straight lines (as ``sklearn.metrics.roc_curve`` does), so the result does not depend
on the order of tied rows; a constant score gives exactly the random line.
The top-k metrics take the first ``n_k = max(1, round(k * N))`` customers of a stable
descending sort (tied rows keep their input order).

A quantity that is undefined because a group is empty (e.g. no control customers in the
top k) is ``nan``.
"""

from __future__ import annotations

import dataclasses
import math
from functools import cached_property

import numpy as np

from runs.metrics.ranking import descending_order

__all__ = [
    "METRIC_NAMES",
    "auuc",
    "compute_all",
    "incremental_revenue",
    "perfect_qini_curve",
    "precision_at_k",
    "qini_coefficient",
    "qini_curve",
    "top_k_count",
    "uplift",
    "uplift_at_k",
    "uplift_by_bins",
    "uplift_curve",
]


# The keys of compute_all, in its order.
METRIC_NAMES = ("uplift", "uplift@k", "precision@k", "qini_coefficient", "auuc", "incremental_revenue")


def _arrays(y, treatment, score) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    y = np.asarray(y, dtype=float).ravel()
    t = np.asarray(treatment).ravel()
    s = np.asarray(score, dtype=float).ravel()
    if not (len(y) == len(t) == len(s)):
        raise ValueError(f"length mismatch: y={len(y)}, treatment={len(t)}, score={len(s)}")
    if len(y) == 0:
        raise ValueError("empty arrays")
    if np.isnan(s).any():
        raise ValueError("score contains NaN")
    t = t.astype(float)
    if not np.isin(t, (0.0, 1.0)).all():
        raise ValueError("treatment must be 0/1")
    return y, t.astype(bool), s


def _check_k(k: float) -> float:
    k = float(k)
    if not 0.0 < k <= 1.0:
        raise ValueError(f"k must be a fraction in (0, 1], got {k}")
    return k


def top_k_count(n: int, k: float) -> int:
    """``n_k = max(1, round(k * n))``: how many customers the top k fraction holds."""
    return max(1, int(round(_check_k(k) * n)))


@dataclasses.dataclass(frozen=True)
class _Ranked:
    """The rows in ranking order: stable descending score (tied scores keep their input
    order). Every metric reads this one ranking (and its cumulative counts, computed once),
    so ``compute_all`` sorts once."""

    y: np.ndarray
    t: np.ndarray  # bool
    s: np.ndarray
    order: np.ndarray  # input row of each ranked row

    @cached_property
    def cumulative(self):
        return _cumulative(self)


def _ranked(y, treatment, score) -> _Ranked:
    y, t, s = _arrays(y, treatment, score)
    order = descending_order(s)
    return _Ranked(y[order], t[order], s[order], order)


def _rate(num: float, den: float) -> float:
    return float(num / den) if den > 0 else math.nan


def _uplift_at_k(r: _Ranked, k: float) -> float:
    n_k = top_k_count(len(r.y), k)
    yt, tt = r.y[:n_k], r.t[:n_k]
    return _rate(yt[tt].sum(), tt.sum()) - _rate(yt[~tt].sum(), (~tt).sum())


def _precision_at_k(r: _Ranked, k: float) -> float:
    n_k = top_k_count(len(r.y), k)
    yt, tt = r.y[:n_k], r.t[:n_k]
    return _rate(yt[tt].sum(), tt.sum())


def _uplift(r: _Ranked, k: float) -> float:
    ate = _rate(r.y[r.t].sum(), r.t.sum()) - _rate(r.y[~r.t].sum(), (~r.t).sum())
    return _uplift_at_k(r, k) - ate


def uplift_at_k(y, treatment, score, k: float) -> float:
    """uplift@k: observed uplift in the model's top k fraction.

    ``uplift@k = Y_t(n_k) / N_t(n_k) - Y_c(n_k) / N_c(n_k)`` -- the treated response rate
    minus the control response rate among the ``n_k`` highest-scored customers.
    """
    return _uplift_at_k(_ranked(y, treatment, score), k)


def precision_at_k(y, treatment, score, k: float) -> float:
    """precision@k: response rate of the treated customers in the model's top k fraction.

    ``precision@k = Y_t(n_k) / N_t(n_k)``.
    """
    return _precision_at_k(_ranked(y, treatment, score), k)


def uplift(y, treatment, score, k: float) -> float:
    """uplift: how much more the model's top k fraction responds to treatment than everyone.

    ``uplift = uplift@k - ATE`` with ``ATE = Y_t(N) / N_t(N) - Y_c(N) / N_c(N)`` the
    observed average treatment effect of the whole evaluated population. 0 for a ranking
    no better than random (in expectation), positive when targeting by the model helps.
    """
    return _uplift(_ranked(y, treatment, score), k)


def incremental_revenue(
    revenue, treatment, score, k: float, *, offer_cost: float = 0.0, population: int | None = 1000
) -> float:
    """incremental_revenue: estimated extra revenue from treating the model's top k fraction.

    With ``R_t(n)`` / ``R_c(n)`` the revenue summed over the treated / control customers of
    the top ``n``::

        per_customer = R_t(n_k) / N_t(n_k) - R_c(n_k) / N_c(n_k) - offer_cost
        incremental_revenue = per_customer * n_k * (population / N)

    i.e. the incremental revenue per treated customer in the top k, times the number of
    customers treated when the top k fraction of ``population`` customers is targeted
    (``population=None`` uses the evaluated population itself, giving a total for the
    holdout). The default (``population=1000``) reports it per 1,000 scored customers, so
    the value does not depend on the size of the holdout.
    """
    return _incremental_revenue(_ranked(revenue, treatment, score), k, offer_cost, population)


def _incremental_revenue(r: _Ranked, k: float, offer_cost: float, population: int | None) -> float:
    """incremental_revenue of a ranking whose ``y`` is the revenue."""
    n = len(r.y)
    n_k = top_k_count(n, k)
    rt, tt = r.y[:n_k], r.t[:n_k]
    per_customer = _rate(rt[tt].sum(), tt.sum()) - _rate(rt[~tt].sum(), (~tt).sum()) - float(offer_cost)
    scale = 1.0 if population is None else float(population) / n
    return float(per_customer * n_k * scale)


def _cumulative(r: _Ranked):
    """Cumulative counts at the end of each tie group (with a leading 0 point)."""
    y, t, s = r.y, r.t, r.s
    # Last index of each run of equal scores.
    ends = np.r_[np.flatnonzero(np.diff(s) != 0), len(s) - 1]
    n = np.r_[0, ends + 1].astype(float)
    n_t = np.r_[0, np.cumsum(t)[ends]].astype(float)
    n_c = n - n_t
    y_t = np.r_[0, np.cumsum(y * t)[ends]]
    y_c = np.r_[0, np.cumsum(y * ~t)[ends]]
    return n, n_t, n_c, y_t, y_c


def qini_curve(y, treatment, score) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve: ``(n, Q(n))`` at 0 and at the end of every group of tied scores.

    ``Q(n) = Y_t(n) - Y_c(n) * N_t(n) / N_c(n)`` (``Q(n) = Y_t(n)`` while ``N_c(n) = 0``):
    the incremental responders among the top ``n``, with the control responders scaled to
    the size of the treated group (Radcliffe 2007). ``Q(0) = 0``; ``Q(N)`` is the total
    incremental response, and the *random line* joins ``(0, 0)`` and ``(N, Q(N))``.
    """
    return _qini_curve(_ranked(y, treatment, score))


def _qini_curve(r: _Ranked) -> tuple[np.ndarray, np.ndarray]:
    n, n_t, n_c, y_t, y_c = r.cumulative
    with np.errstate(divide="ignore", invalid="ignore"):
        scaled = np.where(n_c > 0, y_c * n_t / np.where(n_c > 0, n_c, 1.0), 0.0)
    return n, y_t - scaled


def uplift_curve(y, treatment, score) -> tuple[np.ndarray, np.ndarray]:
    """The uplift (gain) curve: ``(n, U(n))`` at 0 and at the end of every tie group.

    ``U(n) = (Y_t(n) / N_t(n) - Y_c(n) / N_c(n)) * n``: the observed uplift of the top
    ``n`` times ``n``; ``U(n) = 0`` while either group is still empty.
    """
    return _uplift_curve(_ranked(y, treatment, score))


def _uplift_curve(r: _Ranked) -> tuple[np.ndarray, np.ndarray]:
    n, n_t, n_c, y_t, y_c = r.cumulative
    ok = (n_t > 0) & (n_c > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        u = np.where(ok, (y_t / np.where(ok, n_t, 1.0) - y_c / np.where(ok, n_c, 1.0)) * n, 0.0)
    return n, u


def _area(x: np.ndarray, v: np.ndarray) -> float:
    """Trapezoid-rule area under the polyline through ``(x, v)``."""
    return float(np.sum((x[1:] - x[:-1]) * (v[1:] + v[:-1]) / 2.0))


def perfect_qini_curve(y, treatment) -> tuple[np.ndarray, np.ndarray]:
    """The Qini curve of the oracle ranking ``score = y * (2 * treatment - 1)``.

    Treated responders first, then all non-responders (one tie group), then control
    responders last.
    """
    y_, t, _ = _arrays(y, treatment, np.zeros(len(np.asarray(y))))
    return qini_curve(y_, t, y_ * np.where(t, 1.0, -1.0))


def _perfect_qini_curve(r: _Ranked) -> tuple[np.ndarray, np.ndarray]:
    # The curve only has points at the ends of tie groups of the oracle score, so the order
    # the rows come in (here: the model's ranking) makes no difference.
    return _qini_curve(_ranked(r.y, r.t, r.y * np.where(r.t, 1.0, -1.0)))


def qini_coefficient(y, treatment, score) -> float:
    """qini_coefficient: area between the model's Qini curve and the random line, normalised.

    With ``A(curve)`` the trapezoid area under a Qini curve over ``n`` in ``[0, N]`` and
    ``A_random = N * Q(N) / 2`` the area under the random line::

        qini_coefficient = (A(model) - A_random) / (A(perfect) - A_random)

    where *perfect* is ``perfect_qini_curve`` (same normalisation as scikit-uplift's
    ``qini_auc_score``). 1 for the oracle ranking, 0 for a constant score and about 0 for
    a random one, negative for a ranking worse than random; ``nan`` if the oracle curve is
    no better than the random line (no responders).
    """
    return _qini_coefficient(_ranked(y, treatment, score))


def _qini_coefficient(r: _Ranked) -> float:
    n, q = _qini_curve(r)
    total = len(r.y)
    a_random = total * q[-1] / 2.0
    n_p, q_p = _perfect_qini_curve(r)
    denom = _area(n_p, q_p) - a_random
    if denom <= 0:
        return math.nan
    return float((_area(n, q) - a_random) / denom)


def auuc(y, treatment, score) -> float:
    """auuc: area under the uplift curve, normalised by the population.

    ``auuc = area under (n / N, U(n) / N)`` for ``n`` in ``[0, N]`` by the trapezoid rule,
    i.e. the incremental responses per customer of the population, averaged over all
    targeting depths from 0 to 100%. A random ranking gives about ``ATE / 2``; a ranking
    that targets the responsive customers first gives more.
    """
    return _auuc(_ranked(y, treatment, score))


def _auuc(r: _Ranked) -> float:
    n, u = _uplift_curve(r)
    total = n[-1]
    return _area(n / total, u / total)


def uplift_by_bins(y, treatment, score, bins: int = 10) -> dict[str, list]:
    """Observed uplift per score bin (bin 1 = highest scores), equal-count bins.

    Customers are ranked by the stable descending sort and cut into ``bins`` groups of
    (almost) equal size; per bin: ``observed`` = treated rate - control rate (``nan`` if a
    group is empty), ``predicted`` = mean score, ``count``.
    """
    r = _ranked(y, treatment, score)
    out: dict[str, list] = {"bin": [], "observed": [], "predicted": [], "count": []}
    for i, idx in enumerate(np.array_split(np.arange(len(r.y)), bins), start=1):
        if len(idx) == 0:
            continue
        yt, tt = r.y[idx], r.t[idx]
        out["bin"].append(i)
        out["observed"].append(_rate(yt[tt].sum(), tt.sum()) - _rate(yt[~tt].sum(), (~tt).sum()))
        out["predicted"].append(float(r.s[idx].mean()))
        out["count"].append(len(idx))
    return out


def compute_all(
    y,
    treatment,
    score,
    revenue,
    *,
    k: float = 0.1,
    offer_cost: float = 0.0,
    population: int | None = 1000,
) -> dict[str, float]:
    """Every next_best_action metric of ``recipes.catalog.METRICS``, as plain floats (one
    ranking of the rows serves them all: the same values as the functions one by one)."""
    r = _ranked(y, treatment, score)
    rev = np.asarray(revenue, dtype=float).ravel()
    if len(rev) != len(r.y):
        raise ValueError(f"length mismatch: revenue={len(rev)}, y={len(r.y)}")
    return {
        "uplift": float(_uplift(r, k)),
        "uplift@k": float(_uplift_at_k(r, k)),
        "precision@k": float(_precision_at_k(r, k)),
        "qini_coefficient": float(_qini_coefficient(r)),
        "auuc": float(_auuc(r)),
        "incremental_revenue": float(
            _incremental_revenue(dataclasses.replace(r, y=rev[r.order]), k, offer_cost, population)
        ),
    }
