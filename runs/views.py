"""HTML pages of runs: the new-run form, a run's live page, compare."""

from __future__ import annotations

from datetime import timedelta
from itertools import groupby
from operator import itemgetter

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count
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

from . import history, plots, services
from .forms import RunForm
from .models import Dataset, MetricPoint, Run, RunLog, RunStatus, RunType, stages_done

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
        # A trial is retried as part of its tune run (Retry continues the study).
        "can_retry": request.user.has_perm(run_perms.ADD_RUN) and run.is_terminal and run.run_type != "trial",
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
        context.update(_curves_context(run))
    return context


def _history_counts(run_ids: list[str]) -> dict[str, dict[str, int]]:
    """{run_id: {key: number of points}} of every metric of the runs, keys in order."""
    counts: dict[str, dict[str, int]] = {i: {} for i in run_ids}
    for run_id, key, n in (
        MetricPoint.objects.filter(run_id__in=run_ids)
        .values_list("run_id", "key")
        .annotate(n=Count("id"))
        .order_by("run_id", "key")
    ):
        counts[run_id][key] = n
    return counts


def _history_series(run_ids: list[str], keys: list[str]) -> dict[str, dict[str, list]]:
    """{run_id: {key: [(step, value)]}} of these keys, each downsampled for a plot
    (runs.history.downsample); one query whatever the number of runs and keys."""
    series: dict[str, dict[str, list]] = {i: {} for i in run_ids}
    if not keys:
        return series
    rows = (
        MetricPoint.objects.filter(run_id__in=run_ids, key__in=keys)
        .order_by("run_id", "key", "step", "timestamp")
        .values_list("run_id", "key", "step", "value", "timestamp")
    )
    for (run_id, key), group in groupby(rows, key=itemgetter(0, 1)):
        points = [row[2:] for row in group]
        if len(points) >= 2:  # a final metric (one point) is not a curve
            shown = history.downsample(points, history.DEFAULT_MAX_POINTS)
            series[run_id][key] = [(step, value) for step, value, _ in shown]
    return series


def _curves_context(run: Run, counts: dict[str, int] | None = None) -> dict:
    """The run page's "Training curves" card: a chart per group of curves (at most
    plots.MAX_CURVE_CHARTS) and a CSV download of every metric's full history. Two queries
    (one when `counts`, the run's _history_counts, is given), whatever the number of points."""
    if counts is None:
        counts = _history_counts([run.pk])[run.pk]
    curves = [k for k, n in counts.items() if n >= 2]
    if (run.plots_json or {}).get("folds"):  # the backtest chart above draws the folds already
        curves = [k for k in curves if not k.startswith("fold.")]
    groups = list(history.curve_groups(curves).values())[: plots.MAX_CURVE_CHARTS]
    series = _history_series([run.pk], [k for members in groups for k in members])[run.pk]
    return {
        "curve_charts": [plots.figure_html(f) for f in plots.curve_figures(series)],
        "curve_keys": [{"key": key, "points": n} for key, n in counts.items()],
        # What the running card's poller sends back, so an unchanged history is not re-drawn.
        "curve_points": sum(counts.values()),
    }


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
    context["live_curves"] = _live_curves(run)
    if context["live_curves"]:  # the running card (a terminal run's card is in the live part)
        context.update(_curves_context(run))
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
    # The answer that brings the final curves card also empties the running one (out of band,
    # in the same swap), so the page never shows both.
    context["end_live_curves"] = run.is_terminal
    return render(request, "runs/run_detail.html#live", context)


@login_required
def run_curves(request: HttpRequest, run_id: str) -> HttpResponse:
    """The running card of training curves, polled every few seconds while the run runs: its
    own element, outside the 1-second live part, so Plotly is not re-drawn every second.
    ?points=<n> is the number of points the page shows: unchanged, the answer is a 204 (no
    swap, no re-draw). Once the run has ended the answer is the empty element, without a poll:
    the final card comes with the live part."""
    run = _get_run_for_user(request.user, run_id)
    if not is_fragment(request):
        return redirect("pages:run", run_id=run.pk)
    if not _live_curves(run):
        return render(request, "runs/run_detail.html#curves", {"run": run, "live_curves": False})
    counts = _history_counts([run.pk])[run.pk]
    if request.GET.get("points") == str(sum(counts.values())):
        return HttpResponse(status=204)
    context = {"run": run, "live_curves": True, **_curves_context(run, counts)}
    return render(request, "runs/run_detail.html#curves", context)


def _live_curves(run: Run) -> bool:
    """Whether the page shows the running card of curves: while the run runs, unless it is a
    score run or a tune run (its trials log the curves), which log none."""
    return not run.is_terminal and run.run_type not in (RunType.SCORE, RunType.TUNE)


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
        ids = [r.pk for r in runs]
        counts = _history_counts(ids)
        curves = list(dict.fromkeys(k for i in ids for k, n in counts[i].items() if n >= 2))
        series = _history_series(ids, curves[: plots.MAX_CURVE_CHARTS])
        curves = plots.compare_curve_figures(
            [(f"#{r.number} · {r.run_type} · {r.recipe_version.version}", series[r.pk]) for r in runs]
        )
        context["curve_charts"] = [plots.figure_html(f) for f in curves]
        context["recipe"] = runs[0].recipe
    return render(request, "runs/compare.html", context, status=400 if problem else 200)
