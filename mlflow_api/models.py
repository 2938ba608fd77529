"""What the MLflow protocol needs that the workspace's own tables do not hold.

An experiment is a recipe and a run is a workspace Run (its params, metrics and tags are the
runs app's tracking rows), so only three small things are stored here: experiment names that
are not a recipe id, MLflow 3's logged models (a model a script logged, before anyone
registers it), and where a registered workspace model came from in MLflow's terms.
"""

from django.conf import settings
from django.db import models
from django.db.models import Q

from mlworkspace.fields import JSONField
from recipes.access import client_scope


class ExperimentName(models.Model):
    """An experiment name mapped onto a recipe: created by MLflow's create-experiment with a
    ``recipe_id`` tag, so that ``mlflow.set_experiment("<that name>")`` finds the recipe. An
    experiment named after a recipe id needs no row."""

    name = models.CharField(max_length=500, unique=True)
    recipe = models.ForeignKey("recipes.Recipe", on_delete=models.CASCADE, related_name="+")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "ml_mlflow_experiment_name"

    def __str__(self):
        return f"{self.name} -> {self.recipe_id}"


class LoggedModelStatus(models.TextChoices):
    PENDING = "LOGGED_MODEL_PENDING", "Pending"
    READY = "LOGGED_MODEL_READY", "Ready"
    FAILED = "LOGGED_MODEL_UPLOAD_FAILED", "Upload failed"


class LoggedModelQuerySet(models.QuerySet):
    def visible_to(self, user):
        return self.filter(client_scope(user, "run__recipe__client"))


class LoggedModel(models.Model):
    """A model logged by ``mlflow.<flavor>.log_model`` (MLflow 3): its files are artifacts of
    its run (``models/<id>/artifacts/``). Only models logged inside a run are accepted: the run
    says which recipe the model belongs to."""

    id = models.CharField(primary_key=True, max_length=64)  # "m-<32 hex>", as MLflow's
    run = models.ForeignKey("runs.Run", on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=500)
    model_type = models.CharField(max_length=500, blank=True, default="")
    status = models.CharField(
        max_length=32, choices=LoggedModelStatus.choices, default=LoggedModelStatus.PENDING
    )
    tags_json = JSONField(default=dict, blank=True)
    params_json = JSONField(default=dict, blank=True)
    # The step log-outputs linked it to its run at (MLflow's ModelOutput.step).
    output_step = models.BigIntegerField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = LoggedModelQuerySet.as_manager()

    class Meta:
        db_table = "ml_mlflow_logged_model"
        ordering = ["created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=LoggedModelStatus.values), name="ml_mlflow_logged_model_status_valid"
            )
        ]

    def __str__(self):
        return self.id


class ModelVersionSource(models.Model):
    """Where a workspace model registered through MLflow's create-model-version came from: the
    ``source`` URI the client gave and the logged model it names (MLflow's model version
    answers with both)."""

    model = models.OneToOneField(
        "models_registry.MLModel", primary_key=True, on_delete=models.CASCADE, related_name="+"
    )
    source = models.TextField()
    logged_model = models.ForeignKey(
        LoggedModel, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )

    class Meta:
        db_table = "ml_mlflow_model_version_source"

    def __str__(self):
        return f"{self.model_id} <- {self.source[:80]}"
