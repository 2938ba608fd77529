"""The model page in a real browser at 1400 px: the metrics table fits its card, plotly.js is
fetched only when a chart is drawn, and promotion to production asks first, naming the model
it replaces. The model is trained in-process on a small synthetic batch (no worker)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from models_registry.models import MLModel
from monitoring.services import snapshot_record
from runs.tests.factories import register, trained_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

OVERFLOW = """el => ({scroll: el.scrollWidth, client: el.clientWidth})"""


def login(page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "scientist")
    page.fill("#id_password", "pw-scientist-1")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/")


def test_model_page(page, live_server, user, baselines, shots):
    base = live_server.url
    challenger = trained_model(user, rows=3000)
    MLModel.objects.filter(pk=challenger.pk).update(name="Challenger", status="staging")
    champion = register(user, name="Current champion")
    MLModel.objects.filter(pk=champion.pk).update(
        status="production", artifacts_json={"model": ["model.json"], "files": {}}
    )
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    for day, mape in enumerate([0.2, 0.22]):
        snapshot_record(
            model=challenger,
            performance={"demand_mape": mape},
            drift={"features": {"price": {"psi": 0.02 * (day + 1), "drifted": False}}, "threshold": 0.2},
            captured_at=t0 + timedelta(days=day),
            source="check",
        )

    plotly_requests: list[str] = []
    page.on("request", lambda request: "plotly" in request.url and plotly_requests.append(request.url))
    page.set_viewport_size({"width": 1400, "height": 900})
    login(page, base)

    # Summary at 1400 px: the metrics table fits its card, its Check column in view.
    page.goto(f"{base}/model-development/models/{challenger.pk}")
    card = page.locator("#model-metrics")
    expect(card.locator(".metrics-table tbody tr").first).to_be_visible()
    for box in (card, card.locator(".table-wrap")):
        size = box.evaluate(OVERFLOW)
        assert size["scroll"] <= size["client"], size
    check_header = card.locator("th", has_text="Check").bounding_box()
    card_box = card.bounding_box()
    assert check_header["x"] + check_header["width"] <= card_box["x"] + card_box["width"]
    expect(card.locator("td .badge").first).to_be_visible()
    # No chart here: plotly.js is neither loaded nor requested.
    page.wait_for_load_state("networkidle")
    assert page.evaluate("typeof window.Plotly") == "undefined"
    assert plotly_requests == []
    shots(page, "model-summary-1400")

    # Monitoring (swapped in by htmx): the charts are drawn, plotly.js fetched once, hashed.
    page.click("a.tab:has-text('Monitoring')")
    expect(page).to_have_url(re.compile(r"tab=monitoring"))
    expect(page.locator(".charts .js-plotly-plot").first).to_be_visible()
    expect(page.locator(".charts .js-plotly-plot")).to_have_count(2)  # demand_mape, drift
    expect(page.locator("#empty-charts")).to_contain_text("Alerts")
    assert len(plotly_requests) == 1 and re.search(r"/plotly\.min\.[0-9a-f]{12}\.js$", plotly_requests[0])
    # The Run check form comes before the charts.
    form_y = page.locator("#check-form").bounding_box()["y"]
    assert form_y < page.locator(".charts").bounding_box()["y"]
    shots(page, "model-monitoring-1400")

    # Promotion asks first and names the production model it replaces; cancel keeps all.
    questions: list[str] = []

    def answer(accept: bool):
        def handle(dialog):
            questions.append(dialog.message)
            dialog.accept() if accept else dialog.dismiss()

        return handle

    page.once("dialog", answer(False))
    page.click("button:has-text('Promote to production')")
    assert questions and "Promote “Challenger” to production?" in questions[0]
    assert "It replaces “Current champion”" in questions[0]
    expect(page.locator("#model-status")).to_have_text("Staging")
    page.once("dialog", answer(True))
    page.click("button:has-text('Promote to production')")
    expect(page.locator("#model-status")).to_have_text("Production")
    expect(page.locator(".flash-success")).to_contain_text("Moved to staging: Current champion")
    assert len(questions) == 2
    assert MLModel.objects.get(pk=champion.pk).status == "staging"

    assert page.js_errors == [], page.js_errors
