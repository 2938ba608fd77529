"""Retraining in a real browser: a production model's Monitoring tab shows its recipe's
retraining policy; "Retrain now" (confirmed) starts a challenger; once its run finished and
the workers' tick decided (here in-process), the page shows the decision with its numbers and
links the comparison page (intervals, verdict, overlaid plots); the challenger's page names
its champion, and the person promotes it with the lifecycle buttons."""

from __future__ import annotations

import copy

import pytest
from playwright.sync_api import expect

from models_registry.models import MLModel
from models_registry.services import model_set_status
from monitoring.models import Retrain
from monitoring.scheduler import decide_retrains
from monitoring.services import model_check
from recipes.models import Recipe
from recipes.services import version_approve, version_create
from runs.executor import execute_run
from runs.tests.factories import trained_model

from .test_model_page import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_retrain_now_and_promote_the_challenger(page, live_server, user, lead, baselines):
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    manifest = copy.deepcopy(recipe.current_version.manifest)
    manifest["retraining"] = {"cooldown": "7 days", "promotion": {"mode": "manual"}}
    version = version_create(
        recipe=recipe, user=lead, manifest=manifest, bump="minor", changelog="retraining"
    )
    version_approve(version=version, user=lead, override_reason="test set-up")
    model = trained_model(user, rows=3000)
    model_set_status(model=model, user=user, status="staging")
    model_set_status(model=model, user=user, status="production")
    model_check(model=model, synthetic={"rows": 1000, "concept": "less_price_sensitive"})

    login(page, live_server.url)
    page.goto(f"{live_server.url}/model-development/models/{model.pk}?tab=monitoring")
    section = page.locator("#retraining")
    expect(section.locator("#retrain-policy")).to_contain_text("only when asked")
    expect(section.locator("#retrain-policy")).to_contain_text("promotion manual")
    expect(section).to_contain_text("No retrain yet.")
    page.once("dialog", lambda dialog: dialog.accept())
    section.locator("#retrain-now").click()
    expect(page.locator("#messages")).to_contain_text("is training")
    row = page.locator("#retrains tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("Manual")
    expect(row).to_contain_text("Training")

    retrain = Retrain.objects.get()
    assert execute_run(retrain.run_id) == "succeeded"
    assert decide_retrains() == [retrain.pk]
    page.reload()
    expect(row).to_contain_text("Awaiting a person's decision")
    expect(row).to_contain_text("margin_impact")
    expect(row).to_contain_text("promotion is manual")

    # The comparison behind the decision: metrics with intervals, the verdict, overlaid plots.
    row.get_by_role("link", name="comparison").click()
    expect(page.locator("#comparison-table")).to_contain_text("margin_impact")
    expect(page.locator("#verdicts")).to_contain_text(retrain.challenger.name)
    expect(page.locator("#comparison-window")).to_contain_text("paired bootstrap")
    expect(page.locator(".chart").first).to_be_visible()
    page.go_back()
    row.get_by_role("link", name=retrain.challenger.name).click()
    expect(page.locator("#model-role")).to_contain_text(f"Challenger of {model.name}")
    for label in ("Promote to staging", "Promote to production"):
        button = page.get_by_role("button", name=label)
        if label == "Promote to production":
            page.once("dialog", lambda dialog: dialog.accept())
        button.click()
    expect(page.locator("#model-status")).to_have_text("Production")
    assert MLModel.objects.get(pk=model.pk).status == "staging"
