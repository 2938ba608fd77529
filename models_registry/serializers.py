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


class PredictSerializer(StrictSerializer):
    rows = RowsField()
