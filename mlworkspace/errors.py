"""One error shape for the whole API: {"detail": str, "errors": [{"path": ..., "message": ...}]}.

Services raise the domain errors below (never DRF exceptions, so the chat assistant,
admin actions and management commands can call them too); `exception_handler` turns
them — and DRF's own errors — into that shape with the right status code.
"""

from __future__ import annotations

from django.conf import settings
from django.core.exceptions import PermissionDenied, RequestDataTooBig
from django.db.models import QuerySet
from django.http import Http404
from rest_framework import exceptions as drf_exceptions
from rest_framework import status
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from .redact import default_roots, redact_paths


class DomainError(Exception):
    status_code = status.HTTP_400_BAD_REQUEST

    def __init__(self, detail: str, errors: list[dict] | None = None):
        # Messages often quote an exception (pandas, pyarrow, open()) that names a file by
        # its absolute path: users see the file name, never the server's folders.
        detail = server_redact(detail)
        super().__init__(detail)
        self.detail = detail
        self.errors = [
            {**e, "message": server_redact(e["message"])} if isinstance(e.get("message"), str) else e
            for e in errors or []
        ]


def server_redact(text):
    """`text` with absolute paths under the server's folders (the project, MEDIA_ROOT, the
    data and work folders, the interpreter, temp, home) cut to their file names (mlworkspace.redact)."""
    if not isinstance(text, str) or "/" not in text:
        return text
    extra = (
        getattr(settings, "MEDIA_ROOT", None),
        getattr(settings, "DATA_DIR", None),
        getattr(settings, "WORK_DIR", None),
    )
    return redact_paths(text, default_roots(*extra))


class InvalidInput(DomainError):
    """400: the request is well-formed but its content breaks a rule (errors name the fields)."""


class Conflict(DomainError):
    """409: the request conflicts with the current state (duplicate version, illegal transition)."""

    status_code = status.HTTP_409_CONFLICT


class NotFound(DomainError):
    status_code = status.HTTP_404_NOT_FOUND


class TooLarge(DomainError):
    status_code = status.HTTP_413_REQUEST_ENTITY_TOO_LARGE


class Unavailable(DomainError):
    """503: a service the request needs (the file store) did not answer; retrying may work."""

    status_code = status.HTTP_503_SERVICE_UNAVAILABLE


def field_error(field: str, message: str) -> InvalidInput:
    """A 400 for a single field, e.g. field_error("recipe_version_id", "is not approved")."""
    return InvalidInput(f"{field}: {message}", [{"path": f"/{field}", "message": message}])


def lookup(model, field: str, value):
    """The row with primary key `value`, or a 400 naming `field` (an id in a request body is
    input, so an unknown one is bad input, not a 404). None/"" -> None."""
    if value in (None, ""):
        return None
    # A queryset (e.g. Recipe.objects.visible_to(user)) limits what may be named: an id the
    # user may not see reads as unknown, so its existence is not confirmed.
    manager = model if isinstance(model, QuerySet) else model._default_manager
    obj = manager.filter(pk=value).first()
    if obj is None:
        raise field_error(field, f"unknown id '{value}'")
    return obj


def flatten(detail, path: str = "") -> list[dict]:
    """DRF's nested ValidationError detail -> [{"path": JSON pointer, "message"}]."""
    if isinstance(detail, dict):
        out = []
        for key, value in detail.items():
            if key == "non_field_errors":
                out.extend(flatten(value, path))
            else:
                out.extend(flatten(value, f"{path}/{key}"))
        return out
    if isinstance(detail, list):
        if all(not isinstance(item, (dict, list)) for item in detail):
            return [{"path": path or "/", "message": str(item)} for item in detail]
        out = []
        for index, item in enumerate(detail):
            out.extend(flatten(item, f"{path}/{index}"))
        return out
    return [{"path": path or "/", "message": str(detail)}]


def _summary(errors: list[dict], fallback: str) -> str:
    if not errors:
        return fallback
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{first['path']}: {first['message']}{more}"


def exception_handler(exc, context):
    if isinstance(exc, DomainError):
        return Response({"detail": exc.detail, "errors": exc.errors}, status=exc.status_code)
    if isinstance(exc, RequestDataTooBig):
        return Response(
            {"detail": f"Request body too large: {exc}", "errors": [{"path": "/", "message": str(exc)}]},
            status=status.HTTP_413_REQUEST_ENTITY_TOO_LARGE,
        )
    if isinstance(exc, Http404):
        exc = drf_exceptions.NotFound()
    elif isinstance(exc, PermissionDenied):
        exc = drf_exceptions.PermissionDenied()
    if isinstance(exc, drf_exceptions.ValidationError):
        errors = flatten(exc.detail)
        return Response({"detail": _summary(errors, "Invalid input."), "errors": errors}, status=400)
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, drf_exceptions.APIException):
        detail = exc.detail if isinstance(exc.detail, str) else str(exc.detail)
        if isinstance(exc, drf_exceptions.ParseError):
            detail = f"Malformed request body: {detail}"
        response.data = {"detail": str(detail), "errors": []}
    return response
