"""The library page (/model-development/): tabs Recipes · Models · Runs · Monitoring, each a
list of one app's objects with filters, search, sort and paging.

The one page that composes every app: each tab reads through its app's selectors
(recipes.selectors, models_registry.selectors, runs.selectors, monitoring.selectors) and
filters with its app's filterset; the rows render with the app's own table partial."""

from __future__ import annotations

import math
from collections.abc import Callable

from django.contrib.auth.decorators import login_required
from django.db.models import Case, F, IntegerField, Value, When
from django.db.models.functions import Coalesce
from django.http import HttpRequest, HttpResponse

from mlworkspace.views import (
    active_filters,
    filter_controls,
    is_fragment,
    paginate,
    render_page,
    sort_columns,
)
from models_registry import perms as model_perms
from models_registry import selectors as model_selectors
from models_registry.filters import MLModelFilter
from monitoring import selectors as monitoring_selectors
from monitoring.health import snapshot_health
from recipes import catalog
from recipes import selectors as recipe_selectors
from recipes.filters import RecipeFilter
from runs import perms as run_perms
from runs import selectors as run_selectors
from runs.filters import RunFilter
from runs.models import RunType

TABS = [("recipes", "Recipes"), ("models", "Models"), ("runs", "Runs"), ("monitoring", "Monitoring")]


def _filtered(filter_class, request: HttpRequest, base):
    """The filterset of the request's query and its queryset (all of `base` when the query
    does not validate)."""
    filterset = filter_class(request.GET or None, queryset=base)
    return filterset, filterset.qs if filterset.is_bound and filterset.is_valid() else base


# --------------------------------------------------------------------------- recipes

LEVEL_RANK = Case(
    When(level="baseline", then=Value(0)),
    When(level="industry", then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)
# Tree order (baseline, then its industry recipes each followed by their clients) computed in
# SQL from the parent and grandparent columns, so it pages like any other ordering.
LINEAGE_ORDER = [
    Coalesce(F("parent__parent__created_at"), F("parent__created_at"), F("created_at")).asc(),
    Coalesce(F("parent__parent_id"), F("parent_id"), F("id")).asc(),
    Case(
        When(level="baseline", then=Value(None)),
        When(level="industry", then=F("created_at")),
        default=F("parent__created_at"),
    ).asc(nulls_first=True),
    Case(
        When(level="baseline", then=Value("")),
        When(level="industry", then=F("id")),
        default=F("parent_id"),
    ).asc(),
    LEVEL_RANK.asc(),
    F("created_at").asc(),
    F("id").asc(),
]
RECIPE_ORDERINGS = {
    "lineage": LINEAGE_ORDER,
    "name": ["name", "id"],
    "family": ["model_family", "name", "id"],
    "level": [LEVEL_RANK.asc(), "name", "id"],
    "status": ["status", "name", "id"],
    "updated": ["updated_at", "id"],
}
RECIPE_COLUMNS = [
    ("Recipe", "name"),
    ("Family", "family"),
    ("Level", "level"),
    ("Status", "status"),
    ("Version", ""),
    ("Tags", ""),
    ("Owner", ""),
    ("Updated", "updated"),
]


def recipes_tab(request: HttpRequest) -> dict:
    filterset, queryset = _filtered(RecipeFilter, request, recipe_selectors.recipe_list(request.user))
    sort, order, columns = sort_columns(request, RECIPE_COLUMNS, RECIPE_ORDERINGS, "lineage")
    page = paginate(request, queryset.order_by(*order))
    for recipe in page.object_list:
        recipe.depth = catalog.LEVELS.index(recipe.level) if recipe.level in catalog.LEVELS else 0
    return {
        "page": page,
        "columns": columns,
        "sort": sort,
        "tree": sort == "lineage",
        "search": request.GET.get("search", ""),
        "filters": filter_controls(
            filterset, [("model_family", "Family"), ("level", "Level"), ("status", "Status")]
        ),
        "filtered": active_filters(request, ["model_family", "level", "status", "search", "tag"]),
        "results_template": "recipes/_recipes_table.html",
        "noun": "recipe",
    }


# --------------------------------------------------------------------------- models

MODEL_COLUMNS = [
    ("Model", "name"),
    ("Recipe · version", "recipe"),
    ("Family", "family"),
    ("Status", "status"),
    ("Owner", ""),
    ("Training run", ""),
    ("Registered", "created"),
]
MODEL_ORDERINGS = {
    "name": ["name", "id"],
    "recipe": ["recipe__name", "-created_at", "id"],
    "family": ["recipe__model_family", "name", "id"],
    "status": ["status", "name", "id"],
    "created": ["created_at", "id"],
}


def models_tab(request: HttpRequest) -> dict:
    filterset, queryset = _filtered(MLModelFilter, request, model_selectors.model_list(request.user))
    sort, order, columns = sort_columns(request, MODEL_COLUMNS, MODEL_ORDERINGS, "-created")
    return {
        "page": paginate(request, queryset.order_by(*order)),
        "columns": columns,
        "sort": sort,
        "search": request.GET.get("search", ""),
        "filters": filter_controls(
            filterset, [("model_family", "Family"), ("level", "Level"), ("status", "Status")]
        ),
        "filtered": active_filters(request, ["model_family", "level", "status", "search"]),
        "results_template": "models_registry/_models_table.html",
        "noun": "model",
        "can_register": request.user.has_perm(model_perms.ADD_MODEL),
    }


# --------------------------------------------------------------------------- runs

RUN_COLUMNS = [
    ("", ""),
    ("Run", "created"),
    ("Recipe · version", "recipe"),
    ("Type", "type"),
    ("Status", "status"),
    ("Primary metric", ""),
    ("Progress", ""),
    ("Model", ""),
    ("Duration", ""),
]
RUN_ORDERINGS = {
    "created": ["created_at", "id"],
    "recipe": ["recipe__name", "-created_at", "id"],
    "type": ["run_type", "-created_at", "id"],
    "status": ["status", "-created_at", "id"],
}
METRIC_SORT = "metric."  # ?sort=metric.MAPE / -metric.MAPE: order by that metric (runs.search)


def _metric_text(value) -> str:
    if value is None:
        return ""
    if math.isnan(value):
        return "NaN"
    if (value != 0 and abs(value) < 1e-3) or abs(value) >= 1e6:
        return f"{value:.3e}"
    return f"{value:.4f}"


def runs_tab(request: HttpRequest) -> dict:
    """The runs, filtered by the select boxes, the search box and the filter box (runs.search's
    grammar: a mistake is shown next to the box with its column, the other filters still
    apply). With a recipe chosen, its metrics are columns, sortable like the others."""
    base = run_selectors.run_list(request.user)
    if request.GET.get("run_type") != RunType.TRIAL:  # a tune run's trials: on its study page
        base = base.exclude(run_type=RunType.TRIAL)
    recipes = run_selectors.recipes_with_runs(request.user)
    recipe = run_selectors.tab_recipe(request.user, request.GET.get("recipe_id", ""))
    metric_keys = run_selectors.metric_columns(recipe) if recipe else []
    metric_sorts = {f"{METRIC_SORT}{key}": key for key in metric_keys}
    columns = list(RUN_COLUMNS)
    if metric_keys:  # the chosen recipe's metrics replace its primary metric
        columns[5:6] = [(key, sort) for sort, key in metric_sorts.items()]
    sort, order, columns = sort_columns(
        request, columns, {**RUN_ORDERINGS, **dict.fromkeys(metric_sorts, [])}, "-created"
    )
    data = request.GET.copy()
    data.pop("order_by", None)  # the tab orders by its columns (`sort`)
    sorted_by = metric_sorts.get(sort.lstrip("-"))
    if sorted_by:
        data.setlist("order_by", [f"metrics.`{sorted_by}`{' DESC' if sort.startswith('-') else ''}"])
    filterset = RunFilter(data, queryset=base)
    filter_error = ""
    if not filterset.is_valid():
        filter_error = " ".join(filterset.errors.get("filter", []))
        data.pop("filter", None)  # still apply everything else
        filterset = RunFilter(data, queryset=base)
    queryset = filterset.qs if filterset.is_valid() else base
    if not sorted_by:
        queryset = queryset.order_by(*order)
    page = paginate(request, queryset)
    if metric_keys:
        cells = run_selectors.metric_cells(page.object_list, metric_keys)
        for run in page.object_list:
            run.metric_cells = [_metric_text(v) for v in cells[run.pk]]
    return {
        "page": page,
        "columns": columns,
        "sort": sort,
        "search": request.GET.get("search", ""),
        "run_filter": request.GET.get("filter", ""),
        "filter_error": filter_error,
        "recipes": recipes,
        "recipe_id": recipe.pk if recipe else "",
        "metric_keys": metric_keys,
        "filters": filter_controls(
            filterset,
            [
                ("model_family", "Family"),
                ("level", "Level"),
                ("status", "Status"),
                ("outcome", "Outcome"),
                ("run_type", "Type"),
            ],
        ),
        "filtered": active_filters(
            request,
            ["model_family", "level", "status", "outcome", "run_type", "search", "filter", "recipe_id"],
        ),
        "results_template": "runs/_runs_table.html",
        "noun": "run",
        "can_run": request.user.has_perm(run_perms.ADD_RUN),
    }


# --------------------------------------------------------------------------- monitoring

MONITORING_COLUMNS = [
    ("Model", "name"),
    ("Recipe · version", "recipe"),
    ("Family", "family"),
    ("Health", ""),
    ("Last check", "last_check"),
    ("Open alerts", ""),
    ("Why", ""),
]
MONITORING_ORDERINGS = {
    "name": ["name", "id"],
    "recipe": ["recipe__name", "name", "id"],
    "family": ["recipe__model_family", "name", "id"],
    "last_check": ["last_check_at", "id"],
}


def monitoring_tab(request: HttpRequest) -> dict:
    """Every production model with its health, last check and open alerts (constant queries:
    the page, its latest snapshots, its open-alert counts)."""
    base = monitoring_selectors.production_models(request.user)
    filterset, queryset = _filtered(MLModelFilter, request, base)
    sort, order, columns = sort_columns(request, MONITORING_COLUMNS, MONITORING_ORDERINGS, "name")
    page = paginate(request, queryset.order_by(*order))
    models = list(page.object_list)
    snapshots = monitoring_selectors.latest_snapshots(models)
    open_alerts = monitoring_selectors.open_alert_counts(m.pk for m in models)
    for m in models:
        m.latest_snapshot = snapshots.get(m.pk)
        m.health = snapshot_health(m.latest_snapshot, m.recipe_version.manifest, m.recipe.model_family)
        m.open_alerts = open_alerts.get(m.pk, {})
        m.open_alert_count = sum(m.open_alerts.values())
    return {
        "page": page,
        "rows": models,
        "columns": columns,
        "sort": sort,
        "search": request.GET.get("search", ""),
        "filters": filter_controls(filterset, [("model_family", "Family"), ("level", "Level")]),
        "filtered": active_filters(request, ["model_family", "level", "search"]),
        "results_template": "monitoring/_monitoring_table.html",
        "noun": "production model",
    }


# --------------------------------------------------------------------------- the page

TAB_BUILDERS: dict[str, Callable[[HttpRequest], dict]] = {
    "recipes": recipes_tab,
    "models": models_tab,
    "runs": runs_tab,
    "monitoring": monitoring_tab,
}


@login_required
def library(request: HttpRequest) -> HttpResponse:
    """The library: tabs Recipes · Models · Runs · Monitoring, each with filters, sort, paging.

    HTMX: a tab link swaps #library (the whole tab); the filter form, sort headers and pager
    swap only #results, so the search box keeps its focus while typing."""
    tab = request.GET.get("tab", "recipes")
    if tab not in TAB_BUILDERS:
        tab = "recipes"
    context = {"nav": "library", "tab": tab, "tabs": TABS, **TAB_BUILDERS[tab](request)}
    partial = "results" if is_fragment(request) and request.htmx.target == "results" else "library"
    return render_page(request, "workspace/library.html", context, partial=partial)
