"""Forms of the recipe pages: clone, new version, status change and the chat box.

Forms only check the shape of the input (required, JSON syntax, choices); every domain
rule (levels, semver order, manifest validity, permissions) is the services' job, and
their DomainError messages are put back on these forms' fields.
"""

from __future__ import annotations

import json

from django import forms
from django.conf import settings

from . import catalog
from .models import RecipeStatus

BUMP_CHOICES = [
    ("patch", "Patch — fixes, threshold tweaks (1.0.0 → 1.0.1)"),
    ("minor", "Minor — new features or stages (1.0.0 → 1.1.0)"),
    ("major", "Major — incompatible change (1.0.0 → 2.0.0)"),
]


def parse_manifest_text(text: str) -> tuple[object | None, str | None]:
    """(manifest, None) or (None, "line L, column C: what is wrong") for JSON text."""
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"Not valid JSON — line {exc.lineno}, column {exc.colno}: {exc.msg}"


class CloneForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="e.g. Pricing — Grocery retail")
    level = forms.ChoiceField(choices=[(level, level.title()) for level in catalog.LEVELS])
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))

    def __init__(self, *args, source=None, **kwargs):
        super().__init__(*args, **kwargs)
        child = catalog.CHILD_LEVEL.get(source.level) if source is not None else None
        if child:
            # The only legal level of a clone is one below its source.
            self.fields["level"].choices = [(child, child.title())]
            self.fields["level"].initial = child


class VersionForm(forms.Form):
    manifest = forms.CharField(widget=forms.Textarea(attrs={"rows": 30, "spellcheck": "false"}))
    bump = forms.ChoiceField(choices=BUMP_CHOICES, initial="minor", widget=forms.RadioSelect)
    changelog = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "What changed and why"}),
    )

    def clean_manifest(self):
        manifest, error = parse_manifest_text(self.cleaned_data["manifest"])
        if error:
            raise forms.ValidationError(error)
        return manifest


class RecipeStatusForm(forms.Form):
    status = forms.ChoiceField(choices=RecipeStatus.choices)


class ChatForm(forms.Form):
    message = forms.CharField(
        max_length=settings.CHAT_MAX_MESSAGE_CHARS,
        strip=True,
        widget=forms.Textarea(
            attrs={
                "rows": 3,
                "placeholder": "Describe the model you need: what to predict or decide, for whom, how often",
            }
        ),
    )
    conversation_id = forms.CharField(required=False, widget=forms.HiddenInput)
