"""Export a run as an mlruns zip, read it with MLflow's own file store, import it back with
manage.py import_mlflow --mlruns: the round trip keeps params, tags, full metric histories,
artifacts and status; a second import skips the run."""

import io
import math
import zipfile

import pytest
from django.core.management import CommandError, call_command

from mlflow_api import mlruns
from runs.models import MetricPoint, Run, RunParam, RunStatus, RunTag

from .conftest import RECIPE, Mlflow, token_of

TARGET = "recipe_forecasting_base"


@pytest.fixture
def finished_run(mlflow):
    run_id = mlflow.create_run(run_name="to export", tags=[{"key": "team", "value": "eu"}])
    points = [
        {"key": "train/loss", "value": 1 / (s + 1), "timestamp": 1_700_000_000_000 + s, "step": s}
        for s in range(4)
    ]
    points.append({"key": "MAPE", "value": "NaN", "timestamp": 1_700_000_000_010, "step": 0})
    mlflow.post(
        "runs/log-batch",
        {
            "run_id": run_id,
            "metrics": points,
            "params": [{"key": "alpha", "value": "0.5"}, {"key": "solver", "value": "auto"}],
        },
    )
    mlflow.put_artifact(f"runs/{run_id}/notes.txt", b"hello")
    mlflow.put_artifact(f"runs/{run_id}/model/weights.bin", bytes(range(256)))
    mlflow.post("runs/update", {"run_id": run_id, "status": "FINISHED"})
    return Run.objects.get(pk=run_id)


def export(api_client, run_id: str, **params) -> bytes:
    response = api_client.get(f"/api/ml-development/runs/{run_id}/export", {"format": "mlflow", **params})
    assert response.status_code == 200, response.content
    assert response["Content-Type"] == "application/zip"
    return b"".join(response.streaming_content)


def history(run) -> list:
    rows = MetricPoint.objects.filter(run=run).order_by("key", "step", "timestamp")
    return list(rows.values_list("key", "step", "timestamp", "value", "is_nan"))


def test_export_then_import_round_trip(finished_run, api_client, tmp_path):
    archive = tmp_path / "run.zip"
    archive.write_bytes(export(api_client, finished_run.pk))
    names = zipfile.ZipFile(archive).namelist()
    base = f"mlruns/{RECIPE}/{finished_run.pk}"
    assert f"mlruns/{RECIPE}/meta.yaml" in names and f"{base}/metrics/train/loss" in names
    assert f"{base}/artifacts/model/weights.bin" in names

    out = io.StringIO()
    call_command("import_mlflow", recipe=TARGET, mlruns=str(archive), stdout=out)
    imported = Run.objects.get(recipe_id=TARGET)
    assert f"imported as {imported.pk}" in out.getvalue()
    assert imported.status == RunStatus.SUCCEEDED and imported.executor == "external"
    assert history(imported) == history(finished_run)
    assert dict(RunParam.objects.filter(run=imported).values_list("key", "value")) == {
        "alpha": "0.5",
        "solver": "auto",
    }
    tags = dict(RunTag.objects.filter(run=imported).values_list("key", "value"))
    assert tags["mlflow.importedRunId"] == finished_run.pk
    assert (tags["team"], tags["mlflow.runName"]) == ("eu", "to export")
    source_files = {n: e["sha256"] for n, e in finished_run.artifacts_json["files"].items()}
    assert {n: e["sha256"] for n, e in imported.artifacts_json["files"].items()} == source_files
    assert imported.created_at.replace(microsecond=0) == finished_run.started_at.replace(microsecond=0)

    again = io.StringIO()
    call_command("import_mlflow", recipe=TARGET, mlruns=str(archive), stdout=again)
    assert "already imported, skipped" in again.getvalue()
    assert Run.objects.filter(recipe_id=TARGET).count() == 1


def test_mlflows_own_file_store_reads_the_export(finished_run, api_client, tmp_path, monkeypatch):
    mlflow = pytest.importorskip("mlflow")
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 keeps it in maintenance mode
    with zipfile.ZipFile(io.BytesIO(export(api_client, finished_run.pk))) as zipped:
        zipped.extractall(tmp_path)
    client = mlflow.MlflowClient(tracking_uri=(tmp_path / "mlruns").as_uri())
    run = client.get_run(finished_run.pk)
    assert run.info.status == "FINISHED" and run.info.run_name == "to export"
    assert run.data.params == {"alpha": "0.5", "solver": "auto"}
    assert [m.step for m in client.get_metric_history(finished_run.pk, "train/loss")] == [0, 1, 2, 3]
    assert math.isnan(run.data.metrics["MAPE"])


def test_export_errors_are_the_workspaces(finished_run, api_client, client, tmp_path):
    response = api_client.get(f"/api/ml-development/runs/{finished_run.pk}/export", {"format": "csv"})
    assert response.status_code == 400 and response.json()["errors"][0]["path"] == "/format"
    response = api_client.get(f"/api/ml-development/runs/{finished_run.pk}/export")
    assert response.status_code == 400 and response.json()["errors"][0]["path"] == "/format"
    assert api_client.get("/api/ml-development/runs/run_nope/export", {"format": "mlflow"}).status_code == 404
    assert client.get(
        f"/api/ml-development/runs/{finished_run.pk}/export", {"format": "mlflow"}
    ).status_code in (401, 403)


def test_a_client_run_export_is_404_for_an_outsider(client, client_recipe):
    from rest_framework.test import APIClient

    run_id = Mlflow(client, token_of(client_recipe.member)).create_run(experiment_id=client_recipe.recipe.pk)
    outsider = APIClient()
    outsider.force_authenticate(client_recipe.outsider)
    assert outsider.get(f"/api/ml-development/runs/{run_id}/export", {"format": "mlflow"}).status_code == 404


def test_import_refuses_bad_input_clearly(baselines, tmp_path):
    with pytest.raises(CommandError, match="No recipe"):
        call_command("import_mlflow", recipe="recipe_nope", mlruns=str(tmp_path))
    with pytest.raises(CommandError, match="not a folder"):
        call_command("import_mlflow", recipe=TARGET, mlruns=str(tmp_path / "missing"))
    evil = tmp_path / "evil.zip"
    with zipfile.ZipFile(evil, "w") as zipped:
        zipped.writestr("../outside.txt", "x")
    with pytest.raises(CommandError, match="leaves the folder"):
        call_command("import_mlflow", recipe=TARGET, mlruns=str(evil))
    assert not (tmp_path.parent / "outside.txt").exists()


def test_a_run_the_workspace_refuses_is_reported_and_the_rest_imported(baselines, tmp_path):
    good = mlruns.SourceRun(run_id="a" * 32, experiment_id="1", params={"alpha": "1"})
    bad = mlruns.SourceRun(run_id="b" * 32, experiment_id="1", params={"bad|key": "1"})
    root = tmp_path / "mlruns"
    (root / "1").mkdir(parents=True)
    (root / "1" / "meta.yaml").write_bytes(mlruns.experiment_meta("1", "exp", 1, 1))
    for run in (good, bad):
        for name, content in mlruns.run_entries(run):
            path = root / "1" / run.run_id / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
    err = io.StringIO()
    with pytest.raises(CommandError, match="1 run"):
        call_command("import_mlflow", recipe=TARGET, mlruns=str(root), stderr=err, stdout=io.StringIO())
    assert "bad|key" in err.getvalue() or "/params/0/key" in err.getvalue()
    assert list(RunTag.objects.filter(key="mlflow.importedRunId").values_list("value", flat=True)) == [
        good.run_id
    ]


def test_a_running_run_exports_as_running(mlflow, api_client):
    run_id = mlflow.create_run()
    data = export(api_client, run_id)
    with zipfile.ZipFile(io.BytesIO(data)) as zipped:
        meta = zipped.read(f"mlruns/{RECIPE}/{run_id}/meta.yaml").decode()
    assert "status: 1" in meta  # RUNNING
