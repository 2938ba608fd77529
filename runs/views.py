"""HTML pages of runs: the new-run form, a run's live page, compare."""

from __future__ import annotations

from datetime import timedelta

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.utils import timezone
from django.views.decorators.http import require_http_methods, require_POST

from mlworkspace.errors import DomainError
from mlworkspace.forms import add_domain_errors
from mlworkspace.views import (
    is_fragment,
    metric_rows,
    render_page,
    require_perm,
)
from models_registry.models import MLModel
from recipes import access
from runs import perms as run_perms

from . import plots, services
from .forms import RunForm
from .models import Dataset, Run, RunLog, RunStatus, stages_done

LOG_PAGE = 1000
# Keep following the logs this long after the run ended: its last line ("Run succeeded.")
# is written just after the status changes.
LOG_GRACE = timedelta(seconds=3)


def _get_run_for_user(user, run_id: str) -> Run:
    """One run with everything its page shows (plots, artifacts; the version's manifest for
    the stages of a run not started yet)."""
    return get_object_or_404(
        Run.objects.visible_to(user)
        .select_related("recipe", "recipe_version", "model", "dataset", "created_by")
        .defer("model__metrics_json", "model__artifacts_json"),
        pk=run_id,
    )


# --------------------------------------------------------------------------- new run


ERROR_FIELDS = {
    "recipe_version_id": "recipe_version",
    "model_id": "model",
    "dataset_id": "dataset",
    "params": "rows",
    "recipe_id": "recipe",
}


@login_required
@require_http_methods(["GET", "POST"])
def run_new(request: HttpRequest) -> HttpResponse:
    """Start a run: recipe, version, type, optional model and dataset or synthetic rows.

    Changing the recipe re-renders the form (HTMX) so the version/model/dataset lists match."""
    data = request.POST if request.method == "POST" else None
    recipe_id = (data or request.GET).get("recipe") or None
    initial = {
        k: v
        for k, v in request.GET.items()
        if k in ("recipe", "recipe_version", "run_type", "model", "dataset", *RunForm.SYNTHETIC_FIELDS)
    }
    if "model" in initial and not recipe_id:
        recipe_id = (
            MLModel.objects.visible_to(request.user)
            .filter(pk=initial["model"])
            .values_list("recipe_id", flat=True)
            .first()
        )
        initial["recipe"] = recipe_id
    if "dataset" in initial and not recipe_id:  # "Use this dataset" from the dataset's page
        recipe_id = (
            Dataset.objects.visible_to(request.user)
            .filter(pk=initial["dataset"])
            .values_list("recipe_id", flat=True)
            .first()
        )
        initial["recipe"] = recipe_id
    form = RunForm(data, recipe_id=recipe_id, initial=initial, user=request.user)
    status = 200
    if request.method == "POST":
        if not access.has_write_role_somewhere(request.user):
            require_perm(request, run_perms.ADD_RUN, "start runs")
        if form.is_valid():
            v = form.cleaned_data
            require_perm(request, run_perms.ADD_RUN, "start runs", obj=v["recipe"])
            synthetic = form.synthetic_params()
            try:
                run = services.run_start(
                    user=request.user,
                    recipe=v["recipe"],
                    recipe_version=v["recipe_version"],
                    run_type=v["run_type"],
                    model=v["model"],
                    dataset=v["dataset"],
                    params={"synthetic": synthetic} if synthetic and v["dataset"] is None else {},
                )
            except DomainError as exc:
                add_domain_errors(form, exc, ERROR_FIELDS)
            else:
                messages.success(request, f"{run.name} queued; a worker picks it up in a moment.")
                return redirect("pages:run", run_id=run.pk)
        status = 400
    context = {"nav": "library", "form": form, "can_run": request.user.has_perm(run_perms.ADD_RUN)}
    return render_page(request, "runs/run_form.html", context, partial="form", status=status)


# --------------------------------------------------------------------------- run detail


def _stage_rows(run: Run) -> list[dict]:
    if run.stages_json:
        return run.stages_json
    # Not claimed yet: the version's stages, all pending.
    stages = ((run.recipe_version.manifest or {}).get("pipeline") or {}).get("stages") or []
    return [
        {"name": s.get("name"), "type": s.get("type"), "status": "pending"}
        for s in stages
        if isinstance(s, dict)
    ]


def _artifact_rows(run: Run) -> list[dict]:
    files = (run.artifacts_json or {}).get("files") or {}
    return [
        {
            "name": name,
            "kind": info.get("kind", ""),
            "size": info.get("size"),
            "sha256": info.get("sha256", ""),
            "url": f"/api/ml-development/runs/{run.pk}/artifacts/{name}",
        }
        for name, info in sorted(files.items())
    ]


def _live_context(request: HttpRequest, run: Run) -> dict:
    stages = _stage_rows(run)
    done = stages_done(stages)
    context = {
        "run": run,
        "stages": stages,
        "progress_pct": int(100 * done / len(stages)) if stages else 0,
        "done": done,
        "can_cancel": request.user.has_perm(run_perms.CHANGE_RUN) and not run.is_terminal,
        "can_retry": request.user.has_perm(run_perms.ADD_RUN) and run.is_terminal,
    }
    if run.is_terminal:
        context["metric_rows"] = metric_rows(run.metrics_json, run.metric_checks_json)
        context["artifacts"] = _artifact_rows(run)
        context["scoring"] = (run.artifacts_json or {}).get("scoring")
        context["charts"] = [
            plots.figure_html(f) for f in plots.run_figures(run.recipe.model_family, run.plots_json)
        ]
        folds = (run.plots_json or {}).get("folds") or []
        if folds:
            names = list(dict.fromkeys(k for f in folds if isinstance(f, dict) for k in f))
            context["fold_names"] = names
            context["fold_rows"] = [[f.get(n) for n in names] for f in folds if isinstance(f, dict)]
    return context


def _following(run: Run) -> bool:
    return not run.is_terminal or (run.finished_at or timezone.now()) > timezone.now() - LOG_GRACE


def _log_context(run: Run, after: int) -> dict:
    # The run's status was read before its lines, so an ended run has no line left unread
    # except its final one, which LOG_GRACE waits for.
    following = _following(run)
    lines = list(RunLog.objects.filter(run_id=run.pk, seq__gt=after).order_by("seq")[:LOG_PAGE])
    return {
        "run": run,
        "lines": lines,
        "last_seq": lines[-1].seq if lines else after,
        "follow": following or len(lines) == LOG_PAGE,
    }


@login_required
def run_detail(request: HttpRequest, run_id: str) -> HttpResponse:
    """Status, stages, logs (live while it runs), metrics vs targets, artifacts and plots."""
    run = _get_run_for_user(request.user, run_id)
    tail = list(RunLog.objects.filter(run_id=run.pk).order_by("-seq")[:LOG_PAGE])[::-1]
    context = {
        "nav": "library",
        **_live_context(request, run),
        "initial_lines": tail,
        "truncated": bool(tail) and tail[0].seq > 1,
        "last_seq": tail[-1].seq if tail else 0,
        "params": run.params_json,
        "siblings": list(
            Run.objects.filter(recipe_id=run.recipe_id, status=RunStatus.SUCCEEDED)
            .exclude(pk=run.pk)
            .only("id", "created_at", "run_type", "number")
            .order_by("-created_at")[:5]
        ),
    }
    context["follow"] = _following(run)
    return render(request, "runs/run_detail.html", context)


@login_required
def run_live(request: HttpRequest, run_id: str) -> HttpResponse:
    """The polled part of the run page; once the run has ended it no longer asks to be polled."""
    run = _get_run_for_user(request.user, run_id)
    if not is_fragment(request):
        return redirect("pages:run", run_id=run.pk)
    context = _live_context(request, run)
    # The page's flash messages ("… queued") described the status it was loaded with: once
    # the run has moved on they are no longer true, so the poll clears them.
    shown = request.GET.get("shown")
    context["clear_messages"] = bool(shown) and shown != run.status
    return render(request, "runs/run_detail.html#live", context)


@login_required
def run_logs(request: HttpRequest, run_id: str) -> HttpResponse:
    """Log lines after ?after=<seq>: appended to the page's log (HTMX), or plain text."""
    run = _get_run_for_user(request.user, run_id)
    after = request.GET.get("after", "0")
    after_seq = int(after) if after.isdigit() else 0
    context = _log_context(run, after_seq)
    if not is_fragment(request):
        text = "\n".join(
            f"{line.seq:>5} {line.ts:%H:%M:%S} {line.level:<7} {line.message}" for line in context["lines"]
        )
        return HttpResponse(text + "\n", content_type="text/plain; charset=utf-8")
    return render(request, "runs/run_detail.html#logs", context)


@login_required
@require_POST
def run_cancel(request: HttpRequest, run_id: str) -> HttpResponse:
    run = _get_run_for_user(request.user, run_id)
    require_perm(request, run_perms.CHANGE_RUN, "cancel runs", obj=run)
    try:
        run = services.run_cancel(run=run, user=request.user)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(
            request,
            "Run cancelled."
            if run.is_terminal
            else "Cancellation requested; the worker stops within seconds.",
        )
    return redirect("pages:run", run_id=run.pk)


@login_required
@require_POST
def run_retry(request: HttpRequest, run_id: str) -> HttpResponse:
    run = _get_run_for_user(request.user, run_id)
    require_perm(request, run_perms.ADD_RUN, "start runs", obj=run)
    try:
        new = services.run_retry(run=run, user=request.user)
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect("pages:run", run_id=run.pk)
    messages.success(request, f"Retry of {run.name} queued as {new.name}.")
    return redirect("pages:run", run_id=new.pk)


# --------------------------------------------------------------------------- compare


def _compare_ids(request: HttpRequest) -> list[str]:
    ids: list[str] = []
    for value in request.GET.getlist("ids"):
        ids.extend(part.strip() for part in value.split(",") if part.strip())
    return list(dict.fromkeys(ids))[:8]


@login_required
def run_compare(request: HttpRequest) -> HttpResponse:
    """Two or more runs of one recipe: metrics side by side and overlaid family plots."""
    ids = _compare_ids(request)
    # Not for_list(): the compare page needs each run's plot data.
    found = {
        r.pk: r
        for r in Run.objects.visible_to(request.user)
        .select_related("recipe", "recipe_version")
        .defer("recipe_version__manifest")
        .filter(pk__in=ids)
    }
    runs = [found[i] for i in ids if i in found]
    problem = ""
    if len(runs) < 2:
        problem = "Pick two or more runs to compare (tick them in the Runs tab)."
    elif len({r.recipe_id for r in runs}) > 1:
        problem = "These runs belong to different recipes; compare runs of one recipe."
    context: dict = {
        "nav": "library",
        "runs": runs,
        "problem": problem,
        "missing": [i for i in ids if i not in found],
    }
    if not problem:
        names = list(dict.fromkeys(n for r in runs for n in (r.metrics_json or {})))
        rows = []
        for name in names:
            first_check = next(
                (
                    (r.metric_checks_json or {}).get(name)
                    for r in runs
                    if (r.metric_checks_json or {}).get(name)
                ),
                {},
            )
            cells = []
            for r in runs:
                check = (r.metric_checks_json or {}).get(name) or {}
                cells.append({"value": (r.metrics_json or {}).get(name), "status": check.get("status")})
            rows.append(
                {
                    "name": name,
                    "direction": first_check.get("direction"),
                    "target": first_check.get("target"),
                    "cells": cells,
                }
            )
        context["metric_rows"] = rows
        family = runs[0].recipe.model_family
        figures = plots.compare_figures(
            family, [(f"#{r.number} · {r.run_type} · {r.recipe_version.version}", r.plots_json) for r in runs]
        )
        context["charts"] = [plots.figure_html(f) for f in figures]
        context["recipe"] = runs[0].recipe
    return render(request, "runs/compare.html", context, status=400 if problem else 200)
