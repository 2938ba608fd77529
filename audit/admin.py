from django.contrib import admin

from mlworkspace.admin_utils import pretty_json

from .models import AuditEvent
from .selectors import visible_events


@admin.register(AuditEvent)
class AuditEventAdmin(admin.ModelAdmin):
    """Read-only: the trail is append-only, so nobody may add, change or delete an event here
    (not even a superuser); rows are scoped by client like everywhere else."""

    list_display = ["at", "actor_username", "action", "object_type", "object_id", "object_repr", "client_id"]
    list_filter = ["action", "object_type", ("at", admin.DateFieldListFilter)]
    search_fields = ["object_id", "object_repr", "actor_username", "action", "client_id"]
    date_hierarchy = "at"
    ordering = ["-at", "-id"]
    fields = [
        "id",
        "at",
        "actor_username",
        "action",
        "object_type",
        "object_id",
        "object_repr",
        "client_id",
        "changes_pretty",
        "detail_pretty",
        "ip",
    ]
    readonly_fields = fields
    show_full_result_count = False

    def get_queryset(self, request):
        return visible_events(request.user)

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    @admin.display(description="changes")
    def changes_pretty(self, obj):
        return pretty_json(obj.changes)

    @admin.display(description="detail")
    def detail_pretty(self, obj):
        return pretty_json(obj.detail)
