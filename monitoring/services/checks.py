"""A monitoring check: compute a snapshot of a model on a batch (an uploaded dataset or a
window of its synthetic world), record it and keep the alert episodes."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, field_error, lookup
from mlworkspace.ids import new_id
from mlworkspace.metrics import timed_check
from models_registry.models import MLModel
from notifications.services import notify
from runs import artifacts
from runs.data import read_table
from runs.families import get_family, worlds
from runs.models import Dataset
from runs.selectors import model_training_batch
from runs.services import dataset_require_ready, synthetic_resolve

from .. import drift as drift_lib
from .. import rules
from ..freshness import batch_freshness
from ..models import Alert, AlertState, MonitorSnapshot
from ..selectors import last_synthetic_batch
from .retraining import retrain_after_snapshot


def _manifest(model: MLModel) -> dict:
    return model.recipe_version.manifest or {}


@transaction.atomic
def snapshot_record(
    *,
    model: MLModel,
    performance: dict | None = None,
    drift: dict | None = None,
    freshness: dict | None = None,
    external_alerts: dict | None = None,
    captured_at: datetime | None = None,
    source: str = "external",
    dataset=None,
    row_count: int | None = None,
) -> MonitorSnapshot:
    """Store a snapshot and evaluate the manifest's alert rules against it.

    Each rule that fires opens an alert (or keeps the open one); a rule that no longer fires
    resolves its open alert. Alerts posted by an external system are kept as they were sent,
    under "external".
    """
    captured_at = captured_at or timezone.now()
    manifest = _manifest(model)
    alert_rules = ((manifest.get("monitoring") or {}).get("alerts")) or {}
    context = rules.snapshot_context(performance or {}, drift or {}, freshness or {})
    evaluated = rules.evaluate_alerts(alert_rules, context)
    alerts_json = dict(evaluated)
    if external_alerts:
        alerts_json["external"] = external_alerts
    snapshot = MonitorSnapshot.objects.create(
        id=new_id("snap"),
        model=model,
        captured_at=captured_at,
        performance_metrics_json=performance or {},
        drift_metrics_json=drift or {},
        data_freshness_json=freshness or {},
        alerts_json=alerts_json,
        source=source,
        dataset=dataset,
        row_count=row_count,
    )
    open_alerts = {
        a.name: a for a in Alert.objects.select_for_update().filter(model=model, state=AlertState.FIRING)
    }
    opened = []
    for name, result in evaluated.items():
        current = open_alerts.get(name)
        if result.get("firing"):
            if current is None:
                opened.append(name)
                alert = Alert.objects.create(
                    model=model,
                    name=name,
                    severity=result.get("severity", "warning"),
                    condition=result.get("condition", ""),
                    state=AlertState.FIRING,
                    fired_at=captured_at,
                    last_values_json=result.get("values", {}),
                    first_snapshot=snapshot,
                    last_snapshot=snapshot,
                )
                _notify_alert("alert.opened", model, alert, snapshot)
            else:
                current.last_snapshot = snapshot
                current.last_values_json = result.get("values", {})
                current.save(update_fields=["last_snapshot", "last_values_json"])
        elif result.get("firing") is False and current is not None:
            # None (unknown: a name the snapshot lacks) keeps the alert as it is.
            current.state = AlertState.RESOLVED
            current.resolved_at = captured_at
            current.last_snapshot = snapshot
            current.save(update_fields=["state", "resolved_at", "last_snapshot"])
            _notify_alert("alert.resolved", model, current, snapshot)
    # Rules removed from the manifest no longer watch anything: close their episodes.
    for name, current in open_alerts.items():
        if name not in evaluated:
            current.state = AlertState.RESOLVED
            current.resolved_at = captured_at
            current.save(update_fields=["state", "resolved_at"])
    MLModel.objects.filter(pk=model.pk).update(last_check_at=captured_at)
    firing = sorted(name for name, result in evaluated.items() if result.get("firing"))
    audit.record(
        None,
        "monitoring.check",
        model,
        detail={"snapshot_id": snapshot.id, "source": source, "firing": firing},
    )
    # The retraining policy acts as the check completes: an alert it opened, enough new rows.
    retrain_after_snapshot(model=model, snapshot=snapshot, opened=opened)
    return snapshot


def _notify_alert(event: str, model: MLModel, alert: Alert, snapshot: MonitorSnapshot) -> None:
    """Webhooks and e-mail subscribers of the recipe hear that an alert opened or resolved."""
    verb = "opened" if event == "alert.opened" else "resolved"
    notify(
        event,
        recipe=model.recipe,
        payload={
            "summary": f"{alert.severity} alert {alert.name} {verb} on {model.name}",
            "model_id": model.pk,
            "model_name": model.name,
            "alert_id": alert.pk,
            "alert": alert.name,
            "severity": alert.severity,
            "condition": alert.condition,
            "values": alert.last_values_json,
            "snapshot_id": snapshot.pk,
            "fired_at": alert.fired_at,
            "resolved_at": alert.resolved_at,
        },
        at=snapshot.captured_at,
    )


# --------------------------------------------------------------------------- a check


def synthetic_batch(model: MLModel, synthetic: dict | None) -> dict:
    """Resolve a check's synthetic request: by default the next window of the model's world,
    after the last batch checked (or, the first time, after its training data)."""
    synthetic = dict(synthetic or {})
    after = last_synthetic_batch(model, synthetic.get("seed"))
    if after is None:
        after = model_training_batch(model)
    return synthetic_resolve(family_name=model.recipe.model_family, synthetic=synthetic, after=after)


def _batch(
    model: MLModel, *, dataset_id=None, synthetic=None, profile=None
) -> tuple[pd.DataFrame, Dataset | None, dict]:
    """The batch to check and what it is: ``{"source": "dataset", ...}`` or the resolved
    synthetic batch (whose timestamps are moved so its newest row is 'now')."""
    family = get_family(model.recipe.model_family)
    if dataset_id is not None:
        dataset = lookup(Dataset, "dataset_id", dataset_id)
        dataset_require_ready(dataset, "dataset_id")  # still being profiled, or invalid: a 400
        frame = read_table(dataset.file.path, dataset.format)
        return frame, dataset, {"source": "dataset", "dataset_id": dataset.pk, "name": dataset.name}
    resolved = synthetic_batch(model, synthetic)
    frame = worlds.generate(family, resolved)
    shift = resolved["shift"]
    unknown = [name for name in shift if name not in frame.columns]
    if unknown:
        raise field_error("synthetic/shift", f"unknown column '{unknown[0]}'")
    if shift:
        frame = drift_lib.shift_batch(frame, shift, profile, resolved["seed"])
    description = worlds.describe(family, resolved)
    return frame, None, {"source": "synthetic", **resolved, "description": description}


@timed_check  # /metrics: mlworkspace_monitoring_check_duration_seconds{family, source}
def model_check(
    *,
    model: MLModel,
    source: str = "check",
    dataset_id: str | None = None,
    synthetic: dict | None = None,
    captured_at: datetime | None = None,
    with_performance: bool = True,
) -> MonitorSnapshot:
    """Compute and store a snapshot for `model` on a batch (an uploaded dataset, or a
    synthetic batch of its world); alert rules are evaluated (snapshot_record).

    `with_performance=False` (the check of a scored batch) leaves performance out even when
    the batch carries labels: a scored batch's performance comes from its outcomes.

    `captured_at` (default now) also anchors synthetic batches' timestamps: backfilling a
    history (seed_demo) checks each batch as of its own time."""
    if not model.training_run_id or not model.artifacts_json.get("model"):
        raise Conflict(f"Model '{model.id}' has no trained artifact yet; train it before checking it.")
    manifest = model.recipe_version.manifest
    family_name = model.recipe.model_family
    family = get_family(family_name)
    run_id, run_artifacts = model.training_run_id, model.artifacts_json
    profile = artifacts.read_json_artifact(run_id, run_artifacts, "profile.json")
    frame, dataset, batch = _batch(model, dataset_id=dataset_id, synthetic=synthetic, profile=profile)
    real_times = batch["source"] == "dataset"
    fitted, _schema = artifacts.load_model(model)
    drift_config = (manifest.get("monitoring") or {}).get("drift") or {}
    # Feature drift and freshness need only the data. Scoring can legitimately fail on a
    # batch (a forecaster only scores periods after its history): then the snapshot says so
    # and carries no prediction drift or performance, instead of failing the whole check.
    scoring_error = None
    try:
        prediction = np.asarray(family.predict(fitted, frame), dtype=float)
    except ValueError as exc:
        prediction, scoring_error = None, f"the model cannot score this batch: {exc}"
    drift = {}
    if drift_config.get("features"):
        drift = drift_lib.drift_report(
            profile,
            frame,
            method=drift_config.get("method", "PSI"),
            threshold=float(drift_config.get("threshold", 0.2)),
            features=list(drift_config["features"]),
            prediction=prediction,
        )
    if scoring_error and drift:
        drift["prediction"] = {"error": scoring_error, "drifted": False}
    performance = {}
    labels = (manifest.get("requirements") or {}).get("labels") or []
    if (
        with_performance
        and scoring_error is None
        and labels
        and all(label in frame.columns for label in labels)
    ):
        prepared = family.prepare(frame, manifest, log=lambda message: None)
        metrics, _predictions, _plots = family.evaluate(fitted, prepared, manifest)
        performance = {
            k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)
        }
    captured_at = captured_at or timezone.now()
    freshness = batch_freshness(frame, manifest, family_name, real_times=real_times, now=captured_at)
    freshness["batch"] = batch  # which world and window (or dataset) the batch came from
    return snapshot_record(
        model=model,
        performance=performance,
        drift=drift,
        freshness=freshness,
        source=source,
        dataset=dataset,
        row_count=len(frame),
        captured_at=captured_at,
    )
