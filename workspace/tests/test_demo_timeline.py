"""The demo shows months of believable history (issue 11 §3.13): every write of seed_demo
passes an explicit time, so versions are weeks apart, evidence runs come before the approvals
they support, models are trained before they are promoted, and all of it before the
monitoring history starts. The production loop comes in order after it: the retrain during
the monitoring history, then the A/B test that promotes its challenger (started after the
lead's review, its daily traffic after the last check, stopped before seeding), then the new
champion's scored batches. The tune run comes on the seeding's day, after the A/B test: its
version, the run and its trials, the train run it is compared with, then the version it saved."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from audit.models import AuditEvent
from experiments.models import Experiment
from models_registry.models import MLModel
from monitoring.models import MonitorSnapshot, Retrain, ScoringBatch
from recipes.models import Recipe
from runs.models import Run, RunType
from workspace.demo import DEMO_TAG, MIN_ROWS
from workspace.demo.loop import AB_BATCHES

# Builds the whole demo with real runs; transactional, as the demo's tune run comes after its
# transaction commits and its study's process writes through a connection of its own.
pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.slow,
    pytest.mark.once,
]

DAYS = 3


def test_seed_demo_spreads_its_history_over_months():
    started = timezone.now()
    call_command("seed_demo", days=DAYS, rows=MIN_ROWS, stdout=StringIO())
    checks = MonitorSnapshot.objects.exclude(pk__in=ScoringBatch.objects.values("snapshot")).exclude(
        source="outcomes"
    )
    history_starts = checks.earliest("captured_at").captured_at

    demo = list(Recipe.objects.filter(tag_set__name=DEMO_TAG).prefetch_related("versions"))
    created = sorted(r.created_at for r in demo)
    assert created[-1] - created[0] > timedelta(days=90)  # months, not one moment
    assert len({r.updated_at for r in demo}) == len(demo)  # the library shows distinct times
    tune = Run.objects.get(run_type=RunType.TUNE)
    # "Save best as new version" is dated after the tune run and the train run it was compared with.
    saved = {
        e.detail["version_id"] for e in AuditEvent.objects.filter(action="run.save_best", object_id=tune.pk)
    }
    for recipe in demo:
        versions = sorted(recipe.versions.all(), key=lambda v: v.semver)
        assert versions[0].created_at == recipe.created_at
        for older, newer in zip(versions, versions[1:], strict=False):
            if newer.pk in saved:
                compared = Run.objects.get(recipe_version=tune.recipe_version, run_type=RunType.TRAIN)
                assert tune.finished_at < compared.finished_at < newer.created_at < timezone.now()
                assert (
                    AuditEvent.objects.get(action="run.save_best", object_id=tune.pk).at == newer.created_at
                )
            else:
                assert newer.created_at - older.created_at >= timedelta(days=7), recipe.name
        for v in versions:
            if v.approved_at is not None:
                assert v.created_at < v.approved_at < history_starts
            if v.approval_run_id:
                # The evidence run came before the approval it supports.
                run = v.approval_run
                assert run.created_at <= run.started_at <= run.finished_at < v.approved_at

    # The loop: DAYS is enough for the concept change, its retrain and the A/B test.
    retrain = Retrain.objects.get(decision="review")
    experiment = Experiment.objects.get()
    assert (experiment.status, experiment.winner) == ("stopped", "challenger")
    loop_runs = {retrain.run_id}
    # The tune run, its trials and the train run it is compared with: on the tuning version.
    tuning_runs = set(Run.objects.filter(recipe_version=tune.recipe_version).values_list("pk", flat=True))
    assert tune.recipe_version.created_at < tune.created_at
    for run in Run.objects.filter(recipe__in=demo):
        assert run.created_at >= run.recipe_version.created_at
        first_log = run.logs.order_by("seq").first().ts if run.started_at else run.created_at
        if run.started_at:
            assert run.started_at - run.created_at < timedelta(hours=1)
        if run.run_type == RunType.SCORE:  # scheduled scorings come after the A/B test
            assert experiment.stopped_at <= run.created_at <= first_log <= timezone.now()
        elif run.pk in loop_runs:  # the challenger's training, during the monitoring history
            assert history_starts <= run.created_at <= first_log < experiment.started_at
        elif run.pk in tuning_runs:  # on the seeding's day, after the A/B test, before the seeding
            assert experiment.stopped_at < run.created_at <= first_log <= run.finished_at < started
            if run.run_type == RunType.TRIAL:  # inside its tune run
                assert tune.started_at <= run.created_at <= run.finished_at <= tune.finished_at
            elif run.run_type == RunType.TRAIN:  # the comparison, after the study
                assert tune.finished_at < run.created_at
        else:
            assert run.created_at < history_starts
            assert first_log < history_starts

    last_check = checks.filter(model=experiment.champion).latest("captured_at").captured_at
    trigger = MonitorSnapshot.objects.get(pk=retrain.trigger_json["snapshot_id"])
    assert history_starts <= trigger.captured_at <= retrain.created_at < retrain.decided_at < last_check
    # The A/B test inside the history: started after the decision on the retrain that trained
    # its challenger (the lead's review), its traffic after the champion's last check, one
    # request and one post of outcomes a day, each outcome dated at its post, and stopped before
    # seeding (so before the first scored batch), the promotion it made at its stop.
    assert retrain.challenger_id == experiment.challenger_id
    assert retrain.decided_at < experiment.started_at < experiment.stopped_at < started
    served = sorted(set(experiment.exposures.values_list("first_seen_at", flat=True)))
    posts = sorted(
        AuditEvent.objects.filter(action="experiment.outcomes", object_id=experiment.pk).values_list(
            "at", flat=True
        )
    )
    assert len(served) == len(posts) == AB_BATCHES
    assert len({moment.date() for moment in served}) == len({moment.date() for moment in posts}) == AB_BATCHES
    assert set(experiment.outcomes.values_list("recorded_at", flat=True)) == set(posts)
    assert max(experiment.started_at, last_check) < served[0]
    for request, post, following in zip(served, posts, [*served[1:], experiment.stopped_at], strict=True):
        assert request < post < following  # a day's outcomes after its traffic, before the next
    first_scored = ScoringBatch.objects.filter(model_id=experiment.challenger_id).earliest("scheduled_for")
    assert experiment.stopped_at < first_scored.scheduled_for
    stop = AuditEvent.objects.get(action="experiment.stop", object_id=experiment.pk)
    start = AuditEvent.objects.get(action="experiment.start", object_id=experiment.pk)
    assert (start.at, stop.at) == (experiment.started_at, experiment.stopped_at)
    promotion = AuditEvent.objects.get(
        action="model.status", object_id=experiment.challenger_id, changes__status=["staging", "production"]
    )
    assert promotion.at == experiment.stopped_at
    for model in MLModel.objects.select_related("recipe_version", "training_run"):
        assert model.created_at > model.recipe_version.approved_at
        if model.training_run is not None:
            assert model.training_run.created_at >= model.created_at
            if model.promoted_at is not None:
                assert model.promoted_at > model.training_run.finished_at
        if model.pk == experiment.challenger_id:
            assert model.promoted_at == experiment.stopped_at
        elif model.promoted_at is not None:
            assert model.promoted_at < history_starts
