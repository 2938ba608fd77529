from django.conf import settings
from django.db import models
from django.db.models import Q

from mlworkspace.fields import JSONField
from recipes.access import client_scope


class AlertState(models.TextChoices):
    """An alert episode is open (firing) until its rule stops firing (resolved)."""

    FIRING = "firing", "Firing"
    RESOLVED = "resolved", "Resolved"


class ModelScopedQuerySet(models.QuerySet):
    def visible_to(self, user):
        # A snapshot or alert belongs to its model's recipe's client (recipes.access).
        return self.filter(client_scope(user, "model__recipe__client"))


class MonitorSnapshot(models.Model):
    """One monitoring observation of a model: computed by a check or posted by an external system."""

    SOURCES = [
        ("external", "External"),
        ("check", "Check"),
        ("scheduled", "Scheduled check"),
        ("outcomes", "Outcomes of a scored batch"),
    ]
    # What the series (API and charts) shows of each snapshot.
    SERIES_FIELDS = [
        "id",
        "captured_at",
        "performance_metrics_json",
        "drift_metrics_json",
        "data_freshness_json",
        "alerts_json",
        "source",
        "row_count",
    ]

    id = models.CharField(primary_key=True, max_length=64)
    model = models.ForeignKey("models_registry.MLModel", on_delete=models.CASCADE, related_name="snapshots")
    captured_at = models.DateTimeField()
    performance_metrics_json = JSONField(default=dict, blank=True)
    drift_metrics_json = JSONField(default=dict, blank=True)
    data_freshness_json = JSONField(default=dict, blank=True)
    alerts_json = JSONField(default=dict, blank=True)
    source = models.CharField(max_length=16, choices=SOURCES, default="external")
    dataset = models.ForeignKey(
        "runs.Dataset", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    row_count = models.BigIntegerField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ModelScopedQuerySet.as_manager()

    class Meta:
        db_table = "ml_monitor_snapshot"
        ordering = ["model_id", "captured_at", "id"]
        # GET /models/{id}/monitoring?since=&until= : a range scan, time-ordered.
        indexes = [models.Index(fields=["model", "captured_at"], name="ml_snapshot_model_time_idx")]
        constraints = [
            models.CheckConstraint(
                condition=Q(source__in=["external", "check", "scheduled", "outcomes"]),
                name="ml_snapshot_source_valid",
            )
        ]

    def __str__(self):
        return self.id


class Alert(models.Model):
    """An alert rule's episode: opened when its condition first fires, resolved when it stops.

    The same condition firing on consecutive snapshots keeps one open alert."""

    model = models.ForeignKey("models_registry.MLModel", on_delete=models.CASCADE, related_name="alerts")
    name = models.CharField(max_length=100)
    severity = models.CharField(max_length=16)
    condition = models.TextField()
    state = models.CharField(max_length=16, choices=AlertState.choices)
    fired_at = models.DateTimeField()
    resolved_at = models.DateTimeField(null=True, blank=True)
    last_values_json = JSONField(default=dict, blank=True)
    first_snapshot = models.ForeignKey(
        MonitorSnapshot, null=True, on_delete=models.SET_NULL, related_name="+"
    )
    last_snapshot = models.ForeignKey(MonitorSnapshot, null=True, on_delete=models.SET_NULL, related_name="+")

    objects = ModelScopedQuerySet.as_manager()

    class Meta:
        db_table = "ml_alert"
        ordering = ["-fired_at", "id"]
        indexes = [models.Index(fields=["model", "state"], name="ml_alert_model_state_idx")]
        constraints = [
            # At most one open episode per rule and model.
            models.UniqueConstraint(
                fields=["model", "name"], condition=Q(state=AlertState.FIRING), name="ml_alert_one_open"
            ),
            models.CheckConstraint(condition=Q(state__in=AlertState.values), name="ml_alert_state_valid"),
            models.CheckConstraint(
                condition=Q(state=AlertState.FIRING, resolved_at__isnull=True)
                | Q(state=AlertState.RESOLVED, resolved_at__isnull=False),
                name="ml_alert_resolved_at",
            ),
        ]

    def __str__(self):
        return f"{self.model_id}:{self.name} ({self.state})"


class ScoringBatch(models.Model):
    """One scheduled scoring of a batch-mode production model: the batch (an uploaded dataset
    or a window of the model's synthetic world), the score run that wrote its predictions, the
    monitoring check of that batch (once the run succeeded) and, when labels arrive later
    (POST /models/{id}/outcomes), the performance on the matched rows."""

    id = models.CharField(primary_key=True, max_length=64)
    model = models.ForeignKey(
        "models_registry.MLModel", on_delete=models.CASCADE, related_name="scoring_batches"
    )
    run = models.OneToOneField("runs.Run", on_delete=models.PROTECT, related_name="scoring_batch")
    # What was scored, as a key unique per model: "synthetic:<start>:<periods>" or "dataset:<id>".
    window_key = models.CharField(max_length=200)
    # The resolved synthetic batch (world + window), or {"dataset_id": ...}.
    batch_json = JSONField(default=dict, blank=True)
    scheduled_for = models.DateTimeField()
    # Set by the worker that claimed the batch's check (a conditional update), then the snapshot.
    check_started_at = models.DateTimeField(null=True, blank=True)
    # How many times a worker claimed the check (the same conditional update): the workers
    # stop claiming it after monitoring.selectors.CHECK_MAX_ATTEMPTS.
    check_attempts = models.PositiveSmallIntegerField(default=0)
    # The last failed check's exception ("RuntimeError: ..."), kept after a later success.
    check_error = models.TextField(blank=True, default="")
    snapshot = models.ForeignKey(
        MonitorSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    performance_json = JSONField(default=dict, blank=True)
    # The snapshot the newest outcomes recorded (source "outcomes"): its performance is
    # evaluated against the manifest's alert rules like any check's.
    outcome_snapshot = models.ForeignKey(
        MonitorSnapshot, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    outcome_rows = models.BigIntegerField(null=True, blank=True)
    unmatched_rows = models.BigIntegerField(null=True, blank=True)
    outcomes_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    objects = ModelScopedQuerySet.as_manager()

    class Meta:
        db_table = "ml_scoring_batch"
        ordering = ["model_id", "-scheduled_for", "-id"]
        indexes = [models.Index(fields=["model", "scheduled_for"], name="ml_scoring_model_time_idx")]
        constraints = [
            # Two workers never score the same window of one model twice.
            models.UniqueConstraint(fields=["model", "window_key"], name="ml_scoring_one_per_window"),
        ]

    def __str__(self):
        return self.id


class RetrainTrigger(models.TextChoices):
    """What asked for a retrain (the manifest's retraining.triggers, or a person)."""

    SCHEDULE = "schedule", "Schedule"
    ALERT = "alert", "Alert"
    NEW_ROWS = "min_new_rows", "New rows"
    MANUAL = "manual", "Manual"


class RetrainStatus(models.TextChoices):
    """skipped (refused, with its reason) · training (the challenger's train run is queued or
    running) · failed (the run failed: the champion is untouched) · decided (compared, with
    the decision)."""

    SKIPPED = "skipped", "Skipped"
    TRAINING = "training", "Training"
    FAILED = "failed", "Failed"
    DECIDED = "decided", "Decided"


class RetrainDecision(models.TextChoices):
    PROMOTED = "promoted", "Challenger promoted"
    KEPT = "kept", "Champion kept"
    REVIEW = "review", "Awaiting a person's decision"


class Retrain(models.Model):
    """One retrain request of a recipe's production model (the champion) and what came of it:
    the trigger, a skip with its reason, or the challenger's train run, the comparison of both
    models on the same held-out window and the decision (monitoring.services.retraining)."""

    id = models.CharField(primary_key=True, max_length=64)
    recipe = models.ForeignKey("recipes.Recipe", on_delete=models.CASCADE, related_name="retrains")
    champion = models.ForeignKey("models_registry.MLModel", on_delete=models.CASCADE, related_name="retrains")
    trigger = models.CharField(max_length=16, choices=RetrainTrigger.choices)
    # The trigger's particulars: {"alert", "snapshot_id"}, {"slot"}, {"new_rows"}.
    trigger_json = JSONField(default=dict, blank=True)
    status = models.CharField(max_length=16, choices=RetrainStatus.choices)
    # Why it was skipped, why it failed, or the decision's reasons: in words.
    reason = models.TextField(blank=True, default="")
    # A skip's kind ("cooldown", "running", "no_new_data", "not_production", "no_data").
    skip_code = models.CharField(max_length=32, blank=True, default="")
    challenger = models.ForeignKey(
        "models_registry.MLModel", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    run = models.OneToOneField(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="retrain"
    )
    # The challenger's training data and the held-out window both models are compared on.
    window_json = JSONField(default=dict, blank=True)
    decision = models.CharField(max_length=16, choices=RetrainDecision.choices, blank=True, default="")
    # {"metric", "direction", "champion": {metrics}, "challenger": {metrics}, "improvement", "critical"}.
    comparison_json = JSONField(default=dict, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()
    decided_at = models.DateTimeField(null=True, blank=True)

    objects = ModelScopedQuerySet.as_manager()

    class Meta:
        db_table = "ml_retrain"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["champion", "created_at"], name="ml_retrain_model_time_idx")]
        constraints = [
            # One retrain of a recipe trains at a time: two alerts, a schedule and a person
            # asking together start one challenger, the others are recorded as skipped.
            models.UniqueConstraint(
                fields=["recipe"], condition=Q(status="training"), name="ml_retrain_one_training"
            ),
            models.CheckConstraint(
                condition=Q(status__in=RetrainStatus.values), name="ml_retrain_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(trigger__in=RetrainTrigger.values), name="ml_retrain_trigger_valid"
            ),
        ]

    def __str__(self):
        return f"{self.id} ({self.status})"

    @property
    def decision_label(self) -> str:
        """The decision in words. A challenger left to a person ("review") says what the
        person did once they did it: promoted it (by hand or by an A/B test's stop), or
        archived it. Needs `challenger` selected."""
        challenger = self.challenger if self.challenger_id else None
        if self.decision != RetrainDecision.REVIEW or challenger is None:
            return self.get_decision_display()
        if challenger.promoted_at is not None:
            return "Challenger promoted by a person"
        if challenger.status == "archived":
            return "Challenger archived by a person"
        return self.get_decision_display()


class Comparison(models.Model):
    """Two or more models of one recipe evaluated on the same labelled window: each manifest
    metric with a paired bootstrap interval over the grain, the differences from the reference
    (the first model: the champion), each model's input drift against its own training data,
    the family's plots of each, and a verdict per model (monitoring.services.comparison)."""

    id = models.CharField(primary_key=True, max_length=64)
    recipe = models.ForeignKey("recipes.Recipe", on_delete=models.CASCADE, related_name="comparisons")
    reference = models.ForeignKey(
        "models_registry.MLModel", on_delete=models.CASCADE, related_name="comparisons"
    )
    # The compared models' ids, the reference first.
    model_ids_json = JSONField(default=list)
    # The data: a recorded synthetic batch ({"source": "synthetic", ...}) or {"dataset_id"}.
    window_json = JSONField(default=dict, blank=True)
    # {"rows", "groups", "replicates", "level", "metric", "direction", "models": [...],
    #  "difference": {...}, "verdicts": {...}, "plots": {...}} (see the service).
    result_json = JSONField(default=dict, blank=True)
    # One line for lists: the verdict of the first challenger against the reference.
    summary = models.TextField(blank=True, default="")
    retrain = models.OneToOneField(
        Retrain, null=True, blank=True, on_delete=models.SET_NULL, related_name="comparison"
    )
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField()

    class QuerySet(models.QuerySet):
        def visible_to(self, user):
            return self.filter(client_scope(user, "recipe__client"))

    objects = QuerySet.as_manager()

    class Meta:
        db_table = "ml_comparison"
        ordering = ["-created_at", "-id"]
        indexes = [models.Index(fields=["reference", "created_at"], name="ml_comparison_ref_time_idx")]

    def __str__(self):
        return self.id
