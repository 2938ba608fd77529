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
    rows = serializers.IntegerField(min_value=50, max_value=2_000_000, default=5000)
    seed = serializers.IntegerField(min_value=0, default=0)
    shift = serializers.DictField(child=serializers.FloatField(), required=False, default=dict)


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
