"""Writes on registered models: register, lifecycle moves, attaching a trained artifact."""

from __future__ import annotations

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, field_error
from mlworkspace.ids import new_id
from notifications.services import notify
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
    challenger_of: MLModel | None = None,
    at=None,
) -> MLModel:
    """Register a model against an approved version of `recipe`; `at` (a datetime) dates it
    for seeded history (the demo), default now. `challenger_of`: the champion a retrain
    registers this model to challenge (same recipe). `user` None: a worker's retrain (the
    owner is then given)."""
    if recipe_version.recipe_id != recipe.id:
        raise field_error("recipe_version_id", f"'{recipe_version.id}' is a version of another recipe")
    if not recipe_version.is_approved:
        raise field_error(
            "recipe_version_id",
            f"version {recipe_version.version} is not approved; approve it before registering",
        )
    if not name or not name.strip():
        raise field_error("name", "is required")
    if challenger_of is not None and challenger_of.recipe_id != recipe.id:
        raise field_error("challenger_of", f"'{challenger_of.id}' is a model of another recipe")
    model = MLModel.objects.create(
        id=new_id("model"),
        name=name.strip(),
        description=description,
        recipe=recipe,
        recipe_version=recipe_version,
        owner=owner or (user.get_username() if user is not None else ""),
        challenger_of=challenger_of,
        created_by=user,
    )
    if at is not None:  # created_at is auto_now_add: only an update sets it
        MLModel.objects.filter(pk=model.pk).update(created_at=at, updated_at=at)
        model.created_at = model.updated_at = at
    audit.record(user, "model.register", model, changes=audit.created(model), at=at)
    return model


def _lock_recipe(recipe_id) -> None:
    """Every write on a recipe's models first takes its recipe's row lock, so they serialise
    per recipe and never deadlock (a description edit holding its model while a promotion
    waits for it, and the other way round). NO KEY UPDATE: registering a model or starting a
    run (a foreign key to the recipe) is not blocked. SQLite serialises writers anyway."""
    list(Recipe.objects.select_for_update(no_key=True).filter(pk=recipe_id).values_list("pk"))


def _lock_recipe_models(recipe_id) -> dict[str, MLModel]:
    """Every model of the recipe, fresh and locked (the recipe first, then its models in id
    order): concurrent status changes of one recipe serialise here instead of racing."""
    _lock_recipe(recipe_id)
    rows = MLModel.objects.select_for_update().filter(recipe_id=recipe_id).order_by("pk")
    return {m.id: m for m in rows}


@transaction.atomic
def model_set_status(
    *, model: MLModel, user, status: str, keep_other_production: bool = False, at=None
) -> dict:
    """Move a model along registered → staging → production → archived.

    Promoting to production demotes the recipe's current production model to staging,
    unless `keep_other_production` (the user explicitly runs two side by side: the newcomer
    then `serves_alongside` the recipe's production model). Returns
    {"model": MLModel, "replaced": [ids demoted]}.
    """
    if status not in ModelStatus.values:
        raise field_error("status", f"must be one of {', '.join(ModelStatus.values)}")
    locked = _lock_recipe_models(model.recipe_id)
    model = locked[model.id]
    before = audit.snapshot(model)
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
    others = [m for m in locked.values() if m.id != model.id and m.status == ModelStatus.PRODUCTION]
    demoted: list[MLModel] = []  # other rows leaving production (written before the model)
    successor = None  # a row kept alongside that takes over (written after the model)
    replaced = []
    now = at or timezone.now()  # `at`: the move's time in seeded history (the demo)
    if status == ModelStatus.PRODUCTION:
        if not (model.artifacts_json or {}).get("model"):  # files logged by MLflow are not servable
            raise Conflict(
                "The model has no trained artifact yet; run a train run with this model_id first.",
                [{"path": "/status", "message": "no trained artifact"}],
            )
        if keep_other_production:
            model.serves_alongside = any(not m.serves_alongside for m in others)
        else:
            for other in others:
                other.status, other.serves_alongside = ModelStatus.STAGING, False
                other.next_check_at = other.next_retrain_at = None
                demoted.append(other)
                replaced.append(other.id)
            model.serves_alongside = False
        model.promoted_at = now
        model.next_check_at = now  # first scheduled check as soon as the scheduler looks
        model.next_retrain_at = None  # the scheduler sets the first one from the policy
    else:
        if model.status == ModelStatus.PRODUCTION and not model.serves_alongside:
            # The recipe's production model leaves: the longest-serving one kept alongside it
            # (if any) takes its place.
            successor = min(
                (m for m in others if m.serves_alongside),
                key=lambda m: (m.promoted_at or m.created_at, m.id),
                default=None,
            )
            if successor is not None:
                successor.serves_alongside = False
        model.serves_alongside = False
        model.next_check_at = model.next_retrain_at = None
    model.status = status
    fields = ["status", "serves_alongside", "next_check_at", "next_retrain_at", "promoted_at", "updated_at"]
    try:
        with transaction.atomic():
            # In this order the one-production-per-recipe index holds after every statement.
            for row in demoted:
                row.save(
                    update_fields=[
                        "status",
                        "serves_alongside",
                        "next_check_at",
                        "next_retrain_at",
                        "updated_at",
                    ]
                )
            model.save(update_fields=fields)
            if successor is not None:
                successor.save(update_fields=["serves_alongside", "updated_at"])
    except IntegrityError:
        # Only reachable if a write bypassed the lock above; a conflict, never a 500.
        raise Conflict(
            "Another model of this recipe went into production at the same time; reload and try again.",
            [{"path": "/status", "message": "the recipe already has a production model"}],
        ) from None
    if at is not None:  # updated_at is auto_now
        touched = [model.id, *replaced, *([successor.id] if successor is not None else [])]
        MLModel.objects.filter(pk__in=touched).update(updated_at=at)
    audit.record(
        user, "model.status", model, changes=audit.diff(before, model), detail={"replaced": replaced}, at=at
    )
    notify(
        "model.status",
        recipe=model.recipe,
        payload={
            "summary": f"{model.name}: {before.get('status')} → {status}",
            "model_id": model.pk,
            "model_name": model.name,
            "from": before.get("status"),
            "to": status,
            "replaced": replaced,
            "by": user.get_username() if user is not None else None,
        },
        at=at,
    )
    for row in demoted:  # each replaced model's own history says what replaced it
        audit.record(
            user,
            "model.status",
            row,
            changes={"status": ["production", row.status]},
            detail={"replaced_by": model.id},
            at=at,
        )
    return {"model": model, "replaced": replaced}


@transaction.atomic
def model_update(*, model: MLModel, user, **fields) -> MLModel:
    """Name, owner and description. The row is re-read under a lock and only these fields are
    written: saving a stale copy would put back a status another request just changed
    (two production models after a concurrent promotion)."""
    _lock_recipe(model.recipe_id)
    model = MLModel.objects.select_for_update().get(pk=model.pk)
    before = audit.snapshot(model)
    changed = []
    for key in ("name", "owner", "description"):
        if fields.get(key) is not None:
            setattr(model, key, fields[key])
            changed.append(key)
    if changed:
        model.save(update_fields=[*changed, "updated_at"])
    audit.record(user, "model.update", model, changes=audit.diff(before, model))
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
