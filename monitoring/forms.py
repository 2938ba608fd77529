"""Forms of the monitoring pages: a check on a synthetic or uploaded batch.

A synthetic batch comes from the model's world (runs.families.worlds): by default the next
window after the last batch checked (the first time, after its training data); the form's
help texts say which world and window that is."""

from __future__ import annotations

from django import forms
from django.db.models import Q

from mlworkspace.errors import DomainError
from models_registry.models import MLModel
from recipes import access
from runs.families import get_family, worlds
from runs.models import Dataset
from runs.selectors import model_training_batch
from runs.services import synthetic_resolve

from .selectors import last_synthetic_batch


class CheckForm(forms.Form):
    """A monitoring check on a synthetic batch (optionally drifted) or an uploaded dataset."""

    source = forms.ChoiceField(
        choices=[("synthetic", "Synthetic batch"), ("dataset", "Uploaded dataset")],
        initial="synthetic",
        widget=forms.RadioSelect,
    )
    rows = forms.IntegerField(min_value=50, max_value=2_000_000, initial=5000, required=False)
    seed = forms.IntegerField(
        min_value=0,
        required=False,
        label="World (seed)",
        help_text="The seed fixes the world's entities and ground truth; blank = the model's own world.",
    )
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
    start = forms.DateField(
        required=False,
        label="Window starts",
        help_text="First day of the synthetic batch; blank = right after the last batch checked.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    concept = forms.ChoiceField(
        required=False,
        label="Concept drift",
        help_text="Change the ground truth (the features stay as they were): performance should decay.",
    )

    def __init__(self, *args, model: MLModel, **kwargs):
        super().__init__(*args, **kwargs)
        self.model = model
        try:
            family = get_family(model.recipe.model_family)
        except KeyError:
            family = None
        schema = family.SCHEMA if family else []
        self.fields["concept"].choices = [
            ("", "— unchanged (as the world is now) —"),
            *(worlds.concept_choices(family) if family else []),
        ]
        if family is not None and family.CONCEPTS:
            self.fields["concept"].help_text = worlds.concepts_help(family)
        self.world = self._describe_next_batch(model)
        if self.world:
            # Says which world and window a default batch comes from (rendered under the field).
            self.fields["seed"].help_text = self.world["seed_help"]
            self.fields["start"].help_text = self.world["start_help"]
            self.fields["seed"].initial = self.world["seed"]
        columns = [c["name"] for c in schema if c.get("role") in ("feature", "segment")]
        drift = ((model.recipe_version.manifest or {}).get("monitoring") or {}).get("drift") or {}
        watched = [f for f in drift.get("features") or [] if f in columns]
        ordered = watched + [c for c in columns if c not in watched]
        self.fields["shift_feature"].choices = [("", "— no drift —")] + [
            (c, f"{c}{' (watched)' if c in watched else ''}") for c in ordered
        ]
        self.fields["dataset"].queryset = (
            Dataset.objects.filter(Q(recipe_id=model.recipe_id) | Q(recipe__isnull=True))
            .filter(access.same_client(model))  # never another client's data
            .order_by("-created_at")
        )

    @staticmethod
    def _describe_next_batch(model: MLModel) -> dict | None:
        """The default synthetic batch of a check of ``model``, in words (None: untrained)."""
        training = model_training_batch(model)
        if training is None:
            return None
        try:
            family = get_family(model.recipe.model_family)
            previous = last_synthetic_batch(model, training=training)
            batch = synthetic_resolve(
                family_name=family.NAME, synthetic={"rows": 5000}, after=previous or training
            )
        except (KeyError, DomainError):
            return None
        after = "the last batch checked" if previous else "the model's training data"
        window = batch["window"]
        world = family.describe_world(batch["world"])
        return {
            "seed": batch["seed"],
            "seed_help": (
                f"Seed {batch['seed']} is the world the model was trained in ({world}); "
                "another seed is another world (new entities: expect drift)."
            ),
            "start_help": (
                f"Blank = the next window after {after}: {window['periods']} {window['unit']}s "
                f"{window['start']} – {window['end']} for {batch['rows']:,} rows."
            ),
        }

    def clean(self):
        data = super().clean()
        if data.get("source") == "dataset" and not data.get("dataset"):
            self.add_error("dataset", "Pick an uploaded dataset, or check a synthetic batch.")
        if data.get("source") == "synthetic" and data.get("shift_feature") and data.get("shift_k") is None:
            self.add_error("shift_k", "How much to drift it (e.g. 1.5).")
        if data.get("source") == "synthetic" and data.get("start"):
            try:
                worlds.period_index(get_family(self.model.recipe.model_family), data["start"].isoformat())
            except worlds.WorldError as exc:
                self.add_error("start", exc.message)
        return data

    def check_kwargs(self) -> dict:
        data = self.cleaned_data
        if data["source"] == "dataset":
            return {"dataset_id": data["dataset"].pk}
        synthetic = {"rows": data.get("rows") or 5000}
        if data.get("seed") is not None:
            synthetic["seed"] = data["seed"]
        if data.get("start"):
            synthetic["start"] = data["start"].isoformat()
        if data.get("concept"):
            synthetic["concept"] = data["concept"]
        if data.get("shift_feature"):
            synthetic["shift"] = {data["shift_feature"]: float(data["shift_k"])}
        return {"synthetic": synthetic}
