"""The demo shows months of believable history (issue 11 §3.13): every write of seed_demo
passes an explicit time, so versions are weeks apart, evidence runs come before the approvals
they support, models are trained before they are promoted, and all of it before the
monitoring history starts."""

from datetime import timedelta
from io import StringIO

import pytest
from django.core.management import call_command
from django.utils import timezone

from models_registry.models import MLModel
from monitoring.models import MonitorSnapshot
from recipes.models import Recipe
from runs.models import Run, RunType
from workspace.demo import DEMO_TAG, MIN_ROWS

pytestmark = [
    pytest.mark.django_db,
    pytest.mark.slow,
    pytest.mark.once,
]  # builds the whole demo with real runs

DAYS = 3


def test_seed_demo_spreads_its_history_over_months():
    started = timezone.now()
    call_command("seed_demo", days=DAYS, rows=MIN_ROWS, stdout=StringIO())
    history_starts = started - timedelta(days=DAYS)

    demo = list(Recipe.objects.filter(tag_set__name=DEMO_TAG).prefetch_related("versions"))
    created = sorted(r.created_at for r in demo)
    assert created[-1] - created[0] > timedelta(days=90)  # months, not one moment
    assert len({r.updated_at for r in demo}) == len(demo)  # the library shows distinct times
    for recipe in demo:
        versions = sorted(recipe.versions.all(), key=lambda v: v.semver)
        assert versions[0].created_at == recipe.created_at
        for older, newer in zip(versions, versions[1:], strict=False):
            assert newer.created_at - older.created_at >= timedelta(days=7), recipe.name
        for v in versions:
            if v.approved_at is not None:
                assert v.created_at < v.approved_at < history_starts
            if v.approval_run_id:
                # The evidence run came before the approval it supports.
                run = v.approval_run
                assert run.created_at <= run.started_at <= run.finished_at < v.approved_at

    for run in Run.objects.filter(recipe__in=demo):
        assert run.created_at >= run.recipe_version.created_at
        first_log = run.logs.order_by("seq").first().ts if run.started_at else run.created_at
        if run.started_at:
            assert run.started_at - run.created_at < timedelta(hours=1)
        if run.run_type == RunType.SCORE:  # scheduled scorings belong to the monitoring history
            assert history_starts <= run.created_at <= first_log <= timezone.now()
        else:
            assert run.created_at < history_starts
            assert first_log < history_starts

    first_check = MonitorSnapshot.objects.order_by("captured_at").first().captured_at
    for model in MLModel.objects.select_related("recipe_version", "training_run"):
        assert model.created_at > model.recipe_version.approved_at
        if model.training_run is not None:
            assert model.training_run.created_at >= model.created_at
            if model.promoted_at is not None:
                assert model.promoted_at > model.training_run.finished_at
        if model.promoted_at is not None:
            assert model.promoted_at < first_check
