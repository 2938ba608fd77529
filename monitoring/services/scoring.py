"""Batch scoring: what a batch-mode model scores next, the score run and its batch row, and
the check of a scored batch."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Exists, F, OuterRef, Q

from audit import services as audit
from mlworkspace.errors import server_redact
from mlworkspace.ids import new_id
from models_registry.models import MLModel
from runs.families import get_family, worlds
from runs.models import Dataset, DatasetPurpose, DatasetStatus, RunType
from runs.selectors import model_training_batch
from runs.services import run_start, synthetic_resolve

from ..models import MonitorSnapshot, ScoringBatch
from ..selectors import check_claimable, last_scored_batch, last_synthetic_batch
from .checks import model_check


def scoring_batch_key(batch: dict) -> str:
    """The window key of a batch: ``dataset:<id>`` or ``synthetic:<start>:<periods>``."""
    if batch.get("dataset_id"):
        return f"dataset:{batch['dataset_id']}"
    window = batch["window"]
    return f"synthetic:{window['start']}:{window['periods']}"


def scoring_next_batch(model: MLModel, *, rows: int) -> tuple[Dataset | None, dict]:
    """What a batch-mode model scores next: the newest ready dataset marked as its recipe's
    scoring input (purpose "scoring") that this model has not scored yet, so each marked
    dataset is scored once, the freshest first (training data uploaded for the recipe is
    never scored on schedule); else the next window of its synthetic world (after its last
    scored or checked window, or the first time after its training data)."""
    scored = ScoringBatch.objects.filter(model=model, run__dataset_id=OuterRef("pk"))
    dataset = (
        Dataset.objects.filter(
            recipe_id=model.recipe_id, status=DatasetStatus.READY, purpose=DatasetPurpose.SCORING
        )
        .exclude(Exists(scored))
        .order_by("-created_at", "-id")
        .first()
    )
    if dataset is not None:
        return dataset, {"dataset_id": dataset.pk}
    # The world moves forward: after the newest window scored or checked, else the training data.
    training = model_training_batch(model)
    family = get_family(model.recipe.model_family)
    seen = [
        b for b in (last_scored_batch(model, training), last_synthetic_batch(model, training=training)) if b
    ]
    after = max(seen, key=lambda b: worlds.span(family, b["window"])[0], default=training)
    return None, synthetic_resolve(family_name=family.NAME, synthetic={"rows": rows}, after=after)


@transaction.atomic
def scoring_start(
    *, model: MLModel, scheduled_for: datetime, dataset: Dataset | None = None, batch: dict
) -> ScoringBatch:
    """Create a scoring batch and its score run together (the run is enqueued for a worker
    on commit). Raises IntegrityError when the model already has a batch for this window
    (another worker scored it): then nothing is written."""
    run = run_start(
        user=None,
        recipe=model.recipe,
        recipe_version=model.recipe_version,
        run_type=RunType.SCORE,
        model=model,
        dataset=dataset,
        params={} if dataset is not None else {"synthetic": batch},
    )
    scoring = ScoringBatch.objects.create(
        id=new_id("batch"),
        model=model,
        run=run,
        window_key=scoring_batch_key(batch),
        batch_json=batch if dataset is None else {"dataset_id": dataset.pk},
        scheduled_for=scheduled_for,
    )
    audit.record(
        None,
        "monitoring.scoring_start",
        model,
        detail={"batch_id": scoring.pk, "run_id": run.pk, "window": scoring.window_key},
    )
    return scoring


def scoring_claim_check(batch: ScoringBatch, now: datetime) -> bool:
    """Claim a scored batch's check at `now`: one never claimed, or one whose claim went stale
    (its check failed) with attempts left (monitoring.selectors.check_claimable). The
    conditional update matches the claim and the attempts as `batch` holds them, so of two
    workers that read the same batch (unclaimed, or with the same stale claim) exactly one
    wins, and a fresh claim is never taken over. The same update counts the attempt; on
    success `batch` holds the new claim and count."""
    claimed = batch.check_started_at
    as_read = Q(check_started_at__isnull=True) if claimed is None else Q(check_started_at=claimed)
    won = ScoringBatch.objects.filter(
        check_claimable(now), as_read, pk=batch.pk, check_attempts=batch.check_attempts
    ).update(check_started_at=now, check_attempts=F("check_attempts") + 1)
    if won:
        batch.check_started_at, batch.check_attempts = now, batch.check_attempts + 1
    return bool(won)


# A failed check's error as the batch keeps it: the exception's class and the start of its message.
CHECK_ERROR_CHARS = 2000


def scoring_check_failed(batch: ScoringBatch, error: BaseException) -> str:
    """Record why the batch's check failed (the exception's class and message, server paths
    cut to file names as in a run's error, then cut to CHECK_ERROR_CHARS: the model page shows
    it). One small update of its own, made after the failed check rolled back, so the error
    survives it. Returns the text stored."""
    text = server_redact(f"{type(error).__name__}: {error}")
    if len(text) > CHECK_ERROR_CHARS:
        text = text[: CHECK_ERROR_CHARS - 1] + "…"
    ScoringBatch.objects.filter(pk=batch.pk).update(check_error=text)
    batch.check_error = text
    return text


@transaction.atomic
def scoring_check(*, batch: ScoringBatch, captured_at: datetime | None = None) -> MonitorSnapshot:
    """Check the batch a score run scored (drift + freshness of that same data; performance
    comes later, from outcomes) and link the snapshot to the batch. `captured_at`: as in
    model_check (the demo dates its history). One transaction: a check that fails leaves no
    snapshot (nor alerts) behind, so its retry records the batch's only one."""
    data = batch.batch_json or {}
    source = {"dataset_id": data["dataset_id"]} if data.get("dataset_id") else {"synthetic": data}
    snapshot = model_check(
        model=batch.model, source="scheduled", captured_at=captured_at, with_performance=False, **source
    )
    ScoringBatch.objects.filter(pk=batch.pk).update(snapshot=snapshot)
    batch.snapshot = snapshot
    return snapshot
