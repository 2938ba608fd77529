"""HTML pages of monitoring: the library's Monitoring tab, a model's dashboards, Run check."""

from __future__ import annotations

from typing import Any

import django_filters
from django import forms
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, OuterRef, Q, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.urls import reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from mlworkspace.errors import DomainError
from models_registry.filters import MLModelFilter
from models_registry.models import MLModel, ModelStatus
from recipes.catalog import metric_direction
from recipes.forms import add_domain_errors
from recipes.models import Family, Level
from recipes.views import active_filters, filter_controls, paginate, render_page, require_perm, sort_columns
from runs.families import get_family
from runs.metrics import metric_checks
from runs.models import Dataset
from runs.plots import figure_html

from . import charts
from .models import Alert, MonitorSnapshot

HEALTH_RANK = {"unknown": 0, "ok": 1, "warning": 2, "critical": 3}
CHART_SNAPSHOTS = 500
MAX_METRIC_CHARTS = 6


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


class MonitoringPageFilter(MLModelFilter):
    model_family = django_filters.ChoiceFilter(field_name="recipe__model_family", choices=Family.choices)
    level = django_filters.ChoiceFilter(field_name="recipe__level", choices=Level.choices)

    class Meta(MLModelFilter.Meta):
        fields = [*MLModelFilter.Meta.fields, "level"]


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
    filterset = MonitoringPageFilter(request.GET or None, queryset=base)
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


class CheckForm(forms.Form):
    """A monitoring check on a synthetic batch (optionally drifted) or an uploaded dataset."""

    source = forms.ChoiceField(
        choices=[("synthetic", "Synthetic batch"), ("dataset", "Uploaded dataset")],
        initial="synthetic",
        widget=forms.RadioSelect,
    )
    rows = forms.IntegerField(min_value=50, max_value=2_000_000, initial=5000, required=False)
    seed = forms.IntegerField(min_value=0, initial=0, required=False)
    shift_feature = forms.ChoiceField(required=False, label="Drift a feature")
    shift_k = forms.FloatField(
        required=False,
        initial=1.5,
        label="by k",
        help_text="Numeric: moved by k standard deviations. Categorical: its top category k× as frequent.",
    )
    dataset = forms.ModelChoiceField(
        queryset=Dataset.objects.none(), required=False, empty_label="— pick a dataset —"
    )

    def __init__(self, *args, model: MLModel, **kwargs):
        super().__init__(*args, **kwargs)
        try:
            schema = get_family(model.recipe.model_family).SCHEMA
        except KeyError:
            schema = []
        columns = [c["name"] for c in schema if c.get("role") in ("feature", "segment")]
        drift = ((model.recipe_version.manifest or {}).get("monitoring") or {}).get("drift") or {}
        watched = [f for f in drift.get("features") or [] if f in columns]
        ordered = watched + [c for c in columns if c not in watched]
        self.fields["shift_feature"].choices = [("", "— no drift —")] + [
            (c, f"{c}{' (watched)' if c in watched else ''}") for c in ordered
        ]
        self.fields["dataset"].queryset = Dataset.objects.filter(
            Q(recipe_id=model.recipe_id) | Q(recipe__isnull=True)
        ).order_by("-created_at")

    def clean(self):
        data = super().clean()
        if data.get("source") == "dataset" and not data.get("dataset"):
            self.add_error("dataset", "Pick an uploaded dataset, or check a synthetic batch.")
        if data.get("source") == "synthetic" and data.get("shift_feature") and data.get("shift_k") is None:
            self.add_error("shift_k", "How much to drift it (e.g. 1.5).")
        return data

    def check_kwargs(self) -> dict:
        data = self.cleaned_data
        if data["source"] == "dataset":
            return {"dataset_id": data["dataset"].pk}
        synthetic = {"rows": data.get("rows") or 5000, "seed": data.get("seed") or 0}
        if data.get("shift_feature"):
            synthetic["shift"] = {data["shift_feature"]: float(data["shift_k"])}
        return {"synthetic": synthetic}


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
        .values(
            "id",
            "captured_at",
            "performance_metrics_json",
            "drift_metrics_json",
            "data_freshness_json",
            "alerts_json",
            "source",
            "row_count",
        )[:CHART_SNAPSHOTS]
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
    return {
        "metric_charts": [figure_html(f) for f in figures],
        "drift_chart": figure_html(charts.drift_heatmap(snapshots)),
        "freshness_chart": figure_html(charts.freshness_chart(snapshots)),
        "alert_chart": figure_html(charts.alert_timeline(events, now=timezone.now())),
        "snapshot_count": len(rows),
        "latest": latest,
        "latest_rows": rows[-10:][::-1],
        "health": snapshot_health(latest, manifest, family),
        "drifted": drifted,
        "active_alerts": [a for a in alerts if a.state == "firing"],
        "resolved_alerts": [a for a in alerts if a.state == "resolved"][:10],
        "check_form": form or CheckForm(model=model),
        "can_check": request.user.has_perm("monitoring.add_monitorsnapshot"),
        "has_artifact": bool(model.training_run_id and (model.artifacts_json or {}).get("model")),
    }


@login_required
@require_POST
def model_check(request: HttpRequest, model_id: str) -> HttpResponse:
    """Run check: drift, performance and freshness of a batch; alert rules are evaluated."""
    from models_registry.views import MODEL_TABS, _get_model_for_user, legal_moves

    from .checks import run_check

    model = _get_model_for_user(request.user, model_id)
    require_perm(request, "monitoring.add_monitorsnapshot", "run monitoring checks")
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
        "nav": "library",
        "model": model,
        "tab": "monitoring",
        "tabs": MODEL_TABS,
        "moves": legal_moves(model),
        "can_change": request.user.has_perm("models_registry.change_mlmodel"),
        "can_run": request.user.has_perm("runs.add_run"),
        "open_alerts": model.alerts.filter(state="firing").count(),
        **monitoring_context(request, model, form=form),
    }
    return render_page(request, "models_registry/model_detail.html", context, status=400)
