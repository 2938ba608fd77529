"""The demo's tune run (issue #15 §4), a step of its own after the demo's transaction commits.

A tune run's study runs in a child process that writes Optuna's tables through its own
database connection; inside the seeding's transaction it would wait for that transaction's
write lock on SQLite ("database is locked"). So seed_demo builds the demo, commits, then calls
`tune`: BurgerBay's site scorer — a recipe whose LightGBM model tuning plausibly helps — gets
a patch version with a tuning section, a real tune run on a synthetic world of its own (its
trials child runs, its study page), a train run of that version on the same rows, and "Save
best as new version" only when the best parameters beat that train run on the holdout. The
figures in the log are the runs' own.

Dated on the seeding's day, after the recipe's monitoring history and A/B test (stopped about
a day before seeding, loop.ab_test): the version TUNE_LEAD before seeding, the tune run and its
trials TUNE_STEP later, the train run TUNE_STEP after the tune run ends, a saved version
TUNE_STEP after the train run. Optuna's own trial times (the study
API's started_at / finished_at) stay at the moment the study ran; the trials' runs are moved
with their tune run.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db import transaction
from django.utils import timezone

from recipes import tuning as spec_tuning
from recipes.models import Level, Recipe, RecipeVersion
from runs.models import Run, RunType
from runs.services import run_move_in_time, run_start, tune_save_best
from runs.tuning_selectors import tune_study

from .builder import DEMO_TAG, DemoBuilder, DemoError, stage

TUNED_RECIPE = "BurgerBay"
# A world of its own: BurgerBay's other runs use seeds 50-53.
TUNE_SEED = 54
# Real LightGBM hyperparameters of the site scorer around the version's own values (its first
# trial). 12 trials keep the step short: measured on a 2-core machine, the tune run took 14 s at
# the default 5000 rows (9 s at MIN_ROWS), the whole step about 20 s, and at both sizes the best
# parameters beat the version's own on the holdout (by little: the version is already good).
N_TRIALS = 12
SPACE = {
    "num_leaves": {"type": "int", "low": 8, "high": 64},
    "min_data_in_leaf": {"type": "int", "low": 10, "high": 100},
    "learning_rate": {"type": "log", "low": 0.01, "high": 0.1},
    "feature_fraction": {"type": "float", "low": 0.5, "high": 1.0},
    "lambda_l2": {"type": "log", "low": 0.01, "high": 10},
}
# The tuning session on the seeding's day (see the module docstring).
TUNE_LEAD = timedelta(hours=3)
TUNE_STEP = timedelta(minutes=15)


class DemoTuningError(DemoError):
    """The demo's tune-run step failed; the demo itself was committed before it and stays."""


def tune(demo: DemoBuilder) -> dict:
    """BurgerBay's tune run, compared with a train run of the tuned version on the same rows,
    its best saved as the next version when better. Returns the summary's "tuning" entry: the
    runs, the version tuned and the one saved (None if not better), the figures and `statement`
    (the line the command prints)."""
    if transaction.get_connection().in_atomic_block:
        # The study's own connection would wait for this transaction's lock (SQLite), then fail.
        raise DemoError("the tune run needs the demo committed: call seed_demo outside a transaction")
    recipe = Recipe.objects.get(name=TUNED_RECIPE, level=Level.CLIENT, tag_set__name=DEMO_TAG)
    written = timezone.now() - TUNE_LEAD
    tuned = _tuning_version(demo, recipe, at=written)
    config = spec_tuning.config(tuned.manifest, recipe.model_family)
    run = _dated_with_trials(demo.execute(_start(demo, tuned, RunType.TUNE, at=written + TUNE_STEP)))
    study = tune_study(run)
    trials = sum(study["counts"].values())
    best = study["best"]
    demo.say(
        f"  study: {trials} trials ({', '.join(f'{n} {s}' for s, n in sorted(study['counts'].items()))}); "
        f"best trial {best['number']}: {config.metric} {best['value']:.4f} on the validation rows "
        f"({', '.join(f'{k}={_short(v)}' for k, v in best['params'].items())})"
    )
    at = run.finished_at + TUNE_STEP
    train = run_move_in_time(run=demo.execute(_start(demo, tuned, RunType.TRAIN, at=at)), at=at)
    found, own = run.metrics_json[config.metric], train.metrics_json[config.metric]
    demo.say(
        f"  on the holdout: {config.metric} {found:.4f} with the best parameters, {own:.4f} with the "
        f"version's own (its train run #{train.number}, same rows)"
    )
    better = found > own if config.direction == "maximize" else found < own
    saved = tune_save_best(run=run, user=demo.user, at=train.finished_at + TUNE_STEP) if better else None
    outcome = (
        f"saved as version {saved.version} (not approved yet)"
        if saved is not None
        else "not saved: the best parameters are no better than the version's own"
    )
    demo.say(f"  {outcome}")
    statement = (
        f"Tune run #{run.number} on '{recipe.name}' {tuned.version}: {trials} trials, {config.metric} "
        f"{found:.4f} on the holdout against {own:.4f} for the version's own train run; {outcome}."
    )
    return {
        "run": run,
        "train": train,
        "version": tuned,
        "saved": saved,
        "metric": config.metric,
        "best": found,
        "own": own,
        "statement": statement,
    }


def _tuning_version(demo: DemoBuilder, recipe: Recipe, *, at: datetime) -> RecipeVersion:
    """The recipe's next version (a patch: a tuning section changes no model) with SPACE."""

    def with_tuning(manifest: dict) -> None:
        stage(manifest, "training")["config"]["tuning"] = {
            "metric": "rank_correlation",
            "n_trials": N_TRIALS,
            "seed": 0,
            "parallel": 2,
            "space": SPACE,
        }

    changelog = f"A tuning section: {N_TRIALS} trials, two at a time, over {', '.join(SPACE)}"
    return demo.new_version(recipe, None, changelog, with_tuning, at=at)


def _start(demo: DemoBuilder, version: RecipeVersion, run_type: str, *, at: datetime) -> Run:
    return run_start(
        user=demo.user,
        recipe=version.recipe,
        recipe_version=version,
        run_type=run_type,
        params={"synthetic": {"rows": demo.rows, "seed": TUNE_SEED}},
        at=at,
    )


def _dated_with_trials(run: Run) -> Run:
    """The executed tune run moved to its creation time (run_start's `at`), its trials' runs
    moved by as much: run_move_in_time moves one run, and the trials ran inside this one."""
    executed = run.started_at
    run = run_move_in_time(run=run, at=run.created_at)
    shift = run.started_at - executed
    for trial in Run.objects.filter(parent=run):
        run_move_in_time(run=trial, at=trial.created_at + shift)
    return run


def _short(value) -> str:
    return f"{value:.4g}" if isinstance(value, float) else str(value)
