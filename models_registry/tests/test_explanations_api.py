"""A model's explanations through the API (issue #17 §1, §2): GET /models/{id}/explanations
serves its train run's explanations.json (404s for a model the user may not see and for one
without explanations), and POST /models/{id}/predict with "explain": true adds one
explanation per row whose contributions add up to the model's output (exact methods), by the
model that served the row while an experiment runs; bad input is a 400 naming the field.

Run alone with: .venv/bin/python -m pytest -q models_registry/tests/test_explanations_api.py
"""

from __future__ import annotations

import math

import pytest
from rest_framework.test import APIClient

from experiments.models import Exposure
from experiments.tests.conftest import promote, sharing_artifact, start
from mlworkspace.errors import InvalidInput
from models_registry.models import MLModel
from models_registry.services import model_register
from runs import artifacts
from runs.families import get_family
from runs.tests.factories import register, trained_model

API = "/api/ml-development"
FILES = ("explanations.json", "explanations.parquet", "explanation_background.parquet")
# Families whose per-prediction attribution is exact (TreeSHAP of LightGBM, the linear demand
# model's own decomposition), small training batches.
EXACT = {"location_scoring": ("recipe_location_base", 2000), "pricing": ("recipe_pricing_base", 3000)}

pytestmark = pytest.mark.django_db


def rows_for(family_name: str, n: int, seed: int = 9) -> list[dict]:
    """`n` request rows of the family's synthetic world (labels dropped, dates as text)."""
    family = get_family(family_name)
    frame = family.generate(max(200, n), seed).head(n)
    for column in frame.columns:
        if str(frame[column].dtype).startswith("datetime"):
            frame[column] = frame[column].astype(str)
    return frame.to_dict(orient="records")


def without_explanations(model: MLModel) -> MLModel:
    """The model as one trained before the explain stage existed: its files lack the three."""
    files = {n: e for n, e in model.artifacts_json["files"].items() if n not in FILES}
    MLModel.objects.filter(pk=model.pk).update(artifacts_json={**model.artifacts_json, "files": files})
    model.refresh_from_db()
    return model


def explain(client, model, rows, **body):
    return client.post(
        f"{API}/models/{model.pk}/predict", {"rows": rows, "explain": True, **body}, format="json"
    )


@pytest.fixture
def location(baselines, user):
    recipe_id, rows = EXACT["location_scoring"]
    return trained_model(user, recipe_id, rows=rows)


# --------------------------------------------------------------------------- GET explanations


def test_get_explanations_serves_the_train_run_document(api_client, location):
    r = api_client.get(f"{API}/models/{location.pk}/explanations")
    assert r.status_code == 200, r.json()
    body = r.json()
    stored = artifacts.read_json_artifact(
        location.training_run_id, location.artifacts_json, "explanations.json"
    )
    assert body == stored
    assert body["family"] == "location_scoring"
    for key in ("method", "method_note", "base_value", "global", "dependence", "attribution", "family_view"):
        assert key in body
    importance = [g["importance"] for g in body["global"]]
    assert importance == sorted(importance, reverse=True)
    for item in body["global"]:
        assert set(item) >= {"feature", "importance", "ci_low", "ci_high"}
        assert item["ci_low"] <= item["importance"] <= item["ci_high"]


def test_a_model_without_explanations_is_a_404_that_says_why(api_client, location, user):
    without_explanations(location)
    r = api_client.get(f"{API}/models/{location.pk}/explanations")
    assert r.status_code == 404
    assert "has no explanations" in r.json()["detail"] and "explain" in r.json()["detail"]
    # predict with "explain" too, before any row is predicted; without it the model still predicts.
    rows = rows_for("location_scoring", 2)
    r = explain(api_client, location, rows)
    assert r.status_code == 404 and "has no explanations" in r.json()["detail"]
    plain = api_client.post(f"{API}/models/{location.pk}/predict", {"rows": rows}, format="json")
    assert plain.status_code == 200 and "explanations" not in plain.json()
    # A model never trained.
    untrained = register(user, "recipe_location_base", name="Untrained")
    r = api_client.get(f"{API}/models/{untrained.pk}/explanations")
    assert r.status_code == 404 and "has no explanations" in r.json()["detail"]
    assert api_client.get(f"{API}/models/model_nope/explanations").status_code == 404


def test_explanations_of_a_client_model_are_404_for_others(client_recipe, api_client, anon_client):
    model = model_register(
        user=client_recipe.admin,
        name="A's model",
        recipe=client_recipe.recipe,
        recipe_version=client_recipe.version,
    )
    outsider = api_client  # the `user` fixture: a firm data scientist outside Client A
    r = outsider.get(f"{API}/models/{model.pk}/explanations")
    assert r.status_code == 404 and "has no explanations" not in r.json()["detail"]
    member = APIClient()
    member.force_authenticate(client_recipe.member)
    r = member.get(f"{API}/models/{model.pk}/explanations")
    assert r.status_code == 404 and "has no explanations" in r.json()["detail"]  # seen, not trained
    assert anon_client.get(f"{API}/models/{model.pk}/explanations").status_code in (401, 403)


# --------------------------------------------------------------------------- predict with "explain"


@pytest.mark.parametrize("family_name", list(EXACT))
def test_predict_explanations_add_up_to_the_model_output(api_client, baselines, user, family_name):
    recipe_id, train_rows = EXACT[family_name]
    model = trained_model(user, recipe_id, rows=train_rows)
    rows = rows_for(family_name, 6)
    r = explain(api_client, model, rows)
    assert r.status_code == 200, r.json()
    body = r.json()
    assert len(body["explanations"]) == len(body["predictions"]) == len(rows)
    document = api_client.get(f"{API}/models/{model.pk}/explanations").json()
    for prediction, item in zip(body["predictions"], body["explanations"], strict=True):
        assert item["model_id"] == model.pk
        assert item["method"] == document["method"]
        assert item["reasons"] and all(isinstance(reason, str) for reason in item["reasons"])
        total = item["base_value"] + math.fsum(item["contributions"].values())
        assert total == pytest.approx(item["output"], abs=1e-6)
        if item["scale"] == "prediction":
            assert item["output"] == pytest.approx(prediction, rel=1e-9, abs=1e-9)
        if family_name == "pricing":
            assert isinstance(item["elasticity"], float)
            curve = item["demand_curve"]
            assert len(curve["price"]) == len(curve["units"]) > 1
    # The same rows explained directly give the same answer (the API adds only model_id).
    direct = artifacts.explain_rows(model, rows)
    assert [{k: v for k, v in e.items() if k != "model_id"} for e in body["explanations"]] == direct
    # Without "explain" (or with false) the answer has no explanations.
    for extra in ({}, {"explain": False}):
        plain = api_client.post(f"{API}/models/{model.pk}/predict", {"rows": rows, **extra}, format="json")
        assert plain.status_code == 200 and "explanations" not in plain.json()
        assert plain.json()["predictions"] == body["predictions"]


@pytest.mark.parametrize("value", ["yes", 1, 0, None, "true", [True]])
def test_explain_must_be_a_boolean(api_client, baselines, user, value):
    model = register(user)
    r = api_client.post(
        f"{API}/models/{model.pk}/predict", {"rows": [{"a": 1}], "explain": value}, format="json"
    )
    assert r.status_code == 400
    assert [e["path"] for e in r.json()["errors"]] == ["/explain"]


def test_too_many_rows_to_explain_is_a_400_on_rows(api_client, baselines, user, settings):
    settings.PREDICT_EXPLAIN_MAX_ROWS = 2
    model = register(user)
    r = explain(api_client, model, [{"a": 1}] * 3)
    assert r.status_code == 400
    assert r.json()["errors"] == [{"path": "/rows", "message": "more than 2 rows to explain"}]
    assert "At most 2 rows" in r.json()["detail"]


def test_a_bad_row_to_explain_is_a_400_naming_it(api_client, location):
    rows = rows_for("location_scoring", 3)
    column = next(k for k, v in rows[0].items() if isinstance(v, float))
    rows[1][column] = "lots"
    r = explain(api_client, location, rows)
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == f"/rows/1/{column}"
    del rows[2][column]
    rows[1][column] = 1.0
    r = explain(api_client, location, rows)
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == f"/rows/2/{column}"


# --------------------------------------------------------------------------- while an experiment runs


def test_each_row_is_explained_by_the_model_that_served_it(api_client, location, user):
    champion = promote(location, user)
    twin = sharing_artifact(user, champion)  # its own id, the champion's trained artifact
    rows = rows_for("location_scoring", 30)
    for i, row in enumerate(rows):
        row["customer_id"] = f"c{i}"
    experiment = start(api_client, champion, twin, split=0.5)
    assert experiment.status_code == 201, experiment.json()
    r = explain(api_client, champion, rows)
    assert r.status_code == 200, r.json()
    body = r.json()
    assert set(body["arms"]) == {"champion", "challenger"}  # both arms in this request
    served_by = [body["models"][arm] for arm in body["arms"]]
    assert [e["model_id"] for e in body["explanations"]] == served_by
    for item in body["explanations"]:
        total = item["base_value"] + math.fsum(item["contributions"].values())
        assert total == pytest.approx(item["output"], abs=1e-6)


def test_a_serving_model_without_explanations_is_a_404_before_any_exposure(api_client, location, user):
    champion = promote(location, user)
    twin = without_explanations(sharing_artifact(user, champion))
    rows = rows_for("location_scoring", 4)
    for i, row in enumerate(rows):
        row["customer_id"] = f"c{i}"
    experiment = start(api_client, champion, twin, split=0.5).json()["id"]
    r = explain(api_client, champion, rows)
    assert r.status_code == 404 and twin.pk in r.json()["detail"]
    assert not Exposure.objects.filter(experiment_id=experiment).exists()


def test_a_row_that_cannot_be_explained_leaves_no_exposure(api_client, location, user, monkeypatch):
    """The exposures of a request whose explanation fails after its predictions are undone."""
    champion = promote(location, user)
    twin = sharing_artifact(user, champion)
    rows = rows_for("location_scoring", 4)
    for i, row in enumerate(rows):
        row["customer_id"] = f"c{i}"
    experiment = start(api_client, champion, twin, split=0.5).json()["id"]

    def unexplainable(model, rows):
        raise InvalidInput("rows: cannot be explained", [{"path": "/rows", "message": "cannot be explained"}])

    monkeypatch.setattr(artifacts, "explain_rows", unexplainable)
    r = explain(api_client, champion, rows)
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/rows"
    assert not Exposure.objects.filter(experiment_id=experiment).exists()
    plain = api_client.post(f"{API}/models/{champion.pk}/predict", {"rows": rows}, format="json")
    assert plain.status_code == 200 and Exposure.objects.filter(experiment_id=experiment).count() == 4
