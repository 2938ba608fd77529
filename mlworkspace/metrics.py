"""Prometheus metrics at `/metrics` (prometheus-client).

Two kinds of figures, because the web server (gunicorn, several worker processes) and the
run workers (`manage.py worker`, on this machine or others) are separate processes:

* **From the database, at scrape time** (`DatabaseCollector`): runs by family, type, status
  and outcome, run durations by family, the task queue, firing alerts, live workers. The
  database is the one place every process writes to, so any web process answers the same
  numbers, however many there are and wherever the workers run; nothing is lost when a
  process restarts.
* **In-process** (`REQUESTS`, `REQUEST_SECONDS`, `CHECK_SECONDS`): HTTP requests and
  monitoring-check durations are events, not rows. Under gunicorn, `make run` sets
  PROMETHEUS_MULTIPROC_DIR, so prometheus-client's multiprocess mode writes each process's
  values to files there and a scrape of any web process sums all of them (run workers on
  the same machine share the directory, so scheduled checks count too; workers on other
  machines would need their own exporter). Without the variable (runserver, tests) the
  values are this process's.

Access: `Authorization: Bearer $METRICS_TOKEN`. With no METRICS_TOKEN set, /metrics is 404
(off), so a default install exposes nothing; a wrong or missing token is 401.
"""

from __future__ import annotations

import functools
import hmac
import os
import time
from collections.abc import Iterator
from datetime import timedelta

from django.conf import settings
from django.db import DatabaseError
from django.db.models import Count, DurationField, ExpressionWrapper, F, Q, Sum
from django.http import Http404, HttpResponse, JsonResponse
from django.utils import timezone
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_safe
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector

from mlworkspace.health import queue_counts_by_queue, workers_by_queue
from mlworkspace.models import WorkerHeartbeat
from models_registry.models import ModelStatus
from monitoring.models import Alert, AlertState
from runs.models import Run, RunStatus

MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))
METHODS = {"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"}

# registry=None: not on prometheus-client's global registry; each scrape builds its own.
REQUESTS = Counter(
    "mlworkspace_http_requests",
    "HTTP responses, by method, view (the URL pattern's name) and status code.",
    ["method", "view", "status"],
    registry=None,
)
REQUEST_SECONDS = Histogram(
    "mlworkspace_http_request_duration_seconds",
    "Time to answer an HTTP request, by method and view.",
    ["method", "view"],
    buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
    registry=None,
)
CHECK_SECONDS = Histogram(
    "mlworkspace_monitoring_check_duration_seconds",
    "Time a monitoring check took, by model family and source (check = on demand, scheduled).",
    ["family", "source"],
    buckets=(0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
    registry=None,
)
IN_PROCESS = (REQUESTS, REQUEST_SECONDS, CHECK_SECONDS)

# Run durations (seconds) of finished runs; the +Inf bucket is added below.
RUN_BUCKETS = (1, 5, 15, 30, 60, 120, 300, 600, 1800, 3600, 7200)


def _view_label(request) -> str:
    match = getattr(request, "resolver_match", None)
    if match is not None:
        # A pattern's name (or its route): a bounded set, unlike raw paths full of ids.
        return match.view_name or match.route or "<unnamed>"
    if request.path.startswith(settings.STATIC_URL):
        return "<static>"
    return "<unmatched>"


class RequestMetricsMiddleware:
    """Counts and times every response (first in MIDDLEWARE, so WhiteNoise's and the
    security middleware's own answers count too)."""

    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        started = time.perf_counter()
        response = self.get_response(request)
        method = request.method if request.method in METHODS else "other"
        view = _view_label(request)
        REQUESTS.labels(method=method, view=view, status=str(response.status_code)).inc()
        REQUEST_SECONDS.labels(method=method, view=view).observe(time.perf_counter() - started)
        return response


def timed_check(func):
    """Decorator for monitoring.services.model_check: observes CHECK_SECONDS, failed checks too."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        started = time.perf_counter()
        try:
            return func(*args, **kwargs)
        finally:
            model = kwargs.get("model")
            family = getattr(getattr(model, "recipe", None), "model_family", "") or "unknown"
            CHECK_SECONDS.labels(family=family, source=kwargs.get("source", "check")).observe(
                time.perf_counter() - started
            )

    return wrapper


class DatabaseCollector(Collector):
    """The figures that live in the database, computed when Prometheus scrapes."""

    def collect(self) -> Iterator:
        up = GaugeMetricFamily("mlworkspace_database_up", "1 if the database answered this scrape.")
        try:
            families = list(self._from_database())
        except DatabaseError:
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        yield from families

    def _from_database(self) -> Iterator:
        now = timezone.now()

        runs = GaugeMetricFamily(
            "mlworkspace_runs",
            "Runs in the database, by model family, run type, status and outcome (ok/warning/"
            "critical for a succeeded run checked against its targets; empty otherwise).",
            labels=["family", "run_type", "status", "outcome"],
        )
        rows = (
            Run.objects.values("recipe__model_family", "run_type", "status", "outcome")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in rows:
            runs.add_metric(
                [row["recipe__model_family"], row["run_type"], row["status"], row["outcome"]], row["n"]
            )
        yield runs

        durations = HistogramMetricFamily(
            "mlworkspace_run_duration_seconds",
            "Wall time of finished runs (started to finished), by model family, run type and status.",
            labels=["family", "run_type", "status"],
        )
        duration = ExpressionWrapper(F("finished_at") - F("started_at"), output_field=DurationField())
        buckets = {
            f"le_{i}": Count("id", filter=Q(d__lte=timedelta(seconds=b))) for i, b in enumerate(RUN_BUCKETS)
        }
        rows = (
            Run.objects.filter(
                status__in=[RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED],
                started_at__isnull=False,
                finished_at__isnull=False,
            )
            .annotate(d=duration)
            .values("recipe__model_family", "run_type", "status")
            .annotate(n=Count("id"), total=Sum("d"), **buckets)
            .order_by()
        )
        for row in rows:
            cumulative = [(str(float(b)), row[f"le_{i}"]) for i, b in enumerate(RUN_BUCKETS)]
            cumulative.append(("+Inf", row["n"]))
            total = row["total"].total_seconds() if row["total"] is not None else 0.0
            durations.add_metric(
                [row["recipe__model_family"], row["run_type"], row["status"]], cumulative, total
            )
        yield durations

        # Per queue (mlworkspace.queues); sum() over `queue` for the whole.
        queue = GaugeMetricFamily(
            "mlworkspace_task_queue_depth", "Tasks waiting for a worker.", labels=["queue"]
        )
        busy = GaugeMetricFamily(
            "mlworkspace_task_queue_running", "Tasks a worker is executing.", labels=["queue"]
        )
        age = GaugeMetricFamily(
            "mlworkspace_task_queue_oldest_age_seconds",
            "Age of the oldest waiting task (0 when none).",
            labels=["queue"],
        )
        for name, (depth, running, oldest) in queue_counts_by_queue().items():
            queue.add_metric([name], depth)
            busy.add_metric([name], running)
            age.add_metric([name], (now - oldest).total_seconds() if oldest else 0.0)
        yield queue
        yield busy
        yield age

        alerts = GaugeMetricFamily(
            "mlworkspace_alerts_firing",
            "Monitoring alerts firing now on production models, by model family and severity.",
            labels=["family", "severity"],
        )
        rows = (
            # A model that left production is no longer checked: its last alerts stay as they
            # were on its page, but nobody is paged for them.
            Alert.objects.filter(state=AlertState.FIRING, model__status=ModelStatus.PRODUCTION)
            .values("model__recipe__model_family", "severity")
            .annotate(n=Count("id"))
            .order_by()
        )
        for row in rows:
            alerts.add_metric([row["model__recipe__model_family"], row["severity"]], row["n"])
        yield alerts

        cutoff = now - timedelta(seconds=settings.HEALTH_WORKER_STALE_SECONDS)
        workers = GaugeMetricFamily(
            "mlworkspace_workers_alive",
            "Workers whose heartbeat is younger than HEALTH_WORKER_STALE_SECONDS.",
        )
        workers.add_metric([], WorkerHeartbeat.objects.filter(beat_at__gte=cutoff).count())
        yield workers
        serving = GaugeMetricFamily(
            "mlworkspace_queue_workers_alive",
            "Live workers serving each queue (a worker serving several counts in each).",
            labels=["queue"],
        )
        for name, n in workers_by_queue(now).items():
            serving.add_metric([name], n)
        yield serving
        newest = WorkerHeartbeat.objects.order_by("-beat_at").values_list("beat_at", flat=True).first()
        if newest is not None:
            beat = GaugeMetricFamily(
                "mlworkspace_worker_heartbeat_age_seconds", "Age of the newest worker heartbeat."
            )
            beat.add_metric([], max(0.0, (now - newest).total_seconds()))
            yield beat


def scrape_registry() -> CollectorRegistry:
    registry = CollectorRegistry()  # no auto-describe: registering must not query the database
    if MULTIPROCESS:
        MultiProcessCollector(registry)
    else:
        for metric in IN_PROCESS:
            registry.register(metric)
    registry.register(DatabaseCollector())
    return registry


def _authorized(request) -> bool:
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    return scheme.lower() == "bearer" and hmac.compare_digest(
        given.strip().encode(), settings.METRICS_TOKEN.encode()
    )


@require_safe
@never_cache
def metrics(request):
    """Prometheus text format; 404 when METRICS_TOKEN is unset, 401 without the right bearer token."""
    if not settings.METRICS_TOKEN:
        raise Http404
    if not _authorized(request):
        response = JsonResponse({"detail": "A valid bearer token is required for /metrics."}, status=401)
        response["WWW-Authenticate"] = 'Bearer realm="metrics"'
        return response
    return HttpResponse(generate_latest(scrape_registry()), content_type=CONTENT_TYPE_LATEST)
