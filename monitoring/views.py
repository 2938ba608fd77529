"""HTML pages of monitoring: the library's Monitoring tab, a model's dashboards, Run check."""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from mlworkspace.errors import DomainError
from mlworkspace.forms import add_domain_errors
from mlworkspace.views import (
    active_filters,
    filter_controls,
    paginate,
    render_page,
    require_perm,
    sort_columns,
)
from models_registry.filters import MLModelFilter
from models_registry.models import MLModel, ModelStatus
from recipes.catalog import metric_direction
from runs.metrics import metric_checks
from runs.plots import figure_html

from . import charts
from .forms import CheckForm
from .models import Alert, MonitorSnapshot

HEALTH_RANK = {"unknown": 0, "ok": 1, "warning": 2, "critical": 3}
CHART_SNAPSHOTS = 500
MAX_METRIC_CHARTS = 6
# The Run check fields model_detail.html places itself; any other field of CheckForm is
# rendered after them.
CHECK_FORM_LAID_OUT = ("source", "rows", "seed", "shift_feature", "shift_k", "dataset")


def snapshot_health(snapshot: MonitorSnapshot | None, manifest: dict, family: str) -> dict:
    """ok / warning / critical from a snapshot's firing alerts and its metrics against the
    manifest's thresholds; "unknown" before the first check. Reasons say why."""
    if snapshot is None:
        return {"status": "unknown", "reasons": ["not checked yet"]}
    worst, reasons = "ok", []

    def note(severity: Any, reason: str) -> None:
        nonlocal worst
        severity = severity if severity in ("warning", "critical") else "warning"
        reasons.append(reason)
        if HEALTH_RANK[severity] > HEALTH_RANK[worst]:
            worst = severity

    for name, result in (snapshot.alerts_json or {}).items():
        if name == "external" and isinstance(result, dict):
            for ext_name, ext in result.items():
                if (
                    isinstance(ext, dict)
                    and ext.get("firing", True)
                    and ext.get("severity") in ("warning", "critical")
                ):
                    note(ext["severity"], f"external alert {ext_name}")
        elif isinstance(result, dict) and result.get("firing") is True:
            note(result.get("severity"), f"alert {name} ({result.get('severity') or 'warning'})")
    for name, check in metric_checks(manifest, family, snapshot.performance_metrics_json or {}).items():
        if check["status"] in ("warning", "critical"):
            note(check["status"], f"{name} = {check['value']:.4g} ({check['status']})")
    return {"status": worst, "reasons": reasons}


# --------------------------------------------------------------------------- library tab


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
    latest = (
        MonitorSnapshot.objects.filter(model=OuterRef("pk")).order_by("-captured_at", "-id").values("id")[:1]
    )
    # Not for_list(): health needs each version's manifest (metric thresholds), and the
    # training run is not shown.
    base = (
        MLModel.objects.visible_to(request.user)
        .select_related("recipe", "recipe_version")
        .filter(status=ModelStatus.PRODUCTION)
        .annotate(latest_snapshot_id=Subquery(latest))
    )
    filterset = MLModelFilter(request.GET or None, queryset=base)
    queryset = filterset.qs if filterset.is_bound and filterset.is_valid() else base
    sort, order, columns = sort_columns(request, MONITORING_COLUMNS, MONITORING_ORDERINGS, "name")
    page = paginate(request, queryset.order_by(*order))
    models = list(page.object_list)
    snapshots = {
        s.pk: s
        for s in MonitorSnapshot.objects.filter(
            pk__in=[m.latest_snapshot_id for m in models if m.latest_snapshot_id]
        )
    }
    open_alerts: dict[str, dict[str, int]] = {}
    for row in (
        Alert.objects.filter(model_id__in=[m.pk for m in models], state="firing")
        .values("model_id", "severity")
        .annotate(n=Count("id"))
    ):
        open_alerts.setdefault(row["model_id"], {})[row["severity"]] = row["n"]
    for m in models:
        m.latest_snapshot = snapshots.get(m.latest_snapshot_id)
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


# --------------------------------------------------------------------------- model dashboards


def _chart_snapshot(values: dict) -> dict:
    return {
        "captured_at": values["captured_at"],
        "performance": values["performance_metrics_json"],
        "drift": values["drift_metrics_json"],
        "freshness": values["data_freshness_json"],
        "alerts": values["alerts_json"],
    }


def monitoring_context(request: HttpRequest, model: MLModel, form: CheckForm | None = None) -> dict:
    """The model page's Monitoring tab: charts, health, alerts and the Run check form."""
    manifest = model.recipe_version.manifest or {}
    family = model.recipe.model_family
    rows = list(
        MonitorSnapshot.objects.filter(model_id=model.pk)
        .order_by("-captured_at", "-id")
        .values(*MonitorSnapshot.SERIES_FIELDS)[:CHART_SNAPSHOTS]
    )
    rows.reverse()
    snapshots = [_chart_snapshot(r) for r in rows]
    defined = (manifest.get("evaluation") or {}).get("metrics") or {}
    wanted = (manifest.get("monitoring") or {}).get("metrics") or list(defined)
    figures = []
    for name in wanted[:MAX_METRIC_CHARTS]:
        spec = defined.get(name) if isinstance(defined.get(name), dict) else {}
        direction = metric_direction(family, name, spec.get("direction")) or "lower"
        figures.append(charts.metric_over_time(snapshots, name, thresholds=spec, direction=direction))
    alerts = list(Alert.objects.filter(model_id=model.pk).order_by("-fired_at", "id")[:200])
    events = [
        {"name": a.name, "severity": a.severity, "fired_at": a.fired_at, "resolved_at": a.resolved_at}
        for a in alerts
    ]
    latest = MonitorSnapshot.objects.filter(model_id=model.pk).order_by("-captured_at", "-id").first()
    drift = (latest.drift_metrics_json or {}) if latest else {}
    drifted = sorted(
        name
        for name, entry in (drift.get("features") or {}).items()
        if isinstance(entry, dict) and entry.get("drifted")
    )
    figures += [
        charts.drift_heatmap(snapshots),
        charts.freshness_chart(snapshots),
        charts.alert_timeline(events, now=timezone.now()),
    ]
    drift_figure = figures[-3]
    # ?dataset=<id> ("Use this dataset" on the dataset's page) preselects that batch.
    form = form or CheckForm(
        model=model,
        initial={"source": "dataset", "dataset": request.GET["dataset"]}
        if request.GET.get("dataset")
        else None,
    )
    return {
        # Only charts with something to draw: a model never checked shows the Run check
        # form where its charts would be, not a wall of "No data yet" placeholders.
        "charts": [
            {"html": figure_html(f), "wide": f is drift_figure} for f in figures if not charts.is_empty(f)
        ],
        "empty_charts": [f.layout.title.text for f in figures if charts.is_empty(f)],
        "snapshot_count": len(rows),
        "latest": latest,
        "latest_rows": rows[-10:][::-1],
        "health": snapshot_health(latest, manifest, family),
        "drifted": drifted,
        "active_alerts": [a for a in alerts if a.state == "firing"],
        "resolved_alerts": [a for a in alerts if a.state == "resolved"][:10],
        "check_form": form,
        # Fields the template does not lay out by name (a form grows; none is left out).
        "check_more_fields": [form[name] for name in form.fields if name not in CHECK_FORM_LAID_OUT],
        "can_check": request.user.has_perm("monitoring.add_monitorsnapshot"),
        "has_artifact": bool(model.training_run_id and (model.artifacts_json or {}).get("model")),
    }


@login_required
@require_POST
def model_check(request: HttpRequest, model_id: str) -> HttpResponse:
    """Run check: drift, performance and freshness of a batch; alert rules are evaluated."""
    from models_registry.views import _get_model_for_user, header_context

    from .checks import run_check

    model = _get_model_for_user(request.user, model_id)
    require_perm(request, "monitoring.add_monitorsnapshot", "run monitoring checks", obj=model)
    form = CheckForm(request.POST, model=model)
    if form.is_valid():
        try:
            snapshot = run_check(model=model, source="check", **form.check_kwargs())
        except DomainError as exc:
            if exc.errors:
                add_domain_errors(form, exc, {"synthetic": "shift_feature", "dataset_id": "dataset"})
            else:  # about the model, not the form (e.g. not trained yet)
                messages.error(request, exc.detail)
        else:
            firing = [
                f"{name} ({result.get('severity') or 'warning'})"
                for name, result in (snapshot.alerts_json or {}).items()
                if isinstance(result, dict) and result.get("firing") is True
            ]
            if firing:
                messages.warning(
                    request, f"Check done on {snapshot.row_count} rows — alerts firing: {', '.join(firing)}."
                )
            else:
                messages.success(request, f"Check done on {snapshot.row_count} rows — no alert fires.")
            return redirect(reverse("pages:model", args=[model.pk]) + "?tab=monitoring")
    context = {
        **header_context(request, model),
        "tab": "monitoring",
        **monitoring_context(request, model, form=form),
    }
    return render_page(request, "models_registry/model_detail.html", context, status=400)
