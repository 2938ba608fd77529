"""Reads of runs that other pages and services share (the library's Runs tab, a model's
training batch)."""

from __future__ import annotations

from models_registry.models import MLModel

from .models import Run, RunQuerySet

# A list row shows none of these: do not fetch a page's worth of plots, artifact maps,
# parameters and manifests.
LIST_DEFERRED = ("plots_json", "artifacts_json", "params_json", "recipe_version__manifest")


def run_list(user) -> RunQuerySet:
    """The runs `user` may see, with what a list row shows (unordered, unfiltered)."""
    return Run.objects.visible_to(user).for_list().defer(*LIST_DEFERRED)


def model_training_batch(model: MLModel | None) -> dict | None:
    """The synthetic batch a model's artifact was trained on (as its train run recorded it),
    or None (no trained artifact, or trained on an uploaded dataset)."""
    if model is None or not model.training_run_id:
        return None
    run = Run.objects.filter(pk=model.training_run_id).only("params_json", "dataset_id").first()
    if run is None or run.dataset_id:
        return None
    return (run.params_json or {}).get("synthetic") or {}
