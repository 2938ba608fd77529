"""Reads of the MLflow-compatible API, every one scoped by the access rule (``visible_to``): an
experiment is a recipe the user may see, a run a run of one. Something the user may not see
reads as missing (RESOURCE_DOES_NOT_EXIST), never as forbidden, as everywhere else."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable

import yaml
from django.db.models import Prefetch

from mlworkspace.errors import DomainError
from models_registry.models import MLModel
from recipes.models import Recipe
from runs import artifacts, search
from runs import selectors as run_selectors
from runs.models import MetricPoint, Run, RunMetric, RunParam, RunTag

from . import protocol
from .models import ExperimentName, LoggedModel, ModelVersionSource
from .protocol import invalid, not_found

# The experiment MLflow's client uses when none is set ("Default"): the workspace has none.
DEFAULT_EXPERIMENT_ID = "0"


def recipe_for_experiment(user, experiment_id: str) -> Recipe:
    if experiment_id == DEFAULT_EXPERIMENT_ID:
        raise invalid(
            "experiment_id",
            "the workspace has no Default experiment: an experiment is a recipe; call "
            "mlflow.set_experiment('<recipe id>') before starting a run",
        )
    recipe = Recipe.objects.visible_to(user).filter(pk=experiment_id).first()
    if recipe is None:
        raise not_found(f"No experiment with id '{experiment_id[:200]}' (experiment ids are recipe ids).")
    return recipe


def recipe_for_name(user, name: str) -> Recipe | None:
    """The recipe an experiment name means: a recipe id, or a name create-experiment mapped
    onto a recipe with a ``recipe_id`` tag."""
    visible = Recipe.objects.visible_to(user)
    recipe = visible.filter(pk=name).first()
    if recipe is None:
        alias = ExperimentName.objects.filter(name=name, recipe__in=visible).select_related("recipe").first()
        recipe = alias.recipe if alias else None
    return recipe


def experiments(user, *, offset: int, limit: int) -> list[Recipe]:
    return list(Recipe.objects.visible_to(user).order_by("created_at", "id")[offset : offset + limit])


def run_for(user, run_id: str) -> Run:
    run = Run.objects.visible_to(user).select_related("recipe", "created_by").filter(pk=run_id).first()
    if run is None:
        raise not_found(f"Run '{str(run_id)[:200]}' not found.")
    return run


def with_data(runs) -> list[Run]:
    """Runs with their params, latest metrics and tags (three queries for any number of
    runs) and their logged models (`run.logged_models`)."""
    runs = list(
        runs.select_related("created_by", "recipe").prefetch_related(
            Prefetch("param_rows", queryset=RunParam.objects.order_by("key")),
            Prefetch("metric_rows", queryset=RunMetric.objects.order_by("key")),
            Prefetch("tag_rows", queryset=RunTag.objects.order_by("key")),
        )
    )
    by_run = defaultdict(list)
    for model in LoggedModel.objects.filter(run_id__in=[r.pk for r in runs]):
        by_run[model.run_id].append(model)
    for run in runs:
        run.logged_models = by_run[run.pk]
    return runs


def run_with_data(run: Run) -> Run:
    return with_data(Run.objects.filter(pk=run.pk))[0]


def run_tags(run: Run) -> dict[str, str]:
    """{key: value} of the run's tags (update-run's answer names the run and its user by them)."""
    return dict(RunTag.objects.filter(run_id=run.pk).values_list("key", "value"))


def metric_history(run: Run, key: str):
    return MetricPoint.objects.filter(run=run, key=key).order_by("step", "timestamp", "id")


def latest_metrics(run: Run) -> dict[str, float]:
    """{key: latest value} of the run's metrics (NaN ones left out: JSON has no NaN)."""
    return dict(RunMetric.objects.filter(run=run, is_nan=False).values_list("key", "value"))


def model_flavors(run: Run, directory: str) -> list[str]:
    """The flavors an MLflow model's MLmodel file (under `directory` of the run's artifacts)
    names, e.g. ["python_function", "sklearn"]; [] when there is no readable one."""
    name = f"{directory}/MLmodel" if directory else "MLmodel"
    try:
        meta = yaml.safe_load(artifacts.read_bytes(run.pk, run.artifacts_json, name).decode())
    except (DomainError, OSError, UnicodeDecodeError, yaml.YAMLError):
        return []
    flavors = meta.get("flavors") if isinstance(meta, dict) else None
    return sorted(flavors) if isinstance(flavors, dict) else []


def artifact_entries(run: Run, directory: str) -> list[tuple[str, bool, int | None]]:
    """The files and folders directly inside `directory` of the run's recorded artifacts:
    (name, is_dir, size). A file's own path lists nothing, as MLflow's stores answer."""
    files = (run.artifacts_json or {}).get("files") or {}
    prefix = f"{directory.strip('/')}/" if directory.strip("/") else ""
    entries: dict[str, tuple[bool, int | None]] = {}
    for name, entry in files.items():
        if not name.startswith(prefix):
            continue
        rest = name[len(prefix) :]
        head, sep, _ = rest.partition("/")
        if sep:
            entries[head] = (True, None)
        elif isinstance(entry, dict):
            entries[head] = (False, entry.get("size"))
    return sorted((name, is_dir, size) for name, (is_dir, size) in entries.items())


def logged_model_for(user, model_id: str) -> LoggedModel:
    model = LoggedModel.objects.visible_to(user).select_related("run").filter(pk=model_id).first()
    if model is None:
        raise not_found(f"Logged model '{str(model_id)[:200]}' not found.")
    return model


def logged_models(user, experiment_ids: Iterable[str]) -> list[LoggedModel]:
    return list(
        LoggedModel.objects.visible_to(user)
        .filter(run__recipe_id__in=list(experiment_ids))
        .select_related("run")
    )


def model_versions(user, name: str) -> list[tuple[int, MLModel, ModelVersionSource | None]]:
    """The workspace models named `name` the user may see, as MLflow's versions 1, 2, … of
    the registered model `name` (in registration order)."""
    models = list(
        MLModel.objects.visible_to(user)
        .filter(name=name)
        .select_related("training_run")
        .order_by("created_at", "id")
    )
    sources = {s.model_id: s for s in ModelVersionSource.objects.filter(model__in=models)}
    return [(i + 1, m, sources.get(m.pk)) for i, m in enumerate(models)]


def model_version(user, name: str, version: str):
    for number, model, source in model_versions(user, name):
        if str(number) == str(version):
            return number, model, source
    raise not_found(f"Model version {str(version)[:40]} of registered model '{name[:200]}' not found.")


def run_ids_imported(recipe: Recipe) -> set[str]:
    """The source run ids already imported into the recipe (the ``mlflow.importedRunId`` tag)."""
    return set(
        RunTag.objects.filter(run__recipe=recipe, key=protocol.IMPORTED_TAG).values_list("value", flat=True)
    )


def run_imported_as(recipe: Recipe, source_run_id: str) -> Run | None:
    tag = (
        RunTag.objects.filter(run__recipe=recipe, key=protocol.IMPORTED_TAG, value=source_run_id)
        .select_related("run")
        .first()
    )
    return tag.run if tag else None


def search_runs(
    user, *, experiment_ids: list[str], filter_text: str, order_by: list[str], offset: int, limit: int
):
    """search-runs: the runs of the experiments (recipes) named, filtered and ordered by the
    run search language (runs.search, the subset of MLflow's syntax the workspace supports;
    runs.selectors.run_search builds the query), one page of them with their data."""
    runs = Run.objects.visible_to(user).filter(recipe_id__in=experiment_ids)
    try:
        clauses = search.parse_filter(filter_text)
        order = search.parse_order_by(order_by)
        page = list(run_selectors.run_search(runs, filter=clauses, order_by=order)[offset : offset + limit])
    except search.SearchError as error:
        field = "filter" if error.parameter == "filter" else f"order_by[{error.item}]"
        raise invalid(field, str(error)) from None
    loaded = {r.pk: r for r in with_data(Run.objects.filter(pk__in=[r.pk for r in page]))}
    return [loaded[r.pk] for r in page]
