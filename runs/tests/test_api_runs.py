import io

import pandas as pd
import pytest

from models_registry.models import MLModel
from runs.executor import execute_run, reap_stale_runs
from runs.models import Run, RunLog
from runs.tests.factories import register, trained_model

API = "/api/ml-development"
pytestmark = pytest.mark.django_db


def start(client, **body):
    payload = {
        "recipe_id": "recipe_pricing_base",
        "run_type": "train",
        "params": {"synthetic": {"rows": 3000, "seed": 3}},
    }
    payload.update(body)
    return client.post(f"{API}/runs", payload, format="json")


def test_create_run_is_queued_and_enqueued(api_client, baselines, django_capture_on_commit_callbacks):
    from django_tasks_db.models import DBTaskResult

    with django_capture_on_commit_callbacks(execute=True):
        r = start(api_client)
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["status"] == "queued"
    assert body["recipe_version_id"] == "ver_pricing_base_v1"
    assert DBTaskResult.objects.filter(args_kwargs__args=[body["id"]]).count() == 1


def test_external_run_is_not_enqueued(api_client, baselines, django_capture_on_commit_callbacks):
    from django_tasks_db.models import DBTaskResult

    with django_capture_on_commit_callbacks(execute=True):
        r = start(api_client, executor="external")
    assert r.status_code == 201
    assert DBTaskResult.objects.count() == 0


@pytest.mark.parametrize(
    "body, path",
    [
        ({"recipe_id": "recipe_nope"}, "/recipe_id"),
        ({"recipe_version_id": "ver_nba_base_v1"}, "/recipe_version_id"),
        ({"run_type": "dance"}, "/run_type"),
        ({"model_id": "model_nope"}, "/model_id"),
        ({"dataset_id": "ds_nope"}, "/dataset_id"),
        ({"run_type": "eval"}, "/model_id"),
        ({"params": {"synthetic": {"rows": -5}}}, "/params/synthetic/rows"),
        ({"params": {"synthetic": {"rows": 10**9}}}, "/params/synthetic/rows"),
        ({"params": "lots"}, "/params"),
    ],
)
def test_create_run_bad_input(api_client, baselines, body, path):
    r = start(api_client, **body)
    assert r.status_code == 400, r.json()
    assert path in {e["path"] for e in r.json()["errors"]}
    assert Run.objects.count() == 0


def test_train_run_executes_pipeline_and_attaches_to_model(api_client, baselines, user):
    model = register(user)
    r = start(api_client, model_id=model.id)
    run_id = r.json()["id"]
    assert execute_run(run_id) == "succeeded"
    body = api_client.get(f"{API}/runs/{run_id}").json()
    assert body["status"] == "succeeded"
    assert set(body["metrics_json"]) == {
        "elasticity",
        "revenue_lift",
        "margin_impact",
        "calibration",
        "demand_mape",
    }
    assert body["metric_checks_json"]["elasticity"]["status"] in {"pass", "warning", "critical"}
    assert [s["status"] for s in body["stages_json"]] == ["succeeded"] * 6
    files = body["artifacts_json"]["files"]
    assert {"metrics.json", "predictions.csv", "schema.json", "profile.json"} <= set(files)
    assert all(len(f["sha256"]) == 64 and f["size"] > 0 for f in files.values())
    assert body["plots_json"]
    model.refresh_from_db()
    assert model.training_run_id == run_id
    assert model.metrics_json == body["metrics_json"]
    # logs, incrementally
    logs = api_client.get(f"{API}/runs/{run_id}/logs").json()
    assert logs["lines"][0]["seq"] == 1
    assert any("elasticity" in line["message"] for line in logs["lines"])
    later = api_client.get(f"{API}/runs/{run_id}/logs?after={logs['last_seq'] - 2}").json()
    assert [line["seq"] for line in later["lines"]] == [logs["last_seq"] - 1, logs["last_seq"]]
    assert api_client.get(f"{API}/runs/{run_id}/logs?after=x").status_code == 400
    # artifact download, verified by sha256
    dl = api_client.get(f"{API}/runs/{run_id}/artifacts/metrics.json")
    assert dl.status_code == 200
    assert b"elasticity" in b"".join(dl.streaming_content)
    assert api_client.get(f"{API}/runs/{run_id}/artifacts/nope.bin").status_code == 404


def test_tampered_artifact_is_refused(api_client, baselines, user, settings):
    model = trained_model(user)
    run = model.training_run
    path = settings.MEDIA_ROOT / "artifacts" / run.id / "metrics.json"
    path.write_text("{}")
    assert api_client.get(f"{API}/runs/{run.id}/artifacts/metrics.json").status_code == 409
    model_file = settings.MEDIA_ROOT / "artifacts" / run.id / model.artifacts_json["model"][0]
    model_file.write_text("{}")
    r = api_client.post(f"{API}/models/{model.id}/predict", {"rows": [{"x": 1}]}, format="json")
    assert r.status_code == 409


def test_quality_failure_fails_run_naming_column(api_client, baselines, user):
    csv = pd.DataFrame({"week": ["2024-01-01"], "price": [1.0]}).to_csv(index=False).encode()
    upload = io.BytesIO(csv)
    upload.name = "tiny.csv"
    ds = api_client.post(f"{API}/datasets", {"file": upload, "name": "tiny"}, format="multipart").json()
    r = start(api_client, dataset_id=ds["id"])
    assert r.status_code == 400
    assert any("units" in e["message"] for e in r.json()["errors"])


def test_upload_dataset_and_train_on_it(api_client, baselines):
    from runs.families import pricing

    frame = pricing.generate(3000, 5)
    upload = io.BytesIO(frame.to_csv(index=False).encode())
    upload.name = "prices.csv"
    r = api_client.post(
        f"{API}/datasets", {"file": upload, "recipe_id": "recipe_pricing_base"}, format="multipart"
    )
    assert r.status_code == 201, r.json()
    ds = r.json()
    assert ds["row_count"] == 3000
    assert ds["validation_json"]["valid"] is True, ds["validation_json"]
    assert {c["name"] for c in ds["columns_json"]} == set(frame.columns)
    run = start(api_client, dataset_id=ds["id"]).json()
    assert execute_run(run["id"]) == "succeeded"
    assert api_client.get(f"{API}/datasets/{ds['id']}").json()["id"] == ds["id"]
    assert api_client.get(f"{API}/datasets").json()["count"] == 1


@pytest.mark.parametrize(
    "name, content, code",
    [("data.txt", b"a,b\n1,2\n", 400), ("data.parquet", b"not parquet", 400), ("data.csv", b"", 400)],
)
def test_upload_bad_files(api_client, name, content, code):
    upload = io.BytesIO(content)
    upload.name = name
    r = api_client.post(f"{API}/datasets", {"file": upload}, format="multipart")
    assert r.status_code == code
    assert r.json()["errors"][0]["path"] == "/file"


def test_upload_too_large(api_client, settings):
    settings.DATASET_MAX_BYTES = 10
    upload = io.BytesIO(b"a,b\n1,2\n3,4\n5,6\n")
    upload.name = "d.csv"
    assert api_client.post(f"{API}/datasets", {"file": upload}, format="multipart").status_code == 413


def test_predict(api_client, baselines, user):
    model = trained_model(user)
    from runs.families import pricing

    rows = pricing.generate(200, 9).drop(columns=["units"]).head(3)
    rows["week"] = rows["week"].astype(str)
    r = api_client.post(
        f"{API}/models/{model.id}/predict", {"rows": rows.to_dict(orient="records")}, format="json"
    )
    assert r.status_code == 200, r.json()
    assert len(r.json()["predictions"]) == 3
    assert all(p > 0 for p in r.json()["predictions"])
    bad = rows.to_dict(orient="records")
    bad[1]["price"] = "cheap"
    del bad[2]["segment"]
    r = api_client.post(f"{API}/models/{model.id}/predict", {"rows": bad}, format="json")
    assert r.status_code == 400
    paths = {e["path"] for e in r.json()["errors"]}
    assert {"/rows/1/price", "/rows/2/segment"} <= paths


def test_predict_limits(api_client, baselines, user, settings):
    model = register(user)
    assert (
        api_client.post(f"{API}/models/{model.id}/predict", {"rows": [{"a": 1}]}, format="json").status_code
        == 404
    )
    settings.PREDICT_MAX_ROWS = 2
    r = api_client.post(f"{API}/models/{model.id}/predict", {"rows": [{}, {}, {}]}, format="json")
    assert r.status_code == 400
    assert api_client.post(f"{API}/models/{model.id}/predict", {"rows": []}, format="json").status_code == 400


def test_eval_and_backtest_runs(api_client, baselines, user):
    model = trained_model(user)
    r = start(api_client, run_type="eval", model_id=model.id, params={"synthetic": {"rows": 3000, "seed": 8}})
    assert r.status_code == 201, r.json()
    assert execute_run(r.json()["id"]) == "succeeded"
    ev = Run.objects.get(pk=r.json()["id"])
    assert ev.metrics_json["elasticity"] < 0
    assert [s["status"] for s in ev.stages_json][2] == "skipped"
    r = start(api_client, run_type="backtest", params={"synthetic": {"rows": 4000, "seed": 8}})
    assert execute_run(r.json()["id"]) == "succeeded"
    bt = Run.objects.get(pk=r.json()["id"])
    assert len(bt.plots_json["folds"]) >= 2
    mean = sum(f["elasticity"] for f in bt.plots_json["folds"]) / len(bt.plots_json["folds"])
    assert bt.metrics_json["elasticity"] == pytest.approx(mean)


def test_cancel_queued_run_never_starts(api_client, baselines):
    run_id = start(api_client).json()["id"]
    r = api_client.post(f"{API}/runs/{run_id}/cancel")
    assert r.status_code == 200
    assert r.json()["status"] == "cancelled"
    assert execute_run(run_id).startswith("not claimed")
    assert api_client.post(f"{API}/runs/{run_id}/cancel").status_code == 409


def test_cancel_needs_permission(viewer_client, api_client, baselines):
    run_id = start(api_client).json()["id"]
    assert viewer_client.post(f"{API}/runs/{run_id}/cancel").status_code == 403


def test_run_executed_at_most_once(api_client, baselines):
    run_id = start(api_client).json()["id"]
    assert execute_run(run_id) == "succeeded"
    assert execute_run(run_id).startswith("not claimed")
    assert RunLog.objects.filter(run_id=run_id, message__contains=" claimed by worker").count() == 1


def test_failure_is_recorded_with_error(api_client, baselines):
    run_id = start(api_client, params={"synthetic": {"rows": 60, "seed": 1}}).json()["id"]
    assert execute_run(run_id) == "failed"
    run = Run.objects.get(pk=run_id)
    assert run.error
    assert run.finished_at is not None
    assert RunLog.objects.filter(run_id=run_id, level="error").exists()


def test_retry_creates_same_inputs(api_client, baselines):
    run_id = start(api_client).json()["id"]
    assert api_client.post(f"{API}/runs/{run_id}/retry").status_code == 409  # still queued
    api_client.post(f"{API}/runs/{run_id}/cancel")
    r = api_client.post(f"{API}/runs/{run_id}/retry")
    assert r.status_code == 201
    assert r.json()["retry_of_id"] == run_id
    assert r.json()["params_json"] == Run.objects.get(pk=run_id).params_json
    assert r.json()["params_json"]["synthetic"]["seed"] == 3


def test_reaper_fails_runs_with_stale_heartbeat(api_client, baselines):
    from datetime import timedelta

    from django.utils import timezone

    stale = start(api_client).json()["id"]
    fresh = start(api_client).json()["id"]
    Run.objects.filter(pk=stale).update(
        status="running", heartbeat_at=timezone.now() - timedelta(minutes=5), worker="w1"
    )
    Run.objects.filter(pk=fresh).update(status="running", heartbeat_at=timezone.now(), worker="w2")
    assert reap_stale_runs(60) == [stale]
    assert Run.objects.get(pk=stale).status == "failed"
    assert "Worker lost" in Run.objects.get(pk=stale).error
    assert Run.objects.get(pk=fresh).status == "running"


def test_external_run_report_flow(api_client, baselines, user):
    model = register(user)
    run_id = start(api_client, executor="external", model_id=model.id).json()["id"]
    r = api_client.put(
        f"{API}/runs/{run_id}",
        {
            "status": "succeeded",
            "metrics_json": {"elasticity": -1.7, "demand_mape": 0.35},
            "artifacts_json": {"model_path": "s3://bucket/models/model.pkl"},
            "logs": ["trained", {"level": "warning", "message": "slow"}],
        },
        format="json",
    )
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["status"] == "succeeded"
    assert body["metric_checks_json"]["demand_mape"]["status"] == "warning"
    assert body["metric_checks_json"]["elasticity"]["status"] == "pass"
    # The run's outcome: the worst check, stored on the row; the breaches named.
    assert body["outcome"] == "warning"
    assert [(b["metric"], b["status"]) for b in body["breaches"]] == [("demand_mape", "warning")]
    assert body["name"] == "Pricing Optimization Baseline v1 · train · #1" and body["number"] == 1
    assert MLModel.objects.get(pk=model.id).artifacts_json == {"model_path": "s3://bucket/models/model.pkl"}
    assert RunLog.objects.filter(run_id=run_id).count() == 2
    # final now
    assert api_client.put(f"{API}/runs/{run_id}", {"status": "running"}, format="json").status_code == 409


@pytest.mark.parametrize(
    "body, code",
    [
        ({"status": "exploded"}, 400),
        ({"metrics_json": {"MAPE": "low"}}, 400),
        ({"metrics_json": []}, 400),
        ({"logs": [{"level": "loud", "message": "x"}]}, 400),
        ({"status": "running"}, 200),
    ],
)
def test_external_run_bad_reports(api_client, baselines, body, code):
    run_id = start(api_client, executor="external").json()["id"]
    assert api_client.put(f"{API}/runs/{run_id}", body, format="json").status_code == code


def test_workspace_run_cannot_be_reported(api_client, baselines):
    run_id = start(api_client).json()["id"]
    r = api_client.put(f"{API}/runs/{run_id}", {"status": "succeeded"}, format="json")
    assert r.status_code == 409


def test_run_list_filters_and_query_count(api_client, baselines, django_assert_max_num_queries):
    for _ in range(5):
        start(api_client)
    start(api_client, executor="external", run_type="backtest")
    with django_assert_max_num_queries(5):
        r = api_client.get(f"{API}/runs?recipe_id=recipe_pricing_base&status=queued")
    assert r.json()["count"] == 6
    assert api_client.get(f"{API}/runs?run_type=backtest").json()["count"] == 1
    assert api_client.get(f"{API}/runs?status=bogus").status_code == 400
