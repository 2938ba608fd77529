"""The compare page says which data each run saw and which product each curve is of."""

from __future__ import annotations

import re

import pytest

from recipes.models import Recipe
from runs.models import Run
from runs.services import run_start

pytestmark = pytest.mark.django_db

COMPARE = "/model-development/runs/compare"


def pricing_run(user, rows: int, seed: int, product: str) -> Run:
    run = run_start(
        user=user,
        recipe=Recipe.objects.get(pk="recipe_pricing_base"),
        params={"synthetic": {"rows": rows, "seed": seed}},
    )
    Run.objects.filter(pk=run.pk).update(
        status="succeeded",
        metrics_json={"demand_mape": 0.2},
        plots_json={
            "demand_curve": {
                "product_id": product,
                "segment": "core",
                "price": [1.0, 2.0],
                "units": [9.0, 5.0],
            }
        },
    )
    run.refresh_from_db()
    return run


def test_compare_shows_rows_seed_and_products(as_user, baselines, user):
    a = pricing_run(user, 3000, 1, "P0003")
    b = pricing_run(user, 5000, 7, "P0011")
    response = as_user.get(COMPARE, {"ids": f"{a.pk},{b.pk}"})
    assert response.status_code == 200
    body = response.content.decode()
    data_row = re.search(r'<tr class="compare-data">(.*?)</tr>', body, re.S).group(1)
    assert "3000 rows · seed 1" in data_row and "5000 rows · seed 7" in data_row
    assert "product P0003 (core)" in body and "product P0011 (core)" in body
    assert "different product per run" in body
    assert "data-plotly-figure" in body and "Plotly.newPlot" not in body


def test_compare_without_metrics_still_says_which_data(as_user, baselines, user):
    a = pricing_run(user, 3000, 1, "P1")
    b = pricing_run(user, 3000, 2, "P1")
    Run.objects.filter(pk__in=[a.pk, b.pk]).update(metrics_json={}, plots_json={})
    body = as_user.get(COMPARE, {"ids": f"{a.pk},{b.pk}"}).content.decode()
    assert "None of these runs has metrics yet" in body
    assert "3000 rows · seed 2" in body
    assert "data-plotly-figure" not in body  # nothing to draw: plotly.js is not fetched
