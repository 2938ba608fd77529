"""Forms of the recipe pages: clone, new version, status change, approval and rebase.

Forms only check the shape of the input (required, JSON syntax, choices); every domain
rule (levels, semver order, manifest validity, permissions) is the services' job, and
their DomainError messages are put back on these forms' fields.
"""

from __future__ import annotations

import json

from django import forms
from django.conf import settings

from mlworkspace.jsondepth import message as depth_message
from mlworkspace.jsondepth import too_deep_in_text

from . import access, catalog
from .models import Client, RecipeStatus
from .services import default_clone_description

BUMP_CHOICES = [
    ("", "Suggested — the bump the changes need (from the diff)"),
    # The descriptions follow the diff's rules (recipes.lineage.classify).
    ("patch", "Patch — descriptions, tags, schedule, stage settings (1.0.0 → 1.0.1)"),
    ("minor", "Minor — new stages, metrics or optional features; thresholds, algorithm (1.0.0 → 1.1.0)"),
    ("major", "Major — required features, grain, labels, removed stages (1.0.0 → 2.0.0)"),
]


def parse_manifest_text(text: str) -> tuple[object | None, str | None]:
    """(manifest, None) or (None, "line L, column C: what is wrong") for JSON text.

    Text nested deeper than JSON_MAX_DEPTH is refused before json.loads (which, like every
    later walk of the manifest, would recurse past Python's limit), naming where."""
    too_deep = too_deep_in_text(text, settings.JSON_MAX_DEPTH)
    if too_deep is not None:
        return None, f"Too deeply nested at {too_deep}: {depth_message(settings.JSON_MAX_DEPTH)}"
    try:
        return json.loads(text), None
    except json.JSONDecodeError as exc:
        return None, f"Not valid JSON — line {exc.lineno}, column {exc.colno}: {exc.msg}"


class CloneForm(forms.Form):
    name = forms.CharField(max_length=200, help_text="e.g. Pricing — Grocery retail")
    level = forms.ChoiceField(choices=[(level, level.title()) for level in catalog.LEVELS])
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 3}))
    client = forms.ModelChoiceField(
        queryset=Client.objects.none(),
        required=False,
        empty_label="— pick a client —",
        help_text="The client this recipe is for: only its members will see it.",
    )

    def __init__(self, *args, source=None, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        child = catalog.CHILD_LEVEL.get(source.level) if source is not None else None
        if child == "client":
            # The clients the user may create recipes in (recipes.access decides).
            writable = (
                [c.pk for c in access.visible_clients(user) if access.can_write(user, c)] if user else []
            )
            self.fields["client"].queryset = Client.objects.filter(pk__in=writable)
            self.fields["client"].required = True
        else:
            del self.fields["client"]
        if child:
            # The only legal level of a clone is one below its source.
            self.fields["level"].choices = [(child, child.title())]
            self.fields["level"].initial = child
            self.fields[
                "description"
            ].help_text = (
                f"What this {child} variant is for. Left empty: “{default_clone_description(source)}”"
            )


class VersionForm(forms.Form):
    manifest = forms.CharField(widget=forms.Textarea(attrs={"rows": 30, "spellcheck": "false"}))
    # "" = the suggested bump: services.version_create takes it when neither bump nor version is given.
    bump = forms.ChoiceField(choices=BUMP_CHOICES, initial="", required=False, widget=forms.RadioSelect)
    version = forms.CharField(
        required=False,
        max_length=32,
        widget=forms.TextInput(attrs={"placeholder": "e.g. 1.4.0", "autocomplete": "off"}),
        help_text="An explicit number instead of a bump (it must be greater than the latest).",
    )
    force = forms.BooleanField(
        required=False,
        label="Keep my smaller bump or number although the changes need a bigger one "
        "(or save the manifest unchanged)",
    )
    force_note = forms.CharField(
        required=False,
        max_length=5000,
        label="Why",
        widget=forms.Textarea(
            attrs={"rows": 2, "placeholder": "Why this change does not need the suggested bump"}
        ),
    )
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

    def clean(self):
        cleaned = super().clean()
        # An explicit number wins over a bump (the service takes one or the other).
        cleaned["version"] = (cleaned.get("version") or "").strip() or None
        cleaned["bump"] = None if cleaned["version"] else (cleaned.get("bump") or None)
        return cleaned


class ApproveForm(forms.Form):
    """Approve a version: the gate must pass, or `override_reason` says why it is approved anyway."""

    override_reason = forms.CharField(required=False, max_length=5000, strip=True)


class RebaseForm(forms.Form):
    """Take the parent's new approved version (`parent_version`, the one the preview showed).
    The conflict choices are read by the view: they are as many as the merge has conflicts."""

    parent_version = forms.CharField(max_length=64)
    changelog = forms.CharField(
        required=False,
        max_length=5000,
        widget=forms.Textarea(attrs={"rows": 2, "placeholder": "Optional: defaults to what was merged"}),
    )


class RecipeStatusForm(forms.Form):
    status = forms.ChoiceField(choices=RecipeStatus.choices)


RESOLUTION_CHOICES = ("ours", "theirs", "custom")


def parse_resolutions(data) -> tuple[dict, dict[str, str], list[dict]]:
    """The conflict form's answers as services.recipe_rebase takes them.

    `data` holds one `path` per conflict (in order) and for the i-th: `choice-i` (ours, theirs
    or custom) and, for custom, `value-i` (JSON). Returns (resolutions, what was posted per
    path as {"choice", "value"}, errors [{"path", "message"}] naming the conflict's path)."""
    resolutions: dict = {}
    posted: dict[str, dict] = {}
    errors: list[dict] = []
    for i, path in enumerate(data.getlist("path")):
        choice = data.get(f"choice-{i}", "")
        text = data.get(f"value-{i}", "")
        posted[path] = {"choice": choice, "value": text}
        if choice in ("ours", "theirs"):
            resolutions[path] = choice
        elif choice == "custom":
            value, error = parse_manifest_text(text)
            if error:
                errors.append({"path": path, "message": f"the custom value for {path}: {error}"})
            else:
                resolutions[path] = {"value": value}
        else:
            errors.append({"path": path, "message": f"choose ours, theirs or a custom value for {path}"})
    return resolutions, posted, errors
