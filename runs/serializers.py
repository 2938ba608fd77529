from rest_framework import serializers

from recipes.serializers import StrictSerializer

from .models import Dataset, DatasetPurpose, Executor, Run, RunLog, RunStatus, RunType


class BreachSerializer(serializers.Serializer):
    """A metric past its warning or critical threshold."""

    metric = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    status = serializers.ChoiceField(choices=["warning", "critical"])
    threshold = serializers.FloatField(allow_null=True)
    direction = serializers.CharField(allow_null=True)


class RunSerializer(serializers.ModelSerializer):
    recipe_id = serializers.CharField(read_only=True)
    recipe_version_id = serializers.CharField(read_only=True)
    version = serializers.CharField(source="recipe_version.version", read_only=True)
    model_id = serializers.CharField(read_only=True, allow_null=True)
    dataset_id = serializers.CharField(read_only=True, allow_null=True)
    retry_of_id = serializers.CharField(read_only=True, allow_null=True)
    name = serializers.CharField(
        read_only=True, help_text='Readable name: "<recipe> · <run type> · #<number>".'
    )
    progress = serializers.DictField(read_only=True)
    duration_seconds = serializers.FloatField(read_only=True, allow_null=True)
    breaches = BreachSerializer(many=True, read_only=True)

    class Meta:
        model = Run
        fields = [
            "id",
            "name",
            "number",
            "recipe_id",
            "recipe_version_id",
            "version",
            "model_id",
            "run_type",
            "status",
            "outcome",
            "breaches",
            "executor",
            "dataset_id",
            "params_json",
            "metrics_json",
            "metric_checks_json",
            "artifacts_json",
            "stages_json",
            "progress",
            "current_stage",
            "error",
            "cancel_requested",
            "heartbeat_at",
            "started_at",
            "finished_at",
            "duration_seconds",
            "retry_of_id",
            "created_at",
            "updated_at",
        ]


class RunDetailSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "plots_json"]


class RunCreateSerializer(StrictSerializer):
    recipe_id = serializers.CharField()
    recipe_version_id = serializers.CharField(
        required=False, help_text="Defaults to the recipe's current version."
    )
    run_type = serializers.ChoiceField(choices=RunType.choices, default=RunType.TRAIN)
    model_id = serializers.CharField(required=False, allow_null=True)
    dataset_id = serializers.CharField(required=False, allow_null=True)
    executor = serializers.ChoiceField(choices=Executor.choices, default=Executor.WORKSPACE)
    params = serializers.DictField(
        required=False,
        default=dict,
        help_text=(
            'Run parameters. {"synthetic": {"rows", "seed", "start", "periods", "concept"}} picks '
            "the synthetic batch of a run without a dataset: the seed is the world (its entities "
            "and ground truth), start (YYYY-MM-DD) and periods the window (default: a train or "
            "backtest run starts at the world's beginning; an eval or score run takes the window "
            "after its model's training data), concept a named change of the ground truth. The "
            "resolved world and window are recorded in params_json.synthetic."
        ),
    )


class LogLineSerializer(serializers.Serializer):
    level = serializers.ChoiceField(choices=["debug", "info", "warning", "error"], default="info")
    message = serializers.CharField(max_length=10_000)


class RunUpdateSerializer(StrictSerializer):
    status = serializers.ChoiceField(choices=RunStatus.choices, required=False)
    metrics_json = serializers.DictField(required=False)
    artifacts_json = serializers.DictField(required=False)
    logs = serializers.ListField(required=False, max_length=10_000)
    error = serializers.CharField(required=False, allow_blank=True, max_length=10_000)

    def validate_metrics_json(self, value):
        bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
        if bad:
            raise serializers.ValidationError(f"metric '{bad[0]}' must be a number")
        return value

    def validate_logs(self, value):
        lines = []
        for index, item in enumerate(value):
            if isinstance(item, str):
                item = {"message": item}
            line = LogLineSerializer(data=item)
            if not line.is_valid():
                raise serializers.ValidationError({index: line.errors})
            lines.append(line.validated_data)
        return lines


class RunLogSerializer(serializers.ModelSerializer):
    class Meta:
        model = RunLog
        fields = ["seq", "ts", "level", "message"]


class DatasetSerializer(serializers.ModelSerializer):
    client_id = serializers.CharField(read_only=True, allow_null=True)
    recipe_id = serializers.CharField(read_only=True, allow_null=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)

    class Meta:
        model = Dataset
        fields = [
            "id",
            "name",
            "format",
            "size_bytes",
            "sha256",
            "row_count",
            "columns_json",
            "recipe_id",
            "client_id",
            "validation_json",
            "status",
            "error",
            "purpose",
            "created_by",
            "created_at",
        ]


PURPOSE_HELP = (
    '"scoring": the recipe\'s scoring input (its batch-mode production model scores it on '
    'schedule; needs a recipe), "training": any other data'
)


class DatasetUploadSerializer(StrictSerializer):
    file = serializers.FileField()
    name = serializers.CharField(max_length=200, required=False)
    recipe_id = serializers.CharField(required=False, allow_blank=True)
    client_id = serializers.CharField(required=False, allow_blank=True, max_length=64)
    purpose = serializers.ChoiceField(
        choices=DatasetPurpose.choices, default=DatasetPurpose.TRAINING, help_text=PURPOSE_HELP
    )


class DatasetPurposeSerializer(StrictSerializer):
    purpose = serializers.ChoiceField(choices=DatasetPurpose.choices, help_text=PURPOSE_HELP)
