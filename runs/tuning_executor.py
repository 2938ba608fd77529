"""A tune run executed by a worker (runs.executor hands it a claimed tune run): the study in a
child process (``runs.tuning.study_main``: Optuna, the families), whose messages this process
turns into rows, as the executor does for a run's pipeline:

* each trial is a child run (``run_type`` trial, ``parent`` the tune run) created when the
  trial starts (``runs.services.trial_start``); its validation curve and metrics are logged
  with ``runs.services.tracking_log`` and it ends through ``runs.services.run_finish`` —
  succeeded, cancelled when the median pruner stopped it, failed when its model crashed;
* the study lives in the workspace's database (``runs.tuning_selectors``). A retry continues
  it after a crash: the trials already finished count towards ``n_trials``, and a trial the
  dead worker left running is failed by Optuna's heartbeat once it has been silent for
  RUN_STALE_AFTER_SECONDS;
* cancel sets an event the child checks before each trial and after each boosting round, so
  the running trial stops within a round and the study ends; a child that does not stop
  within STOP_GRACE_SECONDS is terminated and its running trial failed in the storage;
* with ``tuning.workers`` > 1 it enqueues workers - 1 assists on the training queue
  (``runs.tasks.enqueue_tune_assists``): other workers run trials of the same study
  (runs/tuning_assist.py), their trials' child runs recorded by them with this module's
  ``_Trials``.
"""

from __future__ import annotations

import multiprocessing
import time

import optuna
from django.conf import settings
from django.utils import timezone
from optuna.trial import TrialState

from recipes import tuning as spec_tuning

from . import tuning, tuning_selectors
from .logs import run_log
from .models import Run, RunStatus
from .processes import end_child
from .services import run_finish, tracking_log, trial_start
from .services.tracking import now_ms
from .tasks import enqueue_tune_assists

LOG_FLUSH_SECONDS = 0.5
STOP_GRACE_SECONDS = 15


def tune_execute(*, run: Run, spec: dict, progress, worker: str) -> dict:
    """Execute a claimed tune run (runs.executor calls this instead of the pipeline): the
    study in a child process, its trials as child runs. Returns the keyword arguments of the
    executor's finish: {"status", "error", "result"}. ``progress`` is the executor's (log
    lines, stages, the heartbeat conditional on this worker)."""
    name = tuning_selectors.study_name(run)
    spec = {**spec, "tuning": study_spec(name)}
    config = spec_tuning.config(run.recipe_version.manifest, run.recipe.model_family)
    if config is not None and config.workers > 1:
        count = config.workers - 1
        progress.log(
            "info",
            f"{count} {'assist' if count == 1 else 'assists'} enqueued on the training queue: "
            "free workers join the study",
        )
        progress.flush()  # before the assists log that they joined
        enqueue_tune_assists(run.id, count)
    trials = _Trials(run, name, worker)
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    child = context.Process(
        target=tuning.study_main, args=(spec, sender, stop), daemon=True, name=f"tune-{run.id}"
    )
    child.start()
    sender.close()
    result, error, cancelled, lost = None, None, False, False
    stop_by = None
    last = time.monotonic()
    try:
        while True:
            if receiver.poll(LOG_FLUSH_SECONDS):
                try:
                    message = receiver.recv()
                except EOFError:
                    break
                kind = progress.receive(message)  # log, stage, metrics: as a train run's
                if kind == "trial":
                    trials.handle(message[1])
                elif kind == "result":
                    result = message[1]
                elif kind == "error":
                    error = message[1]
            elif not child.is_alive():
                break
            now = time.monotonic()
            if now - last >= LOG_FLUSH_SECONDS:
                last = now
                if not progress.flush():
                    lost = True  # reaped meanwhile: stop working on it
                    break
                trials.beat()
                if not cancelled and Run.objects.filter(pk=run.pk, cancel_requested=True).exists():
                    cancelled = True
                    stop.set()
                    progress.log(
                        "warning", "Cancelled: the study stops after the running trial's next round."
                    )
                    stop_by = now + STOP_GRACE_SECONDS
            if stop_by is not None and now > stop_by:
                break
    finally:
        killed = end_child(child, receiver)
    if lost:
        trials.close(RunStatus.FAILED, "Its tune run was lost (no heartbeat from its worker).", killed)
        return {"status": RunStatus.FAILED, "error": "", "result": None}
    if cancelled:
        trials.close(RunStatus.CANCELLED, "The tune run was cancelled.", killed)
        progress.log("warning", "Cancelled: the study stopped; its finished trials are kept.")
        return {"status": RunStatus.CANCELLED, "error": "", "result": None}
    if error is not None or result is None:
        error = error or (
            f"The tune run's process ended unexpectedly (exit code {child.exitcode}); the raw log has its last lines."
        )
        trials.close(RunStatus.FAILED, error, killed)
        progress.log("error", error)
        return {"status": RunStatus.FAILED, "error": error, "result": None}
    return {"status": RunStatus.SUCCEEDED, "error": "", "result": result}


def study_spec(name: str) -> dict:
    """Where the study ``name`` lives and how its trials beat, for the process that runs it."""
    return {
        "storage": tuning_selectors.storage_url(),
        "study_name": name,
        "heartbeat": max(1, round(settings.RUN_HEARTBEAT_SECONDS)),
        "grace": max(2, round(settings.RUN_STALE_AFTER_SECONDS)),
    }


def _trial_stages(status: str) -> list[dict]:
    now = timezone.now().isoformat()
    return [
        {"name": "fit", "type": "training", "status": status, "started_at": now, "finished_at": None},
        {
            "name": "validate",
            "type": "evaluation",
            "status": "pending",
            "started_at": None,
            "finished_at": None,
        },
    ]


class _Trials:
    """The tune run's trials as child runs, from the child process's trial messages; each
    trial's run names ``worker``, the worker whose process runs it (the tune run's own, or an
    assist's)."""

    def __init__(self, run: Run, study: str, worker: str):
        self.run = run
        self.study = study
        self.worker = worker
        # Why a trial stopped by the stop event ended: an assist's also stops when its tune run ends.
        self.stop_reason = "The tune run was cancelled."
        self.open: dict[int, tuple[Run, int]] = {}  # trial number -> (its run, Optuna's trial id)

    def handle(self, message: dict) -> None:
        if message["event"] == "start":
            self.start(message)
        else:
            self.end(message)

    def start(self, message: dict) -> None:
        number, params = message["number"], message["params"]
        trial = trial_start(
            tune=self.run,
            study=self.study,
            number=number,
            params=params,
            worker=self.worker,
            stages=_trial_stages("running"),
        )
        described = ", ".join(f"{k}={v}" for k, v in params.items())
        run_log(
            run=trial, message=f"Trial {number} of tune run #{self.run.number} ({self.study}): {described}"
        )
        self.open[number] = (trial, message["trial_id"])

    def end(self, message: dict) -> None:
        entry = self.open.pop(message["number"], None)
        if entry is None:
            return
        trial = entry[0]
        stamp = now_ms()
        points = [
            {"key": key, "value": value, "step": step, "timestamp": stamp}
            for key, series in (message.get("history") or {}).items()
            for step, value in series
        ]
        if points:
            tracking_log(run=trial, metrics=points)
        state = message["state"]
        stages = _trial_stages("succeeded")
        if state == "complete":
            stages[1].update(status="succeeded", started_at=stages[0]["started_at"])
            for stage in stages:
                stage["finished_at"] = timezone.now().isoformat()
            run_finish(
                run=trial,
                status=RunStatus.SUCCEEDED,
                worker=self.worker,
                stages=stages,
                result={"metrics": message.get("metrics") or {}, "artifacts": {}, "plots": {}},
            )
        elif state == "pruned":
            stages[0]["status"] = "running"
            run_finish(
                run=trial,
                status=RunStatus.CANCELLED,
                worker=self.worker,
                stages=stages,
                error=f"Pruned at boosting round {message.get('pruned_at')}: its validation loss was worse "
                "than the median of the earlier trials at that round.",
            )
        else:
            stages[0]["status"] = "running"
            cancelled = message.get("error") == "cancelled"
            run_finish(
                run=trial,
                status=RunStatus.CANCELLED if cancelled else RunStatus.FAILED,
                worker=self.worker,
                stages=stages,
                error=self.stop_reason if cancelled else (message.get("error") or "The trial failed."),
            )

    def beat(self) -> None:
        """The running trial's heartbeat, beaten with its tune run's (the reaper fails silent runs)."""
        if self.open:
            now = timezone.now()
            Run.objects.filter(
                pk__in=[run.pk for run, _ in self.open.values()], status=RunStatus.RUNNING, worker=self.worker
            ).update(heartbeat_at=now, updated_at=now)

    def close(self, status: str, reason: str, killed: bool) -> None:
        """End the trials still running when the study ended abnormally; a trial whose
        process was killed is failed in the storage too (no one else will tell Optuna)."""
        for number, (trial, trial_id) in list(self.open.items()):
            stages = _trial_stages("running")
            run_finish(run=trial, status=status, worker=self.worker, stages=stages, error=reason)
            if killed:
                try:
                    tuning_selectors.study_storage(tuning_selectors.storage_url()).set_trial_state_values(
                        trial_id, TrialState.FAIL
                    )
                except (RuntimeError, KeyError, optuna.exceptions.UpdateFinishedTrialError):
                    pass  # already finished by the study itself
            del self.open[number]
