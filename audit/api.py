from rest_framework import generics, permissions

from .filters import AuditEventFilter
from .selectors import visible_events
from .serializers import AuditEventSerializer


class AuditEventList(generics.ListAPIView):
    """The audit trail, newest first: who did what, when, to which object, with the
    before/after of the changed fields. Read-only (append-only: no write goes through any
    interface). Only the events of objects you may see; failed sign-ins for superusers only."""

    serializer_class = AuditEventSerializer
    permission_classes = [permissions.IsAuthenticated]
    filterset_class = AuditEventFilter
    ordering_fields = ["at"]
    ordering = ["-at", "-id"]

    def get_queryset(self):
        return visible_events(self.request.user)
