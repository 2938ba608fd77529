import copy
import json

import pytest
from django.db import IntegrityError, transaction

from recipes.models import Recipe, RecipeVersion
from recipes.tests.factories import make_client, make_recipe, manifest_for

API = "/api/ml-development"
pytestmark = pytest.mark.django_db


def create_body(**over):
    body = {
        "name": "Grocery pricing",
        "model_family": "pricing",
        "level": "industry",
        "parent_id": "recipe_pricing_base",
        "tags": ["retail", "dynamic-pricing"],
        "manifest": manifest_for("pricing", "industry"),
    }
    body.update(over)
    return body


def test_baselines_listed_with_current_version(api_client, baselines):
    r = api_client.get(f"{API}/recipes")
    assert r.status_code == 200
    ids = {row["id"] for row in r.json()["results"]}
    assert ids == {
        "recipe_forecasting_base",
        "recipe_pricing_base",
        "recipe_nba_base",
        "recipe_location_base",
    }
    row = next(x for x in r.json()["results"] if x["id"] == "recipe_nba_base")
    assert row["current_version"]["id"] == "ver_nba_base_v1"
    assert row["current_version"]["is_approved"] is True
    assert row["version_count"] == 1
    assert row["status"] == "approved"


@pytest.mark.parametrize(
    "query, expected",
    [
        ("model_family=pricing", {"recipe_pricing_base"}),
        ("model_family=pricing&level=baseline&status=approved", {"recipe_pricing_base"}),
        ("level=industry", set()),
        ("tag=uplift", {"recipe_nba_base"}),
        ("search=location", {"recipe_location_base"}),
    ],
)
def test_list_filters(api_client, baselines, query, expected):
    r = api_client.get(f"{API}/recipes?{query}")
    assert r.status_code == 200
    assert {row["id"] for row in r.json()["results"]} == expected


def test_list_unknown_filter_value_is_400_naming_field(api_client, baselines):
    r = api_client.get(f"{API}/recipes?model_family=astrology")
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "/model_family"


def test_list_ordering_and_pagination(api_client, baselines):
    r = api_client.get(f"{API}/recipes?ordering=name&page_size=2")
    body = r.json()
    assert body["count"] == 4
    assert [row["name"] for row in body["results"]] == [
        "Forecasting Baseline v1",
        "Location Scoring Baseline v1",
    ]
    assert body["next"]


def test_list_query_count_is_constant(api_client, baselines, user, django_assert_max_num_queries):
    parent = Recipe.objects.get(pk="recipe_pricing_base")
    for i in range(15):
        make_recipe(user, level="industry", parent=parent, name=f"r{i}", tags=["a", "b"])
    with django_assert_max_num_queries(6):
        r = api_client.get(f"{API}/recipes")
    assert r.json()["count"] == 19


def test_detail_has_manifest_and_children(api_client, baselines, user):
    child = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    r = api_client.get(f"{API}/recipes/recipe_pricing_base")
    assert r.status_code == 200
    body = r.json()
    assert body["current_version"]["manifest"]["metadata"]["model_family"] == "pricing"
    assert [c["id"] for c in body["children"]] == [child.id]
    assert api_client.get(f"{API}/recipes/recipe_pricing_base/").status_code == 200


def test_detail_unknown_is_404_json(api_client):
    r = api_client.get(f"{API}/recipes/recipe_nope")
    assert r.status_code == 404
    assert "detail" in r.json()


def test_create_makes_version_1_0_0(api_client, baselines):
    r = api_client.post(f"{API}/recipes", create_body(), format="json")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["id"].startswith("recipe_")
    assert body["parent_id"] == "recipe_pricing_base"
    assert body["status"] == "draft"
    assert body["tags"] == ["dynamic-pricing", "retail"]
    version = body["current_version"]
    assert version["version"] == "1.0.0"
    assert version["manifest"]["metadata"]["id"] == body["id"]
    assert version["manifest"]["metadata"]["level"] == "industry"


def test_create_with_invalid_manifest_reports_every_error_and_writes_nothing(api_client, baselines):
    manifest = manifest_for("pricing", "industry")
    manifest["evaluation"]["metrics"]["calibration"]["target"] = "low"
    manifest["deployment"]["schedule"] = "every monday"
    r = api_client.post(f"{API}/recipes", create_body(manifest=manifest), format="json")
    assert r.status_code == 400
    paths = {e["path"] for e in r.json()["errors"]}
    assert "/manifest/evaluation/metrics/calibration/target" in paths
    assert "/manifest/deployment/schedule" in paths
    assert Recipe.objects.count() == 4
    assert RecipeVersion.objects.count() == 4


@pytest.mark.parametrize(
    "over, field",
    [
        ({"model_family": "astrology"}, "/model_family"),
        ({"level": "galaxy"}, "/level"),
        ({"parent_id": "recipe_nba_base"}, "/parent_id"),  # other family
        ({"parent_id": "recipe_missing"}, "/parent_id"),
        ({"level": "client"}, "/parent_id"),  # parent must be industry
        ({"tags": "retail"}, "/tags"),
        ({"manifest": []}, "/manifest"),
        ({"name": ""}, "/name"),
        ({"colour": "red"}, "/colour"),
    ],
)
def test_create_bad_input_names_the_field(api_client, baselines, over, field):
    body = create_body(**over)
    if over.get("level") == "client":
        body["manifest"]["metadata"]["level"] = "client"
    r = api_client.post(f"{API}/recipes", body, format="json")
    assert r.status_code == 400, r.json()
    assert field in {e["path"] for e in r.json()["errors"]}
    assert Recipe.objects.count() == 4


def test_create_manifest_family_mismatch(api_client, baselines):
    manifest = manifest_for("pricing", "industry")
    manifest["metadata"]["model_family"] = "forecasting"
    r = api_client.post(f"{API}/recipes", create_body(manifest=manifest), format="json")
    assert r.status_code == 400
    assert "/manifest/metadata/model_family" in {e["path"] for e in r.json()["errors"]}


def test_malformed_json_is_400(api_client):
    r = api_client.post(f"{API}/recipes", data="{not json", content_type="application/json")
    assert r.status_code == 400
    assert "Malformed" in r.json()["detail"]


def test_oversized_body_is_413(api_client, settings):
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    r = api_client.post(
        f"{API}/recipes", data=json.dumps({"name": "x" * 5000}), content_type="application/json"
    )
    assert r.status_code == 413


def test_update_only_metadata_fields(api_client, baselines, user):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    r = api_client.put(f"{API}/recipes/{recipe.id}", {"description": "New", "tags": ["x"]}, format="json")
    assert r.status_code == 200
    assert r.json()["description"] == "New"
    assert r.json()["tags"] == ["x"]
    r = api_client.put(f"{API}/recipes/{recipe.id}", {"manifest": {}}, format="json")
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "/manifest"


@pytest.mark.parametrize(
    "start, target, code",
    [
        ("draft", "in_review", 200),
        ("draft", "approved", 409),
        ("deprecated", "in_review", 409),
        ("in_review", "deprecated", 200),
    ],
)
def test_update_status_transitions(api_client, baselines, user, start, target, code):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    Recipe.objects.filter(pk=recipe.pk).update(status=start)
    r = api_client.put(f"{API}/recipes/{recipe.id}", {"status": target}, format="json")
    assert r.status_code == code, r.json()
    assert Recipe.objects.get(pk=recipe.pk).status == (target if code == 200 else start)


def test_clone_one_level_down(api_client, baselines, user):
    acme = make_client("Acme", {user: "data_scientist"})
    r = api_client.post(f"{API}/recipes/recipe_pricing_base/clone?name=Grocery%20pricing")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["level"] == "industry"
    assert body["parent_id"] == "recipe_pricing_base"
    assert body["status"] == "draft"
    manifest = body["current_version"]["manifest"]
    assert manifest["metadata"]["level"] == "industry"
    assert manifest["metadata"]["id"] == body["id"]
    assert manifest["pipeline"] == RecipeVersion.objects.get(pk="ver_pricing_base_v1").manifest["pipeline"]
    # and again, down to client; a client cannot be cloned further.
    r2 = api_client.post(
        f"{API}/recipes/{body['id']}/clone/", {"name": "Chain A", "client_id": acme.pk}, format="json"
    )
    assert r2.status_code == 201
    assert r2.json()["level"] == "client"
    assert r2.json()["client_id"] == acme.pk
    r3 = api_client.post(f"{API}/recipes/{r2.json()['id']}/clone?name=x")
    assert r3.status_code == 409


def test_clone_needs_a_name(api_client, baselines):
    r = api_client.post(f"{API}/recipes/recipe_pricing_base/clone")
    assert r.status_code == 400
    assert r.json()["errors"][0]["path"] == "/name"


def test_versions_create_with_bump_and_explicit(api_client, baselines, user):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    manifest = manifest_for("pricing", "industry")
    manifest["evaluation"]["metrics"]["calibration"]["target"] = 0.01
    r = api_client.post(
        f"{API}/recipes/{recipe.id}/versions",
        {"manifest": manifest, "bump": "minor", "changelog": "tighter"},
        format="json",
    )
    assert r.status_code == 201, r.json()
    assert r.json()["version"] == "1.1.0"
    assert r.json()["manifest"]["metadata"]["version"] == "1.1.0"
    manifest["evaluation"]["metrics"]["calibration"]["target"] = 0.009
    r = api_client.post(
        f"{API}/recipes/{recipe.id}/versions", {"manifest": manifest, "version": "2.0.0"}, format="json"
    )
    assert r.json()["version"] == "2.0.0"
    listing = api_client.get(f"{API}/recipes/{recipe.id}/versions").json()
    assert [v["version"] for v in listing] == ["1.0.0", "1.1.0", "2.0.0"]
    detail = api_client.get(f"{API}/recipes/{recipe.id}").json()
    assert detail["current_version"]["version"] == "2.0.0"
    assert detail["version_count"] == 3


@pytest.mark.parametrize(
    "body, code, path",
    [
        ({"version": "1.0.0"}, 409, "/version"),
        ({"version": "0.9.0"}, 409, "/version"),
        ({"version": "1.2"}, 400, "/version"),
        ({"version": "v2.0.0"}, 400, "/version"),
        ({"bump": "huge"}, 400, "/bump"),
    ],
)
def test_versions_bad_numbers(api_client, baselines, user, body, code, path):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    r = api_client.post(
        f"{API}/recipes/{recipe.id}/versions",
        {"manifest": manifest_for("pricing", "industry"), **body},
        format="json",
    )
    assert r.status_code == code, r.json()
    assert path in {e["path"] for e in r.json()["errors"]}
    assert recipe.versions.count() == 1


def test_approve_needs_permission(api_client, lead_client, baselines, user):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    version = recipe.current_version
    url = f"{API}/recipes/{recipe.id}/versions/{version.id}/approve"
    assert api_client.post(url, {"override_reason": "trust me"}, format="json").status_code == 403
    # The approval gate (no evidence run yet) is tested in test_lineage_api.py; a lead may override.
    r = lead_client.post(url, {"override_reason": "reviewed offline"}, format="json")
    assert r.status_code == 200
    assert r.json()["approved_by"] == "lead"
    assert Recipe.objects.get(pk=recipe.pk).status == "approved"
    assert lead_client.post(f"{API}/recipes/{recipe.id}/versions/ver_nope/approve").status_code == 404


def test_versions_are_immutable_in_the_database_api(api_client, baselines):
    # No update or delete route exists for versions.
    url = f"{API}/recipes/recipe_pricing_base/versions/ver_pricing_base_v1"
    assert api_client.get(url).status_code == 200
    assert api_client.put(url, {"manifest": {}}, format="json").status_code == 405
    assert api_client.delete(url).status_code in (403, 405)
    assert RecipeVersion.objects.get(pk="ver_pricing_base_v1").manifest["metadata"]["version"] == "1.0.0"


def test_synthetic_example_and_inheritance(api_client, baselines):
    r = api_client.get(f"{API}/recipes/recipe_nba_base/synthetic-example")
    assert r.status_code == 200
    body = r.json()
    assert body["inherited_from"] is None
    assert {c["name"] for c in body["schema_json"]} == set(body["sample_rows_json"][0])
    assert body["example_metrics_json"]["qini_coefficient"] > 0
    clone = api_client.post(f"{API}/recipes/recipe_nba_base/clone?name=Telco").json()
    r = api_client.get(f"{API}/recipes/{clone['id']}/synthetic-example")
    assert r.json()["inherited_from"] == "recipe_nba_base"


def test_permissions_anonymous_and_viewer(anon_client, viewer_client, baselines):
    assert anon_client.get(f"{API}/recipes").status_code in (401, 403)
    assert viewer_client.get(f"{API}/recipes").status_code == 200
    r = viewer_client.post(f"{API}/recipes", create_body(), format="json")
    assert r.status_code == 403
    assert viewer_client.post(f"{API}/recipes/recipe_pricing_base/clone?name=x").status_code == 403


def test_database_rejects_parent_of_wrong_level(baselines):
    base = Recipe.objects.get(pk="recipe_pricing_base")
    with pytest.raises(IntegrityError), transaction.atomic():
        Recipe.objects.create(
            id="recipe_bad", name="bad", model_family="pricing", level="client", parent=base
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Recipe.objects.create(
            id="recipe_bad2", name="bad", model_family="forecasting", level="industry", parent=base
        )
    with pytest.raises(IntegrityError), transaction.atomic():
        Recipe.objects.create(
            id="recipe_bad3", name="bad", model_family="pricing", level="industry", parent=None
        )


def test_database_rejects_duplicate_version_and_bad_semver(baselines):
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    manifest = copy.deepcopy(recipe.current_version.manifest)
    with pytest.raises(IntegrityError), transaction.atomic():
        RecipeVersion.objects.create(id="ver_dup", recipe=recipe, version="1.0.0", manifest=manifest)
    with pytest.raises(IntegrityError), transaction.atomic():
        RecipeVersion.objects.create(id="ver_bad", recipe=recipe, version="1.0", manifest=manifest)


def test_manifest_validate_endpoint(api_client):
    manifest = manifest_for("pricing", "baseline")
    r = api_client.post(
        f"{API}/manifest/validate?model_family=pricing&level=baseline", {"manifest": manifest}, format="json"
    )
    assert r.json() == {"valid": True, "errors": []}
    manifest["deployment"]["mode"] = "sometimes"
    r = api_client.post(f"{API}/manifest/validate", {"manifest": manifest}, format="json")
    assert r.json()["valid"] is False
    assert r.json()["errors"][0]["path"] == "/manifest/deployment/mode"


def test_fixture_loads_twice_harmlessly(baselines):
    from django.core.management import call_command

    call_command("loaddata", "baseline_recipes", verbosity=0)
    assert Recipe.objects.count() == 4
    assert RecipeVersion.objects.count() == 4
    assert Recipe.objects.get(pk="recipe_pricing_base").tags == [
        "baseline",
        "elasticity",
        "price-optimisation",
    ]


def test_detail_lists_children_up_to_a_limit(api_client, client, baselines, user, monkeypatch):
    from recipes import serializers

    parent = Recipe.objects.get(pk="recipe_pricing_base")
    for i in range(23):
        make_recipe(user, level="industry", parent=parent, name=f"child {i:02d}")
    monkeypatch.setattr(serializers, "CHILDREN_LISTED", 5)
    body = api_client.get(f"{API}/recipes/recipe_pricing_base").json()
    assert [c["name"] for c in body["children"]] == [f"child {i:02d}" for i in range(5)]
    assert body["children_count"] == 23
    client.force_login(user)
    page = client.get("/model-development/recipes/recipe_pricing_base").content.decode()
    assert "and 3 more" in page
    assert "parent_id=recipe_pricing_base" in page
