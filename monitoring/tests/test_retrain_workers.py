"""The retrain loop with two real worker processes (`manage.py worker`) against the test
database (issue 14 §3): a check opens an alert the recipe's retraining policy names, so a
retrain starts; the workers execute the challenger's train run once (one of them claims it,
even when its task is delivered twice) and a worker's tick (run_due_checks → decide_retrains)
decides the retrain once: promoted or kept as the stored comparison says, or, when the run
failed, the challenger archived and the champion left in production."""

import io
import time

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from audit.models import AuditEvent
from models_registry.models import MLModel, ModelStatus
from monitoring.models import Comparison, Retrain, RetrainDecision, RetrainStatus
from monitoring.tests.test_retraining import AUTO, PRICING, champion, decay
from recipes.models import Recipe
from runs.families import get_family
from runs.models import Run, RunLog, RunStatus, RunType
from runs.services import dataset_create
from runs.tasks import enqueue_run
from runs.tests.test_worker_processes import wait_for, workers  # noqa: F401 (workers: the fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
MIN_IMPROVEMENT = 0.1


def started_retrain(model: MLModel) -> Retrain:
    """The check after the concept change opens demand_error_high: one retrain, training."""
    decay(model)
    (retrain,) = Retrain.objects.select_related("run", "challenger")
    assert retrain.status == RetrainStatus.TRAINING and retrain.trigger == "alert", retrain.reason
    assert retrain.run.status == RunStatus.QUEUED and retrain.run.model_id == retrain.challenger_id
    enqueue_run(retrain.run_id, "train")  # a duplicate delivery of its task: still executed once
    return retrain


def decided_by_the_workers(workers, retrain: Retrain) -> Retrain:  # noqa: F811
    workers()
    workers()
    assert wait_for(
        lambda: Retrain.objects.get(pk=retrain.pk).status != RetrainStatus.TRAINING, timeout=60
    ), list(Run.objects.values_list("id", "run_type", "status", "error"))
    time.sleep(2.5)  # two more ticks of each worker: nothing else is trained or decided
    return Retrain.objects.select_related("run", "challenger", "champion").get(pk=retrain.pk)


def assert_trained_and_decided_once(retrain: Retrain, champion_id: str) -> None:
    # One retrain (no second trigger, no skip); its challenger has one train run, executed by
    # one worker; one decision (the audit of retrain_decide). (A production model is scored
    # as soon as the workers look, models_registry.services.model_set_status: the champion's,
    # and a promoted challenger's, score runs are the workers' other work meanwhile; each of
    # those is executed once too.)
    assert list(Retrain.objects.values_list("pk", flat=True)) == [retrain.pk]
    trained = Run.objects.filter(model_id=retrain.challenger_id, run_type=RunType.TRAIN)
    assert list(trained.values_list("pk", flat=True)) == [retrain.run_id]
    for run_id in Run.objects.exclude(status=RunStatus.QUEUED).values_list("pk", flat=True):
        claims = RunLog.objects.filter(run_id=run_id, message__contains=" claimed by worker").count()
        assert claims == 1, run_id  # (the champion's own train run: by the test's process)
    decisions = AuditEvent.objects.filter(action="model.retrain_decision", object_id=champion_id)
    assert [e.detail["retrain_id"] for e in decisions] == [retrain.pk]
    assert retrain.decided_at is not None


def assert_quiet_logs(tmp_path) -> None:
    """The workers logged no failure of their scheduled work (check, retrain, decision)."""
    for log in sorted(tmp_path.glob("worker-*.log")):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


def test_an_alert_retrain_is_trained_once_and_decided_once_by_real_workers(
    workers,  # noqa: F811 (the fixture imported above)
    baselines,
    user,
    lead,
    tmp_path,
):
    model = champion(user, lead, AUTO | {"promotion": {"mode": "auto", "min_improvement": MIN_IMPROVEMENT}})
    artifacts = model.artifacts_json
    retrain = decided_by_the_workers(workers, started_retrain(model))

    assert retrain.run.status == RunStatus.SUCCEEDED, retrain.run.error
    assert retrain.status == RetrainStatus.DECIDED, retrain.reason
    assert_trained_and_decided_once(retrain, model.pk)
    # The decision is the one the stored comparison of both models on the held-out window
    # gives, whatever the numbers are: the policy's 10% on margin_impact, no critical breach.
    numbers = retrain.comparison_json
    compared = Comparison.objects.get()
    assert compared.pk == numbers["comparison_id"] and compared.retrain_id == retrain.pk
    assert compared.window_json == retrain.window_json["holdout"]
    assert compared.model_ids_json == [model.pk, retrain.challenger_id]
    metric = numbers["metric"]
    champion_row, challenger_row = compared.result_json["models"]
    ours, theirs = champion_row["metrics"][metric]["value"], challenger_row["metrics"][metric]["value"]
    assert (numbers["champion"][metric], numbers["challenger"][metric]) == (ours, theirs)
    assert numbers["critical"] == challenger_row["critical"]
    higher = compared.result_json["direction"] == "higher"
    improvement = (theirs - ours if higher else ours - theirs) / abs(ours)
    assert numbers["improvement"] == pytest.approx(improvement)
    wins = improvement >= MIN_IMPROVEMENT and not numbers["critical"]
    assert retrain.decision == (RetrainDecision.PROMOTED if wins else RetrainDecision.KEPT), retrain.reason
    model.refresh_from_db()
    challenger = MLModel.objects.get(pk=retrain.challenger_id)
    assert challenger.artifacts_json.get("model")  # the run attached its result to the challenger
    assert model.artifacts_json == artifacts  # the champion's own model is never touched
    if wins:
        assert challenger.status == ModelStatus.PRODUCTION and model.status == ModelStatus.STAGING
    else:
        assert model.status == ModelStatus.PRODUCTION and challenger.status == ModelStatus.REGISTERED
    assert MLModel.objects.filter(recipe_id=PRICING, status=ModelStatus.PRODUCTION).count() == 1
    assert_quiet_logs(tmp_path)


def upload(user, rows: int, seed: int, name: str):
    """`rows` rows of the pricing family's data, uploaded for the pricing baseline."""
    frame = get_family("pricing").generate(rows, seed)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    upload = SimpleUploadedFile(f"{name}.parquet", buffer.getvalue())
    return dataset_create(user=user, upload=upload, name=name, recipe=Recipe.objects.get(pk=PRICING))


def test_a_challenger_whose_run_fails_in_the_worker_is_archived_and_the_champion_stays(
    workers,  # noqa: F811 (the fixture imported above)
    baselines,
    user,
    lead,
    tmp_path,
):
    # The policy trains on the latest upload before the newest (held out). That upload is a
    # 60-row price test, about 7 weeks: the pricing recipe needs 52 weeks of history, so the
    # challenger's run fails its quality stage in the worker, as it would for a person.
    model = champion(user, lead, AUTO | {"window": "latest 1 datasets"})
    artifacts = model.artifacts_json
    short = upload(user, 60, 7, "short price test")
    upload(user, 600, 8, "holdout")
    retrain = started_retrain(model)
    assert retrain.run.dataset_id == short.pk
    retrain = decided_by_the_workers(workers, retrain)

    assert retrain.run.status == RunStatus.FAILED and "history" in retrain.run.error, retrain.run.error
    assert retrain.status == RetrainStatus.FAILED and retrain.decision == ""
    assert "the champion is untouched" in retrain.reason and retrain.run.error in retrain.reason
    assert_trained_and_decided_once(retrain, model.pk)
    assert not Comparison.objects.exists()  # nothing to compare
    assert retrain.challenger.status == ModelStatus.ARCHIVED
    model.refresh_from_db()
    assert model.status == ModelStatus.PRODUCTION and model.artifacts_json == artifacts
    assert list(MLModel.objects.filter(status=ModelStatus.PRODUCTION).values_list("pk", flat=True)) == [
        model.pk
    ]
    assert_quiet_logs(tmp_path)
