from rest_framework import serializers

from recipes.serializers import StrictSerializer

from .models import Alert


class SnapshotCreateSerializer(StrictSerializer):
    captured_at = serializers.DateTimeField(required=False)
    performance_metrics_json = serializers.DictField(required=False, default=dict)
    drift_metrics_json = serializers.DictField(required=False, default=dict)
    data_freshness_json = serializers.DictField(required=False, default=dict)
    alerts_json = serializers.DictField(required=False, default=dict)

    def validate_performance_metrics_json(self, value):
        bad = [
            k
            for k, v in value.items()
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)))
        ]
        if bad:
            raise serializers.ValidationError(f"metric '{bad[0]}' must be a number")
        return value


class SnapshotQuerySerializer(serializers.Serializer):
    since = serializers.DateTimeField(required=False)
    until = serializers.DateTimeField(required=False)
    limit = serializers.IntegerField(required=False, min_value=1, max_value=50_000, default=10_000)


class CheckSyntheticSerializer(StrictSerializer):
    """A synthetic batch from the model's world (runs.families.worlds): by default the next
    window after the last batch checked (the first time, after the training data), with the
    training seed. ``seed`` picks another world; ``start``/``periods`` another window."""

    rows = serializers.IntegerField(
        min_value=50, max_value=2_000_000, required=False, help_text="About this many rows (default 5000)."
    )
    seed = serializers.IntegerField(
        min_value=0, required=False, help_text="The world (default: the one the model was trained in)."
    )
    start = serializers.DateField(
        required=False, help_text="First day of the window (default: right after the last batch)."
    )
    periods = serializers.IntegerField(
        min_value=1, max_value=5000, required=False, help_text="Length of the window in the family's periods."
    )
    concept = serializers.CharField(
        required=False,
        allow_blank=True,
        help_text="A named change of the ground truth (concept drift), e.g. less_price_sensitive.",
    )
    shift = serializers.DictField(
        child=serializers.FloatField(),
        required=False,
        default=dict,
        help_text="Covariate drift: feature -> k (numeric: k standard deviations; categorical: top category k×).",
    )

    def validate(self, attrs):
        if attrs.get("start") is not None:
            attrs["start"] = attrs["start"].isoformat()
        return {k: v for k, v in attrs.items() if v not in (None, "")}


class CheckSerializer(StrictSerializer):
    dataset_id = serializers.CharField(required=False)
    synthetic = CheckSyntheticSerializer(required=False)

    def validate(self, attrs):
        if ("dataset_id" in attrs) == ("synthetic" in attrs):
            raise serializers.ValidationError({"dataset_id": ["give exactly one of dataset_id or synthetic"]})
        return attrs


class AlertSerializer(serializers.ModelSerializer):
    model_id = serializers.CharField(read_only=True)

    class Meta:
        model = Alert
        fields = [
            "id",
            "model_id",
            "name",
            "severity",
            "condition",
            "state",
            "fired_at",
            "resolved_at",
            "last_values_json",
        ]
