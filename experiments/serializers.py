from rest_framework import serializers

from recipes.serializers import StrictSerializer

from .models import Experiment, ExperimentMode, Winner


class ExperimentCreateSerializer(StrictSerializer):
    """Types only; the rules (ranges, the champion and challenger, the horizon) are the
    service's (experiments.services.experiment_start), shared with the page."""

    recipe_id = serializers.CharField()
    champion_id = serializers.CharField()
    challenger_id = serializers.CharField()
    mode = serializers.ChoiceField(choices=ExperimentMode.choices)
    split = serializers.FloatField(
        required=False, allow_null=True, help_text="The challenger's share of units (ab)."
    )
    unit_key = serializers.CharField(
        max_length=100, help_text="The request field naming a unit, e.g. customer_id."
    )
    horizon = serializers.IntegerField(
        required=False, allow_null=True, help_text="Units with an outcome per arm, planned up front."
    )
    baseline_rate = serializers.FloatField(
        required=False, allow_null=True, help_text="0/1 outcomes: the champion's rate, to plan the horizon."
    )
    baseline_sd = serializers.FloatField(
        required=False,
        allow_null=True,
        help_text="Numeric outcomes: their standard deviation, to plan the horizon.",
    )
    mde = serializers.FloatField(
        required=False, allow_null=True, help_text="The smallest difference worth detecting (absolute)."
    )
    alpha = serializers.FloatField(required=False, default=0.05)
    metric = serializers.CharField(required=False, default="outcome", max_length=100)


class ExperimentSerializer(serializers.ModelSerializer):
    recipe_id = serializers.CharField(read_only=True)
    recipe_name = serializers.CharField(source="recipe.name", read_only=True)
    champion_id = serializers.CharField(read_only=True)
    champion_name = serializers.CharField(source="champion.name", read_only=True)
    challenger_id = serializers.CharField(read_only=True)
    challenger_name = serializers.CharField(source="challenger.name", read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    # Text, not an enum, in the schema: another "status" enum would collide with the ones named
    # in settings.SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"].
    status = serializers.CharField(read_only=True, help_text="running | stopped")

    class Meta:
        model = Experiment
        fields = [
            "id",
            "recipe_id",
            "recipe_name",
            "champion_id",
            "champion_name",
            "challenger_id",
            "challenger_name",
            "mode",
            "split",
            "unit_key",
            "metric",
            "horizon",
            "horizon_json",
            "alpha",
            "status",
            "winner",
            "started_at",
            "stopped_at",
            "created_by",
        ]


class ExperimentDetailSerializer(ExperimentSerializer):
    statistics = serializers.SerializerMethodField()
    result_json = serializers.JSONField(read_only=True, help_text="The statistics when it was stopped.")

    class Meta(ExperimentSerializer.Meta):
        fields = [*ExperimentSerializer.Meta.fields, "statistics", "result_json"]

    def get_statistics(self, obj) -> dict:
        return self.context["statistics"]


class ExperimentOutcomesSerializer(serializers.Serializer):
    """For the schema: the service validates each item (naming /outcomes/<i>/value etc.)."""

    outcomes = serializers.ListField(
        child=serializers.DictField(), help_text='[{"unit": "c1", "value": 1.0}]'
    )


class ExperimentOutcomesResultSerializer(serializers.Serializer):
    experiment_id = serializers.CharField()
    received = serializers.IntegerField()
    recorded = serializers.IntegerField()
    replaced = serializers.IntegerField(help_text="Units that had an outcome already (last write wins).")
    duplicates = serializers.IntegerField(help_text="Repeated units in this request (the last value counts).")
    unknown_units = serializers.IntegerField(help_text="Units the experiment never exposed: not recorded.")
    unknown_examples = serializers.ListField(child=serializers.CharField())


class StopSerializer(StrictSerializer):
    winner = serializers.ChoiceField(choices=Winner.choices)
