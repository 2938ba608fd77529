from django.contrib import admin, messages

from mlworkspace.admin_utils import ClientScopedAdmin, pretty_json
from mlworkspace.errors import DomainError
from recipes.access import client_scope

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
class RunAdmin(ClientScopedAdmin, admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "run_type",
        "status",
        "outcome",
        "executor",
        "model",
        "created_at",
        "finished_at",
    ]
    list_filter = ["status", "outcome", "run_type", "executor", "recipe__model_family"]
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
        "name",
        "number",
        "recipe",
        "recipe_version",
        "model",
        "run_type",
        "status",
        "outcome",
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
                self.message_user(request, f"{run.name}: {exc.detail}", messages.WARNING)


@admin.register(Dataset)
class DatasetAdmin(ClientScopedAdmin, admin.ModelAdmin):
    client_path = "client"

    def get_queryset(self, request):
        # Its own client and its recipe's (as Dataset.objects.visible_to).
        return super().get_queryset(request).filter(client_scope(request.user, "recipe__client"))

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

    # Deletes go through the service: refused while runs or snapshots use a dataset, file removed.
    def has_delete_permission(self, request, obj=None):
        allowed = super().has_delete_permission(request, obj)
        return allowed and (obj is None or not services.dataset_usage(obj))

    def delete_model(self, request, obj):
        self.delete_queryset(request, [obj])

    def delete_queryset(self, request, queryset):
        for dataset in queryset:
            try:
                services.dataset_delete(dataset=dataset, user=request.user)
            except DomainError as exc:
                self.message_user(request, exc.detail, messages.ERROR)
