"""`/healthz` for load balancers and operators, and the workers' heartbeat it reads.

Healthy (200) means: the database answers, at least one `manage.py worker` has beaten within
HEALTH_WORKER_STALE_SECONDS (unless HEALTH_REQUIRE_WORKER is off) — otherwise queued runs
would wait forever. Anything else is 503, with the same JSON body saying which check failed:

    {"status": "ok" | "fail",
     "checks": {"database": {"ok": true, "latency_ms": 0.4},
                "workers": {"ok": true, "alive": 2, "newest_beat_age_seconds": 3.1,
                            "stale_after_seconds": 60},
                "queue": {"ok": true, "depth": 0, "running": 1, "oldest_queued_age_seconds": null}}}

The queue depth (task rows waiting in django-tasks-db) is reported, not judged: a long queue
is a capacity question for /metrics and alerting, not a reason to take the web server out of
a load balancer.

Workers beat from a thread (`WorkerHeartbeatThread`), independently of the runs they
execute (a run has its own heartbeat, `Run.heartbeat_at`, which the reaper reads): an idle
worker is alive too.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from datetime import datetime, timedelta

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection
from django.http import JsonResponse
from django.tasks import TaskResultStatus
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_tasks_db.models import DBTaskResult

from mlworkspace.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

# Rows of workers that died without deleting theirs are pruned after this long.
PRUNE_AFTER = timedelta(days=1)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_beat(worker: str, *, started_at: datetime, now: datetime | None = None) -> None:
    """Record that ``worker`` is alive now (one row per worker, updated in place)."""
    now = now or timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker,
        defaults={"beat_at": now},
        create_defaults={"beat_at": now, "started_at": started_at},
    )
    WorkerHeartbeat.objects.filter(beat_at__lt=now - PRUNE_AFTER).delete()


def worker_gone(worker: str) -> None:
    """A worker stopping cleanly removes its row (it no longer counts as alive)."""
    WorkerHeartbeat.objects.filter(worker_id=worker).delete()


class WorkerHeartbeatThread:
    """Beats at start and then every ``interval`` seconds (WORKER_BEAT_SECONDS) from a daemon
    thread; ``stop()`` ends the beat and removes the worker's row."""

    def __init__(self, interval: float | None = None):
        self.interval = settings.WORKER_BEAT_SECONDS if interval is None else interval
        self.worker, self.started_at = worker_id(), timezone.now()
        self._stop = threading.Event()

    def beat_once(self) -> None:
        close_old_connections()
        try:
            worker_beat(self.worker, started_at=self.started_at)
        except DatabaseError:  # the database is away: /healthz says so; beat again later
            logger.warning("worker heartbeat failed", exc_info=True)
        finally:
            close_old_connections()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat_once()

    def start(self) -> WorkerHeartbeatThread:
        self.beat_once()
        threading.Thread(target=self._loop, name="worker-heartbeat", daemon=True).start()
        return self

    def stop(self) -> None:
        self._stop.set()
        try:
            worker_gone(self.worker)
        except DatabaseError:
            pass  # the row ages out: the worker counts as stale, then is pruned


def _database() -> dict:
    started = time.perf_counter()
    try:
        connection.ensure_connection()
        with connection.cursor() as cursor:
            cursor.execute("SELECT 1")
            cursor.fetchone()
    except DatabaseError as exc:
        logger.warning("healthz: database unreachable: %s", exc)
        # The exception's text may name hosts or paths: the body only says that it failed.
        return {"ok": False, "error": "database unreachable"}
    return {"ok": True, "latency_ms": round((time.perf_counter() - started) * 1000, 2)}


def _age(then: datetime | None, now: datetime) -> float | None:
    return None if then is None else round(max(0.0, (now - then).total_seconds()), 1)


def _workers(now: datetime) -> dict:
    stale_after = settings.HEALTH_WORKER_STALE_SECONDS
    cutoff = now - timedelta(seconds=stale_after)
    alive = WorkerHeartbeat.objects.filter(beat_at__gte=cutoff).count()
    newest = WorkerHeartbeat.objects.order_by("-beat_at").values_list("beat_at", flat=True).first()
    return {
        "ok": alive > 0 or not settings.HEALTH_REQUIRE_WORKER,
        "alive": alive,
        "newest_beat_age_seconds": _age(newest, now),
        "stale_after_seconds": stale_after,
    }


def queue_counts() -> tuple[int, int, datetime | None]:
    """(waiting, running, enqueued_at of the oldest waiting) of the task queue."""
    tasks = DBTaskResult.objects.filter(backend_name="default")
    waiting = tasks.filter(status=TaskResultStatus.READY)
    oldest = waiting.order_by("enqueued_at").values_list("enqueued_at", flat=True).first()
    return waiting.count(), tasks.filter(status=TaskResultStatus.RUNNING).count(), oldest


def _queue(now: datetime) -> dict:
    depth, running, oldest = queue_counts()
    return {"ok": True, "depth": depth, "running": running, "oldest_queued_age_seconds": _age(oldest, now)}


def health_report(now: datetime | None = None) -> tuple[bool, dict]:
    """(healthy, JSON body) — see the module docstring."""
    now = now or timezone.now()
    checks = {"database": _database()}
    if checks["database"]["ok"]:
        try:
            checks["workers"] = _workers(now)
            checks["queue"] = _queue(now)
        except DatabaseError:
            checks["database"] = {"ok": False, "error": "database query failed"}
    healthy = all(check["ok"] for check in checks.values())
    return healthy, {"status": "ok" if healthy else "fail", "checks": checks}


@require_safe
@never_cache
def healthz(request):
    """No sign-in (load balancers probe it); it shows counts and ages only, no names."""
    healthy, body = health_report()
    return JsonResponse(body, status=200 if healthy else 503)
