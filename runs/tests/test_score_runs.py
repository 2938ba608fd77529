"""Score runs: a registered model's trained artifact predicts a batch (an uploaded dataset or
the synthetic continuation of its world), executed by the workers like every run. The
predictions are artifacts (Parquet exact, CSV safe for spreadsheets); the batch never carries
its targets; the model is left as it was."""

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from mlworkspace import storage
from models_registry.models import MLModel
from runs import artifacts
from runs.executor import execute_run
from runs.families import get_family, worlds
from runs.models import Run
from runs.pipeline import score_rows
from runs.services import dataset_create, run_deploys, run_start
from runs.tests.factories import register, trained_model
from runs.tests.test_worlds import CHECK_ROWS, FAMILIES, LABEL, RECIPES, TRAIN_ROWS

API = "/api/ml-development"
pytestmark = pytest.mark.django_db
# Columns a score run's batch must never hold: the labels (and the campaign's treatment).
OUTCOMES = {
    "forecasting": {"sales"},
    "pricing": {"units"},
    "next_best_action": {"converted", "revenue", "treatment"},
    "location_scoring": {"annual_sales"},
}


def model_state(model: MLModel) -> dict:
    model.refresh_from_db()
    fields = (
        "status",
        "training_run_id",
        "artifacts_json",
        "metrics_json",
        "updated_at",
        "recipe_version_id",
    )
    return {f: getattr(model, f) for f in fields}


def predictions(run: Run, name: str = "predictions.parquet") -> pd.DataFrame:
    with artifacts.local_copy(run.id, run.artifacts_json, name) as path:
        return pd.read_parquet(path) if name.endswith(".parquet") else pd.read_csv(path)


def score(user, model, **kwargs) -> Run:
    run = run_start(user=user, recipe=model.recipe, model=model, run_type="score", **kwargs)
    outcome = execute_run(run.id)
    run = Run.objects.select_related("model").get(pk=run.id)
    assert outcome == run.status, run.error
    return run


@pytest.mark.parametrize("name", FAMILIES)
def test_score_run_predicts_every_row_of_the_next_window(user, baselines, name):
    model = trained_model(user, recipe_id=RECIPES[name], rows=TRAIN_ROWS[name])
    before = model_state(model)
    run = score(user, model, params={"synthetic": {"rows": CHECK_ROWS[name]}})
    assert run.status == "succeeded", run.error

    # the batch is the window after the model's training data, in its world
    batch = worlds.generate(get_family(name), run.params_json["synthetic"])
    train = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    assert run.params_json["synthetic"]["window"]["start"] > train["window"]["end"]

    files = run.artifacts_json["files"]
    assert {"predictions.parquet", "predictions.csv"} <= set(files)
    for file_name in ("predictions.parquet", "predictions.csv"):
        path = (Path(settings.MEDIA_ROOT) / "artifacts" / run.id) / file_name
        assert files[file_name]["sha256"] == storage.sha256_of(path)
        assert files[file_name]["size"] == path.stat().st_size
    scored, exported = predictions(run), predictions(run, "predictions.csv")
    column = get_family(name).PREDICTION_COLUMN
    assert len(scored) == len(exported) == len(batch) == run.artifacts_json["scoring"]["rows"]
    assert run.artifacts_json["scoring"] == {
        "rows": len(batch),
        "columns": list(scored.columns),
        "prediction_columns": [column],
    }
    assert not OUTCOMES[name] & set(scored.columns), "targets leaked into the score run's output"
    assert LABEL[name] not in exported.columns
    assert list(scored.columns) == [c for c in batch.columns if c not in OUTCOMES[name]] + [column]
    assert np.isfinite(scored[column]).all()
    assert scored[column].to_numpy() == pytest.approx(exported[column].to_numpy())

    # no metrics, no evaluation, no training; the deployment stage did the scoring
    assert run.metrics_json == {} and run.outcome == ""
    stages = {s["type"]: s for s in run.stages_json}
    assert stages["training"]["status"] == "skipped"
    assert stages["evaluation"]["status"] == "skipped"
    assert stages["evaluation"]["detail"] == "score run: labels arrive later"
    assert stages["deployment"]["status"] == "succeeded"
    assert stages["quality"]["status"] == stages["feature_prep"]["status"] == "succeeded"
    assert "metrics.json" not in files and not run.artifacts_json["model"]
    # the model is untouched
    assert not run_deploys(run)
    assert model_state(model) == before


def test_score_predictions_are_what_the_predict_endpoint_answers(api_client, user, baselines):
    model = trained_model(user, recipe_id=RECIPES["location_scoring"], rows=TRAIN_ROWS["location_scoring"])
    run = score(user, model, params={"synthetic": {"rows": 400}})
    scored = predictions(run)
    schema = artifacts.read_json_artifact(model.training_run_id, model.artifacts_json, "schema.json")
    inputs = [c["name"] for c in schema["input_columns"]]
    rows = json.loads(scored[inputs].head(60).to_json(orient="records", date_format="iso"))
    r = api_client.post(f"{API}/models/{model.id}/predict", {"rows": rows}, format="json")
    assert r.status_code == 200, r.json()
    assert r.json()["predictions"] == pytest.approx(scored["prediction"].head(60).tolist(), rel=1e-9)


def test_score_run_default_batch_is_the_window_after_training(user, baselines):
    model = trained_model(user)  # pricing, 3000 rows
    run = run_start(user=user, recipe=model.recipe, model=model, run_type="score", params={})
    train = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    assert run.params_json["synthetic"]["world"] == train["world"]
    assert run.params_json["synthetic"]["window"]["start"] > train["window"]["end"]


def test_chunks_keep_an_entity_together_and_change_no_score(user, baselines):
    """Scoring in chunks (bounded memory) gives the scores of one call: forecasting predicts a
    series' later days from its earlier ones, so a series is never split across chunks."""
    model = trained_model(user, recipe_id=RECIPES["forecasting"], rows=TRAIN_ROWS["forecasting"])
    family = get_family("forecasting")
    fitted, schema = artifacts.load_model(model)
    after = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    batch = worlds.generate(family, worlds.resolve(family, {"rows": 20 * 30}, after=after))
    inputs = batch[[c["name"] for c in schema["input_columns"]]]
    calls = []

    class Counting:
        PREDICTION_COLUMN = family.PREDICTION_COLUMN

        @staticmethod
        def predict(m, rows):
            calls.append(rows["series_id"].unique().tolist())
            return family.predict(m, rows)

    whole = np.asarray(family.predict(fitted, inputs), dtype=float)
    chunked = score_rows(Counting, fitted, inputs, ["series_id"], chunk_rows=70)
    assert len(calls) > 4
    seen = [s for chunk in calls for s in chunk]
    assert len(seen) == len(set(seen)), "a series was split across chunks"
    assert chunked == pytest.approx(whole, rel=1e-12)


def test_score_run_on_an_uploaded_batch_without_labels(user, baselines):
    model = trained_model(user)  # pricing
    family = get_family("pricing")
    after = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    batch = worlds.generate(family, worlds.resolve(family, {"rows": 600}, after=after))
    upload = SimpleUploadedFile("batch.csv", batch.drop(columns=["units"]).to_csv(index=False).encode())
    dataset = dataset_create(user=user, upload=upload, recipe=model.recipe)
    run = score(user, model, dataset=dataset)
    assert run.status == "succeeded", run.error
    scored = predictions(run)
    assert len(scored) == len(batch) and "units" not in scored.columns
    assert (scored["predicted_units"] > 0).all()


def test_batch_missing_a_model_input_fails_the_quality_stage(user, baselines):
    """regular_price is optional for the recipe (the upload passes) but the model was trained
    with it: the quality stage names the column and what to do."""
    model = trained_model(user)  # pricing
    family = get_family("pricing")
    after = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    batch = worlds.generate(family, worlds.resolve(family, {"rows": 600}, after=after))
    upload = SimpleUploadedFile(
        "batch.csv", batch.drop(columns=["regular_price"]).to_csv(index=False).encode()
    )
    dataset = dataset_create(user=user, upload=upload, recipe=model.recipe)
    before = model_state(model)
    run = score(user, model, dataset=dataset)
    assert run.status == "failed"
    assert "column 'regular_price' is missing (the model was trained with it)" in run.error
    assert "add the missing column" in run.error
    quality = next(s for s in run.stages_json if s["type"] == "quality")
    assert quality["status"] == "failed"
    assert model_state(model) == before


def test_batch_missing_a_required_feature_is_refused_at_creation(api_client, user, baselines):
    model = trained_model(user)
    frame = pd.DataFrame({"product_id": ["p1"], "store_id": ["s1"], "week": ["2025-01-06"], "segment": ["x"]})
    buffer = io.BytesIO(frame.to_csv(index=False).encode())
    buffer.name = "nope.csv"
    dataset_id = api_client.post(
        f"{API}/datasets", {"file": buffer, "recipe_id": "recipe_pricing_base"}, format="multipart"
    ).json()["id"]
    r = api_client.post(
        f"{API}/runs",
        {
            "recipe_id": "recipe_pricing_base",
            "run_type": "score",
            "model_id": model.id,
            "dataset_id": dataset_id,
        },
        format="json",
    )
    assert r.status_code == 400, r.json()
    messages = " ".join(e["message"] for e in r.json()["errors"] if e["path"] == "/dataset_id")
    assert "column 'price' is missing" in messages and "column 'unit_cost' is missing" in messages
    assert "units" not in messages  # labels are not required to score


def test_score_run_needs_a_model_with_an_artifact_on_the_recipe(api_client, user, baselines):
    untrained = register(user)
    other = register(user, recipe_id="recipe_location_base", name="Other recipe's model")
    cases = [
        ({}, "give its model_id"),
        ({"model_id": untrained.id}, "has no trained artifact yet"),
        ({"model_id": other.id}, "belongs to recipe 'recipe_location_base'"),
    ]
    for extra, message in cases:
        body = {"recipe_id": "recipe_pricing_base", "run_type": "score", **extra}
        r = api_client.post(f"{API}/runs", body, format="json")
        assert r.status_code == 400, r.json()
        errors = {e["path"]: e["message"] for e in r.json()["errors"]}
        assert message in errors["/model_id"], errors
    assert Run.objects.count() == 0


def test_api_create_and_run_page(api_client, client, user, baselines):
    model = trained_model(user)
    client.force_login(user)
    r = api_client.post(
        f"{API}/runs",
        {
            "recipe_id": "recipe_pricing_base",
            "run_type": "score",
            "model_id": model.id,
            "params": {"synthetic": {"rows": 300}},
        },
        format="json",
    )
    assert r.status_code == 201, r.json()
    assert (r.json()["run_type"], r.json()["model_id"]) == ("score", model.id)
    run_id = r.json()["id"]
    assert execute_run(run_id) == "succeeded", Run.objects.get(pk=run_id).error
    body = api_client.get(f"{API}/runs/{run_id}").json()
    rows = body["artifacts_json"]["scoring"]["rows"]
    assert body["metrics_json"] == {} and rows > 0

    page = client.get(f"/model-development/runs/{run_id}").content.decode()
    assert f"Scored {rows} rows" in page
    assert "Metrics against targets" not in page
    assert f"/api/ml-development/runs/{run_id}/artifacts/predictions.parquet" in page
    assert f"/api/ml-development/runs/{run_id}/artifacts/predictions.csv" in page
    download = api_client.get(f"{API}/runs/{run_id}/artifacts/predictions.csv")
    assert download.status_code == 200

    library = client.get("/model-development/?tab=runs").content.decode()
    assert 'value="score"' in library
    filtered = client.get("/model-development/?tab=runs&run_type=score").content.decode()
    assert run_id in filtered
