from rest_framework import serializers

from recipes.serializers import StrictSerializer

from . import events as ev
from .models import Delivery, DeliveryStatus, Scope, Webhook


class WebhookSerializer(serializers.ModelSerializer):
    """A webhook as the API shows it: the secret only as a hint (its last characters)."""

    client_id = serializers.CharField(read_only=True, allow_null=True)
    recipe_id = serializers.CharField(read_only=True, allow_null=True)
    scope = serializers.ChoiceField(choices=Scope.choices, read_only=True)
    events = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Event names; empty: every event."
    )
    secret_hint = serializers.CharField(read_only=True, help_text="The secret's last characters.")
    created_by = serializers.CharField(source="created_by.username", read_only=True, allow_null=True)

    class Meta:
        model = Webhook
        fields = [
            "id",
            "name",
            "url",
            "scope",
            "client_id",
            "recipe_id",
            "events",
            "active",
            "secret_hint",
            "created_by",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields


class WebhookWithSecretSerializer(WebhookSerializer):
    """The answer to creating a webhook or rotating its secret: the only time the secret is shown."""

    secret = serializers.CharField(
        read_only=True, help_text="Signs every delivery (X-Workspace-Signature). Shown only now: keep it."
    )

    class Meta(WebhookSerializer.Meta):
        fields = [*WebhookSerializer.Meta.fields, "secret"]
        read_only_fields = fields


class WebhookCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    url = serializers.CharField(max_length=2000, help_text="http:// or https://")
    client_id = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text="Every recipe of this client."
    )
    recipe_id = serializers.CharField(
        required=False, allow_null=True, allow_blank=True, help_text="This recipe only."
    )
    events = serializers.ListField(
        child=serializers.CharField(),
        required=False,
        default=list,
        help_text=f"Any of {', '.join(ev.SUBSCRIBABLE)}; empty or left out: every event.",
    )
    active = serializers.BooleanField(required=False, default=True)


class WebhookUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    url = serializers.CharField(max_length=2000, required=False)
    events = serializers.ListField(child=serializers.CharField(), required=False)
    active = serializers.BooleanField(required=False)
    # Named so that a request changing the scope gets a clear 400 (not "unknown field").
    client_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    recipe_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)


class DeliverySerializer(serializers.ModelSerializer):
    webhook_id = serializers.CharField(read_only=True)
    recipe_id = serializers.CharField(read_only=True, allow_null=True)
    client_id = serializers.CharField(read_only=True, allow_null=True)
    status = serializers.ChoiceField(choices=DeliveryStatus.choices, read_only=True)

    class Meta:
        model = Delivery
        fields = [
            "id",
            "webhook_id",
            "event",
            "status",
            "attempts",
            "response_code",
            "error",
            "recipe_id",
            "client_id",
            "payload",
            "created_at",
            "last_attempt_at",
            "next_attempt_at",
            "delivered_at",
        ]
        read_only_fields = fields
