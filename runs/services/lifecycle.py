"""Runs: resolve a synthetic request, start a run (numbered per recipe, enqueued on commit),
retry, cancel, and date one for seeded history."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import F, Max
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, InvalidInput, field_error
from mlworkspace.ids import new_id
from models_registry.models import MLModel
from recipes import distributed_config
from recipes import tuning as spec_tuning
from recipes.models import Recipe, RecipeVersion

from .. import data as run_data
from .. import selectors
from ..families import get_family, worlds
from ..logs import run_log
from ..models import (
    MODEL_ARTIFACT_RUN_TYPES,
    Dataset,
    Executor,
    Run,
    RunLog,
    RunStatus,
    RunType,
)
from ..tasks import enqueue_run
from .datasets import dataset_require_ready
from .tracking import tracking_index_params

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


def next_run_number(recipe: Recipe) -> int:
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
    parent: Run | None = None,
    at=None,
) -> Run:
    """Create a queued run; workspace runs are enqueued for a worker when the transaction commits.
    `at` (a datetime) dates its creation for seeded history (the demo); default now."""
    version = recipe_version or recipe.current_version
    if version is None or version.recipe_id != recipe.id:
        raise field_error("recipe_version_id", f"is not a version of recipe '{recipe.id}'")
    if run_type == RunType.TRIAL:
        raise field_error("run_type", "a trial is started by its tune run, not on its own")
    if run_type == RunType.TUNE and spec_tuning.section(version.manifest) is None:
        raise field_error(
            "run_type",
            f"version {version.version} has no tuning section (pipeline.stages[training].config.tuning)",
        )
    if (
        run_type == RunType.TRAIN
        and executor == Executor.WORKSPACE
        and distributed_config.requested(version.manifest)
        and not settings.DASK_SCHEDULER_ADDRESS
    ):  # checked here as well as by the worker (whose setting is the one it connects with)
        raise field_error(
            "recipe_version_id",
            f"version {version.version} trains on a Dask cluster ({distributed_config.switch_path(version.manifest)}) "
            "but DASK_SCHEDULER_ADDRESS is not set on this server: set it to the cluster's scheduler "
            "(web servers and workers), or remove the switch",
        )
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
        number=next_run_number(recipe),
        recipe_version=version,
        model=model,
        run_type=run_type,
        executor=executor,
        dataset=dataset,
        params_json=params,
        retry_of=retry_of,
        parent=parent,
        created_by=user,
    )
    if at is not None:  # created_at is auto_now_add: only an update sets it
        Run.objects.filter(pk=run.pk).update(created_at=at, updated_at=at)
        run.created_at = run.updated_at = at
    tracking_index_params(run=run)
    audit.record(user, "run.start", run, changes=audit.created(run), at=at)
    if executor == Executor.WORKSPACE:
        transaction.on_commit(lambda: enqueue_run(run.id, run.run_type))
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
