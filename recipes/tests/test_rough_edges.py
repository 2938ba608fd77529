"""Issue 11 §3, the rough edges a new user hit on the recipe pages: unchanged saves, superseded
versions still offered for approval, developer text, what a clone inherits, search by tag,
pages beyond the last, and services that take an explicit time for seeded history."""

import copy
import json
import re
from datetime import timedelta

import pytest
from django.utils import timezone

from models_registry.services import model_register, model_set_status
from recipes import services
from recipes.models import Recipe, RecipeVersion
from recipes.tests.factories import make_recipe
from runs.logs import run_log
from runs.models import Run, RunLog, RunStatus
from runs.services import run_move_in_time, run_start

pytestmark = pytest.mark.django_db

API = "/api/ml-development"
LIBRARY = "/model-development/"


def recipe_url(recipe_id: str, suffix: str = "") -> str:
    return f"/model-development/recipes/{recipe_id}{suffix}"


def header(body: str) -> str:
    """The recipe page's header (title, badges, action buttons)."""
    return body[body.index('<header class="page-head">') : body.index("</header>")]


# --------------------------------------------------------------------------- 1. unchanged saves


def test_api_refuses_a_version_without_changes_with_a_409(api_client, baselines, user):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    manifest = copy.deepcopy(recipe.current_version.manifest)
    manifest["metadata"]["version"] = "9.9.9"  # identity metadata is not a change
    r = api_client.post(f"{API}/recipes/{recipe.id}/versions", {"manifest": manifest}, format="json")
    assert r.status_code == 409
    body = r.json()
    assert body["detail"].startswith("No changes")
    assert body["errors"] == [{"path": "/manifest", "message": "no changes from version 1.0.0"}]
    assert recipe.versions.count() == 1


def test_identical_submissions_make_one_version(api_client, baselines, user):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    manifest = copy.deepcopy(recipe.current_version.manifest)
    manifest["deployment"]["schedule"] = "17 3 * * 2"
    codes = [
        api_client.post(
            f"{API}/recipes/{recipe.id}/versions", {"manifest": manifest, "changelog": "x"}, format="json"
        ).status_code
        for _ in range(50)
    ]
    assert codes[0] == 201 and set(codes[1:]) == {409}
    assert sorted(recipe.versions.values_list("version", flat=True)) == ["1.0.0", "1.0.1"]


def test_forced_unchanged_version_keeps_its_note(api_client, baselines, user):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    manifest = recipe.current_version.manifest
    no_note = api_client.post(
        f"{API}/recipes/{recipe.id}/versions", {"manifest": manifest, "force": True}, format="json"
    )
    assert no_note.status_code == 400 and no_note.json()["errors"][0]["path"] == "/note"
    r = api_client.post(
        f"{API}/recipes/{recipe.id}/versions",
        {"manifest": manifest, "force": True, "note": "re-release for the audit trail"},
        format="json",
    )
    assert r.status_code == 201, r.json()
    assert (r.json()["version"], r.json()["force_note"]) == ("1.0.1", "re-release for the audit trail")


def test_page_says_no_changes_on_the_form_and_saves_nothing(as_user, baselines, user):
    recipe = make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"))
    text = json.dumps(recipe.current_version.manifest, indent=2)
    response = as_user.post(recipe_url(recipe.id, "/versions/new"), {"manifest": text, "changelog": "x"})
    assert response.status_code == 400
    body = response.content.decode()
    errors = body[body.index('id="version-form-errors"') :]
    assert "No changes: the manifest is the same as version 1.0.0" in errors[: errors.index("</div>")]
    assert 'class="force" open' in body  # the way out (force with a note) is shown
    assert recipe.versions.count() == 1

    forced = as_user.post(
        recipe_url(recipe.id, "/versions/new"),
        {"manifest": text, "force": "on", "force_note": "same manifest, new data contract"},
        follow=True,
    )
    assert forced.status_code == 200
    assert "Saved version 1.0.1" in forced.content.decode()
    assert recipe.versions.get(version="1.0.1").force_note == "same manifest, new data contract"


# --------------------------------------------------------------------------- 2. after approving


def _two_versions_newer_approved(user, lead) -> tuple[Recipe, RecipeVersion, RecipeVersion]:
    recipe = make_recipe(user, family="pricing", name="Grocery pricing")
    first = recipe.current_version
    manifest = copy.deepcopy(first.manifest)
    manifest["deployment"]["schedule"] = "17 3 * * 2"
    second = services.version_create(recipe=recipe, user=user, manifest=manifest, changelog="schedule")
    services.version_approve(version=second, user=lead, override_reason="tested elsewhere")
    return Recipe.objects.get(pk=recipe.pk), first, second


def test_superseded_version_is_not_offered_for_approval(as_lead, user, lead):
    recipe, first, second = _two_versions_newer_approved(user, lead)
    overview = as_lead.get(recipe_url(recipe.id)).content.decode()
    assert "Approve 1.0.0" not in header(overview)
    assert "Approve " not in header(overview)
    versions = as_lead.get(recipe_url(recipe.id), {"tab": "versions"}).content.decode()
    assert "gate not passed" not in versions
    assert f'id="approve-{first.id}"' not in versions
    row = versions[versions.index(f'id="version-{first.id}"') :]
    row = row[: row.index("</tr>")]
    assert "superseded" in row and "awaiting approval" not in row


def test_approved_recipe_offers_no_review_until_a_newer_version(as_lead, lead_client, user, lead):
    recipe, _, second = _two_versions_newer_approved(user, lead)
    assert recipe.status == "approved"
    head = header(as_lead.get(recipe_url(recipe.id)).content.decode())
    assert "Submit for review" not in head
    assert "Deprecate" in head  # the other moves are still there
    refused = lead_client.put(f"{API}/recipes/{recipe.id}", {"status": "in_review"}, format="json")
    assert refused.status_code == 409
    assert refused.json()["errors"] == [{"path": "/status", "message": "no version awaits approval"}]

    manifest = copy.deepcopy(second.manifest)
    manifest["deployment"]["schedule"] = "18 3 * * 2"
    services.version_create(recipe=recipe, user=user, manifest=manifest, changelog="later")
    head = header(as_lead.get(recipe_url(recipe.id)).content.decode())
    assert "Submit for review" in head
    assert "Approve 1.0.2" in head
    ok = lead_client.put(f"{API}/recipes/{recipe.id}", {"status": "in_review"}, format="json")
    assert ok.status_code == 200


# --------------------------------------------------------------------------- 7. developer text


def test_gate_speaks_to_the_user_not_the_api(as_lead, user):
    recipe = make_recipe(user, family="pricing")
    body = as_lead.get(recipe_url(recipe.id), {"tab": "versions"}).content.decode()
    assert "gate not passed" in body
    assert "start a backtest on it" in body
    assert "POST /api" not in body and "with run_type" not in body


def test_clone_changelog_names_the_source_not_its_id(as_user, baselines):
    response = as_user.post(
        recipe_url("recipe_pricing_base", "/clone"), {"name": "Grocery pricing", "level": "industry"}
    )
    assert response.status_code == 302
    clone = Recipe.objects.get(name="Grocery pricing")
    assert clone.current_version.changelog == "Cloned from Pricing Optimization Baseline v1 1.0.0"
    versions = as_user.get(recipe_url(clone.id), {"tab": "versions"}).content.decode()
    assert "Cloned from Pricing Optimization Baseline v1 1.0.0" in versions
    assert "Cloned from recipe_" not in versions


# --------------------------------------------------------------------------- 8. clones, destructive actions


def test_clone_does_not_inherit_level_tag_or_description(as_user, api_client, baselines):
    base = Recipe.objects.get(pk="recipe_pricing_base")
    as_user.post(recipe_url(base.id, "/clone"), {"name": "Grocery pricing", "level": "industry"})
    clone = Recipe.objects.get(name="Grocery pricing")
    assert "baseline" not in clone.tags
    assert set(clone.tags) == set(base.tags) - {"baseline"}
    assert clone.description != base.description
    assert clone.description == "Industry recipe cloned from Pricing Optimization Baseline v1 1.0.0."
    overview = as_user.get(recipe_url(clone.id)).content.decode()
    assert base.description not in overview
    assert '<span class="tag">baseline</span>' not in overview
    # A description given by the user is kept; via the API too.
    r = api_client.post(
        f"{API}/recipes/{base.id}/clone",
        {"name": "Bakery pricing", "description": "Bread and cakes"},
        format="json",
    )
    assert r.status_code == 201 and r.json()["description"] == "Bread and cakes"
    assert "baseline" not in r.json()["tags"]


def test_archive_is_quiet_and_asks_first(as_lead, user, lead):
    recipe = Recipe.objects.get(pk=make_recipe(user, family="pricing", approve_by=lead).pk)
    model = model_register(
        user=user, name="Grocery prices", recipe=recipe, recipe_version=recipe.current_version
    )
    body = as_lead.get(f"/model-development/models/{model.id}").content.decode()
    button = re.search(
        r'<button class="btn([^"]*)"[^>]*data-confirm="Archive[^"]*"[^>]*>Archive</button>', body
    )
    assert button is not None, "the Archive button must ask for confirmation"
    assert button.group(1).strip() == "btn-danger-outline"  # outlined, not a solid red button
    assert 'btn btn-danger"' not in body


# --------------------------------------------------------------------------- 9. search and paging


def test_search_finds_recipes_by_tag(as_user, api_client, baselines, user):
    tagged = make_recipe(
        user,
        level="industry",
        parent=Recipe.objects.get(pk="recipe_pricing_base"),
        name="Fresh food prices",
        tags=["grocery", "fresh"],
    )
    make_recipe(user, level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base"), name="Other")
    page = as_user.get(LIBRARY, {"tab": "recipes", "search": "grocery"})
    assert [r.id for r in page.context["page"].object_list] == [tagged.id]
    assert "Fresh food prices" in page.content.decode()
    partial = as_user.get(LIBRARY, {"tab": "recipes", "search": "GROC"})
    assert [r.id for r in partial.context["page"].object_list] == [tagged.id]
    api = api_client.get(f"{API}/recipes", {"search": "grocery"}).json()
    assert [r["id"] for r in api["results"]] == [tagged.id]
    # Two matching tags: listed once.
    both = as_user.get(LIBRARY, {"tab": "recipes", "search": "fres"})
    assert [r.id for r in both.context["page"].object_list] == [tagged.id]


def test_page_beyond_the_last_says_so(as_user, baselines):
    ok = as_user.get(LIBRARY, {"tab": "recipes"})
    assert "pager-missing" not in ok.content.decode()
    response = as_user.get(LIBRARY, {"tab": "recipes", "page": 7})
    assert response.status_code == 200
    body = response.content.decode()
    assert "There is no page 7: everything fits on one page. Showing page 1." in body
    assert len(response.context["page"].object_list) == 4  # the baselines are still listed
    junk = as_user.get(LIBRARY, {"tab": "recipes", "page": "abc"}).content.decode()
    assert "“abc” is not a page number. Showing page 1." in junk


def test_page_beyond_the_last_of_several(as_user, user):
    for i in range(30):
        make_recipe(user, family="forecasting", name=f"Recipe {i:02d}")
    response = as_user.get(LIBRARY, {"tab": "recipes", "sort": "name", "page": 3})
    body = response.content.decode()
    assert "There is no page 3: there are only 2 pages. Showing page 2." in body
    assert "Page 2 of 2" in body
    fragment = as_user.get(
        LIBRARY, {"tab": "recipes", "page": 9}, HTTP_HX_REQUEST="true", HTTP_HX_TARGET="results"
    ).content.decode()
    assert "There is no page 9" in fragment


def test_shared_pager_says_so_on_other_tabs(as_user, user, lead):
    recipe = Recipe.objects.get(pk=make_recipe(user, family="pricing", approve_by=lead).pk)
    model_register(user=user, name="Grocery prices", recipe=recipe, recipe_version=recipe.current_version)
    body = as_user.get(LIBRARY, {"tab": "models", "page": 4}).content.decode()
    assert "Grocery prices" in body
    assert "There is no page 4: everything fits on one page. Showing page 1." in body


# --------------------------------------------------------------------------- 13. explicit times


def test_services_date_seeded_history(user, lead, baselines):
    t0 = timezone.now().replace(microsecond=0) - timedelta(days=200)
    base = Recipe.objects.get(pk="recipe_pricing_base")
    clone = services.recipe_clone(source=base, user=user, name="Seeded", at=t0)
    clone.refresh_from_db()
    assert clone.created_at == t0 and clone.updated_at == t0
    assert clone.current_version.created_at == t0

    manifest = copy.deepcopy(clone.current_version.manifest)
    manifest["deployment"]["schedule"] = "17 3 * * 2"
    later = services.version_create(
        recipe=clone, user=user, manifest=manifest, changelog="x", at=t0 + timedelta(days=21)
    )
    assert RecipeVersion.objects.get(pk=later.pk).created_at == t0 + timedelta(days=21)
    approved = services.version_approve(
        version=later, user=lead, override_reason="seeded", at=t0 + timedelta(days=23)
    )
    assert approved.approved_at == t0 + timedelta(days=23)
    clone.refresh_from_db()
    assert clone.updated_at == t0 + timedelta(days=23)

    model = model_register(
        user=user, name="Seeded model", recipe=clone, recipe_version=approved, at=t0 + timedelta(days=24)
    )
    run = run_start(
        user=user, recipe=clone, recipe_version=approved, model=model, at=t0 + timedelta(days=24, hours=1)
    )
    assert Run.objects.get(pk=run.pk).created_at == t0 + timedelta(days=24, hours=1)
    # Executed "now" (as the demo does), then moved back in time keeping its durations.
    now = timezone.now()
    Run.objects.filter(pk=run.pk).update(
        status=RunStatus.SUCCEEDED,
        started_at=now,
        finished_at=now + timedelta(seconds=42),
        stages_json=[{"name": "train", "started_at": now.isoformat(), "finished_at": now.isoformat()}],
    )
    run_log(run=run, message="trained")
    moved = run_move_in_time(run=Run.objects.get(pk=run.pk), at=t0 + timedelta(days=24, hours=2))
    assert moved.created_at == t0 + timedelta(days=24, hours=2)
    assert moved.started_at >= moved.created_at
    assert moved.finished_at - moved.started_at == timedelta(seconds=42)
    assert moved.stages_json[0]["started_at"] < (t0 + timedelta(days=25)).isoformat()
    assert RunLog.objects.get(run=run).ts < t0 + timedelta(days=25)

    Model = type(model)
    Model.objects.filter(pk=model.pk).update(artifacts_json={"model": "m.pkl"})
    promoted = model_set_status(model=model, user=lead, status="staging", at=t0 + timedelta(days=26))["model"]
    promoted = model_set_status(model=promoted, user=lead, status="production", at=t0 + timedelta(days=30))[
        "model"
    ]
    assert promoted.promoted_at == t0 + timedelta(days=30)
    assert Model.objects.get(pk=model.pk).updated_at == t0 + timedelta(days=30)


def test_a_live_run_cannot_be_moved_in_time(user, baselines):
    from mlworkspace.errors import Conflict

    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"))
    with pytest.raises(Conflict):
        run_move_in_time(run=run, at=timezone.now() - timedelta(days=3))
