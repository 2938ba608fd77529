"""The spec's Usage Guide, end to end in a real browser: library filters, clone, manifest
editing with live validation and the suggested bump, versions and diff, approval by a lead
(overriding the approval gate with a written reason), registering a model, a train run
executed by a real worker, promotion, a monitoring check that alerts, and chat."""

from __future__ import annotations

import json
import re
import time

import pytest
from playwright.sync_api import expect

from tests.browser.htmx import swapped_in

pytestmark = [pytest.mark.browser, pytest.mark.slow, pytest.mark.django_db(transaction=True)]

RUN_TIMEOUT_MS = 90_000


def login(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/")


def logout(page) -> None:
    page.click("text=Log out")
    page.wait_for_url(re.compile(r"/accounts/login/"))


def test_usage_guide(page, live_server, worker, user, lead, baselines, shots):
    base = live_server.url
    started = time.monotonic()

    # 1. Library: filter by family and search as you type; the URL follows (hx-push-url).
    login(page, base, "scientist", "pw-scientist-1")
    expect(page.locator("#recipes-table tbody tr")).to_have_count(4)
    page.select_option("select[name=model_family]", "location_scoring")
    expect(page.locator("#recipes-table tbody tr")).to_have_count(1)
    expect(page).to_have_url(re.compile(r"model_family=location_scoring"))
    page.select_option("select[name=model_family]", "")
    page.fill("input[name=search]", "pricing")
    expect(page.locator("#recipes-table tbody tr")).to_have_count(1)
    expect(page.locator("#recipes-table")).to_contain_text("Pricing Optimization Baseline v1")
    expect(page).to_have_url(re.compile(r"search=pricing"))
    page.click("a.tab:has-text('Models')")
    expect(page.locator("#library .empty")).to_contain_text("No registered models yet")
    expect(page).to_have_url(re.compile(r"tab=models$"))
    page.go_back()
    expect(page).to_have_url(re.compile(r"search=pricing"))
    expect(page.locator("#recipes-table tbody tr")).to_have_count(1)
    shots(page, "01-library-filtered")

    # 2. Clone the location-scoring baseline into an industry recipe (dialog).
    page.goto(f"{base}/model-development/recipes/recipe_location_base")
    page.click("a[data-dialog-open=clone-dialog]")
    page.fill("#clone-dialog input[name=name]", "Location Scoring — Retail")
    page.click("#clone-dialog button[type=submit]")
    expect(page.locator("h1")).to_have_text("Location Scoring — Retail")
    expect(page.locator(".badges")).to_contain_text("Industry")
    expect(page.locator(".breadcrumbs")).to_contain_text("Location Scoring Baseline v1")
    recipe_url = page.url.split("?")[0]

    # 3. Edit its manifest: a validation error at its path, fixed, saved as 1.1.0.
    page.click("a.tab:has-text('Manifest Editor')")
    page.click("#edit-manifest")
    editor = swapped_in(page, "#manifest-text")
    manifest = json.loads(editor.input_value())
    metric = manifest["evaluation"]["metrics"]["rank_correlation"]
    metric["threshold_warning"] = 0.95  # above the target: thresholds out of order
    editor.fill(json.dumps(manifest, indent=2))
    expect(page.locator("#manifest-errors .error-list")).to_contain_text(
        "/evaluation/metrics/rank_correlation"
    )
    shots(page, "02-editor-validation-error")
    metric["threshold_warning"] = 0.85
    metric["target"] = 0.88
    editor.fill(json.dumps(manifest, indent=2))
    expect(page.locator("#manifest-errors")).to_contain_text("The manifest is valid")
    # The bump defaults to the one the changes need: threshold changes are a minor change.
    expect(page.locator("#bump-hint")).to_contain_text("suggested minor bump")
    expect(page.locator("input[name=bump][value='']")).to_be_checked()
    page.fill("textarea[name=changelog]", "Retail: a reachable rank-correlation target")
    page.click("#version-form button[type=submit]")
    expect(page.locator(".flash-success")).to_contain_text("Saved version 1.1.0")
    expect(page.locator("#diff")).to_contain_text("1.0.0 → 1.1.0")
    expect(page.locator("#diff .diff-table")).to_contain_text("/evaluation/metrics/rank_correlation/target")
    expect(page.locator("#suggested-bump")).to_have_text("minor")
    shots(page, "03-versions-diff")
    # A scientist cannot approve: the button is not offered.
    expect(page.locator("#versions-table")).to_contain_text("awaiting approval")
    expect(page.locator("#versions-table button:has-text('Approve')")).to_have_count(0)

    # 4. A lead approves 1.1.0. No backtest has run on it, so the approval gate does not pass:
    #    the lead sees why and overrides it with a written reason, which the record keeps.
    logout(page)
    login(page, base, "lead", "pw-lead-1")
    page.goto(recipe_url)
    page.click("a.btn:has-text('Approve 1.1.0')")
    gate = page.locator("#approval .gate").first
    expect(gate).to_contain_text("gate not passed")
    expect(gate).to_contain_text("no succeeded backtest or eval run on version 1.1.0")
    reason = "Retail pilot: the backtest follows with the first client data"
    gate.locator("textarea[name=override_reason]").fill(reason)
    gate.locator("button:has-text('Override the gate and approve 1.1.0')").click()
    expect(page.locator(".flash-success")).to_contain_text(f"Approved version 1.1.0 by override: {reason}")
    expect(page.locator("#recipe-status")).to_have_text("Approved")
    record = page.locator("#versions-table tbody tr").first.locator(".approval-record")
    expect(record).to_contain_text("gate overridden")
    expect(record).to_contain_text(reason)
    shots(page, "04-approval-overridden")
    logout(page)

    # 5. The scientist registers a model on the approved version and trains it.
    login(page, base, "scientist", "pw-scientist-1")
    page.goto(recipe_url)
    page.click("a.btn:has-text('Register model')")
    expect(page.locator("select[name=recipe_version] option:checked")).to_contain_text("1.1.0")
    page.fill("input[name=name]", "Retail site scoring")
    page.click("#register-form button[type=submit]")
    expect(page.locator("h1")).to_have_text("Retail site scoring")
    expect(page.locator("#model-status")).to_have_text("Registered")
    page.click("a.btn:has-text('Start train run')")
    page.fill("input[name=rows]", "3000")
    page.click("#run-form button[type=submit]")
    # A trained baseline is no false alarm: "Succeeded" (at most a warning), never critical.
    expect(page.locator("#run-status")).to_have_text(
        re.compile(r"^Succeeded( · warning)?$"), timeout=RUN_TIMEOUT_MS
    )
    expect(page.locator("#run-metrics .metrics-table tbody tr").first).to_be_visible()
    expect(page.locator("#run-metrics")).to_contain_text("rank_correlation")
    expect(page.locator("#run-plots .js-plotly-plot").first).to_be_visible()
    expect(page.locator("#log-lines")).to_contain_text(re.compile(r"· train · #\d+ succeeded"))
    expect(page.locator("#run-artifacts a[download]").first).to_be_visible()
    shots(page, "05-run-succeeded")

    # 6. Promote: registered → staging → production (only legal moves are offered).
    page.click("a.badge:has-text('model: Retail site scoring')")
    expect(page.locator("button:has-text('Promote to production')")).to_have_count(0)
    page.click("button:has-text('Promote to staging')")
    expect(page.locator("#model-status")).to_have_text("Staging")
    # Promotion asks first (a confirm dialog naming what it replaces; tests/browser/test_model_page.py).
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("button:has-text('Promote to production')")
    expect(page.locator("#model-status")).to_have_text("Production")

    # 7. Monitoring: a check on a drifted batch raises the drift alert.
    page.click("a.tab:has-text('Monitoring')")
    # Never checked: the Run check form stands where the charts will be (no empty charts).
    expect(page.locator("#run-check")).to_contain_text("No checks yet")
    expect(page.locator(".charts")).to_have_count(0)
    expect(page).to_have_url(re.compile(r"tab=monitoring"))
    # With the defaults the batch is the next window of the model's world: a healthy model
    # just trained shows no false alarm (issue 11).
    expect(page.locator("#check-form")).to_contain_text("next window")
    page.fill("#check-form input[name=rows]", "4000")
    page.click("#check-form button[type=submit]")
    expect(page.locator(".flash-success")).to_contain_text("no alert fires")
    expect(page.locator("#model-health")).to_have_text("ok")
    expect(page.locator("#active-alerts .alert-row")).to_have_count(0)
    # 7b. Injected covariate drift on the following window raises the drift alert.
    page.fill("#check-form input[name=rows]", "4000")
    page.select_option("#check-form select[name=shift_feature]", "median_income")
    page.fill("#check-form input[name=shift_k]", "1.5")
    page.click("#check-form button[type=submit]")
    expect(page.locator(".flash-warning")).to_contain_text("alerts firing")
    expect(page.locator("#active-alerts .alert-row")).not_to_have_count(0)
    expect(page.locator("#active-alerts")).to_contain_text("feature_drift")
    expect(page.locator("#model-health")).not_to_have_text("ok")
    # The charts are drawn now (static/js/charts.js fetched plotly.js for them).
    expect(page.locator(".charts .js-plotly-plot").first).to_be_visible()
    shots(page, "06-model-monitoring-alert")
    page.goto(f"{base}/model-development/?tab=monitoring")
    expect(page.locator("#monitoring-table")).to_contain_text("Retail site scoring")
    expect(page.locator("#monitoring-table .health")).not_to_have_text("ok")

    # 8. Build with Chat: a description gets an answer with a proposed manifest.
    page.click("a.btn:has-text('Build with Chat')")
    page.fill(
        "#chat-form textarea[name=message]",
        "Weekly demand forecast per store and product for a grocery chain",
    )
    page.click("#chat-form button[type=submit]")
    expect(page.locator(".msg-user")).to_have_count(1)
    expect(page.locator(".msg-assistant")).to_have_count(1)
    expect(page.locator(".msg-assistant .msg-body")).not_to_be_empty()
    expect(page).to_have_url(re.compile(r"/model-development/chat\?c=conv_"))
    expect(page.locator(".proposal")).to_contain_text("Proposed recipe")
    expect(page.locator(".proposal")).to_contain_text("Forecasting")
    expect(page.locator(".proposal button:has-text('Create it')")).to_be_visible()
    shots(page, "07-chat")

    assert page.js_errors == [], page.js_errors
    assert time.monotonic() - started < 120, "the usage guide took longer than 2 minutes"
