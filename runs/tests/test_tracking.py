"""A run's params, metrics (latest and history) and tags as searchable rows (issue #15):
the rules (runs.tracking) and the one writer (runs.services.tracking)."""

from __future__ import annotations

import math
import threading

import pytest
from django.db import connection

from mlworkspace.errors import Conflict, InvalidInput
from recipes.models import Recipe
from runs import tracking
from runs.executor import execute_run
from runs.models import MetricPoint, Run, RunMetric, RunParam, RunStatus, RunTag
from runs.services import run_report, run_start, tracking_log


def external_run(user, recipe_id="recipe_pricing_base") -> Run:
    return run_start(user=user, recipe=Recipe.objects.get(pk=recipe_id), executor="external")


def latest(run) -> dict:
    return {m.key: (m.value, m.step) for m in RunMetric.objects.filter(run=run)}


@pytest.mark.parametrize("key", ["", "a" * 251, "bad\nkey", "../x", "/abs", "semi;colon", 5])
def test_bad_keys_are_refused(key):
    with pytest.raises(tracking.TrackingError) as caught:
        tracking.check_key(key, "/metrics/0/key")
    assert caught.value.path == "/metrics/0/key"


@pytest.mark.parametrize("key", ["MAPE", "valid.l2", "precision@k", "a b/c:d-e"])
def test_good_keys_pass(key):
    assert tracking.check_key(key, "/k") == key


def test_workspace_params_name_hyperparameters_as_an_mlflow_user_would():
    manifest = {
        "pipeline": {
            "stages": [
                {
                    "type": "training",
                    "config": {"algorithm": "lightgbm", "hyperparameters": {"num_leaves": 31}},
                }
            ]
        }
    }
    params = tracking.workspace_params({"synthetic": {"rows": 100, "seed": 1}, "tags": [1, 2]}, manifest)
    assert params == {
        "synthetic.rows": "100",
        "synthetic.seed": "1",
        "tags": "[1, 2]",
        "algorithm": "lightgbm",
        "num_leaves": "31",
    }


def test_a_workspace_run_is_searchable_by_its_params_from_the_start_and_its_metrics_at_the_end(
    baselines, user
):
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    run = run_start(user=user, recipe=recipe, params={"synthetic": {"rows": 3000, "seed": 3}})
    params = dict(RunParam.objects.filter(run=run).values_list("key", "value"))
    assert params["synthetic.seed"] == "3" and params["synthetic.rows"] == "3000"
    assert RunParam.objects.get(run=run, key="synthetic.rows").value_num == 3000.0
    assert RunMetric.objects.filter(run=run).count() == 0
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    run.refresh_from_db()
    numeric = {k: v for k, v in run.metrics_json.items() if isinstance(v, (int, float))}
    assert numeric and {k: v for k, (v, _) in latest(run).items()} == pytest.approx(numeric)


def test_log_keeps_the_latest_value_by_step_then_timestamp_and_every_point(baselines, user):
    run = external_run(user)
    tracking_log(
        run=run,
        metrics=[
            {"key": "loss", "value": 0.9, "step": 0, "timestamp": 1000},
            {"key": "loss", "value": 0.5, "step": 2, "timestamp": 1002},
            {"key": "loss", "value": 0.7, "step": 1, "timestamp": 1003},
        ],
    )
    tracking_log(run=run, metrics=[{"key": "loss", "value": 0.6, "step": 1, "timestamp": 2000}])
    assert latest(run) == {"loss": (0.5, 2)}
    tracking_log(run=run, metrics=[{"key": "loss", "value": 0.4, "step": 2, "timestamp": 3000}])
    assert latest(run) == {"loss": (0.4, 2)}
    assert MetricPoint.objects.filter(run=run, key="loss").count() == 5
    tracking_log(run=run, metrics=[{"key": "gap", "value": math.nan, "timestamp": 1}])
    row = RunMetric.objects.get(run=run, key="gap")
    assert row.value is None and row.is_nan


def test_bad_input_is_a_400_naming_the_field_and_stores_nothing(baselines, user):
    run = external_run(user)
    before = (RunParam.objects.filter(run=run).count(), MetricPoint.objects.filter(run=run).count())
    for kwargs, path in [
        ({"metrics": [{"key": "ok", "value": 1.0}, {"key": "x", "value": "high"}]}, "/metrics/1/value"),
        ({"metrics": [{"key": "x", "value": 1.0, "step": 1.5}]}, "/metrics/0/step"),
        ({"metrics": [{"key": "x", "value": 1.0, "timestamp": "now"}]}, "/metrics/0/timestamp"),
        ({"params": [{"key": "p", "value": {"a": 1}}]}, "/params/0/value"),
        ({"params": [{"key": "p", "value": "x" * 6001}]}, "/params/0/value"),
        ({"tags": [{"key": "bad\tkey", "value": "v"}]}, "/tags/0/key"),
        ({"metrics": [{"key": "ok", "value": 1}], "tags": [{"key": "t", "value": 5}]}, "/tags/0/value"),
    ]:
        with pytest.raises(InvalidInput) as caught:
            tracking_log(run=run, **kwargs)
        assert caught.value.errors[0]["path"] == path, kwargs
    after = (RunParam.objects.filter(run=run).count(), MetricPoint.objects.filter(run=run).count())
    assert after == before


def test_params_are_immutable_tags_are_replaced(baselines, user):
    run = external_run(user)
    tracking_log(run=run, params=[{"key": "max_depth", "value": 6}], tags=[{"key": "team", "value": "eu"}])
    tracking_log(run=run, params=[{"key": "max_depth", "value": "6"}], tags=[{"key": "team", "value": "us"}])
    with pytest.raises(InvalidInput) as caught:
        tracking_log(run=run, params=[{"key": "max_depth", "value": 7}])
    assert "cannot change" in str(caught.value)
    assert RunParam.objects.get(run=run, key="max_depth").value_num == 6.0
    assert RunTag.objects.get(run=run, key="team").value == "us"


def test_a_finished_run_is_final(baselines, user):
    run = external_run(user)
    run_report(run=run, user=user, status=RunStatus.SUCCEEDED, metrics_json={"MAPE": 0.12, "note": "x"})
    assert latest(run) == {"MAPE": (0.12, 0)}
    with pytest.raises(Conflict):
        tracking_log(run=run, metrics=[{"key": "MAPE", "value": 0.1}])


@pytest.mark.django_db(transaction=True)
def test_concurrent_logging_to_one_run_loses_nothing(baselines, user):
    if connection.vendor != "postgresql":
        pytest.skip("threads writing at once: PostgreSQL (SQLite serialises every writer)")
    run = external_run(user)
    errors = []

    def log(thread: int):
        try:
            for step in range(20):
                tracking_log(
                    run=run,
                    metrics=[
                        {"key": "loss", "value": float(thread * 100 + step), "step": step, "timestamp": 1}
                    ],
                    params=[{"key": f"p{thread}_{step}", "value": step}],
                )
        except Exception as error:  # pragma: no cover - reported below
            errors.append(error)
        finally:
            connection.close()

    threads = [threading.Thread(target=log, args=(t,)) for t in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert MetricPoint.objects.filter(run=run, key="loss").count() == 80
    assert RunParam.objects.filter(run=run, key__startswith="p").count() == 80
    assert RunMetric.objects.get(run=run, key="loss").step == 19


def test_a_point_logged_again_is_stored_once(baselines, user):
    run = external_run(user)
    point = {"key": "loss", "value": 0.5, "step": 3, "timestamp": 1234}
    tracking_log(run=run, metrics=[point, point])
    tracking_log(run=run, metrics=[point, {**point, "value": 0.4}])
    assert sorted(MetricPoint.objects.filter(run=run).values_list("value", flat=True)) == [0.4, 0.5]


def test_reported_metrics_equal_to_the_logged_latest_add_no_point(baselines, user):
    run = external_run(user)
    assert RunParam.objects.filter(run=run).count() == 0  # an external run's params are its runner's
    tracking_log(run=run, metrics=[{"key": "MAPE", "value": 0.2, "step": 4, "timestamp": 1}])
    run_report(run=run, user=user, status=RunStatus.SUCCEEDED, metrics_json={"MAPE": 0.2, "RMSE": 3.0})
    assert MetricPoint.objects.filter(run=run, key="MAPE").count() == 1
    assert latest(run) == {"MAPE": (0.2, 4), "RMSE": (3.0, 0)}


def test_a_workspace_run_is_searchable_by_its_versions_hyperparameters(baselines, user):
    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_location_base"))
    hyper = next(
        s["config"]["hyperparameters"]
        for s in run.recipe_version.manifest["pipeline"]["stages"]
        if s["type"] == "training"
    )
    params = dict(RunParam.objects.filter(run=run).values_list("key", "value"))
    assert hyper and all(params[k] == str(v) for k, v in hyper.items())


def test_a_child_run_names_its_parent(baselines, user):
    parent = external_run(user)
    child = run_start(user=user, recipe=parent.recipe, executor="external", parent=parent)
    assert list(parent.children.all()) == [child]
