from datetime import UTC, date, datetime, timedelta

import pytest
from django.core.management import call_command

from models_registry.services import model_set_status
from monitoring.models import MonitorSnapshot
from monitoring.scheduler import claim_due, next_due, run_due_checks
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
