"""HTML pages of runs: new-run form, the live run page (polling that stops), following
logs, cancel/retry, compare — and the family plots they draw."""

from datetime import timedelta

import pytest
from django.utils import timezone

from recipes.models import Recipe
from runs import plots
from runs.executor import execute_run
from runs.models import Run
from runs.services import run_start
from runs.tests.factories import register

pytestmark = pytest.mark.django_db

NEW = "/model-development/runs/new"
HTMX = {"HTTP_HX_REQUEST": "true"}


def run_url(run_id: str, suffix: str = "") -> str:
    return f"/model-development/runs/{run_id}{suffix}"


def queued(user, recipe_id="recipe_location_base", **kwargs) -> Run:
    return run_start(
        user=user,
        recipe=Recipe.objects.get(pk=recipe_id),
        params={"synthetic": {"rows": 3000, "seed": 1}},
        **kwargs,
    )


# --------------------------------------------------------------------------- new run


def test_run_form_renders_and_follows_the_recipe(as_user, baselines, user):
    assert as_user.get(NEW).status_code == 200
    model = register(user, recipe_id="recipe_location_base", name="Sites")
    page = as_user.get(NEW, {"model": model.pk})
    assert page.status_code == 200
    body = page.content.decode()
    assert f'value="{model.pk}" selected' in body
    assert 'value="recipe_location_base" selected' in body
    fragment = as_user.get(NEW, {"recipe": "recipe_nba_base", "rows": "5000"}, **HTMX)
    assert b"<html" not in fragment.content
    assert b"ver_nba_base_v1" in fragment.content and b'value="5000"' in fragment.content


def test_run_form_without_recipes_says_what_to_do(as_user):
    assert "No recipes yet" in as_user.get(NEW).content.decode()


def test_start_run(as_user, baselines, user):
    model = register(user, recipe_id="recipe_location_base")
    response = as_user.post(
        NEW,
        {
            "recipe": "recipe_location_base",
            "run_type": "train",
            "model": model.pk,
            "rows": "3000",
            "seed": "7",
        },
    )
    assert response.status_code == 302
    run = Run.objects.get()
    assert response["Location"] == run_url(run.pk)
    assert (run.status, run.model_id, run.recipe_version_id) == ("queued", model.pk, "ver_location_base_v1")
    assert {k: run.params_json["synthetic"][k] for k in ("rows", "seed")} == {"rows": 3000, "seed": 7}
    page = as_user.get(response["Location"]).content.decode()
    assert f"{run.name} queued" in page and f"Run {run.pk}" not in page
    assert "<h1>Location Scoring Baseline v1 · train · #1</h1>" in page


def test_start_run_errors_next_to_fields(as_user, baselines):
    eval_without_model = as_user.post(NEW, {"recipe": "recipe_location_base", "run_type": "eval"})
    assert eval_without_model.status_code == 400
    assert "an eval run evaluates a registered model" in eval_without_model.content.decode()
    too_few = as_user.post(NEW, {"recipe": "recipe_location_base", "run_type": "train", "rows": "10"})
    assert too_few.status_code == 400
    assert "greater than or equal to 50" in too_few.content.decode()
    assert not Run.objects.exists()


def test_start_run_needs_permission(as_viewer, baselines):
    response = as_viewer.post(NEW, {"recipe": "recipe_location_base", "run_type": "train"})
    assert response.status_code == 403
    assert not Run.objects.exists()


# --------------------------------------------------------------------------- the live run page


def test_queued_run_page_polls(as_user, baselines, user):
    run = queued(user)
    page = as_user.get(run_url(run.pk))
    assert page.status_code == 200
    body = page.content.decode()
    assert f'hx-get="{run_url(run.pk, "/live")}?shown=queued" hx-trigger="every 1s"' in body
    assert f'hx-get="{run_url(run.pk, "/logs")}?after=0" hx-trigger="every 1s"' in body
    assert "data_quality" in body  # the version's stages, pending
    assert 'data-plotly-src="/static/plotly/plotly.min.' in body  # charts.js loads it when needed
    live = as_user.get(run_url(run.pk, "/live"), **HTMX)
    assert b"<html" not in live.content and b'hx-trigger="every 1s"' in live.content
    assert as_user.get(run_url(run.pk, "/live")).status_code == 302  # not a page of its own


def test_finished_run_page_stops_polling_and_shows_results(as_user, baselines, user):
    model = register(user, recipe_id="recipe_location_base")
    run = queued(user, model=model)
    assert execute_run(run.pk) == "succeeded", Run.objects.get(pk=run.pk).error
    live = as_user.get(run_url(run.pk, "/live"), **HTMX)
    body = live.content.decode()
    assert "hx-trigger" not in body  # polling stops once the run has ended
    assert "Succeeded" in body
    assert 'data-metric="rank_correlation"' in body
    assert any(f"badge-{status}" in body for status in ("pass", "warning", "critical"))
    assert "data-plotly-figure" in body and "Plotly.newPlot" not in body  # drawn by static/js/charts.js
    assert f"/api/ml-development/runs/{run.pk}/artifacts/metrics.json" in body

    logs = as_user.get(run_url(run.pk, "/logs"), {"after": "0"}, **HTMX)
    text = logs.content.decode()
    assert 'hx-swap-oob="beforeend:#log-lines"' in text
    assert f"{run.name} succeeded." in text
    last = Run.objects.get(pk=run.pk).logs.order_by("-seq").first().seq
    # Within the grace period the log keeps following (the last line lands after the status).
    assert "hx-trigger" in as_user.get(run_url(run.pk, "/logs"), {"after": last}, **HTMX).content.decode()
    Run.objects.filter(pk=run.pk).update(finished_at=timezone.now() - timedelta(seconds=10))
    done = as_user.get(run_url(run.pk, "/logs"), {"after": last}, **HTMX).content.decode()
    assert "hx-trigger" not in done and "log-line" not in done
    raw = as_user.get(run_url(run.pk, "/logs"))
    assert raw["Content-Type"].startswith("text/plain") and f"{run.name} succeeded.".encode() in raw.content

    page = as_user.get(run_url(run.pk)).content.decode()
    assert 'id="run-live"' in page and "every 1s" not in page
    model.refresh_from_db()
    assert model.training_run_id == run.pk


def test_cancel_and_retry(as_user, baselines, user):
    run = queued(user)
    response = as_user.post(run_url(run.pk, "/cancel"), follow=True)
    assert "Run cancelled." in response.content.decode()
    run.refresh_from_db()
    assert run.status == "cancelled"
    again = as_user.post(run_url(run.pk, "/cancel"), follow=True)
    assert "already cancelled" in again.content.decode()
    retry = as_user.post(run_url(run.pk, "/retry"))
    new = Run.objects.exclude(pk=run.pk).get()
    assert retry["Location"] == run_url(new.pk)
    assert (new.retry_of_id, new.status, new.params_json) == (run.pk, "queued", run.params_json)


def test_cancel_and_retry_need_permissions(as_viewer, baselines, user):
    run = queued(user)
    assert as_viewer.post(run_url(run.pk, "/cancel")).status_code == 403
    assert as_viewer.post(run_url(run.pk, "/retry")).status_code == 403
    run.refresh_from_db()
    assert run.status == "queued"
    assert Run.objects.count() == 1


def test_compare(as_user, baselines, user):
    a, b = queued(user), queued(user)
    other = queued(user, recipe_id="recipe_pricing_base")
    Run.objects.filter(pk__in=[a.pk, b.pk]).update(
        status="succeeded",
        metrics_json={"rank_correlation": 0.9},
        metric_checks_json={"rank_correlation": {"status": "pass", "direction": "higher", "target": 0.9}},
        plots_json={"decile_lift": {"decile": [1, 2], "lift": [2.0, 1.2]}},
    )
    response = as_user.get("/model-development/runs/compare", {"ids": f"{a.pk},{b.pk}"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Metrics side by side" in body and body.count("badge-pass") == 2
    assert "plotly-graph-div" in body
    assert as_user.get("/model-development/runs/compare", {"ids": [a.pk, b.pk]}).status_code == 200
    mixed = as_user.get("/model-development/runs/compare", {"ids": f"{a.pk},{other.pk}"})
    assert mixed.status_code == 400 and "different recipes" in mixed.content.decode()
    single = as_user.get("/model-development/runs/compare", {"ids": a.pk})
    assert single.status_code == 400 and "two or more runs" in single.content.decode()


def test_run_page_query_count(as_user, baselines, user, django_assert_max_num_queries):
    run = queued(user)
    with django_assert_max_num_queries(10):
        as_user.get(run_url(run.pk))
    with django_assert_max_num_queries(6):
        as_user.get(run_url(run.pk, "/live"), **HTMX)
    with django_assert_max_num_queries(6):
        as_user.get(run_url(run.pk, "/logs"), {"after": "0"}, **HTMX)


# --------------------------------------------------------------------------- plots (no DB)


FAMILY_PLOTS = {
    "forecasting": {
        "total": {
            "date": ["2024-01-01", "2024-01-02"],
            "actual": [1, 2],
            "forecast": [1, 3],
            "lower": [0, 1],
            "upper": [2, 4],
        },
        "series": [
            {
                "series_id": "s1",
                "date": ["2024-01-01"],
                "actual": [1],
                "forecast": [1],
                "lower": [0],
                "upper": [2],
            }
        ],
        "candidates": [
            {"name": "ets", "validation_mape": 0.2, "selected": True},
            {"name": "arima", "validation_mape": None},
        ],
    },
    "pricing": {
        "demand_curve": {
            "product_id": "P1",
            "segment": "grocery",
            "objective": "margin",
            "price": [1, 2],
            "units": [5, 3],
            "revenue": [5, 6],
            "margin": [1, 2],
            "current_price": 1.5,
            "chosen_price": 1.8,
            "bounds": [1.2, 1.8],
        },
        "segment_elasticity": {
            "segment": ["a", "b"],
            "estimate": [-1.5, -2],
            "ci_low": [-1.7, -2.2],
            "ci_high": [-1.3, -1.8],
        },
    },
    "next_best_action": {
        "qini_curve": {
            "type": "line",
            "title": "Qini curve",
            "x": [0, 1],
            "series": {"model": [0, 5], "random": [0, 3]},
        },
        "uplift_by_decile": {
            "type": "bar",
            "x": [1, 2],
            "series": {"observed": [0.1, 0.0], "random": [0.05, 0.05]},
        },
    },
    "location_scoring": {
        "rank_scatter": {"x": [0.1, 0.9], "y": [0.2, 0.8]},
        "decile_lift": {"decile": [1, 2], "lift": [2.0, 1.1]},
    },
}


@pytest.mark.parametrize(
    "family, expected", [("forecasting", 3), ("pricing", 2), ("next_best_action", 2), ("location_scoring", 2)]
)
def test_family_plots(family, expected):
    figures = plots.run_figures(family, FAMILY_PLOTS[family])
    assert len(figures) == expected
    html = plots.figure_html(figures[0])
    assert 'type="application/json"' in html and "Plotly.newPlot" not in html and "plotly.min.js" not in html
    overlaid = plots.compare_figures(family, [("a", FAMILY_PLOTS[family]), ("b", FAMILY_PLOTS[family])])
    assert overlaid and len(overlaid[0].data) >= 2


def test_plots_tolerate_missing_or_malformed_data():
    assert plots.run_figures("pricing", None) == []
    assert plots.run_figures("pricing", {"demand_curve": "nope"}) == []
    assert plots.run_figures("unknown", {"x": 1}) == []
    backtest = plots.run_figures("pricing", {"folds": [{"elasticity": -1.5}, {"elasticity": -1.7}]})
    assert len(backtest) == 1 and backtest[0].data[0].name == "elasticity"
