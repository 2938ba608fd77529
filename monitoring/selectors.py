"""Reads of monitoring state shared by pages: the library's Monitoring tab, a model page's
Monitoring tab (snapshots, alerts, chart data of one model) and the Run check form."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, timedelta

from django.db.models import Count, OuterRef, Q, Subquery
from django.utils import timezone

from models_registry.models import MLModel, MLModelQuerySet, ModelStatus
from recipes.retraining import policy as retrain_policy
from runs import artifacts
from runs.models import RunStatus
from runs.selectors import model_training_batch

from . import attribution
from .health import snapshot_health
from .models import Alert, AlertState, Comparison, MonitorSnapshot, Retrain, ScoringBatch

# The model page charts at most this many snapshots (the newest) and lists this many alerts.
CHART_SNAPSHOTS = 500
PAGE_ALERTS = 200
# ... and this many scoring batches.
PAGE_BATCHES = 20
# The files a score run writes (runs.pipeline): its predictions, and their CSV export.
PREDICTIONS_PARQUET = "predictions.parquet"
PREDICTIONS_CSV = "predictions.csv"
# A batch's check still without its snapshot this long after it was claimed has failed (it
# raised, or its worker died): the page says "check failed" and the workers' next tick claims
# it again (so a failing check is retried once per CHECK_GRACE) ...
CHECK_GRACE = timedelta(minutes=15)
# ... up to this many claims in all: then the workers give up on it and the page says
# "check gave up", with the last failure (ScoringBatch.check_error). Nothing retries a
# given-up check by itself. A person can check the same data with the model page's Run check
# (a snapshot of its own, not linked to the batch), or hand the batch back to the workers by
# setting its check_attempts below CHECK_MAX_ATTEMPTS (admin shell:
# ``ScoringBatch.objects.filter(pk=...).update(check_attempts=0)``): its claim is stale, so
# the next tick claims it, with CHECK_MAX_ATTEMPTS more tries.
CHECK_MAX_ATTEMPTS = 5


def check_claim_expiry(now: datetime) -> datetime:
    """A batch's check claimed before this time (and still without its snapshot) has failed:
    the one definition of a stale claim, for the tick's retry (check_claimable) and the
    page's "check failed" (batch_status)."""
    return now - CHECK_GRACE


def check_claimable(now: datetime) -> Q:
    """The batches a worker may claim the check of at `now`: not checked (no snapshot), with
    attempts left (fewer than CHECK_MAX_ATTEMPTS claims), and never claimed or claimed by a
    check that failed (before check_claim_expiry)."""
    return (
        Q(snapshot__isnull=True)
        & Q(check_attempts__lt=CHECK_MAX_ATTEMPTS)
        & (Q(check_started_at__isnull=True) | Q(check_started_at__lt=check_claim_expiry(now)))
    )


def production_models(user) -> MLModelQuerySet:
    """The production models `user` may see, each annotated with `latest_snapshot_id`.

    Not for_list(): health needs each version's manifest (metric thresholds), and the
    training run is not shown."""
    latest = (
        MonitorSnapshot.objects.filter(model=OuterRef("pk")).order_by("-captured_at", "-id").values("id")[:1]
    )
    return (
        MLModel.objects.visible_to(user)
        .select_related("recipe", "recipe_version")
        .filter(status=ModelStatus.PRODUCTION)
        .annotate(latest_snapshot_id=Subquery(latest))
    )


def latest_snapshots(models: Iterable[MLModel]) -> dict[str, MonitorSnapshot]:
    """model id -> its latest snapshot, for models from production_models() (one query)."""
    models = [m for m in models if m.latest_snapshot_id]
    by_id = MonitorSnapshot.objects.in_bulk([m.latest_snapshot_id for m in models])
    return {m.pk: by_id[m.latest_snapshot_id] for m in models if m.latest_snapshot_id in by_id}


def open_alert_counts(model_ids: Iterable[str]) -> dict[str, dict[str, int]]:
    """model id -> {severity: number of firing alerts} (one query; models without any absent)."""
    counts: dict[str, dict[str, int]] = {}
    for row in (
        Alert.objects.filter(model_id__in=list(model_ids), state=AlertState.FIRING)
        .values("model_id", "severity")
        .annotate(n=Count("id"))
    ):
        counts.setdefault(row["model_id"], {})[row["severity"]] = row["n"]
    return counts


def open_alert_count(model: MLModel) -> int:
    """How many of the model's alerts are firing (the model page's header badge)."""
    return Alert.objects.filter(model_id=model.pk, state=AlertState.FIRING).count()


def _chart_snapshot(values: dict) -> dict:
    """A snapshot row in the shape monitoring.charts draws."""
    return {
        "captured_at": values["captured_at"],
        "performance": values["performance_metrics_json"],
        "drift": values["drift_metrics_json"],
        "freshness": values["data_freshness_json"],
        "alerts": values["alerts_json"],
    }


def model_monitoring(model: MLModel) -> dict:
    """What the model page's Monitoring tab shows of one model (three queries):

    * ``rows``: its newest CHART_SNAPSHOTS snapshots (SERIES_FIELDS values), oldest first;
    * ``chart_snapshots``: the same in monitoring.charts' shape;
    * ``latest``: its newest snapshot (None before the first check);
    * ``alerts``: its newest PAGE_ALERTS alerts, newest first, and ``events``, the same as
      monitoring.charts.alert_timeline takes them;
    * ``drifted``: the features the latest snapshot found drifted, sorted."""
    rows = list(
        MonitorSnapshot.objects.filter(model_id=model.pk)
        .order_by("-captured_at", "-id")
        .values(*MonitorSnapshot.SERIES_FIELDS)[:CHART_SNAPSHOTS]
    )
    rows.reverse()
    alerts = list(Alert.objects.filter(model_id=model.pk).order_by("-fired_at", "id")[:PAGE_ALERTS])
    latest = MonitorSnapshot.objects.filter(model_id=model.pk).order_by("-captured_at", "-id").first()
    drift = (latest.drift_metrics_json or {}) if latest else {}
    return {
        "rows": rows,
        "chart_snapshots": [_chart_snapshot(r) for r in rows],
        "latest": latest,
        "alerts": alerts,
        "events": [
            {"name": a.name, "severity": a.severity, "fired_at": a.fired_at, "resolved_at": a.resolved_at}
            for a in alerts
        ],
        "drifted": sorted(
            name
            for name, entry in (drift.get("features") or {}).items()
            if isinstance(entry, dict) and entry.get("drifted")
        ),
    }


# The attribution-drift card shows the rank change of this many of the newest checks.
ATTRIBUTION_HISTORY = 20


def model_attribution_drift(model: MLModel) -> dict:
    """What the Monitoring tab's attribution-drift card shows (one query; the partial
    ``templates/monitoring/_attribution_drift.html``):

    * ``has_explanations``: the model's train run wrote an explanation (without one, no
      check computes attribution drift);
    * ``latest``: the newest snapshot's stored entry (monitoring.attribution.drift_entry:
      ``rank_change``, ``rows``, ``method``, … or ``error``), None before the first one, and
      ``latest_at`` its time;
    * ``rows``: per feature its training and current share and rank (attribution.table);
    * ``history``: ``{"captured_at", "rank_change"}`` of the newest ATTRIBUTION_HISTORY
      snapshots that have one, oldest first."""
    recent = list(
        MonitorSnapshot.objects.filter(model_id=model.pk, drift_metrics_json__has_key="explain")
        .order_by("-captured_at", "-id")
        .values("captured_at", "drift_metrics_json__explain")[:ATTRIBUTION_HISTORY]
    )
    entries = [(r["captured_at"], r["drift_metrics_json__explain"]) for r in recent]
    entries = [(at, e) for at, e in entries if isinstance(e, dict)]
    latest_at, latest = entries[0] if entries else (None, None)
    return {
        "has_explanations": artifacts.has_explanations(model),
        "latest": latest,
        "latest_at": latest_at,
        "rows": attribution.table(latest),
        "history": [
            {"captured_at": at, "rank_change": e.get("rank_change")}
            for at, e in reversed(entries)
            if e.get("rank_change") is not None
        ],
    }


# What the next window of a world continues from a recorded batch: the world, where the
# window ended, and the ground truth then (a concept change stays, runs.families.worlds).
CONTINUED = ("rows", "seed", "world", "window", "concept")


def last_synthetic_batch(model, seed: int | None = None, *, training: dict | None = None) -> dict | None:
    """The newest synthetic batch checked for ``model`` in the world of ``seed`` (default:
    the world it was trained in: ``training``, its training batch, if the caller has it),
    as its snapshot recorded it — the next check continues after it."""
    training = training if training is not None else model_training_batch(model)
    if seed is None:
        if training is None:
            return None
        seed = int(training.get("seed") or 0)
    recent = (
        MonitorSnapshot.objects.filter(model=model, data_freshness_json__has_key="batch")
        .order_by("-captured_at", "-id")
        .values_list("data_freshness_json", flat=True)[:50]
    )
    for details in recent:
        batch = (details or {}).get("batch") or {}
        if batch.get("source") == "synthetic" and batch.get("seed") == seed and batch.get("window"):
            return {k: batch.get(k) for k in CONTINUED}
    return None


def is_batch_mode(manifest: dict | None) -> bool:
    """The manifest deploys the model as a scheduled batch (deployment.mode: batch)."""
    return ((manifest or {}).get("deployment") or {}).get("mode") == "batch"


def scoring_batches(model: MLModel):
    """The model's scoring batches, newest first, with their run and snapshot."""
    return (
        ScoringBatch.objects.filter(model_id=model.pk)
        .select_related("run", "snapshot")
        .order_by("-scheduled_for", "-id")
    )


def latest_scored_batch(model: MLModel) -> ScoringBatch | None:
    """The model's newest batch whose score run succeeded (predictions to download or join)."""
    return scoring_batches(model).filter(run__status=RunStatus.SUCCEEDED).first()


def last_scored_batch(model: MLModel, training: dict | None) -> dict | None:
    """The newest synthetic window the model scored in the world it was trained in
    (``training``: its training batch): the next scoring continues after it (one query)."""
    seed = int((training or {}).get("seed") or 0)
    batch = (
        ScoringBatch.objects.filter(
            model_id=model.pk,
            window_key__startswith="synthetic:",
            batch_json__seed=seed,
            batch_json__has_key="window",
        )
        .order_by("-scheduled_for", "-id")
        .values_list("batch_json", flat=True)
        .first()
    )
    return {k: batch.get(k) for k in CONTINUED} if batch else None


def batch_status(batch: ScoringBatch) -> str:
    """queued / running / failed / cancelled (the score run's), then scored / checking /
    checked, or, once its claim is stale (check_claim_expiry), "check failed" while it has
    attempts left (the next tick retries it: check_claimable) and "check gave up" after
    CHECK_MAX_ATTEMPTS (nothing retries it)."""
    if batch.run.status != RunStatus.SUCCEEDED:
        return batch.run.status
    if batch.snapshot_id:
        return "checked"
    if batch.check_started_at is None:
        return "scored"  # the workers' next tick checks it
    if batch.check_started_at >= check_claim_expiry(timezone.now()):
        return "checking"
    return "check gave up" if batch.check_attempts >= CHECK_MAX_ATTEMPTS else "check failed"


def model_scoring(model: MLModel) -> dict:
    """The model page's Scoring section (one query): ``batch_mode`` and its newest
    PAGE_BATCHES ``batches``, each with its status, rows, the check's health and outcomes
    (a failed check's error and attempts are on the batch; ``check_max_attempts``: of how many)."""
    manifest = model.recipe_version.manifest or {}
    rows = []
    for batch in scoring_batches(model)[:PAGE_BATCHES]:
        files = (batch.run.artifacts_json or {}).get("files") or {}
        scoring = (batch.run.artifacts_json or {}).get("scoring") or {}
        rows.append(
            {
                "batch": batch,
                "status": batch_status(batch),
                "rows": scoring.get("rows"),
                "health": snapshot_health(batch.snapshot, manifest, model.recipe.model_family)
                if batch.snapshot_id
                else None,
                "downloads": [
                    name.rsplit(".", 1)[1] for name in (PREDICTIONS_CSV, PREDICTIONS_PARQUET) if name in files
                ],
            }
        )
    return {"batch_mode": is_batch_mode(manifest), "batches": rows, "check_max_attempts": CHECK_MAX_ATTEMPTS}


PAGE_RETRAINS = 10


def model_retrains(model: MLModel):
    """The retrains of `model` as champion, newest first, with their challenger and run."""
    return (
        Retrain.objects.filter(champion_id=model.pk)
        .select_related("challenger", "run")
        .order_by("-created_at", "-id")
    )


def model_retraining(model: MLModel) -> dict:
    """The model page's Retraining section: the manifest's ``policy`` (or None), the newest
    retrains of this model as champion (with their comparison), for a challenger the retrain
    that made it, the other trained models of the recipe it can be compared with, and its
    newest comparisons."""
    return {
        "policy": retrain_policy(model.recipe_version.manifest or {}),
        "retrains": list(model_retrains(model).select_related("comparison")[:PAGE_RETRAINS]),
        "comparable": list(
            MLModel.objects.filter(recipe_id=model.recipe_id, artifacts_json__has_key="model")
            .exclude(pk=model.pk)
            .exclude(status=ModelStatus.ARCHIVED)
            .only("id", "name", "status")
            .order_by("-created_at")[:PAGE_RETRAINS]
        ),
        "comparisons": list(
            Comparison.objects.filter(reference_id=model.pk).only("id", "summary", "created_at")[
                :PAGE_RETRAINS
            ]
        ),
        "made_by": Retrain.objects.filter(challenger_id=model.pk).select_related("champion").first()
        if model.challenger_of_id
        else None,
    }
