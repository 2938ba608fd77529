"""/healthz with a real `manage.py worker` process: healthy while it runs, the beat removed when it
stops cleanly, and stale (503) when it is killed and cannot say goodbye."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from mlworkspace.models import WorkerHeartbeat

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
ROOT = Path(settings.BASE_DIR)


def database_url() -> str:
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    auth = db["USER"] + (f":{db['PASSWORD']}" if db.get("PASSWORD") else "")
    return f"postgres://{auth}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"


def start_worker(tmp_path) -> subprocess.Popen:
    env = {
        **os.environ,
        "DATABASE_URL": database_url(),
        "MEDIA_ROOT": str(settings.MEDIA_ROOT),
        "WORK_DIR": str(settings.WORK_DIR),
        "WORKER_BEAT_SECONDS": "0.5",
        "WORKER_HOUSEKEEPING_SECONDS": "3600",
        "LOG_LEVEL": "INFO",  # "Starting worker": db_worker handles SIGTERM from then on
    }
    return subprocess.Popen(
        [sys.executable, "manage.py", "worker", "--interval", "0.2"],
        cwd=ROOT,
        env=env,
        stdout=open(tmp_path / "worker.log", "w"),  # noqa: SIM115 - closed with the process
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def wait_for(predicate, timeout=60.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.2)
    return False


def test_healthz_follows_a_real_worker_process(client, settings, tmp_path):
    settings.HEALTH_WORKER_STALE_SECONDS = 3
    assert client.get("/healthz").status_code == 503  # no worker yet

    worker = start_worker(tmp_path)
    try:
        assert wait_for(lambda: client.get("/healthz").status_code == 200), (
            tmp_path / "worker.log"
        ).read_text()
        row = WorkerHeartbeat.objects.get()
        assert row.worker_id.endswith(f":{worker.pid}")
        first_beat = row.beat_at
        assert wait_for(
            lambda: WorkerHeartbeat.objects.get().beat_at > first_beat, timeout=10
        )  # it keeps beating

        log = tmp_path / "worker.log"
        assert wait_for(lambda: "Starting worker" in log.read_text()), log.read_text()
        os.killpg(worker.pid, signal.SIGTERM)  # a clean stop removes its beat at once
        worker.wait(30)
        assert not WorkerHeartbeat.objects.exists()
        assert client.get("/healthz").status_code == 503

        worker = start_worker(tmp_path)
        assert wait_for(lambda: client.get("/healthz").status_code == 200)
        os.killpg(worker.pid, signal.SIGKILL)  # killed: the row stays and goes stale
        worker.wait(30)
        assert WorkerHeartbeat.objects.count() == 1
        assert wait_for(lambda: client.get("/healthz").status_code == 503, timeout=15)
        assert client.get("/healthz").json()["checks"]["workers"]["alive"] == 0
    finally:
        if worker.poll() is None:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait(30)
