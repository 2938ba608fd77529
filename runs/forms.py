"""Forms of the run pages: starting a run."""

from __future__ import annotations

from django import forms
from django.db.models import Q

from models_registry.models import MLModel
from recipes.models import Recipe, RecipeVersion

from . import services
from .models import Dataset, RunType


class VersionChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.version}{' (approved)' if obj.is_approved else ''}"


class RunForm(forms.Form):
    recipe = forms.ModelChoiceField(queryset=Recipe.objects.none())
    recipe_version = VersionChoice(
        queryset=RecipeVersion.objects.none(), required=False, empty_label="Latest version"
    )
    run_type = forms.ChoiceField(choices=RunType.choices, initial=RunType.TRAIN)
    model = forms.ModelChoiceField(
        queryset=MLModel.objects.none(),
        required=False,
        empty_label="— none —",
        help_text="A train run of a registered model attaches its artifact to the model; eval runs need one.",
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(),
        required=False,
        empty_label="Synthetic data from the recipe's generator",
    )
    rows = forms.IntegerField(
        required=False,
        min_value=50,
        max_value=services.MAX_SYNTHETIC_ROWS,
        help_text="Synthetic rows; blank for the family's default size.",
    )
    seed = forms.IntegerField(required=False, min_value=0, initial=1)

    def __init__(self, *args, recipe_id: str | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["recipe"].queryset = Recipe.objects.only("id", "name", "level", "model_family").order_by(
            "name"
        )
        if recipe_id:
            self.fields["recipe_version"].queryset = (
                RecipeVersion.objects.filter(recipe_id=recipe_id).defer("manifest").order_by("-created_at")
            )
            self.fields["model"].queryset = MLModel.objects.filter(recipe_id=recipe_id).order_by(
                "-created_at"
            )
            self.fields["dataset"].queryset = Dataset.objects.filter(
                Q(recipe_id=recipe_id) | Q(recipe__isnull=True)
            ).order_by("-created_at")
