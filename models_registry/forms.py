"""Forms of the model pages: registering a model, explaining one prediction."""

from __future__ import annotations

from datetime import datetime, time

from django import forms

from recipes.models import Recipe, RecipeVersion


class ApprovedVersionChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        when = obj.approved_at.strftime("%Y-%m-%d") if obj.approved_at else ""
        return f"{obj.version} (approved {when})"


class RegisterForm(forms.Form):
    recipe = forms.ModelChoiceField(
        queryset=Recipe.objects.none(), help_text="Only recipes with an approved version are listed."
    )
    recipe_version = ApprovedVersionChoice(queryset=RecipeVersion.objects.none(), label="Approved version")
    name = forms.CharField(
        max_length=200, widget=forms.TextInput(attrs={"placeholder": "e.g. Grocery pricing — weekly"})
    )
    owner = forms.CharField(max_length=200, required=False, help_text="Blank: you.")
    description = forms.CharField(required=False, widget=forms.Textarea(attrs={"rows": 2}))

    def __init__(self, *args, recipe_id: str | None = None, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Only recipes the user may see (recipes.access); an id of another client's is ignored.
        visible = Recipe.objects.visible_to(user) if user is not None else Recipe.objects.all()
        if recipe_id and not visible.filter(pk=recipe_id).exists():
            recipe_id = None
        self.fields["recipe"].queryset = (
            visible.filter(versions__approved_at__isnull=False)
            .distinct()
            .only("id", "name", "level", "model_family")
            .order_by("name")
        )
        if recipe_id:
            self.fields["recipe_version"].queryset = (
                RecipeVersion.objects.filter(recipe_id=recipe_id, approved_at__isnull=False)
                .defer("manifest")
                .order_by("-created_at")
            )


class DateText(forms.CharField):
    """A date or date-time typed as ISO text (2026-01-05, 2026-01-05T08:00), kept without a
    time zone as the model's training data has none; sent on as ISO text."""

    def to_python(self, value):
        value = super().to_python(value)
        if value in self.empty_values:
            return value
        try:
            parsed = datetime.fromisoformat(value)
        except ValueError:
            raise forms.ValidationError("Enter a date like 2026-01-05 (or 2026-01-05T08:00).") from None
        parsed = parsed.replace(tzinfo=None)
        return parsed.date().isoformat() if parsed.time() == time() else parsed.isoformat()


# A schema.json column type -> the form field that reads it.
_FIELDS = {
    "float": lambda **kw: forms.FloatField(**kw),
    "int": lambda **kw: forms.IntegerField(**kw),
    "bool": lambda **kw: forms.BooleanField(**{**kw, "required": False}),
    "date": lambda **kw: DateText(max_length=40, **kw),
    "datetime": lambda **kw: DateText(max_length=40, **kw),
}


class ExplainForm(forms.Form):
    """ "Explain this prediction": one field per input column of the model's schema.json
    (``[{"name", "dtype"}]``), in its order; ``row()`` is the request row the predict API takes.
    Fields carry the ``row`` prefix so no column name can clash with the CSRF field."""

    prefix = "row"

    def __init__(self, *args, columns: list[dict], **kwargs):
        super().__init__(*args, **kwargs)
        self.columns = [c for c in columns if isinstance(c, dict) and c.get("name")]
        for column in self.columns:
            make = _FIELDS.get(column.get("dtype"), lambda **kw: forms.CharField(max_length=200, **kw))
            field = make(label=column["name"], help_text="")
            field.widget.attrs.setdefault("autocomplete", "off")
            self.fields[column["name"]] = field

    def row(self) -> dict:
        """The cleaned values as one request row ({column: value})."""
        return {c["name"]: self.cleaned_data.get(c["name"]) for c in self.columns}
