"""HTML pages of the recipes app: recipe detail, manifest editor, versions, clone,
approve and status — full pages, HTMX fragments, writes and permissions."""

import copy
import json

import pytest
from django.utils import timezone

from recipes.models import Recipe, RecipeVersion
from recipes.tests.factories import make_recipe
from runs.models import Run, RunStatus, RunType

pytestmark = pytest.mark.django_db

LIBRARY = "/model-development/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def recipe_url(recipe_id: str, suffix: str = "") -> str:
    return f"/model-development/recipes/{recipe_id}{suffix}"


def location_manifest() -> dict:
    return copy.deepcopy(RecipeVersion.objects.get(pk="ver_location_base_v1").manifest)


# --------------------------------------------------------------------------- rendering


@pytest.mark.parametrize(
    "url",
    [
        LIBRARY,
        "/model-development/chat",
        "/model-development/recipes/recipe_pricing_base",
        "/model-development/recipes/recipe_pricing_base/clone",
        "/model-development/models/new",
        "/model-development/runs/new",
    ],
)
def test_anonymous_is_sent_to_login(client, baselines, url):
    response = client.get(url)
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/?next=")


def test_login_page_and_login(client, user):
    page = client.get("/accounts/login/")
    assert page.status_code == 200
    assert b'id="login-form"' in page.content
    response = client.post("/accounts/login/", {"username": "scientist", "password": "pw-scientist-1"})
    assert response.status_code == 302
    assert response["Location"] == "/model-development/"
    assert client.get(LIBRARY).status_code == 200
    assert client.post("/accounts/logout/").status_code == 302
    assert client.get(LIBRARY).status_code == 302


@pytest.mark.parametrize("tab", ["overview", "manifest", "versions", "lineage", "example"])
def test_recipe_detail_tabs_render_and_swap(as_user, baselines, tab):
    full = as_user.get(recipe_url("recipe_nba_base"), {"tab": tab})
    assert full.status_code == 200
    assert b"<html" in full.content
    assert b"Next Best Action Baseline v1" in full.content
    fragment = as_user.get(recipe_url("recipe_nba_base"), {"tab": tab}, **HTMX)
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content
    assert b'role="tablist"' in fragment.content


def test_recipe_detail_shows_the_synthetic_example_of_the_nearest_ancestor(as_user, baselines, user):
    clone = make_recipe(
        user,
        family="location_scoring",
        level="industry",
        parent=Recipe.objects.get(pk="recipe_location_base"),
    )
    body = as_user.get(recipe_url(clone.id), {"tab": "example"}).content.decode()
    assert "Inherited from" in body
    assert "site_id" in body and "rank_correlation" in body


def test_recipe_detail_unknown_is_404(as_user):
    assert as_user.get(recipe_url("recipe_nope")).status_code == 404


def test_manifest_is_escaped(as_user, user):
    recipe = make_recipe(user, family="pricing", name="<script>alert(1)</script>")
    body = as_user.get(recipe_url(recipe.id), {"tab": "manifest"}).content.decode()
    assert "<script>alert(1)</script>" not in body
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in body


# --------------------------------------------------------------------------- editor, versions


def test_live_validation_reports_errors_at_their_path_and_line(as_user, baselines):
    manifest = location_manifest()
    manifest["evaluation"]["metrics"]["rank_correlation"]["threshold_warning"] = 0.95
    text = json.dumps(manifest, indent=2)
    response = as_user.post(recipe_url("recipe_location_base", "/validate"), {"manifest": text}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert "/evaluation/metrics/rank_correlation" in body
    errors = response.context["editor_errors"]
    line = text.splitlines()[errors[0]["line"] - 1]
    assert '"rank_correlation"' in line or '"target"' in line or "threshold" in line

    ok = as_user.post(
        recipe_url("recipe_location_base", "/validate"), {"manifest": json.dumps(location_manifest())}
    )
    assert "The manifest is valid" in ok.content.decode()
    broken = as_user.post(recipe_url("recipe_location_base", "/validate"), {"manifest": '{"metadata": '})
    assert "Not valid JSON" in broken.content.decode()


def test_save_as_new_version_invalid_then_valid(as_user, baselines, user):
    recipe = make_recipe(
        user,
        family="location_scoring",
        level="industry",
        parent=Recipe.objects.get(pk="recipe_location_base"),
    )
    url = recipe_url(recipe.id, "/versions/new")
    manifest = copy.deepcopy(recipe.current_version.manifest)
    manifest["deployment"]["mode"] = "streaming"
    bad = as_user.post(url, {"manifest": json.dumps(manifest, indent=2), "bump": "minor", "changelog": "x"})
    assert bad.status_code == 400
    assert "/deployment/mode" in bad.content.decode()
    assert "streaming" in bad.content.decode()  # the user's text is kept in the editor
    assert recipe.versions.count() == 1

    not_json = as_user.post(url, {"manifest": "{", "bump": "minor"})
    assert not_json.status_code == 400
    assert "Not valid JSON" in not_json.content.decode()

    manifest["deployment"]["mode"] = "batch"
    manifest["evaluation"]["metrics"]["rank_correlation"]["target"] = 0.88
    good = as_user.post(
        url, {"manifest": json.dumps(manifest), "bump": "minor", "changelog": "Retail target"}
    )
    assert good.status_code == 302
    created = recipe.versions.get(version="1.1.0")
    assert created.changelog == "Retail target"
    assert created.manifest["evaluation"]["metrics"]["rank_correlation"]["target"] == 0.88
    assert f"b={created.pk}" in good["Location"]

    versions = as_user.get(good["Location"])
    body = versions.content.decode()
    assert "1.0.0 → 1.1.0" in body
    assert "/evaluation/metrics/rank_correlation/target" in body


def test_new_version_needs_permission(as_viewer, baselines):
    response = as_viewer.post(
        recipe_url("recipe_location_base", "/versions/new"),
        {"manifest": json.dumps(location_manifest()), "bump": "patch"},
    )
    assert response.status_code == 403
    assert "recipes.add_recipeversion" in response.content.decode()
    assert RecipeVersion.objects.filter(recipe_id="recipe_location_base").count() == 1


def test_diff_fragment_between_any_two_versions(as_user, user):
    recipe = make_recipe(user, family="pricing")
    from recipes import services

    manifest = copy.deepcopy(recipe.current_version.manifest)
    manifest["evaluation"]["metrics"]["demand_mape"]["target"] = 0.2
    # A threshold change is a minor change (a patch bump would be refused without force).
    v2 = services.version_create(recipe=recipe, user=user, manifest=manifest, bump="minor")
    v1 = recipe.versions.get(version="1.0.0")
    fragment = as_user.get(recipe_url(recipe.id, "/diff"), {"a": v1.pk, "b": v2.pk}, **HTMX)
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content
    assert b"/evaluation/metrics/demand_mape/target" in fragment.content
    assert fragment.context["suggested_bump"] == "minor"
    plain = as_user.get(recipe_url(recipe.id, "/diff"), {"a": v1.pk, "b": v2.pk})
    assert plain.status_code == 302 and "tab=versions" in plain["Location"]


def test_approve_as_lead_and_refused_to_a_scientist(client, user, lead):
    recipe = make_recipe(user, family="pricing")
    version = recipe.current_version
    url = recipe_url(recipe.id, f"/versions/{version.pk}/approve")
    # Evidence for the approval gate: a succeeded backtest within the critical thresholds.
    Run.objects.create(
        id="run_evidence",
        recipe=recipe,
        number=1,
        recipe_version=version,
        run_type=RunType.BACKTEST,
        status=RunStatus.SUCCEEDED,
        # Every metric the pricing manifest gates on (recipes.approval).
        metrics_json={
            "elasticity": -1.6,
            "demand_mape": 0.2,
            "margin_impact": 0.12,
            "calibration": 0.02,
            "revenue_lift": -0.04,
        },
        finished_at=timezone.now(),
    )

    client.force_login(user)
    page = client.get(recipe_url(recipe.id), {"tab": "versions"}).content.decode()
    assert "awaiting approval" in page and f"/versions/{version.pk}/approve" not in page
    refused = client.post(url)
    assert refused.status_code == 403
    assert "approve_recipeversion" in refused.content.decode()
    version.refresh_from_db()
    assert version.approved_at is None

    client.force_login(lead)
    assert (
        f"/versions/{version.pk}/approve".encode()
        in client.get(recipe_url(recipe.id), {"tab": "versions"}).content
    )
    response = client.post(url, follow=True)
    assert response.status_code == 200
    assert "Approved version 1.0.0 (approval gate passed)" in response.content.decode()
    version.refresh_from_db()
    recipe.refresh_from_db()
    assert version.approved_by == lead
    assert version.approval_run_id == "run_evidence"
    assert recipe.status == "approved"


def test_deprecate_then_back_to_draft(as_user, user):
    recipe = make_recipe(user, family="pricing")
    response = as_user.post(recipe_url(recipe.id, "/status"), {"status": "deprecated"}, follow=True)
    assert "is now deprecated" in response.content.decode()
    recipe.refresh_from_db()
    assert recipe.status == "deprecated"
    illegal = as_user.post(recipe_url(recipe.id, "/status"), {"status": "in_review"}, follow=True)
    assert "Illegal status change" in illegal.content.decode()
    as_user.post(recipe_url(recipe.id, "/status"), {"status": "draft"})
    recipe.refresh_from_db()
    assert recipe.status == "draft"


def test_status_change_needs_permission(as_viewer, user):
    recipe = make_recipe(user, family="pricing")
    assert as_viewer.post(recipe_url(recipe.id, "/status"), {"status": "deprecated"}).status_code == 403
    recipe.refresh_from_db()
    assert recipe.status == "draft"


# --------------------------------------------------------------------------- clone


def test_clone_creates_industry_child(as_user, baselines):
    response = as_user.post(
        recipe_url("recipe_pricing_base", "/clone"), {"name": "Grocery pricing", "level": "industry"}
    )
    assert response.status_code == 302
    clone = Recipe.objects.get(name="Grocery pricing")
    assert response["Location"] == recipe_url(clone.id)
    assert clone.parent_id == "recipe_pricing_base"
    assert clone.level == "industry"
    assert clone.status == "draft"


def test_clone_dialog_over_htmx_errors_then_redirects(as_user, baselines):
    url = recipe_url("recipe_pricing_base", "/clone")
    bad = as_user.post(url, {"name": "", "level": "industry"}, **HTMX)
    assert bad.status_code == 400
    assert b"<html" not in bad.content
    assert b"This field is required" in bad.content
    wrong_level = as_user.post(url, {"name": "X", "level": "client"}, **HTMX)
    assert wrong_level.status_code == 400
    assert b"Select a valid choice" in wrong_level.content
    good = as_user.post(url, {"name": "Grocery pricing", "level": "industry"}, **HTMX)
    assert good.status_code == 200
    clone = Recipe.objects.get(name="Grocery pricing")
    assert good["HX-Redirect"] == recipe_url(clone.id)


def test_clone_of_a_client_recipe_is_not_offered(as_user, baselines, user):
    industry = make_recipe(
        user, family="pricing", level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base")
    )
    client_recipe = make_recipe(user, family="pricing", level="client", parent=industry)
    page = as_user.get(recipe_url(client_recipe.id)).content.decode()
    assert "clone-dialog" not in page
    response = as_user.post(recipe_url(client_recipe.id, "/clone"), {"name": "deeper", "level": "client"})
    assert response.status_code == 400
    assert Recipe.objects.filter(name="deeper").count() == 0


def test_clone_needs_permission(as_viewer, baselines):
    response = as_viewer.post(
        recipe_url("recipe_pricing_base", "/clone"), {"name": "Nope", "level": "industry"}
    )
    assert response.status_code == 403
    assert not Recipe.objects.filter(name="Nope").exists()


# --------------------------------------------------------------------------- query counts


def test_recipe_detail_query_count(as_user, baselines, user, django_assert_max_num_queries):
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    for i in range(5):
        make_recipe(user, family="pricing", level="industry", parent=recipe, name=f"child {i}")
    for tab in ("overview", "manifest", "versions", "lineage", "example"):
        with django_assert_max_num_queries(16):
            assert as_user.get(recipe_url(recipe.pk), {"tab": tab}).status_code == 200


def test_baseline_manifests_load_in_the_editor(as_user, baselines):
    page = as_user.get(recipe_url("recipe_forecasting_base"), {"tab": "manifest", "edit": "1"})
    assert page.status_code == 200
    text = page.context["form"]["manifest"].value()
    assert json.loads(text) == RecipeVersion.objects.get(pk="ver_forecasting_base_v1").manifest
