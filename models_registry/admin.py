from django.contrib import admin, messages

from mlworkspace.admin_utils import ClientScopedAdmin, pretty_json
from mlworkspace.errors import DomainError

from . import services
from .models import MLModel, ModelStatus


@admin.register(MLModel)
class MLModelAdmin(ClientScopedAdmin, admin.ModelAdmin):
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
        "serves_alongside",
        "next_check_at",
        "last_check_at",
        "created_by",
        "created_at",
        "updated_at",
    ]
    actions = ["to_staging", "to_production", "archive"]

    def has_add_permission(self, request):
        return False  # registration checks the version is approved: use the API or the pages

    def save_model(self, request, obj, form, change):
        # Through the service: it locks and writes only the edited fields (a full save of the
        # form's copy would put back a status another request has just changed).
        fields = {
            key: form.cleaned_data[key]
            for key in ("name", "owner", "description")
            if key in form.cleaned_data
        }
        services.model_update(model=obj, user=request.user, **fields)

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
