from rest_framework import serializers

from recipes.serializers import StrictSerializer

from .models import MLModel, ModelStatus


class MLModelSerializer(serializers.ModelSerializer):
    recipe_id = serializers.CharField(read_only=True)
    recipe_name = serializers.CharField(source="recipe.name", read_only=True)
    model_family = serializers.CharField(source="recipe.model_family", read_only=True)
    recipe_version_id = serializers.CharField(read_only=True)
    version = serializers.CharField(source="recipe_version.version", read_only=True)
    training_run_id = serializers.CharField(read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    role = serializers.ChoiceField(
        choices=["champion", "challenger", ""],
        read_only=True,
        help_text="champion: the recipe's production model; challenger: registered by a retrain of challenger_of_id.",
    )
    challenger_of_id = serializers.CharField(read_only=True, allow_null=True)

    class Meta:
        model = MLModel
        fields = [
            "id",
            "name",
            "description",
            "recipe_id",
            "recipe_name",
            "model_family",
            "recipe_version_id",
            "version",
            "status",
            "owner",
            "training_run_id",
            "metrics_json",
            "artifacts_json",
            "promoted_at",
            "serves_alongside",
            "role",
            "challenger_of_id",
            "last_check_at",
            "next_check_at",
            "created_by",
            "created_at",
            "updated_at",
        ]


class ModelRegisterSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    recipe_id = serializers.CharField()
    recipe_version_id = serializers.CharField()
    owner = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    description = serializers.CharField(required=False, allow_blank=True, default="")


class ModelUpdateSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=ModelStatus.choices, required=False)
    name = serializers.CharField(max_length=200, required=False)
    owner = serializers.CharField(required=False, allow_blank=True, max_length=200)
    description = serializers.CharField(required=False, allow_blank=True)
    keep_other_production = serializers.BooleanField(required=False, default=False)


class RowsField(serializers.ListField):
    """A non-empty list of JSON objects, passed through as they are (predict checks the
    columns: runs.artifacts.rows_frame). A JSON body's list of dicts is accepted in one pass;
    anything else goes through DRF's ListField(child=DictField()) for the same 400s as always
    (`/rows/<i>`: "Expected a dictionary of items but got type ...", "This list may not be
    empty.", ...). Validating every value of every row through DRF's fields took 0.2-0.3 s of
    a 50,000-row request (bench/bench_experiments.py) and checked no more than this: a
    DictField's child accepts any value."""

    def __init__(self, **kwargs):
        super().__init__(child=serializers.DictField(), allow_empty=False, **kwargs)

    def to_internal_value(self, data):
        # type() is not isinstance(): a dict subclass (a QueryDict from a form) takes DRF's way.
        if type(data) is list and data and all(type(row) is dict for row in data):
            return data
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    """A JSON true or false, nothing else (DRF's BooleanField also reads "yes", "off", 1, 0, ...
    as booleans: a typo there would silently turn a flag on or off)."""

    default_error_messages = {"invalid": "must be true or false, got {value}."}

    def to_internal_value(self, data):
        if isinstance(data, bool):
            return data
        self.fail("invalid", value=repr(data)[:40])


class PredictSerializer(StrictSerializer):
    rows = RowsField()
    explain = StrictBooleanField(
        required=False,
        default=False,
        help_text='true: add "explanations", one per row (at most PREDICT_EXPLAIN_MAX_ROWS rows).',
    )


class RowExplanationSerializer(serializers.Serializer):
    """One prediction's explanation (runs.explain.explain_rows); families add their own
    fields (pricing: "elasticity", "demand_curve")."""

    method = serializers.CharField(help_text="The attribution method, e.g. tree_shap or exact_shapley.")
    scale = serializers.CharField(help_text='What "output" is: the prediction, or e.g. log1p(prediction).')
    output = serializers.FloatField()
    base_value = serializers.FloatField()
    contributions = serializers.DictField(
        child=serializers.FloatField(),
        help_text="Feature -> contribution; base_value + their sum == output (within 1e-6 for exact methods).",
    )
    reasons = serializers.ListField(child=serializers.CharField(), help_text="The top reasons in words.")
    model_id = serializers.CharField(help_text="The model whose prediction this explains.")


class PredictResponseSerializer(serializers.Serializer):
    model_id = serializers.CharField()
    predictions = serializers.ListField(child=serializers.FloatField(allow_null=True))
    explanations = RowExplanationSerializer(
        many=True, required=False, help_text='With "explain": true: one per row, parallel to "predictions".'
    )
    experiment_id = serializers.CharField(required=False, help_text="While an A/B or shadow test runs.")
    mode = serializers.CharField(required=False)
    arms = serializers.ListField(child=serializers.CharField(), required=False)
    arm = serializers.CharField(required=False)
    models = serializers.DictField(child=serializers.CharField(), required=False)


class ImportanceSerializer(serializers.Serializer):
    feature = serializers.CharField()
    importance = serializers.FloatField()
    ci_low = serializers.FloatField(allow_null=True)
    ci_high = serializers.FloatField(allow_null=True)


class ExplanationsSerializer(serializers.Serializer):
    """A model's explanations (explanations.json of its train run's explain stage), served as
    the stage wrote it. A method the stage's config left out has null in its key."""

    version = serializers.IntegerField()
    family = serializers.CharField()
    model_algorithm = serializers.CharField(allow_null=True)
    method = serializers.CharField(
        help_text="The per-prediction attribution method (tree_shap, exact_shapley, ...)."
    )
    method_note = serializers.CharField(help_text="What the method is and whether it is exact.")
    scale = serializers.CharField()
    output_label = serializers.CharField()
    base_value = serializers.FloatField()
    sample_rows = serializers.IntegerField()
    background_rows = serializers.IntegerField()
    seed = serializers.IntegerField()
    methods = serializers.ListField(child=serializers.CharField())
    global_ = ImportanceSerializer(
        many=True,
        allow_null=True,
        help_text="Permutation importance on the family's metric, with its interval over repeats, sorted desc.",
    )
    permutation = serializers.JSONField(
        allow_null=True, help_text='{"metric", "direction", "baseline", "repeats"}'
    )
    attribution = serializers.JSONField(
        allow_null=True, help_text='{"mean_abs": [{"feature", "mean_abs", "share"}]}'
    )
    dependence = serializers.JSONField(
        allow_null=True, help_text="Partial dependence and ICE of the top features."
    )
    family_view = serializers.JSONField(allow_null=True, help_text="The family's own figures' data.")
    notes = serializers.ListField(child=serializers.CharField())

    def get_fields(self):
        # "global" is a Python keyword: the field is declared as global_ and named here.
        fields = super().get_fields()
        fields["global"] = fields.pop("global_")
        return fields
