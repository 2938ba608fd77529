"""Forms of the model pages: registering a model."""

from __future__ import annotations

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
