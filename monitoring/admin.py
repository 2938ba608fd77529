from django.contrib import admin

from mlworkspace.admin_utils import ClientScopedAdmin, pretty_json

from .models import Alert, MonitorSnapshot


@admin.register(MonitorSnapshot)
class MonitorSnapshotAdmin(ClientScopedAdmin, admin.ModelAdmin):
    client_path = "model__recipe__client"
    list_display = ["id", "model", "captured_at", "source", "row_count"]
    list_filter = ["source"]
    search_fields = ["id", "model__id", "model__name"]
    date_hierarchy = "captured_at"
    list_select_related = ["model"]
    exclude = ["performance_metrics_json", "drift_metrics_json", "data_freshness_json", "alerts_json"]
    readonly_fields = [
        "id",
        "model",
        "captured_at",
        "source",
        "dataset",
        "row_count",
        "performance",
        "drift",
        "freshness",
        "alerts",
        "created_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def performance(self, obj):
        return pretty_json(obj.performance_metrics_json)

    def drift(self, obj):
        return pretty_json(obj.drift_metrics_json)

    def freshness(self, obj):
        return pretty_json(obj.data_freshness_json)

    def alerts(self, obj):
        return pretty_json(obj.alerts_json)


@admin.register(Alert)
class AlertAdmin(ClientScopedAdmin, admin.ModelAdmin):
    client_path = "model__recipe__client"
    list_display = ["model", "name", "severity", "state", "fired_at", "resolved_at"]
    list_filter = ["state", "severity"]
    search_fields = ["model__id", "name"]
    readonly_fields = [
        "model",
        "name",
        "severity",
        "condition",
        "state",
        "fired_at",
        "resolved_at",
        "last_values_json",
        "first_snapshot",
        "last_snapshot",
    ]

    def has_add_permission(self, request):
        return False
