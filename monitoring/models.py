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
