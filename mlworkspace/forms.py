"""Form helpers shared by every app's pages."""

from __future__ import annotations

from django import forms

from mlworkspace.errors import DomainError


def add_domain_errors(form: forms.Form, exc: DomainError, fields: dict[str, str] | None = None) -> None:
    """Put a service's error messages next to the form fields their paths name.

    `fields` maps the first path segment (e.g. "recipe_version_id") to a form field
    (e.g. "version"); paths without a field become non-field errors."""
    fields = fields or {}
    placed = False
    for error in exc.errors:
        head = (error.get("path") or "").strip("/").split("/")[0]
        name = fields.get(head, head)
        if name in form.fields:
            form.add_error(name, error.get("message") or exc.detail)
            placed = True
    if not placed:
        form.add_error(None, exc.detail)
