"""A model's health from its latest monitoring snapshot: ok / warning / critical / unknown.

Pure (no Django): the snapshot may be any object with ``alerts_json`` and
``performance_metrics_json`` attributes (a MonitorSnapshot, or a stand-in in tests)."""

from __future__ import annotations

from typing import Any

from runs.metrics import metric_checks

HEALTH_RANK = {"unknown": 0, "ok": 1, "warning": 2, "critical": 3}


def firing_rules(alerts_json: dict | None) -> list[tuple[str, str]]:
    """The manifest's alert rules that fire in a snapshot's ``alerts_json``, as
    ``(name, severity)`` (severity "warning" when the rule names none); alerts posted by an
    external system (under "external") are not rules and are left out."""
    return [
        (name, result.get("severity") or "warning")
        for name, result in (alerts_json or {}).items()
        if name != "external" and _fires(result)
    ]


def _fires(result: Any) -> bool:
    """An alert rule's result fires only when its condition was true (not false, not unknown)."""
    return isinstance(result, dict) and result.get("firing") is True


def snapshot_health(snapshot: Any | None, manifest: dict, family: str) -> dict:
    """ok / warning / critical from a snapshot's firing alerts and its metrics against the
    manifest's thresholds; "unknown" before the first check. Reasons say why."""
    if snapshot is None:
        return {"status": "unknown", "reasons": ["not checked yet"]}
    worst, reasons = "ok", []

    def note(severity: Any, reason: str) -> None:
        nonlocal worst
        severity = severity if severity in ("warning", "critical") else "warning"
        reasons.append(reason)
        if HEALTH_RANK[severity] > HEALTH_RANK[worst]:
            worst = severity

    for name, result in (snapshot.alerts_json or {}).items():
        if name == "external" and isinstance(result, dict):
            for ext_name, ext in result.items():
                if (
                    isinstance(ext, dict)
                    and ext.get("firing", True)
                    and ext.get("severity") in ("warning", "critical")
                ):
                    note(ext["severity"], f"external alert {ext_name}")
        elif _fires(result):
            note(result.get("severity"), f"alert {name} ({result.get('severity') or 'warning'})")
    for name, check in metric_checks(manifest, family, snapshot.performance_metrics_json or {}).items():
        if check["status"] in ("warning", "critical"):
            note(check["status"], f"{name} = {check['value']:.4g} ({check['status']})")
    return {"status": worst, "reasons": reasons}
