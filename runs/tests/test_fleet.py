"""A worker fleet with no shared disk (issue #16 §2): two real worker processes, each with its
own scratch folder and its own (empty) media folder, on the test database and one S3 bucket
(a real S3 server on loopback), run a mix of trainings, a scheduled batch scoring and its
monitoring check concurrently: every run is executed exactly once, every result is stored in
the bucket, and neither worker writes a file to a local media folder."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import pytest
from django.conf import settings
from django.utils import timezone

from models_registry.models import MLModel
from models_registry.services import model_set_status
from monitoring.models import ScoringBatch
from recipes.models import Recipe
from runs.models import Run, RunLog, RunStatus, RunType
from runs.services import run_start
from runs.tests.factories import trained_model
from runs.tests.test_worker_processes import database_url, stop_process_groups, wait_for

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow, pytest.mark.once]
ROOT = Path(settings.BASE_DIR)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()] if folder.exists() else []


@pytest.fixture
def fleet(s3_storage, tmp_path):
    """start(name, queues): a worker process with its own WORK_DIR and MEDIA_ROOT."""
    started: list[subprocess.Popen] = []

    def start(name: str, queues: str) -> dict:
        machine = {"work": tmp_path / name / "work", "media": tmp_path / name / "media"}
        env = {
            **os.environ,
            **s3_storage["env"],
            "DATABASE_URL": database_url(),
            "MEDIA_ROOT": str(machine["media"]),
            "WORK_DIR": str(machine["work"]),
            "WORKER_QUEUES": queues,
            "RUN_HEARTBEAT_SECONDS": "0.5",
            "WORKER_HOUSEKEEPING_SECONDS": "1",
            "LOG_LEVEL": "WARNING",
        }
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - the process writes it
        started.append(
            subprocess.Popen(
                [sys.executable, "manage.py", "worker", "--interval", "0.2"],
                cwd=ROOT,
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
        return machine

    yield start
    stop_process_groups(started)


def test_two_workers_without_a_shared_disk_run_a_mix_of_work_once(fleet, s3_storage, baselines, user):
    # A production batch model, trained here (into the bucket): the monitoring worker's schedule
    # starts its scoring, a worker scores it, the schedule checks the scored batch.
    scored_model = trained_model(user, recipe_id="recipe_location_base")
    model_set_status(model=scored_model, user=user, status="staging")
    model_set_status(model=scored_model, user=user, status="production")
    MLModel.objects.filter(pk=scored_model.pk).update(next_check_at=timezone.now() - timedelta(minutes=1))
    pricing = Recipe.objects.get(pk="recipe_pricing_base")
    trainings = [
        run_start(user=user, recipe=pricing, params={"synthetic": {"rows": 3000, "seed": seed}})
        for seed in range(3)
    ]

    machines = [fleet("a", "training,scoring"), fleet("b", "*")]

    def settled() -> bool:
        batch = ScoringBatch.objects.filter(model=scored_model).first()
        return (
            not Run.objects.filter(status__in=[RunStatus.QUEUED, RunStatus.RUNNING]).exists()
            and batch is not None
            and batch.snapshot_id is not None
        )

    assert wait_for(settled, timeout=180), list(Run.objects.values_list("id", "run_type", "status", "error"))
    keys = {
        o["Key"]
        for o in s3_storage["client"].list_objects_v2(Bucket=s3_storage["bucket"]).get("Contents", [])
    }
    score_runs = list(Run.objects.filter(run_type=RunType.SCORE))
    assert len(score_runs) == 1
    for run in [*trainings, *score_runs]:
        run.refresh_from_db()
        assert run.status == RunStatus.SUCCEEDED, run.error
        assert RunLog.objects.filter(run=run, message__contains=" claimed by worker").count() == 1
        assert {f"artifacts/{run.id}/{name}" for name in run.artifacts_json["files"]} <= keys
    assert "predictions.parquet" in score_runs[0].artifacts_json["files"]
    # Neither machine wrote to a local media folder, and each cleaned its scratch folder.
    for machine in machines:
        assert files_under(machine["media"]) == []
        assert wait_for(lambda m=machine: files_under(m["work"]) == [], timeout=10), files_under(
            machine["work"]
        )
    assert files_under(Path(settings.MEDIA_ROOT)) == []
