from rest_framework import serializers

from recipes.serializers import StrictSerializer

from .models import Alert, Comparison, Retrain, ScoringBatch
from .selectors import batch_status


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


class ScoringBatchSerializer(serializers.ModelSerializer):
    """A scoring batch as GET /models/{id}/batches lists it."""

    model_id = serializers.CharField(read_only=True)
    run_id = serializers.CharField(read_only=True)
    run_status = serializers.CharField(source="run.status", read_only=True)
    snapshot_id = serializers.CharField(read_only=True, allow_null=True)
    rows = serializers.SerializerMethodField()
    status = serializers.SerializerMethodField()

    class Meta:
        model = ScoringBatch
        fields = [
            "id",
            "model_id",
            "run_id",
            "run_status",
            "window_key",
            "batch_json",
            "scheduled_for",
            "rows",
            "status",
            "check_attempts",
            "check_error",
            "snapshot_id",
            "performance_json",
            "outcome_rows",
            "unmatched_rows",
            "outcomes_at",
            "created_at",
        ]

    def get_status(self, batch) -> str:
        """The run's status until it succeeded, then scored / checking / checked / check
        failed (retried) / check gave up (monitoring.selectors.batch_status)."""
        return batch_status(batch)

    def get_rows(self, batch) -> int | None:
        """Rows scored (null until the score run succeeded)."""
        return ((batch.run.artifacts_json or {}).get("scoring") or {}).get("rows")


class PredictionsQuerySerializer(StrictSerializer):
    batch = serializers.CharField(
        required=False, help_text="A scoring batch id (default: the newest scored)."
    )
    window = serializers.CharField(
        required=False, help_text="A batch's window key instead, e.g. synthetic:2025-01-06:4 or dataset:<id>."
    )
    format = serializers.ChoiceField(choices=["csv", "parquet"], default="csv")


class OutcomesSerializer(StrictSerializer):
    batch_id = serializers.CharField(required=False, help_text="Default: the newest scored batch.")
    rows = serializers.ListField(
        child=serializers.DictField(),
        allow_empty=False,
        help_text="One object per scored row: the recipe's grain keys and its label column(s).",
    )


class OutcomesResultSerializer(serializers.Serializer):
    batch_id = serializers.CharField()
    model_id = serializers.CharField()
    window_key = serializers.CharField()
    outcome_rows = serializers.IntegerField(help_text="Posted rows that matched a prediction.")
    unmatched_rows = serializers.IntegerField(help_text="Posted rows whose keys the batch did not score.")
    unmatched_keys = serializers.ListField(child=serializers.DictField(), help_text="The first few of those.")
    performance = serializers.DictField(child=serializers.FloatField())
    outcomes_at = serializers.DateTimeField()
    snapshot_id = serializers.CharField(
        help_text="The snapshot (source 'outcomes') that recorded the performance."
    )
    alerts_firing = serializers.ListField(
        child=serializers.CharField(), help_text="The manifest's alert rules firing on that performance."
    )


class RetrainSerializer(serializers.ModelSerializer):
    """A retrain of a recipe's production model: its trigger, a skip's reason, or the
    challenger, its train run, the comparison on the held-out window and the decision."""

    champion_id = serializers.CharField(read_only=True)
    challenger_id = serializers.CharField(read_only=True, allow_null=True)
    run_id = serializers.CharField(read_only=True, allow_null=True)
    recipe_id = serializers.CharField(read_only=True)
    decision_label = serializers.CharField(
        read_only=True, help_text="The decision in words; a review says what the person did once they did."
    )

    class Meta:
        model = Retrain
        fields = [
            "id",
            "recipe_id",
            "champion_id",
            "trigger",
            "trigger_json",
            "status",
            "skip_code",
            "reason",
            "challenger_id",
            "run_id",
            "window_json",
            "decision",
            "decision_label",
            "comparison_json",
            "created_at",
            "decided_at",
        ]
        read_only_fields = fields


class CompareSerializer(StrictSerializer):
    """POST /models/{id}/compare: the challenger(s) and, optionally, the window."""

    challenger_id = serializers.CharField(required=False, help_text="One model of the same recipe.")
    challenger_ids = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        allow_empty=False,
        max_length=4,
        help_text="Or several.",
    )
    dataset_id = serializers.CharField(required=False, help_text="A labelled dataset to compare on.")
    synthetic = serializers.DictField(
        required=False, help_text='A window of the reference\'s synthetic world, e.g. {"rows": 5000}.'
    )

    def validate(self, attrs):
        if not attrs.get("challenger_id") and not attrs.get("challenger_ids"):
            raise serializers.ValidationError({"challenger_id": "name the model to compare with"})
        if attrs.get("dataset_id") and attrs.get("synthetic") is not None:
            raise serializers.ValidationError(
                {"synthetic": "give a dataset_id or a synthetic window, not both"}
            )
        return attrs


class ComparisonSerializer(serializers.ModelSerializer):
    """A stored comparison: the models (the reference first), the window, every metric with
    its interval, the differences from the reference, each model's drift and the verdicts."""

    recipe_id = serializers.CharField(read_only=True)
    reference_id = serializers.CharField(read_only=True)
    retrain_id = serializers.CharField(read_only=True, allow_null=True)
    model_ids = serializers.ListField(source="model_ids_json", child=serializers.CharField(), read_only=True)

    class Meta:
        model = Comparison
        fields = [
            "id",
            "recipe_id",
            "reference_id",
            "model_ids",
            "window_json",
            "result_json",
            "summary",
            "retrain_id",
            "created_at",
        ]
        read_only_fields = fields
