"""The Datasets page in a real browser: an upload shows its progress and lands on the new
dataset's page, a bad file gets its error in place, and delete asks first."""

from __future__ import annotations

import pandas as pd
import pytest
from playwright.sync_api import expect

from runs.models import Dataset

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Every value the upload's progress bar takes, kept across the navigation to the new page.
RECORD_PROGRESS = """
new MutationObserver(() => {
  const meter = document.querySelector("#upload-form [role=progressbar]");
  if (!meter) return;
  const seen = JSON.parse(sessionStorage.getItem("progress") || "[]");
  const now = meter.getAttribute("aria-valuenow");
  if (seen[seen.length - 1] !== now) seen.push(now);
  sessionStorage.setItem("progress", JSON.stringify(seen));
}).observe(document, {subtree: true, attributes: true, attributeFilter: ["aria-valuenow"]});
"""


def login(page, base: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "scientist")
    page.fill("#id_password", "pw-scientist-1")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/")


def test_upload_with_progress_then_check_and_delete(page, live_server, user, baselines, tmp_path, shots):
    base = live_server.url
    rows = 40_000
    frame = pd.DataFrame(
        {
            "product_id": [f"P{i % 400}" for i in range(rows)],
            "store_id": [f"S{i // 400 % 10}" for i in range(rows)],
            "week": pd.Timestamp("2024-01-01").strftime("%Y-%m-%d"),
            "price": [1.0 + (i % 97) / 10 for i in range(rows)],
            "units": [i % 50 for i in range(rows)],
        }
    )
    path = tmp_path / "big_sales.csv"
    frame.to_csv(path, index=False)
    page.add_init_script(RECORD_PROGRESS)
    login(page, base)
    page.click("nav >> text=Datasets")
    page.wait_for_url(f"{base}/model-development/datasets")
    expect(page.locator(".empty h3")).to_have_text("No datasets yet")

    # A wrong file type: the error shows next to the field, in place (no navigation).
    bad = tmp_path / "notes.txt"
    bad.write_text("a,b\n1,2\n")
    page.set_input_files("#id_file", str(bad))
    page.click("#upload-form button[type=submit]")
    expect(page.locator("#upload-form .field-error")).to_contain_text("must be a .csv or .parquet file")
    assert page.url == f"{base}/model-development/datasets"

    # A real upload: the bar moves to 100 %, then the browser is on the dataset's page.
    page.evaluate("sessionStorage.removeItem('progress')")
    page.set_input_files("#id_file", str(path))
    page.select_option("#id_recipe", "recipe_pricing_base")
    page.click("#upload-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/datasets/ds_*")
    seen = page.evaluate("JSON.parse(sessionStorage.getItem('progress') || '[]')")
    assert seen[0] == "0" and seen[-1] == "100", seen  # never back to 0 ("did not go through")
    dataset = Dataset.objects.get()
    assert dataset.row_count == rows
    expect(page.locator("h1")).to_have_text("big_sales")
    expect(page.locator("#preview-table tbody tr")).to_have_count(20)
    # Missing pricing columns, in words (checked at upload against the chosen recipe).
    expect(page.locator("#upload-check")).to_contain_text("column 'unit_cost' is missing")

    # Check against another recipe, swapped in place.
    page.select_option("#id_recipe", "recipe_location_base")
    page.click("#check-form button[type=submit]")
    expect(page.locator("[data-check-result=fail]")).to_contain_text("for Location Scoring")
    shots(page, "dataset-page")

    # The list shows it; filtering by its recipe keeps it.
    page.click("nav >> text=Datasets")
    page.select_option("select[name=recipe_id]", "recipe_pricing_base")
    expect(page.locator("#datasets-table tbody tr")).to_have_count(1)
    page.wait_for_url(f"{base}/model-development/datasets?*recipe_id=recipe_pricing_base*")
    shots(page, "datasets-list")
    page.click("#datasets-table a.strong")

    # Delete asks first: dismissing keeps it, accepting deletes it.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("text=Delete dataset")
    expect(page.locator("h1")).to_have_text("big_sales")
    assert Dataset.objects.filter(pk=dataset.pk).exists()
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("text=Delete dataset")
    page.wait_for_url(f"{base}/model-development/datasets")
    expect(page.locator("#messages")).to_contain_text("Deleted dataset")
    assert not Dataset.objects.exists()
    assert not page.js_errors, page.js_errors
