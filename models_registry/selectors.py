"""Reads of registered models shared by pages (the library's Models tab, a model's page)."""

from __future__ import annotations

from runs import artifacts

from .models import MLModel, MLModelQuerySet, ModelStatus


def model_list(user) -> MLModelQuerySet:
    """The models `user` may see, with what a list row shows: no manifest, no training plots
    (unordered, unfiltered)."""
    return (
        MLModel.objects.visible_to(user)
        .for_list()
        .defer("recipe_version__manifest", "training_run__plots_json")
    )


def other_production_models(model: MLModel) -> list[MLModel]:
    """The recipe's other production models (id and name), by name: what promoting ``model``
    to production replaces, or what stays in production when it is demoted."""
    return list(
        MLModel.objects.filter(recipe_id=model.recipe_id, status=ModelStatus.PRODUCTION)
        .exclude(pk=model.pk)
        .only("id", "name")
        .order_by("name", "id")
    )


def model_recent_runs(model: MLModel, limit: int = 10) -> list:
    """The model's newest runs, with what a run line shows (no plots, artifacts or manifest)."""
    return list(
        model.runs.select_related("recipe_version", "recipe")
        .defer(
            "plots_json", "artifacts_json", "metric_checks_json", "stages_json", "recipe_version__manifest"
        )
        .order_by("-created_at")[:limit]
    )


def model_explanations(model: MLModel) -> dict | None:
    """The explanations document (explanations.json) of the model's train run, as the explain
    stage wrote it (sha256-checked), or None when the run wrote none: a model trained before
    the stage existed, by a recipe version without one, or whose stage could not compute them."""
    if not artifacts.has_explanations(model):
        return None
    return artifacts.read_json_artifact(model.training_run_id, model.artifacts_json, artifacts.EXPLANATIONS)
