"""Comparing models of one recipe on the same labelled window (issue #14 §4): the API, the
stored result (metrics with paired bootstrap intervals, differences, drift, verdicts, plots),
its errors, and the comparison page."""

import pytest
from rest_framework.test import APIClient

from models_registry.services import model_set_status
from monitoring.models import Comparison
from monitoring.services import model_check, models_compare
from runs.tests.factories import register, trained_model

API = "/api/ml-development"
pytestmark = pytest.mark.django_db
CONCEPT = "less_price_sensitive"


@pytest.fixture
def pair(baselines, user):
    """A production pricing model checked on a window after the ground truth changed, and a
    staging model of the same recipe trained on more, newer-concept data."""
    champion = trained_model(user, rows=3000)
    model_set_status(model=champion, user=user, status="staging")
    model_set_status(model=champion, user=user, status="production")
    champion.refresh_from_db()
    model_check(model=champion, synthetic={"rows": 2000, "concept": CONCEPT})
    challenger = trained_model(user, rows=4000)
    return champion, challenger


def test_compare_stores_metrics_with_intervals_differences_drift_and_a_verdict(pair, api_client):
    champion, challenger = pair
    r = api_client.post(
        f"{API}/models/{champion.id}/compare", {"challenger_id": challenger.id}, format="json"
    )
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["model_ids"] == [champion.id, challenger.id] and body["reference_id"] == champion.id
    result = body["result_json"]
    assert result["metric"] == "margin_impact" and result["direction"] == "higher"
    assert result["rows"] > 0 and result["groups"] > 1 and result["replicates"] == 200
    # The default window: the newest labelled batch the champion was checked on.
    assert body["window_json"]["concept"] == CONCEPT
    assert body["window_json"]["window"] == champion.snapshots.get().data_freshness_json["batch"]["window"]
    ours, theirs = result["models"]
    for row in (ours, theirs):
        value = row["metrics"]["margin_impact"]
        assert value["low"] <= value["value"] <= value["high"]
        assert row["drift"]["method"] == "PSI" and row["drift"]["max_psi"] is not None
    assert ours["metrics"]["elasticity"]["low"] == ours["metrics"]["elasticity"]["high"]  # a model parameter
    difference = result["difference"][challenger.id]["margin_impact"]
    assert difference["value"] == pytest.approx(
        theirs["metrics"]["margin_impact"]["value"] - ours["metrics"]["margin_impact"]["value"]
    )
    verdict = result["verdicts"][challenger.id]
    assert verdict["verdict"] in {"better", "worse", "no_difference"}
    expected = "better" if difference["low"] > 0 else "worse" if difference["high"] < 0 else "no_difference"
    assert verdict["verdict"] == expected and "interval" in verdict["reasons"][0]
    assert set(result["plots"]) == {champion.id, challenger.id}
    assert body["summary"].startswith(challenger.name)
    fetched = api_client.get(f"{API}/comparisons/{body['id']}").json()
    assert fetched["result_json"]["verdicts"] == result["verdicts"]


def test_identical_models_make_no_difference(pair, user):
    champion, _challenger = pair
    twin = trained_model(user, rows=3000)  # same data, same seed: the same model
    comparison = models_compare(models=[champion, twin])
    difference = comparison.result_json["difference"][twin.id]["margin_impact"]
    assert difference["value"] == 0 and difference["low"] == difference["high"] == 0
    assert comparison.result_json["verdicts"][twin.id]["verdict"] == "no_difference"


def test_compare_on_an_explicit_synthetic_window(pair, api_client):
    champion, challenger = pair
    r = api_client.post(
        f"{API}/models/{champion.id}/compare",
        {"challenger_ids": [challenger.id], "synthetic": {"rows": 1000, "seed": 1}},
        format="json",
    )
    assert r.status_code == 201, r.json()
    assert r.json()["window_json"]["concept"] is None and r.json()["window_json"]["seed"] == 1


@pytest.mark.parametrize(
    "body, status, path",
    [
        ({}, 400, "/challenger_id"),
        ({"challenger_id": "model_nope"}, 400, "/challenger_id"),
        ({"challenger_ids": ["model_nope"]}, 400, "/challenger_ids"),
        ({"challenger_id": "SELF"}, 400, "/challenger_id"),
        ({"challenger_id": "OTHER", "dataset_id": "ds_x", "synthetic": {}}, 400, "/synthetic"),
        (
            {"challenger_id": "OTHER", "synthetic": {"rows": 1000, "shift": {"price": 2}}},
            400,
            "/synthetic/shift",
        ),
        ({"challenger_id": "OTHER", "dataset_id": "ds_nope"}, 400, "/dataset_id"),
        ({"challenger_id": "OTHER", "extra": 1}, 400, "/extra"),
    ],
)
def test_compare_bad_input_names_the_field(pair, api_client, body, status, path):
    champion, challenger = pair
    body = {
        k: (champion.id if v == "SELF" else challenger.id if v == "OTHER" else v) for k, v in body.items()
    }
    r = api_client.post(f"{API}/models/{champion.id}/compare", body, format="json")
    assert r.status_code == status, r.json()
    assert path in [e["path"] for e in r.json()["errors"]], r.json()
    assert not Comparison.objects.exists()


def test_compare_refuses_other_recipes_untrained_models_and_no_labelled_data(baselines, user, api_client):
    pricing = trained_model(user, rows=3000)
    location = trained_model(user, recipe_id="recipe_location_base", rows=3000)
    r = api_client.post(f"{API}/models/{pricing.id}/compare", {"challenger_id": location.id}, format="json")
    assert r.status_code == 400 and "another recipe" in str(r.json())
    other = trained_model(user, rows=3000)
    r = api_client.post(f"{API}/models/{pricing.id}/compare", {"challenger_id": other.id}, format="json")
    assert r.status_code == 409 and "not been checked" in r.json()["detail"]
    untrained = register(user)
    r = api_client.post(f"{API}/models/{pricing.id}/compare", {"challenger_id": untrained.id}, format="json")
    assert r.status_code == 400 and "no trained artifact" in str(r.json())
    assert not Comparison.objects.exists()


def test_compare_permissions(pair, viewer_client, client_private_model):
    champion, challenger = pair
    r = viewer_client.post(
        f"{API}/models/{champion.id}/compare", {"challenger_id": challenger.id}, format="json"
    )
    assert r.status_code == 403
    outsider = APIClient()
    outsider.force_authenticate(client_private_model.outsider)
    private = client_private_model.model
    assert (
        outsider.post(f"{API}/models/{private.id}/compare", {"challenger_id": "x"}, format="json").status_code
        == 404
    )


def test_comparison_page_and_the_model_pages_compare_form(pair, as_user):
    champion, challenger = pair
    page = as_user.get(f"/model-development/models/{champion.id}", {"tab": "monitoring"}).content.decode()
    assert 'id="compare-form"' in page and challenger.name in page
    r = as_user.post(f"/model-development/models/{champion.id}/compare", {"challenger": [challenger.id]})
    comparison = Comparison.objects.get()
    assert r.status_code == 302 and r.url == f"/model-development/comparisons/{comparison.id}"
    body = as_user.get(r.url).content.decode()
    assert 'id="comparison-table"' in body and 'id="verdicts"' in body and "margin_impact" in body
    assert comparison.result_json["verdicts"][challenger.id]["summary"] in body
    assert 'class="card chart' in body  # the overlaid family plots
    page = as_user.get(f"/model-development/models/{champion.id}", {"tab": "monitoring"}).content.decode()
    assert f"/model-development/comparisons/{comparison.id}" in page
    r = as_user.post(f"/model-development/models/{champion.id}/compare", {}, follow=True)
    assert "Tick one or more" in r.content.decode()


def test_a_clients_comparison_is_404_outside_the_client(pair, user, client_private_model):
    champion, challenger = pair
    firm = models_compare(models=[champion, challenger], user=user)
    private = client_private_model.model
    # Scoping only (the access rule on the recipe): a stored row of the client's recipe.
    hidden = Comparison.objects.create(
        id="cmp_private",
        recipe=private.recipe,
        reference=private,
        model_ids_json=[private.id],
        created_at=firm.created_at,
    )
    outsider, member = APIClient(), APIClient()
    outsider.force_authenticate(client_private_model.outsider)
    member.force_authenticate(client_private_model.member)
    assert outsider.get(f"{API}/comparisons/{firm.id}").status_code == 200
    assert outsider.get(f"{API}/comparisons/{hidden.id}").status_code == 404
    assert member.get(f"{API}/comparisons/{hidden.id}").status_code == 200
    assert outsider.get(f"{API}/comparisons/cmp_nope").status_code == 404
