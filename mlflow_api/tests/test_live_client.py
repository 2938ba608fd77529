"""The real MLflow client (mlflow-skinny) against a live workspace: an unchanged notebook-style
script logs params, metric curves, tags, artifacts and an sklearn model, registers the model,
and searches; the workspace then holds the run, its tracking rows, its files and a registered
model. The same server is then an MLflow tracking server to import from."""

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings
from django.core.management import call_command

from mlflow_api.models import LoggedModel, ModelVersionSource
from models_registry.models import MLModel
from runs.models import MetricPoint, Run, RunMetric, RunParam, RunStatus, RunTag

from .conftest import RECIPE, token_of

SCRIPT = Path(__file__).with_name("notebook_script.py")
MODEL_NAME = "pricing-ridge"

pytestmark = [
    pytest.mark.slow,
    pytest.mark.django_db(transaction=True),
    pytest.mark.usefixtures("live_server_closes_its_connections"),
]


def mlflow_env(live_server, token: str, home: Path) -> dict:
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"{live_server.url}/mlflow",
        "MLFLOW_TRACKING_TOKEN": token,
        # A refused request fails at once (the client retries 5xx only; there must be none).
        "MLFLOW_HTTP_REQUEST_MAX_RETRIES": "0",
        "MLFLOW_HTTP_REQUEST_TIMEOUT": "60",
        "MLFLOW_DISABLE_TELEMETRY": "true",
        "DO_NOT_TRACK": "true",
        "HOME": str(home),
    }


@pytest.fixture
def logged(live_server, baselines, user, tmp_path):
    """The notebook script's run, logged through the live server; what the script printed."""
    env = mlflow_env(live_server, token_of(user), tmp_path)
    done = subprocess.run(
        [sys.executable, str(SCRIPT), RECIPE, MODEL_NAME],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_a_notebook_script_logs_to_the_workspace_unchanged(logged, client, user):
    run = Run.objects.get(pk=logged["run_id"])
    assert (run.recipe_id, run.executor, run.status) == (RECIPE, "external", RunStatus.SUCCEEDED)
    assert logged["status"] == "FINISHED" and logged["experiment_id"] == RECIPE
    params = dict(RunParam.objects.filter(run=run).values_list("key", "value"))
    assert params == {"alpha": "0.5", "fit_intercept": "True", "solver": "auto"}
    latest = {m.key: (m.step, m.value) for m in RunMetric.objects.filter(run=run)}
    assert latest["train_loss"] == (4, 0.2) and latest["MAPE"] == (0, 0.12) and latest["rmse"] == (0, 3.4)
    curve = list(
        MetricPoint.objects.filter(run=run, key="train_loss").order_by("step").values_list("step", "value")
    )
    assert curve == [(s, 1.0 / (s + 1)) for s in range(5)]
    assert logged["history"] == [[s, 1.0 / (s + 1)] for s in range(5)]
    tags = dict(RunTag.objects.filter(run=run).values_list("key", "value"))
    assert tags["team"] == "eu" and tags["mlflow.runName"] == "ridge-notebook"

    child = Run.objects.get(pk=logged["child_id"])
    assert child.parent_id == run.pk and child.status == RunStatus.SUCCEEDED
    assert logged["found"] == [run.pk]  # the child has no MAPE: the filter keeps the parent only

    files = run.artifacts_json["files"]
    model_dir = f"models/{logged['model_id']}/artifacts"
    assert {"notes.txt", "docs/notes.txt", f"{model_dir}/MLmodel", f"{model_dir}/model.pkl"} <= set(files)
    for name, entry in files.items():
        assert (
            hashlib.sha256(
                ((Path(settings.MEDIA_ROOT) / "artifacts" / run.pk) / name).read_bytes()
            ).hexdigest()
            == entry["sha256"]
        )
    assert logged["artifacts"] == ["docs", "models", "notes.txt"]

    logged_model = LoggedModel.objects.get(pk=logged["model_id"])
    assert (logged_model.run_id, logged_model.status) == (run.pk, "LOGGED_MODEL_READY")
    model = MLModel.objects.get(name=MODEL_NAME)
    assert logged["registered_version"] == "1"
    assert (model.recipe_version_id, model.training_run_id) == ("ver_pricing_base_v1", run.pk)
    assert ModelVersionSource.objects.get(model=model).logged_model_id == logged_model.pk
    assert "sklearn" in model.description and "predict" in model.description
    # The MLflow model came back through the artifact proxy and predicts as it did locally.
    assert logged["reloaded_predictions_match"] is True
    # The workspace does not pretend to serve a foreign model: its predict says so.
    client.force_login(user)
    answer = client.post(
        f"/api/ml-development/models/{model.pk}/predict",
        {"rows": [{"x": 1}]},
        content_type="application/json",
    )
    assert answer.status_code == 404 and "no trained artifact" in answer.json()["detail"]


def test_import_from_a_tracking_server(logged, live_server, user, monkeypatch, tmp_path):
    """The live workspace is an MLflow tracking server like any other: import_mlflow --uri
    reads it (MLflow's REST protocol, mlflow_api.remote) into another recipe, histories and
    artifacts included, and a second import skips what the first brought."""
    for name, value in mlflow_env(live_server, token_of(user), tmp_path).items():
        if name.startswith(("MLFLOW_", "DO_NOT")):
            monkeypatch.setenv(name, value)
    target = "recipe_forecasting_base"
    call_command("import_mlflow", recipe=target, uri=f"{live_server.url}/mlflow", experiment=RECIPE)
    source = Run.objects.get(pk=logged["run_id"])
    imported = Run.objects.get(
        recipe_id=target, tag_rows__key="mlflow.importedRunId", tag_rows__value=source.pk
    )
    assert imported.status == RunStatus.SUCCEEDED and imported.executor == "external"

    def history(run):
        return list(
            MetricPoint.objects.filter(run=run)
            .order_by("key", "step", "timestamp")
            .values_list("key", "step", "timestamp", "value")
        )

    assert history(imported) == history(source)
    assert dict(RunParam.objects.filter(run=imported).values_list("key", "value")) == dict(
        RunParam.objects.filter(run=source).values_list("key", "value")
    )
    assert {n: e["sha256"] for n, e in imported.artifacts_json["files"].items()} == {
        n: e["sha256"] for n, e in source.artifacts_json["files"].items()
    }
    child = Run.objects.get(
        recipe_id=target, tag_rows__key="mlflow.importedRunId", tag_rows__value=logged["child_id"]
    )
    assert child.parent_id == imported.pk
    count = Run.objects.filter(recipe_id=target).count()
    call_command("import_mlflow", recipe=target, uri=f"{live_server.url}/mlflow", experiment=RECIPE)
    assert Run.objects.filter(recipe_id=target).count() == count == 2  # the run and its child
