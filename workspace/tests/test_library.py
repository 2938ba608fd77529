"""The library page (/model-development/): its four tabs — Recipes (a lineage tree), Models,
Runs, Monitoring (health of production models) — with filters, search, sort, paging, HTMX
fragments and a constant number of queries per tab."""

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from models_registry.models import MLModel
from monitoring.models import Alert, AlertState
from monitoring.services import snapshot_record
from recipes.models import Recipe
from recipes.tests.factories import make_recipe
from runs.models import Run
from runs.services import run_start
from runs.tests.factories import register

pytestmark = pytest.mark.django_db

LIBRARY = "/model-development/"
HTMX = {"HTTP_HX_REQUEST": "true"}


def _queries(client, url, params) -> int:
    with CaptureQueriesContext(connection) as ctx:
        assert client.get(url, params).status_code == 200
    return len(ctx.captured_queries)


def queued(user, recipe_id="recipe_location_base", **kwargs) -> Run:
    return run_start(
        user=user,
        recipe=Recipe.objects.get(pk=recipe_id),
        params={"synthetic": {"rows": 3000, "seed": 1}},
        **kwargs,
    )


def production(user, name: str, recipe_id: str = "recipe_pricing_base") -> MLModel:
    """A production model for the tab's tests (the lifecycle itself is tested elsewhere)."""
    model = register(user, recipe_id=recipe_id, name=name)
    # One main production model per recipe (a database constraint); more serve alongside it.
    alongside = MLModel.objects.filter(recipe_id=recipe_id, status="production").exists()
    MLModel.objects.filter(pk=model.pk).update(status="production", serves_alongside=alongside)
    model.refresh_from_db()
    return model


# --------------------------------------------------------------------------- the page and the Recipes tab


@pytest.mark.parametrize("tab", ["recipes", "models", "runs", "monitoring"])
def test_library_tabs_render_empty_with_next_steps(as_user, tab):
    response = as_user.get(LIBRARY, {"tab": tab})
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" in body
    assert 'class="empty"' in body
    assert "Build with Chat" in body


def test_library_lists_baselines_as_a_tree(as_user, baselines, user):
    industry = make_recipe(
        user, family="pricing", level="industry", parent=Recipe.objects.get(pk="recipe_pricing_base")
    )
    client_recipe = make_recipe(user, family="pricing", level="client", parent=industry, name="Acme pricing")
    response = as_user.get(LIBRARY)
    body = response.content.decode()
    assert response.status_code == 200
    for name in ("Forecasting Baseline v1", "Pricing Optimization Baseline v1", "Acme pricing"):
        assert name in body
    rows = [r.id for r in response.context["page"].object_list]
    # Tree order: the pricing baseline, its industry clone, then the client clone.
    assert rows.index("recipe_pricing_base") + 1 == rows.index(industry.id)
    assert rows.index(industry.id) + 1 == rows.index(client_recipe.id)
    assert 'class="lineage depth-2"' in body


def test_library_filters_search_and_sort_like_the_api(as_user, baselines):
    response = as_user.get(LIBRARY, {"tab": "recipes", "model_family": "pricing"})
    assert [r.id for r in response.context["page"].object_list] == ["recipe_pricing_base"]
    response = as_user.get(LIBRARY, {"tab": "recipes", "search": "location"})
    assert [r.id for r in response.context["page"].object_list] == ["recipe_location_base"]
    response = as_user.get(LIBRARY, {"tab": "recipes", "sort": "-name"})
    names = [r.name for r in response.context["page"].object_list]
    assert names == sorted(names, reverse=True)
    response = as_user.get(LIBRARY, {"tab": "recipes", "level": "client"})
    assert "No recipe matches these filters" in response.content.decode()


def test_library_paginates(as_user, user):
    for i in range(30):
        make_recipe(user, family="forecasting", name=f"Recipe {i:02d}")
    first = as_user.get(LIBRARY, {"sort": "name"})
    second = as_user.get(LIBRARY, {"sort": "name", "page": 2})
    assert len(first.context["page"].object_list) == 25
    assert [r.name for r in second.context["page"].object_list] == [f"Recipe {i}" for i in range(25, 30)]
    assert "Page 2 of 2" in second.content.decode()


def test_library_htmx_tab_and_results_fragments(as_user, baselines):
    tab = as_user.get(LIBRARY, {"tab": "models"}, **HTMX, HTTP_HX_TARGET="library")
    assert tab.status_code == 200
    assert b"<html" not in tab.content
    assert b'id="filters"' in tab.content and b'role="tablist"' in tab.content
    results = as_user.get(LIBRARY, {"tab": "recipes", "search": "pricing"}, **HTMX, HTTP_HX_TARGET="results")
    assert b"<html" not in results.content
    assert b'id="filters"' not in results.content  # the search box keeps its focus
    assert b"Pricing Optimization Baseline v1" in results.content
    # A history restore needs the whole page.
    restore = as_user.get(LIBRARY, **HTMX, HTTP_HX_HISTORY_RESTORE_REQUEST="true")
    assert b"<html" in restore.content


def test_recipes_tab_query_count_is_constant(as_user, user, django_assert_max_num_queries):
    base = make_recipe(user, family="pricing", name="Base")
    for i in range(3):
        make_recipe(user, family="pricing", level="industry", parent=base, name=f"Ind {i}", tags=["a", "b"])
    few = _queries(as_user, LIBRARY, {"tab": "recipes"})
    for i in range(30):
        make_recipe(user, family="pricing", level="industry", parent=base, name=f"More {i}", tags=["c"])
    many = _queries(as_user, LIBRARY, {"tab": "recipes"})
    assert few == many
    with django_assert_max_num_queries(10):
        as_user.get(LIBRARY, {"tab": "recipes", "model_family": "pricing", "sort": "-updated", "page": 2})


# --------------------------------------------------------------------------- Models tab


def test_models_tab_lists_and_filters(as_user, baselines, user):
    pricing = register(user, name="Pricing weekly")
    register(user, recipe_id="recipe_nba_base", name="Offer targeting")
    response = as_user.get(LIBRARY, {"tab": "models"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "Pricing weekly" in body and "Offer targeting" in body
    filtered = as_user.get(LIBRARY, {"tab": "models", "model_family": "pricing"})
    assert [m.pk for m in filtered.context["page"].object_list] == [pricing.pk]
    searched = as_user.get(LIBRARY, {"tab": "models", "search": "offer"}, **HTMX, HTTP_HX_TARGET="results")
    assert b"<html" not in searched.content
    assert b"Offer targeting" in searched.content and b"Pricing weekly" not in searched.content
    by_level = as_user.get(LIBRARY, {"tab": "models", "level": "industry"})
    assert "No model matches these filters" in by_level.content.decode()


def test_models_tab_query_count_is_constant(as_user, baselines, user, django_assert_max_num_queries):
    for i in range(3):
        register(user, name=f"m{i}")
    with CaptureQueriesContext(connection) as few:
        as_user.get(LIBRARY, {"tab": "models"})
    for i in range(30):
        register(user, recipe_id="recipe_location_base", name=f"more {i}")
    with CaptureQueriesContext(connection) as many:
        as_user.get(LIBRARY, {"tab": "models"})
    assert len(few.captured_queries) == len(many.captured_queries), "\n".join(
        q["sql"][:200] for q in many.captured_queries
    )
    with django_assert_max_num_queries(8):
        as_user.get(LIBRARY, {"tab": "models", "status": "registered", "sort": "name", "page": 2})


# --------------------------------------------------------------------------- Runs tab


def test_runs_tab_lists_filters_and_pages(as_user, baselines, user):
    location = queued(user)
    queued(user, recipe_id="recipe_pricing_base")
    response = as_user.get(LIBRARY, {"tab": "runs"})
    assert response.status_code == 200
    assert 'name="ids"' in response.content.decode()  # tick runs to compare them
    by_family = as_user.get(LIBRARY, {"tab": "runs", "model_family": "location_scoring"})
    assert [r.pk for r in by_family.context["page"].object_list] == [location.pk]
    by_text = as_user.get(LIBRARY, {"tab": "runs", "search": "pricing"}, **HTMX, HTTP_HX_TARGET="results")
    assert b"<html" not in by_text.content and b"Pricing Optimization" in by_text.content
    none = as_user.get(LIBRARY, {"tab": "runs", "status": "failed"})
    assert "No run matches these filters" in none.content.decode()


def test_runs_tab_query_count_is_constant(as_user, baselines, user, django_assert_max_num_queries):
    model = register(user, recipe_id="recipe_location_base")
    for _ in range(3):
        queued(user, model=model)
    with CaptureQueriesContext(connection) as few:
        as_user.get(LIBRARY, {"tab": "runs"})
    for _ in range(30):
        queued(user, recipe_id="recipe_pricing_base")
    with CaptureQueriesContext(connection) as many:
        as_user.get(LIBRARY, {"tab": "runs"})
    assert len(few.captured_queries) == len(many.captured_queries), "\n".join(
        q["sql"][:200] for q in many.captured_queries
    )
    with django_assert_max_num_queries(8):
        as_user.get(LIBRARY, {"tab": "runs", "status": "queued", "sort": "-status", "page": 2})


# --------------------------------------------------------------------------- Monitoring tab


def test_monitoring_tab_shows_production_models_with_health(as_user, baselines, user):
    healthy = production(user, "Healthy")
    failing = production(user, "Failing", recipe_id="recipe_nba_base")
    register(user, name="Only registered")
    snapshot_record(model=healthy, performance={"demand_mape": 0.2}, source="check")
    snapshot_record(model=failing, performance={"qini_coefficient": -1.0, "uplift@k": -1.0}, source="check")
    response = as_user.get(LIBRARY, {"tab": "monitoring"})
    assert response.status_code == 200
    rows = {m.name: m for m in response.context["rows"]}
    assert set(rows) == {"Healthy", "Failing"}
    assert rows["Healthy"].health["status"] == "ok"
    assert rows["Failing"].health["status"] in ("warning", "critical")
    assert (
        rows["Failing"].open_alert_count
        == Alert.objects.filter(model=failing, state=AlertState.FIRING).count()
        > 0
    )
    body = response.content.decode()
    assert "health-ok" in body and "Only registered" not in body
    fragment = as_user.get(LIBRARY, {"tab": "monitoring", "search": "heal"}, **HTMX, HTTP_HX_TARGET="results")
    assert (
        b"<html" not in fragment.content
        and b"Healthy" in fragment.content
        and b"Failing" not in fragment.content
    )


def test_monitoring_tab_query_count_is_constant(as_user, baselines, user, django_assert_max_num_queries):
    def add(n, start):
        for i in range(n):
            model = production(user, f"m{start + i:02d}")
            snapshot_record(model=model, performance={"demand_mape": 0.5}, source="check")
            snapshot_record(model=model, performance={"demand_mape": 0.2}, source="check")

    add(3, 0)
    with CaptureQueriesContext(connection) as few:
        as_user.get(LIBRARY, {"tab": "monitoring"})
    add(30, 3)
    with CaptureQueriesContext(connection) as many:
        response = as_user.get(LIBRARY, {"tab": "monitoring"})
    assert len(few.captured_queries) == len(many.captured_queries), "\n".join(
        q["sql"][:200] for q in many.captured_queries
    )
    assert all(
        m.latest_snapshot.performance_metrics_json == {"demand_mape": 0.2} for m in response.context["rows"]
    )
    with django_assert_max_num_queries(9):
        as_user.get(LIBRARY, {"tab": "monitoring", "sort": "-last_check", "page": 2})
