"""Hyperparameter tuning with Optuna: the study a ``tune`` run executes, in the run's child
process. Plain Python (Optuna, the families), no Django: the worker's side — the trials'
child runs, heartbeat, cancel — is ``runs/tuning_executor.py``.

The tune run's stages run as a train run's would, except two:

* training — the study: the training rows are split again (``family.split``, the recipe's own
  validation method) into fitting rows and validation rows; every trial fits the family's
  model with the sampled hyperparameters (``recipes.tuning.apply_params``) and scores the
  tuning metric on the validation rows. TPE sampler, median pruner on LightGBM's validation
  loss per boosting round (through the families' ``fit(callbacks=...)``), an RDB storage on
  the workspace's database (``storage``), study name = the tune run's id (its retries
  continue it). The version's own values of the tuned hyperparameters are the first trial,
  so the best trial is at least as good as the version on the validation rows.
* evaluation — the best parameters and the version's own are each fitted on all training
  rows and evaluated on the holdout, which the study never saw: the run's metrics are the
  best parameters', ``tuning.json`` has both.

With ``workers`` > 1 the study is shared by other workers' processes (``assist_main``, started
by runs/tuning_assist.py): the same stages up to the split (``_stages``), the same objective
(``_Search``), their own TPE seed; the tune run's own process waits for their running trials
before it evaluates the best.

Messages to the worker, on top of the pipeline's ("log", "stage", "result", "error"):
    ("trial", {"event": "start", "number", "trial_id", "params"})
    ("trial", {"event": "end", "number", "state": complete|pruned|fail, "value",
               "metrics", "history": {key: [[step, value], ...]}, "error"})
"""

from __future__ import annotations

import contextlib
import functools
import inspect
import json
import math
import os
import sqlite3
import threading
import time
import traceback
import warnings
from pathlib import Path

import optuna
import sqlalchemy
from optuna.trial import TrialState
from sqlalchemy.pool import NullPool
from threadpoolctl import threadpool_limits

from mlworkspace.redact import redact_paths
from recipes import tuning as spec_tuning

from .data import dataset_problems, describe_columns
from .families import get_family
from .pipeline import (
    StageFailed,
    explain_failure,
    json_safe,
    limit_threads,
    load_data,
    quality_failure,
    server_roots,
)

# The median pruner starts comparing after this many finished trials and boosting rounds.
PRUNER_STARTUP_TRIALS = 5
PRUNER_WARMUP_STEPS = 100
# A trial reports its validation loss to the study every this many boosting rounds (one
# database write each); its curve keeps every round.
REPORT_EVERY = 10
# The study stops after this many failed trials in a row (a space whose models all crash).
MAX_FAILURES_IN_A_ROW = 3
FINISHED = (TrialState.COMPLETE, TrialState.PRUNED)
# With several workers (tuning.workers), the tune run's own process waits for the trials other
# workers are running before it chooses the best: at most this long past the study's timeout.
OTHERS_GRACE_SECONDS = 60
# How often a process waiting on the study (for the others' trials, or an assist for the study
# to be set up) reads it again.
WAIT_EVERY_SECONDS = 0.5
# An assist's TPE seed is the study's seed + this x its index (+ the trials so far): apart
# from the tune run's own seed + trials so far while a study has fewer trials than this.
ASSIST_SEED_STRIDE = 1000
STATES = {
    TrialState.COMPLETE: "complete",
    TrialState.PRUNED: "pruned",
    TrialState.FAIL: "fail",
    TrialState.RUNNING: "running",
    TrialState.WAITING: "waiting",
}


class Stopped(Exception):
    """The tune run was cancelled: the running trial stops between two boosting rounds."""


class TrialFailed(Exception):
    """A trial's model could not be fitted or scored (the study goes on with the next)."""


# --------------------------------------------------------------------------- the study


def storage(
    url: str, *, heartbeat: int | None = None, grace: int | None = None, pooled: bool = True
) -> optuna.storages.RDBStorage:
    """Optuna's RDB storage on the workspace's database (its own tables, created on first
    use: studies, trials, trial_params, ...). With ``heartbeat`` a running trial beats every
    that many seconds, and one silent for ``grace`` seconds (its worker died) is failed when
    the study next starts a trial. ``pooled=False``: no connection is kept open between two
    uses (a long-lived web process must not hold connections Django does not know of)."""
    kwargs: dict = {"pool_pre_ping": True}
    if url.startswith("sqlite:///"):
        kwargs = {"creator": functools.partial(_sqlite_connect, url.removeprefix("sqlite:///"))}
    if not pooled:
        kwargs = {k: v for k, v in kwargs.items() if k != "pool_pre_ping"} | {"poolclass": NullPool}
    with _schema_lock(url), warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)  # heartbeat_interval
        return optuna.storages.RDBStorage(
            url, engine_kwargs=kwargs, heartbeat_interval=heartbeat, grace_period=grace
        )


# The key of the PostgreSQL advisory lock around creating Optuna's tables (any constant that no
# other code of this database uses).
_SCHEMA_LOCK_KEY = 0x6F70_7475  # "optu"


@contextlib.contextmanager
def _schema_lock(url: str):
    """On PostgreSQL, one process at a time creates (or checks) Optuna's tables: a tune run's
    process and a worker's assist opening a new database's study at once both ran CREATE TABLE,
    and the second failed on pg_type's unique index. A session-level advisory lock on a
    connection of its own, released on exit; SQLite serialises the schema change itself."""
    if not url.startswith("postgresql"):
        yield
        return
    engine = sqlalchemy.create_engine(url, poolclass=NullPool)
    try:
        with engine.connect() as connection:
            connection.execute(sqlalchemy.text("SELECT pg_advisory_lock(:key)"), {"key": _SCHEMA_LOCK_KEY})
            try:
                yield
            finally:
                connection.execute(
                    sqlalchemy.text("SELECT pg_advisory_unlock(:key)"), {"key": _SCHEMA_LOCK_KEY}
                )
    finally:
        engine.dispose()


def _sqlite_connect(path: str) -> sqlite3.Connection:
    """A connection as Django's to the same file (mlworkspace/settings.py): WAL, so the
    worker's writes and the study's do not block each other's readers, and a commit without
    a full fsync (a trial reports its loss many times)."""
    connection = sqlite3.connect(path, timeout=30, check_same_thread=False)
    connection.execute("PRAGMA journal_mode=WAL")
    connection.execute("PRAGMA synchronous=NORMAL")
    return connection


def load(url: str, name: str) -> optuna.Study | None:
    """The stored study ``name`` (None if it does not exist yet)."""
    try:
        return optuna.load_study(study_name=name, storage=storage(url))
    except KeyError:
        return None


def suggest(trial: optuna.Trial, space: tuple[spec_tuning.Param, ...]) -> dict:
    """One value per parameter of the space, sampled by the study."""
    params = {}
    for p in space:
        if p.type == "int":
            params[p.name] = trial.suggest_int(p.name, int(p.low), int(p.high), step=int(p.step or 1))
        elif p.type == "float":
            params[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), step=p.step)
        elif p.type == "log":
            params[p.name] = trial.suggest_float(p.name, float(p.low), float(p.high), log=True)
        else:
            params[p.name] = trial.suggest_categorical(p.name, list(p.choices))
    return params


def finished(study: optuna.Study) -> int:
    return len(study.get_trials(deepcopy=False, states=FINISHED))


def pruning_callback(trial: optuna.Trial, maximize: bool, history: dict, stop=None):
    """A LightGBM callback: after each boosting round, records the validation metrics (not the
    training ones) in ``history``, reports the first of them to the study (its sign flipped
    when it runs against the study's direction, so the median pruner compares like with like)
    and raises TrialPruned when the pruner says so; raises Stopped once ``stop`` is set. Only
    the first booster a fit trains is followed (some families fit several)."""
    seen = {"last": -1, "done": False}

    def callback(env) -> None:
        if stop is not None and stop.is_set():
            raise Stopped("the tune run was cancelled")
        if seen["done"] or env.iteration <= seen["last"]:
            seen["done"] = True  # a second booster starts again at round 0
            return
        seen["last"] = env.iteration
        reported = False
        for item in env.evaluation_result_list or []:
            data_name, metric, value, higher_better = item[0], item[1], item[2], item[3]
            if str(data_name).split(".")[0] in ("training", "train"):  # "train", "train.treated"
                continue
            history.setdefault(f"{data_name}.{metric}", []).append([int(env.iteration), float(value)])
            if not reported and env.iteration % REPORT_EVERY == 0 and math.isfinite(value):
                reported = True
                trial.report(value if bool(higher_better) == maximize else -value, env.iteration)
                # Asking reads every trial of the study: not before the pruner could say yes.
                if trial.number >= PRUNER_STARTUP_TRIALS and trial.should_prune():
                    raise optuna.TrialPruned(f"pruned at boosting round {env.iteration}")

    callback.order = 40  # after LightGBM's own (evaluation logging, early stopping)
    return callback


def fit(family, rows, manifest: dict, *, threads: int, callbacks: list, valid=None):
    """``family.fit`` with the LightGBM callbacks (and the validation rows they are evaluated
    on, for a family that takes them) when the family's fit takes them (runs/families)."""
    accepts = inspect.signature(family.fit).parameters
    extra: dict = {}
    if callbacks and "callbacks" in accepts:
        extra["callbacks"] = callbacks
        if valid is not None and "valid" in accepts:
            extra["valid"] = valid
    return family.fit(rows, manifest, threads=threads, log=_quiet, **extra)


def _quiet(_message: str) -> None:
    """A trial's fit says nothing: the tune run logs one line per trial."""


def _describe(params: dict) -> str:
    return ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in params.items())


def _open(tuning: dict, config: spec_tuning.TuningConfig) -> optuna.Study:
    """The tune run's study in the workspace's database, created by whichever process asks
    first (the tune run's own or an assist) and loaded by the others."""
    store = storage(tuning["storage"], heartbeat=tuning.get("heartbeat"), grace=tuning.get("grace"))
    return optuna.create_study(
        storage=store,
        study_name=tuning["study_name"],
        direction=config.direction,
        load_if_exists=True,
        pruner=optuna.pruners.MedianPruner(
            n_startup_trials=PRUNER_STARTUP_TRIALS, n_warmup_steps=PRUNER_WARMUP_STEPS
        ),
    )


class _Search:
    """One process's share of a study: the objective every trial runs (the family's model fitted
    with the sampled hyperparameters on the fitting rows, the tuning metric scored on the
    validation rows), the callback that reports each ended trial, and Optuna's optimize. The
    tune run's own process (``run_study``) and its assists (``assist``) use the same, so a
    trial is the same whichever worker runs it."""

    def __init__(self, *, family, manifest: dict, config, fit_rows, valid, threads: int, emit, stop, seconds):
        self.family, self.manifest, self.config = family, manifest, config
        self.fit_rows, self.valid, self.threads = fit_rows, valid, threads
        self.emit, self.stop = emit, stop
        self.maximize = config.direction == "maximize"
        self.deadline = time.monotonic() + seconds if seconds is not None else None
        self.failures = 0
        self.ran: list[int] = []  # the numbers of the trials that ended in this process
        # With parallel > 1 Optuna runs several trials at once, each on its own thread
        # (LightGBM releases the GIL); the running trials are the histories' keys.
        self.histories: dict[int, dict] = {}

    def objective(self, trial: optuna.Trial) -> float:
        if self.stop is not None and self.stop.is_set():
            raise Stopped("the tune run was cancelled")
        config, family = self.config, self.family
        params = suggest(trial, config.space)
        history: dict = {}
        self.histories[trial.number] = history
        self.emit(
            "trial", {"event": "start", "number": trial.number, "trial_id": trial._trial_id, "params": params}
        )
        trial_manifest = spec_tuning.apply_params(self.manifest, params)
        callback = pruning_callback(trial, self.maximize, history, self.stop)
        try:
            model = fit(
                family,
                self.fit_rows,
                trial_manifest,
                threads=self.threads,
                callbacks=[callback],
                valid=self.valid,
            )
            metrics, _, _ = family.evaluate(model, self.valid, trial_manifest)
        except (optuna.TrialPruned, Stopped):
            raise
        except Exception as exc:
            trial.set_user_attr("error", explain_failure(exc)[:500])
            raise TrialFailed(str(exc)) from exc
        metrics = json_safe(metrics)
        trial.set_user_attr("metrics", metrics)
        value = metrics.get(config.metric)
        if not isinstance(value, (int, float)) or not math.isfinite(value):
            trial.set_user_attr("error", f"{config.metric} is not a number on the validation rows")
            raise TrialFailed(f"{config.metric} is not a number")
        return float(value)

    def ended(self, study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        self.failures = self.failures + 1 if trial.state == TrialState.FAIL else 0
        self.ran.append(trial.number)
        self.emit("trial", _end_message(trial, self.histories.pop(trial.number, {})))
        if self.failures >= MAX_FAILURES_IN_A_ROW:
            self.emit(
                "log", "error", f"tuning: {MAX_FAILURES_IN_A_ROW} trials in a row failed; the study stops"
            )
            study.stop()

    def optimize(self, study: optuna.Study, n_trials: int, n_jobs: int) -> None:
        """At most ``n_trials`` trials here, and none once the study has n_trials finished ones:
        each process counts the study's finished trials when one of its own ends."""
        if n_trials <= 0 or self.failures >= MAX_FAILURES_IN_A_ROW:
            return
        with warnings.catch_warnings():
            # A family that fits two boosters reports the same round twice: optuna warns.
            warnings.simplefilter("ignore")
            study.optimize(
                self.objective,
                n_trials=n_trials,
                n_jobs=n_jobs,
                timeout=max(0.0, self.deadline - time.monotonic()) if self.deadline is not None else None,
                catch=(TrialFailed,),
                callbacks=[optuna.study.MaxTrialsCallback(self.config.n_trials, states=FINISHED), self.ended],
            )

    def abandon(self) -> None:
        """Stopped: every trial still running has stopped (Optuna waits for its threads before
        it raises), each reported as failed by the cancel."""
        for number, history in list(self.histories.items()):
            self.emit(
                "trial",
                {
                    "event": "end",
                    "number": number,
                    "state": "fail",
                    "value": None,
                    "metrics": {},
                    "history": history,
                    "error": "cancelled",
                },
            )
        self.histories.clear()


def run_study(
    *, family, manifest: dict, config: spec_tuning.TuningConfig, train, threads: int, tuning: dict, emit, stop
) -> optuna.Study:
    """The training stage of a tune run: the study on ``train`` (split again into fitting and
    validation rows), continued up to ``config.n_trials`` finished trials."""
    fit_rows, valid = family.split(train, manifest)
    emit("log", "info", f"tuning: {len(fit_rows)} rows to fit each trial, {len(valid)} to validate it")
    study = _open(tuning, config)
    done = finished(study)
    # Seeded, and a continued study draws new random points rather than the first run's again.
    study.sampler = optuna.samplers.TPESampler(seed=config.seed + len(study.trials))
    if not study.trials:
        baseline = spec_tuning.current_values(manifest, config.space)
        if baseline:
            study.enqueue_trial(baseline, user_attrs={"baseline": True})
        study.set_user_attr("metric", config.metric)
        study.set_user_attr("family", family.NAME)
        # Last: an assist starts no trial before it sees this (``_join``), so it never takes
        # the place of the version's own values as the first trial.
        study.set_user_attr("run_id", tuning["study_name"])
    remaining = config.n_trials - done
    if remaining <= 0:
        emit("log", "info", f"tuning: the study already has {done} finished trials of {config.n_trials}")
        return study
    if done:
        emit(
            "log",
            "info",
            f"tuning: continuing study {study.study_name} ({done} of {config.n_trials} trials done)",
        )
    if config.parallel > 1:
        emit("log", "info", f"tuning: {config.parallel} trials at a time")
    if config.workers > 1:
        emit(
            "log",
            "info",
            f"tuning: up to {config.workers} workers run trials of this study "
            f"(this one and {config.workers - 1} more from the training queue, when they are free)",
        )
    search = _Search(
        family=family,
        manifest=manifest,
        config=config,
        fit_rows=fit_rows,
        valid=valid,
        threads=threads,
        emit=emit,
        stop=stop,
        seconds=config.timeout.total_seconds() if config.timeout else None,
    )
    try:
        if config.parallel > 1:
            # Enqueued trials (the version's own values) alone first: on SQLite, which has no
            # row locks, two threads would both take the same waiting trial.
            waiting = len(study.get_trials(deepcopy=False, states=(TrialState.WAITING,)))
            search.optimize(study, min(waiting, remaining), 1)
            remaining = config.n_trials - finished(study)
        search.optimize(study, remaining, config.parallel)
        if config.workers > 1:
            # The study may end with up to workers - 1 more finished trials than n_trials
            # (workers x parallel - 1 with threads): each process checks the count only when
            # one of its own trials ends, and the trials running elsewhere then still finish.
            _wait_for_others(study, search, stop, emit)
    except Stopped:
        search.abandon()
        raise
    return study


def _wait_for_others(study: optuna.Study, search: _Search, stop, emit) -> None:
    """Until no trial of the study is running (this process's have all ended: the ones left
    are other workers'), so that the best is chosen among them too; at most until the study's
    timeout and OTHERS_GRACE_SECONDS more, and not past a cancel. A trial whose worker died
    stops beating and is failed here once silent for the storage's grace."""
    told = False
    while True:
        if stop is not None and stop.is_set():
            raise Stopped("the tune run was cancelled")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(study)
        running = sorted(t.number for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)))
        if not running:
            return
        if not told:
            told = True
            emit("log", "info", f"tuning: waiting for trials {_numbers(running)} running on other workers")
        if search.deadline is not None and time.monotonic() > search.deadline + OTHERS_GRACE_SECONDS:
            emit(
                "log",
                "warning",
                f"tuning: trials {_numbers(running)} are still running on other workers after the timeout; "
                "the best is chosen without them",
            )
            return
        time.sleep(WAIT_EVERY_SECONDS)


def _numbers(numbers: list[int]) -> str:
    return ", ".join(str(n) for n in numbers)


def _end_message(trial: optuna.trial.FrozenTrial, history: dict) -> dict:
    return {
        "event": "end",
        "number": trial.number,
        "state": STATES.get(trial.state, str(trial.state.name).lower()),
        "value": trial.value if trial.state == TrialState.COMPLETE else None,
        "metrics": trial.user_attrs.get("metrics") or {},
        "params": trial.params,
        "history": history,
        "error": trial.user_attrs.get("error", ""),
        "pruned_at": trial.last_step if trial.state == TrialState.PRUNED else None,
    }


# --------------------------------------------------------------------------- an assist


def _join(
    tuning: dict, config: spec_tuning.TuningConfig, stop, deadline: float | None
) -> optuna.Study | None:
    """The tune run's study once its own process has set it up (its ``run_id`` attribute is
    set after the version's own values are enqueued) and taken the enqueued trials: on SQLite,
    which has no row locks, two processes could both take the same waiting trial. None when
    stopped or past the deadline first."""
    study = _open(tuning, config)
    while True:
        if (stop is not None and stop.is_set()) or (deadline is not None and time.monotonic() > deadline):
            return None
        ready = "run_id" in study.user_attrs
        if ready and not study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            return study
        time.sleep(WAIT_EVERY_SECONDS)


def _assist(spec: dict, emit, stop, where: dict) -> dict:
    """Trials of the tune run's study in another worker (runs.tuning_assist): the same data,
    split and objective as the tune run's own process, until the study has n_trials finished
    trials, the stop event is set (the tune run ended or was cancelled) or its timeout passes.
    Its result: the numbers of the trials it ran."""
    family, manifest, config = _setup(spec)
    tuning = spec["tuning"]
    timeout_at = tuning.get("timeout_at")  # the tune run's start + its timeout (epoch seconds)
    deadline = time.monotonic() + max(0.0, timeout_at - time.time()) if timeout_at is not None else None
    train = _training_rows(spec, family, manifest, emit, where)
    fit_rows, valid = family.split(train, manifest)
    study = _join(tuning, config, stop, deadline)
    if study is None or finished(study) >= config.n_trials:
        return {"trials": []}
    # Not the tune run's own seed: TPE's first trials are random draws from the seed, so a
    # second process with the same seed would run the same hyperparameters as the first. The
    # assist's index (1, 2, ...) keeps it reproducible which stream each assist draws, and
    # ASSIST_SEED_STRIDE keeps the streams apart from the own process's seed + trials so far.
    index = int(tuning.get("assist") or 1)
    study.sampler = optuna.samplers.TPESampler(
        seed=config.seed + ASSIST_SEED_STRIDE * index + len(study.trials)
    )
    search = _Search(
        family=family,
        manifest=manifest,
        config=config,
        fit_rows=fit_rows,
        valid=valid,
        threads=int(spec.get("threads", 1)),
        emit=emit,
        stop=stop,
        seconds=max(0.0, deadline - time.monotonic()) if deadline is not None else None,
    )
    try:
        search.optimize(study, config.n_trials - finished(study), config.parallel)
    except Stopped:
        search.abandon()
        raise
    return {"trials": sorted(search.ran)}


# --------------------------------------------------------------------------- the tune run's stages


def study_main(spec: dict, conn, stop) -> None:
    """Entry point of a tune run's child process (as runs.pipeline.child_main for a run)."""
    _serve(spec, conn, stop, execute)


def assist_main(spec: dict, conn, stop) -> None:
    """Entry point of an assist's child process (runs.tuning_assist): trials of a tune run's
    study in another worker; messages as ``study_main``'s, its result {"trials": [numbers]}."""
    _serve(spec, conn, stop, assist)


def _serve(spec: dict, conn, stop, body) -> None:
    """Run ``body(spec, emit, stop)`` in this child process, sending its messages to ``conn``."""
    os.setpgrp()  # out of the worker's process group, as runs.pipeline.child_main (why: there)
    limit_threads(int(spec.get("threads", 1)))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    parent = os.getppid()
    roots = server_roots(spec)
    sending = threading.Lock()  # parallel trials emit from their own threads

    def emit(*message):
        if os.getppid() != parent:  # the worker died: nobody records this study any more
            os._exit(3)
        if message[0] in ("log", "error", "stage"):
            message = tuple(redact_paths(m, roots) if isinstance(m, str) else m for m in message)
        with sending:
            conn.send(message)

    try:
        with threadpool_limits(int(spec.get("threads", 1))):
            result = body(spec, emit, stop)
        emit("result", result)
    except Stopped:
        emit("log", "warning", "tuning: stopped (the run was cancelled)")
    except StageFailed as exc:
        if exc.__cause__ is not None:
            emit("log", "error", "".join(traceback.format_exception(exc.__cause__))[-4000:])
        emit("error", str(exc))
    except Exception as exc:
        emit("log", "error", traceback.format_exc()[-4000:])
        emit("error", explain_failure(exc))
    finally:
        conn.close()


def execute(spec: dict, emit, stop=None) -> dict:
    """The tune run's stages; a crash fails its stage with a reason in words."""
    return _guarded(_execute, spec, emit, stop)


def assist(spec: dict, emit, stop=None) -> dict:
    """An assist's share of the study (``_assist``); a crash is a reason in words."""
    return _guarded(_assist, spec, emit, stop)


def _guarded(body, spec: dict, emit, stop) -> dict:
    where: dict = {"run_type": "tune"}
    try:
        return body(spec, emit, stop, where)
    except (StageFailed, Stopped):
        raise
    except Exception as exc:
        raise StageFailed(explain_failure(exc, **where)) from exc


def _setup(spec: dict):
    """The family, the manifest and its tuning section (StageFailed without one)."""
    family = get_family(spec["family"])
    manifest = spec["manifest"]
    config = spec_tuning.config(manifest, family.NAME)
    if config is None:
        raise StageFailed(
            "The version has no tuning section: add pipeline.stages[training].config.tuning "
            "(metric, n_trials, space) to the manifest, then start a tune run on that version."
        )
    return family, manifest, config


def _stages(spec: dict, family, manifest: dict, emit, where: dict):
    """The pipeline's stages with the data each one gets, the rules the tune run's own process
    and its assists share: the data loaded at the first stage, checked by quality, prepared by
    feature_prep. Yields (index, stage, frame, started) once the stage's data step is done."""
    frame = None
    for index, stage in enumerate(manifest["pipeline"]["stages"]):
        kind = stage["type"]
        emit("stage", index, "running", "")
        where.update(stage=stage, frame=frame)
        started = time.monotonic()
        if frame is None:
            frame = load_data(spec, family, emit)
            where["frame"] = frame
        if kind == "quality":
            if len(frame) == 0:
                raise StageFailed("The data has no rows (only a header): use data with rows, then run again.")
            problems = dataset_problems(frame, describe_columns(frame), manifest, family.NAME)
            if problems:
                for p in problems:
                    emit("log", "error", f"quality: {p}")
                raise StageFailed(quality_failure(problems))
            emit("log", "info", f"quality: {len(frame)} rows passed the checks")
        elif kind == "feature_prep":
            frame = family.prepare(frame, manifest, log=lambda m: emit("log", "info", m))
            where["frame"] = frame
        yield index, stage, frame, started


def _training_rows(spec: dict, family, manifest: dict, emit, where: dict):
    """The rows the study searches on: the training part of the holdout split, as the tune
    run's own process gets them at its training stage."""
    for _, stage, frame, _ in _stages(spec, family, manifest, emit, where):
        if stage["type"] == "training":
            return family.split(frame, manifest)[0]
    raise StageFailed("The pipeline has no training stage.")


def _execute(spec: dict, emit, stop, where: dict) -> dict:
    family, manifest, config = _setup(spec)
    threads = int(spec.get("threads", 1))
    out_dir = Path(spec["artifact_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    split = study = None
    result: dict = {"metrics": {}, "artifacts": {}, "plots": {}, "folds": []}
    for index, stage, frame, started in _stages(spec, family, manifest, emit, where):
        kind = stage["type"]
        if kind == "training":
            split = family.split(frame, manifest)
            emit(
                "log",
                "info",
                f"tuning: {config.n_trials} trials, {config.direction} {config.metric} "
                f"over {', '.join(p.name for p in config.space)}",
            )
            study = run_study(
                family=family,
                manifest=manifest,
                config=config,
                train=split[0],
                threads=threads,
                tuning=spec["tuning"],
                emit=emit,
                stop=stop,
            )
        elif kind == "evaluation":
            if study is None:
                raise StageFailed("The pipeline has no training stage before evaluation.")
            _evaluate_best(family, manifest, config, study, split, threads, out_dir, result, emit)
        elif kind == "explain":  # the model a saved version trains is explained by its train run
            emit("stage", index, "skipped", "a tune run explains no model: its best version's train run does")
            continue
        elif kind not in ("quality", "feature_prep"):  # deployment: nothing to deploy
            emit(
                "stage", index, "skipped", "a tune run deploys nothing: save its best parameters as a version"
            )
            continue
        emit("stage", index, "succeeded", f"{time.monotonic() - started:.2f}s")
    return json_safe(result)


def _evaluate_best(
    family, manifest, config, study, split, threads, out_dir: Path, result: dict, emit
) -> None:
    """The best parameters and the version's own, each fitted on the training rows and
    evaluated on the holdout; the run's metrics are the best parameters'."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        errors = [t.user_attrs.get("error") for t in study.trials if t.user_attrs.get("error")]
        why = f": {errors[-1]}" if errors else " (every trial was pruned or stopped)"
        raise StageFailed(f"No trial of the study finished{why}")
    best = study.best_trial
    train, test = split
    best_manifest = spec_tuning.apply_params(manifest, best.params)
    model = fit(family, train, best_manifest, threads=threads, callbacks=[])
    metrics, _, plots = family.evaluate(model, test, best_manifest)
    baseline_model = fit(family, train, manifest, threads=threads, callbacks=[])
    baseline, _, _ = family.evaluate(baseline_model, test, manifest)
    metrics, baseline = json_safe(metrics), json_safe(baseline)
    result["metrics"] = metrics
    result["plots"] = json_safe(plots)
    name = config.metric
    emit(
        "log",
        "info",
        f"evaluation: on the holdout, the best parameters (trial {best.number}: {_describe(best.params)}) "
        f"give {name} = {_fmt(metrics.get(name))}; the version's own give {_fmt(baseline.get(name))}",
    )
    summary = {
        "study_name": study.study_name,
        "metric": name,
        "direction": config.direction,
        "n_trials": config.n_trials,
        "trials": counts(study),
        "best": {"number": best.number, "params": best.params, "validation_value": best.value},
        "holdout": {"best": metrics, "version": baseline},
    }
    (out_dir / "tuning.json").write_text(json.dumps(json_safe(summary), indent=2))
    (out_dir / "metrics.json").write_text(
        json.dumps({"metrics": metrics, "version_metrics": baseline}, indent=2)
    )
    result["artifacts"].update({"tuning.json": "tuning", "metrics.json": "metrics"})


def counts(study: optuna.Study) -> dict[str, int]:
    """How many trials of the study are in each state ("complete", "pruned", ...)."""
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        state = STATES.get(t.state, t.state.name.lower())
        out[state] = out.get(state, 0) + 1
    return out


def _fmt(value) -> str:
    return f"{value:.4g}" if isinstance(value, (int, float)) else "n/a"
