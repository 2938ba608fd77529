"""The model comparison page: two or more models of one recipe on the same labelled window
(monitoring.services.models_compare), with their explanations' global importance side by side,
and the model page's "Compare" form that makes one."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from mlworkspace.errors import DomainError
from mlworkspace.views import require_perm
from monitoring import perms as monitoring_perms
from monitoring import services as monitoring_services
from monitoring.models import Comparison
from runs import plots

from . import explain_charts, selectors
from .models import MLModel
from .views import _get_model_for_user


def _metric_rows(result: dict) -> list[dict]:
    """One row per metric: each model's value with its interval and status, and each
    challenger's difference from the reference with its interval."""
    models = result.get("models") or []
    if not models:
        return []
    reference = models[0]["id"]
    names = list(dict.fromkeys(name for row in models for name in row["metrics"]))
    rows = []
    for name in names:
        cells = [row["metrics"].get(name) or {} for row in models]
        differences = [
            ((result.get("difference") or {}).get(row["id"]) or {}).get(name) for row in models[1:]
        ]
        rows.append(
            {
                "name": name,
                "primary": name == result.get("metric"),
                "cells": cells,
                "differences": differences,
                "reference": reference,
            }
        )
    return rows


def _explanations(user, rows: list[dict]) -> list[dict]:
    """Each compared model's explanations document (None: it has none, or it could not be read)
    with its method, in the comparison's order."""
    models = MLModel.objects.visible_to(user).select_related("recipe").in_bulk([row["id"] for row in rows])
    out = []
    for row in rows:
        document, error = None, ""
        if row["id"] in models:
            try:
                document = selectors.model_explanations(models[row["id"]])
            except DomainError as exc:  # the store did not answer: the page shows the rest
                error = exc.detail
        out.append(
            {
                "name": row["name"],
                "id": row["id"],
                "document": document,
                "method": explain_charts.method_label(document.get("method")) if document else "",
                "error": error,
            }
        )
    return out


@login_required
def comparison_detail(request: HttpRequest, comparison_id: str) -> HttpResponse:
    """Metrics with intervals side by side, differences from the reference, verdicts, each
    model's input drift, the family's plots of every model overlaid, and what each model relies
    on (its explanations' global importance)."""
    comparison = get_object_or_404(
        Comparison.objects.visible_to(request.user).select_related("recipe", "reference", "retrain"),
        pk=comparison_id,
    )
    result = comparison.result_json or {}
    rows = result.get("models") or []
    plot_data = result.get("plots") or {}
    figures = plots.compare_figures(
        comparison.recipe.model_family, [(row["name"], plot_data.get(row["id"])) for row in rows]
    )
    explained = _explanations(request.user, rows)
    importance = explain_charts.comparison_charts([(e["name"], e["document"]) for e in explained])
    context = {
        "nav": "library",
        "comparison": comparison,
        "explained": explained,
        "importance_charts": [
            {"html": plots.figure_html(c.figure), "caption": c.caption} for c in importance
        ],
        "result": result,
        "models": rows,
        "challengers": rows[1:],
        "metric_rows": _metric_rows(result),
        "verdicts": [(row, (result.get("verdicts") or {}).get(row["id"]) or {}) for row in rows[1:]],
        "charts": [plots.figure_html(f) for f in figures],
    }
    return render(request, "models_registry/comparison.html", context)


@login_required
@require_POST
def model_compare(request: HttpRequest, model_id: str) -> HttpResponse:
    """Compare this model with the models ticked on its page, on its newest labelled batch."""
    model = _get_model_for_user(request.user, model_id)
    require_perm(request, monitoring_perms.RUN_CHECK, "compare models", obj=model)
    ids = request.POST.getlist("challenger")
    others = {
        m.pk: m
        for m in MLModel.objects.visible_to(request.user)
        .select_related("recipe", "recipe_version")
        .filter(pk__in=ids)
    }
    back = reverse("pages:model", args=[model.pk]) + "?tab=monitoring#retraining"
    if not ids or len(others) < len(set(ids)):
        messages.error(request, "Tick one or more other models of this recipe to compare with.")
        return redirect(back)
    try:
        comparison = monitoring_services.models_compare(
            models=[model, *(others[i] for i in dict.fromkeys(ids))], user=request.user
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect(back)
    return redirect(reverse("pages:comparison", args=[comparison.pk]))
