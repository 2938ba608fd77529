from django.conf import settings
from django.db import models
from django.db.models import Q

from mlworkspace.fields import JSONField
from recipes.access import client_scope


class ModelStatus(models.TextChoices):
    REGISTERED = "registered", "Registered"
    STAGING = "staging", "Staging"
    PRODUCTION = "production", "Production"
    ARCHIVED = "archived", "Archived"


# Legal lifecycle moves. Promotion to production may demote the current production
# model of the same recipe to staging (models_registry.services.model_set_status).
TRANSITIONS = {
    ModelStatus.REGISTERED: {ModelStatus.STAGING, ModelStatus.ARCHIVED},
    ModelStatus.STAGING: {ModelStatus.PRODUCTION, ModelStatus.REGISTERED, ModelStatus.ARCHIVED},
    ModelStatus.PRODUCTION: {ModelStatus.STAGING, ModelStatus.ARCHIVED},
    ModelStatus.ARCHIVED: set(),
}


class MLModelQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(client_scope(user, "recipe__client"))

    def for_list(self):
        return self.select_related("recipe", "recipe_version", "training_run", "created_by").defer(
            "training_run__plots_json", "training_run__artifacts_json", "training_run__metric_checks_json"
        )


class MLModel(models.Model):
    """A registered model: a recipe version (approved) plus, once trained, its artifact."""

    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    recipe = models.ForeignKey("recipes.Recipe", on_delete=models.PROTECT, related_name="models")
    recipe_version = models.ForeignKey(
        "recipes.RecipeVersion", on_delete=models.PROTECT, related_name="models"
    )
    status = models.CharField(max_length=16, choices=ModelStatus.choices, default=ModelStatus.REGISTERED)
    owner = models.CharField(max_length=200, blank=True, default="")
    # The train run whose artifact this model serves (set by the run's deployment stage).
    training_run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    metrics_json = JSONField(default=dict, blank=True)
    artifacts_json = JSONField(default=dict, blank=True)
    promoted_at = models.DateTimeField(null=True, blank=True)
    # Promoted to production with keep_other_production while the recipe already had its
    # production model: this one serves alongside it (the user said so). A recipe has at most
    # one production model that is not alongside (the constraint below), so a race or a
    # stale save can never leave two "the production model"s.
    serves_alongside = models.BooleanField(default=False)
    # Monitoring schedule: the next due check (claimed with a conditional update).
    next_check_at = models.DateTimeField(null=True, blank=True)
    last_check_at = models.DateTimeField(null=True, blank=True)
    # A challenger: registered by a retrain of this champion (monitoring.Retrain), on the same
    # approved version, to be compared with it and maybe promoted in its place.
    challenger_of = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.SET_NULL, related_name="challengers"
    )
    # The retraining policy's schedule (manifest retraining.triggers.schedule): the next due
    # retrain of this production model, claimed like next_check_at.
    next_retrain_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = MLModelQuerySet.as_manager()

    class Meta:
        db_table = "ml_model"
        ordering = ["-created_at", "-id"]
        indexes = [
            # ?recipe_id=&status= and "the production model of this recipe".
            models.Index(fields=["recipe", "status"], name="ml_model_recipe_status_idx"),
            # ?status= across the library; the monitoring tab (status=production).
            models.Index(fields=["status", "created_at"], name="ml_model_status_idx"),
            models.Index(fields=["created_at", "id"], name="ml_model_created_idx"),
            # The scheduler: production models whose check is due.
            models.Index(fields=["status", "next_check_at"], name="ml_model_due_idx"),
        ]
        constraints = [
            models.CheckConstraint(condition=Q(status__in=ModelStatus.values), name="ml_model_status_valid"),
            # One production model per recipe (a partial unique index), apart from the ones the
            # user explicitly kept alongside it. Also serves "the production model of this recipe".
            models.UniqueConstraint(
                fields=["recipe"],
                condition=Q(status=ModelStatus.PRODUCTION, serves_alongside=False),
                name="ml_model_one_production_per_recipe",
            ),
            models.CheckConstraint(
                condition=Q(serves_alongside=False) | Q(status=ModelStatus.PRODUCTION),
                name="ml_model_alongside_only_in_production",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def role(self) -> str:
        """champion (the recipe's production model), challenger (registered by a retrain of
        one) or "" (neither)."""
        if self.status == ModelStatus.PRODUCTION:
            return "champion"
        return "challenger" if self.challenger_of_id else ""
