"""Build with Chat in a real browser (issue #18): a description with something the recipe cannot
hold, said back; a refinement of the same proposal; a question answered from the knowledge
base with its source; then "create it", whose link opens the created recipe."""

from __future__ import annotations

import re

import pytest
from django.urls import reverse
from playwright.sync_api import expect

pytestmark = [pytest.mark.browser, pytest.mark.django_db(transaction=True)]


def send(page, text: str, answers: int) -> None:
    """Type a message, send it, and wait for the assistant's ``answers``-th reply."""
    page.fill("#chat-form textarea[name=message]", text)
    page.click("#chat-form button[type=submit]")
    expect(page.locator(".msg-assistant")).to_have_count(answers)


def test_a_short_conversation_creates_a_recipe(page, live_server, user, baselines, settings):
    settings.LLM_BASE_URL = ""  # the built-in assistant, no external model
    settings.LLM_MODEL = ""
    base = live_server.url
    page.goto(f"{base}/accounts/login/")
    page.fill("#id_username", "scientist")
    page.fill("#id_password", "pw-scientist-1")
    page.click("#login-form button[type=submit]")
    page.wait_for_url(f"{base}/model-development/")
    page.goto(f"{base}{reverse('pages:chat')}")
    last = page.locator(".msg-assistant").last

    # 1. A description: the family is read, and what the recipe cannot hold is said back.
    send(
        page,
        "Set prices for our grocery range, using weather and holidays; AUC above 0.8, margin floor 20%",
        1,
    )
    expect(last.locator(".proposal")).to_contain_text("Pricing")
    expect(last.locator(".proposal")).to_contain_text("✓ valid")
    expect(last.locator(".msg-body")).to_contain_text("What I understood but can't put in the recipe")
    expect(last.locator(".msg-body")).to_contain_text("I can't add weather to the pricing family")
    expect(last.locator(".msg-body")).to_contain_text("I can't add holiday effects to the pricing family")
    expect(last.locator(".msg-body")).to_contain_text("AUC is not a metric of the pricing family")
    expect(last.locator(".msg-body")).to_contain_text("A margin of at least 20%")
    expect(page).to_have_url(re.compile(r"/model-development/chat\?c=conv_"))

    # 2. A refinement of the same proposal.
    send(page, "drop the weather", 2)
    expect(last.locator(".msg-body")).to_contain_text("no longer asked for: weather")
    expect(last.locator(".msg-body")).not_to_contain_text("industry: drop")
    expect(last.locator(".proposal")).to_contain_text("Grocery price optimisation")
    expect(last.locator(".proposal button:has-text('Create it')")).to_be_visible()
    # the first proposal's button is superseded at once, without a reload: one to click
    expect(page.locator(".msg-assistant").first.locator(".create-it")).to_be_hidden()
    expect(page.locator(".create-it button:visible")).to_have_count(1)

    # 3. A question about "here": the pricing family's own metric, with its source.
    send(page, "what does calibration mean here?", 3)
    expect(last.locator(".msg-body")).to_contain_text("calibration: Absolute calibration error")
    expect(last.locator(".sources")).to_contain_text("Pricing metrics")
    expect(last.locator(".proposal")).to_contain_text("Grocery price optimisation")  # unchanged

    # 4. "create it": the reply links the created recipe, and the link opens its page.
    send(page, "create it", 4)
    expect(last.locator(".msg-body")).to_contain_text("Created the draft industry recipe")
    link = last.locator(".created a")
    expect(link).to_have_text("Open the new recipe")
    link.click()
    expect(page).to_have_url(re.compile(r"/model-development/recipes/recipe_"))
    expect(page.locator("h1")).to_have_text("Grocery price optimisation")
    expect(page.locator(".breadcrumbs")).to_contain_text("Pricing Optimization Baseline v1")

    assert page.js_errors == [], page.js_errors
