"""An external run created with its results in one call (issue #15 §5): POST /runs with
"executor": "external" and its status, metrics_json, params and tags is one request and one
transaction (runs.services.run_start_external), searchable at once, and bad input is a 400
naming the field with nothing written."""

from __future__ import annotations

from urllib.parse import quote

import pytest
from rest_framework.test import APIClient

from audit.models import AuditEvent
from mlworkspace.errors import InvalidInput
from recipes.models import Recipe
from runs.models import MetricPoint, Run, RunMetric, RunParam, RunTag
from runs.services import run_start_external

URL = "/api/ml-development/runs"
pytestmark = pytest.mark.django_db

PARAMS = {"learning_rate": 0.05, "num_leaves": 31, "max_depth": 6, "feature_fraction": 0.8, "seed": 7}
# demand_mape 0.35 is past the pricing baseline's warning threshold; elasticity passes.
METRICS = {"elasticity": -1.7, "demand_mape": 0.35, "rmse": 2.5, "mae": 1.9, "r2": 0.61}


def body(**changes) -> dict:
    return {
        "recipe_id": "recipe_pricing_base",
        "executor": "external",
        "status": "succeeded",
        "params": PARAMS,
        "metrics_json": METRICS,
        "tags": {"team": "eu"},
        **changes,
    }


def rows() -> dict:
    """What a run's creation writes, counted."""
    return {
        model.__name__: model.objects.count()
        for model in (Run, RunParam, RunMetric, MetricPoint, RunTag, AuditEvent)
    }


def test_one_call_reports_a_finished_run_with_its_results(api_client, baselines):
    response = api_client.post(URL, body(), format="json")
    assert response.status_code == 201, response.json()
    out = response.json()
    run = Run.objects.get(pk=out["id"])
    assert (run.executor, run.status) == ("external", "succeeded")
    assert run.started_at is not None and run.finished_at is not None
    assert run.metrics_json == METRICS and run.params_json == PARAMS
    # The report's rules: each metric checked against the version's thresholds, the outcome.
    assert run.metric_checks_json["demand_mape"]["status"] == "warning"
    assert run.outcome == "warning"
    assert dict(RunParam.objects.filter(run=run).values_list("key", "value")) == {
        k: str(v) for k, v in PARAMS.items()
    }
    assert dict(RunMetric.objects.filter(run=run).values_list("key", "value")) == METRICS
    assert dict(RunTag.objects.filter(run=run).values_list("key", "value")) == {"team": "eu"}
    # Both steps audited, as a create followed by a PUT would be.
    assert list(
        AuditEvent.objects.filter(object_id=run.pk).order_by("at").values_list("action", flat=True)
    ) == [
        "run.start",
        "run.report",
    ]
    # The answer is the run as stored (it is not re-read after the create).
    assert out == api_client.get(f"{URL}/{run.pk}").json()


def test_params_metrics_and_tags_of_one_call_are_searchable(api_client, baselines):
    good = api_client.post(URL, body(), format="json").json()["id"]
    api_client.post(URL, body(metrics_json={**METRICS, "rmse": 9.0}), format="json")
    api_client.post(URL, body(params={**PARAMS, "max_depth": 8}), format="json")
    api_client.post(URL, body(tags={"team": "us"}), format="json")
    search = 'metrics.rmse < 3 and params.max_depth = 6 and params.learning_rate < 0.1 and tags.team = "eu"'
    response = api_client.get(f"{URL}?filter={quote(search)}")
    assert response.status_code == 200, response.json()
    assert [item["id"] for item in response.json()["results"]] == [good]


def test_without_results_an_external_run_stays_queued_with_searchable_params(api_client, baselines):
    response = api_client.post(
        URL, {"recipe_id": "recipe_pricing_base", "executor": "external", "params": PARAMS}, format="json"
    )
    assert response.status_code == 201, response.json()
    run = Run.objects.get(pk=response.json()["id"])
    assert run.status == "queued" and run.started_at is None
    assert RunParam.objects.filter(run=run).count() == len(PARAMS)
    assert not RunMetric.objects.filter(run=run).exists()


def test_nested_params_are_searchable_as_dotted_keys(api_client, baselines):
    params = {"model": {"depth": 6, "layers": [64, 32]}}
    run_id = api_client.post(URL, body(params=params), format="json").json()["id"]
    assert dict(RunParam.objects.filter(run_id=run_id).values_list("key", "value")) == {
        "model.depth": "6",
        "model.layers": "[64, 32]",
    }


def test_a_run_created_running_is_finished_later_with_put(api_client, baselines):
    response = api_client.post(URL, body(status="running", metrics_json={"rmse": 3.0}), format="json")
    run_id = response.json()["id"]
    assert response.json()["status"] == "running" and response.json()["finished_at"] is None
    done = api_client.put(f"{URL}/{run_id}", {"status": "failed", "error": "out of memory"}, format="json")
    assert done.status_code == 200, done.json()
    assert Run.objects.get(pk=run_id).status == "failed"


@pytest.mark.parametrize(
    "changes, path",
    [
        ({"metrics_json": {"rmse": "low"}}, "/metrics_json"),
        ({"metrics_json": {"rmse": True}}, "/metrics_json"),
        ({"metrics_json": [1, 2]}, "/metrics_json"),
        ({"status": "exploded"}, "/status"),
        ({"status": "cancelled"}, "/status"),
        ({"status": "queued"}, "/status"),
        ({"executor": "workspace"}, "/status"),
        ({"executor": "workspace", "status": None, "tags": None}, "/metrics_json"),
        ({"executor": "workspace", "status": None, "metrics_json": None}, "/tags"),
        ({"recipe_id": "recipe_nope"}, "/recipe_id"),
        ({"tags": {"team": 5}}, "/tags/team"),
        ({"tags": {"bad;key": "x"}}, "/tags/bad;key"),
        ({"tags": ["team", "eu"]}, "/tags"),
        ({"recipe_version_id": "ver_nba_base_v1"}, "/recipe_version_id"),
    ],
)
def test_bad_input_is_a_400_naming_the_field_and_writes_nothing(api_client, baselines, changes, path):
    payload = {k: v for k, v in body(**changes).items() if v is not None}
    before = rows()
    response = api_client.post(URL, payload, format="json")
    assert response.status_code == 400, response.json()
    assert path in [e["path"] for e in response.json()["errors"]], response.json()
    assert rows() == before


def test_a_refusal_after_the_run_was_written_leaves_nothing(baselines, user):
    """The service is one transaction: tags refused by the tracking store after run_start has
    inserted the run and its params roll the whole call back."""
    before = rows()
    with pytest.raises(InvalidInput) as refused:
        run_start_external(
            user=user,
            recipe=Recipe.objects.get(pk="recipe_pricing_base"),
            params=PARAMS,
            tags={"bad;key": "x"},
            status="succeeded",
            metrics_json=METRICS,
        )
    assert refused.value.errors[0]["path"] == "/tags/0/key"
    assert rows() == before


@pytest.mark.parametrize("size", [5, 50])
def test_one_call_query_count_does_not_grow_with_the_results(
    api_client, baselines, django_assert_max_num_queries, size
):
    """33 statements, whatever the number of params and metrics: the user's permissions (2),
    the recipe, its version, the run number (lock + max), the run, its params (lock, existing,
    insert), the start's audit event, the tags (lock, upsert), the report (its latest metrics,
    then lock, logged points, insert, latest rows, insert, the run's update and its audit
    event; the run just created is not read again) and 12 savepoint statements of the nested
    services. The answer is the run as written: no detail read after the create."""
    payload = body(
        params={f"p{i}": i for i in range(size)}, metrics_json={f"m{i}": i / 10 for i in range(size)}
    )
    with django_assert_max_num_queries(33):
        response = api_client.post(URL, payload, format="json")
    assert response.status_code == 201, response.json()


# ----------------------------------------------------------------------------- POST /runs/batch


def test_a_batch_reports_many_external_runs_in_one_call(api_client, baselines):
    items = [body(metrics_json={**METRICS, "rmse": float(i)}) for i in range(3)]
    del items[0]["executor"]  # a batch's items are external runs
    response = api_client.post(f"{URL}/batch", {"runs": items}, format="json")
    assert response.status_code == 201, response.json()
    out = response.json()["runs"]
    assert [run["metrics_json"]["rmse"] for run in out] == [0.0, 1.0, 2.0]
    assert {run["executor"] for run in out} == {"external"}
    assert Run.objects.filter(status="succeeded").count() == 3
    search = api_client.get(f"{URL}?filter={quote('metrics.rmse >= 1 and tags.team = "eu"')}").json()
    assert sorted(item["id"] for item in search["results"]) == sorted(run["id"] for run in out[1:])


@pytest.mark.parametrize(
    "items, path",
    [
        ([body(), body(recipe_id="recipe_nope")], "/runs/1/recipe_id"),
        ([body(), body(metrics_json={"rmse": "low"})], "/runs/1/metrics_json"),
        ([body(executor="workspace", status=None, metrics_json=None, tags=None)], "/runs/0/executor"),
        ([body(), body(status="exploded")], "/runs/1/status"),
        ([body(), body(tags={"team": 5})], "/runs/1/tags/team"),
        ([body(), {**body(), "colour": "red"}], "/runs/1/colour"),
        ([], "/runs"),
        ([body()] * 101, "/runs"),
    ],
)
def test_a_bad_batch_item_is_a_400_naming_it_and_writes_nothing(api_client, baselines, items, path):
    items = [{k: v for k, v in item.items() if v is not None} for item in items]
    before = rows()
    response = api_client.post(f"{URL}/batch", {"runs": items}, format="json")
    assert response.status_code == 400, response.json()
    assert path in [e["path"] for e in response.json()["errors"]], response.json()
    assert rows() == before


def test_a_batch_needs_the_add_run_permission(baselines, viewer):
    client = APIClient()
    client.force_authenticate(viewer)
    before = rows()
    assert client.post(f"{URL}/batch", {"runs": [body()]}, format="json").status_code == 403
    assert APIClient().post(f"{URL}/batch", {"runs": [body()]}, format="json").status_code in (401, 403)
    assert rows() == before
