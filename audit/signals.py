"""The append-only guards (a second line behind AuditEvent.save/delete, for code that calls
save_base or the deletion collector directly) and failed sign-ins, which Django reports only
through its user_login_failed signal."""

from django.contrib.auth.signals import user_login_failed
from django.db.models.signals import pre_delete, pre_save
from django.dispatch import receiver

from . import services
from .models import AppendOnlyError, AuditEvent


@receiver(pre_save, sender=AuditEvent, dispatch_uid="audit_append_only_save")
def refuse_change(sender, instance, raw=False, **kwargs):
    if not instance._state.adding:
        raise AppendOnlyError("Audit events cannot be changed once written.")


@receiver(pre_delete, sender=AuditEvent, dispatch_uid="audit_append_only_delete")
def refuse_delete(sender, instance, **kwargs):
    raise AppendOnlyError("Audit events cannot be deleted.")


@receiver(user_login_failed, dispatch_uid="audit_login_failed")
def login_failed(sender, credentials, request=None, **kwargs):
    """A failed sign-in: the name tried and where from (never the password: Django has
    already replaced every sensitive credential with stars)."""
    username = str(credentials.get("username") or "")[:150]
    services.record(
        None, "auth.login_failed", None, detail={"username": username}, request=request, object_repr=username
    )
