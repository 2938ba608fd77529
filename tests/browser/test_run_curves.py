"""A trained run's training curves in a real browser: the "Training curves" card draws its
Plotly chart (an SVG, train and validation loss), and the CSV link downloads every point of
the history. The run executes in-process on a small synthetic batch (no worker). While a run
runs, the card is live: re-drawn as points arrive, and one card, the final one, when it ends."""

from __future__ import annotations

import csv
import io

import pytest
from django.utils import timezone
from playwright.sync_api import expect

from recipes.models import Recipe
from runs.executor import execute_run
from runs.models import MetricPoint, Run
from runs.services import run_start

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def login(page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "scientist")
    page.fill("#id_password", "pw-scientist-1")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/")


def test_run_page_draws_the_curves_and_downloads_them(page, live_server, user, baselines, shots):
    run = run_start(
        user=user,
        recipe=Recipe.objects.get(pk="recipe_location_base"),
        params={"synthetic": {"rows": 1500, "seed": 1}},
    )
    assert execute_run(run.pk) == "succeeded", Run.objects.get(pk=run.pk).error
    points = MetricPoint.objects.filter(run=run, key="valid.l2").count()
    assert points == 300

    base = live_server.url
    login(page, base)
    page.goto(f"{base}/model-development/runs/{run.pk}")
    card = page.locator("#run-curves")
    expect(card.locator("h2")).to_have_text("Training curves")
    chart = card.locator(".js-plotly-plot")
    expect(chart).to_have_count(1)
    expect(chart.locator("svg.main-svg").first).to_be_visible()
    # Two lines drawn: the loss on the training rows and on the holdout.
    expect(chart.locator("g.scatterlayer g.trace")).to_have_count(2)
    expect(chart.locator(".legendtext", has_text="valid.l2")).to_be_visible()
    assert page.js_errors == []
    shots(page, "run-curves")

    card.locator("summary").click()
    link = card.locator("#curve-downloads a", has_text="valid.l2.csv")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == f"{run.pk}-valid-l2.csv"
    rows = list(csv.reader(io.StringIO(open(download.path(), encoding="utf-8").read())))
    assert rows[0] == ["key", "step", "value", "timestamp"]
    assert len(rows) == 1 + points
    assert [int(r[1]) for r in rows[1:]] == list(range(points))
    last = MetricPoint.objects.filter(run=run, key="valid.l2").order_by("-step").first()
    assert float(rows[-1][2]) == pytest.approx(last.value)


def log_points(run, steps) -> None:
    """What the executor's _Progress writes while the child trains: rows of metric history."""
    MetricPoint.objects.bulk_create(
        MetricPoint(run=run, key=key, value=scale / (step + 1), step=step, timestamp=1000 + step)
        for key, scale in (("train.l2", 1.0), ("valid.l2", 1.3))
        for step in steps
    )


# Counts, on every DOM change, the "Training curves" cards on the page: the most ever seen.
COUNT_CARDS = """() => {
  window.mostCards = document.querySelectorAll("#run-curves").length;
  new MutationObserver(() => {
    window.mostCards = Math.max(window.mostCards, document.querySelectorAll("#run-curves").length);
  }).observe(document.body, {childList: true, subtree: true});
}"""


def test_a_running_runs_curves_are_live_and_end_as_one_card(page, live_server, user, baselines, shots):
    run = run_start(
        user=user,
        recipe=Recipe.objects.get(pk="recipe_location_base"),
        params={"synthetic": {"rows": 1500, "seed": 1}},
    )
    Run.objects.filter(pk=run.pk).update(status="running", started_at=timezone.now())
    log_points(run, range(10))

    base = live_server.url
    login(page, base)
    page.goto(f"{base}/model-development/runs/{run.pk}")
    expect(page.locator("#run-status")).to_contain_text("Running")
    card = page.locator("#run-curves-live #run-curves")
    expect(card.locator("h2")).to_have_text("Training curves")
    chart = card.locator(".js-plotly-plot")
    expect(chart.locator("svg.main-svg").first).to_be_visible()
    expect(chart.locator("g.scatterlayer g.trace")).to_have_count(2)
    valid_points = card.locator("#curve-downloads tr", has_text="valid.l2").locator("td.num")
    expect(valid_points).to_have_text("10")
    shots(page, "run-curves-live")

    # No new point: the poll answers 204 and the drawn chart stays (not re-drawn).
    chart.evaluate("el => { el.dataset.kept = 'yes'; }")
    page.wait_for_timeout(3500)
    expect(chart).to_have_attribute("data-kept", "yes")

    log_points(run, range(10, 25))
    expect(valid_points).to_have_text("25", timeout=8000)
    expect(chart.locator("svg.main-svg").first).to_be_visible()
    assert chart.get_attribute("data-kept") is None  # a new chart, drawn from the new points
    assert chart.evaluate("el => el.data.map(t => t.x.length)") == [25, 25]

    page.evaluate(COUNT_CARDS)
    Run.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now())
    expect(page.locator("#run-status")).to_contain_text("Succeeded")
    final = page.locator("#run-live #run-curves")
    expect(final.locator(".js-plotly-plot svg.main-svg").first).to_be_visible()
    page.wait_for_timeout(3500)  # past the running card's poll interval: it asks no more
    expect(page.locator("h2", has_text="Training curves")).to_have_count(1)
    expect(page.locator("#run-curves-live > *")).to_have_count(0)
    assert page.evaluate("window.mostCards") == 1  # never two cards, not even for a moment
    assert page.js_errors == []
