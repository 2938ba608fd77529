from django.contrib import admin, messages

from mlworkspace.admin_utils import pretty_json
from mlworkspace.errors import DomainError

from . import services
from .models import MLModel, ModelStatus


@admin.register(MLModel)
class MLModelAdmin(admin.ModelAdmin):
    list_display = [
        "id",
        "name",
        "recipe",
        "recipe_version",
        "status",
        "owner",
        "promoted_at",
        "last_check_at",
    ]
    list_filter = ["status", "recipe__model_family"]
    search_fields = ["id", "name", "owner", "recipe__id", "recipe__name"]
    list_select_related = ["recipe", "recipe_version"]
    exclude = ["metrics_json", "artifacts_json"]
    readonly_fields = [
        "id",
        "recipe",
        "recipe_version",
        "status",
        "training_run",
        "metrics",
        "artifacts",
        "promoted_at",
        "next_check_at",
        "last_check_at",
        "created_by",
        "created_at",
        "updated_at",
    ]
    actions = ["to_staging", "to_production", "archive"]

    def has_add_permission(self, request):
        return False  # registration checks the version is approved: use the API or the pages

    def metrics(self, obj):
        return pretty_json(obj.metrics_json)

    def artifacts(self, obj):
        return pretty_json(obj.artifacts_json)

    def _move(self, request, queryset, status):
        done = 0
        for model in queryset:
            try:
                result = services.model_set_status(model=model, user=request.user, status=status)
                done += 1
                if result["replaced"]:
                    self.message_user(
                        request, f"{model.id} replaced {', '.join(result['replaced'])} in production."
                    )
            except DomainError as exc:
                self.message_user(request, f"{model.id}: {exc.detail}", messages.ERROR)
        self.message_user(request, f"{done} model(s) moved to {status}.")

    @admin.action(description="Move to staging", permissions=["change"])
    def to_staging(self, request, queryset):
        self._move(request, queryset, ModelStatus.STAGING)

    @admin.action(description="Promote to production", permissions=["change"])
    def to_production(self, request, queryset):
        self._move(request, queryset, ModelStatus.PRODUCTION)

    @admin.action(description="Archive", permissions=["change"])
    def archive(self, request, queryset):
        self._move(request, queryset, ModelStatus.ARCHIVED)
