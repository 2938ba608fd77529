"""`/healthz` for load balancers and operators, and the workers' heartbeat it reads.

Healthy (200) means: the database answers, at least one `manage.py worker` has beaten within
HEALTH_WORKER_STALE_SECONDS (unless HEALTH_REQUIRE_WORKER is off) — otherwise queued runs
would wait forever. Anything else is 503, with the same JSON body saying which check failed:

    {"status": "ok" | "fail",
     "checks": {"database": {"ok": true, "latency_ms": 0.4},
                "workers": {"ok": true, "alive": 2, "newest_beat_age_seconds": 3.1,
                            "stale_after_seconds": 60},
                "queue": {"ok": true, "depth": 0, "running": 1, "oldest_queued_age_seconds": null,
                          "queues": {"training": {"depth": 0, "running": 1,
                                                  "oldest_queued_age_seconds": null, "workers": 2},
                                     "scoring": {...}, "monitoring": {...}}}}}

The queue depth (task rows waiting in django-tasks-db), in all and per queue
(mlworkspace.queues) with the live workers serving each, is reported, not judged: a long
queue, or one no worker serves, is a capacity question for /metrics and alerting, not a
reason to take the web server out of a load balancer.

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
from django.db.models import Count, Min
from django.http import JsonResponse
from django.tasks import TaskResultStatus
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from django_tasks_db.models import DBTaskResult

from mlworkspace import queues as task_queues
from mlworkspace.models import WorkerHeartbeat

logger = logging.getLogger(__name__)

# Rows of workers that died without deleting theirs are pruned after this long.
PRUNE_AFTER = timedelta(days=1)


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_beat(
    worker: str, *, started_at: datetime, queues=task_queues.ALL, now: datetime | None = None
) -> None:
    """Record that ``worker``, serving ``queues``, is alive now (one row per worker, updated
    in place)."""
    now = now or timezone.now()
    WorkerHeartbeat.objects.update_or_create(
        worker_id=worker,
        defaults={"beat_at": now},
        create_defaults={"beat_at": now, "started_at": started_at, "queues": ",".join(queues)},
    )
    WorkerHeartbeat.objects.filter(beat_at__lt=now - PRUNE_AFTER).delete()


def worker_gone(worker: str) -> None:
    """A worker stopping cleanly removes its row (it no longer counts as alive)."""
    WorkerHeartbeat.objects.filter(worker_id=worker).delete()


class WorkerHeartbeatThread:
    """Beats at start and then every ``interval`` seconds (WORKER_BEAT_SECONDS) from a daemon
    thread; ``stop()`` ends the beat and removes the worker's row."""

    def __init__(self, interval: float | None = None, queues=task_queues.ALL):
        self.interval = settings.WORKER_BEAT_SECONDS if interval is None else interval
        self.worker, self.started_at, self.queues = worker_id(), timezone.now(), tuple(queues)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def beat_once(self) -> None:
        close_old_connections()
        try:
            worker_beat(self.worker, started_at=self.started_at, queues=self.queues)
        except DatabaseError:  # the database is away: /healthz says so; beat again later
            logger.warning("worker heartbeat failed", exc_info=True)
        finally:
            close_old_connections()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.beat_once()

    def start(self) -> WorkerHeartbeatThread:
        self.beat_once()
        self._thread = threading.Thread(target=self._loop, name="worker-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        # A beat under way would write the row again after the delete below.
        if self._thread is not None:
            self._thread.join(timeout=30)
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


def _totals(by_queue: dict) -> tuple[int, int, datetime | None]:
    """(waiting, running, enqueued_at of the oldest waiting) of all the queues of
    queue_counts_by_queue's answer."""
    oldest = [o for _, _, o in by_queue.values() if o is not None]
    return (
        sum(d for d, _, _ in by_queue.values()),
        sum(r for _, r, _ in by_queue.values()),
        min(oldest) if oldest else None,
    )


def queue_counts_by_queue() -> dict[str, tuple[int, int, datetime | None]]:
    """{queue: (waiting, running, enqueued_at of the oldest waiting)}: every queue of
    mlworkspace.queues, and any other a task row names (e.g. ``default``, of rows enqueued
    before the queues existed), in one query."""
    counts = {q: [0, 0, None] for q in task_queues.ALL}
    rows = (
        DBTaskResult.objects.filter(
            backend_name="default", status__in=(TaskResultStatus.READY, TaskResultStatus.RUNNING)
        )
        .values("queue_name", "status")
        .annotate(n=Count("id"), oldest=Min("enqueued_at"))
        .order_by()
    )
    for row in rows:
        entry = counts.setdefault(row["queue_name"], [0, 0, None])
        if row["status"] == TaskResultStatus.READY:
            entry[0], entry[2] = row["n"], row["oldest"]
        else:
            entry[1] = row["n"]
    return {q: (d, r, o) for q, (d, r, o) in counts.items()}


def workers_by_queue(now: datetime) -> dict[str, int]:
    """{queue: live workers serving it} (a heartbeat younger than HEALTH_WORKER_STALE_SECONDS)."""
    cutoff = now - timedelta(seconds=settings.HEALTH_WORKER_STALE_SECONDS)
    served = {q: 0 for q in task_queues.ALL}
    for text in WorkerHeartbeat.objects.filter(beat_at__gte=cutoff).values_list("queues", flat=True):
        for q in text.split(","):
            if q in served:
                served[q] += 1
    return served


def _queue(now: datetime) -> dict:
    by_queue = queue_counts_by_queue()
    workers = workers_by_queue(now)
    depth, running, oldest = _totals(by_queue)
    return {
        "ok": True,
        "depth": depth,
        "running": running,
        "oldest_queued_age_seconds": _age(oldest, now),
        "queues": {
            q: {
                "depth": d,
                "running": r,
                "oldest_queued_age_seconds": _age(o, now),
                "workers": workers.get(q, 0),
            }
            for q, (d, r, o) in by_queue.items()
        },
    }


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
