"""Tune runs (issue #15 §4): an Optuna study on a family's synthetic world whose trials are child
runs, the study page and API, "Save best as new version", cancel and a retry that continues
the study. Transactional: the study's own connection (SQLAlchemy, in the run's child process)
writes to the same database file, which an open test transaction would lock."""

import copy
import json
import threading
import time
from pathlib import Path

import pytest
from django.conf import settings
from django.db import connection

from audit.models import AuditEvent
from mlworkspace.errors import InvalidInput
from recipes.models import Recipe, RecipeVersion
from recipes.services import version_create
from runs import tuning_selectors
from runs.executor import execute_run
from runs.models import MetricPoint, Run, RunParam, RunTag
from runs.services import run_cancel, run_retry, run_start, trial_start

API = "/api/ml-development"
pytestmark = pytest.mark.django_db(transaction=True)
ROWS = {"rows": 2000, "seed": 3}
SPACE = {
    "num_boost_round": {"type": "int", "low": 5, "high": 300},
    "learning_rate": {"type": "log", "low": 0.02, "high": 0.3},
    "num_leaves": {"type": "int", "low": 4, "high": 64},
}


def tune_version(user, *, n_trials=5, rounds=5, space=SPACE, tuning=True, workers=1) -> RecipeVersion:
    """The location baseline with a handicap the study should find (5 boosting rounds where
    the baseline has 300) and a tuning section (``workers``: its worker processes): version 1.0.1."""
    recipe = Recipe.objects.get(pk="recipe_location_base")
    manifest = copy.deepcopy(recipe.current_version.manifest)
    stage = next(s for s in manifest["pipeline"]["stages"] if s["type"] == "training")
    stage["config"]["hyperparameters"]["num_boost_round"] = rounds
    if tuning:
        stage["config"]["tuning"] = {"n_trials": n_trials, "seed": 0, "space": space}
        if workers != 1:
            stage["config"]["tuning"]["workers"] = workers
    return version_create(recipe=recipe, user=user, manifest=manifest, changelog="too few rounds")


def start(user, version, run_type="tune", **params) -> Run:
    return run_start(
        user=user,
        recipe=version.recipe,
        recipe_version=version,
        run_type=run_type,
        params={"synthetic": {**ROWS, **params}},
    )


def executed(run: Run) -> Run:
    outcome = execute_run(run.pk)
    run.refresh_from_db()
    assert outcome == run.status, (outcome, run.error)
    return run


def trials_of(run: Run) -> list[Run]:
    return list(Run.objects.filter(parent=run).order_by("number"))


# --------------------------------------------------------------------------- the whole path


def test_tune_run_beats_the_version_and_its_best_is_saved_as_a_patch_version(baselines, user, as_user):
    version = tune_version(user)
    assert version.version == "1.0.1"
    run = executed(start(user, version))
    assert run.status == "succeeded", run.error
    # Deployment and explain are skipped: a tune run deploys and explains nothing.
    assert [s["status"] for s in run.stages_json] == ["succeeded"] * 4 + ["skipped"] * 2

    # Five trials, each a child run with its sampled hyperparameters, metrics and curve.
    trials = trials_of(run)
    assert [t.run_type for t in trials] == ["trial"] * 5
    assert all(t.status == "succeeded" and t.recipe_version_id == version.pk for t in trials)
    first = trials[0]
    assert first.params_json["hyperparameters"] == {
        "num_boost_round": 5,
        "learning_rate": 0.05,
        "num_leaves": 31,
    }
    params = dict(RunParam.objects.filter(run=first).values_list("key", "value"))
    assert params == {"num_boost_round": "5", "learning_rate": "0.05", "num_leaves": "31"}
    tags = dict(RunTag.objects.filter(run=first).values_list("key", "value"))
    assert tags == {"tune.study": run.pk, "tune.trial": "0", "mlflow.parentRunId": run.pk}
    assert "rank_correlation" in first.metrics_json
    assert MetricPoint.objects.filter(run=first, key="valid.l2").count() == 5  # one per boosting round
    assert not first.artifacts_json["files"]  # trials keep no model

    # The study found better parameters than the version's own, on the validation rows and on
    # the holdout the study never saw.
    summary = json.loads(((Path(settings.MEDIA_ROOT) / "artifacts" / run.pk) / "tuning.json").read_text())
    best, own = summary["holdout"]["best"], summary["holdout"]["version"]
    assert summary["best"]["number"] != 0
    assert summary["best"]["validation_value"] > trials[0].metrics_json["rank_correlation"]
    assert best["rank_correlation"] > own["rank_correlation"] + 0.03, (best, own)
    assert run.metrics_json["rank_correlation"] == pytest.approx(best["rank_correlation"])

    # The version's own holdout figure is what a train run of that version measures.
    train = executed(start(user, version, run_type="train"))
    assert train.metrics_json["rank_correlation"] == pytest.approx(own["rank_correlation"])

    # The API and the page show the study.
    body = as_user.get(f"{API}/runs/{run.pk}/study").json()
    assert body["started"] and body["metric"] == "rank_correlation" and body["direction"] == "maximize"
    assert body["counts"] == {"complete": 5}
    assert body["best"]["number"] == summary["best"]["number"]
    assert [t["run_id"] for t in body["trials"]] == [t.pk for t in trials]
    assert body["trials"][0]["baseline"] is True
    page = as_user.get(f"/model-development/runs/{run.pk}/study")
    assert page.status_code == 200
    html = page.content.decode()
    assert html.count("data-plotly-figure") == 4  # history, importances, parallel coordinates, slices
    for title in ("Optimisation history", "Parameter importances", "Parallel coordinates", "Slice plots"):
        assert title in html
    assert 'id="save-best"' in html
    assert f"/model-development/runs/{trials[1].pk}" in html

    # Save best as new version: the tuned manifest with the best parameters, a patch.
    response = as_user.post(f"/model-development/runs/{run.pk}/study/save-best")
    assert response.status_code == 302
    saved = Recipe.objects.get(pk="recipe_location_base").current_version
    assert (saved.version, saved.suggested_bump) == ("1.0.2", "patch")
    assert response["Location"].endswith(f"?tab=versions&a={version.pk}&b={saved.pk}")
    hyper = next(s for s in saved.manifest["pipeline"]["stages"] if s["type"] == "training")["config"]
    assert {k: hyper["hyperparameters"][k] for k in SPACE} == summary["best"]["params"]
    assert (
        hyper["tuning"]
        == next(s for s in version.manifest["pipeline"]["stages"] if s["type"] == "training")["config"][
            "tuning"
        ]
    )
    event = AuditEvent.objects.get(action="run.save_best", object_id=run.pk)
    assert event.detail["version"] == "1.0.2" and event.actor == user
    # Each trial's start is audited, by the tune run's creator.
    started = AuditEvent.objects.filter(action="run.trial_start")
    assert sorted(started.values_list("object_id", flat=True)) == sorted(t.pk for t in trials)
    assert {e.actor for e in started} == {user}

    # A train run of the saved version beats the tuned version's on the same data.
    better = executed(start(user, saved, run_type="train"))
    assert better.metrics_json["rank_correlation"] == pytest.approx(best["rank_correlation"])
    assert better.metrics_json["rank_correlation"] > train.metrics_json["rank_correlation"] + 0.03

    # Saving again: the recipe has moved on (a newer version than the tuned one).
    again = as_user.post(f"{API}/runs/{run.pk}/study/save-best")
    assert again.status_code == 409
    assert again.json()["errors"] == [
        {"path": "/recipe_version_id", "message": "not the latest version (1.0.2)"}
    ]


def test_a_trials_run_is_audited_as_started_by_its_tune_runs_creator(baselines, user):
    tune = start(user, tune_version(user))
    stages = [
        {"name": "fit", "type": "training", "status": "running", "started_at": None, "finished_at": None}
    ]
    trial = trial_start(
        tune=tune, study=tune.pk, number=3, params={"num_leaves": 8}, worker="worker-1", stages=stages
    )
    event = AuditEvent.objects.get(action="run.trial_start")
    assert (event.object_type, event.object_id, event.actor) == ("run", trial.pk, user)
    assert event.detail == {"tune_run_id": tune.pk, "trial": 3}
    assert event.changes["parent_id"] == [None, tune.pk] and event.changes["status"] == [None, "running"]


# --------------------------------------------------------------------------- cancel and resume


def _cancel_after(run: Run, user, trials_done: int) -> threading.Thread:
    def watch():
        try:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                done = Run.objects.filter(parent=run, status="succeeded").count()
                if done >= trials_done:
                    run_cancel(run=Run.objects.get(pk=run.pk), user=user)
                    return
                time.sleep(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=watch)
    thread.start()
    return thread


def finished(trial: Run) -> bool:
    """A trial the study counts as finished: complete (succeeded) or pruned."""
    return trial.status == "succeeded" or trial.error.startswith("Pruned")


def test_cancel_stops_the_study_and_a_retry_continues_it(baselines, user):
    # Enough trials that the cancel (seen on the executor's next flush tick) lands before
    # the study's end on a fast, quiet machine too.
    trials = 12
    version = tune_version(user, n_trials=trials, rounds=150)
    first = start(user, version)
    watcher = _cancel_after(first, user, trials_done=2)
    first = executed(first)
    watcher.join()
    assert first.status == "cancelled" and first.cancel_requested
    # Ended by the executor's cancel path (not failed, not reaped), which stopped the study.
    messages = list(first.logs.values_list("message", flat=True))
    assert "Cancelled: the study stopped; its finished trials are kept." in messages
    started = trials_of(first)
    done_first = [t for t in started if finished(t)]
    # No new trial after the cancel: the study stopped before it had started all its trials.
    assert 2 <= len(done_first) <= len(started) < trials
    assert all(t.is_terminal for t in started)  # no trial left running
    # Nor in the study's storage: every trial it started has ended there too.
    assert not {"running", "waiting"} & set(tuning_selectors.tune_study(first)["counts"])
    # The trial running when the cancel was seen, if any (the cancel can also land between two
    # trials): at most one, cancelled with its tune run, neither failed nor counted as finished.
    stopped = [t for t in started if not finished(t)]
    assert len(stopped) <= 1
    if stopped:
        assert (stopped[0].status, stopped[0].error) == ("cancelled", "The tune run was cancelled.")

    retry = run_retry(run=first, user=user)
    assert tuning_selectors.study_name(retry) == first.pk  # the same study
    retry = executed(retry)
    assert retry.status == "succeeded", retry.error
    # The retry ran only the trials still missing: the study has all it was asked for
    # (finished: complete or pruned).
    assert len([t for t in trials_of(retry) if finished(t)]) == trials - len(done_first)
    study = tuning_selectors.tune_study(retry)
    counts = study["counts"]
    assert counts["complete"] + counts.get("pruned", 0) == trials
    ended = [t for t in study["trials"] if t["state"] in ("complete", "pruned")]
    assert len({t["number"] for t in ended}) == trials
    assert {t["run_id"] for t in ended} == {
        t.pk for t in Run.objects.filter(parent__in=[first, retry]) if finished(t)
    }


# --------------------------------------------------------------------------- refusals


def test_a_version_without_tuning_section_has_no_tune_run_and_the_form_says_why(baselines, user, as_user):
    version = tune_version(user, tuning=False)
    with pytest.raises(InvalidInput) as refused:  # refused at the start, not in the worker
        start(user, version)
    assert refused.value.errors[0]["path"] == "/run_type" and "config.tuning" in str(refused.value)
    assert not Run.objects.filter(run_type="tune").exists()

    response = as_user.post(
        "/model-development/runs/new",
        {"recipe": "recipe_location_base", "recipe_version": version.pk, "run_type": "tune"},
    )
    assert response.status_code == 400
    assert "Version 1.0.1 has no tuning section" in response.content.decode()


def test_the_run_form_offers_tune_but_never_trial(baselines, as_user, user):
    version = tune_version(user)
    page = as_user.get("/model-development/runs/new?recipe=recipe_location_base").content.decode()
    assert 'value="tune"' in page and 'value="trial"' not in page
    response = as_user.post(
        "/model-development/runs/new",
        {"recipe": "recipe_location_base", "recipe_version": version.pk, "run_type": "tune", "rows": 2000},
    )
    assert response.status_code == 302
    run = Run.objects.get(run_type="tune")
    assert response["Location"] == f"/model-development/runs/{run.pk}"
    assert run.params_json["synthetic"]["rows"] == 2000


def test_the_study_of_a_run_that_is_no_tune_run_is_a_404_naming_it(baselines, user, as_user, api_client):
    train = start(user, Recipe.objects.get(pk="recipe_location_base").current_version, run_type="train")
    body = api_client.get(f"{API}/runs/{train.pk}/study").json()
    assert body["errors"] == [{"path": "/run_type", "message": "train, not tune"}]
    assert api_client.get(f"{API}/runs/run_nope/study").status_code == 404
    assert as_user.get(f"/model-development/runs/{train.pk}/study").status_code == 404


def test_a_queued_tune_run_has_no_study_yet(baselines, user, api_client, as_user):
    run = start(user, tune_version(user))
    body = api_client.get(f"{API}/runs/{run.pk}/study").json()
    assert body == {
        "run_id": run.pk,
        "status": "queued",
        "started": False,
        "study_name": None,
        "metric": None,
        "direction": None,
        "counts": {},
        "best": None,
        "trials": [],
    }
    html = as_user.get(f"/model-development/runs/{run.pk}/study").content.decode()
    assert "No trials yet" in html and 'id="save-best"' not in html
    saved = api_client.post(f"{API}/runs/{run.pk}/study/save-best")
    assert saved.status_code == 409 and saved.json()["errors"][0]["path"] == "/study"


def test_saving_the_best_needs_the_version_permission(baselines, user, viewer, viewer_client, client):
    run = start(user, tune_version(user))
    assert viewer_client.post(f"{API}/runs/{run.pk}/study/save-best").status_code == 403
    client.force_login(viewer)
    assert client.post(f"/model-development/runs/{run.pk}/study/save-best").status_code == 403
    assert "save-best" not in client.get(f"/model-development/runs/{run.pk}/study").content.decode()
    assert not AuditEvent.objects.filter(action="run.save_best").exists()


def test_another_clients_tune_run_does_not_exist_for_an_outsider(client_recipe, api_client):
    recipe = client_recipe.recipe
    manifest = copy.deepcopy(recipe.current_version.manifest)
    stage = next(s for s in manifest["pipeline"]["stages"] if s["type"] == "training")
    stage["config"]["tuning"] = {
        "n_trials": 2,
        "space": {"fourier_order": {"type": "int", "low": 1, "high": 3}},
    }
    version = version_create(recipe=recipe, user=client_recipe.admin, manifest=manifest, changelog="tuning")
    run = run_start(user=client_recipe.admin, recipe=recipe, recipe_version=version, run_type="tune")
    assert api_client.get(f"{API}/runs/{run.pk}/study").status_code == 404
    assert api_client.post(f"{API}/runs/{run.pk}/study/save-best").status_code == 404


def test_the_api_starts_tune_runs(baselines, user, api_client):
    version = tune_version(user)
    response = api_client.post(
        f"{API}/runs",
        {"recipe_id": "recipe_location_base", "recipe_version_id": version.pk, "run_type": "tune"},
        format="json",
    )
    assert response.status_code == 201, response.json()
    assert response.json()["run_type"] == "tune"


def test_the_storage_url_is_the_database_django_uses(db):
    url = tuning_selectors.storage_url()
    name = connection.settings_dict["NAME"]
    if connection.vendor == "sqlite":
        assert url == f"sqlite:///{name}"
    else:
        assert url.startswith("postgresql+psycopg://") and url.endswith(f"/{name}")


def test_a_tune_run_needs_a_tuning_section_and_a_trial_never_starts_alone(baselines, api_client):
    """Refused when the run is created (a 400 naming run_type), not later in the worker."""
    for run_type, says in [("tune", "no tuning section"), ("trial", "not a valid choice")]:
        r = api_client.post(
            f"{API}/runs", {"recipe_id": "recipe_pricing_base", "run_type": run_type}, format="json"
        )
        assert r.status_code == 400, r.content
        assert r.json()["errors"][0]["path"] == "/run_type" and says in r.json()["errors"][0]["message"]
    assert not Run.objects.filter(run_type__in=["tune", "trial"]).exists()
