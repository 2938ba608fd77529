"""The Content-Security-Policy in a real browser: every main page — the library, a recipe, a
model with its Plotly charts (swapped in by htmx), a run with its family plots, datasets, chat,
the admin, Swagger UI and the DRF browsable API — loads and works with no CSP violation and no
JavaScript error. Chromium reports each blocked script, style or handler both as a console
error and as a `securitypolicyviolation` event; the test listens to both."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta

import pytest
from django.contrib.auth import get_user_model
from playwright.sync_api import expect

from monitoring.services import snapshot_record
from runs.models import Run
from runs.tests.factories import trained_model

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]

# Collects the violations of each document (the page's own scripts cannot see this: it is
# injected by the browser driver, which the CSP does not govern).
RECORD_VIOLATIONS = """
window.__cspViolations = [];
document.addEventListener("securitypolicyviolation", (e) => {
  window.__cspViolations.push(`${e.violatedDirective} blocked ${e.blockedURI || "inline"} (${e.sourceFile}:${e.lineNumber})`);
});
"""


class Watch:
    """Console CSP messages, page errors and violation events of every page visited."""

    def __init__(self, page):
        self.page = page
        self.console: list[str] = []
        page.add_init_script(RECORD_VIOLATIONS)
        page.on(
            "console",
            lambda msg: (
                self.console.append(msg.text)
                if msg.type == "error" or "Content Security Policy" in msg.text
                else None
            ),
        )

    def assert_clean(self, where: str) -> None:
        self.page.wait_for_load_state("networkidle")
        violations = self.page.evaluate("window.__cspViolations || []")
        csp_console = [text for text in self.console if "Content Security Policy" in text]
        assert not violations, f"{where}: CSP violations {violations}"
        assert not csp_console, f"{where}: CSP console messages {csp_console}"
        assert not self.console, f"{where}: console errors {self.console}"
        assert not self.page.js_errors, f"{where}: JavaScript errors {self.page.js_errors}"


def login(page, base: str, username: str, password: str) -> None:
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/")


def test_main_pages_run_under_the_csp_without_violations(page, live_server, user, baselines):
    base = live_server.url
    user.is_staff = True
    user.is_superuser = True  # the admin pages too
    user.save()
    model = trained_model(user, rows=3000)
    run = Run.objects.filter(model=model).latest("created_at")
    t0 = datetime(2026, 1, 5, tzinfo=UTC)
    for day, mape in enumerate([0.2, 0.22]):
        snapshot_record(
            model=model,
            performance={"demand_mape": mape},
            drift={"features": {"price": {"psi": 0.02 * (day + 1), "drifted": False}}, "threshold": 0.2},
            captured_at=t0 + timedelta(days=day),
            source="check",
        )

    watch = Watch(page)
    response = page.goto(f"{base}/accounts/login/")
    policy = response.headers["content-security-policy"]
    assert "'unsafe-inline'" not in policy and "'unsafe-eval'" not in policy
    assert re.search(r"script-src 'self' 'nonce-[\w-]+'", policy), policy
    login(page, base, user.username, "pw-scientist-1")
    watch.assert_clean("login")

    # The library and an htmx tab swap.
    page.goto(f"{base}/model-development/")
    page.click("a.tab:has-text('Runs')")
    expect(page).to_have_url(re.compile(r"tab=runs"))
    watch.assert_clean("library")

    page.goto(f"{base}/model-development/recipes/recipe_pricing_base")
    expect(page.locator("h1")).to_be_visible()
    watch.assert_clean("recipe")

    # The model page's Monitoring tab: htmx swaps the charts in, charts.js loads plotly.js,
    # which adds its CSS rules to the nonce'd <style> of base.html.
    page.goto(f"{base}/model-development/models/{model.pk}")
    page.click("a.tab:has-text('Monitoring')")
    expect(page.locator(".charts .js-plotly-plot").first).to_be_visible()
    # Plotly's rules really applied (a blocked stylesheet would leave the modebar unstyled).
    rules = page.evaluate("document.getElementById('plotly.js-style-global').sheet.cssRules.length")
    assert rules > 0
    page.locator(".charts .js-plotly-plot").first.hover()  # the modebar appears
    watch.assert_clean("model monitoring charts")

    page.goto(f"{base}/model-development/runs/{run.pk}")
    expect(page.locator(".js-plotly-plot").first).to_be_visible()
    expect(page.locator("progress.progress")).to_have_attribute("value", "100")
    watch.assert_clean("run")

    page.goto(f"{base}/model-development/datasets")
    watch.assert_clean("datasets")

    page.goto(f"{base}/model-development/chat")
    page.fill("#chat-form textarea", "list the baseline recipes")
    page.click("#chat-form button[type=submit]")
    expect(page.locator("#chat-log")).to_contain_text("recipe", ignore_case=True)
    watch.assert_clean("chat")

    page.goto(f"{base}/admin/")
    expect(page.locator("#site-name")).to_be_visible()
    page.goto(f"{base}/admin/runs/run/")
    page.goto(f"{base}/admin/runs/run/{run.pk}/change/")
    watch.assert_clean("admin")

    page.goto(f"{base}/api/docs/")
    expect(page.locator(".swagger-ui .info .title")).to_contain_text("ML Model Development Workspace API")
    expect(page.locator(".opblock").first).to_be_visible()
    watch.assert_clean("swagger ui")

    page.goto(f"{base}/api/ml-development/recipes")
    expect(page.locator(".response-info")).to_contain_text("recipe_pricing_base")
    watch.assert_clean("browsable API")


def test_a_script_without_the_nonce_is_blocked(page, live_server, user):
    """The policy is enforced, not just sent: a script injected without the nonce does not run
    (and the watcher sees the violation the test above asserts never happens)."""
    base = live_server.url
    get_user_model().objects.filter(pk=user.pk).update(is_staff=True)
    watch = Watch(page)
    login(page, base, user.username, "pw-scientist-1")
    ran = page.evaluate(
        """() => new Promise((resolve) => {
            window.__ran = false;
            document.addEventListener("securitypolicyviolation", () => resolve(window.__ran), {once: true});
            const s = document.createElement("script");
            s.textContent = "window.__ran = true";
            document.body.appendChild(s);
        })"""
    )
    assert ran is False
    assert page.evaluate("window.__cspViolations.length") >= 1
    with pytest.raises(AssertionError, match="CSP violations"):
        watch.assert_clean("injected script")
