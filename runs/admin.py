from django.contrib import admin, messages

from mlworkspace.admin_utils import pretty_json
from mlworkspace.errors import DomainError

from . import services
from .models import Dataset, Run, RunLog


class RunLogInline(admin.TabularInline):
    model = RunLog
    fields = ["seq", "ts", "level", "message"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    max_num = 0


@admin.register(Run)
class RunAdmin(admin.ModelAdmin):
    list_display = ["id", "recipe", "run_type", "status", "executor", "model", "created_at", "finished_at"]
    list_filter = ["status", "run_type", "executor", "recipe__model_family"]
    search_fields = ["id", "recipe__id", "recipe__name", "model__id"]
    list_select_related = ["recipe", "model"]
    exclude = [
        "params_json",
        "metrics_json",
        "metric_checks_json",
        "artifacts_json",
        "plots_json",
        "stages_json",
    ]
    readonly_fields = [
        "id",
        "recipe",
        "recipe_version",
        "model",
        "run_type",
        "status",
        "executor",
        "dataset",
        "params",
        "metrics",
        "metric_checks",
        "artifacts",
        "stages",
        "current_stage",
        "error",
        "cancel_requested",
        "worker",
        "heartbeat_at",
        "started_at",
        "finished_at",
        "retry_of",
        "created_by",
        "created_at",
        "updated_at",
    ]
    inlines = [RunLogInline]
    actions = ["cancel"]

    def has_add_permission(self, request):
        return False

    def params(self, obj):
        return pretty_json(obj.params_json)

    def metrics(self, obj):
        return pretty_json(obj.metrics_json)

    def metric_checks(self, obj):
        return pretty_json(obj.metric_checks_json)

    def artifacts(self, obj):
        return pretty_json(obj.artifacts_json)

    def stages(self, obj):
        return pretty_json(obj.stages_json)

    @admin.action(description="Cancel selected runs", permissions=["change"])
    def cancel(self, request, queryset):
        for run in queryset:
            try:
                services.run_cancel(run=run, user=request.user)
            except DomainError as exc:
                self.message_user(request, f"{run.id}: {exc.detail}", messages.WARNING)


@admin.register(Dataset)
class DatasetAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "format", "row_count", "size_bytes", "recipe", "created_at"]
    list_filter = ["format"]
    search_fields = ["id", "name"]
    exclude = ["columns_json", "validation_json"]
    readonly_fields = [
        "id",
        "file",
        "format",
        "size_bytes",
        "sha256",
        "row_count",
        "columns",
        "recipe",
        "validation",
        "created_by",
        "created_at",
    ]

    def has_add_permission(self, request):
        return False

    def columns(self, obj):
        return pretty_json(obj.columns_json)

    def validation(self, obj):
        return pretty_json(obj.validation_json)
