"""One rule attaches a run's result to its model (runs.services.run_deploys): a succeeded train
run of a model, on a version whose pipeline has a deployment stage — the same whether the
workspace executed the run (run_finish) or an external runner reported it (run_report)."""

import copy

import pytest

from models_registry.models import MLModel
from recipes.models import RecipeVersion
from runs.executor import execute_run
from runs.models import Run, RunLog, RunStatus, RunType
from runs.services import run_deploys, run_report, run_start
from runs.tests.factories import register

LOCATION = "recipe_location_base"
ATTACHED = "deployment: attached the artifact and metrics to model"


def baseline_manifest(deployment: bool) -> dict:
    manifest = copy.deepcopy(RecipeVersion.objects.get(pk="ver_location_base_v1").manifest)
    if not deployment:
        stages = manifest["pipeline"]["stages"]
        manifest["pipeline"]["stages"] = [s for s in stages if s["type"] != "deployment"]
    return manifest


def without_deployment_stage() -> None:
    """The location baseline's version without its deployment stage (edited in place: a test
    fixture, not something the services allow)."""
    RecipeVersion.objects.filter(pk="ver_location_base_v1").update(manifest=baseline_manifest(False))


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model_id, run_type, status, deployment, deploys",
    [
        ("model_x", RunType.TRAIN, RunStatus.SUCCEEDED, True, True),
        ("model_x", RunType.TRAIN, RunStatus.SUCCEEDED, False, False),  # the pipeline does not deploy
        (None, RunType.TRAIN, RunStatus.SUCCEEDED, True, False),  # no model to attach to
        ("model_x", RunType.EVAL, RunStatus.SUCCEEDED, True, False),  # evaluates, deploys nothing
        ("model_x", RunType.BACKTEST, RunStatus.SUCCEEDED, True, False),
        ("model_x", RunType.TRAIN, RunStatus.FAILED, True, False),
        ("model_x", RunType.TRAIN, RunStatus.CANCELLED, True, False),
        ("model_x", RunType.TRAIN, RunStatus.RUNNING, True, False),
    ],
)
def test_the_rule(baselines, model_id, run_type, status, deployment, deploys):
    version = RecipeVersion(manifest=baseline_manifest(deployment))
    run = Run(model_id=model_id, run_type=run_type, status=status, recipe_version=version)
    assert run_deploys(run) is deploys


@pytest.mark.django_db
def test_a_workspace_train_run_is_attached_only_when_its_pipeline_deploys(baselines, user):
    def train(model):
        run = run_start(
            user=user, recipe=model.recipe, model=model, params={"synthetic": {"rows": 3000, "seed": 1}}
        )
        assert execute_run(run.pk) == "succeeded", Run.objects.get(pk=run.pk).error
        return run

    deployed = register(user, LOCATION, name="Deployed")
    run = train(deployed)
    deployed.refresh_from_db()
    assert deployed.training_run_id == run.pk and deployed.artifacts_json.get("model")
    assert RunLog.objects.filter(run=run, message__startswith=ATTACHED).count() == 1

    without_deployment_stage()
    kept = register(user, LOCATION, name="Not deployed")
    run = train(kept)
    run.refresh_from_db()
    kept.refresh_from_db()
    assert run.status == "succeeded" and run.artifacts_json["files"]  # the result stays on the run
    assert kept.training_run_id is None and kept.artifacts_json == {} and kept.metrics_json == {}
    assert not RunLog.objects.filter(run=run, message__startswith=ATTACHED).exists()


def report(user, model, **kwargs) -> Run:
    run = run_start(user=user, recipe=model.recipe, model=model, executor="external", **kwargs)
    return run_report(
        run=run,
        user=user,
        status="succeeded",
        metrics_json={"rank_correlation": 0.6},
        artifacts_json={"model_path": "s3://bucket/model.pkl"},
    )


@pytest.mark.django_db
def test_an_external_report_follows_the_same_rule(baselines, user):
    deployed = register(user, LOCATION, name="Deployed")
    run = report(user, deployed)
    deployed.refresh_from_db()
    assert deployed.training_run_id == run.pk
    assert deployed.artifacts_json == {"model_path": "s3://bucket/model.pkl"}
    assert deployed.metrics_json == {"rank_correlation": 0.6}
    # An external runner's log is its own: attaching writes no line to it.
    assert not RunLog.objects.filter(run=run).exists()

    # An eval report of a model is not its training.
    before = MLModel.objects.values("training_run_id", "artifacts_json").get(pk=deployed.pk)
    report(user, deployed, run_type=RunType.EVAL)
    assert MLModel.objects.values("training_run_id", "artifacts_json").get(pk=deployed.pk) == before

    # A version whose pipeline has no deployment stage: the report stays on the run.
    without_deployment_stage()
    kept = register(user, LOCATION, name="Not deployed")
    run = report(user, kept)
    assert run.status == "succeeded" and run.metrics_json == {"rank_correlation": 0.6}
    kept.refresh_from_db()
    assert kept.training_run_id is None and kept.artifacts_json == {}
