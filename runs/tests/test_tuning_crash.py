"""A tune run whose worker is killed mid-study (real `manage.py worker` processes on the test
database): the reaper fails it and its running trial, the study survives in the database, and
a retry continues it up to the configured number of trials instead of starting over."""

import os
import signal

import pytest

from runs import tuning_selectors
from runs.models import Run
from runs.services import run_retry
from runs.tests.test_tuning import finished, start, tune_version
from runs.tests.test_worker_processes import wait_for, workers  # noqa: F401 (a fixture)

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]


def test_a_tune_run_whose_worker_died_is_continued_by_its_retry(workers, baselines, user):  # noqa: F811
    version = tune_version(user, n_trials=6, rounds=300)
    run = start(user, version, rows=4000)
    first = workers()
    assert wait_for(lambda: Run.objects.filter(parent=run, status="succeeded").count() >= 2, timeout=120)
    os.kill(first.pid, signal.SIGKILL)  # the worker only: its study's child process stops by itself
    first.wait(10)

    workers()  # a new worker's reaper fails the lost tune run and its running trial
    assert wait_for(lambda: Run.objects.get(pk=run.pk).status == "failed", timeout=60)
    assert "Worker lost" in Run.objects.get(pk=run.pk).error
    assert wait_for(lambda: not Run.objects.filter(parent=run, status="running").exists(), timeout=30)
    before = tuning_selectors.tune_study(Run.objects.get(pk=run.pk))
    done = before["counts"].get("complete", 0) + before["counts"].get("pruned", 0)
    assert 2 <= done < 6, before["counts"]

    retry = run_retry(run=Run.objects.get(pk=run.pk), user=user)
    assert wait_for(lambda: Run.objects.get(pk=retry.pk).status in ("succeeded", "failed"), timeout=180)
    retry.refresh_from_db()
    assert retry.status == "succeeded", retry.error
    after = tuning_selectors.tune_study(retry)
    assert after["study_name"] == run.pk
    # As configured, not 6 more: finished trials, complete or pruned (a trial numbered 5 or
    # more may be pruned, depending on how many had finished when the worker died).
    assert after["counts"].get("complete", 0) + after["counts"].get("pruned", 0) == 6, after["counts"]
    assert "running" not in after["counts"]  # the dead worker's trial was failed by its heartbeat
    assert sum(finished(t) for t in Run.objects.filter(parent=retry)) == 6 - done
