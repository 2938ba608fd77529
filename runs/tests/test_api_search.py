"""Searching runs through the API (issue #15 §1): `filter=` and `order_by=` on
GET /api/ml-development/runs, over real runs whose params, metrics and tags were logged through
the one writer (runs.services.tracking_log)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from urllib.parse import quote

import pytest
from django.db import connection
from rest_framework.serializers import ModelSerializer

from recipes.models import Recipe
from runs.models import Run
from runs.selectors import MetricOrderedRuns, run_list, run_search
from runs.serializers import RunSerializer
from runs.services import run_report, run_start, tracking_log

URL = "/api/ml-development/runs"
T0 = datetime(2026, 1, 1, tzinfo=UTC)


def make_run(user, n, *, recipe="recipe_forecasting_base", metrics=None, params=None, tags=None):
    """An external run created at T0 + n minutes (so newer runs have higher n)."""
    run = run_start(
        user=user, recipe=Recipe.objects.get(pk=recipe), executor="external", at=T0 + timedelta(minutes=n)
    )
    tracking_log(
        run=run,
        metrics=[{"key": k, "value": v, "timestamp": 1, "step": 0} for k, v in (metrics or {}).items()],
        params=[{"key": k, "value": v} for k, v in (params or {}).items()],
        tags=[{"key": k, "value": v} for k, v in (tags or {}).items()],
    )
    return run


@pytest.fixture
def runs(baselines, user):
    """Nine forecasting runs and one pricing run; `r` maps a short name to the run."""
    r = {}
    r["a"] = make_run(user, 1, metrics={"MAPE": 0.10}, params={"depth": "6"}, tags={"team": "eu"})
    r["b"] = make_run(user, 2, metrics={"MAPE": 0.05}, params={"depth": "6"}, tags={"team": "eu"})
    r["c"] = make_run(user, 3, metrics={"MAPE": 0.12}, params={"depth": "8"}, tags={"team": "eu"})
    r["d"] = make_run(user, 4, metrics={"MAPE": 0.14}, params={"depth": "6"}, tags={"team": "us"})
    r["e"] = make_run(user, 5, metrics={"MAPE": 0.30}, params={"depth": "6"}, tags={"team": "eu"})
    r["f"] = make_run(user, 6, metrics={"MAPE": math.nan}, params={"depth": "6"}, tags={"team": "eu"})
    r["g"] = make_run(user, 7, metrics={"RMSE": 3.0}, params={"depth": "6.0"}, tags={"team": "eu"})
    r["h"] = make_run(user, 8, metrics={"MAPE": 0.10}, params={"depth": "6", "algo": "LightGBM"})
    r["i"] = make_run(user, 9, params={"depth": "deep", "algo": "ridge"}, tags={"team": "EU-west"})
    r["p"] = make_run(
        user,
        10,
        recipe="recipe_pricing_base",
        metrics={"MAPE": 0.01},
        params={"depth": "6"},
        tags={"team": "eu"},
    )
    return r


def ids(response, r):
    names = {run.id: name for name, run in r.items()}
    assert response.status_code == 200, response.json()
    return [names[item["id"]] for item in response.json()["results"]]


def get(api_client, **params):
    query = []
    for key, value in params.items():
        for item in value if isinstance(value, list) else [value]:
            query.append(f"{key}={quote(str(item))}")
    return api_client.get(f"{URL}?{'&'.join(query)}")


def test_the_issue_search_filters_and_orders_by_the_metric(api_client, runs):
    response = get(
        api_client,
        filter='metrics.MAPE < 0.15 and params.depth = 6 and tags.team = "eu"',
        order_by="metrics.MAPE",
    )
    # b 0.05, p 0.01 is pricing but matches too; a 0.10; g has no MAPE; d is "us"; c depth 8.
    assert ids(response, runs) == ["p", "b", "a"]
    body = response.json()
    assert body["count"] == 3 and body["next"] is None
    assert body["results"][0]["metrics_json"] == {"MAPE": 0.01} or body["results"][0]["metrics_json"] == {}


def test_combined_with_the_existing_filters(api_client, runs):
    response = get(
        api_client,
        recipe_id="recipe_forecasting_base",
        filter="metrics.MAPE < 0.15 and params.depth = 6",
        order_by="metrics.MAPE DESC",
    )
    assert ids(response, runs) == ["d", "h", "a", "b"]  # h and a tie at 0.10: newest first


def test_order_by_a_metric_puts_nan_then_missing_last_in_both_directions(api_client, runs):
    asc = ids(get(api_client, recipe_id="recipe_forecasting_base", order_by="metrics.MAPE"), runs)
    assert asc == ["b", "h", "a", "c", "d", "e", "f", "i", "g"]
    desc = ids(get(api_client, recipe_id="recipe_forecasting_base", order_by="metrics.MAPE DESC"), runs)
    assert desc == ["e", "d", "c", "h", "a", "b", "f", "i", "g"]


def test_pages_of_a_metric_order_cross_from_valued_runs_to_the_rest(api_client, runs):
    seen = []
    for page in (1, 2, 3, 4, 5):
        response = get(
            api_client, recipe_id="recipe_forecasting_base", order_by="metrics.MAPE", page_size=2, page=page
        )
        body = response.json()
        assert body["count"] == 9  # no filter: the count is exact
        seen += ids(response, runs)
    assert seen == ["b", "h", "a", "c", "d", "e", "f", "i", "g"]
    assert get(api_client, order_by="metrics.MAPE", page_size=2, page=6).status_code == 404


def test_a_filtered_page_counts_only_when_it_reaches_the_end(api_client, runs):
    first = get(api_client, filter="params.depth = 6", order_by="metrics.MAPE", page_size=3)
    body = first.json()
    assert ids(first, runs) == ["p", "b", "h"]
    assert body["count"] is None and "page=2" in body["next"] and body["previous"] is None
    second = api_client.get(body["next"])
    assert ids(second, runs) == ["a", "d", "e"]
    assert second.json()["count"] is None
    third = api_client.get(second.json()["next"])
    assert ids(third, runs) == ["f", "g"]  # NaN, then g: depth "6.0" is the number 6; no MAPE
    assert third.json()["count"] == 8 and third.json()["next"] is None
    assert "page=2" in third.json()["previous"]
    assert get(api_client, filter="params.depth = 6", page_size=3, page=9).status_code == 404
    assert get(api_client, filter="params.depth = 6", page="x").status_code == 404


def test_filter_only_keeps_the_newest_first_order_and_ordering(api_client, runs):
    assert ids(get(api_client, filter="tags.team = 'eu' and metrics.MAPE > 0"), runs) == [
        "p",
        "e",
        "c",
        "b",
        "a",
    ]
    oldest = get(api_client, filter="tags.team = 'eu' and metrics.MAPE > 0", ordering="created_at")
    assert ids(oldest, runs) == ["a", "b", "c", "e", "p"]


def test_an_unknown_metric_matches_no_run_rather_than_erring(api_client, runs):
    response = get(api_client, filter="metrics.nothing_logged < 1")
    assert response.status_code == 200 and response.json()["results"] == [] and response.json()["count"] == 0


def test_nan_never_matches_a_comparison(api_client, runs):
    assert "f" not in ids(get(api_client, filter="metrics.MAPE != 0.5"), runs)
    assert "f" not in ids(get(api_client, filter="metrics.MAPE >= -1e9"), runs)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("params.depth = '6'", ["p", "h", "f", "e", "d", "b", "a"]),  # text: "6.0" is not "6"
        ("params.depth >= 7", ["c"]),  # numbers compare as numbers; "deep" is no number
        ("params.depth > '7'", ["i", "c"]),  # text compares as text
        ("params.depth != 6", ["c"]),
        ("params.algo LIKE 'Light%'", ["h"]),
        ("params.algo LIKE 'light%'", []),  # LIKE is case-sensitive on both databases
        ("params.algo ILIKE 'light%'", ["h"]),
        ("params.algo LIKE '_idge'", ["i"]),
        ("tags.team IN ('us', 'EU-west')", ["i", "d"]),
        ("tags.team NOT IN ('eu')", ["i", "d"]),  # a run without the tag is not "not eu"
        ("tags.team != 'eu'", ["i", "d"]),
        ("tags.team ILIKE 'eu%'", ["p", "i", "g", "f", "e", "c", "b", "a"]),
        ("tags.team LIKE 'e_'", ["p", "g", "f", "e", "c", "b", "a"]),
        ("tags.team LIKE '%.%'", []),  # regular-expression characters are literal
        ("attributes.recipe_id = 'recipe_pricing_base'", ["p"]),
        ("attributes.status = 'queued' and tags.team = 'us'", ["d"]),
        ("attributes.status IN ('SCHEDULED') and tags.team = 'us'", ["d"]),  # MLflow's name
        ("attributes.run_type != 'train'", []),
        ("attributes.model_id = 'x'", []),
    ],
)
def test_operators_on_params_tags_and_attributes(api_client, runs, text, expected):
    assert ids(get(api_client, filter=text), runs) == expected


def test_times_compare_in_milliseconds(api_client, runs):
    at = int(runs["c"].created_at.timestamp() * 1000)
    assert ids(get(api_client, filter=f"attributes.created = {at}"), runs) == ["c"]
    assert ids(get(api_client, filter=f"attributes.created <= {at} and tags.team = 'eu'"), runs) == [
        "c",
        "b",
        "a",
    ]
    assert ids(get(api_client, filter=f"attributes.created > {at} and params.depth = 'deep'"), runs) == ["i"]
    assert ids(get(api_client, filter="attributes.start_time > 0"), runs) == []  # none started
    run_report(run=runs["a"], user=None, status="running")
    assert ids(get(api_client, filter="attributes.start_time > 0"), runs) == ["a"]


def test_order_by_params_tags_and_attributes(api_client, runs):
    forecasting = {"recipe_id": "recipe_forecasting_base"}
    # numbers by value, then text, then runs without the param (newest first)
    # c is 8; of the sixes "6.0" (g) sorts above "6" as text, then newest first
    assert ids(get(api_client, order_by="params.depth DESC", **forecasting), runs)[:3] == ["c", "g", "h"]
    by_algo = ids(get(api_client, order_by=["params.algo", "metrics.MAPE"], **forecasting), runs)
    assert by_algo[:2] == ["h", "i"] and by_algo[2:5] == ["b", "a", "c"]
    assert ids(get(api_client, order_by="tags.team", **forecasting), runs)[-1] == "h"  # no tag: last
    assert ids(get(api_client, order_by="attributes.created"), runs)[:2] == ["a", "b"]


def test_order_by_a_metric_then_another_term_breaks_ties(api_client, runs):
    response = get(api_client, filter="metrics.MAPE = 0.1", order_by=["metrics.MAPE", "params.algo DESC"])
    assert ids(response, runs) == ["h", "a"]  # a has no algo: last among the tie
    response = get(api_client, filter="metrics.MAPE = 0.1", order_by=["metrics.MAPE", "attributes.created"])
    assert ids(response, runs) == ["a", "h"]


def test_other_clients_runs_never_match(baselines, client_recipe, api_client):
    member = client_recipe.member
    hidden = make_run(member, 1, recipe=client_recipe.recipe.pk, metrics={"MAPE": 0.01}, tags={"team": "eu"})
    body = get(api_client, filter="tags.team = 'eu'", order_by="metrics.MAPE").json()
    assert hidden.id not in [item["id"] for item in body["results"]]
    body = get(api_client, order_by="metrics.MAPE").json()
    assert hidden.id not in [item["id"] for item in body["results"]]


def error_of(response, path):
    assert response.status_code == 400, response.content
    body = response.json()
    assert body["errors"][0]["path"] == path, body
    message = body["errors"][0]["message"]
    assert message in body["detail"]
    return message


@pytest.mark.parametrize(
    ("text", "column"),
    [
        ("metrics.MAPE 0.15", 14),
        ("metrics.MAPE < 'x'", 16),
        ("MAPE < 1", 1),
        ("metrics.MAPE < 1 or tags.a = 'b'", 18),
        ("tags.team = 'eu", 13),
        ("attributes.status = 'finished-ish'", 21),  # an unknown status value, at the value
        ("attributes.run_type IN ('train', 'fly')", 24),
        ("attributes.created > 1e300", 22),  # not a time
    ],
)
def test_every_filter_error_is_a_400_naming_the_column(api_client, runs, text, column):
    message = error_of(get(api_client, filter=text), "/filter")
    assert message.endswith(f"at column {column}")


def test_order_by_errors_name_the_item(api_client, runs):
    assert error_of(get(api_client, order_by="metrics.MAPE sideways"), "/order_by").endswith("at column 14")
    message = error_of(get(api_client, order_by=["metrics.MAPE", "bogus.x"]), "/order_by")
    assert message.startswith("'bogus.x': unknown entity") and message.endswith("at column 1")


def test_ordering_and_order_by_together_are_refused(api_client, runs):
    error_of(get(api_client, order_by="metrics.MAPE", ordering="-created_at"), "/ordering")


def test_a_search_page_costs_a_fixed_number_of_queries(api_client, runs, django_assert_max_num_queries):
    # session/user, the page (+1 row), and across into the runs without the metric: count + rest
    with django_assert_max_num_queries(6):
        response = get(api_client, filter="params.depth = 6", order_by="metrics.MAPE", page_size=50)
    assert len(response.json()["results"]) == 8


def test_the_fast_list_representation_equals_drfs(baselines, user, runs):
    run = runs["a"]
    run_report(run=run, user=user, status="succeeded", metrics_json={"MAPE": 0.1, "bias": 0.2})
    rows = list(run_list(user).order_by("-created_at"))
    fast = RunSerializer(rows, many=True).data
    slow = [ModelSerializer.to_representation(RunSerializer(), row) for row in rows]
    assert [dict(item) for item in fast] == [dict(item) for item in slow]
    assert any(item["finished_at"] for item in fast) and all(
        item["created_at"].endswith("Z") for item in fast
    )


def test_run_search_orders_by_a_metric_with_a_sequence_the_paginator_reads(baselines, user, runs):
    result = run_search(Run.objects.all(), filter="tags.team = 'eu'", order_by="metrics.MAPE")
    assert isinstance(result, MetricOrderedRuns)
    names = {run.id: name for name, run in runs.items()}
    assert [names[r.id] for r in result] == ["p", "b", "a", "c", "e", "f", "g"]
    assert result.count() == len(result) == 7
    assert names[result[1].id] == "b"
    with pytest.raises(IndexError):
        result[7]  # noqa: B018


@pytest.mark.skipif(connection.vendor != "sqlite", reason="SQLite's plan")
def test_on_sqlite_a_filter_without_a_metric_order_probes_per_run(baselines, user, runs):
    sql = str(run_search(Run.objects.all(), filter="tags.team = 'eu' and params.depth = 6").query)
    assert sql.count("EXISTS") == 2 and "JOIN" not in sql


@pytest.mark.skipif(connection.vendor != "postgresql", reason="PostgreSQL's plan")
def test_on_postgresql_probes_stay_per_run(baselines, user, runs):
    result = run_search(Run.objects.all(), filter="tags.team = 'eu'", order_by="metrics.MAPE")
    sql = str(result.valued.query)
    assert "LIMIT 1 OFFSET 0)" in sql or "OFFSET 0" in str(result.valued[0:5].query)


# ----------------------------------------------------------------------------- the Runs tab

LIBRARY = "/model-development/"


@pytest.fixture
def as_user(client, user):
    client.force_login(user)
    return client


def tab(as_user, **params):
    response = as_user.get(LIBRARY, {"tab": "runs", **params})
    assert response.status_code == 200
    return response


def tab_names(response, r):
    names = {run.id: name for name, run in r.items()}
    return [names[run.id] for run in response.context["page"].object_list]


def test_the_runs_tab_filters_with_the_same_grammar(as_user, runs):
    response = tab(as_user, filter="tags.team = 'eu' and metrics.MAPE < 0.15")
    assert tab_names(response, runs) == ["p", "c", "b", "a"]
    assert response.context["filter_error"] == ""


@pytest.mark.parametrize(
    ("text", "column"),
    [("metrics.MAPE 0.15", 14), ("tags.x = 'open", 10), ("attributes.status = 'nope'", 21)],
)
def test_a_bad_filter_shows_its_error_in_place_and_the_other_filters_still_apply(as_user, runs, text, column):
    response = tab(as_user, filter=text, recipe_id="recipe_pricing_base")
    assert response.context["filter_error"].endswith(f"at column {column}")
    assert tab_names(response, runs) == ["p"]  # recipe_id still applies
    assert 'aria-invalid="true"' in response.content.decode()


def test_a_chosen_recipe_shows_its_metrics_as_sortable_columns(as_user, runs):
    response = tab(as_user, recipe_id="recipe_forecasting_base")
    assert response.context["metric_keys"] == ["MAPE", "RMSE"]  # the primary metric first
    labels = [c.label for c in response.context["columns"]]
    assert "MAPE" in labels and "Primary metric" not in labels
    asc = tab(as_user, recipe_id="recipe_forecasting_base", sort="metric.MAPE")
    assert tab_names(asc, runs) == ["b", "h", "a", "c", "d", "e", "f", "i", "g"]
    cells = {run.id: run.metric_cells for run in asc.context["page"].object_list}
    assert cells[runs["b"].id] == ["0.0500", ""] and cells[runs["f"].id] == ["NaN", ""]
    assert cells[runs["g"].id] == ["", "3.0000"]
    desc = tab(as_user, recipe_id="recipe_forecasting_base", sort="-metric.MAPE", filter="tags.team = 'eu'")
    assert tab_names(desc, runs) == ["e", "c", "a", "b", "f", "g"]


def test_the_tab_ignores_what_it_does_not_offer(as_user, runs):
    # an unknown sort key, a recipe's metric that is not a column, an order_by in the URL
    assert tab_names(tab(as_user, sort="metric.MAPE"), runs)[0] == "p"  # no recipe: newest first
    assert tab_names(tab(as_user, order_by="metrics.MAPE"), runs)[0] == "p"
    assert tab(as_user, recipe_id="recipe_nope").context["metric_keys"] == []
    assert tab(as_user, filter="x" * 5000).context["filter_error"].endswith("at column 2001")


def test_the_tab_with_a_metric_sort_costs_constant_queries(
    as_user, runs, user, django_assert_max_num_queries
):
    # session, user, 2 permission sets, the recipe picker, the recipe, its metric keys, the
    # count, the page, its metric cells; +1 when the page reaches the runs without the metric
    params = {"recipe_id": "recipe_forecasting_base", "sort": "metric.MAPE", "filter": "params.depth = 6"}
    with django_assert_max_num_queries(11):
        tab(as_user, **params)
    for n in range(11, 41):
        make_run(user, n, metrics={"MAPE": 0.2, "RMSE": 1.0}, params={"depth": "6"})
    with django_assert_max_num_queries(10):
        assert len(tab(as_user, **params).context["page"].object_list) == 25


@pytest.mark.parametrize(
    "params",
    [
        {"filter": "tags.team LIKE 50%"},  # a "%" in the quoted input of an error message
        {"filter": "params.x = '100%' or"},
        {"order_by": "tags.`a\x00`"},
        {"order_by": "metrics.x 50%"},
    ],
)
def test_awkward_input_is_a_400_in_the_api_and_an_inline_error_in_the_tab(api_client, as_user, runs, params):
    assert get(api_client, **params).status_code == 400
    assert tab(as_user, **params).status_code == 200
