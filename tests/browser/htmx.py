"""Waiting for HTMX in browser tests."""

from __future__ import annotations

from playwright.sync_api import expect


def swapped_in(page, selector: str):
    """The element at ``selector`` once HTMX has swapped it in *and* wired it up.

    HTMX inserts new content first and attaches its triggers (``hx-trigger``) when the
    swap settles, one timer tick later; typing into the element in between sends nothing.
    The target carries ``htmx-settling`` until then."""
    element = page.locator(selector)
    expect(element).to_be_attached()
    expect(page.locator(".htmx-settling, .htmx-swapping")).to_have_count(0)
    return element
