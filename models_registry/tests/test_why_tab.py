"""The model page's Why tab, "Explain this prediction" and the comparison page's explanations.

Most tests give the page an explanations document of the contract's shape
(test_explain_charts.document) through ``selectors.model_explanations``; the last ones train a
real model in-process and explain it end to end (the explain stage, the document, the same
``runs.artifacts.explain_rows`` the predict API calls)."""

from __future__ import annotations

import re

import pytest

from models_registry import explain_charts, selectors
from models_registry import views as model_views
from models_registry.forms import ExplainForm
from models_registry.models import MLModel
from models_registry.tests.test_explain_charts import FAMILIES, document
from monitoring.models import Comparison
from runs import artifacts
from runs.tests.factories import register, trained_model

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}
RECIPES = {
    "pricing": "recipe_pricing_base",
    "next_best_action": "recipe_nba_base",
    "location_scoring": "recipe_location_base",
    "forecasting": "recipe_forecasting_base",
}
PRICING_COLUMNS = [
    {"name": "product_id", "dtype": "string"},
    {"name": "store_id", "dtype": "string"},
    {"name": "week", "dtype": "datetime"},
    {"name": "segment", "dtype": "string"},
    {"name": "price", "dtype": "float"},
    {"name": "regular_price", "dtype": "float"},
    {"name": "unit_cost", "dtype": "float"},
    {"name": "promo", "dtype": "int"},
]
ROW = {
    "row-product_id": "P0001",
    "row-store_id": "S01",
    "row-week": "2022-01-03",
    "row-segment": "grocery",
    "row-price": "24.42",
    "row-regular_price": "24.42",
    "row-unit_cost": "11.17",
    "row-promo": "0",
}
ITEM = {
    "method": "exact_shapley",
    "scale": "prediction",
    "output": 20.5,
    "base_value": 23.0,
    "contributions": {"price": -3.5, "promo": 1.0, "segment": 0.0},
    "reasons": ["price 12% above regular: −3.5 units", "no promotion: +1.0 units"],
    "elasticity": -1.4,
    "demand_curve": {"price": [20.0, 24.42, 28.0], "units": [26.0, 20.5, 17.0]},
}


def url(model_id: str, suffix: str = "") -> str:
    return f"/model-development/models/{model_id}{suffix}"


def trained_looking(model: MLModel) -> MLModel:
    """A model whose page believes it has a trained artifact (the files themselves are the
    real-model tests' job)."""
    MLModel.objects.filter(pk=model.pk).update(artifacts_json={"model": ["model/model.json"], "files": {}})
    model.refresh_from_db()
    return model


@pytest.fixture
def explained(monkeypatch):
    """Every model has the document of its family; the pricing schema's columns."""

    def fake(model):
        return document(model.recipe.model_family)

    monkeypatch.setattr(selectors, "model_explanations", fake)
    monkeypatch.setattr(model_views, "_input_columns", lambda model: PRICING_COLUMNS)


@pytest.mark.parametrize("family", FAMILIES)
def test_why_tab_renders_each_familys_views(as_user, baselines, user, explained, family):
    model = trained_looking(register(user, RECIPES[family], name=f"{family} model"))
    body = as_user.get(url(model.pk), {"tab": "why"}).content.decode()
    assert 'aria-selected="true"' in body and ">Why</a>" in body
    assert "TreeSHAP (exact)" in body and "TreeSHAP from LightGBM" in body  # method and its note
    assert re.search(r'id="why-base-value">12\.5000', body)
    for key in ("importance", "shares", "interaction"):
        assert f'data-chart="{key}"' in body
    keys = {
        "pricing": ["pricing-demand", "pricing-revenue", "pricing-drivers"],
        "next_best_action": ["nba-uplift", "nba-qini", "nba-drivers"],
        "location_scoring": ["location-waterfall"],
        "forecasting": ["forecast-regressors"],
    }[family]
    for key in keys:
        assert f'data-chart="{key}"' in body
    assert body.count('class="muted small chart-caption"') >= 5 + len(keys)
    assert 'id="explain-form"' in body
    if family == "forecasting":
        assert 'id="why-family-note"' in body and "no exact trend/seasonality" in body


def test_why_tab_query_count(as_user, baselines, user, explained, django_assert_max_num_queries):
    model = trained_looking(register(user))
    # The header's reads (session, user, model, production models, open alerts) and the explain
    # form's sample row (the synthetic example); the document is a file, not a query.
    with django_assert_max_num_queries(8):
        assert as_user.get(url(model.pk), {"tab": "why"}).status_code == 200


def test_why_tab_is_an_htmx_fragment(as_user, baselines, user, explained):
    model = trained_looking(register(user))
    fragment = as_user.get(url(model.pk), {"tab": "why"}, **HTMX)
    assert fragment.status_code == 200
    assert b"<html" not in fragment.content and b'data-chart="importance"' in fragment.content


def test_explain_form_starts_from_the_synthetic_example(as_user, baselines, user, explained):
    body = as_user.get(url(trained_looking(register(user)).pk), {"tab": "why"}).content.decode()
    assert 'name="row-price" value="24.42"' in body
    assert 'name="row-week" value="2022-01-03"' in body  # the date, not its midnight time


def test_location_site_picker_shows_the_site_and_its_comparables(as_user, baselines, user, explained):
    model = trained_looking(register(user, RECIPES["location_scoring"]))
    body = as_user.get(url(model.pk), {"tab": "why", "site": "S003"}).content.decode()
    assert '<option value="S003" selected>' in body
    assert "Site S003 against the average site" in body
    table = body[body.index('id="comparable-sites"') :]
    assert "Sites comparable to S003" in table and "S004" in table and "140.000" in table
    # An unknown site shows the first one.
    body = as_user.get(url(model.pk), {"tab": "why", "site": "nope"}).content.decode()
    assert '<option value="S000" selected>' in body


def test_empty_state_for_a_model_trained_before_explanations(as_user, baselines, user, monkeypatch):
    monkeypatch.setattr(selectors, "model_explanations", lambda model: None)
    model = trained_looking(register(user))
    body = as_user.get(url(model.pk), {"tab": "why"}).content.decode()
    assert "This model was trained before explanations existed: retrain it to get them." in body
    assert 'id="explain-form"' not in body and "data-chart" not in body
    untrained = register(user, name="Untrained")
    body = as_user.get(url(untrained.pk), {"tab": "why"}).content.decode()
    assert "not trained yet" in body and "Start a train run" in body


def test_explain_post_shows_prediction_waterfall_and_reasons(
    as_user, baselines, user, explained, monkeypatch
):
    model = trained_looking(register(user))
    seen = []
    monkeypatch.setattr(artifacts, "explain_rows", lambda m, rows: seen.append(rows) or [ITEM])
    monkeypatch.setattr(artifacts, "predict_rows", lambda m, rows: [20.5])
    r = as_user.post(url(model.pk, "/explain"), ROW, **HTMX)
    assert r.status_code == 200
    body = r.content.decode()
    assert body.lstrip().startswith('<div id="explain-box">')  # only the box is swapped
    # The row the API would get: typed as the schema says, the date as ISO text.
    assert seen == [
        [
            {
                "product_id": "P0001",
                "store_id": "S01",
                "week": "2022-01-03",
                "segment": "grocery",
                "price": 24.42,
                "regular_price": 24.42,
                "unit_cost": 11.17,
                "promo": 0,
            }
        ]
    ]
    assert 'id="explain-prediction"><strong>20.5</strong>' in body
    assert "price 12% above regular: −3.5 units" in body
    assert 'data-chart="prediction-waterfall"' in body and 'data-chart="prediction-demand"' in body
    assert 'name="row-price" value="24.42"' in body  # the form keeps what was sent
    # Without HTMX: the whole page, on the Why tab, with the result.
    page = as_user.post(url(model.pk, "/explain"), ROW).content.decode()
    assert "<html" in page and 'id="explain-reasons"' in page and 'data-chart="importance"' in page


def test_explain_post_bad_field_is_a_400_naming_it(as_user, baselines, user, explained, monkeypatch):
    model = trained_looking(register(user))
    monkeypatch.setattr(artifacts, "explain_rows", lambda m, rows: pytest.fail("bad input reached the model"))
    for field, value, message in (
        ("row-price", "cheap", "Enter a number."),
        ("row-promo", "0.5", "Enter a whole number."),
        ("row-week", "next week", "Enter a date like 2026-01-05"),
        ("row-segment", "", "This field is required."),
    ):
        r = as_user.post(url(model.pk, "/explain"), {**ROW, field: value}, **HTMX)
        assert r.status_code == 400, field
        body = r.content.decode()
        box = body[body.index(f'name="{field}"') :]
        assert message in box[: box.index("</div>")], field  # the error sits under its field
        assert 'id="explain-result"' not in body


def test_explain_post_error_from_the_model_lands_on_its_field(
    as_user, baselines, user, explained, monkeypatch
):
    from mlworkspace.errors import InvalidInput  # noqa: PLC0415 - only this test raises it

    model = trained_looking(register(user))

    def refuse(m, rows):
        raise InvalidInput("/rows/0/week: not a date", [{"path": "/rows/0/week", "message": "not a date"}])

    monkeypatch.setattr(artifacts, "explain_rows", refuse)
    r = as_user.post(url(model.pk, "/explain"), ROW, **HTMX)
    assert r.status_code == 400
    body = r.content.decode()
    box = body[body.index('name="row-week"') :]
    assert "not a date" in box[: box.index("</div>")]


def test_explain_post_without_explanations_is_a_404_saying_why(as_user, baselines, user, monkeypatch):
    monkeypatch.setattr(selectors, "model_explanations", lambda model: None)
    model = trained_looking(register(user))
    r = as_user.post(url(model.pk, "/explain"), ROW)
    assert r.status_code == 404
    assert "trained before explanations existed" in r.content.decode()


def test_explain_post_of_another_clients_model_is_404(client, client_recipe, explained, monkeypatch):
    from models_registry.services import model_register  # noqa: PLC0415 - the client's model only here

    monkeypatch.setattr(artifacts, "explain_rows", lambda m, rows: pytest.fail("outsider reached the model"))
    model = trained_looking(
        model_register(
            user=client_recipe.member,
            name="Private",
            recipe=client_recipe.recipe,
            recipe_version=client_recipe.version,
        )
    )
    client.force_login(client_recipe.outsider)
    assert client.post(url(model.pk, "/explain"), ROW).status_code == 404
    assert client.get(url(model.pk), {"tab": "why"}).status_code == 404
    client.force_login(client_recipe.member)
    assert client.get(url(model.pk), {"tab": "why"}).status_code == 200


def test_explain_post_needs_login_and_post(client, as_user, baselines, user, explained):
    model = trained_looking(register(user))
    client.logout()
    r = client.post(url(model.pk, "/explain"), ROW)
    assert r.status_code == 302 and "/accounts/login/" in r["Location"]
    client.force_login(user)
    assert client.get(url(model.pk, "/explain")).status_code == 405


def test_comparison_page_shows_both_models_importance(as_user, baselines, user, monkeypatch):
    a = trained_looking(register(user, name="Champion"))
    b = trained_looking(register(user, name="Old challenger"))
    monkeypatch.setattr(selectors, "model_explanations", lambda m: document() if m.pk == a.pk else None)
    comparison = Comparison.objects.create(
        id="cmp_why",
        recipe=a.recipe,
        reference=a,
        model_ids_json=[a.pk, b.pk],
        result_json={
            "models": [
                {"id": a.pk, "name": a.name, "status": "production", "metrics": {}},
                {"id": b.pk, "name": b.name, "status": "staging", "metrics": {}},
            ]
        },
        created_at=a.created_at,
    )
    body = as_user.get(f"/model-development/comparisons/{comparison.pk}").content.decode()
    section = body[body.index('id="comparison-explanations"') :]
    assert "TreeSHAP (exact)" in section and "demand_mape" in section
    assert "none: trained before explanations existed" in section
    assert section.count("chart-caption") == 2  # permutation importance and shares
    assert "Champion" in section and "price, promo, regular_price" in section


@pytest.mark.parametrize(
    "question, section",
    [
        ("How do I read the partial dependence plot?", "The thick line (PD)"),
        ("What does explain.rank_change mean?", "mean absolute change in the features' rank positions"),
        ("How do I read the waterfall of a prediction?", "starts at the base value"),
        ("How do I read the per-series decomposition?", "base value plus the bars of a period"),
        ("How do I read batch contributions?", "sum of its contrib_ columns"),
    ],
)
def test_the_assistant_cites_the_explanations_article(api_client, question, section):
    r = api_client.post("/api/ml-development/chat", {"message": question}, format="json")
    data = r.json()
    assert [s["id"] for s in data["sources"]] == ["explanations"]
    assert section in data["reply"] and 'knowledge base entry "explanations"' in data["reply"]


# --------------------------------------------------------------------------- real models
# One per family: each trains in-process (a few seconds) with the baseline's explain stage.


@pytest.mark.parametrize(
    "recipe_id, rows",
    [
        ("recipe_pricing_base", 3000),
        ("recipe_location_base", 1000),
        ("recipe_nba_base", 2000),
        ("recipe_forecasting_base", 2000),
    ],
)
def test_a_trained_model_is_explained_end_to_end(as_user, baselines, user, recipe_id, rows):
    model = trained_model(user, recipe_id, rows=rows)
    doc = selectors.model_explanations(model)
    assert doc is not None, "the baseline's train run wrote no explanations"
    body = as_user.get(url(model.pk), {"tab": "why"}).content.decode()
    assert 'data-chart="importance"' in body and 'id="explain-form"' in body
    family_view = {
        "recipe_pricing_base": "pricing-demand",
        "recipe_location_base": "location-waterfall",
        "recipe_nba_base": "nba-qini",
        "recipe_forecasting_base": "forecast-regressors",
    }[recipe_id]
    assert f'data-chart="{family_view}"' in body
    # The form is prefilled with a row the model takes: posting it as is explains it.
    fields = dict(re.findall(r'name="(row-[^"]+)"[^>]*?value="([^"]*)"', body))
    assert fields, "the explain form has no prefilled field"
    r = as_user.post(url(model.pk, "/explain"), fields, **HTMX)
    assert r.status_code == 200, r.content.decode()[:2000]
    result = r.content.decode()
    assert 'id="explain-reasons"' in result and 'data-chart="prediction-waterfall"' in result
    form = ExplainForm(fields, columns=model_views._input_columns(model))
    assert form.is_valid(), form.errors
    item = artifacts.explain_rows(model, [form.row()])[0]
    assert item["reasons"][0] in result.replace("&#x27;", "'")
    if recipe_id == "recipe_forecasting_base":
        # the per-series decomposition: a series picker, and the picked series' chart
        series = explain_charts.forecast_series(doc)
        assert series and 'id="why-series"' in body and 'id="why-decomposition-method"' in body
        assert 'data-chart="forecast-series-decomposition"' in body
        picked = as_user.get(url(model.pk), {"tab": "why", "series": series[-1]}, **HTMX).content.decode()
        assert f'<option value="{series[-1]}" selected>' in picked
        assert f"Series {series[-1]}: forecast decomposition" in picked
