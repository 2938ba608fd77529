"""An assist: trials of a running tune run's study executed by another worker (``tuning.workers``
> 1). A module of its own because it needs ``runs.executor`` (``build_spec``, ``WORKER_ID``),
which imports ``runs.tuning_executor``.

The tune run's worker enqueues workers - 1 ``runs.tasks.tune_assist_task``s on the training
queue when it starts the study (``runs.tuning_executor.tune_execute``). A worker that takes one:

* does nothing unless the tune run is running and not cancel-requested (an assist taken after
  the study ended returns at once);
* prepares its own inputs as the executor does (``build_spec``, into its own scratch folder,
  removed at the end) and starts a child process (``runs.tuning.assist_main``) that loads and
  prepares the data as the tune run's own process does and runs trials of the same study
  until the study has n_trials finished trials or the tune run's timeout passes;
* records its trials as child runs of the tune run, each naming this worker
  (``runs.tuning_executor._Trials``), beats their heartbeats, and on every flush checks the
  tune run: once it is no longer running or is cancel-requested (or its timeout and a grace
  have passed) the stop event ends the running trial within a boosting round;
* writes nothing to the tune run's row, only log lines (joining, which trials ran here).
"""

from __future__ import annotations

import multiprocessing
import time
from pathlib import Path

from mlworkspace import storage
from mlworkspace.errors import Conflict, NotFound, server_redact
from recipes import tuning as spec_tuning

from . import tuning, tuning_selectors
from .executor import WORKER_ID, build_spec
from .logs import run_log
from .models import Run, RunStatus, RunType
from .processes import end_child
from .tuning_executor import LOG_FLUSH_SECONDS, STOP_GRACE_SECONDS, _Trials, study_spec


def _running(run_id: str):
    """The tune run, if an assist may still run trials of its study."""
    return Run.objects.filter(
        pk=run_id, run_type=RunType.TUNE, status=RunStatus.RUNNING, cancel_requested=False
    )


def tune_assist(run_id: str, *, index: int = 1) -> str:
    """Run trials of the tune run's study on this worker until the study no longer needs them
    (``index``: which of the tune run's assists this is, 1..workers - 1; it picks the TPE
    seed). Returns what happened (the task's result)."""
    if not _running(run_id).exists():
        return "not running"
    run = Run.objects.select_related("recipe", "recipe_version", "model", "dataset").get(pk=run_id)
    config = spec_tuning.config(run.recipe_version.manifest, run.recipe.model_family)
    if config is None:  # refused when the run was created: never a running tune run
        return "not running"
    work = storage.work_dir(f"assist-{run_id}")
    try:
        return _assist(run, config, index, work)
    finally:
        storage.remove(work)


def _assist(run: Run, config: spec_tuning.TuningConfig, index: int, work: Path) -> str:
    try:
        spec = build_spec(run, work)
    except (NotFound, Conflict) as exc:  # an input missing from the store, or altered
        return _gave_up(run, index, exc.detail)
    except Exception as exc:
        return _gave_up(run, index, server_redact(str(exc)))
    name = tuning_selectors.study_name(run)
    # The tune run's own process counts its timeout from a little later (after loading its
    # data): an assist stops starting trials no later than it.
    timeout_at = run.started_at.timestamp() + config.timeout.total_seconds() if config.timeout else None
    spec = {**spec, "tuning": {**study_spec(name), "assist": index, "timeout_at": timeout_at}}
    trials = _Trials(run, name, WORKER_ID)
    run_log(run=run, message=f"Worker {WORKER_ID} joins the study (assist {index})")
    context = multiprocessing.get_context("spawn")
    receiver, sender = context.Pipe(duplex=False)
    stop = context.Event()
    child = context.Process(
        target=tuning.assist_main, args=(spec, sender, stop), daemon=True, name=f"assist-{run.id}"
    )
    child.start()
    sender.close()
    error, ran, stopped_by = None, [], None
    last = time.monotonic()
    try:
        while True:
            if receiver.poll(LOG_FLUSH_SECONDS):
                try:
                    message = receiver.recv()
                except EOFError:
                    break
                # Its log lines and stages are the tune run's own process's to write: only the
                # trials and an error are recorded here.
                if message[0] == "trial":
                    trials.handle(message[1])
                    if message[1]["event"] == "start":
                        ran.append(message[1]["number"])
                elif message[0] == "error":
                    error = message[1]
            elif not child.is_alive():
                break
            now = time.monotonic()
            if now - last >= LOG_FLUSH_SECONDS:
                last = now
                trials.beat()
                if stopped_by is None:
                    why = _why_stop(run.id, timeout_at)
                    if why is not None:
                        trials.stop_reason = why
                        stop.set()
                        stopped_by = now + STOP_GRACE_SECONDS
            if stopped_by is not None and now > stopped_by:
                break
    finally:
        killed = end_child(child, receiver)
    # Trials still open: the child was stopped or died before it reported their end.
    if stopped_by is not None:
        trials.close(RunStatus.CANCELLED, trials.stop_reason, killed)
    else:
        trials.close(RunStatus.FAILED, error or "The assist's process ended unexpectedly.", killed)
    where = f"worker {WORKER_ID} (assist {index})"
    if error is not None:
        run_log(run=run, level="warning", message=f"The assist on {where} stopped: {error}")
    if ran:
        run_log(run=run, message=f"Trials {', '.join(str(n) for n in sorted(ran))} ran on {where}")
    else:
        run_log(run=run, message=f"No trial ran on {where}: the study needed no more")
    outcome = f"ran trials {', '.join(str(n) for n in sorted(ran))}" if ran else "ran no trial"
    return f"failed: {error}" if error is not None else outcome


def _why_stop(run_id: str, timeout_at: float | None) -> str | None:
    """Why the assist must stop now (the error its running trial ends with), or None."""
    row = Run.objects.filter(pk=run_id).values("status", "cancel_requested").first()
    if row is None or row["status"] != RunStatus.RUNNING:
        return "Its tune run ended before this trial did."
    if row["cancel_requested"]:
        return "The tune run was cancelled."
    if timeout_at is not None and time.time() > timeout_at + tuning.OTHERS_GRACE_SECONDS:
        return "The tune run's timeout passed before this trial ended."
    return None


def _gave_up(run: Run, index: int, why: str) -> str:
    run_log(
        run=run,
        level="warning",
        message=f"Worker {WORKER_ID} could not join the study (assist {index}): {why}",
    )
    return f"could not prepare: {why}"
