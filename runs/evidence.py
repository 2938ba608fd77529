"""The approval gate's evidence: the one interface through which `recipes` reads runs.

`recipes` is the base app: it imports no other domain app (runs, models and monitoring all
import it). Its approval gate (recipes.approval) and the approve endpoint (recipes.api) still
need runs as evidence — the succeeded backtest and eval runs on a version, and the checks of
their metrics against the manifest — so they import this module and nothing else of `runs`
(the import-linter contract in pyproject.toml allows exactly these two imports). It hands out
runs as plain values (`EvidenceRun`), so the gate depends on what evidence is, not on the Run
model, its managers or its choices.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from mlworkspace.errors import lookup

from .metrics import metric_checks
from .models import Executor, Run, RunStatus, RunType

__all__ = [
    "EVIDENCE_RUN_TYPES",
    "WORKSPACE_EXECUTOR",
    "EvidenceRun",
    "evidence_runs",
    "metric_checks",
    "reference_run",
    "visible_run",
]

# The run types whose metrics are evidence (a train run judges itself on its own split).
EVIDENCE_RUN_TYPES = (RunType.BACKTEST, RunType.EVAL)
# Numbers from the workspace's own executor (the other executor is an external runner).
WORKSPACE_EXECUTOR = Executor.WORKSPACE

_FIELDS = (
    "id",
    "recipe_version_id",
    "run_type",
    "status",
    "executor",
    "dataset_id",
    "finished_at",
    "metrics_json",
)


@dataclass(frozen=True)
class EvidenceRun:
    """A run as the approval gate sees it."""

    id: str
    recipe_version_id: str
    run_type: str
    status: str
    executor: str  # "workspace" or "external"
    dataset_id: str | None
    finished_at: datetime | None
    metrics: dict | None

    @property
    def is_evidence(self) -> bool:
        """A succeeded backtest or eval run: the only kind whose metrics the gate judges."""
        return self.run_type in EVIDENCE_RUN_TYPES and self.status == RunStatus.SUCCEEDED


def _evidence(row: dict) -> EvidenceRun:
    row = dict(row)
    return EvidenceRun(metrics=row.pop("metrics_json"), **row)


def _succeeded_evidence(version_id: str):
    return Run.objects.filter(
        recipe_version_id=version_id, run_type__in=EVIDENCE_RUN_TYPES, status=RunStatus.SUCCEEDED
    ).order_by("-finished_at", "-id")


def evidence_runs(version_id: str, *, limit: int) -> list[EvidenceRun]:
    """The version's succeeded backtest and eval runs, newest first (at most `limit`)."""
    return [_evidence(row) for row in _succeeded_evidence(version_id).values(*_FIELDS)[:limit]]


def reference_run(version_id: str, recorded_run_id: str | None) -> EvidenceRun | None:
    """The run an approved version is compared by: its recorded evidence run (while that run
    is still succeeded), else its newest succeeded backtest or eval run; None if it has none."""
    row = None
    if recorded_run_id:
        row = Run.objects.filter(pk=recorded_run_id, status=RunStatus.SUCCEEDED).values(*_FIELDS).first()
    row = row or _succeeded_evidence(version_id).values(*_FIELDS).first()
    return _evidence(row) if row is not None else None


def visible_run(user, run_id, *, field: str) -> EvidenceRun | None:
    """The run `run_id` names in a request, if `user` may see it: None when no id is given, a
    400 naming `field` when the id is unknown or the run hidden from the user (the same answer,
    so its existence is not confirmed)."""
    run = lookup(Run.objects.visible_to(user), field, run_id)
    return _evidence({name: getattr(run, name) for name in _FIELDS}) if run is not None else None
