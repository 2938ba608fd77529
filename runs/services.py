"""Writes on runs and datasets: start, report (external runners), cancel, retry, logs, upload."""

from __future__ import annotations

import hashlib
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Max
from django.utils import timezone

from mlworkspace.errors import Conflict, InvalidInput, TooLarge, field_error
from mlworkspace.ids import new_id
from models_registry.models import MLModel
from models_registry.services import model_attach_training
from recipes.models import Recipe, RecipeVersion

from . import data as run_data
from .metrics import metric_checks
from .models import (
    EXTERNAL_TRANSITIONS,
    TERMINAL_STATUSES,
    Dataset,
    Executor,
    Run,
    RunLog,
    RunStatus,
    RunType,
)

MAX_SYNTHETIC_ROWS = 5_000_000


def _clean_params(params: dict) -> dict:
    synthetic = params.get("synthetic")
    if synthetic is not None:
        if not isinstance(synthetic, dict):
            raise field_error("params/synthetic", 'must be an object like {"rows": 10000, "seed": 1}')
        for key in ("rows", "seed"):
            value = synthetic.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
                raise field_error(f"params/synthetic/{key}", "must be a non-negative integer")
        rows = synthetic.get("rows")
        if rows is not None and not 50 <= rows <= MAX_SYNTHETIC_ROWS:
            raise field_error("params/synthetic/rows", f"must be between 50 and {MAX_SYNTHETIC_ROWS}")
    return params


@transaction.atomic
def run_start(
    *,
    user,
    recipe: Recipe,
    recipe_version: RecipeVersion | None = None,
    run_type: str = RunType.TRAIN,
    model: MLModel | None = None,
    dataset: Dataset | None = None,
    executor: str = Executor.WORKSPACE,
    params: dict | None = None,
    retry_of: Run | None = None,
) -> Run:
    """Create a queued run; workspace runs are enqueued for a worker when the transaction commits."""
    version = recipe_version or recipe.current_version
    if version is None or version.recipe_id != recipe.id:
        raise field_error("recipe_version_id", f"is not a version of recipe '{recipe.id}'")
    if model is not None:
        if model.recipe_id != recipe.id:
            raise field_error("model_id", f"model '{model.id}' belongs to recipe '{model.recipe_id}'")
        if run_type == RunType.TRAIN and model.recipe_version_id != version.id:
            raise field_error(
                "recipe_version_id",
                f"model '{model.id}' is registered on version {model.recipe_version.version}",
            )
    if run_type == RunType.EVAL and executor == Executor.WORKSPACE:
        if model is None:
            raise field_error("model_id", "an eval run evaluates a registered model: give its model_id")
        if not model.artifacts_json.get("model"):
            raise field_error("model_id", f"model '{model.id}' has no trained artifact yet")
    params = _clean_params(dict(params or {}))
    if dataset is not None and executor == Executor.WORKSPACE:
        errors = run_data.requirement_errors(dataset.columns_json, version.manifest, recipe.model_family)
        if errors:
            raise InvalidInput(
                f"Dataset '{dataset.id}' does not satisfy the recipe's requirements.",
                [{"path": "/dataset_id", "message": e} for e in errors],
            )
    run = Run.objects.create(
        id=new_id("run"),
        recipe=recipe,
        recipe_version=version,
        model=model,
        run_type=run_type,
        executor=executor,
        dataset=dataset,
        params_json=params,
        retry_of=retry_of,
        created_by=user,
    )
    if executor == Executor.WORKSPACE:
        from .tasks import enqueue_run

        transaction.on_commit(lambda: enqueue_run(run.id))
    return run


def run_retry(*, run: Run, user) -> Run:
    if not run.is_terminal:
        raise Conflict(f"Run '{run.id}' is {run.status}; only a finished run can be retried.")
    return run_start(
        user=user,
        recipe=run.recipe,
        recipe_version=run.recipe_version,
        run_type=run.run_type,
        model=run.model,
        dataset=run.dataset,
        executor=run.executor,
        params=run.params_json,
        retry_of=run,
    )


def run_cancel(*, run: Run, user) -> Run:
    """A queued run never starts; a running one is stopped by its worker within a heartbeat."""
    now = timezone.now()
    # Conditional updates: the worker's claim (queued -> running) and this cancel race safely.
    if Run.objects.filter(pk=run.pk, status=RunStatus.QUEUED).update(
        status=RunStatus.CANCELLED, cancel_requested=True, finished_at=now, updated_at=now
    ):
        run_log(run=run, message=f"Cancelled by {user.get_username()} before it started.", level="warning")
    elif run.executor == Executor.EXTERNAL and Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        status=RunStatus.CANCELLED, cancel_requested=True, finished_at=now, updated_at=now
    ):
        run_log(run=run, message=f"Cancelled by {user.get_username()}.", level="warning")
    elif Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING).update(
        cancel_requested=True, updated_at=now
    ):
        run_log(run=run, message=f"Cancellation requested by {user.get_username()}.", level="warning")
    else:
        run.refresh_from_db()
        raise Conflict(
            f"Run '{run.id}' is already {run.status}.", [{"path": "/status", "message": run.status}]
        )
    run.refresh_from_db()
    return run


def run_log(*, run: Run, message: str, level: str = "info", ts=None) -> None:
    run_logs_append(run=run, lines=[{"message": message, "level": level, "ts": ts}])


@transaction.atomic
def run_logs_append(*, run: Run, lines: list[dict]) -> None:
    """Append log lines with consecutive seq numbers (the run row is locked meanwhile)."""
    if not lines:
        return
    Run.objects.select_for_update().filter(pk=run.pk).first()
    last = RunLog.objects.filter(run_id=run.pk).aggregate(m=Max("seq"))["m"] or 0
    now = timezone.now()
    RunLog.objects.bulk_create(
        [
            RunLog(
                run_id=run.pk,
                seq=last + i + 1,
                ts=line.get("ts") or now,
                level=line.get("level", "info"),
                message=str(line["message"])[:10_000],
            )
            for i, line in enumerate(lines)
        ]
    )


@transaction.atomic
def run_report(
    *,
    run: Run,
    user,
    status: str | None = None,
    metrics_json=None,
    artifacts_json=None,
    logs=None,
    error: str | None = None,
) -> Run:
    """Results reported by an external runner (PUT /runs/{id})."""
    run = Run.objects.select_for_update().select_related("recipe", "recipe_version").get(pk=run.pk)
    if run.executor != Executor.EXTERNAL:
        raise Conflict(
            f"Run '{run.id}' is executed by the workspace's workers; its results cannot be reported. "
            "Use POST /runs/{id}/cancel to stop it.",
            [{"path": "/executor", "message": "not an external run"}],
        )
    now = timezone.now()
    if status is not None and status != run.status:
        if status not in EXTERNAL_TRANSITIONS.get(run.status, set()):
            raise Conflict(
                f"Illegal status change {run.status} → {status}.",
                [{"path": "/status", "message": f"{run.status} cannot become {status}"}],
            )
        run.status = status
        if status == RunStatus.RUNNING or (status in TERMINAL_STATUSES and run.started_at is None):
            run.started_at = now
        if status in TERMINAL_STATUSES:
            run.finished_at = now
    elif run.is_terminal and (metrics_json is not None or artifacts_json is not None):
        raise Conflict(f"Run '{run.id}' is {run.status}; its results are final.")
    if metrics_json is not None:
        run.metrics_json = metrics_json
        run.metric_checks_json = metric_checks(
            run.recipe_version.manifest, run.recipe.model_family, metrics_json
        )
    if artifacts_json is not None:
        run.artifacts_json = artifacts_json
    if error is not None:
        run.error = error
    run.save()
    if logs:
        run_logs_append(run=run, lines=logs)
    if run.model_id and run.run_type == RunType.TRAIN and run.status == RunStatus.SUCCEEDED:
        model_attach_training(run=run)
    return run


# --- datasets ----------------------------------------------------------------------------


@transaction.atomic
def dataset_create(
    *, user, upload: UploadedFile, name: str | None = None, recipe: Recipe | None = None
) -> Dataset:
    """Store an uploaded CSV/Parquet file, read its columns and check it against `recipe`."""
    if upload.size > settings.DATASET_MAX_BYTES:
        raise TooLarge(
            f"The file is {upload.size} bytes; the limit is {settings.DATASET_MAX_BYTES}.",
            [{"path": "/file", "message": "too large"}],
        )
    suffix = Path(upload.name or "").suffix.lower()
    fmt = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}.get(suffix)
    if fmt is None:
        raise field_error("file", f"must be a .csv or .parquet file, got '{upload.name}'")
    dataset_id = new_id("ds")
    directory = Path(settings.MEDIA_ROOT) / "datasets"
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{dataset_id}.{fmt}"
    digest = hashlib.sha256()
    with open(path, "wb") as out:
        for chunk in upload.chunks():
            digest.update(chunk)
            out.write(chunk)
    try:
        frame = run_data.read_table(path, fmt)
    except ValueError as exc:
        path.unlink(missing_ok=True)
        raise field_error("file", str(exc)) from None
    columns = run_data.describe_columns(frame)
    validation = {"recipe_id": None, "errors": [], "valid": None}
    if recipe is not None:
        manifest = recipe.current_version.manifest if recipe.current_version else {}
        errors = run_data.requirement_errors(columns, manifest, recipe.model_family)
        errors += run_data.quality_errors(frame, manifest)
        validation = {"recipe_id": recipe.id, "errors": errors, "valid": not errors}
    try:
        return Dataset.objects.create(
            id=dataset_id,
            name=(name or Path(upload.name).stem)[:200],
            file=f"datasets/{path.name}",
            format=fmt,
            size_bytes=path.stat().st_size,
            sha256=digest.hexdigest(),
            row_count=len(frame),
            columns_json=columns,
            recipe=recipe,
            validation_json=validation,
            created_by=user,
        )
    except Exception:
        path.unlink(missing_ok=True)  # no orphan file when the row cannot be written
        raise
