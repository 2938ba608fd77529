"""The approval gate: the evidence a recipe version needs before it can be approved.

A version may be approved when a succeeded backtest or eval run on that exact version
* reports every metric the manifest gates on (those with a target or a critical threshold)
  as a finite number — an empty or partial report is no evidence,
* comes from the workspace's own executor when the manifest requires it
  (``evaluation.approval.require_workspace_evidence``, default true for client recipes;
  otherwise an external runner's report counts, and the gate record says which it was),
* breaches no critical threshold of the version's manifest, and
* when an earlier version is approved, is worse than that version's evidence on no shared
  metric by more than ``evaluation.approval.regression_tolerance`` (relative, default 5%).

``evaluate_evidence`` is the rule on plain values; ``approval_gate`` finds the runs and applies
it. ``recipes.services.version_approve`` enforces the result (or records an override). The runs
come through ``runs.evidence``, the one interface through which recipes reads runs.
"""

from __future__ import annotations

import math

from django.utils import timezone

from mlworkspace.errors import field_error
from runs.evidence import (
    WORKSPACE_EXECUTOR,
    EvidenceRun,
    evidence_runs,
    metric_checks,
    reference_run,
)

from .catalog import metric_direction
from .manifest import requires_workspace_evidence
from .models import RecipeVersion
from .selectors import latest_approved

DEFAULT_TOLERANCE = 0.05
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


def gated_metrics(manifest: dict) -> list[str]:
    """The metrics the gate judges: those the manifest gives a target or a critical threshold."""
    defined = ((manifest or {}).get("evaluation") or {}).get("metrics") or {}
    return [
        name
        for name, spec in defined.items()
        if isinstance(spec, dict)
        and any(_number(spec.get(key)) is not None for key in ("target", "threshold_critical"))
    ]


def evidence_problems(*, manifest: dict, metrics, executor: str, require_workspace: bool) -> list[str]:
    """Why a run's report is no evidence at all (before its numbers are judged): [] when it is."""
    problems = []
    if require_workspace and executor != WORKSPACE_EXECUTOR:
        problems.append(
            "its results were reported by an external runner, and this version's manifest requires "
            "evidence from the workspace's own executor (evaluation.approval.require_workspace_evidence)"
        )
    if not isinstance(metrics, dict) or not metrics:
        problems.append("it reported no metrics")
        return problems
    missing = [name for name in gated_metrics(manifest) if name not in metrics]
    if missing:
        problems.append(f"it reported no {', '.join(missing)}, which the manifest gates on")
    defined = ((manifest or {}).get("evaluation") or {}).get("metrics") or {}
    bad = [name for name in defined if name in metrics and _number(metrics[name]) is None]
    if bad:
        problems.append(
            "it reported "
            + ", ".join(f"{name} = {_shown(metrics[name])}" for name in bad)
            + ", not a finite number"
        )
    return problems


def _shown(value) -> str:
    text = repr(value) if not isinstance(value, float) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


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
    *,
    family: str,
    manifest: dict,
    metrics: dict,
    previous: dict | None,
    tolerance: float,
    executor: str = WORKSPACE_EXECUTOR,
    require_workspace: bool = False,
) -> dict:
    """{"passed", "breaches", "comparison", "reasons"} for one run's metrics, reported by
    `executor` (the run's: "workspace" or "external")."""
    problems = evidence_problems(
        manifest=manifest, metrics=metrics, executor=executor, require_workspace=require_workspace
    )
    # Only finite numbers are judged (a NaN compares false with every threshold).
    metrics = (
        {k: v for k, v in metrics.items() if _number(v) is not None} if isinstance(metrics, dict) else {}
    )
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
    reasons = [f"the run is no evidence: {p}" for p in problems]
    reasons += [
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


def _reference(previous: RecipeVersion | None) -> tuple[dict | None, str | None]:
    """The metrics an approved earlier version is compared by: its recorded evidence run,
    else its newest succeeded backtest/eval run. (None, None) when it has none."""
    if previous is None:
        return None, None
    run = reference_run(previous.pk, previous.approval_run_id)
    return (run.metrics, run.id) if run is not None else (None, None)


def approval_gate(version: RecipeVersion, run: EvidenceRun | None = None) -> dict:
    """Whether `version` may be approved, on `run` or on the best of its evidence runs:
    {"passed", "reasons", "evidence": {run_id, run_type, dataset_id, ...evaluation} | None,
    "runs_checked", "tolerance", "compared_with": {version_id, version, run_id} | None}."""
    manifest, family = version.manifest, version.recipe.model_family
    if run is not None:
        if run.recipe_version_id != version.pk:
            raise field_error("evidence_run_id", f"run '{run.id}' is not a run of version {version.version}")
        if not run.is_evidence:
            raise field_error("evidence_run_id", f"run '{run.id}' is not a succeeded backtest or eval run")
    tolerance = tolerance_of(manifest)
    require_workspace = requires_workspace_evidence(manifest, version.recipe.level)
    previous = latest_approved(version.recipe_id, below=version)
    reference, reference_run_id = _reference(previous)
    compared_with = (
        {"version_id": previous.pk, "version": previous.version, "run_id": reference_run_id}
        if previous is not None
        else None
    )
    candidates = [run] if run is not None else evidence_runs(version.pk, limit=CANDIDATES_CHECKED)
    gate = {
        "passed": False,
        "reasons": [],
        "evidence": None,
        "runs_checked": len(candidates),
        "tolerance": tolerance,
        "require_workspace_evidence": require_workspace,
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
            metrics=candidate.metrics or {},
            previous=reference,
            tolerance=tolerance,
            executor=candidate.executor,
            require_workspace=require_workspace,
        )
        evidence = {
            "run_id": candidate.id,
            "run_type": candidate.run_type,
            # Who produced the numbers: the workspace's own executor or an external runner.
            "executor": candidate.executor,
            "dataset_id": candidate.dataset_id,
            "finished_at": candidate.finished_at.isoformat() if candidate.finished_at else None,
            "metrics": candidate.metrics,
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
