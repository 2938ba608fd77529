"""'create it and run a backtest': start a backtest run of the recipe the assistant just created,
through ``runs.services.run_start`` after the same permission check as ``POST /runs``
(``recipes.access.check_write`` with ``runs.add_run``). Returns the sentence the reply shows.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import Http404

from mlworkspace.errors import DomainError
from recipes import access
from recipes.models import Recipe
from runs import perms as run_perms
from runs.models import Dataset, DatasetPurpose, DatasetStatus, RunType
from runs.services import run_start

RUN_PAGE = "/model-development/runs/{id}"


def start_backtest(*, user, recipe: Recipe) -> str:
    try:
        access.check_write(user, recipe, run_perms.ADD_RUN)
    except (PermissionDenied, Http404):
        return (
            f"I can't start a backtest of {recipe.id}: starting runs needs the {run_perms.ADD_RUN} permission "
            "(or a write role in the recipe's client)."
        )
    dataset = (
        Dataset.objects.visible_to(user)
        .filter(recipe=recipe, status=DatasetStatus.READY, purpose=DatasetPurpose.TRAINING)
        .order_by("-created_at")
        .first()
    )
    try:
        run = run_start(user=user, recipe=recipe, run_type=RunType.BACKTEST, dataset=dataset)
    except DomainError as exc:
        return f"I couldn't start a backtest of {recipe.id}: {exc.detail}"
    where = RUN_PAGE.format(id=run.id)
    if dataset is None:
        return (
            f"Started backtest run {run.id} at {where}. No dataset of yours is attached to {recipe.id} yet, so it "
            "backtests on the family's synthetic example data; upload your data on the recipe page and start a "
            "backtest there to measure it on your own history."
        )
    return f"Started backtest run {run.id} on dataset {dataset.name} at {where}."
