from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone

from models_registry.services import model_set_status
from monitoring import scheduler
from monitoring.models import MonitorSnapshot, ScoringBatch
from monitoring.scheduler import check_scored_batches, claim_due, next_due, run_due_checks
from monitoring.selectors import CHECK_GRACE, CHECK_MAX_ATTEMPTS, model_scoring
from monitoring.services import scoring
from monitoring.services.scoring import CHECK_ERROR_CHARS
from monitoring.tests.test_scoring import due
from monitoring.tests.test_scoring import production_model as batch_model
from runs.executor import execute_run
from runs.models import Run
from runs.tests.factories import trained_model

pytestmark = pytest.mark.django_db


def production_model(user):
    # A realtime model: scheduled checks (batch-mode models are scored: test_scoring.py).
    model = trained_model(user, recipe_id="recipe_nba_base", rows=3000)
    model_set_status(model=model, user=user, status="staging")
    model_set_status(model=model, user=user, status="production")
    model.refresh_from_db()
    return model


def test_next_due_follows_the_manifest_cron():
    manifest = {"deployment": {"schedule": "0 6 * * 1"}}  # Mondays at 06:00
    after = datetime(2026, 11, 26, 12, 0, tzinfo=UTC)  # a Thursday
    assert next_due(manifest, after) == datetime(2026, 11, 30, 6, 0, tzinfo=UTC)
    assert next_due({}, after) == datetime(2026, 11, 27, 6, 0, tzinfo=UTC)  # default daily 06:00


def test_due_check_runs_once_and_moves_the_schedule(baselines, user):
    model = production_model(user)
    now = model.next_check_at + timedelta(seconds=1)
    done = run_due_checks(now)
    assert len(done) == 1
    snapshot = MonitorSnapshot.objects.get(pk=done[0])
    assert snapshot.source == "scheduled"
    assert snapshot.drift_metrics_json["features"]
    model.refresh_from_db()
    assert model.next_check_at > now
    assert run_due_checks(now) == []  # not due any more


def test_a_due_check_is_claimed_by_one_worker_only(baselines, user):
    model = production_model(user)
    now = model.next_check_at + timedelta(seconds=1)
    stale_copy = type(model).objects.get(pk=model.pk)  # what a second worker read
    assert claim_due(model, now) is True
    assert claim_due(stale_copy, now) is False


def test_models_not_in_production_are_not_checked(baselines, user):
    model = production_model(user)
    model_set_status(model=model, user=user, status="archived")
    assert run_due_checks(datetime.now(UTC) + timedelta(days=30)) == []


def test_monitor_command(baselines, user, capsys):
    model = production_model(user)
    type(model).objects.filter(pk=model.pk).update(next_check_at=datetime.now(UTC) - timedelta(minutes=1))
    call_command("monitor")
    assert "1 scheduled check(s) or scoring(s) done" in capsys.readouterr().out


def test_scheduled_checks_take_consecutive_windows_of_the_models_world(baselines, user):
    model = production_model(user)
    now = model.next_check_at + timedelta(seconds=1)
    first = MonitorSnapshot.objects.get(pk=run_due_checks(now)[0])
    model.refresh_from_db()
    later = model.next_check_at + timedelta(seconds=1)
    second = MonitorSnapshot.objects.get(pk=run_due_checks(later)[0])
    a, b = first.data_freshness_json["batch"], second.data_freshness_json["batch"]
    assert a["seed"] == b["seed"] == 1  # the world the model was trained in
    assert date.fromisoformat(b["window"]["start"]) == date.fromisoformat(a["window"]["end"]) + timedelta(
        days=1
    )
    assert first.drift_metrics_json["drifted_count"] == second.drift_metrics_json["drifted_count"] == 0


# --------------------------------------------------------------------------- a failing batch check


@pytest.fixture
def scored_batch(baselines, user, monkeypatch):
    """A batch-mode (location) production model's first batch, scored: its check is due."""
    monkeypatch.setattr(scheduler, "SCHEDULED_BATCH_ROWS", 600)
    model = batch_model(user)
    (batch_id,) = run_due_checks(due(model))
    batch = ScoringBatch.objects.get(pk=batch_id)
    assert execute_run(batch.run_id) == "succeeded", Run.objects.get(pk=batch.run_id).error
    return batch


def test_a_check_that_keeps_raising_is_retried_per_grace_period_then_given_up(
    scored_batch, monkeypatch, caplog, as_user, settings
):
    batch, model = scored_batch, scored_batch.model
    calls = []

    def crash(*, batch):
        calls.append(batch.pk)
        where = f" reading {settings.MEDIA_ROOT}/datasets/ds_x.parquet" if len(calls) == 1 else ""
        raise RuntimeError(
            f"the check blew up ({len(calls)}){where}" + ("!" * 5000 if len(calls) == 5 else "")
        )

    monkeypatch.setattr(scheduler, "scoring_check", crash)
    step = CHECK_GRACE + timedelta(minutes=1)
    start = timezone.now() - (CHECK_MAX_ATTEMPTS + 1) * step  # every claim stale by now
    for attempt in range(1, CHECK_MAX_ATTEMPTS + 1):
        tick = start + (attempt - 1) * step
        assert check_scored_batches(tick) == []
        batch.refresh_from_db()
        assert (batch.check_attempts, batch.check_started_at) == (attempt, tick)
        assert batch.check_error.startswith(f"RuntimeError: the check blew up ({attempt})")
        if attempt == 1:  # the server's folders are not shown, as in a run's error
            assert batch.check_error == "RuntimeError: the check blew up (1) reading ds_x.parquet"
        # Within the grace period the claim is left alone: no attempt counted.
        assert check_scored_batches(tick + CHECK_GRACE - timedelta(seconds=1)) == []
        assert ScoringBatch.objects.get(pk=batch.pk).check_attempts == attempt
    assert len(calls) == CHECK_MAX_ATTEMPTS
    assert len(batch.check_error) == CHECK_ERROR_CHARS and batch.check_error.endswith("…")  # cut
    gave_up = [r for r in caplog.records if r.levelname == "ERROR" and "gave up" in r.getMessage()]
    assert len(gave_up) == 1 and f"gave up after {CHECK_MAX_ATTEMPTS} attempts" in gave_up[0].getMessage()
    # Given up: no tick claims it again, however late, even with a check that would work now.
    monkeypatch.undo()
    monkeypatch.setattr(scheduler, "SCHEDULED_BATCH_ROWS", 600)
    assert check_scored_batches(timezone.now() + 10 * CHECK_GRACE) == []
    batch.refresh_from_db()
    assert batch.check_attempts == CHECK_MAX_ATTEMPTS and batch.snapshot_id is None
    assert len(calls) == CHECK_MAX_ATTEMPTS and not MonitorSnapshot.objects.filter(model=model).exists()
    (row,) = model_scoring(model)["batches"]
    assert row["status"] == "check gave up"
    page = as_user.get(f"/model-development/models/{model.id}", {"tab": "monitoring"}).content.decode()
    assert "batch-check-gave-up" in page and "check gave up" in page
    assert (
        f"attempt {CHECK_MAX_ATTEMPTS} of {CHECK_MAX_ATTEMPTS}" in page and "RuntimeError: the check" in page
    )
    # A person hands it back to the workers (selectors.CHECK_MAX_ATTEMPTS): the next tick checks it.
    ScoringBatch.objects.filter(pk=batch.pk).update(check_attempts=0)
    (snapshot_id,) = check_scored_batches()
    assert ScoringBatch.objects.get(pk=batch.pk).snapshot_id == snapshot_id


def test_a_check_that_succeeds_after_failures_is_checked_once_and_keeps_its_last_error(
    scored_batch, monkeypatch
):
    """The failing check raises after its snapshot was recorded: the check's transaction rolls
    it back (no orphan snapshot, no second one on retry), while the error, written after the
    rollback, stays."""
    batch, model = scored_batch, scored_batch.model
    real = scoring.model_check

    def record_then_fail(**kwargs):
        real(**kwargs)
        raise ValueError("linking failed")

    start = timezone.now() - 3 * (CHECK_GRACE + timedelta(minutes=1))
    with monkeypatch.context() as patch:
        patch.setattr(scoring, "model_check", record_then_fail)
        for attempt in (1, 2):
            assert check_scored_batches(start + (attempt - 1) * (CHECK_GRACE + timedelta(minutes=1))) == []
            batch.refresh_from_db()
            assert batch.check_attempts == attempt and batch.check_error == "ValueError: linking failed"
            assert not MonitorSnapshot.objects.filter(model=model).exists()  # rolled back
    (row,) = model_scoring(model)["batches"]
    assert row["status"] == "check failed"  # stale, attempts left: the next tick retries it
    (snapshot_id,) = check_scored_batches()
    batch.refresh_from_db()
    assert batch.snapshot_id == snapshot_id and batch.check_attempts == 3
    assert batch.check_error == "ValueError: linking failed"  # the history of the last failure
    assert list(MonitorSnapshot.objects.filter(model=model).values_list("id", flat=True)) == [snapshot_id]
    (row,) = model_scoring(model)["batches"]
    assert row["status"] == "checked"
    assert check_scored_batches(timezone.now() + 2 * CHECK_GRACE) == []  # checked: never again
