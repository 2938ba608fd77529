"""Several threads logging to one run through the MLflow API at once (the issue asks for it on
PostgreSQL; it runs on either database): every point and every artifact is kept."""

import threading

import pytest
from django.db import connection
from django.test import Client

from runs.models import MetricPoint, Run, RunMetric

from .conftest import Mlflow, token_of

THREADS = 6
POINTS = 40

pytestmark = pytest.mark.django_db(transaction=True)


def test_concurrent_logging_to_one_run_loses_nothing(baselines, user):
    token = token_of(user)
    run_id = Mlflow(Client(), token).create_run()
    failures = []
    start = threading.Barrier(THREADS)

    def log(worker: int):
        api = Mlflow(Client(), token)
        try:
            start.wait()
            points = [
                {
                    "key": "loss",
                    "value": worker + s / 100,
                    "timestamp": 1_000 + s,
                    "step": worker * POINTS + s,
                }
                for s in range(POINTS)
            ]
            for half in (points[: POINTS // 2], points[POINTS // 2 :]):
                response = api.post("runs/log-batch", {"run_id": run_id, "metrics": half})
                if response.status_code != 200:
                    failures.append(response.content)
            response = api.put_artifact(f"runs/{run_id}/part-{worker}.txt", str(worker).encode())
            if response.status_code != 200:
                failures.append(response.content)
        finally:
            connection.close()

    threads = [threading.Thread(target=log, args=(w,)) for w in range(THREADS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert failures == []
    assert MetricPoint.objects.filter(run_id=run_id, key="loss").count() == THREADS * POINTS
    latest = RunMetric.objects.get(run_id=run_id, key="loss")
    assert latest.step == THREADS * POINTS - 1  # the highest step wins, whatever the order
    files = Run.objects.get(pk=run_id).artifacts_json["files"]
    assert sorted(files) == sorted(f"part-{w}.txt" for w in range(THREADS))
