"""MLflow 3's logged models (what ``mlflow.<flavor>.log_model`` creates before uploading the
model's files) and the model registry subset ``register_model`` / ``log_model(...,
registered_model_name=...)`` use, over the workspace's registry.

A registered model is a name: its versions 1, 2, … are the workspace models (MLModel) of that
name the caller may see, in registration order. Creating a version registers a workspace model
with ``models_registry.services.model_register`` for the recipe version of the run the model
was logged in (which must be approved, as for any registration), its training run that run.
"""

from __future__ import annotations

import re

from models_registry import perms as model_perms
from recipes import access
from runs.services.tracking import now_ms

from . import protocol, selectors, serializers, services
from .http import check_run_write, page_size, unsupported_handler
from .models import LoggedModelStatus
from .protocol import MlflowError, invalid

# ----------------------------------------------------------------------------- logged models


def _pairs(body: dict, field: str) -> dict[str, str]:
    out = {}
    for i, item in enumerate(protocol.key_values(body, field)):
        if not isinstance(item["value"], str):
            raise invalid(f"{field}[{i}].value", "must be a string")
        out[item["key"]] = item["value"]
    return out


def logged_model_create(request, user, body):
    run_id = protocol.string(body, "source_run_id")
    if not run_id:
        raise invalid(
            "source_run_id",
            "the workspace keeps a logged model with the run it was logged in: call log_model "
            "inside mlflow.start_run()",
        )
    run = selectors.run_for(user, run_id)
    check_run_write(user, run)
    experiment_id = protocol.string(body, "experiment_id")
    if experiment_id and experiment_id != run.recipe_id:
        raise invalid("experiment_id", f"run '{run.pk}' is in experiment '{run.recipe_id}'")
    model = services.logged_model_create(
        user=user,
        run=run,
        name=protocol.string(body, "name", max_length=500),
        model_type=protocol.string(body, "model_type", max_length=500),
        params=_pairs(body, "params"),
        tags=_pairs(body, "tags"),
    )
    return {"model": serializers.logged_model_json(model)}


def _writable_model(user, model_id: str):
    model = selectors.logged_model_for(user, model_id)
    check_run_write(user, model.run)
    return model


def logged_model_get(request, user, body, model_id: str):
    return {"model": serializers.logged_model_json(selectors.logged_model_for(user, model_id))}


def logged_model_finalize(request, user, body, model_id: str):
    status = body.get("status")
    if isinstance(status, int):  # the enum's number
        numbers = {1: LoggedModelStatus.PENDING, 2: LoggedModelStatus.READY, 3: LoggedModelStatus.FAILED}
        status = numbers.get(status, str(status))
    if status not in LoggedModelStatus.values:
        raise invalid("status", f"must be one of {', '.join(LoggedModelStatus.values)}")
    model = services.logged_model_update(user=user, model=_writable_model(user, model_id), status=status)
    return {"model": serializers.logged_model_json(model)}


def logged_model_set_tags(request, user, body, model_id: str):
    model = services.logged_model_update(
        user=user, model=_writable_model(user, model_id), tags=_pairs(body, "tags")
    )
    return {"model": serializers.logged_model_json(model)}


def logged_model_delete_tag(request, user, body, model_id: str, tag_key: str):
    services.logged_model_update(user=user, model=_writable_model(user, model_id), delete_tag=tag_key)
    return {}


def logged_model_params(request, user, body, model_id: str):
    services.logged_model_update(
        user=user, model=_writable_model(user, model_id), params=_pairs(body, "params")
    )
    return {}


def logged_model_search(request, user, body):
    if protocol.string(body, "filter") or protocol.array(body, "datasets"):
        raise invalid(
            "filter", "searching logged models by a filter is not supported; list them per experiment"
        )
    experiment_ids = protocol.array(body, "experiment_ids")
    if not experiment_ids or not all(isinstance(e, str) for e in experiment_ids):
        raise invalid("experiment_ids", "must be a non-empty array of experiment ids")
    size = page_size(body, default=100, most=1000)
    offset = protocol.page_offset(protocol.string(body, "page_token"))
    models = selectors.logged_models(user, experiment_ids)[offset : offset + size + 1]
    answer = {"models": [serializers.logged_model_json(m) for m in models[:size]]}
    if len(models) > size:
        answer["next_page_token"] = protocol.page_token(offset + size)
    return answer


def log_outputs(request, user, body):
    """A run's output models (log_model links the model it logged at a step)."""
    run_id = protocol.string(body, "run_id", required=True)
    run = selectors.run_for(user, run_id)
    check_run_write(user, run)
    for i, item in enumerate(protocol.array(body, "models")):
        if not isinstance(item, dict) or not isinstance(item.get("model_id"), str):
            raise invalid(f"models[{i}].model_id", "is required")
        model = selectors.logged_model_for(user, item["model_id"])
        if model.run_id != run.pk:
            raise invalid(f"models[{i}].model_id", f"model '{model.pk}' was logged in another run")
        step = protocol.integer(item, "step", default=0)
        services.logged_model_update(user=user, model=model, output_step=step)
    return {}


# ----------------------------------------------------------------------------- registry

# The longest workspace model name (models_registry.models.MLModel.name).
MODEL_NAME_LENGTH = 200
_MODELS_URI = re.compile(r"models:/(m-[0-9a-f]{32})(?:/.*)?")
_RUNS_URI = re.compile(r"runs:/([^/]+)(?:/(.*))?")
_ARTIFACT_URI = re.compile(r"mlflow-artifacts:/" + protocol.ARTIFACT_PREFIX + r"/([^/]+)(?:/(.*))?")


def registered_model_create(request, user, body):
    """A registered model is a name; it exists in the workspace once it has a version (a
    registered workspace model), so creating one stores nothing."""
    name = protocol.string(body, "name", required=True, max_length=MODEL_NAME_LENGTH).strip()
    if not name:
        raise invalid("name", "is required")
    if not (user.has_perm(model_perms.ADD_MODEL) or access.has_write_role_somewhere(user)):
        raise MlflowError(
            "PERMISSION_DENIED", f"Registering models needs the {model_perms.ADD_MODEL} permission."
        )
    versions = selectors.model_versions(user, name)
    if versions:
        raise MlflowError("RESOURCE_ALREADY_EXISTS", f"Registered Model (name={name}) already exists.")
    now = now_ms()
    return {"registered_model": {"name": name, "creation_timestamp": now, "last_updated_timestamp": now}}


def _versions(user, name: str):
    versions = selectors.model_versions(user, name)
    if not versions:
        raise protocol.not_found(f"Registered Model with name={name[:200]} not found")
    return versions


def registered_model_get(request, user, body):
    name = protocol.string(body, "name", required=True)
    return {"registered_model": serializers.registered_model_json(name, _versions(user, name))}


def latest_versions(request, user, body):
    name = protocol.string(body, "name", required=True)
    return {"model_versions": [serializers.model_version_json(*_versions(user, name)[-1])]}


def _source_run(user, body: dict):
    """The run, logged model and folder (of the run's artifacts) a new version's source
    names."""
    source = protocol.string(body, "source", required=True)
    model_id = protocol.string(body, "model_id")
    logged, directory = None, ""
    match = _MODELS_URI.fullmatch(source)
    if model_id or match:
        logged = selectors.logged_model_for(user, model_id or match.group(1))
        run, directory = logged.run, protocol.logged_model_dir(logged.pk)
    else:
        match = _RUNS_URI.fullmatch(source) or _ARTIFACT_URI.fullmatch(source)
        directory = (match.group(2) or "").strip("/") if match else ""
        run_id = protocol.string(body, "run_id") or (match.group(1) if match else "")
        if not run_id:
            raise invalid(
                "source",
                "must name a model logged in a workspace run: models:/<model id>, "
                "runs:/<run id>/<path> or the run's mlflow-artifacts URI",
            )
        run = selectors.run_for(user, run_id)
    run_id = protocol.string(body, "run_id")
    if run_id and run_id != run.pk:
        raise invalid("run_id", f"the source was logged in run '{run.pk}'")
    return source, run, logged, directory


def model_version_create(request, user, body):
    name = protocol.string(body, "name", required=True, max_length=MODEL_NAME_LENGTH).strip()
    source, run, logged, directory = _source_run(user, body)
    access.check_write(user, run.recipe, model_perms.ADD_MODEL)
    model = services.model_version_create(
        user=user,
        name=name,
        run=run,
        source=source,
        logged_model=logged,
        directory=directory,
        description=protocol.string(body, "description"),
    )
    number, model, origin = next(v for v in selectors.model_versions(user, name) if v[1].pk == model.pk)
    return {"model_version": serializers.model_version_json(number, model, origin)}


def model_version_get(request, user, body):
    name = protocol.string(body, "name", required=True)
    version = protocol.string(body, "version", required=True)
    return {"model_version": serializers.model_version_json(*selectors.model_version(user, name, version))}


def model_version_download_uri(request, user, body):
    name = protocol.string(body, "name", required=True)
    version = protocol.string(body, "version", required=True)
    _, model, origin = selectors.model_version(user, name, version)
    if origin and origin.logged_model_id:
        path = protocol.logged_model_dir(origin.logged_model_id)
        return {"artifact_uri": f"{protocol.run_artifact_uri(model.training_run_id)}/{path}"}
    if model.training_run_id:
        return {"artifact_uri": protocol.run_artifact_uri(model.training_run_id)}
    raise protocol.not_found(f"Model version {version} of '{name}' has no artifacts.")


_NO_REGISTRY_CHANGE = unsupported_handler(
    "Changing the registry through MLflow",
    "Move, rename or archive the model in the workspace (its lifecycle is the workspace's).",
)
_KEEPS = unsupported_handler("Deleting logged models", "They are kept with their run.")

ROUTES = [
    (r"logged-models", "POST", logged_model_create),
    (r"logged-models/search", "POST", logged_model_search),
    (r"logged-models/(?P<model_id>[^/]+)", "GET", logged_model_get),
    (r"logged-models/(?P<model_id>[^/]+)", "PATCH", logged_model_finalize),
    (r"logged-models/(?P<model_id>[^/]+)", "DELETE", _KEEPS),
    (r"logged-models/(?P<model_id>[^/]+)/tags", "PATCH", logged_model_set_tags),
    (r"logged-models/(?P<model_id>[^/]+)/tags/(?P<tag_key>.+)", "DELETE", logged_model_delete_tag),
    (r"logged-models/(?P<model_id>[^/]+)/params", "POST", logged_model_params),
    (r"runs/outputs", "POST", log_outputs),
    (r"registered-models/create", "POST", registered_model_create),
    (r"registered-models/get", "GET", registered_model_get),
    (r"registered-models/get-latest-versions", "POST", latest_versions),
    (r"registered-models/get-latest-versions", "GET", latest_versions),
    (r"model-versions/create", "POST", model_version_create),
    (r"model-versions/get", "GET", model_version_get),
    (r"model-versions/get-download-uri", "GET", model_version_download_uri),
    (r"registered-models/(?:rename|update|delete|set-tag|delete-tag|alias)", "POST", _NO_REGISTRY_CHANGE),
    (r"registered-models/(?:update|delete|delete-tag|alias)", "PATCH", _NO_REGISTRY_CHANGE),
    (r"registered-models/(?:delete|delete-tag|alias)", "DELETE", _NO_REGISTRY_CHANGE),
    (r"model-versions/(?:update|transition-stage|set-tag)", "POST", _NO_REGISTRY_CHANGE),
    (r"model-versions/update", "PATCH", _NO_REGISTRY_CHANGE),
    (r"model-versions/(?:delete|delete-tag)", "DELETE", _NO_REGISTRY_CHANGE),
]
