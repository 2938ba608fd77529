"""The end of a run: its outcome and log line (the executor's run_finish, an external runner's
run_report), its stages closed, and its result attached to its model."""

from __future__ import annotations

from pathlib import Path

from django.db import transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace import storage
from mlworkspace.errors import Conflict, server_redact
from models_registry.services import model_attach_training

from .. import artifacts
from ..logs import run_log, run_logs_append
from ..metrics import check_breaches, check_outcome, metric_checks
from ..models import (
    EXTERNAL_TRANSITIONS,
    TERMINAL_STATUSES,
    Executor,
    Run,
    RunStatus,
    RunType,
)
from .tracking import tracking_index_metrics


def run_deploys(run: Run) -> bool:
    """The one rule for attaching a run's result (artifact and metrics) to its model: a
    succeeded train run of a model, on a version whose pipeline has a deployment stage (the
    stage that deploys; eval and backtest runs skip it, a score run scores its batch there and
    attaches nothing). The same for runs the workspace
    executed (run_finish) and runs an external runner reported (run_report)."""
    if not (run.model_id and run.run_type == RunType.TRAIN and run.status == RunStatus.SUCCEEDED):
        return False
    stages = ((run.recipe_version.manifest or {}).get("pipeline") or {}).get("stages") or []
    return any(isinstance(stage, dict) and stage.get("type") == "deployment" for stage in stages)


def _attach_result(run: Run) -> bool:
    """Attach the run's artifact and metrics to its model if `run_deploys` says so."""
    if not run_deploys(run):
        return False
    model_attach_training(run=run)
    return True


def _outcome_fields(run: Run, metrics: dict) -> dict:
    """A run's reported metrics, each checked against its version's thresholds, and the outcome
    (the worst check)."""
    checks = metric_checks(run.recipe_version.manifest, run.recipe.model_family, metrics)
    return {"metrics_json": metrics, "metric_checks_json": checks, "outcome": check_outcome(checks)}


def close_stages(stages: list[dict], status: str, reason: str = "") -> list[dict]:
    """A finished run has no stage left running or pending: the running one failed (with the
    reason) or was cancelled, the pending ones did not run. Changes `stages` in place."""
    now = timezone.now().isoformat()
    for stage in stages:
        if not isinstance(stage, dict):
            continue
        if stage.get("status") == "running":
            stage["status"] = "failed" if status == RunStatus.FAILED else "cancelled"
            stage["finished_at"] = now
            if reason and status == RunStatus.FAILED:
                stage["detail"] = reason[:500]
        elif stage.get("status") == "pending" and status != RunStatus.SUCCEEDED:
            stage["status"] = "not run"
    return stages


def run_finish(
    *,
    run: Run,
    status: str,
    worker: str,
    stages: list[dict],
    log_lines: list[dict] | None = None,
    error: str = "",
    result: dict | None = None,
    artifact_dir: Path | None = None,
) -> bool:
    """The end of a run the workspace executed, written by the worker `worker` that ran it:
    its status, error, outcome (metrics, checks, plots, artifacts of `result`, the pipeline's
    result, whose files — written under the local `artifact_dir` — are stored now: a store
    that refuses them fails the run) and stages (closed: none left running or pending), its
    pending `log_lines`, its
    result attached to its model (`run_deploys`), and a last log line naming the status and
    any breached thresholds. Conditional on (status=running, worker=worker): a run the reaper
    has failed meanwhile is not resurrected. False when the run was no longer the worker's.
    `run` needs its recipe, version and model selected."""
    stored = None
    if result is not None:
        try:
            stored = artifacts.publish(run.id, artifact_dir, result["artifacts"])
        except (storage.StorageError, OSError) as exc:
            status, result = RunStatus.FAILED, None
            error = f"The run's artifacts could not be stored: {server_redact(str(exc))}"
            log_lines = [*(log_lines or []), {"level": "error", "message": error, "ts": timezone.now()}]
    close_stages(stages, status, error)
    fields = {"status": status, "finished_at": timezone.now(), "error": error[:10_000], "current_stage": ""}
    if result is not None:
        fields.update(_outcome_fields(run, result["metrics"]))
        fields["plots_json"] = result.get("plots") or {}
        if result.get("folds"):
            fields["plots_json"] = {**fields["plots_json"], "folds": result["folds"]}
        fields["artifacts_json"] = stored
        if result.get("scoring"):  # a score run: its rows and columns (the files are above)
            fields["artifacts_json"]["scoring"] = result["scoring"]
    with transaction.atomic():
        run_logs_append(run=run, lines=log_lines or [])
        now = timezone.now()
        updated = Run.objects.filter(pk=run.pk, status=RunStatus.RUNNING, worker=worker).update(
            **fields, stages_json=stages, heartbeat_at=now, updated_at=now
        )
        if updated:
            for name, value in fields.items():
                setattr(run, name, value)
            if result is not None:
                tracking_index_metrics(run=run, metrics=fields["metrics_json"])
            if _attach_result(run):
                run_log(
                    run=run,
                    message=f"deployment: attached the artifact and metrics to model '{run.model.name}'",
                )
    if updated:
        run_log(run=run, message=_final_line(run, status, fields), level=_final_level(status, fields))
    return bool(updated)


def _final_line(run: Run, status: str, fields: dict) -> str:
    """The run's last log line: its name, status and, when metrics breached thresholds, which."""
    line = f"{run.name} {status}."
    if fields.get("outcome") in ("warning", "critical"):
        breaches = check_breaches(fields["metric_checks_json"])
        named = ", ".join(f"{b['metric']} {b['status']}" for b in breaches)
        line = f"{run.name} {status}, but its metrics breached thresholds: {named}."
    return line


def _final_level(status: str, fields: dict) -> str:
    if status == RunStatus.FAILED or fields.get("outcome") == "critical":
        return "error"
    return "warning" if fields.get("outcome") == "warning" else "info"


@transaction.atomic
def run_report(
    *,
    run: Run,
    user,
    status: str | None = None,
    metrics_json=None,
    artifacts_json=None,
    logs=None,
    error: str | None = None,
    locked: bool = False,
) -> Run:
    """Results reported by an external runner (PUT /runs/{id}). The run's row is locked and
    read afresh, unless `locked`: the caller has just created `run` in its own transaction
    (run_start_external, MLflow's create-run), with its recipe and version, so no one else
    can have changed it."""
    if not locked:
        run = Run.objects.select_for_update().select_related("recipe", "recipe_version").get(pk=run.pk)
    before = audit.snapshot(run)
    if run.executor != Executor.EXTERNAL:
        raise Conflict(
            f"Run '{run.id}' is executed by the workspace's workers; its results cannot be reported. "
            "Use POST /runs/{id}/cancel to stop it.",
            [{"path": "/executor", "message": "not an external run"}],
        )
    now = timezone.now()
    if status is not None and status != run.status:
        if status not in EXTERNAL_TRANSITIONS.get(run.status, set()):
            raise Conflict(
                f"Illegal status change {run.status} → {status}.",
                [{"path": "/status", "message": f"{run.status} cannot become {status}"}],
            )
        run.status = status
        if status == RunStatus.RUNNING or (status in TERMINAL_STATUSES and run.started_at is None):
            run.started_at = now
        if status in TERMINAL_STATUSES:
            run.finished_at = now
    elif run.is_terminal and (metrics_json is not None or artifacts_json is not None):
        raise Conflict(f"Run '{run.id}' is {run.status}; its results are final.")
    if metrics_json is not None:
        for name, value in _outcome_fields(run, metrics_json).items():
            setattr(run, name, value)
        tracking_index_metrics(run=run, metrics=run.metrics_json)
    if artifacts_json is not None:
        run.artifacts_json = artifacts_json
    if error is not None:
        run.error = error
    run.save()
    if logs:
        run_logs_append(run=run, lines=logs)
    _attach_result(run)
    audit.record(user, "run.report", run, changes=audit.diff(before, run))
    return run
