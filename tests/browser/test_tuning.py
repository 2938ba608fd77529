"""Hyperparameter tuning in a real browser: start a tune run from the run form, a real worker
runs the study, the run page links the study page, whose four Optuna charts draw, and "Save
best as new version" saves the best trial's hyperparameters as the recipe's next version."""

from __future__ import annotations

import pytest
from playwright.sync_api import expect

from recipes.models import Recipe
from runs.models import Run
from runs.tests.test_tuning import tune_version

from .test_model_page import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_tune_from_the_run_form_to_a_saved_version(page, live_server, user, baselines, worker, shots):
    base = live_server.url
    version = tune_version(user, n_trials=4)
    login(page, base)
    page.goto(f"{base}/model-development/runs/new")
    page.select_option("#run-form select[name=recipe]", "recipe_location_base")
    expect(page.locator("#run-form select[name=run_type]")).to_be_visible()  # the form re-rendered (HTMX)
    page.select_option("#run-form select[name=recipe_version]", version.pk)
    page.select_option("#run-form select[name=run_type]", "tune")
    page.fill("#run-form input[name=rows]", "2000")
    page.click("#run-form button[type=submit]")

    page.wait_for_url(f"{base}/model-development/runs/run_*")
    run = Run.objects.get(run_type="tune")
    expect(page.locator("#run-status")).to_have_attribute("data-status", "succeeded", timeout=120_000)
    link = page.locator("#tune-study-link a")
    expect(link).to_have_text("open its study")
    link.click()

    page.wait_for_url(f"{base}/model-development/runs/{run.pk}/study")
    charts = page.locator("#study-charts .plotly-figure")
    expect(charts).to_have_count(4)
    for i in range(4):  # each chart drawn by plotly.js (an SVG), not just its JSON
        expect(charts.nth(i).locator("svg.main-svg").first).to_be_visible()
    expect(page.locator("#trials-table tbody tr")).to_have_count(4)
    expect(page.locator("#trials-table thead")).to_contain_text("Worker")
    worker = Run.objects.get(pk=run.pk).worker
    assert worker
    expect(page.locator("#trials-table tbody tr").first).to_contain_text(worker)  # the one worker here
    expect(page.locator("#best-trial")).to_contain_text("Trial")
    shots(page, "tuning-study")
    assert page.js_errors == []

    page.click("#save-best")
    page.wait_for_url(f"{base}/model-development/recipes/recipe_location_base?tab=versions*")
    expect(page.locator("#messages")).to_contain_text("Saved version 1.0.2")
    saved = Recipe.objects.get(pk="recipe_location_base").current_version
    assert saved.version == "1.0.2" and saved.suggested_bump == "patch"
