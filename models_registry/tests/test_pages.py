"""HTML pages of registered models: register form, model page, lifecycle moves."""

import re

import pytest
from django.contrib.staticfiles import finders

from models_registry.models import MLModel
from recipes.tests.factories import make_recipe
from runs.tests.factories import register

pytestmark = pytest.mark.django_db

NEW = "/model-development/models/new"
HTMX = {"HTTP_HX_REQUEST": "true"}


def model_url(model_id: str, suffix: str = "") -> str:
    return f"/model-development/models/{model_id}{suffix}"


def with_artifact(model: MLModel) -> MLModel:
    """What promotion to production checks (a real trained artifact is the runs tests' job)."""
    MLModel.objects.filter(pk=model.pk).update(artifacts_json={"model": ["model.json"], "files": {}})
    model.refresh_from_db()
    return model


def test_register_form_renders_without_and_with_data(as_user, baselines, user):
    assert "No recipe has an approved version yet" not in as_user.get(NEW).content.decode()
    draft = make_recipe(user, family="pricing", name="Unapproved draft")
    page = as_user.get(NEW, {"recipe": "recipe_pricing_base"})
    assert page.status_code == 200
    body = page.content.decode()
    assert "Unapproved draft" not in body  # only recipes with an approved version
    assert 'value="ver_pricing_base_v1" selected' in body
    fragment = as_user.get(NEW, {"recipe": "recipe_nba_base", "name": "kept"}, **HTMX)
    assert b"<html" not in fragment.content
    assert b"ver_nba_base_v1" in fragment.content and b'value="kept"' in fragment.content
    assert draft.pk not in fragment.content.decode()


def test_register_form_with_no_approved_recipe_says_what_to_do(as_user):
    assert "No recipe has an approved version yet" in as_user.get(NEW).content.decode()


def test_register_model(as_user, baselines, user):
    response = as_user.post(
        NEW,
        {"recipe": "recipe_pricing_base", "recipe_version": "ver_pricing_base_v1", "name": "Weekly pricing"},
    )
    assert response.status_code == 302
    model = MLModel.objects.get(name="Weekly pricing")
    assert response["Location"] == model_url(model.pk)
    assert model.recipe_version_id == "ver_pricing_base_v1"
    assert model.owner == "scientist"
    assert model.status == "registered"


def test_register_errors_are_shown_next_to_the_fields(as_user, baselines, user):
    draft = make_recipe(user, family="pricing")
    missing = as_user.post(
        NEW, {"recipe": "recipe_pricing_base", "recipe_version": "ver_pricing_base_v1", "name": ""}
    )
    assert missing.status_code == 400
    assert "This field is required" in missing.content.decode()
    unapproved = as_user.post(
        NEW, {"recipe": "recipe_pricing_base", "recipe_version": draft.current_version.pk, "name": "x"}
    )
    assert unapproved.status_code == 400
    assert "Select a valid choice" in unapproved.content.decode()
    assert not MLModel.objects.exists()


def test_register_needs_permission(as_viewer, baselines):
    response = as_viewer.post(
        NEW, {"recipe": "recipe_pricing_base", "recipe_version": "ver_pricing_base_v1", "name": "nope"}
    )
    assert response.status_code == 403
    assert "models_registry.add_mlmodel" in response.content.decode()
    assert not MLModel.objects.exists()


@pytest.mark.parametrize("tab", ["summary", "monitoring"])
def test_model_page_tabs(as_user, baselines, user, tab):
    model = register(user, name="Weekly pricing")
    full = as_user.get(model_url(model.pk), {"tab": tab})
    assert full.status_code == 200
    body = full.content.decode()
    assert "<html" in body
    # plotly.js is never a <script> of the page: static/js/charts.js fetches it (hashed name)
    # only when a chart box is on the page.
    assert re.search(
        r'<script src="/static/js/charts\.js" defer data-plotly-src="/static/plotly/plotly\.min\.[0-9a-f]{12}\.js">',
        body,
    )
    assert not re.search(r'<script src="[^"]*plotly', body)
    fragment = as_user.get(model_url(model.pk), {"tab": tab}, **HTMX)
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content and b'role="tablist"' in fragment.content


def test_model_page_offers_only_legal_moves(as_user, baselines, user):
    model = register(user)
    body = as_user.get(model_url(model.pk)).content.decode()
    assert "Promote to staging" in body and "Archive" in body
    assert "Promote to production" not in body and "Demote to staging" not in body


def test_promote_to_staging_then_production_replacing_the_current_one(as_user, baselines, user):
    current = with_artifact(register(user, name="Current"))
    MLModel.objects.filter(pk=current.pk).update(status="production")
    model = with_artifact(register(user, name="Challenger"))
    as_user.post(model_url(model.pk, "/status"), {"status": "staging"})
    model.refresh_from_db()
    assert model.status == "staging"
    body = as_user.get(model_url(model.pk)).content.decode()
    assert "Promote to production" in body and "keep “Current” in production too" in body
    response = as_user.post(model_url(model.pk, "/status"), {"status": "production"}, follow=True)
    assert "is now production" in response.content.decode()
    assert "Moved to staging: Current" in response.content.decode()
    model.refresh_from_db()
    current.refresh_from_db()
    assert (model.status, current.status) == ("production", "staging")


def test_keep_other_production(as_user, baselines, user):
    current = with_artifact(register(user, name="Current"))
    MLModel.objects.filter(pk=current.pk).update(status="production")
    model = with_artifact(register(user, name="Second"))
    MLModel.objects.filter(pk=model.pk).update(status="staging")
    as_user.post(model_url(model.pk, "/status"), {"status": "production", "keep_other_production": "on"})
    assert set(MLModel.objects.values_list("status", flat=True)) == {"production"}


def test_illegal_or_impossible_moves_are_explained(as_user, baselines, user):
    model = register(user)
    illegal = as_user.post(model_url(model.pk, "/status"), {"status": "production"}, follow=True)
    assert "Illegal status change registered → production" in illegal.content.decode()
    as_user.post(model_url(model.pk, "/status"), {"status": "staging"})
    untrained = as_user.post(model_url(model.pk, "/status"), {"status": "production"}, follow=True)
    assert "no trained artifact" in untrained.content.decode()
    model.refresh_from_db()
    assert model.status == "staging"


def test_status_change_needs_permission(as_viewer, baselines, user):
    model = register(user)
    assert as_viewer.post(model_url(model.pk, "/status"), {"status": "staging"}).status_code == 403
    model.refresh_from_db()
    assert model.status == "registered"


def test_unknown_model_is_404(as_user):
    assert as_user.get(model_url("model_nope")).status_code == 404


def test_model_page_query_count(as_user, baselines, user, django_assert_max_num_queries):
    model = register(user)
    for tab in ("summary", "monitoring"):
        # 17: the Monitoring tab's cards, with Retraining (retrains, comparable models,
        # comparisons), A/B tests (the model's experiments, the challengers it could test) and
        # attribution drift (its latest snapshots with explanations).
        with django_assert_max_num_queries(17):
            assert as_user.get(model_url(model.pk), {"tab": tab}).status_code == 200


def test_plotly_is_served_under_a_content_hashed_name():
    from mlworkspace.staticfiles import PLOTLY_DIR, plotly_static_path

    path = plotly_static_path()
    assert re.fullmatch(r"plotly/plotly\.min\.[0-9a-f]{12}\.js", path)
    assert finders.find(path) == str(PLOTLY_DIR / "plotly.min.js")
    assert finders.find("plotly/plotly.min.000000000000.js") is None  # a stale hash is not served


def test_summary_metrics_card_spans_the_page(as_user, baselines, user):
    model = register(user)
    MLModel.objects.filter(pk=model.pk).update(metrics_json={"demand_mape": 0.2, "calibration": 1.01})
    body = as_user.get(model_url(model.pk)).content.decode()
    # The full-width card leaves room for all seven columns, the Check column included.
    card = re.search(r'<section class="([^"]*)" id="model-metrics">(.*?)</section>', body, re.S)
    assert card and "card-wide" in card.group(1).split()
    assert "<th>Check</th>" in card.group(2) and 'data-metric="demand_mape"' in card.group(2)
    assert "data-plotly-figure" not in body  # the Summary tab draws no chart


def _move_button(body: str, status: str) -> str:
    form = re.search(
        r'<form[^>]*>(?:(?!</form>).)*?name="status" value="' + status + r'"(?:(?!</form>).)*?</form>',
        body,
        re.S,
    )
    assert form, f"no {status} button"
    return form.group(0)


def test_promotion_asks_first_and_names_the_model_it_replaces(as_user, baselines, user):
    current = with_artifact(register(user, name="Current champion"))
    MLModel.objects.filter(pk=current.pk).update(status="production")
    model = with_artifact(register(user, name="Challenger"))
    MLModel.objects.filter(pk=model.pk).update(status="staging")
    button = _move_button(as_user.get(model_url(model.pk)).content.decode(), "production")
    confirm = re.search(r'data-confirm="([^"]*)"', button).group(1)
    assert "Promote “Challenger” to production?" in confirm
    assert "It replaces “Current champion”, which moves to staging" in confirm
    assert "<script>" not in button and "onclick" not in button  # no inline script: app.js asks


def test_promotion_with_nothing_in_production_says_it_replaces_none(as_user, baselines, user):
    other_recipe = with_artifact(register(user, recipe_id="recipe_nba_base", name="Other recipe"))
    MLModel.objects.filter(pk=other_recipe.pk).update(status="production")
    model = with_artifact(register(user, name="First"))
    MLModel.objects.filter(pk=model.pk).update(status="staging")
    button = _move_button(as_user.get(model_url(model.pk)).content.decode(), "production")
    assert "replaces none" in button and "Other recipe" not in button


def test_destructive_moves_are_quiet_and_confirmed(as_user, baselines, user):
    model = with_artifact(register(user, name="Live"))
    MLModel.objects.filter(pk=model.pk).update(status="production")
    body = as_user.get(model_url(model.pk)).content.decode()
    archive = _move_button(body, "archived")
    assert "btn-danger-outline" in archive and 'class="btn btn-danger"' not in archive
    assert "Archive “Live”? Archived models cannot come back." in archive
    demote = _move_button(body, "staging")
    assert (
        "Demote “Live” to staging?" in demote
        and "“Pricing Optimization Baseline v1” will have no model in production" in demote
    )
    # Harmless moves do not ask.
    staged = register(user, name="Fresh")
    assert "data-confirm" not in _move_button(as_user.get(model_url(staged.pk)).content.decode(), "staging")


def test_the_check_form_error_page_keeps_the_promotion_question(as_user, baselines, user):
    current = with_artifact(register(user, name="Current champion"))
    MLModel.objects.filter(pk=current.pk).update(status="production")
    model = with_artifact(register(user, name="Challenger"))
    MLModel.objects.filter(pk=model.pk).update(status="staging")
    response = as_user.post(model_url(model.pk, "/check"), {"source": "dataset"})
    assert response.status_code == 400
    body = response.content.decode()
    assert "keep “Current champion” in production too" in body
    assert "It replaces “Current champion”" in _move_button(body, "production")
