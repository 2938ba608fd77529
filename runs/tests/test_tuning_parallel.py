"""A tune run with ``parallel: 2`` runs two trials at once on one study (Optuna's n_jobs: a
thread each, LightGBM releasing the GIL): the trials overlap in time, each is still its own
child run, and the study ends with the n_trials it was asked for. Transactional for the same
reason as test_tuning.py (the study writes through its own connection)."""

import pytest

from recipes.models import RecipeVersion
from runs import tuning_selectors
from runs.tests.test_tuning import executed, start, trials_of, tune_version

pytestmark = pytest.mark.django_db(transaction=True)


def parallel_version(user, parallel: int, n_trials: int) -> RecipeVersion:
    version = tune_version(user, n_trials=n_trials, rounds=150)
    stage = next(s for s in version.manifest["pipeline"]["stages"] if s["type"] == "training")
    stage["config"]["tuning"]["parallel"] = parallel
    RecipeVersion.objects.filter(pk=version.pk).update(manifest=version.manifest)
    version.refresh_from_db()
    return version


def overlapping(trials) -> int:
    """How many pairs of trials ran at the same time."""
    spans = sorted((t.started_at, t.finished_at) for t in trials)
    return sum(1 for i, a in enumerate(spans) for b in spans[i + 1 :] if b[0] < a[1])


def test_two_trials_run_at_once_and_the_study_gets_its_trials(baselines, user):
    run = executed(start(user, parallel_version(user, parallel=2, n_trials=6)))
    assert run.status == "succeeded", run.error
    trials = trials_of(run)
    assert len(trials) == 6 and all(t.status in ("succeeded", "cancelled") for t in trials)
    assert overlapping(trials) >= 2  # two at a time, not one after the other
    assert len({t.number for t in trials}) == 6  # each its own run, numbered once
    counts = tuning_selectors.tune_study(run)["counts"]
    assert counts.get("complete", 0) + counts.get("pruned", 0) == 6
    assert "tuning: 2 trials at a time" in run.logs.values_list("message", flat=True)


def test_one_at_a_time_by_default(baselines, user):
    run = executed(start(user, tune_version(user, n_trials=3, rounds=150)))
    assert run.status == "succeeded", run.error
    assert overlapping(trials_of(run)) == 0
