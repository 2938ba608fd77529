"""Writing the audit trail: every write service calls ``record`` once, inside its own
transaction, so a write that rolls back leaves no event and a committed one always has its.

    before = audit.snapshot(recipe)                  # after the row is locked
    ...                                              # the write
    audit.record(user, "recipe.update", recipe, changes=audit.diff(before, recipe))

Services that are another service plus a little (a clone is a create, a retry a start, a
rebase a new version) are decorated with ``as_action``: the inner service's event is
recorded under the outer action, so one call is one event.

The actor is the user the service was given; when a service has none (a monitoring snapshot
posted to the API) it is the signed-in user of the request being served (audit.middleware),
else nobody ("system": the scheduler, the worker). The request's IP address is kept too.
"""

from __future__ import annotations

import contextvars
import datetime as dt
import decimal
import functools
import hashlib
import json
import uuid
from collections.abc import Callable

from django.db import models

from recipes import access

from .models import AuditEvent

# Fields whose changes are noise in a history: every write moves them.
IGNORED_FIELDS = {"created_at", "updated_at", "heartbeat_at", "password", "last_login"}
# A value longer than this (as JSON) is kept as its size and digest: a 200 KB manifest must
# not be copied into every event; the digest still shows whether it changed.
MAX_VALUE_CHARS = 2000
MAX_PATH_CHANGES = 200

# How objects are named in the trail (object_type): by model label, else the model name.
OBJECT_TYPES = {
    "recipes.recipe": "recipe",
    "recipes.recipeversion": "version",
    "recipes.client": "client",
    "recipes.clientmembership": "membership",
    "models_registry.mlmodel": "model",
    "runs.run": "run",
    "runs.dataset": "dataset",
    "monitoring.monitorsnapshot": "snapshot",
    "auth.user": "user",
}

# The request being served (set by audit.middleware.AuditContextMiddleware).
current_request: contextvars.ContextVar = contextvars.ContextVar("audit_request", default=None)
# Set by as_action while the decorated service runs: the action its inner event is recorded as.
_outer: contextvars.ContextVar = contextvars.ContextVar("audit_outer_action", default=None)


def object_type_of(obj) -> str:
    if obj is None:
        return ""
    meta = obj._meta
    return OBJECT_TYPES.get(meta.label_lower, meta.model_name)


def client_id_of(obj) -> str | None:
    """The client `obj` belongs to (None for firm objects and for no object):
    recipes.access.client_id_of is the one rule."""
    if obj is None:
        return None
    return access.client_id_of(obj)


def jsonable(value):
    """`value` as plain JSON (ids for rows, ISO text for times, str for decimals and UUIDs),
    with long values summarised (see MAX_VALUE_CHARS)."""
    if isinstance(value, models.Model):
        return value.pk
    if isinstance(value, (dt.datetime, dt.date, dt.time)):
        return value.isoformat()
    if isinstance(value, (decimal.Decimal, uuid.UUID)):
        return str(value)
    if isinstance(value, models.Choices):
        return value.value
    if isinstance(value, models.fields.files.FieldFile):
        return value.name or None
    if isinstance(value, (set, frozenset)):
        value = sorted(value)
    if isinstance(value, (dict, list, tuple)):
        text = json.dumps(value, sort_keys=True, default=str)
        if len(text) > MAX_VALUE_CHARS:
            digest = hashlib.sha256(text.encode()).hexdigest()[:16]
            return {"summary": f"{len(text)} characters", "sha256": digest}
        return json.loads(text)
    if isinstance(value, str) and len(value) > MAX_VALUE_CHARS:
        digest = hashlib.sha256(value.encode()).hexdigest()[:16]
        return {"summary": f"{len(value)} characters", "sha256": digest}
    return value


def snapshot(obj, **extra) -> dict:
    """The auditable state of `obj`: every concrete field but the ones every write moves
    (foreign keys by id, as `<name>_id`), plus `extra` values that live elsewhere (a recipe's
    tags). Take it after the row is locked and before the write."""
    state = {}
    for field in obj._meta.concrete_fields:
        if field.primary_key or field.name in IGNORED_FIELDS:
            continue
        state[field.attname] = jsonable(getattr(obj, field.attname))
    state.update({key: jsonable(value) for key, value in extra.items()})
    return state


def changes(before: dict | None, after: dict | None) -> dict:
    """{field: [before, after]} for the fields that differ. No `before`: a creation (the
    fields set to something); no `after`: a deletion (the fields it had)."""
    before, after = before or {}, after or {}
    out = {}
    for key in sorted(set(before) | set(after)):
        old, new = before.get(key), after.get(key)
        if old != new and not (old in (None, "", [], {}) and new in (None, "", [], {})):
            out[key] = [old, new]
    return out


def diff(before: dict, obj, **extra) -> dict:
    """The changes from `before` (a snapshot) to `obj` as it is now."""
    return changes(before, snapshot(obj, **extra))


def created(obj, **extra) -> dict:
    """A new object's changes: every field it was given, from nothing."""
    return changes(None, snapshot(obj, **extra))


def deleted(obj, **extra) -> dict:
    """A deleted object's changes: every field it had, to nothing."""
    return changes(snapshot(obj, **extra), None)


def path_changes(entries, prefix: str = "") -> dict:
    """Changes given as a list of {"path", "old", "new"} (recipes.lineage's manifest diff)
    as {prefix + path: [old, new]} (at most MAX_PATH_CHANGES)."""
    return {
        f"{prefix}{entry['path']}": [jsonable(entry.get("old")), jsonable(entry.get("new"))]
        for entry in list(entries or [])[:MAX_PATH_CHANGES]
    }


def _request_ip(request) -> str | None:
    address = (request.META.get("REMOTE_ADDR") or "").strip() if request is not None else ""
    return address or None


def _signed_in(user):
    return user if user is not None and getattr(user, "is_authenticated", False) else None


def record(
    actor,
    action: str,
    obj,
    *,
    changes: dict | None = None,
    detail: dict | None = None,
    at: dt.datetime | None = None,
    request=None,
    object_repr: str | None = None,
) -> AuditEvent:
    """Append one event: `actor` (a user, or None: the request's user, else the system) did
    `action` to `obj` (None for events about no stored object, such as a failed login), with
    `changes` ({field: [before, after]}) and `detail`. `at` dates it (seeded history); default
    now. Call it inside the service's transaction."""
    outer = _outer.get()
    if outer is not None:
        action, outer["recorded"] = outer["action"], True
    request = request or current_request.get()
    actor = _signed_in(actor) or _signed_in(getattr(request, "user", None))
    event = AuditEvent(
        actor=actor,
        actor_username=actor.get_username() if actor is not None else "",
        action=action,
        object_type=object_type_of(obj),
        object_id=str(obj.pk) if obj is not None and obj.pk is not None else "",
        object_repr=(object_repr if object_repr is not None else str(obj) if obj is not None else "")[:200],
        client_id=client_id_of(obj),
        changes=jsonable(changes or {}),
        detail=jsonable(detail or {}),
        ip=_request_ip(request),
    )
    if at is not None:
        event.at = at
    event.save()
    return event


def as_action(action: str) -> Callable:
    """Decorate a service that is another service plus a little (recipe_clone calls
    recipe_create): the event the inner service records is recorded as `action` instead, so
    the call leaves exactly one event. A decorated service whose inner services record
    nothing gets one event for the object it returns (the actor is its `user` argument).
    Put it below @transaction.atomic, so that event is part of the transaction."""

    def decorate(service):
        @functools.wraps(service)
        def wrapper(*args, **kwargs):
            state = {"action": action, "recorded": False}
            token = _outer.set(state)
            try:
                result = service(*args, **kwargs)
            finally:
                _outer.reset(token)
            if not state["recorded"] and isinstance(result, models.Model):
                record(kwargs.get("user"), action, result, changes=created(result))
            return result

        return wrapper

    return decorate
