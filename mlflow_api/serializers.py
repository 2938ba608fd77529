"""The workspace's rows in MLflow's JSON (the proto3 JSON of mlflow/protos/service.proto and
model_registry.proto, snake_case, int64 as numbers): what the routes answer with."""

from __future__ import annotations

from models_registry.models import MLModel
from recipes.models import Recipe
from runs.models import Run

from . import protocol
from .models import LoggedModel, ModelVersionSource

ms = protocol.ms_of


def _drop_none(data: dict) -> dict:
    return {k: v for k, v in data.items() if v is not None}


def experiment_json(recipe: Recipe, name: str | None = None) -> dict:
    tags = [
        {"key": protocol.RECIPE_TAG, "value": recipe.pk},
        {"key": "recipe_name", "value": recipe.name},
        {"key": "model_family", "value": recipe.model_family},
    ]
    if recipe.description:
        tags.append({"key": "mlflow.note.content", "value": recipe.description})
    return {
        "experiment_id": recipe.pk,
        "name": name or recipe.pk,
        "artifact_location": f"mlflow-artifacts:/experiments/{recipe.pk}",
        "lifecycle_stage": "active",
        "creation_time": ms(recipe.created_at),
        "last_update_time": ms(recipe.updated_at),
        "tags": tags,
    }


def metric_json(key: str, value, is_nan: bool, timestamp: int, step: int) -> dict:
    return {"key": key, "value": protocol.json_number(value, is_nan), "timestamp": timestamp, "step": step}


def run_info_json(run: Run, tags: dict[str, str]) -> dict:
    return _drop_none(
        {
            "run_id": run.pk,
            "run_uuid": run.pk,
            "run_name": tags.get(protocol.RUN_NAME_TAG) or run.name,
            "experiment_id": run.recipe_id,
            "user_id": tags.get(protocol.USER_TAG)
            or (run.created_by.get_username() if run.created_by_id else ""),
            "status": protocol.RUN_STATUS[run.status],
            "start_time": ms(run.started_at or run.created_at),
            "end_time": ms(run.finished_at),
            "artifact_uri": protocol.run_artifact_uri(run.pk),
            "lifecycle_stage": "active",
        }
    )


def run_json(run: Run) -> dict:
    """A run from selectors.with_data (its rows prefetched)."""
    tags = {t.key: t.value for t in run.tag_rows.all()}
    outputs = [
        _drop_none({"model_id": m.pk, "step": m.output_step})
        for m in getattr(run, "logged_models", [])
        if m.output_step is not None
    ]
    return {
        "info": run_info_json(run, tags),
        "data": {
            "metrics": [
                metric_json(m.key, m.value, m.is_nan, m.timestamp, m.step) for m in run.metric_rows.all()
            ],
            "params": [{"key": p.key, "value": p.value} for p in run.param_rows.all()],
            "tags": [{"key": k, "value": v} for k, v in tags.items()],
        },
        "inputs": {},
        "outputs": {"model_outputs": outputs},
    }


def logged_model_json(model: LoggedModel) -> dict:
    run = model.run
    return {
        "info": {
            "model_id": model.pk,
            "experiment_id": run.recipe_id,
            "name": model.name,
            "creation_timestamp_ms": ms(model.created_at),
            "last_updated_timestamp_ms": ms(model.updated_at),
            "artifact_uri": f"{protocol.run_artifact_uri(run.pk)}/{protocol.logged_model_dir(model.pk)}",
            "status": model.status,
            "model_type": model.model_type,
            "source_run_id": run.pk,
            "tags": [{"key": k, "value": v} for k, v in sorted(model.tags_json.items())],
        },
        "data": {
            "params": [{"key": k, "value": v} for k, v in sorted(model.params_json.items())],
            "metrics": [],
        },
    }


def model_version_json(number: int, model: MLModel, source: ModelVersionSource | None) -> dict:
    return _drop_none(
        {
            "name": model.name,
            "version": str(number),
            "creation_timestamp": ms(model.created_at),
            "last_updated_timestamp": ms(model.updated_at),
            "user_id": model.owner,
            "current_stage": "None",
            "description": model.description,
            "source": source.source if source else "",
            "run_id": model.training_run_id or "",
            "status": "READY",
            "model_id": source.logged_model_id if source else None,
            "tags": [
                {"key": "workspace_model_id", "value": model.pk},
                {"key": "workspace_status", "value": model.status},
            ],
        }
    )


def registered_model_json(name: str, versions: list) -> dict:
    """`versions`: selectors.model_versions (number, model, source); the latest is listed."""
    first, last = versions[0][1], versions[-1]
    return {
        "name": name,
        "creation_timestamp": ms(first.created_at),
        "last_updated_timestamp": ms(last[1].updated_at),
        "description": "",
        "latest_versions": [model_version_json(*last)],
        "tags": [],
    }
