"""Scheduled monitoring checks for production models.

A model's checks follow its manifest's `deployment.schedule` (cron). The due time lives in
`MLModel.next_check_at`; a worker claims a due check by moving next_check_at forward with
a conditional update, so with several workers up exactly one runs each due check.
"""

from __future__ import annotations

import logging
from datetime import datetime

from cronsim import CronSim, CronSimError
from django.utils import timezone

from models_registry.models import MLModel, ModelStatus
from runs.models import Dataset

from .services import model_check

logger = logging.getLogger(__name__)
DEFAULT_SCHEDULE = "0 6 * * *"
SCHEDULED_BATCH_ROWS = 5000


def next_due(manifest: dict, after: datetime) -> datetime:
    expression = ((manifest or {}).get("deployment") or {}).get("schedule") or DEFAULT_SCHEDULE
    try:
        return next(CronSim(expression, after))
    except (CronSimError, StopIteration):
        return next(CronSim(DEFAULT_SCHEDULE, after))


def claim_due(model: MLModel, now: datetime) -> bool:
    return bool(
        MLModel.objects.filter(
            pk=model.pk, status=ModelStatus.PRODUCTION, next_check_at=model.next_check_at
        ).update(next_check_at=next_due(model.recipe_version.manifest, now))
    )


def run_due_checks(now: datetime | None = None) -> list[str]:
    """Run every due check this process manages to claim; returns the snapshot ids."""
    now = now or timezone.now()
    done = []
    due = MLModel.objects.filter(status=ModelStatus.PRODUCTION, next_check_at__lte=now).select_related(
        "recipe", "recipe_version"
    )
    for model in due:
        if not claim_due(model, now):
            continue  # another worker took it
        # The newest dataset uploaded for the recipe is the batch; without one, the next
        # window of the model's synthetic world (after the last batch checked), so scheduled
        # checks of a healthy model walk forward in time and stay healthy (useful for demos).
        dataset = Dataset.objects.filter(recipe_id=model.recipe_id).order_by("-created_at").first()
        try:
            if dataset is not None:
                snapshot = model_check(model=model, source="scheduled", dataset_id=dataset.id)
            else:
                snapshot = model_check(
                    model=model,
                    source="scheduled",
                    synthetic={"rows": SCHEDULED_BATCH_ROWS},
                )
            done.append(snapshot.id)
        except Exception:
            logger.exception("scheduled check of %s failed", model.id)
    return done
