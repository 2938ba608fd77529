"""Metric history (issue #15 §2): downsampling for plots and the CSV download (runs.history,
pure), and the API: GET /runs/{id}/metrics and /runs/{id}/metrics/{key}/history."""

from __future__ import annotations

import csv
import io
import math
from urllib.parse import quote

import pytest
from rest_framework.test import APIClient

from recipes.models import Recipe
from runs import history, plots
from runs.models import Run
from runs.services import run_start, tracking_log

API = "/api/ml-development"


# --------------------------------------------------------------------------- downsample


def series(n: int) -> list[tuple[int, float | None, int]]:
    return [(i, math.sin(i / 50), 1000 + i) for i in range(n)]


def test_a_short_history_comes_back_whole():
    points = series(10)
    assert history.downsample(points, 10) == points
    assert history.downsample(points, 1000) == points


def test_downsampling_keeps_first_last_spikes_and_order():
    points = series(100_000)
    points[31_337] = (31_337, 50.0, 0)  # a spike
    points[77_777] = (77_777, -50.0, 0)  # a dip
    shown = history.downsample(points, 1000)
    assert 900 <= len(shown) <= 1000
    assert shown[0] == points[0] and shown[-1] == points[-1]
    assert points[31_337] in shown and points[77_777] in shown
    steps = [p[0] for p in shown]
    assert steps == sorted(steps) and len(set(steps)) == len(steps)
    # Every bucket's extremes: the sine's peaks survive as well.
    values = [p[1] for p in shown]
    assert max(v for v in values if v < 50) == pytest.approx(1.0, abs=1e-4)


def test_gaps_are_never_a_minimum_or_maximum():
    points = [(i, None if i % 2 else float(i), i) for i in range(1000)]
    shown = history.downsample(points, 52)
    assert all(v is not None for _, v, _ in shown[1:-1])
    only_gaps = [(0, 1.0, 0), *[(i, None, i) for i in range(1, 99)], (99, 2.0, 99)]
    assert [p[1] for p in history.downsample(only_gaps, 10)].count(None) == 4  # one gap per bucket


@pytest.mark.parametrize("max_points", [2, 3])
def test_the_smallest_budget_is_first_and_last(max_points):
    assert history.downsample(series(100), max_points) == [series(100)[0], series(100)[-1]]


def test_max_points_is_checked():
    assert history.parse_max_points(None) == history.parse_max_points("") == 1000
    assert history.parse_max_points("10000") == 10_000
    for bad in ("1", "10001", "abc", "-5", "1.5"):
        with pytest.raises(ValueError):
            history.parse_max_points(bad)
    with pytest.raises(ValueError):
        history.downsample(series(5), 1)


def test_finite_values_only():
    assert [history.finite(v) for v in (1.5, None, math.nan, math.inf, -math.inf)] == [
        1.5,
        None,
        None,
        None,
        None,
    ]


def test_csv_neutralises_the_key_and_keeps_every_point():
    rows = [(i, float(i) / 2, False, 1000 + i) for i in range(12_001)] + [(12_001, None, True, 99)]
    text = "".join(history.csv_chunks("-cmd", rows, chunk_rows=5000))
    lines = list(csv.reader(io.StringIO(text)))
    assert lines[0] == ["key", "step", "value", "timestamp"]
    assert len(lines) == 1 + len(rows)
    assert lines[1] == ["'-cmd", "0", "0.0", "1000"]  # a spreadsheet would run "-cmd"
    assert lines[-1] == ["'-cmd", "12001", "nan", "99"]
    assert '"\'-cmd",0,0.0,1000' in text  # text quoted, numbers not
    assert len(list(history.csv_chunks("k", rows, chunk_rows=5000))) == 3


def test_train_and_valid_of_one_loss_share_a_chart():
    groups = history.curve_groups(["train.l2", "valid.l2", "fold.MAPE", "loss", "valid.treated.auc", "train"])
    assert groups == {
        "l2": ["train.l2", "valid.l2"],
        "fold.MAPE": ["fold.MAPE"],
        "loss": ["loss"],
        "treated.auc": ["valid.treated.auc"],
        "train": ["train"],
    }


def test_curve_charts_group_train_and_valid_and_skip_single_points():
    series = {
        "train.l2": [(0, 1.0), (1, 0.5)],
        "valid.l2": [(0, 1.1), (1, 0.7)],
        "MAPE": [(0, 0.2)],  # a final metric: no curve
        "fold.RMSE": [(1, 3.0), (2, 2.5), (3, None)],
    }
    figures = plots.curve_figures(series)
    assert [f.layout.title.text for f in figures] == ["l2 on train and valid", "fold.RMSE"]
    assert [t.name for t in figures[0].data] == ["train.l2", "valid.l2"]
    assert (
        figures[1].layout.xaxis.title.text == "fold"
        and figures[0].layout.xaxis.title.text == "boosting iteration"
    )
    many = {f"loss{i}": [(0, 1.0), (1, 2.0)] for i in range(30)}
    assert len(plots.curve_figures(many)) == plots.MAX_CURVE_CHARTS
    compared = plots.compare_curve_figures([("#1", series), ("#2", {"valid.l2": [(0, 2.0), (1, 1.0)]})])
    assert [f.layout.title.text for f in compared] == ["train.l2", "valid.l2", "fold.RMSE"]
    assert [t.name for t in compared[1].data] == ["#1", "#2"]


# --------------------------------------------------------------------------- API


@pytest.fixture
def logged(baselines, user) -> Run:
    """An external run with 3000 points of `valid.l2`, 3 of `fold.a/b` and a final metric."""
    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), executor="external")
    points = [
        {"key": "valid.l2", "value": 1 / (1 + i), "step": i, "timestamp": 10_000 + i} for i in range(3000)
    ]
    points[1500]["value"] = 42.0  # a spike the plot must keep
    points += [
        {"key": "fold.a/b", "value": v, "step": s, "timestamp": 5} for s, v in ((1, 0.5), (2, 0.4), (3, 0.45))
    ]
    points += [{"key": "demand_mape", "value": 0.12, "step": 0, "timestamp": 7}]
    points += [{"key": "-x", "value": float("nan"), "step": 0, "timestamp": 8}]
    tracking_log(run=run, metrics=points)
    return run


def history_url(run, key: str) -> str:
    return f"{API}/runs/{run.pk}/metrics/{quote(key, safe='/')}/history"


def test_history_is_downsampled_for_plots(api_client, logged):
    body = api_client.get(history_url(logged, "valid.l2"), {"max_points": 100}).json()
    assert (body["run_id"], body["key"], body["total"], body["downsampled"]) == (
        logged.pk,
        "valid.l2",
        3000,
        True,
    )
    assert len(body["points"]) <= 100
    assert body["points"][0] == {"step": 0, "value": 1.0, "timestamp": 10_000}
    assert body["points"][-1]["step"] == 2999
    assert {"step": 1500, "value": 42.0, "timestamp": 11_500} in body["points"]
    full = api_client.get(history_url(logged, "valid.l2")).json()  # default: 1000 points
    assert len(full["points"]) <= 1000 and full["downsampled"] is True


def test_a_short_history_comes_whole_and_keys_may_hold_slashes(api_client, logged):
    body = api_client.get(history_url(logged, "fold.a/b")).json()
    assert body["downsampled"] is False and body["total"] == 3
    assert [(p["step"], p["value"]) for p in body["points"]] == [(1, 0.5), (2, 0.4), (3, 0.45)]
    nan = api_client.get(history_url(logged, "-x")).json()
    assert nan["points"] == [{"step": 0, "value": None, "timestamp": 8}]


def test_history_csv_downloads_every_point(api_client, logged):
    response = api_client.get(history_url(logged, "valid.l2"), {"format": "csv", "max_points": 5})
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"] == f'attachment; filename="{logged.pk}-valid-l2.csv"'
    lines = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert lines[0] == ["key", "step", "value", "timestamp"] and len(lines) == 3001
    assert lines[1501] == ["valid.l2", "1500", "42.0", "11500"]
    hostile = api_client.get(history_url(logged, "-x"), {"format": "csv"})
    rows = list(csv.reader(io.StringIO(b"".join(hostile.streaming_content).decode())))
    assert rows[1] == ["'-x", "0", "nan", "8"]


@pytest.mark.parametrize("value", ["1", "10001", "abc", "0"])
def test_max_points_out_of_bounds_is_a_400_naming_it(api_client, logged, value):
    response = api_client.get(history_url(logged, "valid.l2"), {"max_points": value})
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "/max_points"


def test_unknown_run_or_key_is_a_404_naming_it(api_client, logged):
    response = api_client.get(f"{API}/runs/run_nope/metrics/valid.l2/history")
    assert response.status_code == 404 and response.json()["errors"][0]["path"] == "/id"
    response = api_client.get(history_url(logged, "valid.l3"))
    assert response.status_code == 404 and response.json()["errors"][0]["path"] == "/key"
    # Asked for CSV, the error is still the API's JSON error.
    response = api_client.get(history_url(logged, "valid.l3"), {"format": "csv"})
    assert response.status_code == 404 and response["Content-Type"] == "application/json"
    assert response.json()["errors"][0]["path"] == "/key"
    response = api_client.get(f"{API}/runs/run_nope/metrics")
    assert response.status_code == 404 and response.json()["errors"][0]["path"] == "/id"


def test_anonymous_and_other_clients_see_nothing(anon_client, client_recipe):
    run = run_start(user=client_recipe.member, recipe=client_recipe.recipe, executor="external")
    tracking_log(run=run, metrics=[{"key": "loss", "value": 1.0, "step": 0, "timestamp": 1}])
    assert anon_client.get(f"{API}/runs/{run.pk}/metrics/loss/history").status_code in (401, 403)
    outsider = APIClient()
    outsider.force_authenticate(client_recipe.outsider)
    for url in (f"{API}/runs/{run.pk}/metrics/loss/history", f"{API}/runs/{run.pk}/metrics"):
        assert outsider.get(url).status_code == 404
    member = APIClient()
    member.force_authenticate(client_recipe.member)
    assert member.get(f"{API}/runs/{run.pk}/metrics/loss/history").json()["total"] == 1


def test_metric_keys_with_latest_value_and_points_in_one_query(api_client, logged, django_assert_num_queries):
    with django_assert_num_queries(2):  # the run, then keys with their counts
        body = api_client.get(f"{API}/runs/{logged.pk}/metrics").json()
    assert body["run_id"] == logged.pk
    by_key = {m["key"]: m for m in body["metrics"]}
    assert list(by_key) == sorted(by_key)
    assert by_key["valid.l2"] == {
        "key": "valid.l2",
        "value": pytest.approx(1 / 3000),
        "is_nan": False,
        "step": 2999,
        "timestamp": 12_999,
        "points": 3000,
    }
    assert by_key["fold.a/b"]["points"] == 3 and by_key["fold.a/b"]["value"] == 0.45
    assert by_key["demand_mape"]["points"] == 1
    assert (by_key["-x"]["value"], by_key["-x"]["is_nan"]) == (None, True)
