"""The MLflow-compatible API through Django's test client: what it stores (the runs app's
tracking rows, through the one writer) and every error answered in MLflow's shape."""

import json
import math

import pytest
from django.contrib.auth import get_user_model

from mlflow_api.models import ExperimentName
from models_registry.models import MLModel
from recipes.models import Recipe
from runs.models import MetricPoint, Run, RunMetric, RunParam, RunStatus, RunTag
from runs.services import run_start

from .conftest import BASE, RECIPE, Mlflow, error, token_of

# ----------------------------------------------------------------------------- auth and routes


def test_no_token_is_mlflows_401(client, baselines):
    response = Mlflow(client, None).get("experiments/get-by-name", experiment_name=RECIPE)
    assert error(response)[:2] == (401, "UNAUTHENTICATED")
    assert "MLFLOW_TRACKING_TOKEN" in error(response)[2]


def test_a_wrong_token_is_401(client, baselines):
    response = Mlflow(client, "not-a-token").get("experiments/get-by-name", experiment_name=RECIPE)
    assert error(response)[:2] == (401, "UNAUTHENTICATED")


def test_basic_auth_with_the_users_password(client, user, baselines):
    import base64

    good = base64.b64encode(b"scientist:pw-scientist-1").decode()
    bad = base64.b64encode(b"scientist:wrong").decode()
    url = f"{BASE}/experiments/get-by-name?experiment_name={RECIPE}"
    assert client.get(url, HTTP_AUTHORIZATION=f"Basic {good}").status_code == 200
    assert error(client.get(url, HTTP_AUTHORIZATION=f"Basic {bad}"))[:2] == (401, "UNAUTHENTICATED")


@pytest.mark.parametrize(
    ("method", "url"),
    [
        ("get", f"{BASE}/no-such-thing"),
        ("post", f"{BASE}/traces"),
        ("get", "/mlflow/ui"),
        ("get", "/mlflow/api/2.0/preview/mlflow/experiments/list"),
        ("delete", "/mlflow/api/2.0/mlflow-artifacts/mpu/create/x"),
    ],
)
def test_unknown_routes_answer_endpoint_not_found(client, user, baselines, method, url):
    response = getattr(client, method)(url, HTTP_AUTHORIZATION=f"Bearer {token_of(user)}")
    status, code, _ = error(response)
    assert (status, code) == (404, "ENDPOINT_NOT_FOUND")


def test_the_address_mlflow_prints_after_a_run_opens_the_runs_tab(client):
    response = client.get("/mlflow/")
    assert response.status_code == 302 and response["Location"] == "/model-development/?tab=runs"


def test_a_known_route_with_another_method_says_which_it_answers(mlflow):
    status, code, message = error(mlflow.post("runs/get", {"run_id": "x"}))
    assert (status, code) == (404, "ENDPOINT_NOT_FOUND")
    assert "It answers GET" in message


def test_unsupported_operations_say_what_to_do_instead(mlflow):
    run_id = mlflow.create_run()
    status, code, message = error(mlflow.post("runs/delete", {"run_id": run_id}))
    assert (status, code) == (404, "ENDPOINT_NOT_FOUND")
    assert "KILLED" in message
    assert Run.objects.filter(pk=run_id).exists()


def test_malformed_json_is_invalid_parameter_value(mlflow):
    status, code, message = error(mlflow.post("runs/log-batch", raw=b"{not json"))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    assert "'body'" in message


# ----------------------------------------------------------------------------- experiments


def test_an_experiment_is_a_recipe(mlflow):
    body = mlflow.get("experiments/get-by-name", experiment_name=RECIPE).json()["experiment"]
    assert body["experiment_id"] == RECIPE
    assert {"key": "recipe_id", "value": RECIPE} in body["tags"]
    assert mlflow.get("experiments/get", experiment_id=RECIPE).json()["experiment"]["name"] == RECIPE


def test_an_unknown_name_is_resource_does_not_exist(mlflow):
    status, code, _ = error(mlflow.get("experiments/get-by-name", experiment_name="my-exp"))
    assert (status, code) == (404, "RESOURCE_DOES_NOT_EXIST")


def test_creating_an_experiment_needs_a_recipe_id(mlflow):
    status, code, message = error(mlflow.post("experiments/create", {"name": "my-exp"}))
    assert (status, code) == (404, "RESOURCE_DOES_NOT_EXIST")
    assert "recipe_id" in message and "set_experiment" in message
    assert not ExperimentName.objects.exists()


def test_an_experiment_named_with_a_recipe_id_tag_maps_onto_the_recipe(mlflow):
    body = {"name": "pricing trials", "tags": [{"key": "recipe_id", "value": RECIPE}]}
    assert mlflow.post("experiments/create", body).json() == {"experiment_id": RECIPE}
    found = mlflow.get("experiments/get-by-name", experiment_name="pricing trials").json()["experiment"]
    assert (found["experiment_id"], found["name"]) == (RECIPE, "pricing trials")
    status, code, _ = error(mlflow.post("experiments/create", body))
    assert (status, code) == (400, "RESOURCE_ALREADY_EXISTS")
    status, code, _ = error(mlflow.post("experiments/create", {"name": RECIPE}))
    assert (status, code) == (400, "RESOURCE_ALREADY_EXISTS")


def test_search_experiments_pages_through_the_visible_recipes(mlflow, django_assert_max_num_queries):
    with django_assert_max_num_queries(3):  # the token, its user, the page of recipes
        first = mlflow.post("experiments/search", {"max_results": 3}).json()
    assert len(first["experiments"]) == 3
    rest = mlflow.post(
        "experiments/search", {"max_results": 3, "page_token": first["next_page_token"]}
    ).json()
    ids = {e["experiment_id"] for e in first["experiments"] + rest["experiments"]}
    assert ids == set(Recipe.objects.values_list("pk", flat=True))
    status, code, _ = error(mlflow.post("experiments/search", {"page_token": "garbage"}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")


def test_the_default_experiment_does_not_exist_here(mlflow):
    status, code, message = error(mlflow.post("runs/create", {"experiment_id": "0"}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    assert "set_experiment" in message


# ----------------------------------------------------------------------------- runs and logging


def test_create_run_is_a_running_external_run_named_by_its_tag(mlflow):
    run_id = mlflow.create_run(run_name="first", tags=[{"key": "team", "value": "eu"}])
    run = Run.objects.get(pk=run_id)
    assert (run.executor, run.status, run.run_type) == ("external", RunStatus.RUNNING, "train")
    assert run.recipe_version_id == "ver_pricing_base_v1"
    tags = dict(RunTag.objects.filter(run=run).values_list("key", "value"))
    assert tags == {"mlflow.runName": "first", "team": "eu"}
    # Its params are the script's alone: none from the recipe's manifest that could clash.
    assert not RunParam.objects.filter(run=run).exists()
    info = mlflow.get("runs/get", run_id=run_id).json()["run"]["info"]
    assert (info["status"], info["run_name"], info["experiment_id"]) == ("RUNNING", "first", RECIPE)
    assert info["artifact_uri"] == f"mlflow-artifacts:/runs/{run_id}"


def test_log_batch_writes_the_tracking_rows_in_one_go(mlflow):
    run_id = mlflow.create_run()
    body = {
        "run_id": run_id,
        "metrics": [
            {"key": "loss", "value": 1.0, "timestamp": 1000, "step": 0},
            {"key": "loss", "value": 0.5, "timestamp": 1001, "step": 1},
            {"key": "loss", "value": "NaN", "timestamp": 1002, "step": 2},
            {"key": "MAPE", "value": 0.12, "timestamp": 1003},
        ],
        "params": [{"key": "max_depth", "value": "6"}],
        "tags": [{"key": "team", "value": "eu"}],
    }
    assert mlflow.post("runs/log-batch", body).json() == {}
    assert MetricPoint.objects.filter(run_id=run_id, key="loss").count() == 3
    latest = RunMetric.objects.get(run_id=run_id, key="loss")
    assert (latest.step, latest.is_nan, latest.value) == (2, True, None)
    assert RunParam.objects.get(run_id=run_id, key="max_depth").value_num == 6.0
    data = mlflow.get("runs/get", run_id=run_id).json()["run"]["data"]
    assert {"key": "loss", "value": "NaN", "timestamp": 1002, "step": 2} in data["metrics"]
    assert {"key": "max_depth", "value": "6"} in data["params"]


def test_the_same_point_logged_twice_is_one_point(mlflow):
    run_id = mlflow.create_run()
    point = {"key": "loss", "value": 0.5, "timestamp": 1000, "step": 0}
    for _ in range(2):
        mlflow.post("runs/log-batch", {"run_id": run_id, "metrics": [point, point]})
    assert MetricPoint.objects.filter(run_id=run_id).count() == 1


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"metrics": [{"key": "loss", "value": "high", "timestamp": 1}]}, "metrics[0].value"),
        ({"metrics": [{"key": "loss", "value": 1, "timestamp": "noon"}]}, "metrics[0].timestamp"),
        ({"metrics": [{"key": "loss", "value": 1, "timestamp": 1, "step": 1.5}]}, "metrics[0].step"),
        ({"metrics": [{"value": 1, "timestamp": 1}]}, "metrics[0].key"),
        ({"metrics": {"key": "loss"}}, "metrics"),
        ({"params": [{"key": "a", "value": {"nested": 1}}]}, "/params/0/value"),
        ({"params": [{"key": "bad|key", "value": "1"}]}, "/params/0/key"),
        ({"tags": ["team"]}, "tags[0]"),
        ({"metrics": [{"key": "m", "value": 1, "timestamp": 1}] * 1001}, "metrics"),
    ],
)
def test_bad_log_batch_input_is_a_400_naming_the_field_and_stores_nothing(mlflow, body, field):
    run_id = mlflow.create_run()
    status, code, message = error(mlflow.post("runs/log-batch", {"run_id": run_id, **body}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    assert field in message
    assert not MetricPoint.objects.filter(run_id=run_id).exists()
    assert not RunParam.objects.filter(run_id=run_id).exists()


def test_log_metric_and_param_and_tag(mlflow):
    run_id = mlflow.create_run()
    assert (
        mlflow.post(
            "runs/log-metric", {"run_id": run_id, "key": "rmse", "value": 2.5, "timestamp": 5, "step": 3}
        ).status_code
        == 200
    )
    assert (
        mlflow.post("runs/log-parameter", {"run_id": run_id, "key": "alpha", "value": "0.1"}).status_code
        == 200
    )
    assert mlflow.post("runs/set-tag", {"run_id": run_id, "key": "stage", "value": "dev"}).status_code == 200
    assert RunMetric.objects.get(run_id=run_id, key="rmse").step == 3
    status, code, message = error(
        mlflow.post("runs/log-metric", {"run_id": run_id, "key": "rmse", "value": True})
    )
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and "'value'" in message
    status, code, message = error(
        mlflow.post("runs/log-parameter", {"run_id": run_id, "key": "alpha", "value": "0.2"})
    )
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and "cannot change" in message


def test_metric_history_pages(mlflow):
    run_id = mlflow.create_run()
    points = [{"key": "loss", "value": 1 / (s + 1), "timestamp": 100 + s, "step": s} for s in range(5)]
    mlflow.post("runs/log-batch", {"run_id": run_id, "metrics": points})
    first = mlflow.get("metrics/get-history", run_id=run_id, metric_key="loss", max_results=3).json()
    rest = mlflow.get(
        "metrics/get-history",
        run_id=run_id,
        metric_key="loss",
        max_results=3,
        page_token=first["next_page_token"],
    ).json()
    steps = [m["step"] for m in first["metrics"] + rest["metrics"]]
    assert steps == [0, 1, 2, 3, 4] and "next_page_token" not in rest
    status, code, _ = error(
        mlflow.get("metrics/get-history", run_id=run_id, metric_key="loss", max_results=0)
    )
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")


def test_set_terminated_ends_the_run_and_logging_to_it_is_refused(mlflow):
    run_id = mlflow.create_run()
    answer = mlflow.post("runs/update", {"run_id": run_id, "status": "FINISHED", "end_time": 2_000})
    assert answer.json()["run_info"]["status"] == "FINISHED"
    assert Run.objects.get(pk=run_id).status == RunStatus.SUCCEEDED
    for endpoint, body in [
        ("runs/log-metric", {"key": "late", "value": 1, "timestamp": 1}),
        ("runs/log-parameter", {"key": "late", "value": "1"}),
        ("runs/set-tag", {"key": "late", "value": "1"}),
        ("runs/log-batch", {"metrics": [{"key": "late", "value": 1, "timestamp": 1}]}),
    ]:
        status, code, message = error(mlflow.post(endpoint, {"run_id": run_id, **body}))
        assert (status, code) == (400, "INVALID_STATE"), endpoint
        assert "succeeded" in message
    status, code, _ = error(mlflow.post("runs/update", {"run_id": run_id, "status": "RUNNING"}))
    assert (status, code) == (400, "INVALID_STATE")
    assert not RunMetric.objects.filter(run_id=run_id, key="late").exists()


@pytest.mark.parametrize(("mlflow_status", "status"), [("FAILED", "failed"), ("KILLED", "cancelled")])
def test_failed_and_killed_runs(mlflow, mlflow_status, status):
    run_id = mlflow.create_run()
    mlflow.post("runs/update", {"run_id": run_id, "status": mlflow_status})
    assert Run.objects.get(pk=run_id).status == status


def test_an_unknown_status_is_a_400(mlflow):
    run_id = mlflow.create_run()
    status, code, message = error(mlflow.post("runs/update", {"run_id": run_id, "status": "DONE"}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE") and "'status'" in message


def test_a_nested_run_is_a_child_run(mlflow):
    parent = mlflow.create_run()
    child = mlflow.create_run(tags=[{"key": "mlflow.parentRunId", "value": parent}])
    assert Run.objects.get(pk=child).parent_id == parent


def test_workspace_executed_runs_cannot_be_logged_to(mlflow, user):
    run = run_start(user=user, recipe=Recipe.objects.get(pk=RECIPE), params={"synthetic": {"rows": 100}})
    status, code, message = error(mlflow.post("runs/set-tag", {"run_id": run.pk, "key": "a", "value": "b"}))
    assert (status, code) == (400, "INVALID_STATE") and "workers" in message


def test_an_unknown_run_is_resource_does_not_exist(mlflow):
    status, code, _ = error(mlflow.get("runs/get", run_id="run_nope"))
    assert (status, code) == (404, "RESOURCE_DOES_NOT_EXIST")


# ----------------------------------------------------------------------------- access


def test_a_client_run_does_not_exist_for_an_outsider(client, client_recipe):
    member = Mlflow(client, token_of(client_recipe.member))
    run_id = member.create_run(experiment_id=client_recipe.recipe.pk)
    outsider = Mlflow(client, token_of(client_recipe.outsider))
    for response in (
        outsider.get("runs/get", run_id=run_id),
        outsider.post("runs/set-tag", {"run_id": run_id, "key": "a", "value": "b"}),
        outsider.get("experiments/get", experiment_id=client_recipe.recipe.pk),
        outsider.get_artifact(f"runs/{run_id}/x.txt"),
    ):
        assert error(response)[:2] == (404, "RESOURCE_DOES_NOT_EXIST")
    found = outsider.post("runs/search", {"experiment_ids": [client_recipe.recipe.pk]}).json()
    assert found.get("runs", []) == []


def test_writes_need_the_run_permissions(client, viewer, baselines):
    viewer_api = Mlflow(client, token_of(viewer))
    status, code, _ = error(viewer_api.post("runs/create", {"experiment_id": RECIPE}))
    assert (status, code) == (403, "PERMISSION_DENIED")
    assert not Run.objects.exists()


def test_a_viewer_member_reads_but_cannot_log(client, client_recipe):
    viewer = get_user_model().objects.create_user("client-viewer", password="pw-viewer-2")
    client_recipe.client.memberships.create(user=viewer, role="viewer")
    run_id = Mlflow(client, token_of(client_recipe.member)).create_run(experiment_id=client_recipe.recipe.pk)
    viewer_api = Mlflow(client, token_of(viewer))
    assert viewer_api.get("runs/get", run_id=run_id).status_code == 200
    status, code, _ = error(viewer_api.post("runs/set-tag", {"run_id": run_id, "key": "a", "value": "b"}))
    assert (status, code) == (403, "PERMISSION_DENIED")


# ----------------------------------------------------------------------------- search


def test_search_runs_filters_and_orders_with_mlflows_syntax(mlflow, django_assert_max_num_queries):
    ids = []
    for i, mape in enumerate([0.3, 0.1, 0.2, 0.5]):
        run_id = mlflow.create_run(run_name=f"r{i}")
        mlflow.post(
            "runs/log-batch",
            {
                "run_id": run_id,
                "metrics": [{"key": "MAPE", "value": mape, "timestamp": 1}],
                "tags": [{"key": "team", "value": "eu" if i != 2 else "us"}],
            },
        )
        ids.append(run_id)
    body = {
        "experiment_ids": [RECIPE],
        "filter": "metrics.MAPE < 0.4 and tags.team = 'eu'",
        "order_by": ["metrics.MAPE ASC"],
    }
    with django_assert_max_num_queries(12):
        found = mlflow.post("runs/search", body).json()["runs"]
    assert [r["info"]["run_id"] for r in found] == [ids[1], ids[0]]
    first = mlflow.post("runs/search", {**body, "filter": "", "max_results": 2}).json()
    rest = mlflow.post("runs/search", {**body, "filter": "", "page_token": first["next_page_token"]}).json()
    assert [r["info"]["run_id"] for r in first["runs"] + rest["runs"]] == [ids[1], ids[2], ids[0], ids[3]]


@pytest.mark.parametrize(
    ("body", "field", "text"),
    [
        ({"filter": "metrics.MAPE < 'low'"}, "'filter'", "column"),
        ({"filter": "metrics.MAPE << 1"}, "'filter'", "column"),
        ({"order_by": ["metrics.MAPE sideways"]}, "'order_by[0]'", "column"),
        ({"order_by": "metrics.MAPE"}, "'order_by'", "array"),
        ({"max_results": 50_001}, "'max_results'", "between"),
    ],
)
def test_a_bad_search_is_a_400_naming_the_field(mlflow, body, field, text):
    status, code, message = error(mlflow.post("runs/search", {"experiment_ids": [RECIPE], **body}))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    assert field in message and text in message


# ----------------------------------------------------------------------------- artifacts


def test_artifacts_upload_list_and_download(mlflow):
    run_id = mlflow.create_run()
    assert mlflow.put_artifact(f"runs/{run_id}/notes.txt", b"hello").status_code == 200
    assert mlflow.put_artifact(f"runs/{run_id}/plots/a.json", b"{}").status_code == 200
    files = Run.objects.get(pk=run_id).artifacts_json["files"]
    assert files["notes.txt"]["size"] == 5 and files["notes.txt"]["kind"] == "mlflow"
    listed = mlflow.get_artifact("", path=f"runs/{run_id}").json()["files"]
    assert listed == [
        {"path": "notes.txt", "is_dir": False, "file_size": 5},
        {"path": "plots", "is_dir": True},
    ]
    assert mlflow.get_artifact("", path=f"runs/{run_id}/plots").json()["files"] == [
        {"path": "a.json", "is_dir": False, "file_size": 2}
    ]
    response = mlflow.get_artifact(f"runs/{run_id}/notes.txt")
    assert b"".join(response.streaming_content) == b"hello"
    tracking_list = mlflow.get("artifacts/list", run_id=run_id, path="plots").json()
    assert tracking_list["files"] == [{"path": "plots/a.json", "is_dir": False, "file_size": 2}]


@pytest.mark.parametrize(
    "suffix",
    [
        "../run_other/x.txt",
        "a/../../x.txt",
        "%2e%2e/x.txt",
        "%252e%252e/x.txt",
        "./x.txt",
        "a//b.txt",
        "a\\..\\b",
    ],
)
def test_artifact_paths_never_leave_the_runs_folder(mlflow, settings, suffix):
    run_id = mlflow.create_run()
    response = mlflow.put_artifact(f"runs/{run_id}/{suffix}", b"evil")
    status, code, _ = error(response)
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    listing = mlflow.get_artifact("", path=f"runs/{run_id}/{suffix}")
    assert error(listing)[:2] == (400, "INVALID_PARAMETER_VALUE")
    written = [p for p in settings.MEDIA_ROOT.rglob("*") if p.is_file()]
    assert written == []


def test_artifacts_of_a_finished_run_are_final(mlflow):
    run_id = mlflow.create_run()
    mlflow.post("runs/update", {"run_id": run_id, "status": "FINISHED"})
    status, code, _ = error(mlflow.put_artifact(f"runs/{run_id}/late.txt", b"x"))
    assert (status, code) == (400, "INVALID_STATE")


def test_a_missing_artifact_is_resource_does_not_exist(mlflow):
    run_id = mlflow.create_run()
    assert error(mlflow.get_artifact(f"runs/{run_id}/nope.txt"))[:2] == (404, "RESOURCE_DOES_NOT_EXIST")


def test_server_info_says_artifacts_are_proxied_without_multipart(mlflow, client, user):
    info = client.get(
        "/mlflow/api/3.0/mlflow/server-info", HTTP_AUTHORIZATION=f"Bearer {token_of(user)}"
    ).json()
    assert info["artifact_serving_enabled"] is True and info["multipart_uploads_enabled"] is False


def test_nan_never_reaches_the_json(mlflow):
    run_id = mlflow.create_run()
    mlflow.post("runs/log-metric", {"run_id": run_id, "key": "x", "value": "Infinity", "timestamp": 1})
    raw = mlflow.get("runs/get", run_id=run_id).content.decode()
    json.loads(raw, parse_constant=lambda c: pytest.fail(f"bare {c} in JSON"))
    metric = json.loads(raw)["run"]["data"]["metrics"][0]
    assert metric["value"] == "Infinity" and math.isinf(RunMetric.objects.get(run_id=run_id).value)


# ----------------------------------------------------------------------------- registry


@pytest.mark.parametrize(
    ("endpoint", "body", "field"),
    [
        (
            "experiments/create",
            {"name": "x" * 501, "tags": [{"key": "recipe_id", "value": RECIPE}]},
            "'name'",
        ),
        ("registered-models/create", {"name": "x" * 201}, "'name'"),
        ("model-versions/create", {"name": "x" * 201, "source": "runs:/run_x/model"}, "'name'"),
        ("model-versions/create", {"name": "m", "source": "s3://bucket/model"}, "'source'"),
        ("logged-models", {"experiment_id": RECIPE, "name": "model"}, "'source_run_id'"),
    ],
)
def test_bad_registry_input_is_a_400_naming_the_field(mlflow, endpoint, body, field):
    status, code, message = error(mlflow.post(endpoint, body))
    assert (status, code) == (400, "INVALID_PARAMETER_VALUE")
    assert field in message


def test_a_version_of_a_run_registers_a_workspace_model(mlflow):
    run_id = mlflow.create_run()
    mlflow.put_artifact(f"runs/{run_id}/model/MLmodel", b"flavors:\n  python_function: {}\n")
    assert error(mlflow.get("registered-models/get", name="churn"))[:2] == (404, "RESOURCE_DOES_NOT_EXIST")
    assert mlflow.post("registered-models/create", {"name": "churn"}).status_code == 200
    version = mlflow.post(
        "model-versions/create", {"name": "churn", "source": f"runs:/{run_id}/model"}
    ).json()
    assert (version["model_version"]["version"], version["model_version"]["run_id"]) == ("1", run_id)
    model = MLModel.objects.get(name="churn")
    assert model.training_run_id == run_id and "(python_function)" in model.description
    assert "under model/ " in model.description
    assert "serves only models trained by the workspace" in model.description
    again = mlflow.post("registered-models/create", {"name": "churn"})
    assert error(again)[:2] == (400, "RESOURCE_ALREADY_EXISTS")
    got = mlflow.get("model-versions/get", name="churn", version="1").json()["model_version"]
    assert got["tags"][0] == {"key": "workspace_model_id", "value": model.pk}
    assert error(mlflow.get("model-versions/get", name="churn", version="2"))[:2] == (
        404,
        "RESOURCE_DOES_NOT_EXIST",
    )
