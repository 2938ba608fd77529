"""The experiment pages: an experiment's statistics and its stop form, and starting one on
a model (the model page includes templates/experiments/_model_experiments.html, which
posts here)."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.urls import reverse
from django.views.decorators.http import require_POST

from mlworkspace.errors import DomainError
from mlworkspace.forms import add_domain_errors
from mlworkspace.views import render_page, require_perm
from models_registry.models import MLModel
from recipes import access

from . import perms, selectors, services
from .forms import ExperimentStartForm
from .models import Experiment, Winner

FORM_FIELDS = {"challenger_id": "challenger"}


def _get_experiment_for_user(user, experiment_id: str) -> Experiment:
    """The experiment, or 404 when the user may not see its recipe (recipes.access)."""
    experiments = Experiment.objects.visible_to(user).select_related(
        "recipe", "champion", "challenger", "created_by", "stopped_by"
    )
    return get_object_or_404(experiments, pk=experiment_id)


def _get_model_for_user(user, model_id: str) -> MLModel:
    return get_object_or_404(MLModel.objects.visible_to(user).select_related("recipe"), pk=model_id)


def _may(user, obj, perm: str) -> bool:
    """The one access rule, as a yes/no for showing a form (the POST checks it again)."""
    return access.can_write(user, obj) and (access.is_client_object(obj) or user.has_perm(perm))


@login_required
def experiment_detail(request: HttpRequest, experiment_id: str) -> HttpResponse:
    """Per-arm sample sizes, outcome means with intervals, the difference, the test against
    the fixed horizon, the minimum detectable effect, and the stop form."""
    experiment = _get_experiment_for_user(request.user, experiment_id)
    statistics = selectors.experiment_statistics(experiment)
    context = {
        "nav": "library",
        "experiment": experiment,
        "statistics": statistics,
        "analysis": statistics["analysis"],
        "arms": [
            (arm, statistics["analysis"].get("arms", {}).get(arm) or {}) for arm in ("champion", "challenger")
        ],
        "can_stop": experiment.is_running and _may(request.user, experiment, perms.START_OR_STOP),
        "winners": Winner.choices,
        "champion_serving": experiment.champion.status == "production",
    }
    return render_page(request, "experiments/experiment_detail.html", context)


@login_required
@require_POST
def experiment_stop(request: HttpRequest, experiment_id: str) -> HttpResponse:
    experiment = _get_experiment_for_user(request.user, experiment_id)
    require_perm(request, perms.START_OR_STOP, "stop experiments", obj=experiment)
    try:
        result = services.experiment_stop(
            experiment=experiment, user=request.user, winner=request.POST.get("winner", "")
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        if result["promoted"]:
            # The replaced model by its name (it is the champion, unless that changed meanwhile).
            names = {experiment.champion_id: f"“{experiment.champion.name}”"}
            replaced = ", ".join(names.get(pk, pk) for pk in result["replaced"])
            messages.success(
                request,
                f"Stopped. “{experiment.challenger.name}” is now the production model; "
                f"{replaced or 'no model'} went to staging.",
            )
        else:
            messages.success(
                request, f"Stopped (winner: {result['experiment'].get_winner_display()}); no model changed."
            )
    return redirect(reverse("pages:experiment", args=[experiment.pk]))


@login_required
def experiment_new(request: HttpRequest, model_id: str) -> HttpResponse:
    """Start an A/B or shadow test with this (production) model as the champion."""
    model = _get_model_for_user(request.user, model_id)
    summary = selectors.model_experiments(model, request.user)
    form = ExperimentStartForm(request.POST or None, candidates=summary["candidates"])
    status = 200
    if request.method == "POST":
        require_perm(request, perms.START_OR_STOP, "start experiments", obj=model)
        valid = form.is_valid()
        if summary["why_not"]:
            form.add_error(None, summary["why_not"])
            valid = False
        if valid:
            challenger = _get_model_for_user(request.user, form.cleaned_data["challenger"])
            try:
                experiment = services.experiment_start(
                    user=request.user,
                    recipe=model.recipe,
                    champion=model,
                    challenger=challenger,
                    **form.start_kwargs(),
                )
            except DomainError as exc:
                add_domain_errors(form, exc, FORM_FIELDS)
            else:
                messages.success(request, f"Experiment {experiment.pk} is running.")
                return redirect(reverse("pages:experiment", args=[experiment.pk]))
        status = 400
    context = {"nav": "library", "model": model, "summary": summary, "form": form}
    return render_page(request, "experiments/experiment_new.html", context, status=status)
