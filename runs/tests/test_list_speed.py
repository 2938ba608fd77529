"""The cheap path of the API's run list (issue #15 §1's latency targets, bench/README.md §1): it
reads RunQuerySet.for_list_rows and serialises with runs.list_rows. It must give exactly what
the general path gives, at a fixed number of queries. The recipe list's cheap path is tested in
recipes/tests/test_list_speed.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from django.utils import timezone
from rest_framework.serializers import ModelSerializer

from recipes.models import Recipe
from runs.list_rows import run_rows
from runs.models import Dataset, Run, RunMetric
from runs.selectors import run_search
from runs.serializers import RunSerializer
from runs.tests.factories import register

API = "/api/ml-development"
T0 = datetime(2026, 3, 1, 9, 30, 15, 123456, tzinfo=UTC)


def full_run(user, n: int, **fields) -> Run:
    """A run with every field the list shows set: metrics, params, checks with a critical and
    a warning breach (integer thresholds, which DRF shows as floats), stages, times with
    microseconds, a model, a dataset, a retried run, an error."""
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    values = {
        "id": f"run_speed_{n:03d}",
        "recipe": recipe,
        "recipe_version": recipe.current_version,
        "number": n,
        "run_type": "eval",
        "status": "succeeded",
        "outcome": "critical",
        "executor": "external",
        "params_json": {"synthetic": {"rows": 500, "seed": n}, "depth": 6},
        "metrics_json": {"MAPE": 0.31, "bias": 2, "coverage": 0.9},
        "metric_checks_json": {
            "MAPE": {"value": 0.31, "status": "critical", "threshold_warning": 0.2, "threshold_critical": 1},
            "bias": {"value": 2, "status": "warning", "threshold_warning": 1, "direction": "lower"},
            "coverage": {"value": 0.9, "status": "pass", "threshold_warning": 0.8},
        },
        "artifacts_json": {"predictions.csv": {"sha256": "0" * 64, "size": 10}},
        "stages_json": [
            {"name": "quality", "status": "succeeded"},
            {"name": "training", "status": "skipped"},
            {"name": "evaluation", "status": "running"},
        ],
        "current_stage": "evaluation",
        "error": "a note from the runner",
        "cancel_requested": True,
        "heartbeat_at": T0 + timedelta(minutes=n, seconds=30),
        "started_at": T0 + timedelta(minutes=n),
        "finished_at": T0 + timedelta(minutes=n, seconds=42, microseconds=7),
        "created_by": user,
        **fields,
    }
    run = Run.objects.create(**values)
    # created_at is auto_now_add: set it so the list's newest-first order is known.
    Run.objects.filter(pk=run.pk).update(created_at=T0 + timedelta(minutes=n))
    return run


@pytest.fixture
def runs(baselines, user):
    model = register(user)
    dataset = Dataset.objects.create(
        id="ds_speed", name="speed", file="datasets/speed.csv", format="csv", sha256="1" * 64
    )
    first = full_run(user, 1, model=model, dataset=dataset)
    return [
        first,
        full_run(user, 2, model=model, retry_of=first),
        full_run(user, 3, status="running", outcome="", finished_at=None, metric_checks_json={}),
        full_run(user, 4, status="queued", outcome="", started_at=None, finished_at=None, heartbeat_at=None),
    ]


def drf(run: Run) -> dict:
    """DRF's own generic representation (not RunSerializer's per-field plan) of a fully loaded run."""
    return dict(ModelSerializer.to_representation(RunSerializer(), run))


def test_list_rows_equal_drfs_representation_of_every_field(runs, monkeypatch):
    # A running run's duration counts up to now: a frozen clock for both representations.
    monkeypatch.setattr(timezone, "now", lambda: T0 + timedelta(hours=1))
    full = list(Run.objects.select_related("recipe", "recipe_version").order_by("-created_at"))
    rows = run_rows(Run.objects.for_list_rows().order_by("-created_at"))
    assert rows == [drf(run) for run in full]
    assert rows == [dict(item) for item in RunSerializer(full, many=True).data]
    first = rows[-1]
    assert first["breaches"] == [
        {"metric": "MAPE", "value": 0.31, "status": "critical", "threshold": 1.0, "direction": None},
        {"metric": "bias", "value": 2.0, "status": "warning", "threshold": 1.0, "direction": "lower"},
    ]
    assert first["progress"] == {"current_stage": "evaluation", "done": 2, "total": 3}
    assert first["model_id"] and first["dataset_id"] == "ds_speed" and first["duration_seconds"] == 42.000007
    assert rows[1]["duration_seconds"] == 3600 - 3 * 60  # the running run, by the frozen clock
    assert first["finished_at"] == "2026-03-01T09:31:57.123463Z"
    # The floats survive as floats in the JSON, as DRF wrote them.
    assert '"threshold": 1.0' in json.dumps(first)


def test_for_list_rows_fetches_everything_a_row_shows_in_one_query(runs, django_assert_num_queries):
    with django_assert_num_queries(1):
        rows = run_rows(Run.objects.for_list_rows().order_by("-created_at"))
    assert len(rows) == len(runs)


def test_for_list_rows_joins_only_the_recipe_and_the_version(runs):
    sql = str(Run.objects.for_list_rows().query)
    assert "ml_recipe" in sql and "ml_recipe_version" in sql
    assert "ml_model" not in sql and "ml_dataset" not in sql and "plots_json" not in sql


def test_a_metric_ordered_search_over_list_rows_needs_no_query_per_row(runs, django_assert_num_queries):
    # (the tracking rows directly: logging to a finished run is refused)
    RunMetric.objects.bulk_create(
        RunMetric(run=run, key="MAPE", value=mape, timestamp=1)
        for run, mape in zip(runs, [0.3, 0.1, 0.2, 0.4], strict=True)
    )
    result = run_search(Run.objects.for_list_rows(), order_by="metrics.MAPE")
    with django_assert_num_queries(1):
        rows = run_rows(result[0:3])
    assert [row["number"] for row in rows] == [2, 3, 1]


def test_the_run_list_api_costs_the_same_queries_for_many_runs(
    api_client, runs, user, django_assert_max_num_queries
):
    for n in range(5, 40):
        full_run(user, n)
    # the count and the page (the client is force-authenticated: no session)
    with django_assert_max_num_queries(2):
        body = api_client.get(f"{API}/runs?page_size=50").json()
    assert body["count"] == 39
    assert [row["number"] for row in body["results"][:2]] == [39, 38]
