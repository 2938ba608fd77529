"""Notifications in a real browser: a lead adds a webhook for a recipe on the Notifications
page, sees its secret once, presses "Send test", and the delivery log shows the signed test
delivered to a real HTTP receiver on loopback (the workers' delivery runs in-process here)."""

from __future__ import annotations

import hashlib
import hmac

import pytest
from playwright.sync_api import expect

from notifications.delivery import deliver_due
from notifications.models import Webhook
from notifications.tests.conftest import Receiver

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def test_add_a_webhook_and_send_a_test(page, live_server, lead, baselines, settings):
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the receiver listens on loopback
    receiver = Receiver().start()
    try:
        base = live_server.url
        page.goto(f"{base}/accounts/login/")
        page.fill("#id_username", "lead")
        page.fill("#id_password", "pw-lead-1")
        page.click("#login-form button[type=submit]")
        page.wait_for_url(f"{base}/model-development/")

        page.goto(f"{base}/model-development/notifications")
        form = page.locator("#webhook-form")
        form.locator("input[name=name]").fill("Pricing alerts")
        form.locator("input[name=url]").fill(receiver.url)
        form.locator("select[name=scope]").select_option("recipe:recipe_pricing_base")
        form.get_by_role("button", name="Add webhook").click()
        secret = page.locator("#webhook-secret-value").inner_text().strip()
        hook = Webhook.objects.get(name="Pricing alerts")
        assert secret == hook.secret and hook.recipe_id == "recipe_pricing_base"

        page.goto(f"{base}/model-development/notifications/webhooks/{hook.pk}")
        expect(page.locator("body")).not_to_contain_text(secret)  # shown once, then only a hint
        page.locator("#send-test").click()
        expect(page.locator("#deliveries-table")).to_contain_text("test")
        assert deliver_due() == 1  # the workers' step
        page.reload()
        expect(page.locator("#deliveries-table")).to_contain_text("delivered")
        expect(page.locator("#deliveries-table")).to_contain_text("200")

        (request,) = receiver.requests
        headers = {k.lower(): v for k, v in request["headers"].items()}
        signed = f"{headers['x-workspace-timestamp']}.".encode() + request["body"]
        expected = hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()
        assert headers["x-workspace-signature"] == f"sha256={expected}"
    finally:
        receiver.stop()
