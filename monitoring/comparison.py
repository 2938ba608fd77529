"""Paired bootstrap confidence intervals for comparing models on the same rows.

Plain numpy/pandas (no Django), so it is tested and benchmarked alone
(``bench/bench_compare.py``). A comparison of a champion and its challengers (issue #14 §4)
evaluates every model on the same labelled window; each family's ``prediction_metrics``
(``runs/families/<family>.py``) recomputes the metrics from the predictions frame that
``evaluate`` returned, and :func:`paired_bootstrap` puts intervals around them:

* **over the grain**: a replicate draws grain units (the family's ``BOOTSTRAP_GROUPS``
  columns: a series, a product x store, a customer, a site) with replacement, as many as
  there are, and keeps every row of each unit drawn (a unit drawn twice counts twice), so
  rows of one unit, which are not independent, stay together;
* **paired**: each replicate draws the units once and evaluates every model on those same
  rows, so the interval of a difference between two models holds only the sampling noise
  of the difference, not that of each model's metric;
* **percentile intervals**: ``low``/``high`` are the ``(1 - level) / 2`` and
  ``(1 + level) / 2`` quantiles (numpy's linear interpolation) of the replicates.

A metric that is not a function of the rows (a model parameter such as pricing's
``elasticity``, the family's ``CONSTANT_METRICS``) has no sampling noise: ``low = high =
value``. A replicate whose value of a metric is not finite (e.g. no control customer in the
top k) is left out for that metric; with fewer than half of the replicates finite, the
interval is not reported (``None``). A point value that is not finite is ``None`` too, so the
result is strict JSON.

Rows of a replicate keep the order they have in the frames (each row of a unit drawn twice
comes twice, next to itself), so metrics that break ties by position stay deterministic.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Collection, Mapping

import numpy as np
import pandas as pd

__all__ = ["group_codes", "paired_bootstrap", "replicate_indices", "verdict"]

MetricFn = Callable[[pd.DataFrame], Mapping[str, float]]


def group_codes(frame: pd.DataFrame, groups: list[str]) -> np.ndarray:
    """Integer code 0..G-1 of every row's grain unit (the values of the ``groups`` columns;
    a missing key is a unit of its own). ``ValueError`` naming a missing column."""
    if not groups:
        raise ValueError("groups must name at least one column of the predictions")
    missing = [g for g in groups if g not in frame.columns]
    if missing:
        raise ValueError(f"the predictions have no column {missing[0]!r} (a bootstrap group)")
    if len(groups) == 1:
        codes, _ = pd.factorize(frame[groups[0]], use_na_sentinel=False)
        return np.asarray(codes, dtype=np.int64)
    return frame.groupby(list(groups), sort=False, dropna=False).ngroup().to_numpy(dtype=np.int64)


def replicate_indices(codes: np.ndarray, n: int, seed: int = 0):
    """The row numbers of each of ``n`` bootstrap replicates over the units of ``codes`` (a
    generator of arrays, reproducible with ``seed``).

    A replicate draws as many units as there are, uniformly with replacement; a unit drawn
    ``c`` times has each of its rows ``c`` times. Rows come in frame order (a repeated row
    next to itself), so building a replicate needs no sort."""
    codes = np.asarray(codes, dtype=np.int64)
    count = int(codes.max()) + 1 if codes.size else 0
    rows = np.arange(codes.size)
    rng = np.random.default_rng(seed)
    for _ in range(n):
        drawn = np.bincount(rng.integers(0, count, size=count), minlength=count)
        yield np.repeat(rows, drawn[codes])


def _finite(value) -> float:
    """A metric value as a float; ``nan`` for anything that is not a finite number."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
        return math.nan
    value = float(value)
    return value if math.isfinite(value) else math.nan


def _plain(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _interval(value: float, replicates: np.ndarray, level: float, constant: bool) -> dict:
    """``{"value", "low", "high"}`` of one metric from its point value and replicates."""
    if constant:
        return {"value": _plain(value), "low": _plain(value), "high": _plain(value)}
    finite = replicates[np.isfinite(replicates)]
    if finite.size == 0 or finite.size * 2 < replicates.size:
        return {"value": _plain(value), "low": None, "high": None}
    low, high = np.quantile(finite, [(1.0 - level) / 2.0, (1.0 + level) / 2.0])
    return {"value": _plain(value), "low": float(low), "high": float(high)}


def _check(predictions: Mapping[str, pd.DataFrame], groups: list[str], n: int, level: float) -> list[str]:
    if not predictions:
        raise ValueError("predictions must hold at least one model's predictions")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n (replicates) must be a positive integer, got {n!r}")
    if isinstance(level, bool) or not isinstance(level, (int, float)) or not 0.0 < float(level) < 1.0:
        raise ValueError(f"level must be a fraction in (0, 1), got {level!r}")
    keys = list(predictions)
    first = predictions[keys[0]]
    if len(first) == 0:
        raise ValueError("the predictions are empty: nothing to compare")
    for key in keys[1:]:
        other = predictions[key]
        if len(other) != len(first):
            raise ValueError(
                f"model {key!r} has {len(other)} prediction rows, model {keys[0]!r} {len(first)}: "
                "every model must be evaluated on the same rows"
            )
        same = [g for g in groups if g in other.columns and g in first.columns]
        for g in same:
            if not other[g].reset_index(drop=True).equals(first[g].reset_index(drop=True)):
                raise ValueError(
                    f"model {key!r} and model {keys[0]!r} differ in column {g!r}: "
                    "every model must be evaluated on the same rows, in the same order"
                )
    return keys


def paired_bootstrap(
    predictions: Mapping[str, pd.DataFrame],
    metric_fn: MetricFn,
    groups: list[str],
    *,
    constant: Collection[str] = frozenset(),
    columns: Collection[str] | None = None,
    n: int = 200,
    level: float = 0.95,
    seed: int = 0,
) -> dict:
    """Every model's metrics and their differences from the first model, with paired
    percentile bootstrap intervals over the grain units (module docstring).

    ``predictions``: model key -> that model's predictions frame on the *same* rows in the
    same order (the first key is the reference); ``metric_fn(frame) -> {metric: value}`` (a
    family's ``prediction_metrics`` with the manifest bound); ``groups``: the columns of a
    grain unit (the family's ``BOOTSTRAP_GROUPS``); ``constant``: metrics with no interval
    (the family's ``CONSTANT_METRICS``); ``columns``: the columns ``metric_fn`` reads (the
    family's ``METRIC_COLUMNS``; only they are copied into each replicate, which saves time
    when the frames carry text columns; default every column); ``n`` replicates; ``level``
    the interval's coverage.

    Returns::

        {"models": {key: {metric: {"value", "low", "high"}}},
         "difference": {key: {metric: {"value", "low", "high"}}},  # key minus the first key
         "replicates": n, "groups": <number of grain units>, "level": level}

    ``difference`` has every key but the first (the reference), for the metrics both have;
    its replicates are differences within the same resample. ``ValueError`` for frames that
    are not the same rows, a missing group or metric column, ``n < 1`` or a level outside
    (0, 1).
    """
    keys = _check(predictions, groups, n, level)
    codes = group_codes(predictions[keys[0]], groups)
    constant = set(constant)
    frames = {key: predictions[key] for key in keys}
    if columns is not None:
        for key, frame in frames.items():
            missing = [c for c in columns if c not in frame.columns]
            if missing:
                raise ValueError(f"model {key!r}'s predictions have no column {missing[0]!r}")
        frames = {key: frame[list(columns)] for key, frame in frames.items()}
    point = {key: {m: _finite(v) for m, v in metric_fn(frame).items()} for key, frame in frames.items()}
    metrics = {key: list(values) for key, values in point.items()}
    reps = {key: np.full((n, len(metrics[key])), np.nan) for key in keys}

    for r, idx in enumerate(replicate_indices(codes, n, seed)):
        for key, frame in frames.items():
            values = metric_fn(frame.take(idx))
            reps[key][r] = [_finite(values.get(m)) for m in metrics[key]]

    models = {
        key: {
            m: _interval(point[key][m], reps[key][:, j], level, m in constant)
            for j, m in enumerate(metrics[key])
        }
        for key in keys
    }
    ref = keys[0]
    ref_col = {m: j for j, m in enumerate(metrics[ref])}
    difference = {}
    for key in keys[1:]:
        difference[key] = {
            m: _interval(
                point[key][m] - point[ref][m],
                reps[key][:, j] - reps[ref][:, ref_col[m]],
                level,
                m in constant,
            )
            for j, m in enumerate(metrics[key])
            if m in ref_col
        }
    return {
        "models": models,
        "difference": difference,
        "replicates": int(n),
        "groups": int(codes.max()) + 1,
        "level": float(level),
    }


def verdict(
    *,
    metric: str | None,
    direction: str | None,
    difference: Mapping | None,
    critical: list[str],
    level: float,
) -> dict:
    """A challenger against the reference on the primary ``metric`` (``direction``: "higher"
    or "lower" is better), from the paired interval of their ``difference`` (challenger minus
    reference): ``better`` when the whole interval is on the better side of 0, ``worse`` on
    the other side, ``no_difference`` when it includes 0, ``unknown`` without an interval. A
    critical breach (``critical``: the challenger's metrics past their critical threshold) is
    a reason against it whatever the metric says. Returns {"verdict", "reasons", "summary"}."""
    reasons = []
    low = high = None
    if difference:
        low, high = difference.get("low"), difference.get("high")
    pct = f"{level:.0%}"
    if metric is None or direction not in ("higher", "lower") or low is None or high is None:
        outcome = "unknown"
        reasons.append(f"no {pct} interval for the primary metric {metric or '(none)'}")
    else:
        gain_low, gain_high = (low, high) if direction == "higher" else (-high, -low)
        span = f"{metric} difference {difference['value']:+.4g} ({pct} interval {low:+.4g} to {high:+.4g})"
        if gain_low > 0:
            outcome = "better"
            reasons.append(f"{span}: better, beyond the noise")
        elif gain_high < 0:
            outcome = "worse"
            reasons.append(f"{span}: worse, beyond the noise")
        else:
            outcome = "no_difference"
            reasons.append(f"{span}: the interval includes 0, no clear difference")
    if critical:
        reasons.append(f"critical breach of {', '.join(critical)}")
    words = {
        "better": "better",
        "worse": "worse",
        "no_difference": "no clear difference",
        "unknown": "unknown",
    }
    summary = words[outcome] + (f", but breaches {', '.join(critical)}" if critical else "")
    return {"verdict": outcome, "reasons": reasons, "summary": summary}
