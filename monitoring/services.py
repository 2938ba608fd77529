"""Writes on monitoring: record a snapshot (posted or computed) and keep alert episodes."""

from __future__ import annotations

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace.ids import new_id
from models_registry.models import MLModel

from .models import Alert, MonitorSnapshot


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
    from . import rules

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
    open_alerts = {a.name: a for a in Alert.objects.select_for_update().filter(model=model, state="firing")}
    for name, result in evaluated.items():
        current = open_alerts.get(name)
        if result.get("firing"):
            if current is None:
                Alert.objects.create(
                    model=model,
                    name=name,
                    severity=result.get("severity", "warning"),
                    condition=result.get("condition", ""),
                    state="firing",
                    fired_at=captured_at,
                    last_values_json=result.get("values", {}),
                    first_snapshot=snapshot,
                    last_snapshot=snapshot,
                )
            else:
                current.last_snapshot = snapshot
                current.last_values_json = result.get("values", {})
                current.save(update_fields=["last_snapshot", "last_values_json"])
        elif result.get("firing") is False and current is not None:
            # None (unknown: a name the snapshot lacks) keeps the alert as it is.
            current.state = "resolved"
            current.resolved_at = captured_at
            current.last_snapshot = snapshot
            current.save(update_fields=["state", "resolved_at", "last_snapshot"])
    # Rules removed from the manifest no longer watch anything: close their episodes.
    for name, current in open_alerts.items():
        if name not in evaluated:
            current.state = "resolved"
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
    return snapshot
