"""Writes of the MLflow-compatible API: each is a workspace service call plus the little the
protocol adds. A run is created with ``runs.services.run_start`` (an external run) and moved
with ``run_report``; everything it logs goes through ``runs.services.tracking_log`` (one call
per request: all or nothing); a registered model is ``models_registry.services.model_register``.

The callers (mlflow_api.api, the import command) look the objects up with ``visible_to`` and
check the write with ``recipes.access`` first, as the workspace API does.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping
from typing import BinaryIO

from django.db import transaction

from audit import services as audit
from mlworkspace import storage
from mlworkspace.errors import Conflict
from models_registry.models import MLModel
from models_registry.services import model_attach_training, model_register
from recipes.models import Recipe
from recipes.selectors import latest_approved
from runs import artifacts
from runs.models import TERMINAL_STATUSES, Executor, Run, RunStatus
from runs.services import run_report, run_start, tracking_log

from . import protocol, selectors
from .models import ExperimentName, LoggedModel, LoggedModelStatus, ModelVersionSource
from .protocol import MlflowError, invalid

CHUNK = 1 << 20
# artifacts_json kinds of files a script uploaded: a plain artifact, a file of a logged model.
KIND_ARTIFACT = "mlflow"
KIND_MODEL = "mlflow_model"
FOREIGN_MODEL_NOTE = (
    "Registered from an MLflow script. Its MLflow model ({flavor}) is stored with run {run} "
    "under {path} and can be downloaded from the run's artifacts; the workspace's predict "
    "endpoint serves only models trained by the workspace's own families, so this model has "
    "no servable artifact here."
)


# ----------------------------------------------------------------------------- experiments


@transaction.atomic
def experiment_name_create(*, user, name: str, recipe: Recipe) -> ExperimentName:
    """Map an experiment name onto a recipe (create-experiment with a ``recipe_id`` tag)."""
    existing = ExperimentName.objects.filter(name=name).first()
    if existing is not None or name == recipe.pk:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{name}' already exists.")
    row = ExperimentName.objects.create(name=name, recipe=recipe, created_by=user)
    audit.record(user, "mlflow.experiment_name", recipe, detail={"name": name})
    return row


# ----------------------------------------------------------------------------- runs


def _require_loggable(run: Run) -> None:
    if run.executor != Executor.EXTERNAL:
        raise MlflowError(
            "INVALID_STATE",
            f"Run '{run.id}' is executed by the workspace's workers; only runs created through "
            "the MLflow API (or the external-run API) can be logged to.",
        )


@transaction.atomic
def run_create(
    *,
    user,
    recipe: Recipe,
    run_name: str = "",
    tags: Iterable[Mapping] = (),
    parent: Run | None = None,
) -> Run:
    """An MLflow run: an external train run on the recipe's latest approved version, running
    from the start, its name the tag ``mlflow.runName`` and its tags tracked."""
    version = latest_approved(recipe.pk)
    if version is None:
        raise invalid(
            "experiment_id",
            f"recipe '{recipe.pk}' has no approved version yet; MLflow runs are tracked against "
            "the recipe's latest approved version: approve one first",
        )
    run = run_start(
        user=user, recipe=recipe, recipe_version=version, executor=Executor.EXTERNAL, params={}, parent=parent
    )
    # Created just above in this transaction: run_report need not lock and read it again.
    run = run_report(run=run, user=user, status=RunStatus.RUNNING, locked=True)
    tag_values = {t["key"]: t["value"] for t in tags}
    tag_values[protocol.RUN_NAME_TAG] = run_name or tag_values.get(protocol.RUN_NAME_TAG) or run.name
    if parent is not None:
        tag_values[protocol.PARENT_RUN_TAG] = parent.pk
    tracking_log(run=run, tags=[{"key": k, "value": v} for k, v in tag_values.items()])
    return run


def run_update(*, user, run: Run, status: str | None = None, run_name: str | None = None) -> Run:
    """update-run: a new name (the ``mlflow.runName`` tag) and/or status (FINISHED, FAILED,
    KILLED end the run; RUNNING keeps it running)."""
    _require_loggable(run)
    with transaction.atomic():
        if run_name:
            tracking_log(run=run, tags=[{"key": protocol.RUN_NAME_TAG, "value": run_name}])
        if status is not None:
            target = protocol.WORKSPACE_STATUS.get(status)
            if target is None or target == RunStatus.QUEUED:
                raise invalid("status", f"must be RUNNING, FINISHED, FAILED or KILLED, got {status!r}")
            run.refresh_from_db(fields=["status"])
            if run.status != target:
                # The run's own record gets the latest value of each metric it logged (the run
                # page and a registered model's metrics read it); equal values add no point.
                final = selectors.latest_metrics(run) if target in TERMINAL_STATUSES else None
                try:
                    run = run_report(run=run, user=user, status=target, metrics_json=final)
                except Conflict as error:
                    raise MlflowError("INVALID_STATE", error.detail) from None
    return run


def run_log(
    *,
    run: Run,
    metrics: Iterable[Mapping] = (),
    params: Iterable[Mapping] = (),
    tags: Iterable[Mapping] = (),
) -> None:
    """log-metric, log-parameter, set-tag and log-batch: one ``tracking_log`` call (which
    stores a point logged again exactly — ``log_model`` re-logs the run's step metrics — once,
    as MLflow's store keeps it)."""
    _require_loggable(run)
    tracking_log(run=run, metrics=list(metrics), params=params, tags=tags)


# ----------------------------------------------------------------------------- artifacts


def store_file(run_id: str, relative: str, stream: BinaryIO, max_bytes: int) -> dict:
    """Store `stream` as `relative` in the run's artifact folder of the file store
    (``runs.artifacts.folder``): read to a local file first (its size bounded, its sha256
    computed) and stored whole, so a failed upload leaves nothing half-written. Returns its
    artifacts_json entry (kind, size, sha256)."""
    if not relative:
        raise invalid("path", "names the run's folder, not a file")
    try:
        name = storage.clean_name(f"{artifacts.folder(run_id)}/{relative}")
    except ValueError:
        raise invalid("path", f"'{relative[:200]}' leaves the run's artifact folder") from None
    work = storage.work_dir("artifact")
    try:
        local, size = work / "upload", 0
        with open(local, "wb") as out:
            while chunk := stream.read(CHUNK):
                size += len(chunk)
                if size > max_bytes:
                    raise MlflowError(
                        "REQUEST_LIMIT_EXCEEDED", f"The artifact is larger than {max_bytes} bytes."
                    )
                out.write(chunk)
        try:
            stored = storage.put(name, local)
        except storage.StorageError as exc:
            raise MlflowError("TEMPORARILY_UNAVAILABLE", f"The artifact could not be stored: {exc}") from None
    finally:
        storage.remove(work)
    kind = KIND_MODEL if relative.startswith("models/") else KIND_ARTIFACT
    return {"kind": kind, **stored}


def record_files(*, user, run: Run, entries: Mapping[str, dict]) -> None:
    """Add `entries` to the run's artifacts_json (through run_report, the external runner's
    report), so the workspace's artifact download serves and checks them like any other."""
    with transaction.atomic():
        # Uploads of one model arrive in parallel: the run row is locked while its
        # artifacts_json is read and written back, so none is lost.
        locked = Run.objects.select_for_update().get(pk=run.pk)
        described = dict(locked.artifacts_json or {})
        described.update(
            dir=artifacts.folder(run.pk),
            files={**(described.get("files") or {}), **entries},
            model=described.get("model") or [],
        )
        try:
            run_report(run=locked, user=user, artifacts_json=described)
        except Conflict as error:
            raise MlflowError("INVALID_STATE", error.detail) from None


def artifact_write(*, user, run: Run, relative: str, stream: BinaryIO, max_bytes: int) -> dict:
    """An uploaded file of a live MLflow run, stored and recorded with its size and sha256."""
    _require_loggable(run)
    if run.is_terminal:
        raise MlflowError("INVALID_STATE", f"Run '{run.pk}' is {run.status}; its artifacts are final.")
    entry = store_file(run.pk, relative, stream, max_bytes)
    record_files(user=user, run=run, entries={relative: entry})
    return entry


# ----------------------------------------------------------------------------- logged models


@transaction.atomic
def logged_model_create(
    *,
    user,
    run: Run,
    name: str,
    model_type: str = "",
    params: Mapping[str, str] | None = None,
    tags: Mapping[str, str] | None = None,
) -> LoggedModel:
    _require_loggable(run)
    if run.is_terminal:
        raise MlflowError("INVALID_STATE", f"Run '{run.pk}' is {run.status}; log the model inside the run.")
    model = LoggedModel.objects.create(
        id=f"m-{uuid.uuid4().hex}",
        run=run,
        name=name or "model",
        model_type=model_type,
        params_json=dict(params or {}),
        tags_json=dict(tags or {}),
        created_by=user,
    )
    audit.record(
        user, "mlflow.logged_model_create", run, detail={"logged_model": model.pk, "name": model.name}
    )
    return model


@transaction.atomic
def logged_model_update(
    *,
    user,
    model: LoggedModel,
    status: str | None = None,
    tags: Mapping[str, str] | None = None,
    delete_tag: str | None = None,
    params: Mapping[str, str] | None = None,
    output_step: int | None = None,
) -> LoggedModel:
    """finalize (status), set-tags, delete-tag, log-params, log-outputs (the step)."""
    model = LoggedModel.objects.select_for_update().get(pk=model.pk)
    before = audit.snapshot(model)
    if status is not None:
        if status not in LoggedModelStatus.values:
            raise invalid("status", f"must be one of {', '.join(LoggedModelStatus.values)}")
        model.status = status
    if tags:
        model.tags_json = {**model.tags_json, **tags}
    if delete_tag is not None:
        model.tags_json = {k: v for k, v in model.tags_json.items() if k != delete_tag}
    if params:
        model.params_json = {**model.params_json, **params}
    if output_step is not None:
        model.output_step = output_step
    model.save()
    audit.record(user, "mlflow.logged_model_update", model.run, changes=audit.diff(before, model))
    return model


# ----------------------------------------------------------------------------- registry


@transaction.atomic
def model_version_create(
    *,
    user,
    name: str,
    run: Run,
    source: str,
    logged_model: LoggedModel | None = None,
    directory: str = "",
    description: str = "",
) -> MLModel:
    """create-model-version: a workspace model registered for the run's recipe version, its
    training run the MLflow run (the run's artifacts, metrics and the MLflow model's files in
    `directory` of them attached). The MLflow model itself is not servable by the workspace's
    predict: the model's description says so (FOREIGN_MODEL_NOTE) and its artifacts list no
    workspace model file."""
    run = Run.objects.select_related("recipe", "recipe_version").get(pk=run.pk)
    flavors = selectors.model_flavors(run, directory) or ["unknown flavor"]
    note = FOREIGN_MODEL_NOTE.format(
        flavor=", ".join(flavors), run=run.pk, path=f"{directory}/" if directory else "the run's artifacts"
    )
    model = model_register(
        user=user,
        name=name,
        recipe=run.recipe,
        recipe_version=run.recipe_version,
        description=f"{description}\n\n{note}".strip(),
    )
    # The model's training run is the MLflow run: its artifacts (the MLflow files, none of
    # kind "model") and metrics. model_attach_training attaches the run to the model its
    # model_id names; the Run row itself is not changed (it was not started for a model).
    run.model_id = model.pk
    model_attach_training(run=run)
    ModelVersionSource.objects.create(model=model, source=source, logged_model=logged_model)
    return model
