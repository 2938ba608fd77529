"""The rules of tracked params, metrics and tags (issue #15): what a key may be, how a value is
stored, what a workspace run's params are. Plain Python, no Django import: the services
(runs.services.tracking), the MLflow-compatible API and the migration that indexed the
runs of before all use it.

The limits and the key alphabet are MLflow's, so a script that logs to MLflow logs here
unchanged, and what is refused here is what MLflow refuses.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

KEY_LENGTH = 250
PARAM_VALUE_LENGTH = 6000
TAG_VALUE_LENGTH = 8000
# Letters, digits, underscores, dashes, periods, spaces, colons and slashes (MLflow's names),
# and "@" (the workspace's own ranking metrics: precision@k, uplift@k).
_KEY = re.compile(r"[\w.\- :/@]+")
# Batch limits of MLflow's log-batch (per request).
MAX_BATCH_METRICS = 1000
MAX_BATCH_PARAMS = 100
MAX_BATCH_TAGS = 100


class TrackingError(ValueError):
    """A key or value the tracking store refuses; `path` names the offending field."""

    def __init__(self, path: str, message: str):
        self.path = path
        self.message = message
        super().__init__(f"{path}: {message}")


@dataclass(frozen=True)
class MetricValue:
    key: str
    value: float | None  # None when NaN (SQLite stores no NaN): is_nan says so
    is_nan: bool
    timestamp: int  # milliseconds since the epoch
    step: int


def check_key(key: Any, path: str) -> str:
    """A valid param/metric/tag key, or TrackingError naming `path`."""
    if not isinstance(key, str) or not key:
        raise TrackingError(path, "must be a non-empty string")
    if len(key) > KEY_LENGTH:
        raise TrackingError(path, f"must be at most {KEY_LENGTH} characters")
    if not _KEY.fullmatch(key) or ".." in key.split("/") or key.startswith("/"):
        raise TrackingError(
            path,
            "may contain only letters, digits, underscores, dashes, periods, spaces, colons, slashes and @",
        )
    return key


def param_text(value: Any, path: str) -> str:
    """A param's stored text: strings as they are, other scalars as MLflow's client writes
    them (``str(value)``); at most PARAM_VALUE_LENGTH characters."""
    if isinstance(value, (dict, list, tuple, set)):
        raise TrackingError(path, "must be a string, number or boolean")
    text = value if isinstance(value, str) else str(value)
    if len(text) > PARAM_VALUE_LENGTH:
        raise TrackingError(path, f"must be at most {PARAM_VALUE_LENGTH} characters")
    return text


def tag_text(value: Any, path: str) -> str:
    if not isinstance(value, str):
        raise TrackingError(path, "must be a string")
    if len(value) > TAG_VALUE_LENGTH:
        raise TrackingError(path, f"must be at most {TAG_VALUE_LENGTH} characters")
    return value


def as_number(text: str) -> float | None:
    """The number a param's text is ("6", "0.05", "1e-3"), for numeric comparison; None if
    it is not one (or not finite)."""
    try:
        number = float(text)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def metric_value(key: Any, value: Any, timestamp: Any, step: Any, path: str) -> MetricValue:
    """A checked metric point. Values are numbers (NaN and ±inf allowed, as in MLflow);
    `timestamp` is milliseconds since the epoch, `step` an integer (default 0)."""
    key = check_key(key, f"{path}/key")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TrackingError(f"{path}/value", "must be a number")
    if isinstance(timestamp, bool) or not isinstance(timestamp, int):
        raise TrackingError(f"{path}/timestamp", "must be an integer (milliseconds since the epoch)")
    if step is None:
        step = 0
    if isinstance(step, bool) or not isinstance(step, int):
        raise TrackingError(f"{path}/step", "must be an integer")
    value = float(value)
    nan = math.isnan(value)
    return MetricValue(key, None if nan else value, nan, timestamp, step)


def newer(a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether a point at (step, timestamp) `a` replaces the latest value at `b`: a higher
    step wins, then a later timestamp (MLflow's latest-metric rule)."""
    return a > b


def flatten(mapping: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{"a": {"b": 1}, "c": [1, 2]} -> {"a.b": 1, "c": "[1, 2]"}: nested objects become
    dotted keys; lists stay one value."""
    out: dict[str, Any] = {}
    for name, value in mapping.items():
        key = f"{prefix}{name}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{key}."))
        elif value is not None:
            out[key] = value
    return out


def _train_config(manifest: Mapping[str, Any]) -> Mapping[str, Any]:
    stages = ((manifest or {}).get("pipeline") or {}).get("stages") or []
    for stage in stages:
        if isinstance(stage, Mapping) and stage.get("type") == "training":
            config = stage.get("config")
            return config if isinstance(config, Mapping) else {}
    return {}


def workspace_params(run_params: Mapping[str, Any], manifest: Mapping[str, Any]) -> dict[str, str]:
    """The params a run is searchable by: its train stage's hyperparameters under their own
    names (``num_leaves``, ``learning_rate``: what an MLflow user logs), the rest of the train
    stage's config and the run's own params as dotted keys (``algorithm``, ``synthetic.rows``);
    an external run's caller passes an empty manifest, so only its own params count. Keys that
    are not valid tracking keys are left out."""
    config = dict(_train_config(manifest))
    hyper = config.pop("hyperparameters", None)
    values: dict[str, Any] = {}
    values.update(flatten(run_params or {}))
    values.update(flatten(config))
    if isinstance(hyper, Mapping):
        values.update(flatten(hyper))
    out = {}
    for key, value in values.items():
        try:
            check_key(key, key)
            text = param_text(json.dumps(value) if isinstance(value, (list, tuple)) else value, key)
        except TrackingError:
            continue
        out[key] = text
    return out


def numeric_metrics(metrics: Mapping[str, Any]) -> Iterable[tuple[str, float]]:
    """The (key, value) pairs of a run's metrics_json that are numbers with valid keys."""
    for key, value in (metrics or {}).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        try:
            check_key(key, key)
        except TrackingError:
            continue
        yield key, float(value)
