"""Batch scoring in a real browser: a batch-mode production model's page lists its scored
batches (window, rows, run, check) and the predictions download from it as CSV through the
session. The model is trained and its batch scored and checked in-process (no worker)."""

from __future__ import annotations

from datetime import timedelta

import pytest
from playwright.sync_api import expect

from models_registry.services import model_set_status
from monitoring import scheduler
from monitoring.models import ScoringBatch
from runs.executor import execute_run
from runs.tests.factories import trained_model

from .test_model_page import login

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_scored_batches_on_the_model_page(page, live_server, user, baselines, monkeypatch, tmp_path):
    monkeypatch.setattr(scheduler, "SCHEDULED_BATCH_ROWS", 600)
    model = trained_model(user, recipe_id="recipe_location_base", rows=3000)  # deployment.mode: batch
    model_set_status(model=model, user=user, status="staging")
    model_set_status(model=model, user=user, status="production")
    model.refresh_from_db()
    (batch_id,) = scheduler.run_due_checks(model.next_check_at + timedelta(seconds=1))
    batch = ScoringBatch.objects.get(pk=batch_id)
    assert execute_run(batch.run_id) == "succeeded"
    assert len(scheduler.check_scored_batches()) == 1
    batch.refresh_from_db()

    login(page, live_server.url)
    page.goto(f"{live_server.url}/model-development/models/{model.pk}?tab=monitoring")
    section = page.locator("#scoring")
    row = section.locator("tbody tr")
    expect(row).to_have_count(1)
    expect(row).to_contain_text(batch.window_key)
    expect(row).to_contain_text("succeeded")
    rows = batch.run.artifacts_json["scoring"]["rows"]
    expect(row.locator("td").nth(2)).to_have_text(str(rows))

    with page.expect_download() as download:
        row.get_by_role("link", name="CSV").click()
    saved = tmp_path / "predictions.csv"
    download.value.save_as(saved)
    lines = saved.read_text().splitlines()
    assert len(lines) == rows + 1  # a header, then one line per scored row
    assert "site_id" in lines[0] and "prediction" in lines[0]
