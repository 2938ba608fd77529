"""Writes on runs and datasets: start, finish (the executor), report (external runners), cancel,
retry, upload. Log lines are written by runs.logs."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import F, Max, ProtectedError
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from audit import services as audit
from mlworkspace.errors import Conflict, InvalidInput, TooLarge, field_error
from mlworkspace.ids import new_id
from models_registry.models import MLModel
from models_registry.services import model_attach_training
from recipes.models import Recipe, RecipeVersion

from . import artifacts, selectors
from . import data as run_data
from .families import get_family, worlds
from .logs import run_log, run_logs_append
from .metrics import check_breaches, check_outcome, metric_checks
from .models import (
    EXTERNAL_TRANSITIONS,
    MODEL_ARTIFACT_RUN_TYPES,
    TERMINAL_STATUSES,
    Dataset,
    DatasetStatus,
    Executor,
    Run,
    RunLog,
    RunStatus,
    RunType,
)
from .tasks import enqueue_dataset_profile, enqueue_run, fail_lost_task_rows, profile_dataset_task

MAX_SYNTHETIC_ROWS = 5_000_000


def synthetic_resolve(
    *, family_name: str, synthetic: dict | None, after: dict | None = None, path: str = "synthetic"
) -> dict:
    """The resolved synthetic batch of a request (world + window, see runs.families.worlds):
    errors are 400s naming the field (``<path>/concept``)."""
    if synthetic is not None and not isinstance(synthetic, dict):
        raise field_error(path, 'must be an object like {"rows": 10000, "seed": 1}')
    rows = (synthetic or {}).get("rows")
    if rows is not None and not isinstance(rows, bool) and isinstance(rows, int):
        if not 50 <= rows <= MAX_SYNTHETIC_ROWS:
            raise field_error(f"{path}/rows", f"must be between 50 and {MAX_SYNTHETIC_ROWS}")
    try:
        resolved = worlds.resolve(get_family(family_name), synthetic or {}, after=after)
    except worlds.WorldError as exc:
        raise field_error(f"{path}/{exc.field}", exc.message) from None
    if resolved["rows"] > MAX_SYNTHETIC_ROWS:
        raise field_error(f"{path}/periods", f"the window would hold more than {MAX_SYNTHETIC_ROWS} rows")
    return resolved


def _clean_params(
    params: dict, *, recipe: Recipe, run_type: str, model: MLModel | None, synthetic: bool
) -> dict:
    """Validate params; a run on synthetic data records its resolved batch (world + window)
    in ``params["synthetic"]`` at creation: an eval or score run's batch defaults to the
    window after its model's training data, in the same world."""
    if "synthetic" in params and not isinstance(params["synthetic"], dict):
        raise field_error("params/synthetic", 'must be an object like {"rows": 10000, "seed": 1}')
    if isinstance(params.get("synthetic"), dict) and params["synthetic"].get("shift"):
        raise field_error(
            "params/synthetic/shift",
            "covariate drift is injected in monitoring checks (POST /models/{id}/monitoring/check), not in runs",
        )
    if synthetic or params.get("synthetic"):
        after = selectors.model_training_batch(model) if run_type in MODEL_ARTIFACT_RUN_TYPES else None
        resolved = synthetic_resolve(
            family_name=recipe.model_family,
            synthetic=params.get("synthetic"),
            after=after,
            path="params/synthetic",
        )
        if synthetic:  # an external runner's or a dataset's data are not ours to describe
            params["synthetic"] = resolved
    return params


def _next_run_number(recipe: Recipe) -> int:
    """The recipe's next run number (the "#n" of a run's name). Two runs started at once
    must not get the same number: the recipe row is locked until the transaction commits
    (PostgreSQL row lock; SQLite's immediate transactions serialise writers anyway), and the
    unique (recipe, number) constraint is the backstop."""
    Recipe.objects.select_for_update().filter(pk=recipe.pk).values_list("pk", flat=True).first()
    return (Run.objects.filter(recipe_id=recipe.pk).aggregate(m=Max("number"))["m"] or 0) + 1


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
    at=None,
) -> Run:
    """Create a queued run; workspace runs are enqueued for a worker when the transaction commits.
    `at` (a datetime) dates its creation for seeded history (the demo); default now."""
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
    if run_type in MODEL_ARTIFACT_RUN_TYPES and executor == Executor.WORKSPACE:
        if model is None:
            what = "an eval run evaluates" if run_type == RunType.EVAL else "a score run scores with"
            raise field_error("model_id", f"{what} a registered model: give its model_id")
        if not model.artifacts_json.get("model"):
            raise field_error("model_id", f"model '{model.id}' has no trained artifact yet")
    params = _clean_params(
        dict(params or {}),
        recipe=recipe,
        run_type=run_type,
        model=model,
        synthetic=dataset is None and executor == Executor.WORKSPACE,
    )
    if dataset is not None:
        dataset_require_ready(dataset)
    if dataset is not None and executor == Executor.WORKSPACE:
        # A score run's batch has no labels yet (they arrive later).
        errors = run_data.requirement_errors(
            dataset.columns_json,
            version.manifest,
            recipe.model_family,
            outcomes=run_type != RunType.SCORE,
        )
        if errors:
            raise InvalidInput(
                f"Dataset '{dataset.id}' does not satisfy the recipe's requirements.",
                [{"path": "/dataset_id", "message": e} for e in errors],
            )
    run = Run.objects.create(
        id=new_id("run"),
        recipe=recipe,
        number=_next_run_number(recipe),
        recipe_version=version,
        model=model,
        run_type=run_type,
        executor=executor,
        dataset=dataset,
        params_json=params,
        retry_of=retry_of,
        created_by=user,
    )
    if at is not None:  # created_at is auto_now_add: only an update sets it
        Run.objects.filter(pk=run.pk).update(created_at=at, updated_at=at)
        run.created_at = run.updated_at = at
    audit.record(user, "run.start", run, changes=audit.created(run), at=at)
    if executor == Executor.WORKSPACE:
        transaction.on_commit(lambda: enqueue_run(run.id))
    return run


@transaction.atomic
def run_move_in_time(*, run: Run, at) -> Run:
    """Seeded history (the demo) executes runs now: move a finished run's timeline so it was
    created at `at` and executed right after — started, finished, heartbeat, stage times and
    log lines shifted together, keeping every duration (and the wait in the queue, when it
    was a real one). Only for terminal runs (a live run's clock is its worker's)."""
    run = Run.objects.select_for_update().get(pk=run.pk)
    if not run.is_terminal:
        raise Conflict(f"Run '{run.id}' is {run.status}; only a finished run can be moved in time.")
    # The execution began at its start (or, never started, at its cancellation); created_at
    # may already be a seeded time, so the queue wait counts only when it looks real.
    anchor = run.started_at or run.finished_at or run.created_at
    wait = (run.started_at - run.created_at) if run.started_at else timedelta(0)
    if not timedelta(0) <= wait <= timedelta(hours=1):
        wait = timedelta(0)
    delta = at + wait - anchor
    run.created_at = at
    for name in ("started_at", "finished_at", "heartbeat_at"):
        if getattr(run, name) is not None:
            setattr(run, name, getattr(run, name) + delta)
    for stage in run.stages_json or []:
        for key in ("started_at", "finished_at"):
            if isinstance(stage.get(key), str):
                try:
                    stage[key] = (datetime.fromisoformat(stage[key]) + delta).isoformat()
                except ValueError:
                    pass
    fields = ["created_at", "started_at", "finished_at", "heartbeat_at", "stages_json"]
    Run.objects.filter(pk=run.pk).update(
        updated_at=run.finished_at or at, **{f: getattr(run, f) for f in fields}
    )
    RunLog.objects.filter(run=run).update(ts=F("ts") + delta)
    run.refresh_from_db()
    return run


@audit.as_action("run.retry")
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


@transaction.atomic
def run_cancel(*, run: Run, user) -> Run:
    """A queued run never starts; a running one is stopped by its worker within a heartbeat."""
    before = audit.snapshot(run)
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
    audit.record(user, "run.cancel", run, changes=audit.diff(before, run))
    return run


# --- the end of a run: its outcome, and its result attached to its model ---------------------


def run_deploys(run: Run) -> bool:
    """The one rule for attaching a run's result (artifact and metrics) to its model: a
    succeeded train run of a model, on a version whose pipeline has a deployment stage (the
    stage that deploys; eval and backtest runs skip it, a score run scores its batch there and
    attaches nothing). The same for runs the workspace
    executed (run_finish) and runs an external runner reported (run_report)."""
    if not (run.model_id and run.run_type == RunType.TRAIN and run.status == RunStatus.SUCCEEDED):
        return False
    stages = ((run.recipe_version.manifest or {}).get("pipeline") or {}).get("stages") or []
    return any(isinstance(stage, dict) and stage.get("type") == "deployment" for stage in stages)


def _attach_result(run: Run) -> bool:
    """Attach the run's artifact and metrics to its model if `run_deploys` says so."""
    if not run_deploys(run):
        return False
    model_attach_training(run=run)
    return True


def _outcome_fields(run: Run, metrics: dict) -> dict:
    """A run's reported metrics, each checked against its version's thresholds, and the outcome
    (the worst check)."""
    checks = metric_checks(run.recipe_version.manifest, run.recipe.model_family, metrics)
    return {"metrics_json": metrics, "metric_checks_json": checks, "outcome": check_outcome(checks)}


def close_stages(stages: list[dict], status: str, reason: str = "") -> list[dict]:
    """A finished run has no stage left running or pending: the running one failed (with the
    reason) or was cancelled, the pending ones did not run. Changes `stages` in place."""
    now = timezone.now().isoformat()
    for stage in stages:
        if not isinstance(stage, dict):
            continue
        if stage.get("status") == "running":
            stage["status"] = "failed" if status == RunStatus.FAILED else "cancelled"
            stage["finished_at"] = now
            if reason and status == RunStatus.FAILED:
                stage["detail"] = reason[:500]
        elif stage.get("status") == "pending" and status != RunStatus.SUCCEEDED:
            stage["status"] = "not run"
    return stages


def run_finish(
    *,
    run: Run,
    status: str,
    worker: str,
    stages: list[dict],
    log_lines: list[dict] | None = None,
    error: str = "",
    result: dict | None = None,
) -> bool:
    """The end of a run the workspace executed, written by the worker `worker` that ran it:
    its status, error, outcome (metrics, checks, plots, artifacts of `result`, the pipeline's
    result) and stages (closed: none left running or pending), its pending `log_lines`, its
    result attached to its model (`run_deploys`), and a last log line naming the status and
    any breached thresholds. Conditional on (status=running, worker=worker): a run the reaper
    has failed meanwhile is not resurrected. False when the run was no longer the worker's.
    `run` needs its recipe, version and model selected."""
    close_stages(stages, status, error)
    fields = {"status": status, "finished_at": timezone.now(), "error": error[:10_000], "current_stage": ""}
    if result is not None:
        fields.update(_outcome_fields(run, result["metrics"]))
        fields["plots_json"] = result.get("plots") or {}
        if result.get("folds"):
            fields["plots_json"] = {**fields["plots_json"], "folds": result["folds"]}
        fields["artifacts_json"] = artifacts.describe_files(run.id, result["artifacts"])
        if result.get("scoring"):  # a score run: its rows and columns (the files are above)
            fields["artifacts_json"]["scoring"] = result["scoring"]
    with transaction.atomic():
        run_logs_append(run=run, lines=log_lines or [])
        now = timezone.now()
        updated = Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, worker=worker).update(
            **fields, stages_json=stages, heartbeat_at=now, updated_at=now
        )
        if updated:
            for name, value in fields.items():
                setattr(run, name, value)
            if _attach_result(run):
                run_log(
                    run=run,
                    message=f"deployment: attached the artifact and metrics to model '{run.model.name}'",
                )
    if updated:
        run_log(run=run, message=_final_line(run, status, fields), level=_final_level(status, fields))
    return bool(updated)


def _final_line(run: Run, status: str, fields: dict) -> str:
    """The run's last log line: its name, status and, when metrics breached thresholds, which."""
    line = f"{run.name} {status}."
    if fields.get("outcome") in ("warning", "critical"):
        breaches = check_breaches(fields["metric_checks_json"])
        named = ", ".join(f"{b['metric']} {b['status']}" for b in breaches)
        line = f"{run.name} {status}, but its metrics breached thresholds: {named}."
    return line


def _final_level(status: str, fields: dict) -> str:
    if status == RunStatus.FAILED or fields.get("outcome") == "critical":
        return "error"
    return "warning" if fields.get("outcome") == "warning" else "info"


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
    before = audit.snapshot(run)
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
        for name, value in _outcome_fields(run, metrics_json).items():
            setattr(run, name, value)
    if artifacts_json is not None:
        run.artifacts_json = artifacts_json
    if error is not None:
        run.error = error
    run.save()
    if logs:
        run_logs_append(run=run, lines=logs)
    _attach_result(run)
    audit.record(user, "run.report", run, changes=audit.diff(before, run))
    return run


# --- datasets ----------------------------------------------------------------------------


@transaction.atomic
def dataset_create(
    *, user, upload: UploadedFile, name: str | None = None, recipe: Recipe | None = None, client=None
) -> Dataset:
    """Store an uploaded CSV/Parquet file, read its columns and check it against `recipe`."""
    if upload.size > settings.DATASET_MAX_BYTES:
        limit = settings.DATASET_MAX_BYTES
        raise TooLarge(
            f"The file is {upload.size} bytes; the limit is {limit}.",
            [{"path": "/file", "message": f"too large ({upload.size} bytes; the limit is {limit})"}],
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
    try:
        with open(path, "wb") as out:
            for chunk in upload.chunks():
                digest.update(chunk)
                out.write(chunk)
    except BaseException:  # a broken upload or a full disk: no partial file (a killed
        path.unlink(missing_ok=True)  # process's is swept by runs.housekeeping)
        raise
    try:
        # Rows and columns from the footer / first line, before anything is loaded.
        shape = _dataset_shape(path, fmt)
        size = path.stat().st_size
        inline = (
            size <= settings.DATASET_INLINE_PROFILE_BYTES
            and shape.rows <= settings.DATASET_INLINE_PROFILE_ROWS
        )
        # A small file is profiled now; a large one by a worker (dataset_profile), `processing`
        # until then (runs refuse it meanwhile).
        profile = (
            {**_dataset_profile_fields(path, fmt, recipe), "status": DatasetStatus.READY}
            if inline
            else {"row_count": shape.rows, "status": DatasetStatus.PROCESSING}
        )
    except ValueError as exc:
        path.unlink(missing_ok=True)
        raise field_error("file", str(exc)) from None
    except TooLarge:
        path.unlink(missing_ok=True)
        raise
    try:
        dataset = Dataset.objects.create(
            id=dataset_id,
            name=(name or Path(upload.name).stem)[:200],
            file=f"datasets/{path.name}",
            format=fmt,
            size_bytes=size,
            sha256=digest.hexdigest(),
            recipe=recipe,
            # A client recipe's data is its client's (callers check the role: recipes.access).
            client=client or (recipe.client if recipe is not None else None),
            created_by=user,
            **profile,
        )
    except Exception:
        path.unlink(missing_ok=True)  # no orphan file when the row cannot be written
        raise
    audit.record(user, "dataset.upload", dataset, changes=audit.created(dataset))
    if not inline:
        transaction.on_commit(lambda: enqueue_dataset_profile(dataset.id))
    return dataset


def _dataset_shape(path: Path, fmt: str) -> run_data.TableShape:
    """The file's rows and columns (metadata / a bounded read); 413 naming them over a limit."""
    shape = run_data.table_shape(path, fmt, header_max_bytes=settings.DATASET_HEADER_MAX_BYTES)
    problems = run_data.shape_problems(
        shape,
        max_rows=settings.DATASET_MAX_ROWS,
        max_columns=settings.DATASET_MAX_COLUMNS,
        max_cells=settings.DATASET_MAX_CELLS,
    )
    if problems:
        raise TooLarge(
            f"The file is too big to load: {'; '.join(problems)}.",
            [{"path": "/file", "message": f"too big: {problem}"} for problem in problems],
        )
    return shape


def _dataset_profile_fields(path: Path, fmt: str, recipe: Recipe | None) -> dict:
    """Load the file, describe its columns and check it against `recipe`'s newest version:
    the fields a ready dataset has. ValueError (readable) when the file is not a table."""
    frame = run_data.read_table(path, fmt)
    columns = run_data.describe_columns(frame)
    validation = {"recipe_id": None, "errors": [], "valid": None}
    if recipe is not None:
        manifest = recipe.current_version.manifest if recipe.current_version else {}
        errors = run_data.dataset_problems(frame, columns, manifest, recipe.model_family)
        validation = {"recipe_id": recipe.id, "errors": errors, "valid": not errors}
    return {"row_count": len(frame), "columns_json": columns, "validation_json": validation}


def dataset_profile(*, dataset_id: str) -> str:
    """Profile a `processing` dataset (the worker task of a large upload): it becomes `ready`
    with its columns and check, or `invalid` with the reason. Returns the new status."""
    dataset = (
        Dataset.objects.select_related("recipe")
        .filter(pk=dataset_id, status=DatasetStatus.PROCESSING)
        .first()
    )
    if dataset is None:
        return "not processing (deleted or already profiled)"
    try:
        fields = _dataset_profile_fields(Path(dataset.file.path), dataset.format, dataset.recipe)
    except ValueError as exc:
        fields = {"status": DatasetStatus.INVALID, "error": str(exc)}
    except MemoryError:
        fields = {"status": DatasetStatus.INVALID, "error": "the file does not fit in the worker's memory"}
    else:
        fields["status"] = DatasetStatus.READY
    # Conditional: a dataset deleted or failed by housekeeping meanwhile stays as it is.
    Dataset.objects.filter(pk=dataset.pk, status=DatasetStatus.PROCESSING).update(**fields)
    return fields["status"]


def dataset_fail_stale_profiles(*, timeout: float | None = None, grace: float = 60.0) -> list[str]:
    """Datasets left `processing` by a lost worker become `invalid` with the reason: their
    profile task started more than `timeout` (DATASET_PROFILE_TIMEOUT_SECONDS) ago and never
    ended (its task row is failed too), or it is neither waiting nor running (lost before it was
    queued) `grace` seconds after the upload. A task still waiting in the queue is left alone."""
    timeout = settings.DATASET_PROFILE_TIMEOUT_SECONDS if timeout is None else timeout
    now = timezone.now()
    processing = list(
        Dataset.objects.filter(
            status=DatasetStatus.PROCESSING, created_at__lt=now - timedelta(seconds=grace)
        ).values_list("id", flat=True)
    )
    if not processing:
        return []
    tasks = DBTaskResult.objects.filter(
        task_path=profile_dataset_task.module_path,
        status__in=[TaskResultStatus.READY, TaskResultStatus.RUNNING],
        args_kwargs__args__0__in=processing,
    ).values_list("args_kwargs__args__0", "status", "started_at")
    alive = {
        dataset_id
        for dataset_id, status, started in tasks
        if status == TaskResultStatus.READY or (started and started > now - timedelta(seconds=timeout))
    }
    lost = [dataset_id for dataset_id in processing if dataset_id not in alive]
    if not lost:
        return []
    reason = (
        "its profiling did not finish (the worker was lost or it took longer than "
        f"{timeout:.0f}s); upload the file again"
    )
    fail_lost_task_rows(lost, reason=reason, task=profile_dataset_task)
    Dataset.objects.filter(pk__in=lost, status=DatasetStatus.PROCESSING).update(
        status=DatasetStatus.INVALID, error=reason
    )
    return lost


def dataset_require_ready(dataset: Dataset, path: str = "dataset_id") -> None:
    """400 naming `path` unless the dataset is profiled and readable (runs and checks use it)."""
    if dataset.status == DatasetStatus.PROCESSING:
        raise field_error(path, f"dataset '{dataset.id}' is still being profiled; try again when it is ready")
    if dataset.status != DatasetStatus.READY:
        raise field_error(path, f"dataset '{dataset.id}' is {dataset.status}: {dataset.error}")


def dataset_usage(dataset: Dataset, user=None) -> dict[str, int]:
    """What uses a dataset: {"runs": 2, "monitor snapshot": 1} (only non-zero counts).

    Every model holding a foreign key to Dataset counts (runs protect it; monitoring snapshots
    would silently lose their batch), found through Django's relation metadata so this app
    needs no import of the apps that point at it. With `user`, only what that user may see is
    counted, and anything else in use shows as {"uses you cannot see": 1} — never how many:
    a firm dataset used by another client's runs must not reveal their count."""
    usage: dict[str, int] = {}
    hidden = False
    for relation in Dataset._meta.get_fields(include_hidden=True):
        if not (relation.auto_created and (relation.one_to_many or relation.one_to_one)):
            continue
        related = relation.related_model._default_manager.filter(**{relation.field.name: dataset.pk})
        count = related.count()
        if count and user is not None and hasattr(related, "visible_to"):
            visible = related.visible_to(user).count()
            hidden = hidden or visible < count
            count = visible
        if count:
            meta = relation.related_model._meta
            usage[str(meta.verbose_name if count == 1 else meta.verbose_name_plural)] = count
    if hidden:
        usage["uses you cannot see"] = 1
    return usage


@transaction.atomic
def dataset_delete(*, dataset: Dataset, user) -> None:
    """Delete an unused dataset and its file; 409 naming what still uses it (what `user` may
    see; the rest only as "uses you cannot see")."""
    usage = dataset_usage(dataset, user)
    if not usage:
        name, storage = dataset.file.name, dataset.file.storage
        audit.record(user, "dataset.delete", dataset, changes=audit.deleted(dataset))  # gone if refused
        try:
            with transaction.atomic():
                dataset.delete()
        except ProtectedError:  # a run started on it since the count
            usage = dataset_usage(dataset, user) or {"uses you cannot see": 1}
    if usage:
        used_by = ", ".join(
            what if what == "uses you cannot see" else f"{n} {what}" for what, n in usage.items()
        )
        raise Conflict(
            f"Dataset '{dataset.name}' is used by {used_by}; it is kept so their results stay "
            "reproducible. Only unused datasets can be deleted.",
            [{"path": "/id", "message": f"used by {used_by}"}],
        )
    if name:
        # The file goes only once the row is gone for good (a rollback keeps both).
        transaction.on_commit(lambda: storage.delete(name))
