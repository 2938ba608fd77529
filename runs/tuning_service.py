"""Tune runs in the workspace: the worker executing one (its trials as child runs, heartbeat,
cancel), the study read back for its page and API, and "Save best as new version".

The study itself (Optuna, the families) runs in the tune run's child process
(``runs.tuning.study_main``); this process turns its messages into rows, as the executor
does for a run's pipeline:

* each trial is a child run (``run_type`` trial, ``parent`` the tune run) created when the
  trial starts, with its sampled hyperparameters as params and the tags ``tune.study``,
  ``tune.trial`` and ``mlflow.parentRunId``; its validation curve and metrics are logged
  with ``runs.services.tracking_log`` and it ends through ``runs.services.run_finish`` —
  succeeded, cancelled when the median pruner stopped it, failed when its model crashed;
* the study lives in the workspace's database (Optuna's RDB storage, its own tables, created
  on first use and not managed by Django's migrations: ``storage_url``). Its name is the id
  of the first tune run of a retry chain, so a retry continues it after a crash: the trials
  already finished count towards ``n_trials``, and a trial the dead worker left running is
  failed by Optuna's heartbeat once it has been silent for RUN_STALE_AFTER_SECONDS;
* cancel sets an event the child checks before each trial and after each boosting round, so
  the running trial stops within a round and the study ends; a child that does not stop
  within STOP_GRACE_SECONDS is terminated and its running trial failed in the storage.
"""

from __future__ import annotations

import functools
import math
import multiprocessing
import time

import optuna
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import connections, transaction
from django.utils import timezone
from optuna.trial import TrialState
from sqlalchemy.engine import URL

from audit import services as audit
from mlworkspace.errors import Conflict, NotFound
from mlworkspace.ids import new_id
from recipes import services as recipe_services
from recipes import tuning as spec_tuning
from recipes.models import RecipeVersion

from . import tuning, tuning_study
from .logs import run_log
from .models import Executor, Run, RunStatus, RunTag, RunType
from .services import (
    next_run_number,  # the one numbering rule of a recipe's runs
    run_finish,
    tracking_log,
)
from .services.tracking import now_ms

LOG_FLUSH_SECONDS = 0.5
STOP_GRACE_SECONDS = 15
# The Postgres connection options Django passes on that libpq understands as URL parameters.
_PG_OPTIONS = (
    "sslmode",
    "sslrootcert",
    "sslcert",
    "sslkey",
    "options",
    "application_name",
    "connect_timeout",
)


# --------------------------------------------------------------------------- the storage


def storage_url(alias: str = "default") -> str:
    """The SQLAlchemy URL of the workspace's database (the one Django uses now: under pytest,
    its test database), where Optuna keeps its studies."""
    connection = connections[alias]
    db = connection.settings_dict
    if connection.vendor == "sqlite":
        return f"sqlite:///{db['NAME']}"
    if connection.vendor == "postgresql":
        options = db.get("OPTIONS") or {}
        return URL.create(
            "postgresql+psycopg",
            username=db.get("USER") or None,
            password=db.get("PASSWORD") or None,
            host=db.get("HOST") or None,
            port=int(db["PORT"]) if db.get("PORT") else None,
            database=db["NAME"],
            query={k: str(options[k]) for k in _PG_OPTIONS if k in options},
        ).render_as_string(hide_password=False)
    raise ImproperlyConfigured(f"Tune runs need SQLite or PostgreSQL, not {connection.vendor}.")


@functools.cache
def _storage(url: str) -> optuna.storages.RDBStorage:
    # One storage per process and database for the pages' reads (its tables checked once),
    # holding no connection between requests.
    return tuning.storage(url, pooled=False)


def study_name(run: Run) -> str:
    """The study of a tune run: named after the first tune run of its retry chain, so a retry
    continues the study its predecessor left."""
    root, hops = run, 0
    while root.retry_of_id and hops < 1000:
        earlier = (
            Run.objects.filter(pk=root.retry_of_id, run_type=RunType.TUNE).only("id", "retry_of").first()
        )
        if earlier is None:
            break
        root, hops = earlier, hops + 1
    return root.id


def load_study(run: Run) -> optuna.Study | None:
    """The run's study as stored (None before its first trial was asked for)."""
    try:
        return optuna.load_study(study_name=study_name(run), storage=_storage(storage_url()))
    except KeyError:
        return None


# --------------------------------------------------------------------------- executing a tune run


def tune_execute(*, run: Run, spec: dict, progress, worker: str) -> dict:
    """Execute a claimed tune run (runs.executor calls this instead of the pipeline): the
    study in a child process, its trials as child runs. Returns the keyword arguments of the
    executor's finish: {"status", "error", "result"}. ``progress`` is the executor's (log
    lines, stages, the heartbeat conditional on this worker)."""
    name = study_name(run)
    spec = {
        **spec,
        "tuning": {
            "storage": storage_url(),
            "study_name": name,
            "heartbeat": max(1, round(settings.RUN_HEARTBEAT_SECONDS)),
            "grace": max(2, round(settings.RUN_STALE_AFTER_SECONDS)),
        },
    }
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
        killed = child.is_alive()
        if killed:
            child.terminate()
        child.join(timeout=10)
        if child.is_alive():
            child.kill()
            child.join()
        receiver.close()
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
    """The tune run's trials as child runs, from the child process's trial messages."""

    def __init__(self, run: Run, study: str, worker: str):
        self.run = run
        self.study = study
        self.worker = worker
        self.open: dict[int, tuple[Run, int]] = {}  # trial number -> (its run, Optuna's trial id)

    def handle(self, message: dict) -> None:
        if message["event"] == "start":
            self.start(message)
        else:
            self.end(message)

    def start(self, message: dict) -> None:
        tune, number, params = self.run, message["number"], message["params"]
        now = timezone.now()
        with transaction.atomic():
            trial = Run.objects.create(
                id=new_id("run"),
                recipe=tune.recipe,
                recipe_version=tune.recipe_version,
                number=next_run_number(tune.recipe),
                run_type=RunType.TRIAL,
                status=RunStatus.RUNNING,
                executor=Executor.WORKSPACE,
                dataset=tune.dataset,
                params_json={
                    **(
                        {"synthetic": tune.params_json["synthetic"]}
                        if "synthetic" in (tune.params_json or {})
                        else {}
                    ),
                    "tuning": {"study": self.study, "trial": number},
                    "hyperparameters": params,
                },
                parent=tune,
                worker=self.worker,
                started_at=now,
                heartbeat_at=now,
                stages_json=_trial_stages("running"),
                current_stage="fit",
                created_by=tune.created_by,
            )
            tracking_log(
                run=trial,
                params=[{"key": k, "value": v} for k, v in params.items()],
                tags=[
                    {"key": "tune.study", "value": self.study},
                    {"key": "tune.trial", "value": str(number)},
                    {"key": "mlflow.parentRunId", "value": tune.id},
                ],
            )
        described = ", ".join(f"{k}={v}" for k, v in params.items())
        run_log(run=trial, message=f"Trial {number} of tune run #{tune.number} ({self.study}): {described}")
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
                error="The tune run was cancelled."
                if cancelled
                else (message.get("error") or "The trial failed."),
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
                    _storage(storage_url()).set_trial_state_values(trial_id, TrialState.FAIL)
                except (RuntimeError, KeyError, optuna.exceptions.UpdateFinishedTrialError):
                    pass  # already finished by the study itself
            del self.open[number]


# --------------------------------------------------------------------------- reading a study


def tune_study(run: Run, study: optuna.Study | None = None) -> dict | None:
    """The study of a tune run (``study``: already loaded) as its page and API show it: every
    trial (with the id of its child run) and the best; None before the study has started."""
    study = study if study is not None else load_study(run)
    if study is None:
        return None
    data = tuning_study.summary(study)
    trial_runs = dict(
        RunTag.objects.filter(
            key="tune.trial", run__tag_rows__key="tune.study", run__tag_rows__value=study.study_name
        ).values_list("value", "run_id")
    )
    for row in data["trials"]:
        row["run_id"] = trial_runs.get(str(row["number"]))
    return data


# --------------------------------------------------------------------------- save best as new version


def tune_save_best(*, run: Run, user) -> RecipeVersion:
    """A new version of the tune run's recipe: the tuned version's manifest with the best
    trial's parameters in its training stage's hyperparameters, numbered by the suggested
    bump (recipes.services.version_create: a hyperparameter change is a patch). Audited.
    409 when the run is no tune run, its study has no finished trial, or the recipe has a
    version newer than the one tuned (its changes would be lost: tune that version)."""
    if run.run_type != RunType.TUNE:
        raise Conflict(f"Run '{run.id}' is a {run.run_type} run; only a tune run has a best trial to save.")
    study = load_study(run)
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,)) if study is not None else []
    if not complete:
        raise Conflict(
            f"Tune run '{run.id}' has no finished trial yet: nothing to save.",
            [{"path": "/study", "message": "no finished trial"}],
        )
    best = study.best_trial
    tuned = run.recipe_version
    latest = run.recipe.current_version
    if latest is not None and latest.pk != tuned.pk:
        raise Conflict(
            f"Version {latest.version} is newer than {tuned.version}, the version this run tuned: saving "
            f"the best parameters on {tuned.version} would undo its changes. Start a tune run on "
            f"{latest.version}, or copy the parameters into it by hand.",
            [{"path": "/recipe_version_id", "message": f"not the latest version ({latest.version})"}],
        )
    params = dict(best.params)
    metric = study.user_attrs.get("metric") or "the tuned metric"
    value = f"{best.value:.4g}" if isinstance(best.value, float) and math.isfinite(best.value) else best.value
    with transaction.atomic():
        created = recipe_services.version_create(
            recipe=run.recipe,
            user=user,
            manifest=spec_tuning.apply_params(tuned.manifest, params),
            changelog=(
                f"Hyperparameters of the best trial ({best.number}, {metric} = {value} on the validation rows) "
                f"of tune run #{run.number}: " + ", ".join(f"{k}={v}" for k, v in params.items())
            ),
        )
        audit.record(
            user,
            "run.save_best",
            run,
            detail={
                "version": created.version,
                "version_id": created.pk,
                "trial": best.number,
                "params": params,
            },
        )
    return created


def get_tune_run(queryset, run_id: str) -> Run:
    """A tune run of ``queryset`` (the user's visible runs), or a 404 naming it."""
    run = queryset.select_related("recipe", "recipe_version").filter(pk=run_id).first()
    if run is None:
        raise NotFound(f"Run '{run_id}' not found.", [{"path": "/id", "message": "unknown run"}])
    if run.run_type != RunType.TUNE:
        raise NotFound(
            f"Run '{run_id}' is a {run.run_type} run: only tune runs have a study.",
            [{"path": "/run_type", "message": f"{run.run_type}, not tune"}],
        )
    return run
