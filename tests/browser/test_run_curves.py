"""A trained run's training curves in a real browser: the "Training curves" card draws its
Plotly chart (an SVG, train and validation loss), and the CSV link downloads every point of
the history. The run executes in-process on a small synthetic batch (no worker)."""

from __future__ import annotations

import csv
import io

import pytest
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
