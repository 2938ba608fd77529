"""Forms of the Datasets page: uploading a file, checking a dataset against a recipe, marking
it as its recipe's scoring input."""

from __future__ import annotations

from django import forms

from recipes.models import Recipe

from .models import DatasetPurpose


class RecipeChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.name} ({obj.get_level_display().lower()})"


def _recipes(user):
    return Recipe.objects.visible_to(user).only("id", "name", "level", "model_family").order_by("name", "id")


class DatasetUploadForm(forms.Form):
    file = forms.FileField(
        label="File", help_text="A .csv or .parquet file with one row per observation and a header row."
    )
    name = forms.CharField(max_length=200, required=False, help_text="Blank: the file's name.")
    recipe = RecipeChoice(
        queryset=Recipe.objects.none(),
        required=False,
        empty_label="— none: check it later —",
        help_text="Checked at upload against this recipe's requirements (columns, nulls, grain, history).",
    )

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["recipe"].queryset = _recipes(user)
        self.fields["file"].widget.attrs["accept"] = ".csv,.parquet,.pq"


class DatasetCheckForm(forms.Form):
    recipe = RecipeChoice(queryset=Recipe.objects.none(), empty_label="— pick a recipe —")

    def __init__(self, *args, user, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["recipe"].queryset = _recipes(user)


class DatasetPurposeForm(forms.Form):
    purpose = forms.ChoiceField(choices=DatasetPurpose.choices)
