"""Permutation importance on the family's metric. Plain numpy/pandas, no Django.

For each feature (all the raw columns that move with it, permuted by one shared
permutation of the rows), the sample's metric is recomputed the family's way, ``repeats``
times with a seeded ``numpy.random.default_rng(seed)``; the importance is the drop in
quality, signed by the metric's direction (``recipes.catalog.METRICS``): a feature the model
relies on has importance > 0, one it ignores about 0. Mean and a 95 % t-interval over the
repeats.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from recipes.catalog import HIGHER, LOWER, metric_direction
from recipes.explain_config import default_metric
from runs.metrics import pricing as pm

from .decomposition import interval_ratios

# Pricing metrics that are functions of the actual and predicted units only.
_PRICING_DEMAND_METRICS = {"demand_mape": pm.demand_mape, "calibration": pm.calibration}

__all__ = ["default_metric", "direction_of", "interval", "permutation_importance", "scorer"]


def scorer(family, model, manifest: dict, metric: str):
    """A callable ``frame -> metric value`` for rows with labels (a test sample).

    Forecasting scores the rows as they are (``predict`` on the rows, then
    ``prediction_metrics`` with the model's interval ratios): its ``evaluate`` first
    aggregates duplicate (series, period) rows, which a permuted series or date column
    creates, and would sum their actuals. Pricing's demand metrics (``demand_mape``,
    ``calibration``: predicted vs actual units at the observed prices, as ``evaluate``
    defines them) come from ``predict`` alone, without ``evaluate``'s price optimisation. The
    others use ``evaluate`` itself."""
    name = family.NAME
    if name == "forecasting":
        spec = model["spec"]
        lo, hi = interval_ratios(model) or (1.0, 1.0)

        def score(frame: pd.DataFrame) -> float:
            point = np.asarray(family.predict(model, frame), dtype=float)
            predictions = pd.DataFrame(
                {
                    "actual": pd.to_numeric(frame[spec["label"]], errors="coerce").to_numpy(dtype=float),
                    "prediction": point,
                    "lower": point * lo,
                    "upper": point * hi,
                }
            )
            return _value(family.prediction_metrics(predictions, manifest), metric)

        return score

    if name == "pricing" and metric in _PRICING_DEMAND_METRICS:
        label = getattr(family, "LABEL", "units")

        def demand(frame: pd.DataFrame) -> float:
            actual = pd.to_numeric(frame[label], errors="coerce").to_numpy(dtype=float)
            predicted = np.asarray(family.predict(model, frame), dtype=float)
            return float(_PRICING_DEMAND_METRICS[metric](actual, predicted))

        return demand

    def evaluated(frame: pd.DataFrame) -> float:
        metrics, _, _ = family.evaluate(model, frame.reset_index(drop=True), manifest)
        return _value(metrics, metric)

    return evaluated


def _value(metrics: dict, metric: str) -> float:
    if metric not in metrics:
        raise ValueError(f"metric {metric!r} is not one of this model's metrics: {sorted(metrics)}")
    value = metrics[metric]
    return float(value) if value is not None else math.nan


def interval(values: np.ndarray, level: float = 0.95) -> tuple[float, float, float]:
    """Mean and a t-interval of ``values`` (NaN left out): ``(mean, low, high)``; the
    interval is the mean itself for a single value, NaN for none."""
    v = np.asarray(values, dtype=float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return math.nan, math.nan, math.nan
    mean = float(v.mean())
    if v.size == 1:
        return mean, mean, mean
    # scipy.stats is imported on first use: it takes about a second, and runs.artifacts imports
    # this package in every web process (which only explains rows, never importance)
    from scipy import stats

    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / math.sqrt(v.size))
    return mean, mean - half, mean + half


def permutation_importance(
    score,
    sample: pd.DataFrame,
    groups: dict[str, list[str]],
    features: list[str],
    *,
    direction: str,
    repeats: int,
    seed: int,
) -> tuple[list[dict], float]:
    """``([{"feature", "importance", "ci_low", "ci_high"}, ...] sorted desc, baseline)``."""
    if direction not in (LOWER, HIGHER):
        raise ValueError(f"unknown metric direction {direction!r}")
    sample = sample.reset_index(drop=True)
    baseline = score(sample)
    rng = np.random.default_rng(seed)
    sign = 1.0 if direction == LOWER else -1.0
    out = []
    for feature in features:
        drops = np.empty(max(1, int(repeats)))
        for r in range(len(drops)):
            order = rng.permutation(len(sample))
            permuted = sample.copy()
            for col in groups[feature]:
                permuted[col] = sample[col].array.take(order)
            drops[r] = sign * (score(permuted) - baseline)
        mean, low, high = interval(drops)
        out.append({"feature": feature, "importance": mean, "ci_low": low, "ci_high": high})
    out.sort(key=lambda e: (-(e["importance"]) if math.isfinite(e["importance"]) else math.inf, e["feature"]))
    return out, baseline


def direction_of(family_name: str, metric: str) -> str:
    direction = metric_direction(family_name, metric)
    if direction is None:
        raise ValueError(f"unknown metric {metric!r} for {family_name}")
    return direction
