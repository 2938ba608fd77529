"""Metric definitions, one module per family (plain numpy, no Django).

Names match ``recipes.catalog.METRICS``; each function documents its definition.
"""

from recipes.catalog import meets_target, metric_direction, metric_status


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
