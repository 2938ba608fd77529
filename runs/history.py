"""Metric history (issue #15 §2): recording it while a run trains, and reading it for plots and
downloads. Plain Python, no Django import.

Recording (in the run's child process, runs.pipeline): ``CurveRecorder``, a LightGBM callback
that sends each boosting iteration's losses as ``("metrics", [...])`` batches, and
``fold_points``, a backtest fold's metrics; the worker writes them (runs.executor).

A run may log a metric at thousands of steps (a training curve, an MLflow script's loss every
batch); a chart needs about a thousand points. ``downsample`` keeps the shape a reader looks
for: the first and the last point and, in each of equal buckets of consecutive points, the
lowest and the highest value in their order (so a spike or a dip is never smoothed away, as it
would be by taking every n-th point or by averaging). The full history is a download
(``csv_rows``), never a plot.

A point is ``(step, value, timestamp)``; ``value`` is None for NaN and ±inf (JSON has neither),
so such a point is kept as a gap, never as a bucket's minimum or maximum.
"""

from __future__ import annotations

import inspect
import math
import numbers
import time
from collections.abc import Iterable, Iterator, Sequence

import numpy as np

from mlworkspace.csvsafe import stream_csv

from . import tracking

DEFAULT_MAX_POINTS = 1000
MAX_MAX_POINTS = 10_000
MIN_MAX_POINTS = 2
CSV_COLUMNS = ("key", "step", "value", "timestamp")

Point = tuple[int, float | None, int]


def finite(value: float | None) -> float | None:
    """`value`, or None when it is missing, NaN or infinite (what JSON can carry)."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def downsample_indices(values, max_points: int) -> np.ndarray:
    """The indices (ascending) of the points ``downsample`` keeps, from the points' values
    alone (NaN, ±inf or None for a gap): the first, the last and, in each of
    ``(max_points - 2) // 2`` buckets of consecutive points, the minimum and the maximum (the
    first of equal ones; one gap for a bucket of gaps only). Vectorised: 100k points in a
    few milliseconds."""
    if max_points < MIN_MAX_POINTS:
        raise ValueError(f"max_points must be at least {MIN_MAX_POINTS}")
    v = np.asarray(values, dtype=float)  # None -> NaN
    n = len(v)
    if n <= max_points:
        return np.arange(n)
    buckets = (max_points - 2) // 2
    if buckets == 0:
        return np.array([0, n - 1])
    inner = v[1:-1].copy()
    inner[~np.isfinite(inner)] = np.nan
    gap = np.isnan(inner)
    # n > max_points >= 2 * buckets + 2, so every bucket holds at least two points.
    starts = (np.arange(buckets) * (n - 2)) // buckets
    bucket = np.repeat(np.arange(buckets), np.diff(np.append(starts, n - 2)))

    def first_where(hit: np.ndarray) -> np.ndarray:
        found = np.flatnonzero(hit)
        return found[np.searchsorted(bucket[found], np.arange(buckets))]

    low = np.where(gap, np.inf, inner)
    high = np.where(gap, -np.inf, inner)
    lows = first_where(low == np.minimum.reduceat(low, starts)[bucket])
    highs = first_where(high == np.maximum.reduceat(high, starts)[bucket])
    kept = np.unique(np.concatenate([lows, highs])) + 1
    return np.concatenate([[0], kept, [n - 1]])


def downsample(points: Sequence[Point], max_points: int) -> list[Point]:
    """At most `max_points` (≥ 2) of `points` (in step order) for a plot, in their order:
    see ``downsample_indices``. Fewer points than that come back unchanged; values are
    ``finite`` (None for NaN and ±inf)."""
    if len(points) <= max_points and max_points >= MIN_MAX_POINTS:
        return [(s, finite(v), t) for s, v, t in points]
    keep = downsample_indices([p[1] for p in points], max_points)
    return [(points[i][0], finite(points[i][1]), points[i][2]) for i in keep.tolist()]


def parse_max_points(raw: str | None) -> int:
    """``?max_points=`` as an int in [MIN_MAX_POINTS, MAX_MAX_POINTS] (default
    DEFAULT_MAX_POINTS); ValueError with the reason otherwise."""
    if raw is None or raw == "":
        return DEFAULT_MAX_POINTS
    if not raw.isdigit():
        raise ValueError("must be an integer")
    value = int(raw)
    if not MIN_MAX_POINTS <= value <= MAX_MAX_POINTS:
        raise ValueError(f"must be between {MIN_MAX_POINTS} and {MAX_MAX_POINTS}")
    return value


def csv_rows(key: str, rows: Iterable[tuple[int, float | None, bool, int]]) -> Iterator[list]:
    """The CSV download of one metric's full history: a header, then ``key, step, value,
    timestamp`` per point (``rows`` are ``(step, value, is_nan, timestamp)``). The key is
    user text: ``csv_chunks`` writes it through mlworkspace.csvsafe, which neutralises a key
    a spreadsheet would run as a formula; NaN is written as ``nan`` (pandas and
    spreadsheets read it)."""
    yield list(CSV_COLUMNS)
    for step, value, is_nan, timestamp in rows:
        yield [key, step, math.nan if is_nan or value is None else value, timestamp]


def csv_chunks(key: str, rows: Iterable[tuple[int, float | None, bool, int]], chunk_rows: int = 5000):
    """``csv_rows`` as streamed CSV text (mlworkspace.csvsafe.stream_csv: `chunk_rows` lines
    per chunk, memory flat however long the history)."""
    return stream_csv(csv_rows(key, rows), chunk_rows=chunk_rows)


def curve_groups(keys: Iterable[str]) -> dict[str, list[str]]:
    """Keys drawn on one chart: ``train.<m>`` beside ``valid.<m>`` (the same loss on the
    training and the validation data, e.g. ``train.l2`` and ``valid.l2``); any other key
    on a chart of its own. Groups and keys in the order given."""
    groups: dict[str, list[str]] = {}
    for key in keys:
        head, _, rest = key.partition(".")
        group = rest if head in ("train", "valid") and rest else key
        groups.setdefault(group, []).append(key)
    return groups


# --------------------------------------------------------------------------- recording
# In the run's child process (runs.pipeline). Points reach the worker as ("metrics", [...]) messages, a batch at a time; the worker
# writes them with runs.services.tracking.tracking_log while the run is running. Their keys
# (train./valid./fold.) never collide with the final metrics of metrics_json.

METRICS_BATCH = 500  # points per message at most
METRICS_EVERY_SECONDS = 1.0  # and a batch at least this often while points come


def _now_ms() -> int:
    return int(time.time() * 1000)


def _valid_key(key: str) -> bool:
    try:
        tracking.check_key(key, key)
    except tracking.TrackingError:
        return False
    return True


class CurveRecorder:
    """A LightGBM callback recording each boosting iteration's evaluation results as metric
    history points ``<data>.<metric>`` (``train.l2``, ``valid.binary_logloss``,
    ``train.treated.binary_logloss``) at step = the iteration (0-based), sent through
    `emit` in batches. It only reads what LightGBM evaluated: the model is not changed."""

    def __init__(self, emit):
        self.emit = emit
        self.points: list[dict] = []
        self.keys: set[str] = set()
        self.count = 0
        self.last = time.monotonic()

    def __call__(self, env) -> None:
        now = _now_ms()
        for item in env.evaluation_result_list:
            key = f"{item[0]}.{item[1]}"
            if key not in self.keys and not _valid_key(key):
                continue
            self.keys.add(key)
            self.points.append(
                {"key": key, "value": float(item[2]), "step": int(env.iteration), "timestamp": now}
            )
        if len(self.points) >= METRICS_BATCH or time.monotonic() - self.last >= METRICS_EVERY_SECONDS:
            self.flush()

    def flush(self) -> None:
        if self.points:
            self.count += len(self.points)
            self.emit("metrics", self.points)
            self.points = []
        self.last = time.monotonic()


def curve_kwargs(family, recorder: CurveRecorder, valid) -> dict:
    """What a family's ``fit`` takes to record its training curves: ``callbacks`` (the
    LightGBM families) and ``valid`` (families without validation data of their own: the
    holdout, evaluated per iteration, never trained on). Nothing for other families."""
    accepted = inspect.signature(family.fit).parameters
    kwargs: dict = {}
    if "callbacks" in accepted:
        kwargs["callbacks"] = [recorder]
        if "valid" in accepted:
            kwargs["valid"] = valid
    return kwargs


def fold_points(number: int, metrics: dict) -> list[dict]:
    """A backtest fold's metrics as history points ``fold.<metric>`` at step = the fold's
    number (1, 2, …, as the run page numbers them). Non-numeric values and names that are
    not tracking keys (``hit_rate@k``: MLflow's key alphabet has no ``@``) are left out."""
    now = _now_ms()
    points = []
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, numbers.Real):  # numpy's too
            continue
        key = f"fold.{name}"
        if _valid_key(key):
            points.append({"key": key, "value": float(value), "step": number, "timestamp": now})
    return points
