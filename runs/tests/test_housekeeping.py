"""Crash leftovers (issue 12, defect 8): the reaper fails a lost worker's run and closes its
stages and task row; housekeeping sweeps scratch folders of ended runs, dataset files with no row,
upload temp files and datasets whose profiling was lost. Real files, real task rows."""

import os
import tempfile
import time
from datetime import timedelta
from pathlib import Path

import pytest
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from recipes.models import Recipe
from runs.executor import reap_stale_runs
from runs.housekeeping import (
    sweep_dataset_files,
    sweep_orphans,
    sweep_upload_temp_files,
    sweep_work_dirs,
)
from runs.models import Dataset, DatasetStatus, Run, RunStatus
from runs.services import dataset_fail_stale_profiles, run_start
from runs.tasks import execute_run_task, profile_dataset_task, tune_assist_task

pytestmark = pytest.mark.django_db
HOUR = 3600


def age(path: Path, seconds: float) -> Path:
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def old_file(path: Path, seconds: float = 2 * HOUR) -> Path:
    path.write_bytes(b"a\n1\n")
    return age(path, seconds)


def make_run(user, status=RunStatus.QUEUED, **fields) -> Run:
    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), executor="external")
    Run.objects.filter(pk=run.pk).update(status=status, **fields)
    run.refresh_from_db()
    return run


def task_row(task, object_id: str, status=TaskResultStatus.RUNNING, started_ago: float = 0) -> DBTaskResult:
    result = task.enqueue(object_id)
    row = DBTaskResult.objects.get(pk=result.id)
    row.status = status
    row.started_at = (
        None if status == TaskResultStatus.READY else timezone.now() - timedelta(seconds=started_ago)
    )
    row.save()
    return row


# --------------------------------------------------------------------------- the reaper


def test_reaper_fails_the_run_closes_its_stages_and_its_task_row(baselines, user):
    stale_beat = timezone.now() - timedelta(seconds=120)
    stages = [
        {"name": "quality", "type": "quality", "status": "succeeded", "started_at": "x", "finished_at": "y"},
        {"name": "train", "type": "training", "status": "running", "started_at": "x", "finished_at": None},
        {"name": "eval", "type": "evaluation", "status": "pending", "started_at": None, "finished_at": None},
    ]
    lost = make_run(user, RunStatus.RUNNING, heartbeat_at=stale_beat, worker="w1", stages_json=stages)
    alive = make_run(user, RunStatus.RUNNING, heartbeat_at=timezone.now(), worker="w2", stages_json=stages)
    lost_row, alive_row = task_row(execute_run_task, lost.pk), task_row(execute_run_task, alive.pk)

    assert reap_stale_runs(20) == [lost.pk]

    lost.refresh_from_db()
    assert lost.status == RunStatus.FAILED and "Worker lost" in lost.error and lost.finished_at
    assert [s["status"] for s in lost.stages_json] == ["succeeded", "failed", "not run"]
    assert "Worker lost" in lost.stages_json[1]["detail"] and lost.stages_json[1]["finished_at"]
    lost_row.refresh_from_db()
    assert lost_row.status == TaskResultStatus.FAILED and lost_row.finished_at
    assert "WorkerLost" in lost_row.traceback
    # The live worker's run and task row are untouched.
    alive.refresh_from_db()
    alive_row.refresh_from_db()
    assert alive.status == RunStatus.RUNNING and alive.stages_json[1]["status"] == "running"
    assert alive_row.status == TaskResultStatus.RUNNING


def test_housekeeping_closes_a_task_row_left_running_after_its_run_ended(baselines, user):
    ended = make_run(user, RunStatus.FAILED, finished_at=timezone.now() - timedelta(minutes=5))
    just_ended = make_run(user, RunStatus.SUCCEEDED, finished_at=timezone.now())
    old_row, new_row = task_row(execute_run_task, ended.pk), task_row(execute_run_task, just_ended.pk)
    assert sweep_orphans()["run_task_rows"] == [ended.pk]
    old_row.refresh_from_db()
    new_row.refresh_from_db()
    assert old_row.status == TaskResultStatus.FAILED
    assert new_row.status == TaskResultStatus.RUNNING  # its worker is recording the end right now


def test_housekeeping_closes_an_assist_task_row_of_a_tune_run_that_ended(baselines, user):
    ended = make_run(user, RunStatus.SUCCEEDED, finished_at=timezone.now() - timedelta(minutes=5))
    running = make_run(user, RunStatus.RUNNING, heartbeat_at=timezone.now())
    lost = task_row(tune_assist_task, ended.pk)
    live = task_row(tune_assist_task, running.pk)
    assert sweep_orphans()["run_task_rows"] == [ended.pk]
    lost.refresh_from_db()
    live.refresh_from_db()
    assert lost.status == TaskResultStatus.FAILED and "WorkerLost" in lost.traceback
    assert live.status == TaskResultStatus.RUNNING  # its assist may still be at work


def test_default_settings_reap_within_30_seconds(settings):
    assert settings.RUN_STALE_AFTER_SECONDS + settings.RUN_REAP_SECONDS <= 30
    assert settings.RUN_HEARTBEAT_SECONDS * 3 <= settings.RUN_STALE_AFTER_SECONDS


# --------------------------------------------------------------------------- scratch folders


def test_scratch_folders_of_ended_or_unknown_runs_and_old_downloads_are_removed(settings, baselines, user):
    failed = make_run(user, RunStatus.FAILED)
    running = make_run(user, RunStatus.RUNNING, heartbeat_at=timezone.now())
    succeeded = make_run(user, RunStatus.SUCCEEDED)
    base = Path(settings.WORK_DIR)
    folders = {}
    for key, prefix in [
        ("failed", f"run-{failed.pk}"),
        ("running", f"run-{running.pk}"),
        ("succeeded", f"run-{succeeded.pk}"),
        ("gone", "run-run_gone"),
        ("assist", f"assist-{succeeded.pk}"),
        ("assisting", f"assist-{running.pk}"),
        ("read", "read"),
    ]:
        folders[key] = Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=base))
        (folders[key] / "input").mkdir()
        (folders[key] / "input" / "data.csv").write_text("a\n1\n")
        age(folders[key], 2 * HOUR)
    # Just made: a run that ended is swept at once, an unknown run's or a download's not yet.
    ended_now = Path(tempfile.mkdtemp(prefix=f"run-{failed.pk}-", dir=base))
    unknown_now = Path(tempfile.mkdtemp(prefix="run-run_new-", dir=base))
    read_now = Path(tempfile.mkdtemp(prefix="read-", dir=base))

    removed = sweep_work_dirs(max_age=HOUR)

    gone = [folders[k] for k in ("failed", "succeeded", "gone", "read", "assist")] + [ended_now]
    assert sorted(removed) == sorted(folder.name for folder in gone)
    assert not any(folder.exists() for folder in gone)
    for kept in (folders["running"], folders["assisting"], unknown_now, read_now):  # still in use
        assert kept.is_dir(), kept.name


# --------------------------------------------------------------------------- dataset files


def test_dataset_files_with_no_row_are_removed_once_old(settings, user):
    base = Path(settings.MEDIA_ROOT) / "datasets"
    base.mkdir(parents=True)
    orphan_old = old_file(base / "ds_killed_upload.csv")
    orphan_new = base / "ds_uploading_now.csv"
    orphan_new.write_text("a\n1\n")
    owned = old_file(base / "ds_real.csv")
    Dataset.objects.create(id="ds_real", name="real", file="datasets/ds_real.csv", format="csv", sha256="0")

    assert sweep_dataset_files(max_age=HOUR) == ["ds_killed_upload.csv"]
    assert not orphan_old.exists() and orphan_new.exists() and owned.exists()


# --------------------------------------------------------------------------- upload temp files


def test_upload_temp_files_live_under_the_data_dir_not_tmp(settings):
    temp_dir = Path(settings.FILE_UPLOAD_TEMP_DIR).resolve()
    assert temp_dir.is_dir()
    assert temp_dir.is_relative_to(Path(settings.DATA_DIR).resolve())
    assert temp_dir != Path(tempfile.gettempdir()).resolve()


def test_old_upload_temp_files_are_removed_and_nothing_else(settings, tmp_path):
    temp_dir = tmp_path / "upload-tmp"
    temp_dir.mkdir()
    settings.FILE_UPLOAD_TEMP_DIR = temp_dir
    old = old_file(temp_dir / "tmpabc.upload.csv")
    fresh = temp_dir / "tmpdef.upload.csv"
    fresh.write_bytes(b"x")
    elsewhere = old_file(tmp_path / "not-an-upload.csv")

    assert sweep_upload_temp_files(max_age=HOUR) == ["tmpabc.upload.csv"]
    assert not old.exists() and fresh.exists() and elsewhere.exists()


def test_without_an_upload_temp_dir_nothing_is_swept(settings):
    settings.FILE_UPLOAD_TEMP_DIR = None
    assert sweep_upload_temp_files(max_age=0) == []


# --------------------------------------------------------------------------- lost profiles


def processing_dataset(dataset_id: str, created_ago: float = HOUR) -> Dataset:
    dataset = Dataset.objects.create(
        id=dataset_id,
        name=dataset_id,
        file=f"datasets/{dataset_id}.csv",
        format="csv",
        sha256="0",
        status=DatasetStatus.PROCESSING,
    )
    Dataset.objects.filter(pk=dataset_id).update(created_at=timezone.now() - timedelta(seconds=created_ago))
    return dataset


def test_datasets_whose_profiling_was_lost_become_invalid(settings):
    settings.DATASET_PROFILE_TIMEOUT_SECONDS = 600
    killed = processing_dataset("ds_killed")
    killed_row = task_row(profile_dataset_task, killed.pk, started_ago=1200)
    working = processing_dataset("ds_working")
    working_row = task_row(profile_dataset_task, working.pk, started_ago=30)
    waiting = processing_dataset("ds_waiting")
    task_row(profile_dataset_task, waiting.pk, status=TaskResultStatus.READY)
    never_queued = processing_dataset("ds_never_queued")
    just_uploaded = processing_dataset("ds_just_uploaded", created_ago=5)

    assert sorted(dataset_fail_stale_profiles()) == ["ds_killed", "ds_never_queued"]

    statuses = dict(Dataset.objects.values_list("id", "status"))
    assert statuses == {
        "ds_killed": "invalid",
        "ds_never_queued": "invalid",
        "ds_working": "processing",
        "ds_waiting": "processing",
        "ds_just_uploaded": "processing",
    }
    assert "did not finish" in Dataset.objects.get(pk=never_queued.pk).error
    killed_row.refresh_from_db()
    working_row.refresh_from_db()
    assert killed_row.status == TaskResultStatus.FAILED
    assert working_row.status == TaskResultStatus.RUNNING
    assert just_uploaded.pk not in dataset_fail_stale_profiles()


# --------------------------------------------------------------------------- one round


def test_a_housekeeping_round_runs_every_sweep(settings, baselines, user, tmp_path):
    settings.HOUSEKEEPING_ORPHAN_AGE_SECONDS = HOUR
    settings.FILE_UPLOAD_TEMP_DIR = tmp_path
    failed = make_run(user, RunStatus.FAILED)
    scratch = Path(tempfile.mkdtemp(prefix=f"run-{failed.pk}-", dir=settings.WORK_DIR))
    (Path(settings.MEDIA_ROOT) / "datasets").mkdir(parents=True)
    old_file(Path(settings.MEDIA_ROOT) / "datasets" / "ds_x.csv")
    old_file(tmp_path / "t.upload")
    processing_dataset("ds_lost")

    done = sweep_orphans()
    assert done == {
        "run_task_rows": [],
        "work_dirs": [scratch.name],
        "dataset_files": ["ds_x.csv"],
        "upload_temp_files": ["t.upload"],
        "stale_dataset_profiles": ["ds_lost"],
    }
    assert sweep_orphans() == {k: [] for k in done}  # the next round finds nothing left
