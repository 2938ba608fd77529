"""Honest run outcomes: a run whose metrics breach a threshold says so everywhere (API, list,
page, log); a failed run says why in words; progress moves stage by stage and ends at the last
stage; runs have readable names numbered per recipe."""

import copy
import threading

import numpy as np
import pandas as pd
import pytest
from django.db import connection

from recipes.models import Recipe, RecipeVersion
from runs import executor
from runs.executor import execute_run
from runs.metrics import check_breaches, check_outcome
from runs.models import Run, RunLog
from runs.pipeline import explain_failure, quality_failure
from runs.services import dataset_create, run_start
from runs.tests.factories import register

API = "/api/ml-development"
LIBRARY = "/model-development/"
HTMX = {"HTTP_HX_REQUEST": "true"}
pytestmark = pytest.mark.django_db


def strict_location(threshold: float = 0.999) -> Recipe:
    """The location baseline with a rank_correlation critical threshold no model meets (the
    version row is edited in place: a test fixture, not something the services allow)."""
    version = RecipeVersion.objects.get(pk="ver_location_base_v1")
    manifest = copy.deepcopy(version.manifest)
    manifest["evaluation"]["metrics"]["rank_correlation"].update(
        target=threshold, threshold_warning=threshold, threshold_critical=threshold
    )
    RecipeVersion.objects.filter(pk=version.pk).update(manifest=manifest)
    return Recipe.objects.get(pk="recipe_location_base")


def synthetic_run(user, recipe, run_type="train", rows=3000, **kwargs) -> Run:
    return run_start(
        user=user, recipe=recipe, run_type=run_type, params={"synthetic": {"rows": rows, "seed": 1}}, **kwargs
    )


# --------------------------------------------------------------------------- outcome


def test_outcome_rule_is_the_worst_check():
    checks = {
        "a": {"status": "pass", "value": 1.0},
        "b": {"status": "warning", "value": 2.0, "threshold_warning": 1.5, "direction": "lower"},
        "c": {"status": None, "value": 3.0},
    }
    assert check_outcome(checks) == "warning"
    checks["d"] = {"status": "critical", "value": 0.1, "threshold_critical": 0.5, "direction": "higher"}
    assert check_outcome(checks) == "critical"
    assert [b["metric"] for b in check_breaches(checks)] == ["d", "b"]  # critical first
    assert check_breaches(checks)[0]["threshold"] == 0.5
    assert check_outcome({"a": {"status": "pass"}}) == "ok"
    assert check_outcome({"a": {"status": None}}) == "" and check_outcome({}) == ""


def test_run_breaching_a_critical_threshold_says_so_everywhere(api_client, as_user, baselines, user):
    recipe = strict_location()
    run = synthetic_run(user, recipe)
    assert execute_run(run.pk) == "succeeded", Run.objects.get(pk=run.pk).error
    run.refresh_from_db()
    assert (run.status, run.outcome) == ("succeeded", "critical")
    assert run.metric_checks_json["rank_correlation"]["status"] == "critical"

    body = api_client.get(f"{API}/runs/{run.pk}").json()
    assert (body["status"], body["outcome"]) == ("succeeded", "critical")
    breach = next(b for b in body["breaches"] if b["metric"] == "rank_correlation")
    assert breach == {
        "metric": "rank_correlation",
        "value": pytest.approx(run.metrics_json["rank_correlation"]),
        "status": "critical",
        "threshold": 0.999,
        "direction": "higher",
    }
    listed = api_client.get(f"{API}/runs", {"outcome": "critical"}).json()
    assert [r["id"] for r in listed["results"]] == [run.pk]
    assert api_client.get(f"{API}/runs", {"outcome": "ok"}).json()["count"] == 0
    assert api_client.get(f"{API}/runs", {"outcome": "great"}).status_code == 400

    # The last log line names the breach.
    last = RunLog.objects.filter(run=run).order_by("-seq").first()
    assert last.level == "error" and "rank_correlation critical" in last.message

    # The run page: not a plain green "Succeeded".
    page = as_user.get(f"/model-development/runs/{run.pk}").content.decode()
    assert 'data-outcome="critical"' in page and "Succeeded · critical" in page
    assert 'id="run-breaches"' in page and "rank_correlation</code>" in page
    assert 'class="badge badge-succeeded badge-large"' not in page

    # The runs list: the status says it, and the primary metric column shows its check.
    table = as_user.get(LIBRARY, {"tab": "runs"}).content.decode()
    assert "Succeeded · critical" in table
    assert "<code>rank_correlation</code>" in table and "badge-critical badge-small" in table
    assert "Outcome" in table  # the filter
    only = as_user.get(LIBRARY, {"tab": "runs", "outcome": "ok"}).content.decode()
    assert "No run matches these filters" in only


def test_healthy_run_is_plain_succeeded(api_client, as_user, baselines, user):
    run = synthetic_run(user, Recipe.objects.get(pk="recipe_location_base"))
    assert execute_run(run.pk) == "succeeded"
    run.refresh_from_db()
    assert run.outcome in ("ok", "warning")  # never critical on the baseline's own world
    body = api_client.get(f"{API}/runs/{run.pk}").json()
    assert body["outcome"] == run.outcome
    page = as_user.get(f"/model-development/runs/{run.pk}").content.decode()
    if run.outcome == "ok":
        assert 'class="badge badge-succeeded badge-large" id="run-status"' in page
        assert 'id="run-breaches"' not in page
    table = as_user.get(LIBRARY, {"tab": "runs"}).content.decode()
    assert "data-primary-metric" in table and "<code>rank_correlation</code>" in table


# --------------------------------------------------------------------------- names


def test_runs_are_numbered_per_recipe_and_named(api_client, baselines, user):
    location = Recipe.objects.get(pk="recipe_location_base")
    pricing = Recipe.objects.get(pk="recipe_pricing_base")
    first = synthetic_run(user, location)
    other = synthetic_run(user, pricing, run_type="backtest")
    second = synthetic_run(user, location)
    assert (first.number, second.number, other.number) == (1, 2, 1)
    assert second.name == "Location Scoring Baseline v1 · train · #2"
    assert other.name == "Pricing Optimization Baseline v1 · backtest · #1"
    body = api_client.get(f"{API}/runs/{second.pk}").json()
    assert (body["name"], body["number"]) == (second.name, 2)


@pytest.mark.django_db(transaction=True)
def test_concurrent_run_starts_get_distinct_numbers(baselines, user):
    recipe = Recipe.objects.get(pk="recipe_location_base")
    numbers, errors = [], []
    barrier = threading.Barrier(4)

    def start():
        try:
            barrier.wait()
            numbers.append(
                run_start(user=user, recipe=recipe, params={"synthetic": {"rows": 100, "seed": 1}}).number
            )
        except Exception as exc:  # reported below
            errors.append(exc)
        finally:
            connection.close()  # this thread's own connection

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(numbers) == [1, 2, 3, 4]


def test_retry_message_and_names_on_pages(as_user, baselines, user):
    run = synthetic_run(user, Recipe.objects.get(pk="recipe_location_base"))
    as_user.post(f"/model-development/runs/{run.pk}/cancel")
    response = as_user.post(f"/model-development/runs/{run.pk}/retry", follow=True)
    new = Run.objects.get(retry_of=run)
    page = response.content.decode()
    assert f"Retry of {run.name} queued as {new.name}." in page
    assert "retry of #1" in page
    assert f"<title>{new.name}" in page
    model = register(user, recipe_id="recipe_location_base")
    synthetic_run(user, Recipe.objects.get(pk="recipe_location_base"), model=model)
    model_page = as_user.get(f"/model-development/models/{model.pk}").content.decode()
    assert "Location Scoring Baseline v1 · train · #3" in model_page


# --------------------------------------------------------------------------- queued message


def test_queued_message_is_cleared_once_the_run_moves_on(as_user, baselines, user):
    run = synthetic_run(user, Recipe.objects.get(pk="recipe_location_base"))
    url = f"/model-development/runs/{run.pk}/live"
    still = as_user.get(url, {"shown": "queued"}, **HTMX).content.decode()
    assert 'id="messages"' not in still  # nothing changed: the "queued" message is still true
    assert execute_run(run.pk) == "succeeded"
    moved = as_user.get(url, {"shown": "queued"}, **HTMX).content.decode()
    assert '<div id="messages" class="messages" aria-live="polite" hx-swap-oob="true"></div>' in moved


# --------------------------------------------------------------------------- progress


def test_backtest_progress_ends_at_its_last_stage(api_client, baselines, user):
    run = synthetic_run(user, Recipe.objects.get(pk="recipe_pricing_base"), run_type="backtest", rows=4000)
    assert execute_run(run.pk) == "succeeded", Run.objects.get(pk=run.pk).error
    run.refresh_from_db()
    assert [s["status"] for s in run.stages_json].count("skipped") == 3  # training, deployment, explain
    assert run.progress["done"] == run.progress["total"] == 6
    assert api_client.get(f"{API}/runs/{run.pk}").json()["progress"]["done"] == 6


def test_each_stage_start_and_end_is_written_on_its_own(monkeypatch, baselines, user):
    """Fast stages used to be written together on the next timer tick (0/5 -> 5/5 in one
    poll). Every stage change is now written as it happens, and the data is loaded inside the
    first stage, so a page polling the run sees each stage move."""
    written: list[list[str]] = []
    flush = executor._Progress.flush

    def spy(self):
        if self.stage_dirty:
            written.append([s["status"] for s in self.stages])
        return flush(self)

    monkeypatch.setattr(executor._Progress, "flush", spy)
    monkeypatch.setattr(executor, "LOG_FLUSH_SECONDS", 60)  # no timer ticks: only stage writes
    run = synthetic_run(user, Recipe.objects.get(pk="recipe_pricing_base"))
    assert execute_run(run.pk) == "succeeded"
    for index in range(6):
        running = ["succeeded"] * index + ["running"] + ["pending"] * (5 - index)
        done = ["succeeded"] * (index + 1) + ["pending"] * (5 - index)
        assert running in written, (index, written)
        assert done in written, (index, written)
    # The data is generated while the first stage runs (not before any stage started).
    messages = list(RunLog.objects.filter(run=run).order_by("seq").values_list("message", flat=True))
    started = next(i for i, m in enumerate(messages) if m.startswith("stage 1/6"))
    generated = next(i for i, m in enumerate(messages) if m.startswith("Generated synthetic"))
    assert started < generated
    # Nothing heavy runs after the last stage: the model was saved within training.
    saved = next(i for i, m in enumerate(messages) if m.startswith("monitoring: stored"))
    assert saved < next(i for i, m in enumerate(messages) if m.startswith("stage 4/6"))


# --------------------------------------------------------------------------- failures in words


def upload(user, frame: pd.DataFrame, name="data.csv"):
    from django.core.files.uploadedfile import SimpleUploadedFile

    return dataset_create(user=user, upload=SimpleUploadedFile(name, frame.to_csv(index=False).encode()))


def failed(run: Run) -> Run:
    assert execute_run(run.pk) == "failed"
    run.refresh_from_db()
    assert "Traceback" not in run.error and "\n" not in run.error  # one line; the log has the rest
    return run


def test_text_in_a_numeric_column_names_the_column(baselines, user):
    from runs.families import pricing

    frame = pricing.generate(3000, 5)
    frame["promo"] = frame["promo"].astype(object).where(np.arange(len(frame)) % 50 != 0, "n/a")
    dataset = upload(user, frame)
    run = failed(run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), dataset=dataset))
    assert "'promo'" in run.error and "fill or drop" in run.error
    assert run.error.startswith("Stage '")
    # The traceback stays in the raw log.
    assert RunLog.objects.filter(run=run, level="error", message__contains="Traceback").exists()


def test_header_only_data_says_it_has_no_rows(baselines, user):
    from runs.families import location_scoring

    dataset = upload(user, location_scoring.generate(100, 1).head(0))
    run = failed(run_start(user=user, recipe=Recipe.objects.get(pk="recipe_location_base"), dataset=dataset))
    assert run.error.startswith("The data has no rows")


def test_quality_failure_says_what_to_do(baselines, user):
    from runs.families import location_scoring

    frame = location_scoring.generate(3000, 1)
    frame.loc[frame.index[::3], "median_income"] = np.nan
    dataset = upload(user, frame)
    run = failed(run_start(user=user, recipe=Recipe.objects.get(pk="recipe_location_base"), dataset=dataset))
    assert "column 'median_income' has" in run.error
    assert "To fix: fill or drop the empty values" in run.error


def test_forecasting_eval_on_its_training_period_is_explained(baselines, user):
    from runs.families import forecasting

    frame = forecasting.generate(6000, 2)
    model = register(user, recipe_id="recipe_forecasting_base", name="Demand")
    dataset = upload(user, frame)
    recipe = Recipe.objects.get(pk="recipe_forecasting_base")
    train = run_start(user=user, recipe=recipe, model=model, dataset=dataset)
    assert execute_run(train.pk) == "succeeded", Run.objects.get(pk=train.pk).error
    model.refresh_from_db()
    run = failed(run_start(user=user, recipe=recipe, run_type="eval", model=model, dataset=dataset))
    assert "overlaps the model's training period" in run.error
    assert "evaluate on dates after the training data" in run.error


def test_process_killed_is_explained():
    assert "ran out of memory" in executor._process_died(-9)
    assert "exit code 1" in executor._process_died(1)


@pytest.mark.parametrize(
    "exc, words",
    [
        (KeyError("store_id"), "no column 'store_id'"),
        (ValueError("missing feature column(s): tenure_months"), "no column 'tenure_months'"),
        (ValueError("not enough history for the LightGBM lags"), "too little data for this train"),
        (ValueError("50 rows cannot make 5 folds"), "too little data"),
        (ValueError("unknown series (not in the model's training data): ['s9']"), "never trained on"),
        (ValueError("Input contains NaN."), "cannot use"),
        (MemoryError(), "out of memory"),
        (RuntimeError("boom"), "RuntimeError: boom"),
    ],
)
def test_explain_failure(exc, words):
    frame = pd.DataFrame({"x": [1.0, np.nan, 3.0]})
    message = explain_failure(exc, stage={"name": "fit", "type": "training"}, frame=frame, run_type="train")
    assert words in message
    assert message.startswith("Stage 'fit' (training) failed:") and "\n" not in message


def test_quality_failure_lists_first_problems_and_advice():
    problems = [f"column 'c{i}' is missing (required by grain)" for i in range(5)]
    message = quality_failure(problems)
    assert "c0" in message and "c2" in message and "c4" not in message and "2 more" in message
    assert "add the missing column" in message


def test_admin_shows_name_and_outcome_read_only(admin_client, baselines, user):
    run = synthetic_run(user, Recipe.objects.get(pk="recipe_location_base"))
    listing = admin_client.get("/admin/runs/run/", {"outcome__exact": ""})
    assert listing.status_code == 200 and run.name in listing.content.decode()
    change = admin_client.get(f"/admin/runs/run/{run.pk}/change/")
    assert change.status_code == 200
    assert 'name="number"' not in change.content.decode()  # allocated by run_start, never edited
