"""Executing a run inside a worker: claim, child process, heartbeat, cancel, logs, finish.

The task backend (django-tasks-db) has no crash recovery, cancellation or retries, so the
Run row is the source of truth:
- a run is claimed with a conditional update (queued -> running); a second delivery of the
  same task finds it no longer queued and does nothing;
- the numeric work runs in a child process (runs.pipeline.child_main) while this process
  writes its logs, stage progress and metric history (training curves, through the one
  writer runs.services.tracking.tracking_log), beats the heartbeat and watches the cancel flag;
- every later write is conditional on (status=running, worker=this worker), so a run the
  reaper has already failed is never resurrected; the end of the run is recorded by
  `runs.services.run_finish` (the outcome, and the result attached to its model by one rule);
- `reap_stale_runs` fails runs whose heartbeat stopped (their worker died).
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import signal
import socket
import threading
import time
import uuid
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from mlworkspace import storage
from mlworkspace.errors import Conflict, InvalidInput, NotFound, server_redact
from recipes import explain_config

from . import artifacts, dataset_files
from .families import worlds
from .logs import run_log, run_logs_append
from .models import MODEL_ARTIFACT_RUN_TYPES, Run, RunStatus, RunType
from .pipeline import child_main
from .processes import end_child
from .selectors import model_training_batch
from .services import close_stages, run_finish, synthetic_resolve, tracking_log
from .tasks import fail_lost_task_rows
from .tuning_executor import tune_execute

logger = logging.getLogger(__name__)

WORKER_ID = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
LOG_FLUSH_SECONDS = 0.5
ARTIFACTS_SUBDIR = "artifacts"  # in the run's local folder: what the child writes


def _mine(run_id: str):
    return Run.objects.filter(pk=run_id, status=RunStatus.RUNNING, worker=WORKER_ID)


def claim(run_id: str) -> bool:
    now = timezone.now()
    return bool(
        Run.objects.filter(pk=run_id, status=RunStatus.QUEUED, cancel_requested=False).update(
            status=RunStatus.RUNNING,
            worker=WORKER_ID,
            started_at=now,
            heartbeat_at=now,
            updated_at=now,
            current_stage="starting",
        )
    )


def build_spec(run: Run, work: Path) -> dict:
    """The child process's spec. Its inputs (the dataset's file, the model's files) are
    downloaded, checked, into the run's local folder `work`; it writes its artifacts to
    `work/artifacts` (stored by run_finish)."""
    manifest = run.recipe_version.manifest
    data: dict
    if run.dataset_id:
        path = dataset_files.fetch(run.dataset, work / "input")
        data = {"path": str(path), "format": run.dataset.format}
        if run.run_type != RunType.SCORE:  # a score run scores every row; training may sample
            data["max_rows"] = settings.TRAIN_MAX_ROWS
        else:  # a large batch is scored chunk by chunk (runs.score_stream)
            data.update(
                stream_rows=settings.SCORE_STREAM_ROWS,
                chunk_rows=settings.SCORE_STREAM_CHUNK_ROWS,
                name=run.dataset.name,
            )
    else:
        synthetic = (run.params_json or {}).get("synthetic") or {}
        if run.run_type in MODEL_ARTIFACT_RUN_TYPES and not worlds.is_resolved(synthetic):
            # queued before runs recorded their world: the window after the model's training data
            synthetic = synthetic_resolve(
                family_name=run.recipe.model_family,
                synthetic=synthetic,
                after=model_training_batch(run.model),
            )
        data = {"synthetic": synthetic}
    model_dir = model_schema = explain_background = None
    if run.run_type in MODEL_ARTIFACT_RUN_TYPES:
        model = run.model
        model_dir = str(artifacts.fetch_model(model.training_run_id, model.artifacts_json, work / "model"))
        if run.run_type == RunType.SCORE:  # the columns the model takes, as /predict reads them
            model_schema = artifacts.read_json_artifact(
                model.training_run_id, model.artifacts_json, "schema.json"
            )
            if explain_config.manifest_asks_for_contributions(manifest) and artifacts.has_explanations(model):
                explain_background = work / artifacts.EXPLANATION_BACKGROUND
                artifacts.explanation_background(model).to_parquet(explain_background, index=False)
    return {
        "run_id": run.id,
        "run_type": run.run_type,
        "family": run.recipe.model_family,
        "manifest": manifest,
        "data": data,
        "artifact_dir": str(work / ARTIFACTS_SUBDIR),
        "model_dir": model_dir,
        "model_schema": model_schema,
        "threads": settings.SCORE_THREADS if run.run_type == RunType.SCORE else settings.RUN_THREADS,
        "explain_caps": dict(settings.EXPLAIN_CAPS),
        "dask_scheduler_address": settings.DASK_SCHEDULER_ADDRESS,
        "explain_background": explain_background and str(explain_background),
    }


class _Progress:
    """Buffers log lines, stage changes and metric history points from the child and writes
    them in batches."""

    def __init__(self, run: Run):
        self.run = run
        self.stages = [
            {
                "name": s["name"],
                "type": s["type"],
                "status": "pending",
                "started_at": None,
                "finished_at": None,
            }
            for s in run.recipe_version.manifest["pipeline"]["stages"]
        ]
        self.lines: list[dict] = []
        self.points: list[dict] = []
        self.stage_dirty = True
        self.current = ""

    def log(self, level: str, message: str):
        self.lines.append({"level": level, "message": message, "ts": timezone.now()})

    def stage(self, index: int, status: str, detail: str):
        stage = self.stages[index]
        now = timezone.now().isoformat()
        stage["status"] = status
        if status == "running":
            stage["started_at"] = now
            self.current = stage["name"]
            self.log(
                "info", f"stage {index + 1}/{len(self.stages)} '{stage['name']}' ({stage['type']}) started"
            )
        else:
            stage["finished_at"] = now
            if detail:
                stage["detail"] = detail
        self.stage_dirty = True

    def metrics(self, points: list[dict]):
        self.points.extend(points)

    def receive(self, message: tuple) -> str:
        """Take a child process's ``log``, ``stage`` or ``metrics`` message (the messages every
        child sends: the pipeline's and a tune run's study); returns the message's kind, so
        the caller handles its own (``result``, ``error``, a study's ``trial``)."""
        kind = message[0]
        if kind == "log":
            self.log(message[1], message[2])
        elif kind == "stage":
            self.stage(message[1], message[2], message[3])
        elif kind == "metrics":
            self.metrics(message[1])
        return kind

    def write_points(self) -> bool:
        """Write the pending metric history points (while the run is running: tracking_log
        refuses a finished run's); False if the run is no longer running."""
        points, self.points = self.points, []
        if not points:
            return True
        try:
            tracking_log(run=self.run, metrics=points)
        except Conflict:
            return False
        except InvalidInput as exc:  # the pipeline sends valid keys; never fail a run on a curve
            self.log("warning", f"{len(points)} metric history points not recorded: {exc.detail}")
        return True

    def take_lines(self) -> list[dict]:
        """The log lines not written yet (they are the caller's to write now)."""
        lines, self.lines = self.lines, []
        return lines

    def flush(self) -> bool:
        """Write pending progress; False if the run is no longer ours (reaped or cancelled)."""
        lines = self.take_lines()
        if lines:
            run_logs_append(run=self.run, lines=lines)
        fields = {"heartbeat_at": timezone.now(), "updated_at": timezone.now()}
        if self.stage_dirty:
            fields.update(stages_json=self.stages, current_stage=self.current)
            self.stage_dirty = False
        return bool(_mine(self.run.id).update(**fields)) and self.write_points()


def execute_run(run_id: str) -> str:
    """Run one run to its end. Returns what happened (for the task result)."""
    if not claim(run_id):
        return "not claimed (no longer queued)"
    run = Run.objects.select_related("recipe", "recipe_version", "model", "dataset").get(pk=run_id)
    progress = _Progress(run)
    progress.log("info", f"{run.name} claimed by worker {WORKER_ID}")
    work = storage.work_dir(f"run-{run_id}")
    try:
        return _execute(run, progress, work)
    finally:
        storage.remove(work)


@contextmanager
def _beating(run_id: str):
    """Beat the run's heartbeat from a thread while this process is busy with something long
    outside the child's message loop (downloading its inputs, storing its artifacts), so the
    reaper does not take a slow transfer for a dead worker."""
    done = threading.Event()

    def beat() -> None:
        try:
            while not done.wait(settings.RUN_HEARTBEAT_SECONDS):
                _mine(run_id).update(heartbeat_at=timezone.now())
        finally:
            connection.close()

    thread = threading.Thread(target=beat, daemon=True, name=f"beat-{run_id}")
    thread.start()
    try:
        yield
    finally:
        done.set()
        thread.join()


def _execute(run: Run, progress: _Progress, work: Path) -> str:
    run_id = run.id
    try:
        with _beating(run_id):
            spec = build_spec(run, work)
    except (NotFound, Conflict) as exc:  # an input missing from the store, or altered
        return _finish(run, progress, RunStatus.FAILED, error=f"Could not prepare the run: {exc.detail}")
    except Exception as exc:
        return _finish(
            run, progress, RunStatus.FAILED, error=f"Could not prepare the run: {server_redact(str(exc))}"
        )
    if run.run_type == RunType.TUNE:  # a study of trials, not one pipeline: runs/tuning_executor.py
        return _finish(
            run,
            progress,
            **tune_execute(run=run, spec=spec, progress=progress, worker=WORKER_ID),
            artifact_dir=work / ARTIFACTS_SUBDIR,
        )

    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    child = context.Process(target=child_main, args=(spec, sender), daemon=True, name=f"run-{run_id}")
    child.start()
    sender.close()
    result, error, cancelled, lost = None, None, False, False
    last_flush = last_beat = time.monotonic()
    flush_now = False
    # Left by an exception (a second SIGTERM's SystemExit, a database error): stop the child too.
    interrupted = True
    try:
        while True:
            got = receiver.poll(LOG_FLUSH_SECONDS)
            if got:
                try:
                    message = receiver.recv()
                except EOFError:
                    break
                kind = progress.receive(message)
                if kind == "stage":
                    # A stage's start and end are written at once (not on the next timer
                    # tick): a page polling the run sees each stage move.
                    flush_now = True
                elif kind == "result":
                    result = message[1]
                elif kind == "error":
                    error = message[1]
            elif not child.is_alive():
                break
            now = time.monotonic()
            if (
                flush_now
                or now - last_flush >= LOG_FLUSH_SECONDS
                or now - last_beat >= settings.RUN_HEARTBEAT_SECONDS
            ):
                flush_now = False
                if not progress.flush():
                    lost = True  # reaped meanwhile: stop working on it
                    break
                last_flush = last_beat = now
                if Run.objects.filter(pk=run_id, cancel_requested=True).exists():
                    cancelled = True
                    break
        interrupted = False
    finally:
        end_child(child, receiver, stop=cancelled or lost or interrupted)
    if lost:
        return "lost (the run was failed by the reaper)"
    if cancelled:
        progress.log("warning", "Cancelled: the run's process was stopped.")
        return _finish(run, progress, RunStatus.CANCELLED)
    if error is not None or result is None:
        if error is None:
            error = _process_died(child.exitcode)
        progress.log("error", error)
        return _finish(run, progress, RunStatus.FAILED, error=error)
    return _finish(run, progress, RunStatus.SUCCEEDED, result=result, artifact_dir=work / ARTIFACTS_SUBDIR)


def _process_died(exitcode: int | None) -> str:
    """Why a run's child process ended without a result, in words."""
    if exitcode is not None and exitcode < 0:
        name = signal.Signals(-exitcode).name if -exitcode in signal.valid_signals() else str(-exitcode)
        if -exitcode == signal.SIGKILL:
            return (
                f"The run's process was killed ({name}), most often because it ran out of memory: "
                "use fewer rows or a worker with more memory, then retry."
            )
        return f"The run's process was stopped by signal {name}; retry the run."
    return f"The run's process ended unexpectedly (exit code {exitcode}); the raw log has its last lines."


def _finish(
    run: Run,
    progress: _Progress,
    status: str,
    *,
    error: str = "",
    result: dict | None = None,
    artifact_dir: Path | None = None,
) -> str:
    """Record the end of the run (runs.services.run_finish) with the progress not written yet."""
    progress.write_points()  # before run_finish: a finished run's history is final
    with _beating(run.id):  # run_finish stores the artifacts first
        finished = run_finish(
            run=run,
            status=status,
            worker=WORKER_ID,
            stages=progress.stages,
            log_lines=progress.take_lines(),
            error=error,
            result=result,
            artifact_dir=artifact_dir,
        )
    return status if finished else "lost (the run was no longer ours)"


def reap_stale_runs(stale_after: float | None = None) -> list[str]:
    """Fail running runs whose heartbeat stopped: their worker died ("worker lost"). The run's
    running stage is failed with the reason, the pending ones marked not run, and its task row
    (django-tasks-db, which never learns that its worker died) is failed too."""
    stale_after = settings.RUN_STALE_AFTER_SECONDS if stale_after is None else stale_after
    cutoff = timezone.now() - timedelta(seconds=stale_after)
    reaped = []
    for run_id in Run.objects.filter(status=RunStatus.RUNNING, heartbeat_at__lt=cutoff).values_list(
        "id", flat=True
    ):
        with transaction.atomic():
            # Locked and re-checked: a worker whose beat arrived meanwhile keeps its run.
            run = (
                Run.objects.select_for_update()
                .filter(pk=run_id, status=RunStatus.RUNNING, heartbeat_at__lt=cutoff)
                .only("id", "worker", "stages_json")
                .first()
            )
            if run is None:
                continue
            error = f"Worker lost: no heartbeat from {run.worker} for {stale_after:.0f}s."
            now = timezone.now()
            Run.objects.filter(pk=run.pk).update(
                status=RunStatus.FAILED,
                finished_at=now,
                error=error,
                current_stage="",
                stages_json=close_stages(list(run.stages_json or []), RunStatus.FAILED, error),
                updated_at=now,
            )
            run_log(
                run=run,
                message=f"Worker lost: no heartbeat from {run.worker}; the run is failed.",
                level="error",
            )
        reaped.append(run.id)
    fail_lost_task_rows(reaped, reason="the worker executing it was lost (no heartbeat)")
    if reaped:
        logger.warning("Reaped %d run(s) whose worker was lost: %s", len(reaped), ", ".join(reaped))
    return reaped
