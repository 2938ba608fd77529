from django.contrib import admin

from mlworkspace.admin_utils import ClientScopedAdmin, pretty_json

from .models import Experiment


@admin.register(Experiment)
class ExperimentAdmin(ClientScopedAdmin, admin.ModelAdmin):
    """Read-only: experiments start and stop through experiments.services (the API and the
    pages), which check the champion, promote the winner and audit."""

    list_display = [
        "id",
        "recipe",
        "mode",
        "champion",
        "challenger",
        "split",
        "status",
        "winner",
        "started_at",
    ]
    list_filter = ["status", "mode", "winner"]
    search_fields = ["id", "recipe__id", "recipe__name", "champion__id", "challenger__id"]
    list_select_related = ["recipe", "champion", "challenger"]
    date_hierarchy = "started_at"
    exclude = ["horizon_json", "result_json"]
    readonly_fields = [
        "id",
        "recipe",
        "champion",
        "challenger",
        "mode",
        "split",
        "unit_key",
        "metric",
        "horizon",
        "horizon_plan",
        "alpha",
        "status",
        "winner",
        "result",
        "started_at",
        "stopped_at",
        "created_by",
        "stopped_by",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def horizon_plan(self, obj):
        return pretty_json(obj.horizon_json)

    def result(self, obj):
        return pretty_json(obj.result_json)
