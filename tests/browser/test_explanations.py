"""The Why tab in a real browser: a model trained in-process (its pipeline's explain stage
computes the explanations) shows its importance chart once the tab is swapped in, and
"Explain this prediction" swaps in the prediction's waterfall and its reasons; a bad value is
answered with the field's error, in place. axe-core finds no serious or critical violation on
the tab, before and after an explanation."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import expect

from runs.tests.factories import trained_model
from tests.browser.htmx import swapped_in
from tests.browser.test_accessibility import AXE_JS, RUN_AXE, blocking

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "scientist")
    page.fill("#id_password", "pw-scientist-1")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/")


def test_why_tab_and_explain_this_prediction(page, live_server, user, baselines, shots):
    base = live_server.url
    model = trained_model(user, rows=3000)
    page.context.add_init_script(path=str(AXE_JS))
    login(page, base)
    page.goto(f"{base}/model-development/models/{model.pk}")

    # The Why tab, swapped in by htmx: the method, and the importance chart drawn.
    page.click("a.tab:has-text('Why')")
    expect(page).to_have_url(re.compile(r"tab=why"))
    expect(page.locator("#why-method-name")).not_to_be_empty()
    importance = page.locator('[data-chart="importance"]')
    expect(importance.locator(".js-plotly-plot")).to_be_visible()
    expect(importance.locator(".chart-caption")).to_contain_text("gets worse when one feature")
    expect(page.locator('[data-chart="pricing-demand"] .js-plotly-plot')).to_be_visible()
    shots(page, "model-why")
    assert blocking(page.evaluate(RUN_AXE)) == []

    # Explain this prediction: the form starts from a sample row; Explain swaps in the result.
    form = page.locator("#explain-form")
    expect(form.locator('input[name="row-price"]')).not_to_have_value("")
    form.locator("button[type=submit]").click()
    result = swapped_in(page, "#explain-result")
    expect(result.locator("#explain-prediction")).not_to_be_empty()
    expect(result.locator("#explain-reasons li").first).to_be_visible()
    expect(result.locator('[data-chart="prediction-waterfall"] .js-plotly-plot')).to_be_visible()
    shots(page, "model-why-explained")
    assert blocking(page.evaluate(RUN_AXE)) == []

    # A price that is not a number: the field's error, in place, and no result.
    # (A number input would not let the browser send it: the server must answer it anyway.)
    page.evaluate(
        "document.querySelector('#explain-form input[name=\"row-price\"]').setAttribute('type', 'text')"
    )
    page.locator('#explain-form input[name="row-price"]').fill("cheap")
    page.locator("#explain-form button[type=submit]").click()
    error = swapped_in(page, "#explain-form .field-error")
    expect(error).to_contain_text("Enter a number")
    expect(page.locator("#explain-result")).to_have_count(0)
    assert page.js_errors == []


def test_why_tab_of_a_forecaster_shows_each_series_decomposition(page, live_server, user, baselines, shots):
    """The forecasting view: the picked series' decomposition (its parts stacked, its forecast
    as a line) under a series <select>; picking another series swaps in that series' chart."""
    base = live_server.url
    # rows // 1095 series of 1095 days (runs.families.forecasting): two series to pick from
    model = trained_model(user, "recipe_forecasting_base", rows=2 * 1095)
    login(page, base)
    page.goto(f"{base}/model-development/models/{model.pk}?tab=why")

    select = page.locator("#why-series")
    choices = select.locator("option").all_inner_texts()
    assert len(choices) == 2, choices
    expect(page.locator("#why-decomposition-method")).not_to_be_empty()
    chart = page.locator('[data-chart="forecast-series-decomposition"]')
    expect(chart.locator(".js-plotly-plot")).to_be_visible()
    # no series picked: the first (largest) is shown
    expect(chart.locator(".gtitle")).to_have_text(f"Series {choices[0]}: forecast decomposition")
    expect(chart.locator(".legendtext")).to_contain_text(["forecast"])

    # Picking another series: htmx swaps the tab in, the chart is that series', the URL keeps it.
    select.select_option(choices[-1])
    expect(page).to_have_url(re.compile(rf"series={re.escape(choices[-1])}"))
    swapped_in(page, "#why-series")
    chart = page.locator('[data-chart="forecast-series-decomposition"]')
    expect(chart.locator(".gtitle")).to_have_text(f"Series {choices[-1]}: forecast decomposition")
    expect(page.locator("#why-series")).to_have_value(choices[-1])
    shots(page, "model-why-forecast-series")
    assert page.js_errors == []
