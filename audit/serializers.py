from rest_framework import serializers

from .models import AuditEvent


class AuditEventSerializer(serializers.ModelSerializer):
    actor = serializers.CharField(source="actor_username", read_only=True)

    class Meta:
        model = AuditEvent
        fields = [
            "id",
            "at",
            "actor",
            "action",
            "object_type",
            "object_id",
            "object_repr",
            "client_id",
            "changes",
            "detail",
            "ip",
        ]
        read_only_fields = fields
        extra_kwargs = {"ip": {"help_text": "The request's address; shown to superusers only."}}

    def to_representation(self, instance):
        data = super().to_representation(instance)
        request = self.context.get("request")
        if not (request and request.user.is_superuser):
            data.pop("ip")  # colleagues' addresses are for administrators
        return data
