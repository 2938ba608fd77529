"""Scheduled monitoring of production models, run by the workers' periodic tick.

A model's schedule is its manifest's `deployment.schedule` (cron). The due time lives in
`MLModel.next_check_at`; a worker claims a due slot by moving next_check_at past now with a
conditional update, so with several workers up exactly one handles each slot, and the
slots missed while no worker ran are handled once, not once each.

What a due slot does depends on `deployment.mode`:

* ``batch``: the model SCORES its next batch (monitoring.services.scoring_start: a score
  run, executed by a worker, and its ScoringBatch row; the unique (model, window) key means
  two workers never score one window twice). Once its run succeeded, a later tick checks
  that same batch (drift + freshness) and links the snapshot;
* otherwise (realtime): a monitoring check of the next batch, as before.

The same tick runs the retraining policies' schedules (``MLModel.next_retrain_at``, claimed
the same way) and decides the retrains whose challenger has finished training.
"""

from __future__ import annotations

import logging
from datetime import datetime

from cronsim import CronSim, CronSimError
from django.db import IntegrityError
from django.utils import timezone

from models_registry.models import MLModel, ModelStatus
from recipes.retraining import policy as retrain_policy
from runs.models import Dataset, RunStatus
from runs.selectors import model_training_batch

from .models import RetrainTrigger, ScoringBatch
from .selectors import CHECK_MAX_ATTEMPTS, check_claimable, is_batch_mode
from .services import (
    finished_retrains,
    model_check,
    retrain_decide,
    retrain_trigger,
    scoring_check,
    scoring_check_failed,
    scoring_claim_check,
    scoring_next_batch,
    scoring_start,
)

logger = logging.getLogger(__name__)
DEFAULT_SCHEDULE = "0 6 * * *"
SCHEDULED_BATCH_ROWS = 5000


def _next_slot(expression: str | None, after: datetime) -> datetime | None:
    """The first time after `after` that a cron expression names; None for none or a bad one."""
    if not expression:
        return None
    try:
        return next(CronSim(expression, after))
    except (CronSimError, StopIteration):
        return None


def next_due(manifest: dict, after: datetime) -> datetime:
    expression = ((manifest or {}).get("deployment") or {}).get("schedule")
    return _next_slot(expression, after) or _next_slot(DEFAULT_SCHEDULE, after)


def claim_due(model: MLModel, now: datetime) -> bool:
    return bool(
        MLModel.objects.filter(
            pk=model.pk, status=ModelStatus.PRODUCTION, next_check_at=model.next_check_at
        ).update(next_check_at=next_due(model.recipe_version.manifest, now))
    )


def _check(model: MLModel) -> str:
    # The newest dataset uploaded for the recipe is the batch; without one, the next
    # window of the model's synthetic world (after the last batch checked), so scheduled
    # checks of a healthy model walk forward in time and stay healthy (useful for demos).
    dataset = Dataset.objects.filter(recipe_id=model.recipe_id).order_by("-created_at").first()
    if dataset is not None:
        return model_check(model=model, source="scheduled", dataset_id=dataset.id).id
    return model_check(model=model, source="scheduled", synthetic={"rows": SCHEDULED_BATCH_ROWS}).id


def score_due(model: MLModel, scheduled_for: datetime) -> ScoringBatch | None:
    """Start the scoring of the model's next batch; None if another worker already did. A
    synthetic batch is no larger than the model's training data: a world of N sites or
    customers has no more than N of them to score in one window."""
    trained_rows = (model_training_batch(model) or {}).get("rows") or SCHEDULED_BATCH_ROWS
    dataset, batch = scoring_next_batch(model, rows=min(SCHEDULED_BATCH_ROWS, int(trained_rows)))
    try:
        return scoring_start(model=model, scheduled_for=scheduled_for, dataset=dataset, batch=batch)
    except IntegrityError:  # the same window of this model exists: another worker scored it
        logger.info("scoring of %s for %s skipped: already scored", model.id, batch)
        return None


def check_scored_batches(now: datetime | None = None) -> list[str]:
    """Check every batch whose score run succeeded and whose check no worker has claimed, or
    whose claimed check failed (raised, or its worker died) more than CHECK_GRACE ago, while
    it has attempts left (monitoring.selectors.check_claimable): a failing check is retried
    once per grace period, CHECK_MAX_ATTEMPTS times in all. A check that raises leaves its
    error on the batch; the last attempt's failure is logged as an error, once (the batch is
    never claimed again). Returns the snapshot ids."""
    now = now or timezone.now()
    done = []
    pending = ScoringBatch.objects.filter(
        check_claimable(now), run__status=RunStatus.SUCCEEDED
    ).select_related("model__recipe", "model__recipe_version", "model__training_run")
    for batch in pending:
        if not scoring_claim_check(batch, now):
            continue  # another worker took it
        try:
            done.append(scoring_check(batch=batch).id)
        except Exception as exc:
            logger.exception("check of scoring batch %s failed", batch.id)
            error = scoring_check_failed(batch, exc)  # after the check's rollback: it stays
            if batch.check_attempts >= CHECK_MAX_ATTEMPTS:
                logger.error(
                    "check of scoring batch %s (model %s) gave up after %d attempts: %s",
                    batch.id,
                    batch.model_id,
                    batch.check_attempts,
                    error,
                )
    return done


def run_due_checks(now: datetime | None = None) -> list[str]:
    """Handle every due slot this process manages to claim, then check scored batches.
    Returns what was done: snapshot ids (checks) and scoring batch ids (scorings started)."""
    now = now or timezone.now()
    done = []
    due = MLModel.objects.filter(status=ModelStatus.PRODUCTION, next_check_at__lte=now).select_related(
        "recipe", "recipe_version"
    )
    for model in due:
        scheduled_for = model.next_check_at
        if not claim_due(model, now):
            continue  # another worker took it
        try:
            if is_batch_mode(model.recipe_version.manifest):
                batch = score_due(model, scheduled_for)
                if batch is not None:
                    done.append(batch.id)
            else:
                done.append(_check(model))
        except Exception:
            logger.exception("scheduled work on %s failed", model.id)
    done.extend(check_scored_batches(now))
    done.extend(retrain_scheduled(now))
    done.extend(decide_retrains(now))
    return done


def _retrain_due(manifest: dict, after: datetime) -> datetime | None:
    policy = retrain_policy(manifest)
    return _next_slot(policy.schedule if policy is not None else None, after)


def retrain_scheduled(now: datetime | None = None) -> list[str]:
    """The retraining policies' schedules (retraining.triggers.schedule): a production model
    with one gets its first due time set; each due slot is claimed like a check's (one worker
    per slot, missed slots once) and triggers one retrain, or records why not."""
    now = now or timezone.now()
    done = []
    models = MLModel.objects.filter(status=ModelStatus.PRODUCTION, serves_alongside=False).select_related(
        "recipe", "recipe_version"
    )
    for model in models.filter(next_retrain_at__isnull=True):
        first = _retrain_due(model.recipe_version.manifest, now)
        if first is not None:
            MLModel.objects.filter(pk=model.pk, next_retrain_at__isnull=True).update(next_retrain_at=first)
    for model in models.filter(next_retrain_at__lte=now):
        slot = model.next_retrain_at
        claimed = MLModel.objects.filter(pk=model.pk, next_retrain_at=slot).update(
            next_retrain_at=_retrain_due(model.recipe_version.manifest, now)
        )
        if not claimed:
            continue  # another worker took it
        try:
            retrain = retrain_trigger(
                champion=model, trigger=RetrainTrigger.SCHEDULE, detail={"slot": slot.isoformat()}, at=now
            )
            done.append(retrain.pk)
        except Exception:
            logger.exception("scheduled retrain of %s failed", model.id)
    return done


def decide_retrains(now: datetime | None = None) -> list[str]:
    """Decide every retrain whose challenger's train run has finished (retrain_decide claims
    each one: two workers never decide one twice; a crash is retried by a later tick)."""
    done = []
    for retrain in finished_retrains():
        try:
            decided = retrain_decide(retrain=retrain, at=now)
            done.append(decided.pk)
        except Exception:
            logger.exception("decision of retrain %s failed", retrain.pk)
    return done
