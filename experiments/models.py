"""A/B and shadow experiments on a recipe's production deployment (issue #14 §5).

An Experiment pits the recipe's champion (its production model) against a challenger on the
predict endpoint. Units (the value of the request field `unit_key`, e.g. a customer id) are
assigned to an arm by a stable hash (experiments.assignment); each unit's first request is an
Exposure, its outcome (posted later) an Outcome. The statistics (experiments.stats) compare
the outcomes of the two arms.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from mlworkspace.fields import JSONField
from recipes.access import client_scope


class ExperimentMode(models.TextChoices):
    AB = "ab", "A/B test"  # each unit is served by its arm's model
    SHADOW = "shadow", "Shadow"  # the champion answers; the challenger scores the same rows unseen


class ExperimentStatus(models.TextChoices):
    RUNNING = "running", "Running"
    STOPPED = "stopped", "Stopped"


class Arm(models.TextChoices):
    CHAMPION = "champion", "Champion"
    CHALLENGER = "challenger", "Challenger"


class Winner(models.TextChoices):
    CHAMPION = "champion", "Champion"
    CHALLENGER = "challenger", "Challenger (promoted)"
    NONE = "none", "None"


class ExperimentQuerySet(models.QuerySet):
    def visible_to(self, user):
        # An experiment belongs to its recipe's client (recipes.access: the one rule).
        return self.filter(client_scope(user, "recipe__client"))


class Experiment(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    recipe = models.ForeignKey("recipes.Recipe", on_delete=models.PROTECT, related_name="experiments")
    champion = models.ForeignKey(
        "models_registry.MLModel", on_delete=models.PROTECT, related_name="experiments_as_champion"
    )
    challenger = models.ForeignKey(
        "models_registry.MLModel", on_delete=models.PROTECT, related_name="experiments_as_challenger"
    )
    mode = models.CharField(max_length=8, choices=ExperimentMode.choices)
    # The challenger's share of units in an A/B test (stored, unused, in shadow mode).
    split = models.FloatField()
    # The request field naming the unit (e.g. customer_id): every predicted row carries it.
    unit_key = models.CharField(max_length=100)
    # What the outcomes measure: one number per unit (0/1 values are a proportion).
    metric = models.CharField(max_length=100, default="outcome")
    # Units with an outcome per arm, planned up front: the test is final once both arms reach it.
    horizon = models.PositiveIntegerField()
    # How the horizon was set: {"given": true} or the baseline_rate/baseline_sd and mde it came from.
    horizon_json = JSONField(default=dict, blank=True)
    alpha = models.FloatField(default=0.05)
    status = models.CharField(
        max_length=8, choices=ExperimentStatus.choices, default=ExperimentStatus.RUNNING
    )
    winner = models.CharField(max_length=12, choices=Winner.choices, blank=True, default="")
    # The statistics at the moment of the stop (what the decision was made on).
    result_json = JSONField(default=dict, blank=True)
    started_at = models.DateTimeField()
    stopped_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    stopped_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    objects = ExperimentQuerySet.as_manager()

    class Meta:
        db_table = "ml_experiment"
        ordering = ["-started_at", "-id"]
        indexes = [
            # GET /experiments?recipe_id=&status= (newest first).
            models.Index(fields=["recipe", "status", "started_at"], name="ml_experiment_recipe_idx"),
            # The model page: experiments where a model is champion or challenger.
            models.Index(fields=["champion", "started_at"], name="ml_experiment_champion_idx"),
            models.Index(fields=["challenger", "started_at"], name="ml_experiment_challenger_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(mode__in=ExperimentMode.values), name="ml_experiment_mode_valid"
            ),
            models.CheckConstraint(
                condition=Q(status__in=ExperimentStatus.values), name="ml_experiment_status_valid"
            ),
            models.CheckConstraint(condition=Q(split__gt=0, split__lt=1), name="ml_experiment_split_range"),
            models.CheckConstraint(condition=Q(alpha__gt=0, alpha__lt=1), name="ml_experiment_alpha_range"),
            models.CheckConstraint(condition=Q(horizon__gte=2), name="ml_experiment_horizon_min"),
            models.CheckConstraint(
                condition=~Q(champion=models.F("challenger")), name="ml_experiment_two_models"
            ),
            # A running experiment has no winner; a stopped one has one.
            models.CheckConstraint(
                condition=Q(status=ExperimentStatus.RUNNING, winner="")
                | Q(status=ExperimentStatus.STOPPED, winner__in=Winner.values),
                name="ml_experiment_winner_when_stopped",
            ),
            # One running experiment per recipe; also serves the predict endpoint's lookup of
            # "the running experiment of this model's recipe" (a partial unique index).
            models.UniqueConstraint(
                fields=["recipe"],
                condition=Q(status=ExperimentStatus.RUNNING),
                name="ml_experiment_one_running_per_recipe",
            ),
        ]

    def __str__(self):
        return f"{self.get_mode_display()} {self.id}"

    @property
    def is_running(self) -> bool:
        return self.status == ExperimentStatus.RUNNING

    def model_of(self, arm: str):
        return self.challenger if arm == Arm.CHALLENGER else self.champion


class Exposure(models.Model):
    """A unit seen by the experiment: its arm, when it was first seen and, in shadow mode, the
    latest predictions of both models for it — one row per unit, not per request: outcomes
    are per unit, the table grows with the units and not with the traffic, and a request
    writes all its rows with one statement (experiments.services.predict, the
    predict endpoint's hot path: this table is shaped for it, see below)."""

    # The key is (experiment, unit): one index serves the upsert's conflict target and "is
    # this unit exposed, to which arm" for outcomes; no surrogate id to maintain on insert.
    pk = models.CompositePrimaryKey("experiment", "unit")
    # No database foreign key: PostgreSQL checks a deferred one per inserted row at commit
    # (160 ms of a 50,000-row request). Only services.predict writes here, with the id of
    # the running experiment it just read; deleting an experiment still deletes its
    # exposures (the ORM cascades).
    experiment = models.ForeignKey(
        Experiment,
        on_delete=models.CASCADE,
        related_name="exposures",
        db_constraint=False,
        db_index=False,  # the key's first column
    )
    unit = models.CharField(max_length=200)
    arm = models.CharField(max_length=12, choices=Arm.choices)
    first_seen_at = models.DateTimeField()
    last_seen_at = models.DateTimeField(null=True, blank=True)  # shadow mode: the latest prediction's time
    # Shadow mode: what each model answered for the unit's latest row (every family predicts a
    # number; the challenger's is null when it could not score the row).
    champion_prediction = models.FloatField(null=True, blank=True)
    challenger_prediction = models.FloatField(null=True, blank=True)

    class Meta:
        db_table = "ml_experiment_exposure"
        constraints = [
            models.CheckConstraint(condition=Q(arm__in=Arm.values), name="ml_exposure_arm_valid"),
        ]
        indexes = [
            # Units per arm (the page and the API count them).
            models.Index(fields=["experiment", "arm"], name="ml_exposure_arm_idx"),
        ]

    def __str__(self):
        return f"{self.unit} ({self.arm})"


class Outcome(models.Model):
    """The measured outcome of one exposed unit. Posting it again replaces it (last write
    wins: a corrected value is the value). `arm` is the unit's exposure's (fixed by the hash)."""

    experiment = models.ForeignKey(
        Experiment,
        on_delete=models.CASCADE,
        related_name="outcomes",
        db_index=False,  # the first column of the unique (experiment, unit) index
    )
    unit = models.CharField(max_length=200)
    arm = models.CharField(max_length=12, choices=Arm.choices)
    value = models.FloatField()
    recorded_at = models.DateTimeField()

    class Meta:
        db_table = "ml_experiment_outcome"
        constraints = [
            models.UniqueConstraint(fields=["experiment", "unit"], name="ml_outcome_one_per_unit"),
            models.CheckConstraint(condition=Q(arm__in=Arm.values), name="ml_outcome_arm_valid"),
        ]
        indexes = [
            # The per-arm aggregates of the statistics.
            models.Index(fields=["experiment", "arm"], name="ml_outcome_arm_idx"),
        ]

    def __str__(self):
        return f"{self.unit}: {self.value}"
