"""Writes of tune runs: a trial's child run, started by its tune run's worker, and "Save best
as new version" (the best trial's hyperparameters as the recipe's next version)."""

from __future__ import annotations

import math

from django.db import transaction
from django.utils import timezone
from optuna.trial import TrialState

from audit import services as audit
from mlworkspace.errors import Conflict
from mlworkspace.ids import new_id
from recipes import services as recipe_services
from recipes import tuning as spec_tuning
from recipes.models import RecipeVersion

from .. import tuning_selectors
from ..models import Executor, Run, RunStatus, RunType
from .lifecycle import next_run_number
from .tracking import tracking_log


@transaction.atomic
def trial_start(*, tune: Run, study: str, number: int, params: dict, worker: str, stages: list[dict]) -> Run:
    """The child run of trial `number` of the tune run's study, created running (the tune
    run's worker executes it: it is neither queued nor enqueued, unlike ``run_start``'s runs),
    numbered like every run of the recipe, on the tune run's data, with its sampled
    hyperparameters as params and the tags ``tune.study``, ``tune.trial`` and
    ``mlflow.parentRunId`` (what MLflow's UI nests runs by). Audited as ``run.trial_start`` by
    the tune run's creator (the worker acts for them), naming the tune run and the trial."""
    now = timezone.now()
    synthetic = (tune.params_json or {}).get("synthetic")
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
            **({"synthetic": synthetic} if synthetic is not None else {}),
            "tuning": {"study": study, "trial": number},
            "hyperparameters": params,
        },
        parent=tune,
        worker=worker,
        started_at=now,
        heartbeat_at=now,
        stages_json=stages,
        current_stage=stages[0]["name"],
        created_by=tune.created_by,
    )
    tracking_log(
        run=trial,
        params=[{"key": k, "value": v} for k, v in params.items()],
        tags=[
            {"key": "tune.study", "value": study},
            {"key": "tune.trial", "value": str(number)},
            {"key": "mlflow.parentRunId", "value": tune.id},
        ],
    )
    audit.record(
        tune.created_by,
        "run.trial_start",
        trial,
        changes=audit.created(trial),
        detail={"tune_run_id": tune.id, "trial": number},
    )
    return trial


def tune_save_best(*, run: Run, user, at=None) -> RecipeVersion:
    """A new version of the tune run's recipe: the tuned version's manifest with the best
    trial's parameters in its training stage's hyperparameters, numbered by the suggested
    bump (recipes.services.version_create: a hyperparameter change is a patch). Audited.
    409 when the run is no tune run, its study has no finished trial, or the recipe has a
    version newer than the one tuned (its changes would be lost: tune that version). `at` (a
    datetime) dates the version and its audit record for seeded history (the demo); default now."""
    if run.run_type != RunType.TUNE:
        raise Conflict(f"Run '{run.id}' is a {run.run_type} run; only a tune run has a best trial to save.")
    study = tuning_selectors.load_study(run)
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
            at=at,
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
            at=at,
        )
    return created
