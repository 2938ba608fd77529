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


class PredictSerializer(StrictSerializer):
    rows = serializers.ListField(child=serializers.DictField(), allow_empty=False)
