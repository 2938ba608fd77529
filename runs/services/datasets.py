"""Datasets: upload (profiled here or by a worker), mark as scoring input, check readiness and
usage, delete."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import ProtectedError
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from audit import services as audit
from mlworkspace import storage
from mlworkspace.errors import Conflict, NotFound, TooLarge, Unavailable, field_error, server_redact
from mlworkspace.ids import new_id
from recipes.models import Recipe

from .. import data as run_data
from .. import dataset_files
from ..models import (
    Dataset,
    DatasetPurpose,
    DatasetStatus,
)
from ..tasks import enqueue_dataset_profile, fail_lost_task_rows, profile_dataset_task


def _check_purpose(purpose: str, recipe_id: str | None) -> None:
    """400 naming `purpose` for an unknown one, or scoring input without a recipe."""
    if purpose not in DatasetPurpose.values:
        raise field_error("purpose", f"must be one of {', '.join(DatasetPurpose.values)}, got '{purpose}'")
    if purpose == DatasetPurpose.SCORING and recipe_id is None:
        raise field_error("purpose", "scoring input is a recipe's: upload the dataset for a recipe first")


@transaction.atomic
def dataset_create(
    *,
    user,
    upload: UploadedFile,
    name: str | None = None,
    recipe: Recipe | None = None,
    client=None,
    purpose: str = DatasetPurpose.TRAINING,
) -> Dataset:
    """Store an uploaded CSV/Parquet file, read its columns and check it against `recipe`.
    `purpose` "scoring" marks it as the recipe's scoring input (DatasetPurpose)."""
    _check_purpose(purpose, recipe.pk if recipe is not None else None)
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
    # Written and read locally first (its shape, a small file's profile), then stored whole.
    work = storage.work_dir("upload")
    try:
        if hasattr(upload, "temporary_file_path"):  # a large upload Django streamed to disk
            path = Path(upload.temporary_file_path())
        else:
            path = work / f"{dataset_id}.{fmt}"
            with open(path, "wb") as out:
                for chunk in upload.chunks():
                    out.write(chunk)
        try:
            # Rows and columns from the footer / first line, before anything is loaded.
            shape = _dataset_shape(path, fmt)
            inline = (
                path.stat().st_size <= settings.DATASET_INLINE_PROFILE_BYTES
                and shape.rows <= settings.DATASET_INLINE_PROFILE_ROWS
            )
            # A small file is profiled now; a large one by a worker (dataset_profile),
            # `processing` until then (runs refuse it meanwhile).
            profile = (
                {**_dataset_profile_fields(path, fmt, recipe), "status": DatasetStatus.READY}
                if inline
                else {"row_count": shape.rows, "status": DatasetStatus.PROCESSING}
            )
        except ValueError as exc:
            raise field_error("file", str(exc)) from None
        name_in_store = f"datasets/{dataset_id}.{fmt}"
        try:
            stored = storage.put(name_in_store, path)
        except storage.StorageError as exc:
            raise Unavailable(f"The file could not be stored: {server_redact(str(exc))}") from None
    finally:  # a broken upload or a full disk: nothing local is left (a killed process's
        storage.remove(work)  # scratch folder is swept by runs.housekeeping)
    try:
        dataset = Dataset.objects.create(
            id=dataset_id,
            name=(name or Path(upload.name).stem)[:200],
            file=name_in_store,
            format=fmt,
            size_bytes=stored["size"],
            sha256=stored["sha256"],
            recipe=recipe,
            # A client recipe's data is its client's (callers check the role: recipes.access).
            client=client or (recipe.client if recipe is not None else None),
            purpose=purpose,
            created_by=user,
            **profile,
        )
    except Exception:
        storage.delete(name_in_store)  # no orphan file when the row cannot be written
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
    """Describe the file's columns and check it against `recipe`'s newest version: the fields
    a ready dataset has. A table of more than DATASET_CHECK_SAMPLE_ROWS rows is never loaded
    whole: its columns are profiled chunk by chunk over every row, and it is checked on a
    uniform sample of that many rows, drawn as a run's training sample is (runs.data.read_sample;
    ``validation_json["sample_rows"]`` says how many). ValueError (readable) when the file is
    not a table."""
    manifest = recipe.current_version.manifest if recipe is not None and recipe.current_version else {}
    family = recipe.model_family if recipe is not None else None
    rows = run_data.table_shape(path, fmt, header_max_bytes=settings.DATASET_HEADER_MAX_BYTES).rows
    if rows <= settings.DATASET_CHECK_SAMPLE_ROWS:
        frame = run_data.read_table(path, fmt)
        rows, columns, sample_rows = len(frame), run_data.describe_columns(frame), None
    else:
        columns = run_data.describe_chunks(run_data.read_chunks(path, fmt))
        frame, sample_rows = None, None
        if recipe is not None:
            by = run_data.sample_by(family, manifest)
            frame, _total = run_data.read_sample(
                path, fmt, max_rows=settings.DATASET_CHECK_SAMPLE_ROWS, by=by
            )
            sample_rows = len(frame)
    validation = {"recipe_id": None, "errors": [], "valid": None}
    if recipe is not None:
        errors = run_data.dataset_problems(frame, columns, manifest, family)
        validation = {"recipe_id": recipe.id, "errors": errors, "valid": not errors}
        if sample_rows is not None:
            validation["sample_rows"] = sample_rows
    return {"row_count": rows, "columns_json": columns, "validation_json": validation}


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
        with dataset_files.local_copy(dataset) as path:
            fields = _dataset_profile_fields(path, dataset.format, dataset.recipe)
    except (NotFound, Conflict) as exc:
        fields = {"status": DatasetStatus.INVALID, "error": exc.detail}
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


@transaction.atomic
def dataset_set_purpose(*, dataset: Dataset, user, purpose: str) -> Dataset:
    """Mark a dataset as its recipe's scoring input or back as training data (400 naming
    `purpose` for an unknown one, or scoring input without a recipe). Callers check the
    permission (recipes.access); the row is re-read under a lock and only `purpose` written."""
    dataset = Dataset.objects.select_for_update().get(pk=dataset.pk)
    _check_purpose(purpose, dataset.recipe_id)
    if dataset.purpose != purpose:
        before = audit.snapshot(dataset)
        dataset.purpose = purpose
        dataset.save(update_fields=["purpose"])
        audit.record(user, "dataset.purpose", dataset, changes=audit.diff(before, dataset))
    return dataset


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
        name = dataset.file.name
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
