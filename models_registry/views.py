"""HTML pages of registered models: the library's Models tab, registering, a model's page."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST

from mlworkspace.errors import DomainError
from mlworkspace.forms import add_domain_errors
from mlworkspace.views import (
    active_filters,
    filter_controls,
    metric_rows,
    paginate,
    render_page,
    require_perm,
    sort_columns,
)
from recipes import access
from recipes.models import RecipeVersion
from runs.metrics import metric_checks
from runs.models import Run

from . import services
from .filters import MLModelFilter
from .forms import RegisterForm
from .models import TRANSITIONS, MLModel, ModelStatus


def _get_model_for_user(user, model_id: str) -> MLModel:
    """One model with what its page shows: the version's manifest (metric targets, alert rules
    and monitoring charts) but not the training run's plot data."""
    return get_object_or_404(
        MLModel.objects.visible_to(user)
        .select_related("recipe", "recipe_version", "training_run", "created_by")
        .defer("training_run__plots_json", "training_run__metric_checks_json", "training_run__stages_json"),
        pk=model_id,
    )


# --------------------------------------------------------------------------- library tab


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
    base = (
        MLModel.objects.visible_to(request.user)
        .for_list()
        .defer("recipe_version__manifest", "training_run__plots_json")
    )
    filterset = MLModelFilter(request.GET or None, queryset=base)
    queryset = filterset.qs if filterset.is_bound and filterset.is_valid() else base
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
        "can_register": request.user.has_perm("models_registry.add_mlmodel"),
    }


# --------------------------------------------------------------------------- register


@login_required
@require_http_methods(["GET", "POST"])
def model_register(request: HttpRequest) -> HttpResponse:
    """Register a model on an approved recipe version (?recipe= preselects the recipe)."""
    data = request.POST if request.method == "POST" else None
    recipe_id = (data or request.GET).get("recipe") or None
    initial = {k: v for k, v in request.GET.items() if k in ("recipe", "recipe_version", "name", "owner")}
    if recipe_id and "recipe_version" not in initial:
        newest = (
            RecipeVersion.objects.filter(recipe_id=recipe_id, approved_at__isnull=False)
            .order_by("-created_at")
            .values_list("pk", flat=True)
            .first()
        )
        initial["recipe_version"] = newest
    form = RegisterForm(data, recipe_id=recipe_id, initial=initial, user=request.user)
    status = 200
    if request.method == "POST":
        if not access.has_write_role_somewhere(request.user):
            require_perm(request, "models_registry.add_mlmodel", "register models")
        if form.is_valid():
            v = form.cleaned_data
            require_perm(request, "models_registry.add_mlmodel", "register models", obj=v["recipe"])
            try:
                model = services.model_register(
                    user=request.user,
                    name=v["name"],
                    recipe=v["recipe"],
                    recipe_version=v["recipe_version"],
                    owner=v["owner"],
                    description=v["description"],
                )
            except DomainError as exc:
                add_domain_errors(form, exc, {"recipe_version_id": "recipe_version", "recipe_id": "recipe"})
            else:
                messages.success(
                    request,
                    f"Registered “{model.name}”. Start a train run to give it an artifact, then promote it.",
                )
                return redirect("pages:model", model_id=model.pk)
        status = 400
    context = {
        "nav": "library",
        "form": form,
        "can_register": request.user.has_perm("models_registry.add_mlmodel"),
        "recipe_id": recipe_id,
    }
    return render_page(request, "models_registry/register.html", context, partial="form", status=status)


# --------------------------------------------------------------------------- model detail

MODEL_TABS = [("summary", "Summary"), ("monitoring", "Monitoring"), ("history", "History")]
MOVE_LABELS = {
    (ModelStatus.REGISTERED, ModelStatus.STAGING): "Promote to staging",
    (ModelStatus.STAGING, ModelStatus.PRODUCTION): "Promote to production",
    (ModelStatus.STAGING, ModelStatus.REGISTERED): "Back to registered",
    (ModelStatus.PRODUCTION, ModelStatus.STAGING): "Demote to staging",
}
MOVE_ORDER = [ModelStatus.STAGING, ModelStatus.PRODUCTION, ModelStatus.REGISTERED, ModelStatus.ARCHIVED]


def legal_moves(model: MLModel, in_production: list[MLModel] | None = None) -> list[dict]:
    """The lifecycle moves allowed from the model's status (models.TRANSITIONS), in button
    order. ``in_production``: the recipe's other production models — what a promotion
    replaces, named in its confirmation. Moves that take a model out of service (archive,
    demote) or replace one (promote to production) carry a ``confirm`` question."""
    in_production = in_production or []
    moves = []
    for target in MOVE_ORDER:
        if target in TRANSITIONS[ModelStatus(model.status)]:
            moves.append(
                {
                    "status": target,
                    "label": MOVE_LABELS.get((model.status, target), "Archive"),
                    # Destructive: quiet (outlined) and confirmed (data-confirm in the template).
                    "style": "danger-outline"
                    if target == ModelStatus.ARCHIVED
                    else "primary"
                    if target == ModelStatus.PRODUCTION
                    else "",
                    "needs_artifact": target == ModelStatus.PRODUCTION and not model.artifacts_json,
                    "confirm": _move_question(model, target, in_production),
                }
            )
    return moves


def _move_question(model: MLModel, target: str, in_production: list[MLModel]) -> str:
    """What the browser asks before a move ("" for the harmless ones)."""
    others = ", ".join(f"“{m.name}”" for m in in_production)
    if target == ModelStatus.PRODUCTION:
        if not in_production:
            return (
                f"Promote “{model.name}” to production? No other model of “{model.recipe.name}” "
                "is in production, so it replaces none; scheduled monitoring checks start."
            )
        return (
            f"Promote “{model.name}” to production? It replaces {others}, which "
            f"{'moves' if len(in_production) == 1 else 'move'} to staging "
            "(unless you ticked “keep … in production too”)."
        )
    if target == ModelStatus.ARCHIVED:
        return f"Archive “{model.name}”? Archived models cannot come back."
    if model.status == ModelStatus.PRODUCTION and target == ModelStatus.STAGING:
        after = (
            f"{others} stays in production."
            if in_production
            else f"“{model.recipe.name}” will have no model in production."
        )
        return f"Demote “{model.name}” to staging? Its scheduled checks stop. {after}"
    return ""


def header_context(request: HttpRequest, model: MLModel) -> dict:
    """What the model page's header shows on every tab (also when a Run check re-renders it)."""
    in_production = list(
        MLModel.objects.filter(recipe_id=model.recipe_id, status=ModelStatus.PRODUCTION)
        .exclude(pk=model.pk)
        .only("id", "name")
        .order_by("name", "id")
    )
    return {
        "nav": "library",
        "model": model,
        "tabs": MODEL_TABS,
        "moves": legal_moves(model, in_production),
        "other_production": in_production,
        "can_change": request.user.has_perm("models_registry.change_mlmodel"),
        "can_run": request.user.has_perm("runs.add_run"),
        "open_alerts": model.alerts.filter(state="firing").count(),
    }


def _metric_rows(model: MLModel) -> list[dict]:
    checks = metric_checks(model.recipe_version.manifest, model.recipe.model_family, model.metrics_json or {})
    return metric_rows(model.metrics_json, checks)


@login_required
def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    """Summary (lifecycle, training run, metrics) · Monitoring (charts, alerts, run a check)."""
    from monitoring.views import monitoring_context

    model = _get_model_for_user(request.user, model_id)
    tab = request.GET.get("tab", "summary")
    if tab not in dict(MODEL_TABS):
        tab = "summary"
    context = {**header_context(request, model), "tab": tab}
    if tab == "summary":
        context["metric_rows"] = _metric_rows(model)
        context["recent_runs"] = list(
            Run.objects.filter(model=model)
            .select_related("recipe_version", "recipe")
            .defer(
                "plots_json",
                "artifacts_json",
                "metric_checks_json",
                "stages_json",
                "recipe_version__manifest",
            )
            .order_by("-created_at")[:10]
        )
        context["artifact_files"] = sorted(((model.artifacts_json or {}).get("files") or {}).items())
    elif tab == "monitoring":
        context.update(monitoring_context(request, model))
    return render_page(request, "models_registry/model_detail.html", context, partial="tab")


@login_required
@require_POST
def model_status(request: HttpRequest, model_id: str) -> HttpResponse:
    """Promote / demote / archive: only the legal moves are offered; the service decides."""
    model = _get_model_for_user(request.user, model_id)
    require_perm(request, "models_registry.change_mlmodel", "change a model's status", obj=model)
    target = request.POST.get("status", "")
    keep = request.POST.get("keep_other_production") == "on"
    try:
        result = services.model_set_status(
            model=model, user=request.user, status=target, keep_other_production=keep
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        text = f"“{model.name}” is now {result['model'].get_status_display().lower()}."
        if result["replaced"]:
            names = dict(MLModel.objects.filter(pk__in=result["replaced"]).values_list("id", "name"))
            text += " Moved to staging: " + ", ".join(names.get(i, i) for i in result["replaced"]) + "."
        messages.success(request, text)
    back = "?tab=monitoring" if request.POST.get("tab") == "monitoring" else ""
    return redirect(reverse("pages:model", args=[model.pk]) + back)
