"""Real worker processes (`manage.py worker`) against the test database: no run executed
twice, a worker killed mid-run leaves its run failed and the other runs untouched, and a
worker told to stop (SIGTERM) finishes its run first — after a second SIGTERM it stops without
it, and the reaper fails the run."""

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command
from django.db import connection
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from mlworkspace.models import WorkerHeartbeat
from models_registry.models import MLModel
from recipes.models import Recipe
from runs.models import Run, RunLog
from runs.services import run_start
from runs.tasks import enqueue_run, execute_run_task
from runs.tests.test_tuning import start, tune_version

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
        "WORK_DIR": str(settings.WORK_DIR),
        "RUN_HEARTBEAT_SECONDS": "0.5",
        # The reaper's own defaults (RUN_STALE_AFTER_SECONDS, RUN_REAP_SECONDS): the kill test
        # checks that they fail a lost run within 30 s.
        "WORKER_HOUSEKEEPING_SECONDS": "1",
        "LOG_LEVEL": "WARNING",
    }

    def start(**overrides: str) -> subprocess.Popen:
        log = open(tmp_path / f"worker-{len(started)}.log", "w")
        proc = subprocess.Popen(
            [sys.executable, "manage.py", "worker", "--interval", "0.2"],
            cwd=ROOT,
            env={**env, **overrides},
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc

    yield start
    stop_process_groups(started)


def stop_process_groups(processes: list[subprocess.Popen], grace: float = 15) -> None:
    """Stop processes started in sessions of their own (start_new_session): SIGTERM to each
    group, SIGKILL to a group still alive after `grace` seconds."""
    for proc in processes:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)


def wait_for(predicate, timeout=90.0, every=0.25):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return False


# Long enough to still be training when the worker is signalled, short enough to drain in seconds.
DRAIN_ROWS = 50_000


def _long_run(user, seed: int) -> Run:
    """A location-scoring run of DRAIN_ROWS rows, queued."""
    return run_start(
        user=user,
        recipe=Recipe.objects.get(pk="recipe_location_base"),
        params={"synthetic": {"rows": DRAIN_ROWS, "seed": seed}},
    )


def _training(run_id: str) -> bool:
    """The run's child process is at work: it has reported a stage (not only claimed)."""
    return (
        Run.objects.filter(pk=run_id, status="running").exclude(current_stage__in=["", "starting"]).exists()
    )


def _heartbeat_row(proc: subprocess.Popen):
    return WorkerHeartbeat.objects.filter(worker_id=f"{socket.gethostname()}:{proc.pid}")


def _run_process(worker: subprocess.Popen) -> int:
    """The pid of the worker's run child process (not multiprocessing's resource tracker)."""
    out = subprocess.run(["pgrep", "-P", str(worker.pid), "-f", "spawn_main"], capture_output=True, text=True)
    pids = [int(pid) for pid in out.stdout.split()]
    assert len(pids) == 1, out
    return pids[0]


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


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
    assert wait_for(lambda: _training(victim.pk), timeout=60)  # its child process is at work
    # The run's local scratch folder (its downloaded inputs and the artifacts it writes).
    (folder,) = Path(settings.WORK_DIR).glob(f"run-{victim.pk}-*")
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
    # Housekeeping removes the killed worker's scratch folder once its run has ended.
    assert wait_for(lambda: not folder.exists(), timeout=20)
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
    assert wait_for(lambda: _training(run.pk), timeout=60)  # its child process is at work
    asked = time.monotonic()
    run_cancel(run=run, user=user)
    assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "cancelled", timeout=30)
    assert time.monotonic() - asked < 10  # within a few heartbeats, not at the end of training
    run.refresh_from_db()
    assert run.finished_at is not None
    assert RunLog.objects.filter(run=run, message__startswith="Cancelled").exists()


@pytest.mark.once  # signals and queues: the same on either database, run on PostgreSQL only
@pytest.mark.parametrize("whole_group", [False, True], ids=["worker", "process-group"])
def test_sigterm_drains_the_running_run_and_takes_no_other(workers, pricing, user, whole_group):
    # whole_group: as Ctrl-C in a terminal or `kill -TERM -<pgid>` do. The run's child process
    # has its own process group (runs.pipeline.child_main), so the signal is the worker's alone.
    run = _long_run(user, seed=5)
    worker = workers()
    assert wait_for(lambda: _training(run.pk), timeout=60)
    waiting = run_start(user=user, recipe=pricing, params={"synthetic": {"rows": 3000, "seed": 6}})
    assert _heartbeat_row(worker).exists()
    signalled_at = timezone.now()
    if whole_group:
        os.killpg(worker.pid, signal.SIGTERM)  # the fixture starts each worker in its own session
    else:
        os.kill(worker.pid, signal.SIGTERM)
    assert worker.wait(60) == 0
    exited_at = timezone.now()
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.finished_at > signalled_at  # it was still running when the worker was signalled
    assert (exited_at - run.finished_at).total_seconds() < 5  # and the worker exits right after it
    assert Run.objects.get(pk=waiting.pk).status == "queued"  # the draining worker took no other run
    assert not _heartbeat_row(worker).exists()  # a clean exit removes the worker's heartbeat row


@pytest.mark.once  # signals and queues: the same on either database, run on PostgreSQL only
def test_sigterm_to_the_group_drains_a_tune_run(workers, pricing, user):
    # A tune run's study has its own child process (runs.tuning.study_main), out of the group too.
    run = start(user, tune_version(user, n_trials=3, rounds=100), rows=4000)
    worker = workers()
    assert wait_for(lambda: Run.objects.filter(parent=run).exists(), timeout=60)  # a trial started
    signalled_at = timezone.now()
    os.killpg(worker.pid, signal.SIGTERM)
    assert worker.wait(60) == 0
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    assert run.finished_at > signalled_at
    assert Run.objects.filter(parent=run, status="succeeded").count() == 3
    assert not _heartbeat_row(worker).exists()


@pytest.mark.once  # signals and queues: the same on either database, run on PostgreSQL only
def test_second_sigterm_stops_the_worker_and_the_reaper_fails_its_run(workers, pricing, user):
    run = _long_run(user, seed=7)
    worker = workers()
    assert wait_for(lambda: _training(run.pk), timeout=60)
    child = _run_process(worker)
    os.killpg(worker.pid, signal.SIGTERM)  # drain...
    time.sleep(0.3)
    os.killpg(worker.pid, signal.SIGTERM)  # ...no: stop now
    worker.wait(15)  # the executor terminates the run's child at once (a SIGKILL after 10 s)
    assert not _alive(child)  # the run's process does not outlive its worker
    assert Run.objects.get(pk=run.pk).status == "running"  # the worker recorded no outcome
    assert not _heartbeat_row(worker).exists()
    # Another worker's reaper fails the run once its heartbeat is older than RUN_STALE_AFTER_SECONDS.
    workers(RUN_STALE_AFTER_SECONDS="2")
    assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "failed", timeout=30)
    run.refresh_from_db()
    assert "Worker lost" in run.error


@pytest.mark.once  # signals and queues: the same on either database, run on PostgreSQL only
def test_a_worker_takes_only_the_queues_it_serves(workers, pricing, user):
    run = run_start(user=user, recipe=pricing, params={"synthetic": {"rows": 3000, "seed": 7}})
    assert DBTaskResult.objects.get(args_kwargs__args__0=run.pk).queue_name == "training"
    scorer = workers(WORKER_QUEUES="scoring,monitoring")
    assert wait_for(lambda: _heartbeat_row(scorer).exists(), timeout=30)
    assert _heartbeat_row(scorer).get().queues == "scoring,monitoring"
    time.sleep(3)  # it polls its queues every 0.2 s: a training task would be claimed by now
    assert Run.objects.get(pk=run.pk).status == "queued"
    trainer = workers(WORKER_QUEUES="training")
    assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "succeeded")
    assert f":{trainer.pid}:" in Run.objects.get(pk=run.pk).worker


@pytest.mark.once  # signals and queues: the same on either database, run on PostgreSQL only
def test_one_worker_command_with_concurrency_2_runs_two_runs_at_once_and_drains_both(workers, pricing, user):
    supervisor = workers(WORKER_CONCURRENCY="2")
    runs = [_long_run(user, seed=11), _long_run(user, seed=12)]
    assert wait_for(lambda: all(_training(run.pk) for run in runs), timeout=90)  # at the same time
    beats = WorkerHeartbeat.objects.exclude(worker_id=f"{socket.gethostname()}:{supervisor.pid}")
    assert beats.count() == 2 and not _heartbeat_row(supervisor).exists()  # two workers under it
    workers_of_runs = set(Run.objects.filter(pk__in=[r.pk for r in runs]).values_list("worker", flat=True))
    assert len(workers_of_runs) == 2
    os.kill(supervisor.pid, signal.SIGTERM)  # the supervisor only: it passes the stop on
    assert supervisor.wait(90) == 0
    for run in runs:
        run.refresh_from_db()
        assert run.status == "succeeded", run.error  # drained, not killed
    assert not WorkerHeartbeat.objects.exists()


@pytest.mark.once  # signals and queues: the same on either database, run on PostgreSQL only
def test_a_worker_process_that_dies_is_restarted_by_its_supervisor(workers, pricing, user):
    supervisor = workers(WORKER_CONCURRENCY="2")
    assert wait_for(lambda: WorkerHeartbeat.objects.count() == 2, timeout=60)
    first = set(WorkerHeartbeat.objects.values_list("worker_id", flat=True))
    victim = int(sorted(first)[0].rsplit(":", 1)[1])
    os.kill(victim, signal.SIGKILL)
    # A new process beats (the dead one's row stays until it is stale).
    assert wait_for(
        lambda: set(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) - first, timeout=60
    )
    assert supervisor.poll() is None
    run = run_start(user=user, recipe=pricing, params={"synthetic": {"rows": 3000, "seed": 13}})
    assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "succeeded", timeout=90)
