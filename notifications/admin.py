"""Read-only admin: webhooks (never their secret), the delivery log and e-mail subscriptions.
Changes go through the Notifications page or the API (notifications.services: validated and
audited), so nothing can be added, changed or deleted here."""

from django.contrib import admin

from mlworkspace.admin_utils import pretty_json
from recipes import access

from . import scopes
from .models import Delivery, EmailSubscription, Webhook


class ReadOnlyAdmin(admin.ModelAdmin):
    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False


@admin.register(Webhook)
class WebhookAdmin(ReadOnlyAdmin):
    list_display = ["name", "url", "client", "recipe", "active", "created_at"]
    list_filter = ["active"]
    search_fields = ["id", "name", "url"]
    list_select_related = ["client", "recipe"]
    fields = [
        "id",
        "name",
        "url",
        "client",
        "recipe",
        "events",
        "active",
        "secret_hint",
        "created_by",
        "created_at",
    ]
    readonly_fields = fields

    def get_queryset(self, request):
        return scopes.visible_webhooks(request.user)


@admin.register(Delivery)
class DeliveryAdmin(ReadOnlyAdmin):
    list_display = ["id", "webhook", "event", "status", "attempts", "response_code", "error", "created_at"]
    list_filter = ["status", "event"]
    search_fields = ["id", "webhook__id", "webhook__name", "event"]
    date_hierarchy = "created_at"
    list_select_related = ["webhook"]
    fields = [
        "id",
        "webhook",
        "event",
        "status",
        "attempts",
        "response_code",
        "error",
        "recipe_id",
        "client_id",
        "payload_pretty",
        "created_at",
        "last_attempt_at",
        "next_attempt_at",
        "delivered_at",
    ]
    readonly_fields = fields
    show_full_result_count = False

    def get_queryset(self, request):
        # Deliveries of the webhooks one may see, about the clients one may see.
        return (
            super()
            .get_queryset(request)
            .filter(webhook__in=scopes.visible_webhooks(request.user))
            .filter(access.client_scope(request.user, "client"))
        )

    @admin.display(description="payload")
    def payload_pretty(self, obj):
        return pretty_json(obj.payload)


@admin.register(EmailSubscription)
class EmailSubscriptionAdmin(ReadOnlyAdmin):
    list_display = ["user", "client", "recipe", "events", "created_at"]
    list_select_related = ["user", "client", "recipe"]
    search_fields = ["user__username", "user__email"]
    fields = ["id", "user", "client", "recipe", "events", "created_at"]
    readonly_fields = fields

    def get_queryset(self, request):
        return (
            super()
            .get_queryset(request)
            .filter(access.client_scope(request.user, "client"))
            .filter(access.client_scope(request.user, "recipe__client"))
        )
