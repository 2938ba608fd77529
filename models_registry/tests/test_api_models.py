import pytest

from models_registry.models import MLModel
from recipes.models import Recipe
from recipes.tests.factories import make_recipe
from runs.tests.factories import register, trained_model

API = "/api/ml-development"
pytestmark = pytest.mark.django_db


def test_register_against_approved_version(api_client, baselines):
    body = {
        "name": "Production Pricing Model",
        "recipe_id": "recipe_pricing_base",
        "recipe_version_id": "ver_pricing_base_v1",
        "owner": "data-science-team",
    }
    r = api_client.post(f"{API}/models", body, format="json")
    assert r.status_code == 201, r.json()
    out = r.json()
    assert out["id"].startswith("model_")
    assert out["status"] == "registered"
    assert out["owner"] == "data-science-team"
    assert out["version"] == "1.0.0"
    assert api_client.get(f"{API}/models/{out['id']}").json()["name"] == "Production Pricing Model"


@pytest.mark.parametrize(
    "over, path",
    [
        ({"recipe_id": "recipe_nope"}, "/recipe_id"),
        ({"recipe_version_id": "ver_nope"}, "/recipe_version_id"),
        ({"recipe_version_id": "ver_nba_base_v1"}, "/recipe_version_id"),
        ({"name": ""}, "/name"),
    ],
)
def test_register_bad_input(api_client, baselines, over, path):
    body = {
        "name": "m",
        "recipe_id": "recipe_pricing_base",
        "recipe_version_id": "ver_pricing_base_v1",
        **over,
    }
    r = api_client.post(f"{API}/models", body, format="json")
    assert r.status_code == 400
    assert path in {e["path"] for e in r.json()["errors"]}
    assert MLModel.objects.count() == 0


def test_register_unapproved_version_is_400(api_client, baselines, user):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    body = {"name": "m", "recipe_id": recipe.id, "recipe_version_id": recipe.current_version.id}
    r = api_client.post(f"{API}/models", body, format="json")
    assert r.status_code == 400
    assert "not approved" in r.json()["errors"][0]["message"]


def test_lifecycle_and_promotion_replaces_previous(api_client, baselines, user):
    first = trained_model(user)
    second = trained_model(user)
    for model in (first, second):
        assert (
            api_client.put(f"{API}/models/{model.id}", {"status": "staging"}, format="json").status_code
            == 200
        )
    r = api_client.put(f"{API}/models/{first.id}", {"status": "production"}, format="json")
    assert r.json()["status"] == "production"
    assert r.json()["replaced"] == []
    r = api_client.put(f"{API}/models/{second.id}", {"status": "production"}, format="json")
    assert r.status_code == 200
    assert r.json()["replaced"] == [first.id]
    assert MLModel.objects.get(pk=first.id).status == "staging"
    assert (
        api_client.put(f"{API}/models/{second.id}", {"status": "archived"}, format="json").status_code == 200
    )
    assert (
        api_client.put(f"{API}/models/{second.id}", {"status": "staging"}, format="json").status_code == 409
    )


def test_keep_other_production_when_asked(api_client, baselines, user):
    first, second = trained_model(user), trained_model(user)
    for model in (first, second):
        api_client.put(f"{API}/models/{model.id}", {"status": "staging"}, format="json")
        api_client.put(
            f"{API}/models/{model.id}", {"status": "production", "keep_other_production": True}, format="json"
        )
    assert MLModel.objects.filter(status="production").count() == 2


@pytest.mark.parametrize("target", ["production", "bogus"])
def test_illegal_transitions(api_client, baselines, user, target):
    model = register(user)
    r = api_client.put(f"{API}/models/{model.id}", {"status": target}, format="json")
    assert r.status_code == (409 if target == "production" else 400)
    assert MLModel.objects.get(pk=model.id).status == "registered"


def test_production_needs_an_artifact(api_client, baselines, user):
    model = register(user)
    api_client.put(f"{API}/models/{model.id}", {"status": "staging"}, format="json")
    r = api_client.put(f"{API}/models/{model.id}", {"status": "production"}, format="json")
    assert r.status_code == 409


def test_permissions(viewer_client, anon_client, baselines, user):
    model = register(user)
    assert anon_client.get(f"{API}/models").status_code in (401, 403)
    assert viewer_client.get(f"{API}/models").status_code == 200
    assert (
        viewer_client.put(f"{API}/models/{model.id}", {"status": "staging"}, format="json").status_code == 403
    )
    body = {"name": "m", "recipe_id": "recipe_pricing_base", "recipe_version_id": "ver_pricing_base_v1"}
    assert viewer_client.post(f"{API}/models", body, format="json").status_code == 403


def test_list_filters_and_query_count(api_client, baselines, user, django_assert_max_num_queries):
    for i in range(12):
        register(user, name=f"m{i}")
    register(user, recipe_id="recipe_nba_base", name="nba")
    with django_assert_max_num_queries(5):
        r = api_client.get(f"{API}/models?recipe_id=recipe_pricing_base")
    assert r.json()["count"] == 12
    assert api_client.get(f"{API}/models?model_family=next_best_action").json()["count"] == 1
    assert api_client.get(f"{API}/models?status=staging").json()["count"] == 0
    assert api_client.get(f"{API}/models?status=nope").status_code == 400
