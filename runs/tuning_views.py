"""The study page of a tune run (its trials, the best, Optuna's charts) and its "Save best as
new version" button."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_POST

from mlworkspace.errors import DomainError, NotFound
from mlworkspace.views import require_perm
from recipes import perms as recipe_perms

from . import plots, services, tuning_selectors, tuning_study
from .models import Run


def _shown(value):
    """A sampled float with 4 significant digits (the API and a saved version keep it whole)."""
    return f"{value:.4g}" if isinstance(value, float) else value


def _get_tune_run_for_user(user, run_id: str) -> Run:
    try:
        return tuning_selectors.get_tune_run(Run.objects.visible_to(user), run_id)
    except NotFound as exc:
        raise Http404(exc.detail) from None


@login_required
def run_study(request: HttpRequest, run_id: str) -> HttpResponse:
    """The study: how the search went (history, importances, parallel coordinates, slices),
    every trial (linking its child run) and the best, with "Save best as new version"."""
    run = _get_tune_run_for_user(request.user, run_id)
    study = tuning_selectors.load_study(run)
    context: dict = {"nav": "library", "run": run, "study": None, "charts": []}
    if study is not None:
        data = tuning_selectors.tune_study(run, study)
        names = list(dict.fromkeys(name for t in data["trials"] for name in t["params"]))
        context.update(
            study=data,
            param_names=names,
            rows=[{**t, "values": [_shown(t["params"].get(n)) for n in names]} for t in data["trials"]],
            best_params=[(k, _shown(v)) for k, v in ((data["best"] or {}).get("params") or {}).items()],
            charts=[
                {**c, "html": plots.figure_html(c["figure"]) if c["figure"] is not None else ""}
                for c in tuning_study.figures(study)
            ],
        )
    latest = run.recipe.current_version
    context["newer_version"] = latest if latest is not None and latest.pk != run.recipe_version_id else None
    context["can_save"] = (
        bool(context["study"] and context["study"]["best"])
        and request.user.has_perm(recipe_perms.ADD_VERSION)
        and context["newer_version"] is None
    )
    return render(request, "runs/study.html", context)


@login_required
@require_POST
def run_study_save_best(request: HttpRequest, run_id: str) -> HttpResponse:
    """A new version of the recipe with the best trial's hyperparameters (the suggested bump)."""
    run = _get_tune_run_for_user(request.user, run_id)
    require_perm(request, recipe_perms.ADD_VERSION, "save a new version", obj=run.recipe)
    try:
        created = services.tune_save_best(run=run, user=request.user)
    except DomainError as exc:
        messages.error(request, exc.detail)
        return redirect("pages:run-study", run_id=run.pk)
    messages.success(
        request,
        f"Saved version {created.version} of “{run.recipe.name}” with the best trial's hyperparameters.",
    )
    url = reverse("pages:recipe", args=[run.recipe_id])
    return redirect(f"{url}?tab=versions&a={run.recipe_version_id}&b={created.pk}")
