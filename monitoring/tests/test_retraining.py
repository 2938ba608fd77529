"""Retraining policies (issue #14 §3): a trigger (an alert the check opened, enough new rows,
the policy's schedule, a person) registers a challenger on the champion's approved version
and trains it on the policy's window; once its run finished, the worker's tick compares both
models on the same held-out window and decides by the policy's promotion. Skips, failures
and decisions are recorded with their reasons."""

import copy
import io
from datetime import timedelta

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone
from rest_framework.test import APIClient

from audit.models import AuditEvent
from models_registry.models import MLModel, ModelStatus
from models_registry.services import model_register, model_set_status
from monitoring.models import Retrain, RetrainDecision, RetrainStatus
from monitoring.scheduler import decide_retrains, retrain_scheduled, run_due_checks
from monitoring.services import model_check, retrain_decide, retrain_trigger, retraining
from monitoring.services.retraining import _verdict
from notifications.models import Delivery
from notifications.services import webhook_create
from recipes.models import Recipe
from recipes.retraining import policy as retrain_policy
from recipes.services import version_approve, version_create
from runs.executor import execute_run
from runs.families import get_family, worlds
from runs.models import Dataset, Run, RunStatus, RunType
from runs.services import dataset_create, run_cancel, run_start
from runs.tests.factories import register, trained_model

API = "/api/ml-development"
pytestmark = pytest.mark.django_db
PRICING = "recipe_pricing_base"
CONCEPT = "less_price_sensitive"  # demand_mape rises above 0.4: demand_error_high opens


def with_policy(lead, retraining: dict, recipe_id: str = PRICING) -> Recipe:
    """The baseline's next version carries `retraining`, approved."""
    recipe = Recipe.objects.get(pk=recipe_id)
    manifest = copy.deepcopy(recipe.current_version.manifest)
    manifest["retraining"] = retraining
    version = version_create(
        recipe=recipe, user=lead, manifest=manifest, bump="minor", changelog="retraining"
    )
    version_approve(version=version, user=lead, override_reason="test set-up")
    recipe.refresh_from_db()
    return recipe


def champion(user, lead, retraining: dict | None = None) -> MLModel:
    if retraining is not None:
        with_policy(lead, retraining)
    model = trained_model(user, recipe_id=PRICING, rows=3000)
    model_set_status(model=model, user=user, status="staging")
    model_set_status(model=model, user=user, status="production")
    model.refresh_from_db()
    return model


AUTO = {"triggers": {"alerts": ["demand_error_high"]}, "cooldown": "7 days", "promotion": {"mode": "auto"}}


def decay(model) -> None:
    """A check on the next window after the ground truth changed."""
    model_check(model=model, synthetic={"rows": 3000, "concept": CONCEPT})


# --------------------------------------------------------------------------- triggers


def test_an_alert_the_policy_names_starts_a_retrain_when_the_check_opens_it(baselines, user, lead):
    model = champion(user, lead, AUTO)
    model_check(model=model, synthetic={"rows": 3000})  # healthy: nothing happens
    assert not Retrain.objects.exists()
    decay(model)
    (retrain,) = Retrain.objects.all()
    assert retrain.status == RetrainStatus.TRAINING and retrain.trigger == "alert"
    assert retrain.trigger_json["alert"] == "demand_error_high"
    challenger = retrain.challenger
    assert challenger.challenger_of_id == model.pk and challenger.role == "challenger"
    assert challenger.recipe_version_id == model.recipe_version_id
    assert retrain.run.run_type == RunType.TRAIN and retrain.run.model_id == challenger.pk
    assert retrain.run.status == RunStatus.QUEUED
    # It trains on the window just before the held-out one (the newest batch checked), under
    # that batch's ground truth, in the champion's world.
    family = get_family("pricing")
    train, holdout = retrain.window_json["train"], retrain.window_json["holdout"]
    assert retrain.run.params_json["synthetic"] == train
    assert holdout["concept"] == CONCEPT and train["concept"] == CONCEPT
    start, periods = worlds.span(family, train["window"])
    assert start + periods == worlds.span(family, holdout["window"])[0]
    assert train["world"] == holdout["world"] and train["seed"] == holdout["seed"]
    # The alert stays open on the next check: it did not open again, no second retrain.
    decay(model)
    assert Retrain.objects.count() == 1


def test_an_alert_the_policy_does_not_name_starts_nothing(baselines, user, lead):
    model = champion(user, lead, AUTO | {"triggers": {"alerts": ["margin_loss"]}})
    decay(model)
    assert model.alerts.filter(name="demand_error_high").exists()
    assert not Retrain.objects.exists()


def test_a_better_challenger_is_promoted_automatically(baselines, user, lead):
    model = champion(user, lead, AUTO | {"promotion": {"mode": "auto", "min_improvement": 0.1}})
    decay(model)
    retrain = Retrain.objects.get()
    assert execute_run(retrain.run_id) == "succeeded"
    assert decide_retrains() == [retrain.pk]
    retrain.refresh_from_db()
    comparison = retrain.comparison_json
    assert comparison["metric"] == "margin_impact"
    assert comparison["challenger"]["margin_impact"] > comparison["champion"]["margin_impact"] * 1.1
    assert comparison["improvement"] == pytest.approx(
        comparison["challenger"]["margin_impact"] / comparison["champion"]["margin_impact"] - 1
    )
    # The numbers come from the stored comparison of both models on the held-out window.
    compared = retrain.comparison
    assert (
        compared.pk == comparison["comparison_id"] and compared.window_json == retrain.window_json["holdout"]
    )
    champion_row, challenger_row = compared.result_json["models"]
    assert challenger_row["metrics"]["margin_impact"]["value"] == comparison["challenger"]["margin_impact"]
    interval = compared.result_json["difference"][retrain.challenger_id]["margin_impact"]
    assert interval["low"] <= interval["value"] <= interval["high"] and interval["low"] > 0
    assert "95% interval" in retrain.reason
    assert retrain.status == RetrainStatus.DECIDED and retrain.decision == RetrainDecision.PROMOTED
    assert "promoted" in retrain.reason and "margin_impact" in retrain.reason
    model.refresh_from_db()
    challenger = MLModel.objects.get(pk=retrain.challenger_id)
    assert challenger.status == ModelStatus.PRODUCTION and challenger.role == "champion"
    assert model.status == ModelStatus.STAGING
    assert AuditEvent.objects.filter(action="model.retrain_decision", object_id=model.pk).exists()
    assert decide_retrains() == []  # decided once


def test_a_challenger_not_better_enough_leaves_the_champion(baselines, user, lead):
    model = champion(user, lead, AUTO | {"promotion": {"mode": "auto", "min_improvement": 50.0}})
    decay(model)
    retrain = Retrain.objects.get()
    execute_run(retrain.run_id)
    retrain = retrain_decide(retrain=retrain)
    assert retrain.decision == RetrainDecision.KEPT and "needs 5000.0% better" in retrain.reason
    model.refresh_from_db()
    assert model.status == ModelStatus.PRODUCTION
    assert MLModel.objects.get(pk=retrain.challenger_id).status == ModelStatus.REGISTERED


def test_manual_promotion_waits_for_a_person(baselines, user, lead):
    model = champion(user, lead, AUTO | {"promotion": {"mode": "manual"}})
    decay(model)
    retrain = Retrain.objects.get()
    execute_run(retrain.run_id)
    retrain = retrain_decide(retrain=retrain)
    assert retrain.decision == RetrainDecision.REVIEW and "promotion is manual" in retrain.reason
    assert retrain.decision_label == "Awaiting a person's decision"
    model.refresh_from_db()
    assert model.status == ModelStatus.PRODUCTION
    # The person decides: the record says so, on the page and in the API.
    challenger = MLModel.objects.get(pk=retrain.challenger_id)
    model_set_status(model=challenger, user=lead, status=ModelStatus.STAGING)
    model_set_status(model=challenger, user=lead, status=ModelStatus.PRODUCTION)
    retrain = Retrain.objects.select_related("challenger").get(pk=retrain.pk)
    assert retrain.decision_label == "Challenger promoted by a person"
    body = APIClient()
    body.force_authenticate(lead)
    listed = body.get(f"/api/ml-development/models/{model.id}/retrains").json()
    assert listed["results"][0]["decision_label"] == "Challenger promoted by a person"


def test_a_review_names_an_archived_challenger():
    archived = MLModel(id="model_x", status=ModelStatus.ARCHIVED)
    waiting = MLModel(id="model_y", status=ModelStatus.REGISTERED)
    assert Retrain(decision=RetrainDecision.REVIEW, challenger=archived).decision_label == (
        "Challenger archived by a person"
    )
    assert Retrain(decision=RetrainDecision.REVIEW, challenger=waiting).decision_label == (
        "Awaiting a person's decision"
    )
    assert Retrain(decision=RetrainDecision.KEPT, challenger=archived).decision_label == "Champion kept"


def test_a_failed_retrain_leaves_the_champion_untouched(baselines, user, lead):
    model = champion(user, lead, AUTO)
    decay(model)
    retrain = Retrain.objects.get()
    run_cancel(run=retrain.run, user=user)
    retrain = retrain_decide(retrain=retrain)
    assert retrain.status == RetrainStatus.FAILED and "champion is untouched" in retrain.reason
    model.refresh_from_db()
    assert model.status == ModelStatus.PRODUCTION and model.artifacts_json["model"]
    assert MLModel.objects.get(pk=retrain.challenger_id).status == ModelStatus.ARCHIVED


def test_one_retrain_trains_at_a_time_and_the_cooldown_holds(baselines, user, lead):
    model = champion(user, lead, AUTO)
    decay(model)
    first = Retrain.objects.get()
    # A person asking while it trains: a 409 saying why; an automatic trigger: a recorded skip.
    with pytest.raises(Exception, match="still training"):
        retrain_trigger(champion=model, trigger="manual", user=user)
    skip = retrain_trigger(champion=model, trigger="schedule")
    assert skip.status == RetrainStatus.SKIPPED and skip.skip_code == "running"
    execute_run(first.run_id)
    retrain_decide(retrain=first)
    model.refresh_from_db()
    new_champion = MLModel.objects.get(recipe_id=PRICING, status=ModelStatus.PRODUCTION)
    model_check(model=new_champion, synthetic={"rows": 600})
    skip = retrain_trigger(champion=new_champion, trigger="alert", detail={"alert": "demand_error_high"})
    assert skip.skip_code == "cooldown" and "next may start after" in skip.reason
    # After the cooldown, new data starts one again.
    later = timezone.now() + timedelta(days=8)
    model_check(model=new_champion, synthetic={"rows": 600}, captured_at=later)
    again = retrain_trigger(champion=new_champion, trigger="alert", at=later + timedelta(minutes=1))
    assert again.status == RetrainStatus.TRAINING


def test_no_new_data_since_training_is_a_skip(baselines, user, lead):
    model = champion(user, lead, AUTO)
    skip = retrain_trigger(champion=model, trigger="schedule")
    assert skip.status == RetrainStatus.SKIPPED and skip.skip_code == "no_new_data"
    assert Retrain.objects.filter(status=RetrainStatus.TRAINING).count() == 0


def test_min_new_rows_triggers_once_enough_rows_were_checked(baselines, user, lead):
    model = champion(user, lead, {"triggers": {"min_new_rows": 1000}})
    model_check(model=model, synthetic={"rows": 600})
    assert not Retrain.objects.exists()
    model_check(model=model, synthetic={"rows": 600})
    (retrain,) = Retrain.objects.all()
    assert retrain.trigger == "min_new_rows" and retrain.trigger_json["new_rows"] >= 1000


def test_the_schedule_triggers_each_due_slot_once(baselines, user, lead):
    model = champion(user, lead, {"triggers": {"schedule": "0 4 * * *"}})
    now = timezone.now()
    assert retrain_scheduled(now) == []  # the first due time is set
    model.refresh_from_db()
    assert model.next_retrain_at > now
    model_check(model=model, synthetic={"rows": 600})
    due = model.next_retrain_at + timedelta(days=3)  # three missed slots run once
    (retrain_id,) = retrain_scheduled(due)
    assert Retrain.objects.get(pk=retrain_id).trigger == "schedule"
    assert retrain_scheduled(due) == []
    model.refresh_from_db()
    assert model.next_retrain_at > due


def test_a_manual_retrain_without_a_policy_and_its_refusals(baselines, user, lead):
    model = champion(user, lead)  # the baseline has no retraining section
    assert retrain_policy(model.recipe_version.manifest) is None
    with pytest.raises(Exception, match="not been checked"):
        retrain_trigger(champion=model, trigger="manual", user=user)
    model_check(model=model, synthetic={"rows": 600})
    retrain = retrain_trigger(champion=model, trigger="manual", user=user)
    assert retrain.status == RetrainStatus.TRAINING and retrain.created_by == user
    staging = trained_model(user, recipe_id=PRICING)
    with pytest.raises(Exception, match="not the production model"):
        retrain_trigger(champion=staging, trigger="manual", user=user)


def test_a_champion_trained_on_a_dataset_needs_a_datasets_window(baselines, user, lead):
    model = champion(user, lead, AUTO)
    run = Run.objects.get(pk=model.training_run_id)
    Run.objects.filter(pk=run.pk).update(params_json={})  # as if trained on an upload
    model_check(model=model, synthetic={"rows": 600, "seed": 1})
    skip = retrain_trigger(champion=model, trigger="schedule")
    assert skip.skip_code == "no_data" and "latest <n> datasets" in skip.reason


@pytest.mark.parametrize(
    "policy, comparison, decision, words",
    [
        ({"promotion": {"mode": "auto"}}, {"improvement": 0.0, "critical": []}, "promoted", "promoted"),
        (
            {"promotion": {"mode": "auto"}},
            {"improvement": 0.5, "critical": ["calibration"]},
            "kept",
            "critical breach of calibration",
        ),
        (
            {"promotion": {"mode": "auto", "min_improvement": 0.2}},
            {"improvement": 0.1, "critical": []},
            "kept",
            "20.0%",
        ),
        (
            {"promotion": {"mode": "auto"}},
            {"improvement": None, "critical": []},
            "kept",
            "could not be computed",
        ),
        ({}, {"improvement": 0.5, "critical": []}, "review", "manual"),
    ],
)
def test_the_verdict(policy, comparison, decision, words):
    production = MLModel(status=ModelStatus.PRODUCTION)
    full = {"metric": "MAPE", "champion": {"MAPE": 0.2}, "challenger": {"MAPE": 0.1}} | comparison
    got, reason = _verdict(retrain_policy({"retraining": policy}), full, production)
    assert got == decision and words in reason
    got, reason = _verdict(retrain_policy({"retraining": policy}), full, MLModel(status=ModelStatus.STAGING))
    assert got == "review" and "left production" in reason


# --------------------------------------------------------------------------- the tick, API, page


def test_the_workers_tick_decides_finished_retrains(baselines, user, lead):
    model = champion(user, lead, AUTO)
    decay(model)
    retrain = Retrain.objects.get()
    assert retrain.pk not in run_due_checks()  # still queued
    execute_run(retrain.run_id)
    assert retrain.pk in run_due_checks()
    assert Retrain.objects.get().status == RetrainStatus.DECIDED


def test_retrain_api(baselines, user, lead, api_client, viewer_client):
    model = champion(user, lead)
    r = api_client.post(f"{API}/models/{model.id}/retrains")
    assert r.status_code == 409 and "not been checked" in r.json()["detail"]
    model_check(model=model, synthetic={"rows": 600})
    assert viewer_client.post(f"{API}/models/{model.id}/retrains").status_code == 403
    r = api_client.post(f"{API}/models/{model.id}/retrains")
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["status"] == "training" and body["trigger"] == "manual" and body["champion_id"] == model.pk
    challenger = api_client.get(f"{API}/models/{body['challenger_id']}").json()
    assert challenger["role"] == "challenger" and challenger["challenger_of_id"] == model.pk
    assert api_client.get(f"{API}/models/{model.id}").json()["role"] == "champion"
    listed = api_client.get(f"{API}/models/{model.id}/retrains").json()
    assert [r["id"] for r in listed["results"]] == [body["id"]]
    assert api_client.post(f"{API}/models/model_nope/retrains").status_code == 404


def test_another_clients_model_is_404_for_retrains(client_private_model):
    outsider = APIClient()
    outsider.force_authenticate(client_private_model.outsider)
    model = client_private_model.model
    assert outsider.get(f"{API}/models/{model.id}/retrains").status_code == 404
    assert outsider.post(f"{API}/models/{model.id}/retrains").status_code == 404


def test_model_page_shows_the_policy_the_retrains_and_retrain_now(baselines, user, lead, as_user):
    model = champion(user, lead, AUTO)
    page = as_user.get(f"/model-development/models/{model.id}", {"tab": "monitoring"}).content.decode()
    assert 'id="retraining"' in page and "when demand_error_high opens" in page and 'id="retrain-now"' in page
    decay(model)
    page = as_user.get(f"/model-development/models/{model.id}", {"tab": "monitoring"}).content.decode()
    retrain = Retrain.objects.get()
    assert retrain.challenger.name in page and "retrain-training" in page
    r = as_user.post(f"/model-development/models/{model.id}/retrain", follow=True)
    assert "still training" in r.content.decode()
    summary = as_user.get(f"/model-development/models/{retrain.challenger_id}").content.decode()
    assert 'id="model-role"' in summary and "Challenger of" in summary


def test_model_register_refuses_a_champion_of_another_recipe(baselines, user):
    other = trained_model(user, recipe_id="recipe_location_base")
    recipe = Recipe.objects.get(pk=PRICING)
    with pytest.raises(Exception, match="another recipe"):
        model_register(
            user=user, name="x", recipe=recipe, recipe_version=recipe.current_version, challenger_of=other
        )


def test_a_retrain_run_that_cannot_start_is_recorded_not_raised(baselines, user, lead, monkeypatch):
    model = champion(user, lead, AUTO)

    def broken(**kwargs):
        raise RuntimeError("disk full")

    monkeypatch.setattr(retraining, "run_start", broken)
    decay(model)  # the check itself still counts
    (skip,) = Retrain.objects.all()
    assert skip.status == RetrainStatus.SKIPPED and skip.skip_code == "error" and "disk full" in skip.reason
    assert model.snapshots.count() == 1


def _upload(user, window: int, name: str):
    """The `window`-th consecutive window (0 = the first) of one pricing world, uploaded."""
    family = get_family("pricing")
    batch = worlds.resolve(family, {"rows": 3000, "seed": 1})
    for _ in range(window):
        batch = worlds.resolve(family, {}, after=batch)
    frame = worlds.generate(family, batch)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    upload = SimpleUploadedFile(f"{name}.parquet", buffer.getvalue())
    return dataset_create(user=user, upload=upload, name=name, recipe=Recipe.objects.get(pk=PRICING))


def test_a_datasets_window_trains_on_the_uploads_before_the_newest_and_compares_on_it(baselines, user, lead):
    with_policy(lead, {"window": "latest 2 datasets", "promotion": {"mode": "manual"}})
    first, second, newest = (_upload(user, i, f"sales-{i + 1}") for i in range(3))
    model = register(user, PRICING)
    run = run_start(user=user, recipe=model.recipe, model=model, dataset=first)
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    model.refresh_from_db()
    model_set_status(model=model, user=user, status="staging")
    model_set_status(model=model, user=user, status="production")
    retrain = retrain_trigger(champion=model, trigger="manual", user=user)
    train = retrain.window_json["train"]
    assert train["dataset_ids"] == [first.pk, second.pk]
    combined = Dataset.objects.get(pk=train["dataset_id"])  # the two, combined and recorded
    assert retrain.run.dataset_id == combined.pk and combined.row_count == first.row_count + second.row_count
    assert retrain.window_json["holdout"]["dataset_id"] == newest.pk
    assert execute_run(retrain.run_id) == "succeeded", Run.objects.get(pk=retrain.run_id).error
    retrain = retrain_decide(retrain=retrain)
    assert retrain.decision == RetrainDecision.REVIEW
    assert retrain.comparison.window_json == {"dataset_id": newest.pk, "name": newest.name}
    assert "sales-3" in retrain.comparison.result_json["window"]


def test_a_datasets_window_without_enough_uploads_is_refused(baselines, user, lead):
    with_policy(lead, {"window": "latest 2 datasets"})
    model = champion(user, lead)
    _upload(user, 0, "only-one")
    with pytest.raises(Exception, match="plus the newest to compare on"):
        retrain_trigger(champion=model, trigger="manual", user=user)


def test_the_loop_tells_the_recipes_webhooks(baselines, user, lead, settings):
    """Alert opened, lifecycle changes, the comparison's verdict and the retrain decision each
    queue a delivery to a webhook of the recipe (notifications.services.notify)."""
    settings.WEBHOOK_ALLOW_PRIVATE = True  # the webhook below points at loopback
    model = champion(user, lead, AUTO | {"promotion": {"mode": "auto", "min_improvement": 0.1}})
    webhook_create(user=lead, name="ops", url="http://127.0.0.1:9/hook", recipe=model.recipe)
    decay(model)
    retrain = Retrain.objects.get()
    execute_run(retrain.run_id)
    retrain_decide(retrain=retrain)
    events = list(Delivery.objects.order_by("created_at", "id").values_list("event", "payload"))
    names = [e for e, _p in events]
    assert names[0] == "alert.opened" and "retrain.decided" in names and "comparison.verdict" in names
    moves = [p for e, p in events if e == "model.status"]  # the challenger: staging, then production
    assert [(p["from"], p["to"]) for p in moves] == [("registered", "staging"), ("staging", "production")]
    assert moves[1]["replaced"] == [model.pk]  # the champion it replaced
    decided = next(p for e, p in events if e == "retrain.decided")
    assert decided["decision"] == "promoted" and decided["champion_id"] == model.pk
    opened = next(p for e, p in events if e == "alert.opened")
    assert opened["alert"] == "demand_error_high" and opened["model_id"] == model.pk
