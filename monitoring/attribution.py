"""Attribution drift of a monitoring check (issue #17 §4): which features drive the model's
outputs on the checked batch, against the training run's explanation.

Plain Python (pandas/numpy, no Django). The numbers come from ``runs.explain``
(``attribution_means`` of the batch's sample, ``attribution_drift`` against the training
document's ``attribution.mean_abs``); this module picks the bounded sample the check explains
and shapes what a snapshot stores under ``drift_metrics_json["explain"]``::

    {"method": "tree_shap", "scale": "prediction", "rows": 500, "sample_rows": 500,
     "seed": 0, "reference_rows": 500, "rank_change": 0.4,
     "features": {"price": {"share": 0.31, "reference_share": 0.42, "rank": 1,
                            "reference_rank": 1, "mean_abs": 2.1, "reference_mean_abs": 2.6},
                  ...}}

(or ``{"error": "..."}`` when the batch could not be explained). ``monitoring.rules``
reads it as the alert names ``explain.rank_change`` and ``explain.<feature>.share``.

A fixed model's attributions move only with its inputs: attribution drift shows a change in
which features drive the predictions (a feature that varies more, or less, than in training),
not a change of the ground truth the inputs do not show (a concept change), which only the
performance on labelled outcomes reveals.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pandas as pd

__all__ = [
    "CHECK_EXPLAIN_ROWS",
    "CHECK_EXPLAIN_SECONDS",
    "chunked_means",
    "drift_entry",
    "ranks",
    "reference_means",
    "sample_rows",
    "table",
]

# A check explains at most this many of the batch's rows (and no more than the training
# explanation's own sample): attributions cost far more per row than a prediction.
CHECK_EXPLAIN_ROWS = 500
# ... and stops starting new chunks of them after this many seconds: a check runs inside a page
# or API request (Run check), and explaining costs very different amounts per row by family
# (measured on 2 cores: about 2 ms a row for a location model's TreeSHAP, 9 ms for the
# next-best-action model's exact Shapley values, 0.3-0.6 s for a forecaster, which forecasts
# every hybrid row alone). The rows explained are the first of the seeded sample, so a
# faster machine explains more of the same rows; the snapshot says how many.
CHECK_EXPLAIN_SECONDS = 2.0
# The first chunk's rows; each next chunk is twice as large.
FIRST_CHUNK_ROWS = 10


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float | np.floating | np.integer):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def reference_means(document: Mapping[str, Any] | None) -> dict[str, float] | None:
    """feature -> mean |contribution| of the training explanation (its
    ``attribution.mean_abs``), or None when the document has none (no explanations, or the
    per-prediction attributions were not asked for)."""
    if not isinstance(document, Mapping):
        return None
    attribution = document.get("attribution")
    items = attribution.get("mean_abs") if isinstance(attribution, Mapping) else None
    if not isinstance(items, list):
        return None
    out: dict[str, float] = {}
    for item in items:
        if isinstance(item, Mapping) and isinstance(item.get("feature"), str):
            value = _num(item.get("mean_abs"))
            if value is not None:
                out[item["feature"]] = value
    return out or None


def sample_rows(
    frame: pd.DataFrame, document: Mapping[str, Any], cap: int = CHECK_EXPLAIN_ROWS
) -> pd.DataFrame:
    """The rows a check explains: all of ``frame`` when it has at most
    min(``cap``, the document's ``sample_rows``) rows, else that many drawn without
    replacement with the document's seed (the same rows for the same batch), in their order."""
    limit = cap
    sample = document.get("sample_rows")
    if isinstance(sample, int) and not isinstance(sample, bool) and sample > 0:
        limit = min(limit, sample)
    if len(frame) <= limit:
        return frame
    seed = document.get("seed")
    seed = seed if isinstance(seed, int) and not isinstance(seed, bool) and seed >= 0 else 0
    picked = np.sort(np.random.default_rng(seed).choice(len(frame), size=limit, replace=False))
    return frame.iloc[picked]


def chunked_means(
    means_of: Callable[[pd.DataFrame], Mapping[str, float]],
    rows: pd.DataFrame,
    *,
    budget_seconds: float = CHECK_EXPLAIN_SECONDS,
    first: int = FIRST_CHUNK_ROWS,
    clock: Callable[[], float] = time.monotonic,
) -> tuple[dict[str, float], int]:
    """(mean |contribution| per feature, rows explained) over the first rows of ``rows``,
    explained in chunks (``first`` rows, then twice as many each time) by ``means_of`` (a
    chunk's mean |contribution| per feature: ``runs.explain.attribution_means``) until every
    row is explained or ``budget_seconds`` have passed (the chunk under way is finished).
    The chunks' means are averaged weighted by their rows, which is the mean over all the
    rows explained (a chunk the explainer found no usable row in -- a forecaster's unknown
    series -- counts none)."""
    start = clock()
    sums: dict[str, float] = {}
    counted = done = 0
    size = max(1, int(first))
    while done < len(rows):
        part = rows.iloc[done : done + size]
        means = {f: v for f, v in means_of(part).items() if _num(v) is not None}
        done += len(part)
        if means:
            counted += len(part)
            for feature, value in means.items():
                sums[feature] = sums.get(feature, 0.0) + float(value) * len(part)
        if clock() - start >= budget_seconds:
            break
        size *= 2
    return ({f: v / counted for f, v in sums.items()} if counted else {}), counted


def ranks(means: Mapping[str, float]) -> dict[str, int]:
    """feature -> its place (1 = the largest mean |contribution|; ties by name, as
    runs.explain.attribution_drift ranks them)."""
    order = sorted(means, key=lambda f: (-means[f], f))
    return {feature: i + 1 for i, feature in enumerate(order)}


def _shares(means: Mapping[str, float]) -> dict[str, float | None]:
    total = sum(means.values())
    return {f: (v / total if total > 0 else None) for f, v in means.items()}


def drift_entry(
    reference: Mapping[str, float],
    current: Mapping[str, float],
    metrics: Mapping[str, Any],
    *,
    document: Mapping[str, Any],
    rows: int,
    sample_rows: int | None = None,
) -> dict:
    """What a snapshot stores of the attribution drift (the module docstring's shape):
    ``metrics`` is ``runs.explain.attribution_drift(reference, current)`` (its
    ``explain.rank_change`` and ``explain.<feature>.share``), ``reference``/``current`` the
    mean |contribution| per feature, ``rows`` how many rows were explained (of ``sample_rows``
    drawn: fewer when the time budget ran out, chunked_means). The features are
    the reference's in its order, then any only the batch has."""
    current = {f: v for f, v in current.items() if _num(v) is not None}
    ref_rank, cur_rank = ranks(reference), ranks(current)
    ref_share = _shares(reference)
    features = {}
    for feature in [*reference, *(f for f in current if f not in reference)]:
        features[feature] = {
            "share": _num(metrics.get(f"explain.{feature}.share")),
            "reference_share": ref_share.get(feature),
            "rank": cur_rank.get(feature),
            "reference_rank": ref_rank.get(feature),
            "mean_abs": _num(current.get(feature)),
            "reference_mean_abs": _num(reference.get(feature)),
        }
    return {
        "method": document.get("method"),
        "scale": document.get("scale"),
        "rows": int(rows),
        "sample_rows": int(rows if sample_rows is None else sample_rows),
        "seed": document.get("seed"),
        "reference_rows": document.get("sample_rows"),
        "rank_change": _num(metrics.get("explain.rank_change")),
        "features": features,
    }


def _percent(value: float | None) -> float | None:
    # + 0.0 turns a rounded -0.0 into 0.0 (the page would show "-0.0").
    return None if value is None else round(value * 100.0, 1) + 0.0


def table(entry: Mapping[str, Any] | None) -> list[dict]:
    """The rows the model page shows of a stored entry: per feature its training and current
    share and rank and the change of share, in the training ranking's order (features the
    training explanation lacks last)."""
    features = (entry or {}).get("features")
    if not isinstance(features, Mapping):
        return []
    rows = []
    for feature, item in features.items():
        item = item if isinstance(item, Mapping) else {}
        share, ref = _num(item.get("share")), _num(item.get("reference_share"))
        rank, ref_rank = item.get("rank"), item.get("reference_rank")
        moved = rank - ref_rank if isinstance(rank, int) and isinstance(ref_rank, int) else None
        change = share - ref if share is not None and ref is not None else None
        rows.append(
            {
                "feature": feature,
                "reference_share": ref,
                "share": share,
                "change": change,
                # as the page shows them: percent and percentage points, one decimal
                "reference_percent": _percent(ref),
                "percent": _percent(share),
                "change_points": _percent(change),
                "reference_rank": ref_rank,
                "rank": rank,
                # places up (a larger share of the attributions than in training) or down
                "moved": None if moved is None else ("up" if moved < 0 else "down" if moved > 0 else "same"),
                "steps": None if moved is None else abs(moved),
            }
        )
    rows.sort(key=lambda r: (r["reference_rank"] is None, r["reference_rank"] or 0))
    return rows
