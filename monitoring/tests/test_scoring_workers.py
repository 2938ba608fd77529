"""Scheduled batch scoring with two real worker processes (`manage.py worker`) against the
test database (issue 14 §2: "two workers never score the same window twice"): both tick
every second, each tick claiming due slots, starting score runs, executing them and checking
scored batches; every window is scored once, each score run executed once and each batch
checked once."""

import time
from datetime import timedelta

import pytest
from django.utils import timezone

from models_registry.models import MLModel
from monitoring.models import MonitorSnapshot, ScoringBatch
from monitoring.tests.test_scoring import production_model
from runs.families import get_family, worlds
from runs.models import Run, RunLog, RunStatus, RunType
from runs.tests.test_worker_processes import wait_for, workers  # noqa: F401 (workers: the fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]
SLOTS = 3


def test_two_workers_score_each_window_once_and_execute_each_score_run_once(
    workers,  # noqa: F811 (the fixture imported above)
    baselines,
    user,
    tmp_path,
):
    # Location scoring (deployment.mode batch, monthly), in a world of 6000 sites: the
    # workers score SCHEDULED_BATCH_ROWS (5000) of them per window, each site once.
    model = production_model(user, rows=6000)
    batches = ScoringBatch.objects.filter(model=model)
    # Down for 200 days: the missed slots are scored once, not once each.
    MLModel.objects.filter(pk=model.pk).update(next_check_at=timezone.now() - timedelta(days=200))
    workers()
    workers()
    for n in range(1, SLOTS + 1):
        assert wait_for(lambda n=n: batches.count() >= n, timeout=30), n
        if n < SLOTS:
            # The next slot falls due at once (as if its month went by), while both workers
            # are still executing or checking the batch before it.
            MLModel.objects.filter(pk=model.pk).update(next_check_at=timezone.now() - timedelta(seconds=1))
    assert wait_for(lambda: batches.filter(snapshot__isnull=False).count() == SLOTS, timeout=60), list(
        batches.values_list("window_key", "run__status", "run__error", "snapshot_id")
    )
    time.sleep(2.5)  # two more ticks of each worker: nothing else is scored or checked

    scored = list(batches.select_related("run").order_by("scheduled_for", "id"))
    assert len(scored) == SLOTS
    # One batch per window, the windows consecutive: none scored twice, none skipped.
    assert len({b.window_key for b in scored}) == SLOTS
    family = get_family(model.recipe.model_family)
    spans = [worlds.span(family, b.batch_json["window"]) for b in scored]
    assert all(later[0] == start + periods for (start, periods), later in zip(spans, spans[1:], strict=False))
    # Every score run executed once, by one worker; no run started for a window it lost.
    score_runs = Run.objects.filter(model=model, run_type=RunType.SCORE)
    assert sorted(score_runs.values_list("id", flat=True)) == sorted(b.run_id for b in scored)
    for batch in scored:
        assert batch.run.status == RunStatus.SUCCEEDED, batch.run.error
        assert RunLog.objects.filter(run=batch.run, message__contains=" claimed by worker").count() == 1
        assert batch.run.artifacts_json["scoring"]["rows"] > 0
    # Every batch checked once: one snapshot each, of that batch's window.
    snapshots = MonitorSnapshot.objects.filter(model=model)
    assert snapshots.count() == SLOTS
    assert {b.snapshot_id for b in scored} == set(snapshots.values_list("id", flat=True))
    for batch in scored:
        assert batch.snapshot.data_freshness_json["batch"]["window"] == batch.batch_json["window"]
    # Nothing failed along the way (the workers log exceptions of scheduled work).
    for log in sorted(tmp_path.glob("worker-*.log")):
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
