"""HTML pages of registered models: registering, a model's page (Summary, Why with "Explain this
prediction", Monitoring with its Run check, History)."""

from __future__ import annotations

import json

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from experiments import selectors as experiment_selectors
from mlworkspace.errors import DomainError, NotFound
from mlworkspace.forms import add_domain_errors
from mlworkspace.views import (
    is_fragment,
    metric_rows,
    render_page,
    require_perm,
)
from models_registry import perms as model_perms
from monitoring import charts as monitoring_charts
from monitoring import perms as monitoring_perms
from monitoring import selectors as monitoring_selectors
from monitoring import services as monitoring_services
from monitoring.forms import CheckForm
from monitoring.health import firing_rules, snapshot_health
from monitoring.models import AlertState, RetrainTrigger
from recipes import access
from recipes.models import RecipeVersion, SyntheticExample
from runs import artifacts
from runs import perms as run_perms
from runs.metrics import metric_checks
from runs.pipeline import json_safe
from runs.plots import figure_html

from . import explain_charts, selectors, services
from .forms import ExplainForm, RegisterForm
from .models import TRANSITIONS, MLModel, ModelStatus

# The Run check fields model_detail.html places itself; any other field of CheckForm is
# rendered after them.
CHECK_FORM_LAID_OUT = ("source", "rows", "seed", "shift_feature", "shift_k", "dataset")


def _get_model_for_user(user, model_id: str) -> MLModel:
    """One model with what its page shows: the version's manifest (metric targets, alert rules
    and monitoring charts) but not the training run's plot data."""
    return get_object_or_404(
        MLModel.objects.visible_to(user)
        .select_related("recipe", "recipe_version", "training_run", "created_by", "challenger_of")
        .defer("training_run__plots_json", "training_run__metric_checks_json", "training_run__stages_json"),
        pk=model_id,
    )


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
            require_perm(request, model_perms.ADD_MODEL, "register models")
        if form.is_valid():
            v = form.cleaned_data
            require_perm(request, model_perms.ADD_MODEL, "register models", obj=v["recipe"])
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
        "can_register": request.user.has_perm(model_perms.ADD_MODEL),
        "recipe_id": recipe_id,
    }
    return render_page(request, "models_registry/register.html", context, partial="form", status=status)


# --------------------------------------------------------------------------- model detail

MODEL_TABS = [("summary", "Summary"), ("why", "Why"), ("monitoring", "Monitoring"), ("history", "History")]
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


def _header_context(request: HttpRequest, model: MLModel) -> dict:
    """What the model page's header shows on every tab."""
    in_production = selectors.other_production_models(model)
    return {
        "nav": "library",
        "model": model,
        "tabs": MODEL_TABS,
        "moves": legal_moves(model, in_production),
        "other_production": in_production,
        "can_change": request.user.has_perm(model_perms.CHANGE_MODEL),
        "can_run": request.user.has_perm(run_perms.ADD_RUN),
        "open_alerts": monitoring_selectors.open_alert_count(model),
    }


def _summary_context(model: MLModel) -> dict:
    checks = metric_checks(model.recipe_version.manifest, model.recipe.model_family, model.metrics_json or {})
    return {
        "metric_rows": metric_rows(model.metrics_json, checks),
        "recent_runs": selectors.model_recent_runs(model),
        "artifact_files": sorted(((model.artifacts_json or {}).get("files") or {}).items()),
    }


def _monitoring_context(request: HttpRequest, model: MLModel, form: CheckForm | None) -> dict:
    """The Monitoring tab: health, alerts, charts and the Run check form (``form``: a posted
    one with its errors, else a fresh one)."""
    manifest = model.recipe_version.manifest or {}
    family = model.recipe.model_family
    data = monitoring_selectors.model_monitoring(model)
    figures = monitoring_charts.model_dashboard(
        data["chart_snapshots"], data["events"], manifest=manifest, family=family, now=timezone.now()
    )
    # ?dataset=<id> ("Use this dataset" on the dataset's page) preselects that batch.
    form = form or CheckForm(
        model=model,
        initial={"source": "dataset", "dataset": request.GET["dataset"]}
        if request.GET.get("dataset")
        else None,
    )
    alerts = data["alerts"]
    return {
        # Only charts with something to draw: a model never checked shows the Run check
        # form where its charts would be, not a wall of "No data yet" placeholders.
        "charts": [
            {"html": figure_html(f), "wide": wide} for f, wide in figures if not monitoring_charts.is_empty(f)
        ],
        "empty_charts": [f.layout.title.text for f, _wide in figures if monitoring_charts.is_empty(f)],
        "snapshot_count": len(data["rows"]),
        "latest": data["latest"],
        "latest_rows": data["rows"][-10:][::-1],
        "health": snapshot_health(data["latest"], manifest, family),
        "drifted": data["drifted"],
        "active_alerts": [a for a in alerts if a.state == AlertState.FIRING],
        "resolved_alerts": [a for a in alerts if a.state == AlertState.RESOLVED][:10],
        "check_form": form,
        # Fields the template does not lay out by name (a form grows; none is left out).
        "check_more_fields": [form[name] for name in form.fields if name not in CHECK_FORM_LAID_OUT],
        "can_check": request.user.has_perm(monitoring_perms.RUN_CHECK),
        "has_artifact": bool(model.training_run_id and (model.artifacts_json or {}).get("model")),
        "scoring": monitoring_selectors.model_scoring(model),
        "retraining": monitoring_selectors.model_retraining(model),
        "attribution_drift": monitoring_selectors.model_attribution_drift(model),
        "model_experiments": experiment_selectors.model_experiments(model, request.user),
        "can_retrain": request.user.has_perm(run_perms.ADD_RUN)
        and request.user.has_perm(model_perms.ADD_MODEL),
    }


def _charts(charts: list[explain_charts.Chart]) -> list[dict]:
    return [
        {"key": c.key, "html": figure_html(c.figure), "caption": c.caption, "wide": c.wide} for c in charts
    ]


def _input_columns(model: MLModel) -> list[dict]:
    """The model's input columns (its schema.json), [] without a trained artifact."""
    if not model.training_run_id or "schema.json" not in ((model.artifacts_json or {}).get("files") or {}):
        return []
    schema = artifacts.read_json_artifact(model.training_run_id, model.artifacts_json, "schema.json")
    return [c for c in schema.get("input_columns") or [] if isinstance(c, dict) and c.get("name")]


def _sample_row(model: MLModel, columns: list[dict]) -> dict:
    """What the explain form starts with: the first background row of the explanations, else
    the first row of the recipe's (or its parents') synthetic example, else nothing."""
    names = [c["name"] for c in columns]
    background = artifacts.explanation_background(model)
    rows = []
    if background is not None and len(background) and set(names) <= set(background.columns):
        rows = json_safe(background[names].head(1).to_dict(orient="records"))
    else:
        recipes = [model.recipe_id, *(r.pk for r in reversed(model.recipe.ancestors))]
        examples = dict(
            SyntheticExample.objects.filter(recipe_id__in=recipes).values_list(
                "recipe_id", "sample_rows_json"
            )
        )
        for recipe_id in recipes:
            rows = [r for r in examples.get(recipe_id) or [] if isinstance(r, dict) and set(names) <= set(r)]
            if rows:
                break
    if not rows:
        return {}
    # A date read from Parquet arrives as "2026-01-05T00:00:00": shown as the date it is.
    return {
        n: v.removesuffix("T00:00:00") if isinstance(v, str) else v for n, v in rows[0].items() if n in names
    }


def _why_context(request: HttpRequest, model: MLModel, *, form: ExplainForm | None = None) -> dict:
    """The Why tab: the explanations document's views, and the "Explain this prediction" form
    (``form``: a posted one with its errors, else one filled with a sample row)."""
    try:
        document = selectors.model_explanations(model)
    except DomainError as exc:  # the store did not answer, or the file no longer matches its sha256
        return {"why_error": exc.detail}
    context = {"document": document, "has_artifact": bool((model.artifacts_json or {}).get("model"))}
    if document is None:
        return context
    site, series = request.GET.get("site"), request.GET.get("series")
    charts = explain_charts.why_charts(document, site=site, series=series)
    view = document.get("family_view") if isinstance(document.get("family_view"), dict) else {}
    context.update(
        {
            "method": explain_charts.method_label(document.get("method")),
            "output_label": explain_charts.output_label(document),
            "importance_charts": _charts(charts["importance"]),
            "dependence_charts": _charts(charts["dependence"]),
            "family_charts": _charts(charts["family"]),
            "family_note": view.get("note") or "",
            "sites": explain_charts.location_sites(document),
            "site": explain_charts.location_site(document, site),
            "series_choices": explain_charts.forecast_series(document),
            "series": series,
        }
    )
    if form is None:
        try:
            columns = _input_columns(model)
            form = ExplainForm(columns=columns, initial=_sample_row(model, columns))
        except DomainError as exc:
            context["explain_error"] = exc.detail
    context["explain_form"] = form
    return context


def _page_context(
    request: HttpRequest,
    model: MLModel,
    tab: str,
    *,
    check_form: CheckForm | None = None,
    explain_form: ExplainForm | None = None,
) -> dict:
    """The model page's context, one builder for every way the page is rendered: a GET of any
    tab, a Run check that re-renders the Monitoring tab with the posted form's errors, and an
    explain POST without HTMX that re-renders the Why tab."""
    context = {**_header_context(request, model), "tab": tab}
    if tab == "summary":
        context.update(_summary_context(model))
    elif tab == "why":
        context.update(_why_context(request, model, form=explain_form))
    elif tab == "monitoring":
        context.update(_monitoring_context(request, model, check_form))
    return context


@login_required
def model_detail(request: HttpRequest, model_id: str) -> HttpResponse:
    """Summary (lifecycle, training run, metrics) · Monitoring (charts, alerts, run a check)."""
    model = _get_model_for_user(request.user, model_id)
    tab = request.GET.get("tab", "summary")
    if tab not in dict(MODEL_TABS):
        tab = "summary"
    context = _page_context(request, model, tab)
    return render_page(request, "models_registry/model_detail.html", context, partial="tab")


@login_required
@require_POST
def model_check(request: HttpRequest, model_id: str) -> HttpResponse:
    """Run check: drift, performance and freshness of a batch; alert rules are evaluated."""
    model = _get_model_for_user(request.user, model_id)
    require_perm(request, monitoring_perms.RUN_CHECK, "run monitoring checks", obj=model)
    form = CheckForm(request.POST, model=model)
    if form.is_valid():
        try:
            snapshot = monitoring_services.model_check(model=model, source="check", **form.check_kwargs())
        except DomainError as exc:
            if exc.errors:
                add_domain_errors(form, exc, {"synthetic": "shift_feature", "dataset_id": "dataset"})
            else:  # about the model, not the form (e.g. not trained yet)
                messages.error(request, exc.detail)
        else:
            firing = [f"{name} ({severity})" for name, severity in firing_rules(snapshot.alerts_json)]
            if firing:
                messages.warning(
                    request, f"Check done on {snapshot.row_count} rows — alerts firing: {', '.join(firing)}."
                )
            else:
                messages.success(request, f"Check done on {snapshot.row_count} rows — no alert fires.")
            return redirect(reverse("pages:model", args=[model.pk]) + "?tab=monitoring")
    context = _page_context(request, model, "monitoring", check_form=form)
    return render_page(request, "models_registry/model_detail.html", context, status=400)


@login_required
@require_POST
def model_retrain(request: HttpRequest, model_id: str) -> HttpResponse:
    """Retrain now: a challenger trained on the retraining policy's window, compared with this
    production model when its run finishes (monitoring.services.retrain_trigger)."""
    model = _get_model_for_user(request.user, model_id)
    require_perm(request, run_perms.ADD_RUN, "start runs", obj=model)
    require_perm(request, model_perms.ADD_MODEL, "register models", obj=model)
    try:
        retrain = monitoring_services.retrain_trigger(
            champion=model, trigger=RetrainTrigger.MANUAL, user=request.user
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(
            request,
            f"Retraining: challenger “{retrain.challenger.name}” is training; it is compared with this model "
            "on the newest held-out data when its run finishes.",
        )
    return redirect(reverse("pages:model", args=[model.pk]) + "?tab=monitoring#retraining")


@login_required
@require_POST
def model_status(request: HttpRequest, model_id: str) -> HttpResponse:
    """Promote / demote / archive: only the legal moves are offered; the service decides."""
    model = _get_model_for_user(request.user, model_id)
    require_perm(request, model_perms.CHANGE_MODEL, "change a model's status", obj=model)
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


def _explain_result(item: dict, prediction, document: dict) -> dict:
    """What the page shows of one explained row."""
    contributions = sorted(
        ((k, v) for k, v in (item.get("contributions") or {}).items() if isinstance(v, int | float)),
        key=lambda kv: -abs(kv[1]),
    )
    return {
        "prediction": f"{prediction:.6g}"
        if isinstance(prediction, int | float) and not isinstance(prediction, bool)
        else prediction
        if isinstance(prediction, str)
        else json.dumps(prediction),
        "item": item,
        "method": explain_charts.method_label(item.get("method")),
        "reasons": [str(r) for r in item.get("reasons") or []],
        "contributions": contributions,
        "charts": _charts(explain_charts.prediction_charts(item, document)),
    }


@login_required
@require_POST
def model_explain(request: HttpRequest, model_id: str) -> HttpResponse:
    """Explain this prediction: the posted row's prediction, its contributions as a waterfall
    and the reasons in words. The same function as ``POST /models/{id}/predict`` with
    ``"explain": true`` (runs.artifacts.explain_rows), and the same permission: whoever may see
    the model. Bad input: the form again with the field's error, 400."""
    model = _get_model_for_user(request.user, model_id)
    result, error, status = None, "", 400
    try:
        document = selectors.model_explanations(model)
        if document is None:
            raise NotFound(
                f"“{model.name}” has no explanations: it was trained before explanations existed. "
                "Retrain it to get them."
            )
        form = ExplainForm(request.POST, columns=_input_columns(model))
    except DomainError as exc:
        form, document, error, status = None, None, exc.detail, exc.status_code
    if form is not None and form.is_valid():
        row = form.row()
        try:
            item = artifacts.explain_rows(model, [row])[0]
            prediction = artifacts.predict_rows(model, [row])[0]
        except DomainError as exc:
            status = exc.status_code
            for e in exc.errors or [{"path": "", "message": exc.detail}]:
                column = (e.get("path") or "").rsplit("/", 1)[-1]
                form.add_error(column if column in form.fields else None, e.get("message") or exc.detail)
        else:
            result, status = _explain_result(item, prediction, document), 200
    if is_fragment(request):
        context = {"model": model, "explain_form": form, "explain_result": result, "explain_error": error}
        return render(request, "models_registry/_why.html#explain", context, status=status)
    context = _page_context(request, model, "why", explain_form=form)
    context.update({"explain_result": result, "explain_error": error or context.get("explain_error", "")})
    return render(request, "models_registry/model_detail.html", context, status=status)
