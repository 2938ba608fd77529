"""Batch scoring: what a batch-mode model scores next, the score run and its batch row, and
the check of a scored batch."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.db.models import Exists, OuterRef, Q

from audit import services as audit
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
    (its check failed: monitoring.selectors.check_claimable). The conditional update matches
    the claim as `batch` holds it, so of two workers that read the same batch (unclaimed, or
    with the same stale claim) exactly one wins, and a fresh claim is never taken over."""
    claimed = batch.check_started_at
    as_read = Q(check_started_at__isnull=True) if claimed is None else Q(check_started_at=claimed)
    return bool(
        ScoringBatch.objects.filter(check_claimable(now), as_read, pk=batch.pk).update(check_started_at=now)
    )


def scoring_check(*, batch: ScoringBatch, captured_at: datetime | None = None) -> MonitorSnapshot:
    """Check the batch a score run scored (drift + freshness of that same data; performance
    comes later, from outcomes) and link the snapshot to the batch. `captured_at`: as in
    model_check (the demo dates its history)."""
    data = batch.batch_json or {}
    source = {"dataset_id": data["dataset_id"]} if data.get("dataset_id") else {"synthetic": data}
    snapshot = model_check(
        model=batch.model, source="scheduled", captured_at=captured_at, with_performance=False, **source
    )
    ScoringBatch.objects.filter(pk=batch.pk).update(snapshot=snapshot)
    batch.snapshot = snapshot
    return snapshot
