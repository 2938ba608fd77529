"""Trials of one study on several workers (issue #15 §4, ``tuning.workers``): the tune run's own
process waits for the trials other workers are running before it chooses the best (bounded by
the timeout and a cancel), an assist of a tune run that is not running does nothing, a tune run
with workers > 1 enqueues its assists and still finishes alone when no worker takes them, and,
with two real worker processes, both run trials of one study."""

from __future__ import annotations

import dataclasses
import threading
import time
from datetime import timedelta
from pathlib import Path

import optuna
import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse
from django_tasks_db.models import DBTaskResult

from recipes import tuning as spec_tuning
from recipes.baselines import manifest as baseline_manifest
from runs import artifacts, tuning, tuning_selectors
from runs.families import get_family, worlds
from runs.models import Run, RunLog
from runs.tasks import tune_assist_task
from runs.tests.test_tuning import executed, finished, start, trials_of, tune_version
from runs.tests.test_worker_processes import wait_for, workers  # noqa: F401 (a fixture)
from runs.tuning_assist import _why_stop, tune_assist

LEAVES = {"num_leaves": optuna.distributions.IntDistribution(4, 64)}


# --------------------------------------------------------------------------- the own process waits


@pytest.fixture(scope="module")
def location():
    """Location scoring's baseline with a tuning section for two workers, and its holdout split."""
    family = get_family("location_scoring")
    manifest = baseline_manifest("location_scoring")
    spec_tuning.training_stage(manifest)[1]["config"]["tuning"] = {
        "n_trials": 2,
        "workers": 2,
        "space": {"num_leaves": {"type": "int", "low": 4, "high": 64}},
    }
    frame = worlds.generate(family, worlds.resolve(family, {"rows": 1500, "seed": 2}))
    frame = family.prepare(frame, manifest, log=lambda m: None)
    return family, manifest, family.split(frame, manifest)


def _study_in_thread(location, tmp_path, stop=None, **changes):
    """run_study in a thread, after "another worker" started a trial of the same study that
    is still running: (that worker's study and trial, the thread, its outcome, its messages)."""
    family, manifest, split = location
    config = dataclasses.replace(spec_tuning.config(manifest, family.NAME), **changes)
    where = {"storage": f"sqlite:///{tmp_path / 'optuna.db'}", "study_name": "run_w"}
    other = tuning._open(where, config)
    elsewhere = other.ask(LEAVES)
    messages: list[tuple] = []
    outcome: dict = {}

    def main():
        try:
            outcome["study"] = tuning.run_study(
                family=family,
                manifest=manifest,
                config=config,
                train=split[0],
                threads=1,
                tuning=where,
                emit=lambda *m: messages.append(m),
                stop=stop,
            )
        except Exception as exc:
            outcome["error"] = exc

    thread = threading.Thread(target=main)
    thread.start()
    return other, elsewhere, thread, outcome, messages


def _logged(messages, text: str) -> bool:
    return any(m[0] == "log" and text in m[2] for m in list(messages))


def test_the_tune_runs_own_process_waits_for_a_trial_running_on_another_worker(location, tmp_path):
    other, elsewhere, thread, outcome, messages = _study_in_thread(location, tmp_path)
    assert wait_for(lambda: _logged(messages, "waiting for trials 0 running on other workers"), timeout=60)
    time.sleep(1.5)
    assert thread.is_alive()  # its own two trials are done: it waits, it does not evaluate yet
    other.tell(elsewhere, 1.0)  # a rank correlation of 1: no trial can beat it
    thread.join(10)
    assert not thread.is_alive() and "error" not in outcome, outcome
    study = outcome["study"]
    # n_trials is 2: the other worker's trial makes it one more, and it is the best.
    assert tuning.finished(study) == 3
    assert study.best_trial.number == elsewhere.number == 0
    ends = [m[1]["number"] for m in messages if m[0] == "trial" and m[1]["event"] == "end"]
    assert ends == [1, 2]  # this process reported only its own trials


def test_the_wait_for_other_workers_ends_at_a_cancel(location, tmp_path):
    stop = threading.Event()
    _, _, thread, outcome, messages = _study_in_thread(location, tmp_path, stop=stop, n_trials=1)
    assert wait_for(lambda: _logged(messages, "waiting for trials 0"), timeout=60)
    stop.set()
    thread.join(5)
    assert not thread.is_alive()
    assert isinstance(outcome.get("error"), tuning.Stopped), outcome


def test_the_wait_for_other_workers_ends_after_the_timeout_and_a_grace(location, tmp_path, monkeypatch):
    monkeypatch.setattr(tuning, "OTHERS_GRACE_SECONDS", 1)
    _, elsewhere, thread, outcome, messages = _study_in_thread(
        location, tmp_path, n_trials=1, timeout=timedelta(seconds=1)
    )
    thread.join(60)
    assert not thread.is_alive() and "error" not in outcome, outcome
    assert _logged(messages, "trials 0 are still running on other workers after the timeout")
    study = outcome["study"]
    assert study.trials[elsewhere.number].state == optuna.trial.TrialState.RUNNING  # not waited for
    assert study.best_trial.number != elsewhere.number


# --------------------------------------------------------------------------- assists in a worker


def _scratch_folders() -> list[Path]:
    return list(Path(settings.WORK_DIR).glob("assist-*"))


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize("state", ["queued", "succeeded", "cancel_requested"])
def test_an_assist_of_a_tune_run_that_is_not_running_does_nothing(baselines, user, state):
    run = start(user, tune_version(user, workers=2))
    if state == "succeeded":
        Run.objects.filter(pk=run.pk).update(status="succeeded")
    elif state == "cancel_requested":  # running, but asked to stop
        Run.objects.filter(pk=run.pk).update(status="running", cancel_requested=True)
    logs = RunLog.objects.filter(run=run).count()
    assert tune_assist(run.pk, index=1) == "not running"
    assert not Run.objects.filter(parent=run).exists()  # no trial
    assert RunLog.objects.filter(run=run).count() == logs  # nothing written to the tune run
    assert tuning_selectors.load_study(run) is None  # nor to the study
    assert _scratch_folders() == []


@pytest.mark.django_db(transaction=True)
def test_a_running_assist_is_told_to_stop_when_its_tune_run_ends_is_cancelled_or_times_out(baselines, user):
    run = start(user, tune_version(user, workers=2))
    Run.objects.filter(pk=run.pk).update(status="running")
    assert _why_stop(run.pk, timeout_at=None) is None
    assert _why_stop(run.pk, timeout_at=time.time() + 5) is None
    late = time.time() - tuning.OTHERS_GRACE_SECONDS - 1  # the timeout and its grace have passed
    assert _why_stop(run.pk, timeout_at=late) == "The tune run's timeout passed before this trial ended."
    Run.objects.filter(pk=run.pk).update(cancel_requested=True)
    assert _why_stop(run.pk, timeout_at=None) == "The tune run was cancelled."
    Run.objects.filter(pk=run.pk).update(status="succeeded", cancel_requested=False)
    assert _why_stop(run.pk, timeout_at=None) == "Its tune run ended before this trial did."


@pytest.mark.django_db(transaction=True)
def test_a_tune_run_for_two_workers_enqueues_an_assist_and_finishes_alone_without_one(baselines, user):
    run = executed(start(user, tune_version(user, n_trials=3, workers=2)))
    assert run.status == "succeeded", run.error
    rows = DBTaskResult.objects.filter(task_path=tune_assist_task.module_path)
    assert [(r.queue_name, r.args_kwargs["args"]) for r in rows] == [("training", [run.pk, 1])]
    messages = list(run.logs.values_list("message", flat=True))
    assert "1 assist enqueued on the training queue: free workers join the study" in messages
    # No worker took the assist: the tune run's own worker ran every trial.
    trials = trials_of(run)
    assert len(trials) == 3 and {t.worker for t in trials} == {run.worker}
    # Taken now, after the tune run ended, the assist does nothing.
    assert tune_assist(run.pk, index=1) == "not running"
    assert Run.objects.filter(parent=run).count() == 3


# --------------------------------------------------------------------------- two real workers


@pytest.mark.slow
@pytest.mark.once  # worker processes and queues: the same on either database, run on PostgreSQL only
@pytest.mark.django_db(transaction=True)
def test_two_workers_run_trials_of_one_study(workers, baselines, user):  # noqa: F811 (the fixture)
    n_trials = 8
    version = tune_version(user, n_trials=n_trials, rounds=150, workers=2)
    run = start(
        user, version, rows=16_000
    )  # trials long enough for the assist to join before the study is done
    began = time.monotonic()
    workers()
    workers()
    assert wait_for(lambda: Run.objects.get(pk=run.pk).is_terminal, timeout=55)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error
    trials = trials_of(run)
    assert not [t.pk for t in trials if not t.is_terminal]  # no trial left running
    done = [t for t in trials if finished(t)]
    # At least n_trials, and at most one more: the trial running on the other worker when the
    # count was reached.
    assert n_trials <= len(done) <= n_trials + 1, [(t.status, t.error) for t in trials]
    # Both workers ran trials, each trial once, and the trial rows name the worker that ran it.
    by_worker: dict[str, list[int]] = {}
    for t in trials:
        by_worker.setdefault(t.worker, []).append(t.params_json["tuning"]["trial"])
    assert len(by_worker) == 2 and run.worker in by_worker, by_worker
    numbers = sorted(n for ns in by_worker.values() for n in ns)
    assert numbers == sorted(set(numbers))
    # The version's own values are still the first trial (the assist waited until they were taken).
    first = next(t for t in trials if t.params_json["tuning"]["trial"] == 0)
    assert first.params_json["hyperparameters"]["num_boost_round"] == 150
    # The assist wrote only log lines to the tune run, naming its worker and its trials.
    (assist,) = set(by_worker) - {run.worker}
    listed = ", ".join(str(n) for n in sorted(by_worker[assist]))
    assert run.logs.filter(message=f"Trials {listed} ran on worker {assist} (assist 1)").exists()
    # The best trial of the study (whichever worker ran it) is the run's result.
    study = tuning_selectors.tune_study(run)
    assert not {"running", "waiting"} & set(study["counts"])
    summary = artifacts.read_json_artifact(run.pk, run.artifacts_json, "tuning.json")
    assert summary["best"]["number"] == study["best"]["number"]
    assert summary["best"]["params"] == study["best"]["params"]
    # The study's API and page say which worker ran each trial.
    assert {t["number"]: t["worker"] for t in study["trials"]} == {
        n: worker for worker, ns in by_worker.items() for n in ns
    }
    page = Client()
    page.force_login(user)
    html = page.get(reverse("pages:run-study", args=[run.pk])).content.decode()
    assert "<th>Worker</th>" in html and assist in html and run.worker in html
    assert time.monotonic() - began < 60
