"""Writes on registered models: register, lifecycle moves, attaching a trained artifact."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from mlworkspace.errors import Conflict, field_error
from mlworkspace.ids import new_id
from recipes.models import Recipe, RecipeVersion

from .models import TRANSITIONS, MLModel, ModelStatus


@transaction.atomic
def model_register(
    *,
    user,
    name: str,
    recipe: Recipe,
    recipe_version: RecipeVersion,
    owner: str = "",
    description: str = "",
    at=None,
) -> MLModel:
    """Register a model against an approved version of `recipe`; `at` (a datetime) dates it
    for seeded history (the demo), default now."""
    if recipe_version.recipe_id != recipe.id:
        raise field_error("recipe_version_id", f"'{recipe_version.id}' is a version of another recipe")
    if not recipe_version.is_approved:
        raise field_error(
            "recipe_version_id",
            f"version {recipe_version.version} is not approved; approve it before registering",
        )
    if not name or not name.strip():
        raise field_error("name", "is required")
    model = MLModel.objects.create(
        id=new_id("model"),
        name=name.strip(),
        description=description,
        recipe=recipe,
        recipe_version=recipe_version,
        owner=owner or user.get_username(),
        created_by=user,
    )
    if at is not None:  # created_at is auto_now_add: only an update sets it
        MLModel.objects.filter(pk=model.pk).update(created_at=at, updated_at=at)
        model.created_at = model.updated_at = at
    return model


@transaction.atomic
def model_set_status(
    *, model: MLModel, user, status: str, keep_other_production: bool = False, at=None
) -> dict:
    """Move a model along registered → staging → production → archived.

    Promoting to production demotes the recipe's current production model to staging,
    unless `keep_other_production` (the user explicitly runs two side by side). Returns
    {"model": MLModel, "replaced": [ids demoted]}.
    """
    # Lock every model of the recipe: two concurrent promotions must not both win.
    locked = {m.id: m for m in MLModel.objects.select_for_update().filter(recipe_id=model.recipe_id)}
    model = locked[model.id]
    if status not in ModelStatus.values:
        raise field_error("status", f"must be one of {', '.join(ModelStatus.values)}")
    if status == model.status:
        return {"model": model, "replaced": []}
    if status not in TRANSITIONS[model.status]:
        raise Conflict(
            f"Illegal status change {model.status} → {status}.",
            [
                {
                    "path": "/status",
                    "message": f"{model.status} can become {', '.join(sorted(TRANSITIONS[model.status])) or 'nothing'}",
                }
            ],
        )
    replaced = []
    now = at or timezone.now()  # `at`: the move's time in seeded history (the demo)
    if status == ModelStatus.PRODUCTION:
        if not model.artifacts_json:
            raise Conflict(
                "The model has no trained artifact yet; run a train run with this model_id first.",
                [{"path": "/status", "message": "no trained artifact"}],
            )
        if not keep_other_production:
            for other in locked.values():
                if other.id != model.id and other.status == ModelStatus.PRODUCTION:
                    other.status = ModelStatus.STAGING
                    other.next_check_at = None
                    other.save(update_fields=["status", "next_check_at", "updated_at"])
                    replaced.append(other.id)
        model.promoted_at = now
        model.next_check_at = now  # first scheduled check as soon as the scheduler looks
    else:
        model.next_check_at = None
    model.status = status
    model.save()
    if at is not None:  # updated_at is auto_now
        MLModel.objects.filter(pk__in=[model.id, *replaced]).update(updated_at=at)
    return {"model": model, "replaced": replaced}


@transaction.atomic
def model_update(*, model: MLModel, user, **fields) -> MLModel:
    for key in ("name", "owner", "description"):
        if fields.get(key) is not None:
            setattr(model, key, fields[key])
    model.save()
    return model


def model_attach_training(*, run) -> None:
    """The deployment stage: a successful train run's artifact and metrics become its model's
    (the model then serves predictions and monitoring checks from that run)."""
    MLModel.objects.filter(pk=run.model_id).update(
        training_run_id=run.pk,
        artifacts_json=run.artifacts_json,
        metrics_json=run.metrics_json,
        updated_at=timezone.now(),
    )
