"""The approval gate: the evidence a recipe version needs before it can be approved.

A version may be approved when a succeeded backtest or eval run on that exact version
* breaches no critical threshold of the version's manifest, and
* when an earlier version is approved, is worse than that version's evidence on no shared
  metric by more than ``evaluation.approval.regression_tolerance`` (relative, default 5%).

``evaluate_evidence`` is the rule on plain values; ``approval_gate`` finds the runs and applies
it. ``recipes.services.version_approve`` enforces the result (or records an override).
"""

from __future__ import annotations

import math

from django.utils import timezone

from mlworkspace.errors import field_error
from runs.metrics import metric_checks
from runs.models import Run, RunStatus, RunType

from .catalog import metric_direction
from .models import RecipeVersion
from .selectors import latest_approved

DEFAULT_TOLERANCE = 0.05
EVIDENCE_RUN_TYPES = (RunType.BACKTEST, RunType.EVAL)
CANDIDATES_CHECKED = 20


def tolerance_of(manifest: dict) -> float:
    approval = ((manifest or {}).get("evaluation") or {}).get("approval") or {}
    value = approval.get("regression_tolerance") if isinstance(approval, dict) else None
    return (
        float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else DEFAULT_TOLERANCE
    )


def _number(value) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def compare_metrics(
    *, family: str, manifest: dict, metrics: dict, previous: dict, tolerance: float
) -> list[dict]:
    """Each metric both runs report, with a direction: {"metric", "direction", "value",
    "previous", "worse_by" (relative; > 0 is worse, measured against |previous|, or absolute
    when previous is 0), "regressed"}."""
    defined = ((manifest or {}).get("evaluation") or {}).get("metrics") or {}
    rows = []
    for name in sorted(set(metrics) & set(previous)):
        value, before = _number(metrics[name]), _number(previous[name])
        spec = defined.get(name) if isinstance(defined.get(name), dict) else {}
        direction = metric_direction(family, name, spec.get("direction"))
        if value is None or before is None or direction is None:
            continue
        worse = (before - value) if direction == "higher" else (value - before)
        worse_by = worse / abs(before) if before != 0 else worse
        rows.append(
            {
                "metric": name,
                "direction": direction,
                "value": value,
                "previous": before,
                "worse_by": worse_by,
                "regressed": worse_by > tolerance + 1e-12,
            }
        )
    return rows


def evaluate_evidence(
    *, family: str, manifest: dict, metrics: dict, previous: dict | None, tolerance: float
) -> dict:
    """{"passed", "breaches", "comparison", "reasons"} for one run's metrics."""
    checks = metric_checks(manifest, family, metrics)
    breaches = [
        {"metric": name, "value": c["value"], "threshold_critical": c["threshold_critical"]}
        for name, c in sorted(checks.items())
        if c["status"] == "critical"
    ]
    comparison = (
        compare_metrics(
            family=family, manifest=manifest, metrics=metrics, previous=previous, tolerance=tolerance
        )
        if previous
        else []
    )
    reasons = [
        f"{b['metric']} = {b['value']:.4g} breaches its critical threshold {b['threshold_critical']}"
        for b in breaches
    ]
    reasons += [
        f"{r['metric']} = {r['value']:.4g} is {r['worse_by']:.1%} worse than the approved version's "
        f"{r['previous']:.4g} (tolerance {tolerance:.1%})"
        for r in comparison
        if r["regressed"]
    ]
    return {"passed": not reasons, "breaches": breaches, "comparison": comparison, "reasons": reasons}


def _evidence_runs(version: RecipeVersion):
    return Run.objects.filter(
        recipe_version=version, run_type__in=EVIDENCE_RUN_TYPES, status=RunStatus.SUCCEEDED
    ).order_by("-finished_at", "-id")


def _reference(previous: RecipeVersion | None) -> tuple[dict | None, str | None]:
    """The metrics an approved earlier version is compared by: its recorded evidence run,
    else its newest succeeded backtest/eval run. (None, None) when it has none."""
    if previous is None:
        return None, None
    run = None
    if previous.approval_run_id:
        run = Run.objects.filter(pk=previous.approval_run_id, status=RunStatus.SUCCEEDED).first()
    run = run or _evidence_runs(previous).first()
    return (run.metrics_json, run.id) if run is not None else (None, None)


def approval_gate(version: RecipeVersion, run: Run | None = None) -> dict:
    """Whether `version` may be approved, on `run` or on the best of its evidence runs:
    {"passed", "reasons", "evidence": {run_id, run_type, dataset_id, ...evaluation} | None,
    "runs_checked", "tolerance", "compared_with": {version_id, version, run_id} | None}."""
    manifest, family = version.manifest, version.recipe.model_family
    if run is not None:
        if run.recipe_version_id != version.pk:
            raise field_error("evidence_run_id", f"run '{run.pk}' is not a run of version {version.version}")
        if run.run_type not in EVIDENCE_RUN_TYPES or run.status != RunStatus.SUCCEEDED:
            raise field_error("evidence_run_id", f"run '{run.pk}' is not a succeeded backtest or eval run")
    tolerance = tolerance_of(manifest)
    previous = latest_approved(version.recipe_id, below=version)
    reference, reference_run = _reference(previous)
    compared_with = (
        {"version_id": previous.pk, "version": previous.version, "run_id": reference_run}
        if previous is not None
        else None
    )
    candidates = [run] if run is not None else list(_evidence_runs(version)[:CANDIDATES_CHECKED])
    gate = {
        "passed": False,
        "reasons": [],
        "evidence": None,
        "runs_checked": len(candidates),
        "tolerance": tolerance,
        "compared_with": compared_with,
        "evaluated_at": timezone.now().isoformat(),
    }
    if previous is not None and reference is None:
        gate["notes"] = [f"approved version {previous.version} has no backtest or eval run to compare with"]
    first_failure = None
    for candidate in candidates:
        result = evaluate_evidence(
            family=family,
            manifest=manifest,
            metrics=candidate.metrics_json or {},
            previous=reference,
            tolerance=tolerance,
        )
        evidence = {
            "run_id": candidate.pk,
            "run_type": candidate.run_type,
            "dataset_id": candidate.dataset_id,
            "finished_at": candidate.finished_at.isoformat() if candidate.finished_at else None,
            "metrics": candidate.metrics_json,
            **result,
        }
        if result["passed"]:
            return {**gate, "passed": True, "evidence": evidence}
        first_failure = first_failure or evidence
    if first_failure is None:
        gate["reasons"] = [
            f"no succeeded backtest or eval run on version {version.version} yet: start a backtest "
            "on it (Start run, type Backtest) to give the gate its evidence"
        ]
    else:
        gate["evidence"] = first_failure
        gate["reasons"] = first_failure["reasons"]
    return gate
