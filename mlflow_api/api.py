"""The MLflow tracking protocol's REST routes (``/mlflow/api/2.0/mlflow/...``, and the same
under ``/mlflow/ajax-api/``) over recipes and runs, so that an unchanged MLflow script logs to
the workspace with ``MLFLOW_TRACKING_URI=http://<workspace>/mlflow`` and
``MLFLOW_TRACKING_TOKEN=<its API token>``.

Every answer is MLflow's: a JSON object on success, ``{"error_code", "message"}`` with MLflow's
status on failure (mlflow_api.protocol), never a 500 for anything a client can send. The route
table below lists what is supported; any other MLflow route answers ENDPOINT_NOT_FOUND. The
artifact routes are in artifacts_api, the model registry and MLflow 3's logged models in
registry_api.
"""

from __future__ import annotations

from recipes import access
from runs import perms as run_perms
from runs import tracking as tracking_rules
from runs.services.tracking import now_ms

from . import protocol, selectors, serializers, services
from .http import check_run_write, page_size, unsupported_handler
from .protocol import MlflowError, invalid

# The longest experiment name stored (mlflow_api.models.ExperimentName.name).
NAME_LENGTH = 500

# ----------------------------------------------------------------------------- experiments


def experiment_get(request, user, body):
    recipe = selectors.recipe_for_experiment(user, protocol.string(body, "experiment_id", required=True))
    return {"experiment": serializers.experiment_json(recipe)}


def experiment_get_by_name(request, user, body):
    name = protocol.string(body, "experiment_name", required=True)
    recipe = selectors.recipe_for_name(user, name)
    if recipe is None:
        raise protocol.not_found(f"Could not find experiment with name '{name[:200]}'")
    return {"experiment": serializers.experiment_json(recipe, name)}


def experiment_create(request, user, body):
    """An experiment is a recipe: the name is a recipe id (the experiment exists already) or
    any name with a ``recipe_id`` tag (the name is mapped onto that recipe)."""
    name = protocol.string(body, "name", required=True, max_length=NAME_LENGTH)
    if protocol.string(body, "artifact_location"):
        raise invalid("artifact_location", "the workspace stores artifacts itself; leave it out")
    tags = {t["key"]: t["value"] for t in protocol.key_values(body, "tags")}
    recipe_id = tags.get(protocol.RECIPE_TAG) or name
    if not isinstance(recipe_id, str):
        raise invalid("tags.recipe_id", "must be a string")
    recipe = selectors.recipe_for_name(user, recipe_id)
    if recipe is None:
        raise protocol.not_found(
            f"No recipe '{recipe_id[:200]}': an experiment is a recipe. Name the experiment after "
            "a recipe id (mlflow.set_experiment('recipe_…')) or create it with the tag "
            "recipe_id=<recipe id> (mlflow.create_experiment(name, tags={'recipe_id': ...}))."
        )
    if name == recipe.pk or selectors.recipe_for_name(user, name) is not None:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Experiment '{name[:200]}' already exists.")
    access.check_write(user, recipe, run_perms.ADD_RUN)
    services.experiment_name_create(user=user, name=name, recipe=recipe)
    return {"experiment_id": recipe.pk}


def experiment_search(request, user, body):
    if protocol.string(body, "filter"):
        raise invalid("filter", "filtering experiments is not supported; list them all or use get-by-name")
    size = page_size(body, default=1000, most=1000)
    offset = protocol.page_offset(protocol.string(body, "page_token"))
    recipes = selectors.experiments(user, offset=offset, limit=size + 1)
    answer = {"experiments": [serializers.experiment_json(r) for r in recipes[:size]]}
    if len(recipes) > size:
        answer["next_page_token"] = protocol.page_token(offset + size)
    return answer


# ----------------------------------------------------------------------------- runs


def _run(user, body: dict):
    run_id = protocol.string(body, "run_id") or protocol.string(body, "run_uuid")
    if not run_id:
        raise invalid("run_id", "is required")
    return selectors.run_for(user, run_id)


def _writable_run(user, body: dict):
    run = _run(user, body)
    check_run_write(user, run)
    return run


def run_create(request, user, body):
    recipe = selectors.recipe_for_experiment(user, protocol.string(body, "experiment_id", required=True))
    access.check_write(user, recipe, run_perms.ADD_RUN)
    protocol.integer(body, "start_time")  # checked; the workspace dates the run itself
    tags = protocol.key_values(body, "tags")
    parent = None
    parent_id = next((t["value"] for t in tags if t["key"] == protocol.PARENT_RUN_TAG), None)
    if parent_id:
        parent = selectors.run_for(user, str(parent_id))
        if parent.recipe_id != recipe.pk:
            raise invalid("tags.mlflow.parentRunId", f"run '{parent.pk}' is in another experiment")
    run = services.run_create(
        user=user, recipe=recipe, run_name=protocol.string(body, "run_name"), tags=tags, parent=parent
    )
    return {"run": serializers.run_json(selectors.run_with_data(run))}


def run_get(request, user, body):
    return {"run": serializers.run_json(selectors.run_with_data(_run(user, body)))}


def run_update(request, user, body):
    run = _writable_run(user, body)
    status = protocol.string(body, "status") or None
    protocol.integer(body, "end_time")  # checked; the workspace dates the end itself
    run = services.run_update(user=user, run=run, status=status, run_name=protocol.string(body, "run_name"))
    # run_info needs the run's tags only (its name and user): not its params and metrics.
    return {"run_info": serializers.run_info_json(run, selectors.run_tags(run))}


def log_metric(request, user, body):
    run = _writable_run(user, body)
    point = protocol.metric(body, "", now_ms=now_ms())
    services.run_log(run=run, metrics=[point])
    return {}


def log_param(request, user, body):
    run = _writable_run(user, body)
    key = protocol.string(body, "key", required=True)
    services.run_log(run=run, params=[{"key": key, "value": protocol.string(body, "value")}])
    return {}


def set_tag(request, user, body):
    run = _writable_run(user, body)
    key = protocol.string(body, "key", required=True)
    services.run_log(run=run, tags=[{"key": key, "value": protocol.string(body, "value")}])
    return {}


def log_batch(request, user, body):
    """The workhorse (log_params, log_metrics, set_tags, autologging): one tracking_log call,
    all or nothing, within MLflow's batch limits."""
    run = _writable_run(user, body)
    now = now_ms()
    metrics = [
        protocol.metric(m, f"metrics[{i}]", now_ms=now) for i, m in enumerate(protocol.array(body, "metrics"))
    ]
    params = protocol.key_values(body, "params")
    tags = protocol.key_values(body, "tags")
    for name, items, most in (
        ("metrics", metrics, tracking_rules.MAX_BATCH_METRICS),
        ("params", params, tracking_rules.MAX_BATCH_PARAMS),
        ("tags", tags, tracking_rules.MAX_BATCH_TAGS),
    ):
        if len(items) > most:
            raise invalid(name, f"at most {most} per log-batch request, got {len(items)}")
    services.run_log(run=run, metrics=metrics, params=params, tags=tags)
    return {}


def log_inputs(request, user, body):
    """Dataset and model inputs (log_input, autologging): accepted and not stored — the
    workspace records a run's dataset itself when the workspace runs it."""
    _writable_run(user, body)
    protocol.array(body, "datasets")
    protocol.array(body, "models")
    return {}


def metric_history(request, user, body):
    run = _run(user, body)
    key = protocol.string(body, "metric_key", required=True)
    size = page_size(body, default=25_000, most=25_000)
    offset = protocol.page_offset(protocol.string(body, "page_token"))
    points = list(selectors.metric_history(run, key)[offset : offset + size + 1])
    answer = {
        "metrics": [
            serializers.metric_json(p.key, p.value, p.is_nan, p.timestamp, p.step) for p in points[:size]
        ]
    }
    if len(points) > size:
        answer["next_page_token"] = protocol.page_token(offset + size)
    return answer


def run_search(request, user, body):
    experiment_ids = protocol.array(body, "experiment_ids")
    if not all(isinstance(e, str) for e in experiment_ids):
        raise invalid("experiment_ids", "must be an array of strings")
    order_by = protocol.array(body, "order_by")
    if not all(isinstance(o, str) for o in order_by):
        raise invalid("order_by", "must be an array of strings")
    size = page_size(body, default=1000, most=50_000)
    offset = protocol.page_offset(protocol.string(body, "page_token"))
    view = body.get("run_view_type") or "ACTIVE_ONLY"
    if view not in ("ACTIVE_ONLY", "DELETED_ONLY", "ALL", 1, 2, 3):
        raise invalid("run_view_type", "must be ACTIVE_ONLY, DELETED_ONLY or ALL")
    if view in ("DELETED_ONLY", 2):  # runs are never deleted in the workspace
        return {"runs": []}
    runs = selectors.search_runs(
        user,
        experiment_ids=experiment_ids,
        filter_text=protocol.string(body, "filter"),
        order_by=order_by,
        offset=offset,
        limit=size + 1,
    )
    answer = {"runs": [serializers.run_json(r) for r in runs[:size]]}
    if len(runs) > size:
        answer["next_page_token"] = protocol.page_token(offset + size)
    return answer


NO_DELETE = (
    "Runs are the workspace's record and are never deleted; end a live run with "
    "mlflow.end_run(status='KILLED') (it becomes cancelled)."
)

# (endpoint pattern under /api/2.0/mlflow/, method, handler): the tracking routes.
ROUTES = [
    (r"experiments/get", "GET", experiment_get),
    (r"experiments/get-by-name", "GET", experiment_get_by_name),
    (r"experiments/create", "POST", experiment_create),
    (r"experiments/search", "POST", experiment_search),
    (r"experiments/search", "GET", experiment_search),
    (
        r"experiments/(?:delete|restore|update)",
        "POST",
        unsupported_handler("Changing experiments", "An experiment is a recipe: change it in the workspace."),
    ),
    (
        r"experiments/(?:set|delete)-experiment-tag",
        "POST",
        unsupported_handler("Experiment tags", "An experiment is a recipe: tag it in the workspace."),
    ),
    (r"runs/create", "POST", run_create),
    (r"runs/get", "GET", run_get),
    (r"runs/update", "POST", run_update),
    (r"runs/delete", "POST", unsupported_handler("Deleting runs", NO_DELETE)),
    (r"runs/restore", "POST", unsupported_handler("Restoring runs", NO_DELETE)),
    (r"runs/log-metric", "POST", log_metric),
    (r"runs/log-parameter", "POST", log_param),
    (r"runs/set-tag", "POST", set_tag),
    (
        r"runs/delete-tag",
        "POST",
        unsupported_handler("Deleting run tags", "Set the tag to another value instead."),
    ),
    (r"runs/log-batch", "POST", log_batch),
    (r"runs/log-inputs", "POST", log_inputs),
    (r"runs/search", "POST", run_search),
    (r"metrics/get-history", "GET", metric_history),
]
