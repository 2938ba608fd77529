"""An external run created with its results in one call (issue #15 §5): a runner that has
already trained reports the run, its params, tags, status and final metrics with one request
instead of a create and a report. The rules stay where they are: ``run_start`` creates (and
indexes the runner's params), ``tracking_log`` stores the tags, ``run_report`` moves the
status and records the metrics; this only composes them in one transaction, so a refusal by
any of them leaves no row."""

from __future__ import annotations

from collections.abc import Mapping

from django.db import transaction

from models_registry.models import MLModel
from recipes.models import Recipe, RecipeVersion

from ..models import Dataset, Executor, Run, RunType
from .finish import run_report
from .lifecycle import run_start
from .tracking import tracking_log


@transaction.atomic
def run_start_external(
    *,
    user,
    recipe: Recipe,
    recipe_version: RecipeVersion | None = None,
    run_type: str = RunType.TRAIN,
    model: MLModel | None = None,
    dataset: Dataset | None = None,
    params: dict | None = None,
    tags: Mapping[str, str] | None = None,
    status: str | None = None,
    metrics_json: dict | None = None,
) -> Run:
    """Start an external run and, when given, log its `tags` and report its `status` and
    `metrics_json` as ``PUT /runs/{id}`` would (the same transitions from ``queued``, the
    same metric checks and outcome, the same model attachment). All or nothing."""
    run = run_start(
        user=user,
        recipe=recipe,
        recipe_version=recipe_version,
        run_type=run_type,
        model=model,
        dataset=dataset,
        executor=Executor.EXTERNAL,
        params=params,
    )
    if tags:
        tracking_log(run=run, tags=[{"key": key, "value": value} for key, value in tags.items()])
    if status is not None or metrics_json is not None:
        run = run_report(run=run, user=user, status=status, metrics_json=metrics_json, locked=True)
    return run
