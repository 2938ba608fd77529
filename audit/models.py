"""The audit trail: one append-only row per write made through a service (audit.services).

Append-only at every layer: the model refuses to save an existing row or delete one, its
queryset refuses update() and delete(), pre_save/pre_delete guards catch anything that goes
around the model (audit.signals), the admin and the API are read-only, and database triggers
(migration 0002) refuse UPDATE — and, on PostgreSQL, DELETE — from any client.
"""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils import timezone

from mlworkspace.fields import JSONField
from mlworkspace.ids import new_id


class AppendOnlyError(Exception):
    """An audit event was about to be changed or deleted: the trail is append-only."""


class AuditEventQuerySet(models.QuerySet):
    def update(self, **kwargs):
        raise AppendOnlyError("Audit events cannot be updated.")

    def delete(self):
        raise AppendOnlyError("Audit events cannot be deleted.")

    _raw_delete = delete  # the deletion collector's fast path

    def update_or_create(self, *args, **kwargs):
        raise AppendOnlyError("Audit events cannot be updated.")


class AuditEvent(models.Model):
    """Who (actor) did what (action) when (at) to which object, with the before/after of the
    fields it changed (changes: {field: [before, after]}) and what else explains it (detail:
    the gate verdict, an override reason, the model a promotion replaced…)."""

    id = models.CharField(primary_key=True, max_length=64, editable=False)
    at = models.DateTimeField(default=timezone.now, db_index=True)
    # No database constraint and no cascade: deleting a user must not change (or be blocked
    # by) the trail, which keeps the name they had in actor_username.
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    actor_username = models.CharField(max_length=150, blank=True, default="")
    action = models.CharField(max_length=64)
    object_type = models.CharField(max_length=64, blank=True, default="")
    object_id = models.CharField(max_length=64, blank=True, default="")
    object_repr = models.CharField(max_length=200, blank=True, default="")
    # The client the object belongs to; NULL (not "") for a firm object, as the client
    # foreign keys elsewhere, so recipes.access.client_scope applies unchanged. Who may read it.
    client_id = models.CharField(max_length=64, null=True, blank=True, db_index=True)  # noqa: DJ001
    changes = JSONField(default=dict, blank=True)
    detail = JSONField(default=dict, blank=True)
    ip = models.GenericIPAddressField(null=True, blank=True)

    objects = AuditEventQuerySet.as_manager()

    class Meta:
        db_table = "ml_audit_event"
        ordering = ["-at", "-id"]
        indexes = [
            # A page's History tab and ?object_type=&object_id=: one object's events, newest first.
            models.Index(fields=["object_type", "object_id", "at"], name="ml_audit_object_idx"),
            # ?action= (e.g. every approval, every failed login), newest first.
            models.Index(fields=["action", "at"], name="ml_audit_action_idx"),
            # ?actor=: what one person did.
            models.Index(fields=["actor_username", "at"], name="ml_audit_actor_idx"),
        ]

    def __str__(self) -> str:
        return (
            f"{self.at:%Y-%m-%d %H:%M:%S} {self.actor_username or 'system'} {self.action} {self.object_repr}"
        )

    def save(self, *args, **kwargs):
        if not self._state.adding:
            raise AppendOnlyError("Audit events cannot be changed once written.")
        if not self.id:
            self.id = new_id("audit")
        kwargs["force_insert"] = True
        super().save(*args, **kwargs)

    def delete(self, *args, **kwargs):
        raise AppendOnlyError("Audit events cannot be deleted.")

    @property
    def actor_label(self) -> str:
        return self.actor_username or "system"
