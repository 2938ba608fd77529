"""An eval run with the defaults (no synthetic params: the next window of the model's world)
succeeds for every family and does not report a false breach."""

import pytest

from runs.executor import execute_run
from runs.models import Run
from runs.services import run_start
from runs.tests.factories import trained_model
from runs.tests.test_worlds import FAMILIES, RECIPES, TRAIN_ROWS


@pytest.mark.django_db
@pytest.mark.parametrize("name", FAMILIES)
def test_default_eval_run_is_healthy_on_the_next_window(user, baselines, name):
    model = trained_model(user, recipe_id=RECIPES[name], rows=TRAIN_ROWS[name])
    run = run_start(user=user, recipe=model.recipe, model=model, run_type="eval", params={})
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    run = Run.objects.get(pk=run.id)
    train = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    assert run.params_json["synthetic"]["window"]["start"] > train["window"]["end"]
    assert run.outcome != "critical", run.metric_checks_json
