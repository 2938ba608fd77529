"""Scheduled batch scoring of batch-mode production models (issue #14 §2): the scheduler
starts score runs (one per due slot and window), the workers' tick checks each scored batch
once, predictions download, and outcomes posted later are joined to the predictions."""

import io
from datetime import timedelta

import numpy as np
import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError
from django.utils import timezone
from rest_framework.test import APIClient

from models_registry.services import model_set_status
from monitoring import scheduler
from monitoring.models import Alert, AlertState, MonitorSnapshot, ScoringBatch
from monitoring.scheduler import check_scored_batches, claim_due, run_due_checks
from monitoring.selectors import CHECK_GRACE, last_scored_batch, model_scoring
from monitoring.services import scoring_claim_check, scoring_next_batch, scoring_start
from runs.artifacts import load_model
from runs.executor import execute_run
from runs.families import get_family, worlds
from runs.models import Run, RunStatus
from runs.selectors import model_training_batch
from runs.services import dataset_create, dataset_set_purpose
from runs.tests.factories import trained_model

API = "/api/ml-development"
pytestmark = pytest.mark.django_db
LOCATION = "recipe_location_base"  # deployment.mode: batch, monthly


@pytest.fixture(autouse=True)
def small_batches(monkeypatch):
    monkeypatch.setattr(scheduler, "SCHEDULED_BATCH_ROWS", 600)


def production_model(user, recipe_id=LOCATION, rows=3000):
    model = trained_model(user, recipe_id=recipe_id, rows=rows)
    model_set_status(model=model, user=user, status="staging")
    model_set_status(model=model, user=user, status="production")
    model.refresh_from_db()
    return model


def due(model):
    model.refresh_from_db()
    return model.next_check_at + timedelta(seconds=1)


def scored(model) -> ScoringBatch:
    """Schedule one scoring, execute its run in-process and check it (the tick)."""
    (batch_id,) = run_due_checks(due(model))
    batch = ScoringBatch.objects.get(pk=batch_id)
    assert execute_run(batch.run_id) == "succeeded", Run.objects.get(pk=batch.run_id).error
    assert len(check_scored_batches()) == 1
    batch.refresh_from_db()
    return batch


@pytest.fixture
def model(baselines, user):
    return production_model(user)


# --------------------------------------------------------------------------- scheduler


def test_a_due_batch_model_is_scored_once_per_slot(model):
    slot = model.next_check_at
    now = due(model)
    done = run_due_checks(now)
    assert len(done) == 1
    batch = ScoringBatch.objects.select_related("run").get(pk=done[0])
    assert batch.run.run_type == "score" and batch.run.status == RunStatus.QUEUED
    assert batch.scheduled_for == slot
    window = batch.batch_json["window"]
    assert batch.window_key == f"synthetic:{window['start']}:{window['periods']}"
    assert batch.run.params_json["synthetic"]["window"] == window
    assert MonitorSnapshot.objects.filter(model=model).count() == 0  # scored, not checked (yet)
    model.refresh_from_db()
    assert model.next_check_at > now
    assert run_due_checks(now) == []  # claimed: a second worker's tick does nothing
    assert ScoringBatch.objects.filter(model=model).count() == 1


def test_a_slot_claimed_twice_scores_one_window(model, monkeypatch):
    now = due(model)
    stale_copy = type(model).objects.get(pk=model.pk)  # what a second worker read
    assert claim_due(model, now) is True
    assert claim_due(stale_copy, now) is False
    # Two workers that resolved the same window: the unique key lets one batch through.
    dataset, batch = scoring_next_batch(model, rows=600)
    first = scoring_start(model=model, scheduled_for=now, dataset=dataset, batch=batch)
    runs_before = Run.objects.count()
    with pytest.raises(IntegrityError):
        scoring_start(model=model, scheduled_for=now, dataset=dataset, batch=batch)
    assert Run.objects.count() == runs_before  # the loser's run was rolled back with it
    # The scheduler of the worker that lost skips it quietly.
    monkeypatch.setattr(scheduler, "scoring_next_batch", lambda model, rows: (dataset, batch))
    assert scheduler.score_due(model, now) is None
    assert list(ScoringBatch.objects.filter(model=model).values_list("pk", flat=True)) == [first.pk]


def test_missed_schedules_after_downtime_score_once(model):
    type(model).objects.filter(pk=model.pk).update(next_check_at=timezone.now() - timedelta(days=200))
    now = timezone.now()
    assert len(run_due_checks(now)) == 1
    assert run_due_checks(now) == []
    assert ScoringBatch.objects.filter(model=model).count() == 1
    model.refresh_from_db()
    assert model.next_check_at > now


def test_realtime_models_still_get_scheduled_checks(baselines, user):
    model = production_model(user, recipe_id="recipe_nba_base")
    assert model.recipe_version.manifest["deployment"]["mode"] == "realtime"
    (snapshot_id,) = run_due_checks(due(model))
    assert MonitorSnapshot.objects.get(pk=snapshot_id).source == "scheduled"
    assert not ScoringBatch.objects.filter(model=model).exists()


def test_the_tick_checks_a_scored_batch_once_and_the_next_slot_continues(model):
    batch = scored(model)
    snapshot = batch.snapshot
    assert (
        snapshot.source == "scheduled" and snapshot.row_count == batch.run.artifacts_json["scoring"]["rows"]
    )
    assert snapshot.data_freshness_json["batch"]["window"] == batch.batch_json["window"]  # the same batch
    assert snapshot.drift_metrics_json["features"]
    assert snapshot.performance_metrics_json == {}  # performance comes with outcomes
    assert check_scored_batches() == []  # checked once
    second = scored(model)
    family = get_family(model.recipe.model_family)
    first_start, first_periods = worlds.span(family, batch.batch_json["window"])
    assert worlds.span(family, second.batch_json["window"])[0] == first_start + first_periods
    assert second.batch_json["seed"] == batch.batch_json["seed"] == 1  # the training world


def test_a_batch_claimed_by_another_worker_is_not_checked_twice(model):
    (batch_id,) = run_due_checks(due(model))
    batch = ScoringBatch.objects.get(pk=batch_id)
    assert execute_run(batch.run_id) == "succeeded"
    ScoringBatch.objects.filter(pk=batch_id).update(check_started_at=timezone.now())  # the other worker
    assert check_scored_batches() == []
    assert ScoringBatch.objects.get(pk=batch_id).snapshot_id is None
    # Still within the grace period: a later tick leaves the claim alone (the check may be running).
    assert check_scored_batches(timezone.now() + CHECK_GRACE - timedelta(minutes=1)) == []
    assert ScoringBatch.objects.get(pk=batch_id).snapshot_id is None
    (row,) = model_scoring(model)["batches"]
    assert row["status"] == "checking"


def test_a_crashed_check_is_retried_by_a_tick_after_the_grace_period(model, monkeypatch, caplog):
    (batch_id,) = run_due_checks(due(model))
    batch = ScoringBatch.objects.get(pk=batch_id)
    assert execute_run(batch.run_id) == "succeeded"
    crashed_at = timezone.now() - CHECK_GRACE - timedelta(minutes=1)

    def crash(*, batch):
        raise RuntimeError("the check blew up")

    with monkeypatch.context() as patch:
        patch.setattr(scheduler, "scoring_check", crash)
        assert check_scored_batches(crashed_at) == []
    assert f"check of scoring batch {batch_id} failed" in caplog.text
    batch.refresh_from_db()
    assert batch.check_started_at == crashed_at and batch.snapshot_id is None
    # A tick just inside the grace period does not steal the claim.
    assert check_scored_batches(crashed_at + CHECK_GRACE - timedelta(seconds=1)) == []
    (row,) = model_scoring(model)["batches"]
    assert row["status"] == "check failed"  # stale now: the next tick retries it
    (snapshot_id,) = check_scored_batches()
    batch.refresh_from_db()
    assert batch.snapshot_id == snapshot_id and batch.check_started_at > crashed_at
    assert MonitorSnapshot.objects.filter(model=model).count() == 1
    (row,) = model_scoring(model)["batches"]
    assert row["status"] == "checked"
    assert check_scored_batches(timezone.now() + 2 * CHECK_GRACE) == []  # checked: never again


def test_of_two_workers_retrying_one_stale_claim_exactly_one_wins(model):
    (batch_id,) = run_due_checks(due(model))
    batch = ScoringBatch.objects.get(pk=batch_id)
    assert execute_run(batch.run_id) == "succeeded"
    stale = timezone.now() - CHECK_GRACE - timedelta(minutes=1)
    ScoringBatch.objects.filter(pk=batch_id).update(check_started_at=stale)
    first, second = ScoringBatch.objects.get(pk=batch_id), ScoringBatch.objects.get(pk=batch_id)
    now = timezone.now()
    assert scoring_claim_check(first, now) is True
    assert scoring_claim_check(second, now + timedelta(seconds=1)) is False  # it read the old claim
    unclaimed = ScoringBatch.objects.get(pk=batch_id)
    unclaimed.check_started_at = None  # a worker that read the batch before any claim
    assert scoring_claim_check(unclaimed, now + timedelta(seconds=2)) is False
    assert ScoringBatch.objects.get(pk=batch_id).check_started_at == now


def test_last_scored_batch_is_the_newest_window_of_the_training_world_in_one_query(
    model, django_assert_num_queries
):
    first_id, second_id = run_due_checks(due(model)), run_due_checks(due(model))
    first, second = (ScoringBatch.objects.get(pk=i) for (i,) in (first_id, second_id))
    family = get_family(model.recipe.model_family)
    start, periods = worlds.span(family, first.batch_json["window"])
    assert worlds.span(family, second.batch_json["window"])[0] == start + periods  # it continued
    # Newer, but of another world: not the training world's last window.
    other = {
        **second.batch_json,
        "seed": 99,
        "window": {**second.batch_json["window"], "start": "2099-01-01"},
    }
    scoring_start(model=model, scheduled_for=second.scheduled_for + timedelta(days=1), batch=other)
    training = model_training_batch(model)
    assert training["seed"] == 1
    with django_assert_num_queries(1):
        found = last_scored_batch(model, training)
    assert found == {k: second.batch_json.get(k) for k in ("rows", "seed", "world", "window", "concept")}
    assert last_scored_batch(model, {"seed": 99})["window"] == other["window"]
    assert last_scored_batch(model, {"seed": 7}) is None


def test_a_failed_score_run_leaves_the_batch_failed_and_unchecked(model, api_client):
    (batch_id,) = run_due_checks(due(model))
    batch = ScoringBatch.objects.get(pk=batch_id)
    Run.objects.filter(pk=batch.run_id).update(status=RunStatus.FAILED, error="boom")
    assert check_scored_batches() == []
    (row,) = model_scoring(model)["batches"]
    assert row["status"] == "failed" and row["health"] is None
    r = api_client.get(f"{API}/models/{model.id}/predictions", {"batch": batch_id})
    assert r.status_code == 404 and "failed" in r.json()["detail"]


def upload_sites(model, user, *, purpose, seed):
    """A CSV of the location family's data, uploaded for the model's recipe with `purpose`."""
    frame = get_family(model.recipe.model_family).generate(400, seed)
    upload = SimpleUploadedFile(f"sites-{seed}.csv", frame.to_csv(index=False).encode())
    return dataset_create(user=user, upload=upload, recipe=model.recipe, purpose=purpose)


def test_the_scheduler_scores_the_recipes_scoring_input_not_its_training_data(model, user):
    training = upload_sites(model, user, purpose="training", seed=11)
    (first_id,) = run_due_checks(due(model))
    first = ScoringBatch.objects.select_related("run").get(pk=first_id)
    assert first.window_key.startswith("synthetic:") and first.run.dataset_id is None  # not the training data
    scoring = upload_sites(model, user, purpose="scoring", seed=12)
    (second_id,) = run_due_checks(due(model))
    second = ScoringBatch.objects.select_related("run").get(pk=second_id)
    assert second.window_key == f"dataset:{scoring.pk}" and second.run.dataset_id == scoring.pk
    assert second.batch_json == {"dataset_id": scoring.pk}
    assert execute_run(second.run_id) == "succeeded", Run.objects.get(pk=second.run_id).error
    assert Run.objects.get(pk=second.run_id).artifacts_json["scoring"]["rows"] == 400
    assert len(check_scored_batches()) == 1
    # Scored once: the next slot goes back to the synthetic continuation, still not the
    # (newer) training data, until a dataset is marked as scoring input.
    late = upload_sites(model, user, purpose="training", seed=13)
    (third_id,) = run_due_checks(due(model))
    assert ScoringBatch.objects.get(pk=third_id).window_key.startswith("synthetic:")
    # Marked later, each is scored once at the following slots, the newest first.
    for dataset in (training, late):
        dataset_set_purpose(dataset=dataset, user=user, purpose="scoring")
    keys = [ScoringBatch.objects.get(pk=run_due_checks(due(model))[0]).window_key for _ in range(3)]
    assert keys[:2] == [f"dataset:{late.pk}", f"dataset:{training.pk}"]
    assert keys[2].startswith("synthetic:")


# --------------------------------------------------------------------------- API


def test_batches_list_newest_first_and_paginated(model, api_client):
    first, second = scored(model), scored(model)
    body = api_client.get(f"{API}/models/{model.id}/batches").json()
    assert body["count"] == 2
    assert [b["id"] for b in body["results"]] == [second.pk, first.pk]
    top = body["results"][0]
    assert top["run_status"] == "succeeded" and top["snapshot_id"] == second.snapshot_id
    assert top["rows"] == second.run.artifacts_json["scoring"]["rows"]
    assert top["status"] == "checked" and top["check_attempts"] == 1 and top["check_error"] == ""
    page = api_client.get(f"{API}/models/{model.id}/batches", {"page_size": 1, "page": 2}).json()
    assert [b["id"] for b in page["results"]] == [first.pk]


def test_predictions_download_csv_and_parquet(model, api_client):
    assert api_client.get(f"{API}/models/{model.id}/predictions").status_code == 404  # nothing scored yet
    first, second = scored(model), scored(model)
    prediction_columns = second.run.artifacts_json["scoring"]["prediction_columns"]
    r = api_client.get(f"{API}/models/{model.id}/predictions")  # default: newest, CSV
    assert r.status_code == 200 and r["Content-Type"].startswith("text/csv")
    assert second.pk in r["Content-Disposition"]
    csv = pd.read_csv(io.BytesIO(b"".join(r.streaming_content)))
    assert len(csv) == second.run.artifacts_json["scoring"]["rows"]
    assert set(prediction_columns) <= set(csv.columns) and "annual_sales" not in csv.columns
    r = api_client.get(f"{API}/models/{model.id}/predictions", {"batch": first.pk, "format": "parquet"})
    assert r.status_code == 200 and first.pk in r["Content-Disposition"]
    parquet = pd.read_parquet(io.BytesIO(b"".join(r.streaming_content)))
    assert len(parquet) == first.run.artifacts_json["scoring"]["rows"]
    r = api_client.get(f"{API}/models/{model.id}/predictions", {"window": first.window_key})
    assert first.pk in r["Content-Disposition"]
    r = api_client.get(f"{API}/models/{model.id}/predictions", {"batch": "batch_nope"})
    assert r.status_code == 404 and "batch_nope" in r.json()["detail"]
    r = api_client.get(f"{API}/models/{model.id}/predictions", {"window": "synthetic:1999-01-01:1"})
    assert r.status_code == 404 and "synthetic:1999-01-01:1" in r.json()["detail"]
    r = api_client.get(f"{API}/models/{model.id}/predictions", {"format": "xlsx"})
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/format"


def truth(model, batch) -> pd.DataFrame:
    """The synthetic world's real labels for the batch's window."""
    return worlds.generate(get_family(model.recipe.model_family), batch.batch_json)


def test_outcomes_join_count_unmatched_and_match_the_familys_evaluate(model, api_client):
    batch = scored(model)
    frame = truth(model, batch).head(300)
    rows = [{"site_id": r.site_id, "annual_sales": float(r.annual_sales)} for r in frame.itertuples()]
    rows += [{"site_id": "nowhere-1", "annual_sales": 1.0}, {"site_id": "nowhere-2", "annual_sales": 2.0}]
    r = api_client.post(f"{API}/models/{model.id}/outcomes", {"rows": rows}, format="json")
    assert r.status_code == 200, r.json()
    body = r.json()
    assert body["batch_id"] == batch.pk
    assert body["outcome_rows"] == 300 and body["unmatched_rows"] == 2
    assert body["unmatched_keys"] == [{"site_id": "nowhere-1"}, {"site_id": "nowhere-2"}]
    family, manifest = get_family("location_scoring"), model.recipe_version.manifest
    fitted, _schema = load_model(model)
    expected, _p, _plots = family.evaluate(
        fitted, family.prepare(frame, manifest, log=lambda m: None), manifest
    )
    expected = {k: v for k, v in expected.items() if isinstance(v, (int, float)) and np.isfinite(v)}
    assert body["performance"] == pytest.approx(expected)
    batch.refresh_from_db()
    assert batch.outcome_rows == 300 and batch.unmatched_rows == 2 and batch.outcomes_at is not None
    assert batch.performance_json == pytest.approx(expected)
    (row,) = model_scoring(model)["batches"]
    assert row["batch"].performance_json == batch.performance_json


@pytest.mark.parametrize(
    "body, path",
    [
        ({"rows": [{"site_id": "x", "annual_sales": 1.0}, {"annual_sales": 2.0}]}, "/rows/1/site_id"),
        ({"rows": [{"site_id": "x"}]}, "/rows/0/annual_sales"),
        ({"rows": [{"site_id": "x", "annual_sales": "lots"}]}, "/rows/0/annual_sales"),
        ({"rows": [{"site_id": "x", "annual_sales": 1}, {"site_id": "x", "annual_sales": 2}]}, "/rows/1"),
        ({"rows": [{"site_id": "nowhere", "annual_sales": 1.0}]}, "/rows"),
        ({"rows": []}, "/rows"),
        ({}, "/rows"),
        ({"batch_id": "batch_nope", "rows": [{"site_id": "x", "annual_sales": 1}]}, "/batch_id"),
        ({"rows": [{"site_id": "x", "annual_sales": 1}], "extra": 1}, "/extra"),
    ],
)
def test_outcomes_bad_input_names_the_field(model, api_client, body, path):
    batch = scored(model)
    r = api_client.post(f"{API}/models/{model.id}/outcomes", body, format="json")
    assert r.status_code == 400, r.json()
    assert path in [e["path"] for e in r.json()["errors"]], r.json()
    batch.refresh_from_db()
    assert batch.outcomes_at is None


def test_outcomes_too_many_rows(model, api_client, settings):
    scored(model)
    settings.OUTCOMES_MAX_ROWS = 2
    rows = [{"site_id": f"s{i}", "annual_sales": 1.0} for i in range(3)]
    r = api_client.post(f"{API}/models/{model.id}/outcomes", {"rows": rows}, format="json")
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/rows"


def test_outcomes_need_a_scored_batch_and_the_permission(model, api_client, viewer_client):
    r = api_client.post(
        f"{API}/models/{model.id}/outcomes", {"rows": [{"site_id": "x", "annual_sales": 1}]}, format="json"
    )
    assert r.status_code == 404 and "no scored batch" in r.json()["detail"]
    r = viewer_client.post(
        f"{API}/models/{model.id}/outcomes", {"rows": [{"site_id": "x", "annual_sales": 1}]}, format="json"
    )
    assert r.status_code == 403


def test_another_clients_model_is_404_on_every_scoring_endpoint(client_private_model):
    model = client_private_model.model
    endpoints = {
        "batches": lambda api: api.get(f"{API}/models/{model.id}/batches"),
        "predictions": lambda api: api.get(f"{API}/models/{model.id}/predictions"),
        "outcomes": lambda api: api.post(
            f"{API}/models/{model.id}/outcomes",
            {"rows": [{"product_id": "p", "store_id": "s", "week": "2025-01-06", "units": 1}]},
            format="json",
        ),
    }
    outsider, insider = APIClient(), APIClient()
    outsider.force_authenticate(client_private_model.outsider)
    insider.force_authenticate(client_private_model.member)
    for name, call in endpoints.items():
        assert call(outsider).status_code == 404, name
    assert insider.get(f"{API}/models/{model.id}/batches").json()["count"] == 0
    assert "scored batch" in insider.get(f"{API}/models/{model.id}/predictions").json()["detail"]


# --------------------------------------------------------------------------- model page


def test_model_page_shows_the_scoring_section(model, as_user, django_assert_max_num_queries):
    url = f"/model-development/models/{model.id}"
    body = as_user.get(url, {"tab": "monitoring"}).content.decode()
    assert 'id="scoring"' in body and "deployment.mode: batch" in body  # batch mode, nothing yet
    first, second = scored(model), scored(model)
    # 21: the Scoring card, the Retraining card (its retrains, the comparable models,
    # comparisons), the A/B tests card (the model's experiments, possible challengers) and
    # the attribution drift card.
    with django_assert_max_num_queries(21):
        body = as_user.get(url, {"tab": "monitoring"}).content.decode()
    assert first.window_key in body and second.window_key in body
    assert f"/model-development/runs/{second.run_id}" in body
    assert f"predictions?batch={second.pk}&amp;format=parquet" in body
    assert 'class="health health-ok"' in body or "health health-" in body


def test_a_realtime_model_without_batches_has_no_scoring_section(baselines, user, as_user):
    model = trained_model(user, recipe_id="recipe_nba_base")
    body = as_user.get(f"/model-development/models/{model.id}", {"tab": "monitoring"}).content.decode()
    assert 'id="scoring"' not in body


def test_outcomes_record_a_snapshot_whose_performance_opens_alerts(model, api_client):
    """Labels that arrive later are judged by the manifest's alert rules like any check:
    shuffled actuals break the ranking, so rank_correlation_critical opens an alert."""

    batch = scored(model)
    frame = truth(model, batch).head(400)
    shuffled = np.random.default_rng(0).permutation(frame["annual_sales"].to_numpy())
    rows = [{"site_id": s, "annual_sales": float(v)} for s, v in zip(frame["site_id"], shuffled, strict=True)]
    r = api_client.post(f"{API}/models/{model.id}/outcomes", {"rows": rows}, format="json")
    assert r.status_code == 200, r.json()
    body = r.json()
    snapshot = MonitorSnapshot.objects.get(pk=body["snapshot_id"])
    assert snapshot.source == "outcomes" and snapshot.row_count == 400
    assert snapshot.performance_metrics_json == pytest.approx(body["performance"])
    assert snapshot.data_freshness_json["batch"]["scoring_batch_id"] == batch.pk
    assert body["performance"]["rank_correlation"] < 0.75
    assert "rank_correlation_critical" in body["alerts_firing"]
    alert = Alert.objects.get(model=model, name="rank_correlation_critical", state=AlertState.FIRING)
    assert alert.first_snapshot_id == snapshot.pk
    batch.refresh_from_db()
    assert batch.outcome_snapshot_id == snapshot.pk
    # The true actuals: the ranking is good again and the alert resolves.
    rows = [
        {"site_id": s, "annual_sales": float(v)}
        for s, v in zip(frame["site_id"], frame["annual_sales"], strict=True)
    ]
    r = api_client.post(f"{API}/models/{model.id}/outcomes", {"rows": rows}, format="json")
    assert r.status_code == 200 and r.json()["alerts_firing"] == []
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


def test_a_scheduled_batch_is_no_larger_than_the_training_data(model, monkeypatch):
    """A location world of 3000 sites has 3000 to score: a 5000-row batch would repeat site ids
    and fail the quality stage, so the scheduler asks for at most the training rows."""
    monkeypatch.setattr(scheduler, "SCHEDULED_BATCH_ROWS", 5000)
    (batch_id,) = run_due_checks(due(model))
    batch = ScoringBatch.objects.get(pk=batch_id)
    assert batch.batch_json["rows"] <= 3000
    assert execute_run(batch.run_id) == "succeeded", Run.objects.get(pk=batch.run_id).error
