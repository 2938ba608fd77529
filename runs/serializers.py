from datetime import datetime
from operator import attrgetter

from django.conf import settings
from django.core.exceptions import ObjectDoesNotExist
from django.utils import timezone
from rest_framework import ISO_8601, serializers
from rest_framework.settings import api_settings

from recipes.serializers import StrictSerializer

from . import tracking
from .models import (
    LIST_ROW,
    STARTABLE_RUN_TYPES,
    Dataset,
    DatasetPurpose,
    Executor,
    Run,
    RunLog,
    RunStatus,
    RunType,
)


class BreachSerializer(serializers.Serializer):
    """A metric past its warning or critical threshold."""

    metric = serializers.CharField()
    value = serializers.FloatField(allow_null=True)
    status = serializers.ChoiceField(choices=["warning", "critical"])
    threshold = serializers.FloatField(allow_null=True)
    direction = serializers.CharField(allow_null=True)


# The results an external run may be created with, and the statuses it may start in (a run
# created cancelled was never a run).
EXTERNAL_RESULTS = ("status", "metrics_json", "tags")
EXTERNAL_START_STATUSES = [RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED]


def numeric_metrics(value: dict) -> dict:
    """A reported metrics_json (at creation or with PUT): every value a number."""
    bad = [k for k, v in value.items() if isinstance(v, bool) or not isinstance(v, (int, float))]
    if bad:
        raise serializers.ValidationError(f"metric '{bad[0]}' must be a number")
    return value


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
        # runs.models.LIST_ROW: the list's columns (RunQuerySet.for_list_rows) derive from it.
        fields = list(LIST_ROW)

    def to_representation(self, instance):
        """DRF's output, field for field, without its per-field overhead: a list page of 100
        runs spent more time in DRF's attribute lookups and timezone handling than in its
        queries (bench/README.md §8). The plan (a getter and a converter per field) is built
        once per serializer instance from the declared fields;
        runs/tests/test_api_search.py checks the output equals DRF's."""
        plan = self.__dict__.get("_fast_plan")
        if plan is None:
            plan = self._fast_plan = _representation_plan(self)
        out = {}
        for name, get, convert, field in plan:
            try:
                value = get(instance)
            except (AttributeError, ObjectDoesNotExist):
                value = field.get_attribute(instance)
            if callable(value):  # a method as the source: DRF calls it
                value = field.get_attribute(instance)
            out[name] = None if value is None else convert(value)
        return out


def _representation_plan(serializer) -> list[tuple]:
    """(name, getter, converter, field) per readable field: DRF's `to_representation`, with
    datetimes formatted as DRF's ISO 8601 (in the current timezone, "+00:00" as "Z") without
    its per-value timezone lookups. Fields with a non-default format keep DRF's."""
    tz = timezone.get_current_timezone()

    def iso(drf_convert):
        def convert(value):
            if not isinstance(value, datetime) or value.tzinfo is None:
                return drf_convert(value)
            text = value.astimezone(tz).isoformat()
            return text[:-6] + "Z" if text.endswith("+00:00") else text

        return convert

    plan = []
    for field in serializer._readable_fields:
        getter = attrgetter(".".join(field.source_attrs)) if field.source != "*" else (lambda obj: obj)
        convert = field.to_representation
        if (
            isinstance(field, serializers.DateTimeField)
            and getattr(field, "format", api_settings.DATETIME_FORMAT) == ISO_8601
            and getattr(field, "timezone", None) is None
            and settings.USE_TZ
        ):
            convert = iso(field.to_representation)
        plan.append((field.field_name, getter, convert, field))
    return plan


class RunDetailSerializer(RunSerializer):
    class Meta(RunSerializer.Meta):
        fields = [*RunSerializer.Meta.fields, "plots_json"]


class RunCreateSerializer(StrictSerializer):
    recipe_id = serializers.CharField()
    recipe_version_id = serializers.CharField(
        required=False, help_text="Defaults to the recipe's current version."
    )
    run_type = serializers.ChoiceField(choices=STARTABLE_RUN_TYPES, default=RunType.TRAIN)
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
            "resolved world and window are recorded in params_json.synthetic. An external run's "
            "params are searchable (`filter=params.<key> ...`; nested objects as dotted keys)."
        ),
    )
    # An external run's results, given at creation (one call instead of POST + PUT).
    status = serializers.ChoiceField(
        choices=EXTERNAL_START_STATUSES,
        required=False,
        help_text='External runs only: the run\'s status from the start (default "queued"); '
        '"succeeded" or "failed" report a finished run in one call.',
    )
    metrics_json = serializers.DictField(
        required=False,
        help_text="External runs only: the final metrics (numbers), checked against the version's "
        "thresholds as PUT /runs/{id} checks them.",
    )
    tags = serializers.DictField(
        required=False,
        help_text='External runs only: searchable tags, string to string (`filter=tags.team = "eu"`).',
    )

    def validate_metrics_json(self, value):
        return numeric_metrics(value)

    def validate_tags(self, value):
        """Each tag checked by the tracking store's rules (runs.tracking), the error naming
        its key (``/tags/<key>``)."""
        if len(value) > tracking.MAX_BATCH_TAGS:
            raise serializers.ValidationError(f"at most {tracking.MAX_BATCH_TAGS} tags")
        errors = {}
        for key, text in value.items():
            try:
                tracking.check_key(key, key)
                tracking.tag_text(text, key)
            except tracking.TrackingError as error:
                errors[key] = error.message
        if errors:
            raise serializers.ValidationError(errors)
        return value

    def validate(self, attrs):
        if attrs.get("executor") != Executor.EXTERNAL:
            given = {
                name: 'only an external run ("executor": "external") is created with its results; '
                "the workspace's workers report their own runs"
                for name in EXTERNAL_RESULTS
                if name in attrs
            }
            if given:
                raise serializers.ValidationError(given)
        return attrs


# The most runs one POST /runs/batch reports (one transaction: SQLite's writer lock is held
# while they are written).
MAX_BATCH_RUNS = 100


class RunBatchSerializer(StrictSerializer):
    runs = RunCreateSerializer(
        many=True,
        allow_empty=False,
        max_length=MAX_BATCH_RUNS,
        help_text="Each item as POST /runs takes an external run; its `executor` may be left out.",
    )

    def to_internal_value(self, data):
        # A batch reports external runs: an item that does not name its executor is one.
        if isinstance(data, dict) and isinstance(data.get("runs"), list):
            items = [{"executor": Executor.EXTERNAL, **i} if isinstance(i, dict) else i for i in data["runs"]]
            data = {**data, "runs": items}
        return super().to_internal_value(data)

    def validate_runs(self, runs):
        errors = [
            {} if r["executor"] == Executor.EXTERNAL else {"executor": "a batch reports external runs"}
            for r in runs
        ]
        if any(errors):
            raise serializers.ValidationError(errors)
        return runs


class RunBatchResultSerializer(serializers.Serializer):
    runs = RunDetailSerializer(many=True, help_text="The runs created, in the order given.")


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
        return numeric_metrics(value)

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


# ----------------------------------------------------------------------------- metric history
# Output only (issue #15 §2): GET /runs/{id}/metrics and /runs/{id}/metrics/{key}/history.


class MetricPointSerializer(serializers.Serializer):
    step = serializers.IntegerField()
    value = serializers.FloatField(
        allow_null=True, help_text="null for NaN and ±infinity (JSON has neither)."
    )
    timestamp = serializers.IntegerField(help_text="Milliseconds since the epoch.")


class MetricHistorySerializer(serializers.Serializer):
    run_id = serializers.CharField()
    key = serializers.CharField()
    points = MetricPointSerializer(
        many=True, help_text="In (step, timestamp) order; at most `max_points` of them."
    )
    total = serializers.IntegerField(help_text="How many points the metric has in all.")
    downsampled = serializers.BooleanField(
        help_text="true when `points` is a subset: the first, the last and each bucket's minimum and "
        "maximum (`?format=csv` downloads them all)."
    )


class RunMetricKeySerializer(serializers.Serializer):
    key = serializers.CharField()
    value = serializers.FloatField(
        allow_null=True,
        help_text="The latest value (highest step, then latest timestamp); null for NaN/±inf.",
    )
    is_nan = serializers.BooleanField()
    step = serializers.IntegerField(help_text="The latest value's step.")
    timestamp = serializers.IntegerField(help_text="The latest value's time, milliseconds since the epoch.")
    points = serializers.IntegerField(help_text="How many points the metric's history has.")


class RunMetricsSerializer(serializers.Serializer):
    run_id = serializers.CharField()
    metrics = RunMetricKeySerializer(many=True)
