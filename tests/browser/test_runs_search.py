"""The library's Runs tab searching runs in a real browser (issue #15 §1): type a filter, pick a
recipe to get its metrics as columns, sort by one of them, and see a bad filter's error next to
the box with its column."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

import pytest
from playwright.sync_api import expect

from recipes.models import Recipe
from runs.services import run_start, tracking_log

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def login(page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "scientist")
    page.fill("#id_password", "pw-scientist-1")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/")


def logged_run(user, n, mape, team):
    recipe = Recipe.objects.get(pk="recipe_forecasting_base")
    run = run_start(user=user, recipe=recipe, executor="external", at=T0 + timedelta(minutes=n))
    metrics = [{"key": "RMSE", "value": 10.0 + n, "timestamp": 1}]
    if mape is not None:
        metrics.append({"key": "MAPE", "value": mape, "timestamp": 1})
    tracking_log(run=run, metrics=metrics, tags=[{"key": "team", "value": team}])
    return run


def run_numbers(page) -> list[str]:
    """The runs' "#n" in the table's order."""
    names = page.locator("#runs-table tbody tr td:nth-child(2) a").all_inner_texts()
    return [name.rsplit("#", 1)[-1] for name in names]


def test_filter_sort_by_a_metric_column_and_a_bad_filter(page, live_server, user, baselines, shots):
    logged_run(user, 1, 0.20, "eu")  # #1
    logged_run(user, 2, 0.05, "eu")  # #2
    logged_run(user, 3, 0.12, "us")  # #3
    logged_run(user, 4, None, "eu")  # #4: no MAPE
    logged_run(user, 5, math.nan, "eu")  # #5: NaN
    base = live_server.url
    login(page, base)
    page.click("[role=tab] >> text=Runs")
    expect(page.locator("#runs-table tbody tr")).to_have_count(5)

    # Type a filter, press Enter: only the matching runs, in place (no full page load).
    box = page.locator("input[name=filter]")
    box.fill('tags.team = "eu" and metrics.MAPE < 0.15')
    box.press("Enter")
    expect(page.locator("#runs-table tbody tr")).to_have_count(1)
    assert run_numbers(page) == ["2"]
    assert "filter=" in page.url

    # Pick the recipe: its metrics become columns (primary metric first).
    box.fill("")
    page.select_option("select[name=recipe_id]", "recipe_forecasting_base")
    expect(page.locator("#runs-table thead th a", has_text="MAPE")).to_be_visible()
    headers = page.locator("#runs-table thead th").all_inner_texts()
    assert headers.index("MAPE") < headers.index("RMSE")
    expect(page.locator("#runs-table tbody tr")).to_have_count(5)

    # Sort by the MAPE column: values ascending, then NaN, then the run without MAPE.
    page.click("#runs-table thead th a:text-is('MAPE')")
    expect(page.locator("#runs-table thead th[aria-sort=ascending]")).to_have_text("MAPE")
    assert run_numbers(page) == ["2", "3", "1", "5", "4"]
    cells = page.locator("#runs-table tbody tr td[data-metric]").all_inner_texts()
    assert cells[:2] == ["0.0500", "12.0000"]  # MAPE then RMSE of run #2, formatted
    assert "NaN" in cells and "—" in cells
    # Again: descending, still NaN then missing last.
    page.click("#runs-table thead th a:text-is('MAPE')")
    expect(page.locator("#runs-table thead th[aria-sort=descending]")).to_have_text("MAPE")
    assert run_numbers(page) == ["1", "3", "2", "5", "4"]
    shots(page, "runs-search-sorted")

    # A bad filter: its error next to the box, with the column; the page still works.
    box.fill("metrics.MAPE 0.15")
    box.press("Enter")
    error = page.locator("[data-filter-error]")
    expect(error).to_contain_text("expected a comparison operator")
    expect(error).to_contain_text("at column 14")
    expect(box).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#runs-table tbody tr")).to_have_count(5)  # the other filters still apply
    shots(page, "runs-search-error")
    assert page.js_errors == []
