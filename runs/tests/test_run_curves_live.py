"""Live training curves on the run page (issue #15 §2): while a run runs, its "Training curves"
card is on the page and refreshed by its own poll (GET …/runs/<id>/curves, every 3 s, outside
the 1-second live part); an unchanged history is a 204; once the run has ended the poll stops
and the live part's last answer brings the final card and empties the running one in the same
swap, so the page never shows two."""

from __future__ import annotations

import re

import pytest
from django.utils import timezone

from recipes.models import Recipe
from runs.models import MetricPoint, Run
from runs.services import run_start

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def run_url(run_id: str, suffix: str = "") -> str:
    return f"/model-development/runs/{run_id}{suffix}"


def running(user, recipe: Recipe | None = None) -> Run:
    run = run_start(
        user=user,
        recipe=recipe or Recipe.objects.get(pk="recipe_location_base"),
        params={"synthetic": {"rows": 1500, "seed": 1}},
    )
    Run.objects.filter(pk=run.pk).update(status="running", started_at=timezone.now())
    return Run.objects.get(pk=run.pk)


def log_points(run: Run, steps: range, keys=("train.l2", "valid.l2")) -> None:
    """What the executor's _Progress writes while the child trains: rows of metric history."""
    MetricPoint.objects.bulk_create(
        MetricPoint(run=run, key=key, value=scale / (step + 1), step=step, timestamp=1000 + step)
        for key, scale in zip(keys, (1.0, 1.3, 1.6, 1.9), strict=False)
        for step in steps
    )


def live_curves(body: str) -> str:
    """The running card's element: from its opening tag to the Logs card that follows it."""
    match = re.search(
        r'<div id="run-curves-live"(.*?)<section class="card">\s*<div class="card-head">\s*<h2>Logs',
        body,
        re.S,
    )
    assert match, "no #run-curves-live element before the Logs card"
    return match.group(1)


def points_in_table(html: str) -> dict[str, int]:
    return {
        key: int(n)
        for key, n in re.findall(r'<tr><td><code>([^<]+)</code></td><td class="num">(\d+)</td>', html)
    }


def test_a_running_runs_page_shows_the_curves_card_and_polls_it(as_user, baselines, user):
    run = running(user)
    log_points(run, range(10))
    body = as_user.get(run_url(run.pk)).content.decode()
    card = live_curves(body)
    assert f'hx-get="{run_url(run.pk, "/curves")}?points=20" hx-trigger="every 3s"' in card
    assert "Training curves" in card and card.count("data-plotly-figure") == 1
    assert points_in_table(card) == {"train.l2": 10, "valid.l2": 10}
    assert body.count("<h2>Training curves</h2>") == 1
    assert "{#" not in body and "#}" not in body  # no template comment printed as text
    # Not inside the 1-second live part: its re-render would re-draw Plotly every second.
    live = body[body.index('<div id="run-live"') : body.index('<div id="run-curves-live"')]
    assert "run-curves" not in live and 'hx-trigger="every 1s"' in live


def test_the_curves_fragment_returns_the_chart_and_keeps_polling(
    as_user, baselines, user, django_assert_max_num_queries
):
    run = running(user)
    log_points(run, range(10))
    with django_assert_max_num_queries(5):  # session, user, run + the card's two: not per point
        response = as_user.get(run_url(run.pk, "/curves"), **HTMX)
    body = response.content.decode()
    assert response.status_code == 200 and "<html" not in body
    assert body.lstrip().startswith('<div id="run-curves-live"')
    assert f'hx-get="{run_url(run.pk, "/curves")}?points=20" hx-trigger="every 3s"' in body
    assert body.count("data-plotly-figure") == 1 and "Plotly.newPlot" not in body
    assert 'id="run-live"' not in body  # the curves only, not the status part

    # The page already shows these 20 points: nothing to swap, nothing to re-draw.
    unchanged = as_user.get(run_url(run.pk, "/curves"), {"points": "20"}, **HTMX)
    assert unchanged.status_code == 204 and unchanged.content == b""

    log_points(run, range(10, 15))
    grown = as_user.get(run_url(run.pk, "/curves"), {"points": "20"}, **HTMX).content.decode()
    assert points_in_table(grown) == {"train.l2": 15, "valid.l2": 15}
    assert "?points=30" in grown and 'hx-trigger="every 3s"' in grown


def test_before_the_first_point_the_card_says_where_curves_will_appear(as_user, baselines, user):
    run = running(user)
    card = live_curves(as_user.get(run_url(run.pk)).content.decode())
    assert "No curve yet: points appear as the run logs them." in card
    assert "?points=0" in card and "data-plotly-figure" not in card and "curve-downloads" not in card
    assert as_user.get(run_url(run.pk, "/curves"), {"points": "0"}, **HTMX).status_code == 204
    log_points(run, range(1), keys=("train.l2",))  # one point: a value, not yet a curve
    first = as_user.get(run_url(run.pk, "/curves"), {"points": "0"}, **HTMX).content.decode()
    assert "No curve yet" in first and points_in_table(first) == {"train.l2": 1}


def test_once_the_run_has_ended_there_is_one_card(as_user, baselines, user):
    run = running(user)
    log_points(run, range(10))
    assert 'id="run-curves-live"' not in as_user.get(run_url(run.pk, "/live"), **HTMX).content.decode()
    Run.objects.filter(pk=run.pk).update(status="succeeded", finished_at=timezone.now())

    # The running card's last answer: the empty element, polling no more.
    curves = as_user.get(run_url(run.pk, "/curves"), {"points": "20"}, **HTMX)
    body = curves.content.decode()
    assert curves.status_code == 200
    assert body.strip() == '<div id="run-curves-live">\n  \n</div>'

    # The live part's last answer: the final card, and the running one emptied out of band.
    live = as_user.get(run_url(run.pk, "/live"), **HTMX).content.decode()
    assert "hx-trigger" not in live
    assert live.count("<h2>Training curves</h2>") == 1
    final = live[: live.index('<div id="run-curves-live"')]
    assert final.count("data-plotly-figure") == 1 and 'id="run-curves"' in final
    assert '<div id="run-curves-live" hx-swap-oob="true"></div>' in live

    page = as_user.get(run_url(run.pk)).content.decode()
    assert page.count("<h2>Training curves</h2>") == 1
    assert "hx-swap-oob" not in live_curves(page) and "every 3s" not in page
    assert "No curve yet" not in page


def test_an_ended_run_without_points_has_no_card(as_user, baselines, user):
    run = running(user)
    Run.objects.filter(pk=run.pk).update(status="failed", finished_at=timezone.now(), error="boom")
    page = as_user.get(run_url(run.pk)).content.decode()
    assert "Training curves" not in page and "No curve yet" not in page


def test_another_clients_run_curves_are_404(client, client_recipe):
    run = running(client_recipe.member, recipe=client_recipe.recipe)
    log_points(run, range(5))
    client.force_login(client_recipe.outsider)
    for suffix in ("/live", "/curves"):
        assert client.get(run_url(run.pk, suffix), **HTMX).status_code == 404, suffix
        assert client.get(run_url(run.pk, suffix)).status_code == 404, suffix
    client.force_login(client_recipe.member)
    assert client.get(run_url(run.pk, "/curves"), **HTMX).status_code == 200


def test_the_curves_fragment_is_no_page_of_its_own(as_user, client, baselines, user):
    run = running(user)
    response = as_user.get(run_url(run.pk, "/curves"))
    assert response.status_code == 302 and response["Location"] == run_url(run.pk)
    client.logout()
    anonymous = client.get(run_url(run.pk, "/curves"), **HTMX)
    assert anonymous.status_code == 302 and "/accounts/login/" in anonymous["Location"]


@pytest.mark.parametrize("run_type", ["score", "tune"])
def test_runs_that_log_no_curve_have_no_running_card(as_user, baselines, user, run_type):
    run = running(user)
    Run.objects.filter(pk=run.pk).update(run_type=run_type)
    card = live_curves(as_user.get(run_url(run.pk)).content.decode())
    assert "Training curves" not in card and "hx-get" not in card
    answer = as_user.get(run_url(run.pk, "/curves"), {"points": "0"}, **HTMX)
    assert answer.status_code == 200 and "hx-get" not in answer.content.decode()
