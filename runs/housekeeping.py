"""Sweeping what crashed processes leave behind (the worker's housekeeping step).

A worker killed mid-run leaves its scratch folder in WORK_DIR (the reaper fails the run, see
runs.executor.reap_stale_runs); a web server killed mid-upload leaves a stored dataset file
with no row (services.dataset_create stores the file before the row commits) and Django's temporary
upload file in FILE_UPLOAD_TEMP_DIR; a worker killed while profiling a large upload leaves
the dataset `processing`; a worker killed between ending a run and recording its task leaves
the task row RUNNING. Each sweep only removes what no live process can still be using:
files older than HOUSEKEEPING_ORPHAN_AGE_SECONDS (an upload in progress keeps touching its
file), scratch folders of runs no longer running. Safe to run from several workers at once.
"""

from __future__ import annotations

import logging
import shutil
import time
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.core.files.storage import default_storage
from django.utils import timezone

from mlworkspace import storage

from .models import Dataset, Run, RunStatus
from .services import dataset_fail_stale_profiles
from .tasks import execute_run_task, fail_lost_task_rows, running_task_rows, tune_assist_task

logger = logging.getLogger(__name__)


def _older_than(path: Path, seconds: float, now: float) -> bool:
    try:
        return now - path.stat().st_mtime > seconds
    except FileNotFoundError:  # removed meanwhile (another worker's sweep)
        return False


def sweep_work_dirs(*, max_age: float, now: float | None = None) -> list[str]:
    """Remove this machine's scratch folders (WORK_DIR, mlworkspace.storage.work_dir) that a
    killed process left: a run's (or a tune run's assist's) once the run has ended (the reaper failed it) or, when no
    such run exists, once older than `max_age`; any other (a download, an upload) once older
    than `max_age`."""
    now = time.time() if now is None else now
    base = Path(settings.WORK_DIR)
    if not base.is_dir():
        return []
    folders = [p for p in base.iterdir() if p.is_dir() and not p.is_symlink()]
    # A run's folder ("run-<id>-…") or a tune run's assist's ("assist-<id>-…": runs.tuning_assist).
    runs = {
        p.name: p.name.split("-", 1)[1].rsplit("-", 1)[0]
        for p in folders
        if p.name.startswith(("run-", "assist-"))
    }
    status = dict(Run.objects.filter(pk__in=list(runs.values())).values_list("id", "status"))
    removed = []
    for folder in folders:
        run_id = runs.get(folder.name)
        if run_id is not None and run_id in status:
            if status[run_id] in (RunStatus.QUEUED, RunStatus.RUNNING):
                continue  # its worker may be writing
        elif not _older_than(folder, max_age, now):
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder.name)
    return removed


def sweep_dataset_files(*, max_age: float, now: float | None = None) -> list[str]:
    """Remove stored files under datasets/ that no dataset row names, older than `max_age`
    (an upload stores its file before its row commits: a killed web server leaves the file)."""
    now = time.time() if now is None else now
    candidates = []
    for name in storage.list_files("datasets"):
        try:
            modified = default_storage.get_modified_time(name).timestamp()
        except FileNotFoundError:  # removed meanwhile (another worker's sweep)
            continue
        if now - modified > max_age:
            candidates.append(name)
    if not candidates:
        return []
    known = set(Dataset.objects.filter(file__in=candidates).values_list("file", flat=True))
    removed = []
    for name in candidates:
        if name not in known:
            storage.delete(name)
            removed.append(name.rsplit("/", 1)[-1])
    return removed


def sweep_upload_temp_files(*, max_age: float, now: float | None = None) -> list[str]:
    """Remove Django's temporary upload files older than `max_age` from FILE_UPLOAD_TEMP_DIR (a
    directory of the workspace's own: never all of /tmp). An upload in progress writes its file
    continuously, and a finished request deletes its own."""
    now = time.time() if now is None else now
    base = Path(settings.FILE_UPLOAD_TEMP_DIR or "")
    if not settings.FILE_UPLOAD_TEMP_DIR or not base.is_dir():
        return []
    removed = []
    for path in base.iterdir():
        if path.is_file() and _older_than(path, max_age, now):
            path.unlink(missing_ok=True)
            removed.append(path.name)
    return removed


def fail_task_rows_of_ended_runs(stale_after: float | None = None) -> list[str]:
    """Task rows still RUNNING — a run's, or an assist's of a tune run — for runs that ended
    more than `stale_after` ago: their worker died between the end and recording the task's
    end, or during an assist (a scan of the task table, so here and not in the frequent
    reaper). Returns the runs whose rows were failed."""
    stale_after = settings.RUN_STALE_AFTER_SECONDS if stale_after is None else stale_after
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    failed: list[str] = []
    for task in (execute_run_task, tune_assist_task):
        running = [str(i) for i in running_task_rows(task).values_list("args_kwargs__args__0", flat=True)]
        ended = list(Run.objects.filter(pk__in=running, finished_at__lt=cutoff).values_list("id", flat=True))
        fail_lost_task_rows(
            ended, reason="the run ended but its worker never recorded the task's end", task=task
        )
        failed += [run_id for run_id in ended if run_id not in failed]
    return failed


def sweep_orphans() -> dict[str, list[str]]:
    """One housekeeping round; returns what was removed or failed, by kind."""
    max_age = settings.HOUSEKEEPING_ORPHAN_AGE_SECONDS
    done = {
        "run_task_rows": fail_task_rows_of_ended_runs(),
        "work_dirs": sweep_work_dirs(max_age=max_age),
        "dataset_files": sweep_dataset_files(max_age=max_age),
        "upload_temp_files": sweep_upload_temp_files(max_age=max_age),
        "stale_dataset_profiles": dataset_fail_stale_profiles(),
    }
    if any(done.values()):
        logger.warning(
            "Housekeeping removed orphans: %s", {kind: items for kind, items in done.items() if items}
        )
    return done
