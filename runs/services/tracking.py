"""Writes of a run's tracked params, metrics (latest value and history) and tags (issue #15).

The one place these rows are written: the pipeline's training curves, a run's start (its
params) and end (its final metrics), external runners and the MLflow-compatible API all come
through ``tracking_log``. The rules of keys and values are ``runs.tracking`` (pure).

Concurrency: each call locks its run's row, so two threads logging to one run serialise and
the latest value of a metric is decided by (step, timestamp) whatever the order of arrival;
history points are only ever inserted, so nothing is lost.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from django.db import transaction

from mlworkspace.errors import Conflict, InvalidInput

from .. import tracking
from ..models import Executor, MetricPoint, Run, RunMetric, RunParam, RunTag

# History points are inserted in batches of this many rows.
BATCH_ROWS = 2000


def now_ms() -> int:
    return int(time.time() * 1000)


def _invalid(error: tracking.TrackingError) -> InvalidInput:
    return InvalidInput(f"{error.path}: {error.message}", [{"path": error.path, "message": error.message}])


def _checked(
    metrics: Iterable[Mapping[str, Any]],
    params: Iterable[Mapping[str, Any]],
    tags: Iterable[Mapping[str, Any]],
) -> tuple[list[tracking.MetricValue], dict[str, str], dict[str, str]]:
    """Every item checked before anything is written: a bad one is a 400 naming its path
    (``/metrics/3/value``) and nothing of the call is stored."""
    try:
        points = [
            tracking.metric_value(
                m.get("key"), m.get("value"), m.get("timestamp", now_ms()), m.get("step", 0), f"/metrics/{i}"
            )
            for i, m in enumerate(metrics)
        ]
        param_values: dict[str, str] = {}
        for i, p in enumerate(params):
            key = tracking.check_key(p.get("key"), f"/params/{i}/key")
            text = tracking.param_text(p.get("value"), f"/params/{i}/value")
            if param_values.get(key, text) != text:
                raise tracking.TrackingError(
                    f"/params/{i}/value", f"param '{key}' is given twice with different values"
                )
            param_values[key] = text
        tag_values = {
            tracking.check_key(t.get("key"), f"/tags/{i}/key"): tracking.tag_text(
                t.get("value"), f"/tags/{i}/value"
            )
            for i, t in enumerate(tags)
        }
    except tracking.TrackingError as error:
        raise _invalid(error) from None
    except AttributeError:
        raise InvalidInput("Each metric, param and tag must be an object.") from None
    return points, param_values, tag_values


@transaction.atomic
def tracking_log(
    *,
    run: Run,
    metrics: Iterable[Mapping[str, Any]] = (),
    params: Iterable[Mapping[str, Any]] = (),
    tags: Iterable[Mapping[str, Any]] = (),
    final: bool = False,
) -> None:
    """Log metric points (``{"key", "value", "timestamp"?, "step"?}``), params (``{"key",
    "value"}``) and tags (``{"key", "value"}``) to `run`, all or nothing.

    A finished run's record is final: logging to it is a 409, except for the run's own end
    (`final`: the workspace writing the final metrics of a run it just finished). A param
    already logged with another value is a 400 (params are immutable, as in MLflow); the same
    value again is accepted. Tags are replaced."""
    points, param_values, tag_values = _checked(metrics, params, tags)
    locked = Run.objects.select_for_update().only("id", "status").get(pk=run.pk)
    if locked.is_terminal and not final:
        raise Conflict(
            f"Run '{run.id}' is {locked.status}; its params, metrics and tags are final.",
            [{"path": "/run_id", "message": f"the run is {locked.status}"}],
        )
    if param_values:
        _log_params(run, param_values)
    if tag_values:
        _log_tags(run, tag_values)
    if points:
        _log_metrics(run, points)


def _log_params(run: Run, values: dict[str, str]) -> None:
    existing = dict(RunParam.objects.filter(run=run, key__in=list(values)).values_list("key", "value"))
    for key, text in values.items():
        if key in existing and existing[key] != text:
            raise InvalidInput(
                f"Param '{key}' of run '{run.id}' is already '{existing[key][:100]}'; params cannot change.",
                [{"path": f"/params/{key}", "message": "already logged with another value"}],
            )
    RunParam.objects.bulk_create(
        [
            RunParam(run=run, key=key, value=text, value_num=tracking.as_number(text))
            for key, text in values.items()
            if key not in existing
        ]
    )


def _log_tags(run: Run, values: dict[str, str]) -> None:
    RunTag.objects.bulk_create(
        [RunTag(run=run, key=key, value=text) for key, text in values.items()],
        update_conflicts=True,
        unique_fields=["run", "key"],
        update_fields=["value"],
    )


def _log_metrics(run: Run, points: list[tracking.MetricValue]) -> None:
    # A point logged again (same key, value, step and timestamp: a client's retry, or
    # MLflow's log_model re-logging the run's metrics) is stored once, as MLflow stores it.
    seen = set(
        MetricPoint.objects.filter(
            run=run,
            key__in={p.key for p in points},
            timestamp__in={p.timestamp for p in points},
        ).values_list("key", "value", "is_nan", "step", "timestamp")
    )
    fresh = []
    for p in points:
        identity = (p.key, p.value, p.is_nan, p.step, p.timestamp)
        if identity not in seen:
            seen.add(identity)
            fresh.append(p)
    points = fresh
    MetricPoint.objects.bulk_create(
        [
            MetricPoint(
                run=run, key=p.key, value=p.value, is_nan=p.is_nan, step=p.step, timestamp=p.timestamp
            )
            for p in points
        ],
        batch_size=BATCH_ROWS,
    )
    latest: dict[str, tracking.MetricValue] = {}
    for p in points:  # the newest point of each key in this call
        if p.key not in latest or tracking.newer(
            (p.step, p.timestamp), (latest[p.key].step, latest[p.key].timestamp)
        ):
            latest[p.key] = p
    current = {m.key: m for m in RunMetric.objects.filter(run=run, key__in=list(latest))}
    new_keys = []
    for key, p in latest.items():
        row = current.get(key)
        if row is None:
            new_keys.append(
                RunMetric(
                    run=run, key=key, value=p.value, is_nan=p.is_nan, step=p.step, timestamp=p.timestamp
                )
            )
        elif tracking.newer((p.step, p.timestamp), (row.step, row.timestamp)):
            RunMetric.objects.filter(pk=row.pk).update(
                value=p.value, is_nan=p.is_nan, step=p.step, timestamp=p.timestamp
            )
    # The run's row is locked (tracking_log): no other call adds these keys meanwhile.
    RunMetric.objects.bulk_create(new_keys)


def tracking_index_params(*, run: Run) -> None:
    """A run's params, searchable from its start (runs.tracking.workspace_params): a workspace
    run's train config, hyperparameters and own params; an external run's own params only
    (what its runner gave at creation, flattened the same way). The version's
    hyperparameters are not an external run's: params cannot change, and indexing them
    first would refuse a script's own `num_leaves`."""
    manifest = (run.recipe_version.manifest or {}) if run.executor == Executor.WORKSPACE else {}
    values = tracking.workspace_params(run.params_json or {}, manifest)
    if values:  # nothing to index: no lock, no query
        tracking_log(run=run, params=[{"key": k, "value": v} for k, v in values.items()], final=True)


def tracking_index_metrics(*, run: Run, metrics: Mapping[str, Any], at_ms: int | None = None) -> None:
    """A run's reported metrics (its metrics_json), each the latest value of its key unless
    the run logged a later step of it itself. A metric whose latest value is already this one
    (a runner reporting what it logged step by step) adds no point to its history."""
    at_ms = at_ms or now_ms()
    latest = dict(RunMetric.objects.filter(run=run).values_list("key", "value"))
    points = [
        {"key": k, "value": v, "timestamp": at_ms, "step": 0}
        for k, v in tracking.numeric_metrics(metrics)
        if not (k in latest and latest[k] == v)
    ]
    if points:
        tracking_log(run=run, metrics=points, final=True)
