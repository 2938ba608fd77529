"""Runs in and out of MLflow's file layout: ``run_import`` makes an external run of a recipe
from an MLflow run (params, tags, every metric's full history, artifacts, its status),
``run_export`` writes a workspace run as an ``mlruns`` folder in a zip (mlflow_api.mlruns).

An imported run carries the tag ``mlflow.importedRunId`` (the source run's id): importing the
same runs again skips them, so an import can be re-run after a failure or to pick up new runs.
"""

from __future__ import annotations

import zipfile
from collections.abc import Iterable
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO

from django.conf import settings
from django.db import transaction

from recipes.models import Recipe
from recipes.selectors import latest_approved
from runs import artifacts
from runs.models import Executor, MetricPoint, Run, RunParam, RunStatus, RunTag
from runs.services import run_move_in_time, run_report, run_start, tracking_log

from . import mlruns, protocol, selectors
from .protocol import invalid
from .services import record_files, store_file


def _moment(ms: int | None) -> datetime | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC) if isinstance(ms, int) and ms > 0 else None


def run_import(
    *, user, recipe: Recipe, source: mlruns.SourceRun, artifacts: Iterable[tuple[str, Path]] = ()
) -> Run | None:
    """The run `source` as an external run of `recipe` (on its latest approved version), or
    None when it was imported into the recipe before. All or nothing: a key or value the
    workspace refuses is a 400 naming it and nothing of the run is kept (but its copied files,
    which the housekeeping removes with the run's empty folder)."""
    if selectors.run_imported_as(recipe, source.run_id) is not None:
        return None
    version = latest_approved(recipe.pk)
    if version is None:
        raise invalid("recipe", f"recipe '{recipe.pk}' has no approved version to import runs into")
    started = _moment(source.start_time)
    with transaction.atomic():
        tags = dict(source.tags)
        parent = selectors.run_imported_as(recipe, tags.get(protocol.PARENT_RUN_TAG, ""))
        run = run_start(
            user=user,
            recipe=recipe,
            recipe_version=version,
            executor=Executor.EXTERNAL,
            params={},
            parent=parent,
            at=started,
        )
        tags[protocol.IMPORTED_TAG] = source.run_id
        tags.setdefault(protocol.RUN_NAME_TAG, source.run_name or run.name)
        if source.user_id:
            tags.setdefault(protocol.USER_TAG, source.user_id)
        if parent is not None:
            tags[protocol.PARENT_RUN_TAG] = parent.pk
        points = [
            {"key": key, "value": value, "timestamp": ts, "step": step}
            for key, history in source.metrics.items()
            for ts, value, step in history
        ]
        tracking_log(
            run=run,
            metrics=points,
            params=[{"key": k, "value": v} for k, v in source.params.items()],
            tags=[{"key": k, "value": v} for k, v in tags.items()],
        )
        entries = {}
        for relative, path in artifacts:
            with open(path, "rb") as stream:
                entries[relative] = store_file(run.pk, relative, stream, settings.DATASET_MAX_BYTES)
        if entries:
            record_files(user=user, run=run, entries=entries)
        status = protocol.WORKSPACE_STATUS.get(source.status, RunStatus.SUCCEEDED)
        if status != RunStatus.QUEUED:
            run = run_report(run=run, user=user, status=status)
        if run.is_terminal and started is not None:
            run = run_move_in_time(run=run, at=started)
    return run


def source_run_of(run: Run) -> mlruns.SourceRun:
    """A workspace run as MLflow describes it: its tracked params, tags and metric histories."""
    tags = dict(RunTag.objects.filter(run=run).values_list("key", "value"))
    metrics: dict[str, list[tuple[int, float, int]]] = {}
    history = MetricPoint.objects.filter(run=run).order_by("key", "step", "timestamp", "id")
    for key, value, is_nan, ts, step in history.values_list("key", "value", "is_nan", "timestamp", "step"):
        metrics.setdefault(key, []).append((ts, float("nan") if is_nan or value is None else value, step))
    ms = protocol.ms_of
    return mlruns.SourceRun(
        run_id=run.pk,
        experiment_id=run.recipe_id,
        run_name=tags.get(protocol.RUN_NAME_TAG) or run.name,
        status=protocol.RUN_STATUS[run.status],
        start_time=ms(run.started_at or run.created_at),
        end_time=ms(run.finished_at),
        user_id=tags.get(protocol.USER_TAG) or (run.created_by.get_username() if run.created_by_id else ""),
        params=dict(RunParam.objects.filter(run=run).values_list("key", "value")),
        tags=tags,
        metrics=metrics,
    )


def run_export(*, run: Run, out: BinaryIO) -> None:
    """Write the run as ``mlruns/<recipe id>/<run id>/…`` (with its experiment's meta.yaml and
    every recorded artifact, each checked against its sha256 first) into the zip `out`."""
    source = source_run_of(run)
    recipe = run.recipe
    base = f"mlruns/{recipe.pk}"
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as zipped:
        zipped.writestr(
            f"{base}/meta.yaml",
            mlruns.experiment_meta(
                recipe.pk, recipe.pk, protocol.ms_of(recipe.created_at), protocol.ms_of(recipe.updated_at)
            ),
        )
        for name, content in mlruns.run_entries(source):
            zipped.writestr(f"{base}/{run.pk}/{name}", content)
        for name in sorted((run.artifacts_json or {}).get("files") or {}):
            with artifacts.local_copy(run.pk, run.artifacts_json, name) as path:
                zipped.write(path, f"{base}/{run.pk}/artifacts/{name}")
