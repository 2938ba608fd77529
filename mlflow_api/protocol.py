"""The MLflow tracking protocol's vocabulary, with no Django import: its error shape and codes,
the field readers every route uses (each error names the field, as MLflow's server does), the
status names, the ids and URIs this workspace answers with.

The routes (mlflow_api.api) read requests with these and call the services; the services and
the import/export (mlflow_api.mlruns) use the status maps. Everything here is checked before a
service writes anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import re
from datetime import datetime
from typing import Any
from urllib.parse import unquote

# MLflow's error codes and the HTTP status this server answers them with. MLflow's own server
# answers INVALID_STATE with 500, which its client retries (with back-off) before failing;
# refusing to log to a finished run is the caller's mistake, so it is a 400 here.
STATUS_OF = {
    "INVALID_PARAMETER_VALUE": 400,
    "BAD_REQUEST": 400,
    "INVALID_STATE": 400,
    "RESOURCE_ALREADY_EXISTS": 400,
    "UNAUTHENTICATED": 401,
    "PERMISSION_DENIED": 403,
    "RESOURCE_DOES_NOT_EXIST": 404,
    "ENDPOINT_NOT_FOUND": 404,
    "REQUEST_LIMIT_EXCEEDED": 413,
    "TEMPORARILY_UNAVAILABLE": 503,
}


class MlflowError(Exception):
    """An answer in MLflow's error shape: ``{"error_code": ..., "message": ...}``."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code
        self.message = message
        self.status = STATUS_OF.get(code, 400)

    def as_json(self) -> dict:
        return {"error_code": self.code, "message": self.message}


def invalid(field: str, message: str) -> MlflowError:
    return MlflowError("INVALID_PARAMETER_VALUE", f"Invalid value for '{field}': {message}")


def not_found(message: str) -> MlflowError:
    return MlflowError("RESOURCE_DOES_NOT_EXIST", message)


def unsupported(what: str, instead: str = "") -> MlflowError:
    """An MLflow operation this workspace does not offer: 404 ENDPOINT_NOT_FOUND, as MLflow's
    server answers a route it does not have, with what to do instead."""
    return MlflowError(
        "ENDPOINT_NOT_FOUND",
        f"{what} is not supported by the workspace's MLflow API.{' ' + instead if instead else ''}",
    )


# ----------------------------------------------------------------------------- fields

_INT = re.compile(r"-?\d{1,19}")
_SPECIAL_FLOATS = {
    "nan": math.nan,
    "infinity": math.inf,
    "inf": math.inf,
    "-infinity": -math.inf,
    "-inf": -math.inf,
}


def string(
    body: dict, field: str, *, required: bool = False, default: str = "", max_length: int | None = None
) -> str:
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise invalid(field, "is required")
        return default
    if not isinstance(value, str):
        raise invalid(field, f"must be a string, got {type(value).__name__}")
    if max_length is not None and len(value) > max_length:
        raise invalid(field, f"must be at most {max_length} characters")
    return value


def integer(body: dict, field: str, *, required: bool = False, default: int | None = None) -> int | None:
    """An int64 field: a JSON number without a fraction or its decimal text (proto3's JSON
    writes int64 as a string; MLflow's client writes a number; a GET query gives text)."""
    value = body.get(field)
    if value is None or value == "":
        if required:
            raise invalid(field, "is required")
        return default
    if isinstance(value, bool):
        raise invalid(field, "must be an integer, got a boolean")
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip())
    raise invalid(field, f"must be an integer, got {str(value)[:40]!r}")


def number(value: Any, field: str) -> float:
    """A double: a JSON number, or proto3's JSON text for the special values ("NaN",
    "Infinity", "-Infinity") and a number's text."""
    if isinstance(value, bool) or value is None:
        raise invalid(field, "must be a number")
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        special = _SPECIAL_FLOATS.get(value.strip().lower())
        if special is not None:
            return special
        try:
            return float(value)
        except ValueError:
            pass
    raise invalid(field, f"must be a number, got {str(value)[:40]!r}")


def array(body: dict, field: str) -> list:
    value = body.get(field)
    if value is None:
        return []
    if not isinstance(value, list):
        raise invalid(field, f"must be an array, got {type(value).__name__}")
    return value


def key_values(body: dict, field: str) -> list[dict]:
    """A repeated {key, value} message (tags, params): each an object with a string key."""
    out = []
    for i, item in enumerate(array(body, field)):
        if not isinstance(item, dict):
            raise invalid(f"{field}[{i}]", "must be an object with 'key' and 'value'")
        key = item.get("key")
        if not isinstance(key, str) or not key:
            raise invalid(f"{field}[{i}].key", "is required and must be a string")
        value = item.get("value", "")
        if value is None:
            value = ""
        out.append({"key": key, "value": value})
    return out


def metric(item: Any, field: str, *, now_ms: int) -> dict:
    """A metric message -> the {key, value, timestamp, step} runs.services.tracking_log takes.
    `field` names it in errors ("metrics[3]"; "" for log-metric's top-level fields)."""

    def name(part: str) -> str:
        return f"{field}.{part}" if field else part

    if not isinstance(item, dict):
        raise invalid(field or "body", "must be an object with 'key', 'value', 'timestamp' and 'step'")
    key = item.get("key")
    if not isinstance(key, str) or not key:
        raise invalid(name("key"), "is required and must be a string")
    if "value" not in item:
        raise invalid(name("value"), "is required")
    out = {"key": key, "value": number(item.get("value"), name("value"))}
    for part, default in (("timestamp", now_ms), ("step", 0)):
        try:
            out[part] = integer(item, part, default=default)
        except MlflowError:
            raise invalid(name(part), f"must be an integer, got {str(item.get(part))[:40]!r}") from None
    return out


def json_number(value: float | None, is_nan: bool = False) -> float | str:
    """A double as proto3's JSON writes it (strict JSON has no NaN or Infinity)."""
    if is_nan or value is None or (isinstance(value, float) and math.isnan(value)):
        return "NaN"
    if math.isinf(value):
        return "Infinity" if value > 0 else "-Infinity"
    return value


def ms_of(moment: datetime | None) -> int | None:
    """A time as MLflow's milliseconds since the epoch."""
    return int(moment.timestamp() * 1000) if moment else None


# ----------------------------------------------------------------------------- statuses

# A run's workspace status -> MLflow's RunStatus, and the statuses MLflow's update-run may set.
RUN_STATUS = {
    "queued": "SCHEDULED",
    "running": "RUNNING",
    "succeeded": "FINISHED",
    "failed": "FAILED",
    "cancelled": "KILLED",
}
WORKSPACE_STATUS = {value: key for key, value in RUN_STATUS.items()}
# The int a FileStore's meta.yaml writes for each status (mlflow's RunStatus enum).
STATUS_NUMBER = {"RUNNING": 1, "SCHEDULED": 2, "FINISHED": 3, "FAILED": 4, "KILLED": 5}
STATUS_NAME = {number: name for name, number in STATUS_NUMBER.items()}

# Tags MLflow's client reads (mlflow.utils.mlflow_tags).
RUN_NAME_TAG = "mlflow.runName"
PARENT_RUN_TAG = "mlflow.parentRunId"
USER_TAG = "mlflow.user"
IMPORTED_TAG = "mlflow.importedRunId"
RECIPE_TAG = "recipe_id"


# ----------------------------------------------------------------------------- artifact URIs

# A run's artifacts: mlflow-artifacts:/runs/<run id>/<path>; a logged model's files are under
# its run's, in models/<model id>/artifacts/ (as MLflow's server lays them out per experiment).
ARTIFACT_PREFIX = "runs"
_SAFE_PART = re.compile(r"[^\x00-\x1f\\]+")


def run_artifact_uri(run_id: str) -> str:
    return f"mlflow-artifacts:/{ARTIFACT_PREFIX}/{run_id}"


def logged_model_dir(model_id: str) -> str:
    return f"models/{model_id}/artifacts"


def split_artifact_path(path: str) -> tuple[str, str]:
    """``runs/<run id>/a/b.txt`` -> (run id, "a/b.txt"), refusing anything that could leave
    the run's folder: ``..``, ``.``, absolute parts, backslashes, control characters, or the
    percent-encoded forms of those (a proxy may decode once more)."""
    text = path or ""
    for _ in range(3):  # %252e%252e -> %2e%2e -> ..
        if "%" not in text:
            break
        text = unquote(text)
    parts = text.strip("/").split("/") if text.strip("/") else []
    if len(parts) < 2 or parts[0] != ARTIFACT_PREFIX:
        raise invalid("path", f"must start with '{ARTIFACT_PREFIX}/<run id>/' (the run's artifact_uri)")
    for part in parts:
        if part in ("", ".", "..") or not _SAFE_PART.fullmatch(part):
            raise invalid("path", f"'{path[:200]}' is not a safe relative artifact path")
    return parts[1], "/".join(parts[2:])


# ----------------------------------------------------------------------------- paging


def page_token(offset: int) -> str:
    return base64.urlsafe_b64encode(json.dumps({"offset": offset}).encode()).decode()


def page_offset(token: str) -> int:
    if not token:
        return 0
    try:
        offset = json.loads(base64.urlsafe_b64decode(token.encode()))["offset"]
    except (ValueError, KeyError, TypeError, binascii.Error):
        raise invalid("page_token", "is not a token this server gave") from None
    if isinstance(offset, bool) or not isinstance(offset, int) or offset < 0:
        raise invalid("page_token", "is not a token this server gave")
    return offset
