"""The plumbing of the MLflow routes: who is calling (a token or a password), the request's
fields (a GET's query or a JSON body), and every failure answered in MLflow's error shape
(``{"error_code", "message"}``, mlflow_api.protocol) with the workspace's own errors
(mlworkspace.errors, Django's 404 and 403) translated."""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable

from django.conf import settings
from django.contrib.auth import authenticate
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.http import Http404, JsonResponse
from rest_framework.authtoken.models import Token

from mlworkspace.errors import Conflict, DomainError, InvalidInput, NotFound, TooLarge
from mlworkspace.jsondepth import too_deep_in_text
from recipes import access
from runs import perms as run_perms

from . import protocol
from .protocol import MlflowError, invalid, unsupported

# A route's handler: (request, user, body, **path parts) -> a JSON object or a response.
Handler = Callable[..., object]


def _user(request):
    """The user of `Authorization: Bearer <token>` (the workspace API token MLflow's client
    sends from MLFLOW_TRACKING_TOKEN; `Token <token>` works too) or `Basic` with a username
    and password (MLFLOW_TRACKING_USERNAME / MLFLOW_TRACKING_PASSWORD)."""
    scheme, _, credentials = request.META.get("HTTP_AUTHORIZATION", "").partition(" ")
    credentials = credentials.strip()
    user = None
    if scheme.lower() in ("bearer", "token") and credentials:
        token = Token.objects.select_related("user").filter(key=credentials).first()
        user = token.user if token else None
    elif scheme.lower() == "basic" and credentials:
        try:
            username, _, password = base64.b64decode(credentials).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError):
            username = password = ""
        user = authenticate(request, username=username, password=password) if username else None
    if user is None or not user.is_active:
        raise MlflowError(
            "UNAUTHENTICATED",
            "Authenticate with your workspace API token: MLFLOW_TRACKING_TOKEN=<token> "
            "(or MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD).",
        )
    return user


def request_body(request) -> dict:
    """A GET's query (a repeated field gives a list) or a JSON object body."""
    if request.method in ("GET", "DELETE") and not request.body:
        return {k: (v if len(v) > 1 else v[0]) for k, v in request.GET.lists()}
    if not request.body:
        return {}
    if too_deep_in_text(request.body, settings.JSON_MAX_DEPTH):
        raise invalid("body", f"nests deeper than {settings.JSON_MAX_DEPTH} levels")
    try:
        body = json.loads(request.body)
    except (ValueError, UnicodeDecodeError) as error:
        raise invalid("body", f"is not JSON ({error})") from None
    if not isinstance(body, dict):
        raise invalid("body", "must be a JSON object")
    return body


def _translate(error: Exception) -> MlflowError:
    """A workspace error (mlworkspace.errors, Django's) as MLflow's."""
    if isinstance(error, InvalidInput):
        return MlflowError("INVALID_PARAMETER_VALUE", error.detail)
    if isinstance(error, Conflict):
        return MlflowError("INVALID_STATE", error.detail)
    if isinstance(error, (NotFound, Http404)):
        return MlflowError("RESOURCE_DOES_NOT_EXIST", getattr(error, "detail", None) or "Not found.")
    if isinstance(error, TooLarge):
        return MlflowError("REQUEST_LIMIT_EXCEEDED", error.detail)
    if isinstance(error, PermissionDenied):
        return MlflowError("PERMISSION_DENIED", str(error) or "You may not change this.")
    if isinstance(error, RequestDataTooBig):
        return MlflowError("REQUEST_LIMIT_EXCEEDED", "The request body is too large.")
    return MlflowError("BAD_REQUEST", str(error))


def error_response(error: MlflowError) -> JsonResponse:
    response = JsonResponse(error.as_json(), status=error.status)
    if error.code == "UNAUTHENTICATED":
        response["WWW-Authenticate"] = 'Bearer realm="mlflow"'
    return response


def serve(request, handler: Handler, *, read_body: bool = True, **kwargs):
    """Authenticate, read the body (not for an upload: the handler streams it), run the
    handler; every failure in MLflow's shape."""
    try:
        user = _user(request)
        result = handler(request, user, request_body(request) if read_body else {}, **kwargs)
    except MlflowError as error:
        return error_response(error)
    except (DomainError, Http404, PermissionDenied, RequestDataTooBig) as error:
        return error_response(_translate(error))
    return result if not isinstance(result, dict) else JsonResponse(result)


def check_run_write(user, run) -> None:
    """Logging to a run is reporting it: the permission the workspace API's PUT /runs/{id}
    needs (a write role in a client's recipe, runs.change_run for a firm one)."""
    access.check_write(user, run, run_perms.CHANGE_RUN)


def page_size(body: dict, *, default: int, most: int, field: str = "max_results") -> int:
    value = protocol.integer(body, field, default=default)
    if value < 1 or value > most:
        raise invalid(field, f"must be between 1 and {most}")
    return value


def unsupported_handler(what: str, instead: str = "") -> Handler:
    """A route MLflow has and the workspace does not offer: ENDPOINT_NOT_FOUND, saying why."""

    def handler(request, user, body, **kwargs):
        raise unsupported(what, instead)

    return handler


def endpoint_not_found(request) -> JsonResponse:
    return error_response(
        MlflowError(
            "ENDPOINT_NOT_FOUND",
            f"{request.method} {request.path[:300]} is not supported by the workspace's MLflow API.",
        )
    )
