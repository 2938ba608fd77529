"""Metric definitions, one module per family (plain numpy, no Django).

Names match ``recipes.catalog.METRICS``; each function documents its definition.
"""

from recipes.catalog import PRIMARY_METRIC, meets_target, metric_direction, metric_status


def metric_checks(manifest: dict, family: str, metrics: dict) -> dict:
    """Each metric value against the manifest's target / warning / critical levels.

    Returns {name: {"value", "target", "threshold_warning", "threshold_critical", "direction",
    "status": "pass"|"warning"|"critical"|None, "meets_target"}}; metrics the manifest does not
    define thresholds for get status None.
    """
    defined = ((manifest or {}).get("evaluation") or {}).get("metrics") or {}
    checks = {}
    for name, value in metrics.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            continue
        spec = defined.get(name) if isinstance(defined.get(name), dict) else {}
        direction = metric_direction(family, name, spec.get("direction"))
        entry = {
            "value": float(value),
            "target": spec.get("target"),
            "threshold_warning": spec.get("threshold_warning"),
            "threshold_critical": spec.get("threshold_critical"),
            "direction": direction,
            "status": None,
            "meets_target": None,
        }
        if direction and spec:
            entry["status"] = metric_status(
                value, direction, spec.get("threshold_warning"), spec.get("threshold_critical")
            )
            entry["meets_target"] = meets_target(value, direction, spec.get("target"))
        checks[name] = entry
    return checks


# The outcome of a run from its metric checks: the worst status any checked metric reached.
OUTCOME_ORDER = ("ok", "warning", "critical")
_STATUS_OUTCOME = {"pass": "ok", "warning": "warning", "critical": "critical"}


def check_outcome(checks: dict) -> str:
    """The worst status among the checked metrics: ``ok``, ``warning`` or ``critical``; or
    ``""`` when no metric has a threshold to check against (nothing to judge)."""
    seen = [
        _STATUS_OUTCOME[c["status"]]
        for c in (checks or {}).values()
        if isinstance(c, dict) and c.get("status") in _STATUS_OUTCOME
    ]
    return max(seen, key=OUTCOME_ORDER.index) if seen else ""


def check_breaches(checks: dict) -> list[dict]:
    """The metrics past their warning or critical threshold, critical first:
    [{"metric", "value", "status", "threshold", "direction"}]."""
    out = []
    for name, c in (checks or {}).items():
        if not isinstance(c, dict) or c.get("status") not in ("warning", "critical"):
            continue
        key = "threshold_critical" if c["status"] == "critical" else "threshold_warning"
        out.append(
            {
                "metric": name,
                "value": c.get("value"),
                "status": c["status"],
                "threshold": c.get(key),
                "direction": c.get("direction"),
            }
        )
    out.sort(key=lambda b: b["status"] != "critical")
    return out


def primary_check(family: str, checks: dict) -> tuple[str, dict] | None:
    """The metric a list shows for a run: the family's primary metric (the catalog's) when the run has it, else the first checked metric, else the
    first metric."""
    checks = {k: v for k, v in (checks or {}).items() if isinstance(v, dict)}
    if not checks:
        return None
    name = PRIMARY_METRIC.get(family)
    if name not in checks:
        name = next((k for k, v in checks.items() if v.get("status")), next(iter(checks)))
    return name, checks[name]
