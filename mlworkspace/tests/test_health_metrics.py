"""/healthz (database, worker heartbeat, queue) and /metrics (token, figures from seeded rows)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import OperationalError, connection
from django.tasks import TaskResultStatus
from django.utils import timezone
from django_tasks_db.models import DBTaskResult
from prometheus_client.parser import text_string_to_metric_families

from mlworkspace import health, metrics
from mlworkspace.models import WorkerHeartbeat
from models_registry.models import MLModel, ModelStatus
from monitoring.models import Alert
from recipes.models import Recipe
from runs.models import Run
from runs.tests.factories import register

TOKEN = "s3cret-metrics-token"


def beat(worker: str, age_seconds: float, queues: str = "training,scoring,monitoring") -> None:
    at = timezone.now() - timedelta(seconds=age_seconds)
    WorkerHeartbeat.objects.create(worker_id=worker, started_at=at, beat_at=at, queues=queues)


def task(status: str, enqueued_ago: float = 0, queue: str = "training") -> DBTaskResult:
    row = DBTaskResult.objects.create(
        status=status,
        args_kwargs={"args": [], "kwargs": {}},
        task_path="runs.tasks.execute",
        backend_name="default",
        queue_name=queue,
        run_after=timezone.now(),
        exception_class_path="",
        traceback="",
    )
    DBTaskResult.objects.filter(pk=row.pk).update(
        enqueued_at=timezone.now() - timedelta(seconds=enqueued_ago)
    )
    return row


# --- /healthz -----------------------------------------------------------------------------------


@pytest.mark.django_db
def test_healthz_is_200_with_a_live_worker_and_reports_the_queue(client):
    beat("host-a:1", age_seconds=5)
    beat("host-b:2", age_seconds=600)  # an old one does not count as alive
    task(TaskResultStatus.READY, enqueued_ago=120)
    task(TaskResultStatus.READY, enqueued_ago=10)
    task(TaskResultStatus.RUNNING)
    task(TaskResultStatus.SUCCESSFUL)

    response = client.get("/healthz")

    assert response.status_code == 200
    assert response["Cache-Control"].startswith("max-age=0")
    body = response.json()
    assert body["status"] == "ok"
    assert body["checks"]["database"]["ok"] is True
    workers = body["checks"]["workers"]
    assert workers["alive"] == 1 and workers["ok"] is True
    assert 4 <= workers["newest_beat_age_seconds"] < 30
    queue = body["checks"]["queue"]
    assert queue["depth"] == 2 and queue["running"] == 1
    assert 119 <= queue["oldest_queued_age_seconds"] < 150


@pytest.mark.django_db
def test_healthz_reports_each_queue_with_the_workers_serving_it(client, settings):
    settings.HEALTH_WORKER_STALE_SECONDS = 60
    beat("host-a:1", age_seconds=5, queues="training,scoring")
    beat("host-b:2", age_seconds=5, queues="monitoring")
    beat("host-c:3", age_seconds=600, queues="monitoring")  # stale: serves nothing
    task(TaskResultStatus.READY, enqueued_ago=40, queue="scoring")
    task(TaskResultStatus.READY, enqueued_ago=5, queue="scoring")
    task(TaskResultStatus.RUNNING, queue="training")
    task(TaskResultStatus.READY, enqueued_ago=300, queue="default")  # enqueued before the queues

    queue = client.get("/healthz").json()["checks"]["queue"]

    assert (queue["depth"], queue["running"]) == (3, 1)
    assert 299 <= queue["oldest_queued_age_seconds"] < 330
    by_queue = queue["queues"]
    assert set(by_queue) == {"training", "scoring", "monitoring", "default"}
    assert by_queue["scoring"]["depth"] == 2 and 39 <= by_queue["scoring"]["oldest_queued_age_seconds"] < 70
    assert (by_queue["training"]["depth"], by_queue["training"]["running"]) == (0, 1)
    assert by_queue["training"]["oldest_queued_age_seconds"] is None
    assert {q: v["workers"] for q, v in by_queue.items()} == {
        "training": 1,
        "scoring": 1,
        "monitoring": 1,
        "default": 0,
    }


@pytest.mark.django_db
def test_healthz_is_503_when_the_newest_worker_beat_is_stale(client, settings):
    settings.HEALTH_WORKER_STALE_SECONDS = 60
    beat("host-a:1", age_seconds=90)

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "fail"
    assert body["checks"]["workers"] == {
        "ok": False,
        "alive": 0,
        "newest_beat_age_seconds": pytest.approx(90, abs=5),
        "stale_after_seconds": 60,
    }
    assert body["checks"]["database"]["ok"] is True


@pytest.mark.django_db
def test_healthz_without_any_worker_is_503_unless_workers_are_not_required(client, settings):
    assert client.get("/healthz").status_code == 503
    settings.HEALTH_REQUIRE_WORKER = False
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.json()["checks"]["workers"]["alive"] == 0


@pytest.mark.django_db
def test_healthz_is_503_when_the_database_is_unreachable(client, monkeypatch):
    def refuse():
        raise OperationalError('connection to server at "db.internal" failed: /var/run/secret path')

    monkeypatch.setattr(connection, "ensure_connection", refuse)

    response = client.get("/healthz")

    assert response.status_code == 503
    body = response.json()
    assert body == {"status": "fail", "checks": {"database": {"ok": False, "error": "database unreachable"}}}
    assert "db.internal" not in response.content.decode()  # no host names or paths leak


@pytest.mark.django_db
def test_healthz_needs_no_sign_in_and_only_answers_reads(client):
    beat("host-a:1", age_seconds=1)
    assert client.get("/healthz").status_code == 200
    assert client.post("/healthz").status_code == 405


@pytest.mark.django_db(transaction=True)
def test_worker_heartbeat_thread_beats_and_removes_its_row_on_stop():
    beater = health.WorkerHeartbeatThread(interval=3600).start()
    row = WorkerHeartbeat.objects.get(pk=beater.worker)
    assert timezone.now() - row.beat_at < timedelta(seconds=5)
    first = row.beat_at
    beater.beat_once()
    assert WorkerHeartbeat.objects.get(pk=beater.worker).beat_at >= first
    assert WorkerHeartbeat.objects.count() == 1  # updated in place
    beater.stop()
    assert not WorkerHeartbeat.objects.filter(pk=beater.worker).exists()


@pytest.mark.django_db
def test_a_beat_prunes_rows_of_workers_dead_for_a_day():
    beat("dead:1", age_seconds=2 * 24 * 3600)
    beat("recent:2", age_seconds=3600)
    health.worker_beat("alive:3", started_at=timezone.now())
    assert set(WorkerHeartbeat.objects.values_list("worker_id", flat=True)) == {"recent:2", "alive:3"}


# --- /metrics -----------------------------------------------------------------------------------


def scrape(client, token: str | None = TOKEN):
    headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}
    return client.get("/metrics", **headers)


def samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


@pytest.mark.django_db
def test_metrics_is_off_404_without_a_configured_token(client, settings):
    settings.METRICS_TOKEN = ""
    assert scrape(client).status_code == 404
    assert scrape(client, token=None).status_code == 404


@pytest.mark.django_db
def test_metrics_needs_the_bearer_token(client, settings):
    settings.METRICS_TOKEN = TOKEN
    for response in (
        scrape(client, token=None),
        scrape(client, token="wrong"),
        client.get("/metrics", HTTP_AUTHORIZATION=f"Basic {TOKEN}"),
    ):
        assert response.status_code == 401
        assert response["WWW-Authenticate"] == 'Bearer realm="metrics"'
        assert "mlworkspace_" not in response.content.decode()
    ok = scrape(client)
    assert ok.status_code == 200
    assert ok["Content-Type"].startswith("text/plain")


def _run(recipe: Recipe, number: int, status: str, seconds: float | None, outcome: str = "") -> Run:
    start = timezone.now() - timedelta(hours=1)
    return Run.objects.create(
        id=f"run_metrics_{recipe.pk}_{number}",
        number=number,
        recipe=recipe,
        recipe_version=recipe.current_version,
        run_type="train",
        status=status,
        outcome=outcome,
        started_at=start if seconds is not None or status == "running" else None,
        finished_at=start + timedelta(seconds=seconds) if seconds is not None else None,
    )


@pytest.mark.django_db
def test_metrics_report_runs_durations_queue_alerts_and_workers_from_the_database(
    client, settings, user, baselines
):
    settings.METRICS_TOKEN = TOKEN
    pricing = Recipe.objects.get(pk="recipe_pricing_base")
    nba = Recipe.objects.get(pk="recipe_nba_base")
    _run(pricing, 1, "succeeded", 10, outcome="ok")
    _run(pricing, 2, "succeeded", 100, outcome="ok")
    _run(pricing, 3, "failed", 2)
    _run(nba, 1, "succeeded", 700, outcome="warning")
    _run(nba, 2, "running", None)
    _run(nba, 3, "queued", None)
    model = register(user, "recipe_pricing_base")
    MLModel.objects.filter(pk=model.pk).update(status=ModelStatus.PRODUCTION)
    retired = register(user, "recipe_pricing_base")  # left production: its alert is not paged
    MLModel.objects.filter(pk=retired.pk).update(status=ModelStatus.ARCHIVED)
    now = timezone.now()
    for owner, name, severity, state in [
        (model, "mape", "critical", "firing"),
        (model, "drift", "warning", "firing"),
        (model, "x", "warning", "resolved"),
        (retired, "mape", "critical", "firing"),
    ]:
        Alert.objects.create(
            model=owner,
            name=name,
            severity=severity,
            state=state,
            condition="c",
            fired_at=now,
            resolved_at=now if state == "resolved" else None,
        )
    task(TaskResultStatus.READY, enqueued_ago=30)
    task(TaskResultStatus.RUNNING)
    beat("host-a:1", age_seconds=3)

    response = scrape(client)

    assert response.status_code == 200
    values = samples(response.content.decode())

    def value(name, **labels):
        return values.get((name, tuple(sorted(labels.items()))))

    assert value("mlworkspace_database_up") == 1
    run = "mlworkspace_runs"
    assert value(run, family="pricing", run_type="train", status="succeeded", outcome="ok") == 2
    assert value(run, family="pricing", run_type="train", status="failed", outcome="") == 1
    assert value(run, family="next_best_action", run_type="train", status="succeeded", outcome="warning") == 1
    assert value(run, family="next_best_action", run_type="train", status="running", outcome="") == 1
    assert value(run, family="next_best_action", run_type="train", status="queued", outcome="") == 1

    hist = "mlworkspace_run_duration_seconds"
    ok = {"family": "pricing", "run_type": "train", "status": "succeeded"}
    assert value(f"{hist}_count", **ok) == 2
    assert value(f"{hist}_sum", **ok) == pytest.approx(110)
    assert value(f"{hist}_bucket", le="5.0", **ok) == 0
    assert value(f"{hist}_bucket", le="15.0", **ok) == 1
    assert value(f"{hist}_bucket", le="120.0", **ok) == 2
    assert value(f"{hist}_bucket", le="+Inf", **ok) == 2
    nba_ok = {"family": "next_best_action", "run_type": "train", "status": "succeeded"}
    assert value(f"{hist}_bucket", le="600.0", **nba_ok) == 0
    assert value(f"{hist}_bucket", le="1800.0", **nba_ok) == 1
    # Unfinished runs have no duration.
    assert value(f"{hist}_count", family="next_best_action", run_type="train", status="running") is None

    assert value("mlworkspace_task_queue_depth", queue="training") == 1
    assert value("mlworkspace_task_queue_running", queue="training") == 1
    assert 29 <= value("mlworkspace_task_queue_oldest_age_seconds", queue="training") < 60
    assert value("mlworkspace_task_queue_depth", queue="scoring") == 0  # every queue, also empty
    assert value("mlworkspace_task_queue_oldest_age_seconds", queue="monitoring") == 0
    assert value("mlworkspace_alerts_firing", family="pricing", severity="critical") == 1
    assert value("mlworkspace_alerts_firing", family="pricing", severity="warning") == 1
    assert value("mlworkspace_workers_alive") == 1
    assert value("mlworkspace_queue_workers_alive", queue="monitoring") == 1
    assert 2 <= value("mlworkspace_worker_heartbeat_age_seconds") < 30


@pytest.mark.django_db
def test_metrics_count_requests_by_view_and_status(client, settings, user):
    settings.METRICS_TOKEN = TOKEN
    labels = {"method": "GET", "view": "healthz", "status": "503"}
    before = samples(scrape(client).content.decode()).get(
        ("mlworkspace_http_requests_total", tuple(sorted(labels.items()))), 0
    )
    client.get("/healthz")  # no worker: 503
    client.get("/healthz")
    client.get("/no/such/page/123")

    values = samples(scrape(client).content.decode())

    assert values[("mlworkspace_http_requests_total", tuple(sorted(labels.items())))] == before + 2
    unmatched = {"method": "GET", "view": "<unmatched>", "status": "404"}
    assert values[("mlworkspace_http_requests_total", tuple(sorted(unmatched.items())))] >= 1
    # Paths with ids never become labels.
    assert not any("123" in dict(key[1]).get("view", "") for key in values)


@pytest.mark.django_db
def test_check_durations_are_observed_by_family_and_source_even_when_the_check_fails(
    client, settings, user, baselines
):
    settings.METRICS_TOKEN = TOKEN
    model = register(user, "recipe_pricing_base")
    key = (
        "mlworkspace_monitoring_check_duration_seconds_count",
        (("family", "pricing"), ("source", "scheduled")),
    )
    before = samples(scrape(client).content.decode()).get(key, 0)

    @metrics.timed_check
    def check(*, model, source="check"):
        if source == "scheduled":
            raise ValueError("no data")
        return "snapshot"

    with pytest.raises(ValueError):
        check(model=model, source="scheduled")
    assert check(model=model, source="check") == "snapshot"

    values = samples(scrape(client).content.decode())
    assert values[key] == before + 1
    assert (
        values[
            (
                "mlworkspace_monitoring_check_duration_seconds_count",
                (("family", "pricing"), ("source", "check")),
            )
        ]
        >= 1
    )


@pytest.mark.django_db
def test_metrics_say_database_down_instead_of_failing(client, settings, monkeypatch):
    settings.METRICS_TOKEN = TOKEN

    def broken(self):
        raise OperationalError("gone")
        yield  # pragma: no cover

    monkeypatch.setattr(metrics.DatabaseCollector, "_from_database", broken)
    response = scrape(client)
    assert response.status_code == 200
    values = samples(response.content.decode())
    assert values[("mlworkspace_database_up", ())] == 0
    assert not any(name == "mlworkspace_runs" for name, _ in values)
