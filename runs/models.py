from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils import timezone

from mlworkspace.fields import JSONField
from recipes.access import client_scope

from . import tracking
from .metrics import check_breaches, primary_check


class RunType(models.TextChoices):
    TRAIN = "train", "Train"
    EVAL = "eval", "Evaluate"
    BACKTEST = "backtest", "Backtest"
    SCORE = "score", "Score"
    # A hyperparameter study (the training stage's tuning section, runs/tuning.py) and one
    # trial of it: a child run (Run.parent) its tune run creates, never started on its own.
    TUNE = "tune", "Tune"
    TRIAL = "trial", "Trial"


# Run types that use a registered model's trained artifact (a model_id whose model has one,
# on the run's recipe): eval measures it on labelled data, score predicts a batch with it.
MODEL_ARTIFACT_RUN_TYPES = (RunType.EVAL, RunType.SCORE)


# The run types a person or a client may start: a trial is only ever a tune run's child.
STARTABLE_RUN_TYPES = [(value, label) for value, label in RunType.choices if value != RunType.TRIAL]


class RunStatus(models.TextChoices):
    QUEUED = "queued", "Queued"
    RUNNING = "running", "Running"
    SUCCEEDED = "succeeded", "Succeeded"
    FAILED = "failed", "Failed"
    CANCELLED = "cancelled", "Cancelled"


class RunOutcome(models.TextChoices):
    """What a succeeded run's metrics say against the manifest's thresholds
    (runs.metrics.check_outcome); blank when nothing was checked."""

    OK = "ok", "OK"
    WARNING = "warning", "Warning"
    CRITICAL = "critical", "Critical"


class Executor(models.TextChoices):
    WORKSPACE = "workspace", "Workspace worker"
    EXTERNAL = "external", "External runner"


TERMINAL_STATUSES = {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED}
# Status moves an external runner may report through PUT.
EXTERNAL_TRANSITIONS = {
    RunStatus.QUEUED: {RunStatus.RUNNING, RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED},
    RunStatus.RUNNING: {RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED},
}


# A stage counts as done once it finished its work or had none to do (an eval run skips
# training, a backtest skips training and deployment).
DONE_STAGE_STATUSES = {"succeeded", "skipped"}


def stages_done(stages: list[dict]) -> int:
    return sum(1 for s in stages or [] if isinstance(s, dict) and s.get("status") in DONE_STAGE_STATUSES)


class DatasetQuerySet(models.QuerySet):
    def visible_to(self, user):
        # Its own client (set from a client recipe or a client_id at upload) and its recipe's.
        return self.filter(client_scope(user, "client"), client_scope(user, "recipe__client"))


class DatasetStatus(models.TextChoices):
    """A large upload is profiled by a worker task (runs.services.dataset_profile): it is
    `processing` until then, `invalid` (with `error`) if its file turned out unreadable."""

    PROCESSING = "processing", "Processing"
    READY = "ready", "Ready"
    INVALID = "invalid", "Invalid"


class DatasetPurpose(models.TextChoices):
    """What a dataset was uploaded for. A `scoring` dataset (it needs a recipe) is that recipe's
    scoring input: its batch-mode production model scores it on schedule
    (monitoring.services.scoring_next_batch); any other dataset is only used when asked for."""

    TRAINING = "training", "Training"
    SCORING = "scoring", "Scoring input"


class Dataset(models.Model):
    """An uploaded CSV/Parquet file, profiled and checked against a recipe's requirements."""

    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    file = models.FileField(upload_to="datasets/", max_length=300)
    format = models.CharField(max_length=16, choices=[("csv", "CSV"), ("parquet", "Parquet")])
    size_bytes = models.BigIntegerField(default=0)
    sha256 = models.CharField(max_length=64)
    row_count = models.BigIntegerField(default=0)
    columns_json = JSONField(default=list)
    recipe = models.ForeignKey(
        "recipes.Recipe", null=True, blank=True, on_delete=models.SET_NULL, related_name="datasets"
    )
    # The client the data belongs to (recipes.access): null for firm data.
    client = models.ForeignKey(
        "recipes.Client", null=True, blank=True, on_delete=models.PROTECT, related_name="datasets"
    )
    validation_json = JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=DatasetStatus.choices, default=DatasetStatus.READY)
    # Why the dataset is invalid (its file could not be read or profiled), in words.
    error = models.TextField(blank=True, default="")
    purpose = models.CharField(max_length=16, choices=DatasetPurpose.choices, default=DatasetPurpose.TRAINING)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    objects = DatasetQuerySet.as_manager()

    class Meta:
        db_table = "ml_dataset"
        ordering = ["-created_at", "id"]
        indexes = [models.Index(fields=["created_at", "id"], name="ml_dataset_created_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DatasetStatus.values), name="ml_dataset_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(purpose__in=DatasetPurpose.values), name="ml_dataset_purpose_valid"
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def is_ready(self) -> bool:
        return self.status == DatasetStatus.READY


# A row of the API's run list: the fields runs.serializers.RunSerializer shows, in order (its
# Meta.fields are this tuple). The one list, kept here and not in the serializer because
# RunQuerySet.for_list_rows derives its columns from it and models may not import serializers
# (an import-linter contract). A field reads the Run column of its name (a foreign key by its
# `_id`) unless LIST_ROW_READS says what it reads: a property or a related value. A field added
# here that is neither fails the list's query (Run has no such field), and a column missing
# from its reads costs one query per row: runs/tests/test_list_speed.py fails either way.
LIST_ROW = (
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
)
LIST_ROW_READS = {
    "name": ("recipe__name", "run_type", "number"),  # Run.name
    "version": ("recipe_version__version",),
    "breaches": ("metric_checks_json",),  # Run.breaches
    "progress": ("current_stage", "stages_json"),  # Run.progress
    "duration_seconds": ("started_at", "finished_at"),  # Run.duration_seconds
}
LIST_ROW_FIELDS = tuple(
    dict.fromkeys(column for field in LIST_ROW for column in LIST_ROW_READS.get(field, (field,)))
)


class RunQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(client_scope(user, "recipe__client"))

    def for_list(self):
        # Lists show the version number, never the manifest: do not fetch 50 manifests.
        return self.select_related("recipe", "recipe_version", "model", "dataset").defer(
            "recipe_version__manifest", "model__metrics_json", "model__artifacts_json", "plots_json"
        )

    def for_list_rows(self):
        """The API's run list (runs.list_rows): only what a row shows. A row names the model
        and the dataset by id, so the list joins neither; of the recipe and the version it
        reads the name and the number (bench/README.md §1: fetching a page took half the time
        of for_list's four joins and every column)."""
        return self.select_related("recipe", "recipe_version").only(*LIST_ROW_FIELDS)


class Run(models.Model):
    """A train/eval/backtest run. The row is the source of truth for its state: the task
    backend has no cancel or crash recovery, so status, heartbeat and cancel flag live here."""

    id = models.CharField(primary_key=True, max_length=64)
    recipe = models.ForeignKey("recipes.Recipe", on_delete=models.PROTECT, related_name="runs")
    recipe_version = models.ForeignKey("recipes.RecipeVersion", on_delete=models.PROTECT, related_name="runs")
    model = models.ForeignKey(
        "models_registry.MLModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="runs"
    )
    # 1, 2, 3… per recipe, allocated by services.run_start: the readable name's "#n".
    number = models.PositiveIntegerField()
    run_type = models.CharField(max_length=16, choices=RunType.choices, default=RunType.TRAIN)
    status = models.CharField(max_length=16, choices=RunStatus.choices, default=RunStatus.QUEUED)
    # The worst metric check (stored with metric_checks_json, so lists filter on it).
    outcome = models.CharField(max_length=16, choices=RunOutcome.choices, blank=True, default="")
    executor = models.CharField(max_length=16, choices=Executor.choices, default=Executor.WORKSPACE)
    dataset = models.ForeignKey(Dataset, null=True, blank=True, on_delete=models.PROTECT, related_name="runs")
    params_json = JSONField(default=dict, blank=True)
    metrics_json = JSONField(default=dict, blank=True)
    # Per metric: {"value", "target", "threshold_warning", "threshold_critical", "direction",
    # "status": pass|warning|critical, "meets_target"}.
    metric_checks_json = JSONField(default=dict, blank=True)
    artifacts_json = JSONField(default=dict, blank=True)
    # Family plot data for the run page (forecast vs actual, demand curve, Qini, ranks).
    plots_json = JSONField(default=dict, blank=True)
    # Stage progress: [{"name", "type", "status", "started_at", "finished_at"}].
    stages_json = JSONField(default=list, blank=True)
    current_stage = models.CharField(max_length=100, blank=True, default="")
    error = models.TextField(blank=True, default="")
    cancel_requested = models.BooleanField(default=False)
    worker = models.CharField(max_length=200, blank=True, default="")
    heartbeat_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    retry_of = models.ForeignKey("self", null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    # A child run: a trial of a tune run, a nested run of an MLflow script.
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.CASCADE, related_name="children"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RunQuerySet.as_manager()

    class Meta:
        db_table = "ml_run"
        ordering = ["-created_at", "-id"]
        indexes = [
            # Run list, newest first, and ?recipe_id= / ?model_id= / ?status= / ?run_type=.
            models.Index(fields=["created_at", "id"], name="ml_run_created_idx"),
            models.Index(fields=["recipe", "created_at"], name="ml_run_recipe_idx"),
            models.Index(fields=["model", "created_at"], name="ml_run_model_idx"),
            models.Index(fields=["status", "created_at"], name="ml_run_status_idx"),
            models.Index(fields=["run_type", "created_at"], name="ml_run_type_idx"),
            # ?outcome=critical: the runs whose metrics breached a threshold.
            models.Index(fields=["outcome", "created_at"], name="ml_run_outcome_idx"),
            # The reaper: running runs with an old heartbeat.
            models.Index(fields=["status", "heartbeat_at"], name="ml_run_heartbeat_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="ml_run_status_valid"),
            models.CheckConstraint(condition=Q(run_type__in=RunType.values), name="ml_run_type_valid"),
            models.CheckConstraint(condition=Q(executor__in=Executor.values), name="ml_run_executor_valid"),
            models.CheckConstraint(
                condition=Q(outcome__in=[*RunOutcome.values, ""]), name="ml_run_outcome_valid"
            ),
            # Also the index behind "the next number of this recipe" (max(number) per recipe).
            models.UniqueConstraint(fields=["recipe", "number"], name="ml_run_recipe_number_unique"),
        ]

    def __str__(self):
        return self.id

    @property
    def is_terminal(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def duration_seconds(self) -> float | None:
        if not self.started_at:
            return None
        end = self.finished_at or timezone.now()
        return (end - self.started_at).total_seconds()

    @property
    def name(self) -> str:
        """How pages, messages and logs refer to a run: "Pricing baseline · train · #3"."""
        return f"{self.recipe.name} · {self.run_type} · #{self.number}"

    @property
    def progress(self) -> dict:
        return {
            "current_stage": self.current_stage,
            "done": stages_done(self.stages_json),
            "total": len(self.stages_json),
        }

    @property
    def display_outcome(self) -> str:
        """The outcome worth showing next to the status: a succeeded run whose metrics
        breached a warning or critical threshold ("" otherwise)."""
        if self.status == RunStatus.SUCCEEDED and self.outcome in (RunOutcome.WARNING, RunOutcome.CRITICAL):
            return self.outcome
        return ""

    @property
    def primary_metric(self) -> dict | None:
        """The recipe's primary metric of this run with its check (runs.metrics.primary_check)."""
        found = primary_check(self.recipe.model_family, self.metric_checks_json)
        if found is None:
            return None
        name, check = found
        return {"name": name, "value": check.get("value"), "status": check.get("status")}

    @property
    def breaches(self) -> list[dict]:
        return check_breaches(self.metric_checks_json)


class RunLog(models.Model):
    """One log line of a run; `seq` is per run and strictly increasing (?after=<seq>)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="logs")
    seq = models.PositiveIntegerField()
    ts = models.DateTimeField(default=timezone.now)
    level = models.CharField(max_length=10, default="info")
    message = models.TextField()

    class Meta:
        db_table = "ml_run_log"
        ordering = ["run_id", "seq"]
        constraints = [models.UniqueConstraint(fields=["run", "seq"], name="ml_run_log_seq_unique")]

    def __str__(self):
        return f"{self.run_id}#{self.seq}"


# ----------------------------------------------------------------------------- tracking
# A run's params, metrics and tags as narrow key/value rows, so runs can be filtered and
# ordered by any of them on SQLite and PostgreSQL (issue #15; bench/README.md §8 measured
# the choice). Written only by runs.services.tracking; the run's metrics_json / params_json
# stay the run's own record (what the pipeline or the reporter said), these rows index it.


class RunParam(models.Model):
    """One param of a run, as text (MLflow's params are strings) and, when the text is a
    number, also as one (`params.max_depth > 4` and ordering compare numbers, not text).
    Params are immutable: logging another value for a key is refused."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="param_rows")
    key = models.CharField(max_length=tracking.KEY_LENGTH)
    value = models.TextField()
    value_num = models.FloatField(null=True, blank=True)

    class Meta:
        db_table = "ml_run_param"
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="ml_run_param_unique")]
        # Filter-only searches (`params.max_depth = 6` with no metric order) walk this index;
        # text values are compared on the (run, key) row.
        indexes = [models.Index(fields=["key", "value_num"], name="ml_run_param_num_idx")]

    def __str__(self):
        return f"{self.run_id}:{self.key}={self.value[:40]}"


class RunTag(models.Model):
    """One tag of a run (free text; setting a tag again replaces its value)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="tag_rows")
    key = models.CharField(max_length=tracking.KEY_LENGTH)
    value = models.TextField(blank=True, default="")

    class Meta:
        db_table = "ml_run_tag"
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="ml_run_tag_unique")]

    def __str__(self):
        return f"{self.run_id}:{self.key}"


class RunMetric(models.Model):
    """A run's latest value of one metric (the one a search filters and orders by): the value
    logged at the highest step, the latest timestamp breaking ties, as MLflow keeps it. NaN is
    stored as null with `is_nan` (SQLite has no NaN)."""

    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_rows")
    key = models.CharField(max_length=tracking.KEY_LENGTH)
    value = models.FloatField(null=True, blank=True)
    is_nan = models.BooleanField(default=False)
    step = models.BigIntegerField(default=0)
    timestamp = models.BigIntegerField()  # milliseconds since the epoch, as MLflow's

    class Meta:
        db_table = "ml_run_metric"
        constraints = [models.UniqueConstraint(fields=["run", "key"], name="ml_run_metric_unique")]
        # `order_by=metrics.MAPE` walks this index in order; `metrics.MAPE < 0.15` is a range.
        indexes = [models.Index(fields=["key", "value", "run"], name="ml_run_metric_value_idx")]

    def __str__(self):
        return f"{self.run_id}:{self.key}={self.value}"


class MetricPoint(models.Model):
    """One logged value of a metric at a step (a training curve, a fold of a backtest): the
    metric's history. Steps may repeat (MLflow allows it); the history is read in
    (step, timestamp) order."""

    id = models.BigAutoField(primary_key=True)
    run = models.ForeignKey(Run, on_delete=models.CASCADE, related_name="metric_points")
    key = models.CharField(max_length=tracking.KEY_LENGTH)
    value = models.FloatField(null=True, blank=True)
    is_nan = models.BooleanField(default=False)
    step = models.BigIntegerField(default=0)
    timestamp = models.BigIntegerField()

    class Meta:
        db_table = "ml_metric_point"
        indexes = [models.Index(fields=["run", "key", "step", "timestamp"], name="ml_metric_point_idx")]

    def __str__(self):
        return f"{self.run_id}:{self.key}@{self.step}"
