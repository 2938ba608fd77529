"""Forms of the run pages: starting a run."""

from __future__ import annotations

from django import forms
from django.db.models import Q

from models_registry.models import MLModel
from recipes import access, tuning
from recipes.models import Recipe, RecipeVersion

from . import services
from .families import get_family, worlds
from .models import Dataset, RunType


class VersionChoice(forms.ModelChoiceField):
    def label_from_instance(self, obj):
        return f"{obj.version}{' (approved)' if obj.is_approved else ''}"


class RunForm(forms.Form):
    SYNTHETIC_FIELDS = ("rows", "seed", "start", "concept")

    recipe = forms.ModelChoiceField(queryset=Recipe.objects.none())
    recipe_version = VersionChoice(
        queryset=RecipeVersion.objects.none(), required=False, empty_label="Latest version"
    )
    # A trial is started by its tune run, never on its own.
    run_type = forms.ChoiceField(
        choices=[c for c in RunType.choices if c[0] != RunType.TRIAL],
        initial=RunType.TRAIN,
        help_text=(
            "A tune run searches the hyperparameters of the version's tuning section (training "
            "stage) with Optuna; each trial shows as a child run, the best can be saved as a new version."
        ),
    )
    model = forms.ModelChoiceField(
        queryset=MLModel.objects.none(),
        required=False,
        empty_label="— none —",
        help_text=(
            "A train run of a registered model attaches its artifact to the model; eval and score "
            "runs need one (a score run predicts the batch with it)."
        ),
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
    seed = forms.IntegerField(
        required=False,
        min_value=0,
        label="World (seed)",
        help_text=(
            "The seed fixes the synthetic world: its entities and ground truth. A train or backtest "
            "run covers the world's first window; an eval or score run the window right after its "
            "model's training data, in the model's world (leave the seed blank or the same). Blank: "
            "0 for a train run, the model's world for an eval or score run."
        ),
    )
    start = forms.DateField(
        required=False,
        label="Window starts",
        help_text="First day of the synthetic data; blank = the default above.",
        widget=forms.DateInput(attrs={"type": "date"}),
    )
    concept = forms.ChoiceField(
        required=False,
        choices=[("", "— none —")],
        label="Concept drift",
        help_text="Change the world's ground truth in this window (e.g. to see an eval run decay).",
    )

    def __init__(self, *args, recipe_id: str | None = None, user=None, **kwargs):
        super().__init__(*args, **kwargs)
        # Only recipes the user may see (recipes.access); an id of another client's is ignored.
        visible = Recipe.objects.visible_to(user) if user is not None else Recipe.objects.all()
        self.fields["recipe"].queryset = visible.only("id", "name", "level", "model_family").order_by("name")
        recipe = visible.filter(pk=recipe_id).first() if recipe_id else None
        recipe_id = recipe.pk if recipe is not None else None
        if recipe_id:
            self.fields["recipe_version"].queryset = (
                RecipeVersion.objects.filter(recipe_id=recipe_id).defer("manifest").order_by("-created_at")
            )
            self.fields["model"].queryset = MLModel.objects.filter(recipe_id=recipe_id).order_by(
                "-created_at"
            )
            self.fields["dataset"].queryset = (
                Dataset.objects.filter(Q(recipe_id=recipe_id) | Q(recipe__isnull=True))
                .filter(access.same_client(recipe))  # never another client's data
                .order_by("-created_at")
            )
            self._describe_world(recipe_id)

    def _describe_world(self, recipe_id: str) -> None:
        """Concept choices and the world's calendar for the recipe's family."""
        family_name = Recipe.objects.filter(pk=recipe_id).values_list("model_family", flat=True).first()
        try:
            family = get_family(family_name)
        except KeyError:
            return
        self.fields["concept"].choices = [("", "— none —"), *worlds.concept_choices(family)]
        self.fields["concept"].help_text = worlds.concepts_help(family)
        unit = "week" if family.PERIOD_DAYS == 7 else "day"
        self.fields["start"].help_text = (
            f"First day of the synthetic data (the world begins {family.ORIGIN}; data come in {unit}s); "
            "blank = the world's beginning for train and backtest runs, the window after the "
            "model's training data for eval and score runs."
        )

    def clean(self):
        data = super().clean()
        recipe, version = data.get("recipe"), data.get("recipe_version")
        if data.get("run_type") == RunType.TUNE and recipe is not None:
            version = version or recipe.current_version
            if version is not None and tuning.section(version.manifest) is None:
                self.add_error(
                    "run_type",
                    f"Version {version.version} has no tuning section: a tune run needs "
                    "pipeline.stages[training].config.tuning (metric, n_trials, space) in the manifest.",
                )
        return data

    def synthetic_params(self) -> dict:
        """params["synthetic"] of the run (empty: the defaults)."""
        v = self.cleaned_data
        synthetic = {k: v[k] for k in ("rows", "seed") if v.get(k) is not None}
        if v.get("start"):
            synthetic["start"] = v["start"].isoformat()
        if v.get("concept"):
            synthetic["concept"] = v["concept"]
        return synthetic
