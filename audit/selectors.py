"""Reading the audit trail, scoped like everything else (recipes.access)."""

from __future__ import annotations

from django.db.models import Q

from recipes.access import client_scope  # the one access rule

from .models import AuditEvent
from .services import object_type_of

HISTORY_LIMIT = 50


def visible_events(user):
    """The events `user` may read: those of firm objects (no client) and of the clients the
    user is a member of; everything for superusers; nothing for anonymous users. Failed
    sign-ins (auth.*: names tried, addresses) are for superusers only."""
    if user is None or not user.is_authenticated or not user.is_active:
        return AuditEvent.objects.none()
    if user.is_superuser:
        return AuditEvent.objects.all()
    return AuditEvent.objects.filter(client_scope(user, "client_id")).exclude(action__startswith="auth.")


def history_filter(obj) -> Q:
    """The events of one object's History: the object's own; for a recipe also those of its
    versions (created, approved, rebased)."""
    condition = Q(object_type=object_type_of(obj), object_id=str(obj.pk))
    if object_type_of(obj) == "recipe":
        version_ids = [str(pk) for pk in obj.versions.values_list("pk", flat=True)]
        condition |= Q(object_type="version", object_id__in=version_ids)
    return condition


def history(obj, user, limit: int = HISTORY_LIMIT) -> list[AuditEvent]:
    """The newest `limit` events of `obj` that `user` may read, newest first."""
    return list(visible_events(user).filter(history_filter(obj)).order_by("-at", "-id")[:limit])
