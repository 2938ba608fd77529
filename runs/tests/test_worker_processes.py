"""Real worker processes (`manage.py worker`) against the test database: no run executed
twice, and a worker killed mid-run leaves its run failed and the other runs untouched."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from models_registry.models import MLModel
from recipes.models import Recipe
from runs import artifacts
from runs.models import Run, RunLog
from runs.services import run_start
from runs.tasks import enqueue_run, execute_run_task

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(settings.BASE_DIR)


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture
def workers(settings, tmp_path):
    started: list[subprocess.Popen] = []
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "RUN_HEARTBEAT_SECONDS": "0.5",
        # The reaper's own defaults (RUN_STALE_AFTER_SECONDS, RUN_REAP_SECONDS): the kill test
        # checks that they fail a lost run within 30 s.
        "WORKER_HOUSEKEEPING_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }

    def start() -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--interval", "0.2"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    for proc in started:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)


def wait_for(predicate, timeout=90.0, every=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


@pytest.fixture
def pricing(db, user):
    call_command("loaddata", "baseline_recipes", verbosity=0)
    return Recipe.objects.get(pk="recipe_pricing_base")


def test_two_workers_never_execute_a_run_twice(workers, pricing, user):
    runs = [
        run_start(user=user, recipe=pricing, params={"synthetic": {"rows": 3000, "seed": i}})
        for i in range(4)
    ]
    enqueue_run(runs[0].id, runs[0].run_type)  # a duplicate delivery of the same run
    workers()
    workers()
    assert wait_for(lambda: not Run.objects.filter(status__in=["queued", "running"]).exists()), list(
        Run.objects.values_list("id", "status")
    )
    for run in runs:
        run.refresh_from_db()
        assert run.status == "succeeded", run.error
        assert RunLog.objects.filter(run=run, message__contains=" claimed by worker").count() == 1


def test_killed_worker_leaves_run_failed_and_others_untouched(workers, pricing, user):
    # Big enough to still be running when the worker is killed.
    victim = run_start(
        user=user,
        recipe=Recipe.objects.get(pk="recipe_location_base"),
        params={"synthetic": {"rows": 1_000_000, "seed": 1}},
    )
    first = workers()
    folder = artifacts.run_dir(victim.pk)
    assert wait_for(lambda: Run.objects.get(pk=victim.pk).status == "running", timeout=60)
    assert wait_for(folder.is_dir, timeout=60)  # the run's artifact folder, still empty
    other = run_start(user=user, recipe=pricing, params={"synthetic": {"rows": 3000, "seed": 2}})
    done = run_start(
        user=user, recipe=pricing, params={"synthetic": {"rows": 3000, "seed": 3}}, executor="external"
    )
    os.kill(first.pid, signal.SIGKILL)  # the worker only: its run's child must notice and stop
    killed_at = time.monotonic()
    first.wait(10)
    workers()  # a new worker reaps the lost run, then executes the queued one
    assert wait_for(lambda: Run.objects.get(pk=victim.pk).status == "failed", timeout=60)
    assert time.monotonic() - killed_at < 30  # reaped within 30 s with the default settings
    victim.refresh_from_db()
    assert "Worker lost" in victim.error
    # Its stages are closed: none left running or pending, the running one failed with the reason.
    statuses = [stage["status"] for stage in victim.stages_json]
    assert "running" not in statuses and "pending" not in statuses, statuses
    assert any(s["status"] == "failed" and "Worker lost" in s.get("detail", "") for s in victim.stages_json)
    # Its task row (django-tasks-db) is not left RUNNING forever.
    rows = DBTaskResult.objects.filter(task_path=execute_run_task.module_path, args_kwargs__args__0=victim.pk)
    assert rows.exists() and not rows.filter(status=TaskResultStatus.RUNNING).exists()
    # Housekeeping removes its artifact folder once nothing is in it (the killed run's child
    # stops at its next message; had it written a file, the folder would be kept).
    assert wait_for(lambda: not folder.exists() or any(p.is_file() for p in folder.rglob("*")), timeout=20)
    assert wait_for(lambda: Run.objects.get(pk=other.pk).status == "succeeded", timeout=90)
    assert Run.objects.get(pk=done.pk).status == "queued"  # external runs are never picked up
    assert MLModel.objects.count() == 0


def test_cancel_stops_a_running_run_promptly(workers, pricing, user):
    from runs.services import run_cancel

    run = run_start(
        user=user,
        recipe=Recipe.objects.get(pk="recipe_location_base"),
        params={"synthetic": {"rows": 1_000_000, "seed": 4}},
    )
    workers()
    assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "running", timeout=60)
    asked = time.monotonic()
    run_cancel(run=run, user=user)
    assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "cancelled", timeout=30)
    assert time.monotonic() - asked < 10  # within a few heartbeats, not at the end of training
    run.refresh_from_db()
    assert run.finished_at is not None
    assert RunLog.objects.filter(run=run, message__startswith="Cancelled").exists()
