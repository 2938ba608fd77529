"""Forms of the monitoring pages: a check on a synthetic or uploaded batch."""

from __future__ import annotations

from django import forms
from django.db.models import Q

from models_registry.models import MLModel
from runs.families import get_family
from runs.models import Dataset


class CheckForm(forms.Form):
    """A monitoring check on a synthetic batch (optionally drifted) or an uploaded dataset."""

    source = forms.ChoiceField(
        choices=[("synthetic", "Synthetic batch"), ("dataset", "Uploaded dataset")],
        initial="synthetic",
        widget=forms.RadioSelect,
    )
    rows = forms.IntegerField(min_value=50, max_value=2_000_000, initial=5000, required=False)
    seed = forms.IntegerField(min_value=0, initial=0, required=False)
    shift_feature = forms.ChoiceField(required=False, label="Drift a feature")
    shift_k = forms.FloatField(
        required=False,
        initial=1.5,
        label="by k",
        help_text="Numeric: moved by k standard deviations. Categorical: its top category k× as frequent.",
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(), required=False, empty_label="— pick a dataset —"
    )

    def __init__(self, *args, model: MLModel, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            schema = get_family(model.recipe.model_family).SCHEMA
        except KeyError:
            schema = []
        columns = [c["name"] for c in schema if c.get("role") in ("feature", "segment")]
        drift = ((model.recipe_version.manifest or {}).get("monitoring") or {}).get("drift") or {}
        watched = [f for f in drift.get("features") or [] if f in columns]
        ordered = watched + [c for c in columns if c not in watched]
        self.fields["shift_feature"].choices = [("", "— no drift —")] + [
            (c, f"{c}{' (watched)' if c in watched else ''}") for c in ordered
        ]
        self.fields["dataset"].queryset = Dataset.objects.filter(
            Q(recipe_id=model.recipe_id) | Q(recipe__isnull=True)
        ).order_by("-created_at")

    def clean(self):
        data = super().clean()
        if data.get("source") == "dataset" and not data.get("dataset"):
            self.add_error("dataset", "Pick an uploaded dataset, or check a synthetic batch.")
        if data.get("source") == "synthetic" and data.get("shift_feature") and data.get("shift_k") is None:
            self.add_error("shift_k", "How much to drift it (e.g. 1.5).")
        return data

    def check_kwargs(self) -> dict:
        data = self.cleaned_data
        if data["source"] == "dataset":
            return {"dataset_id": data["dataset"].pk}
        synthetic = {"rows": data.get("rows") or 5000, "seed": data.get("seed") or 0}
        if data.get("shift_feature"):
            synthetic["shift"] = {data["shift_feature"]: float(data["shift_k"])}
        return {"synthetic": synthetic}
