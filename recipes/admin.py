from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from mlworkspace.admin_utils import pretty_json
from mlworkspace.errors import DomainError

from . import services
from .approval import approval_gate
from .models import (
    ChatMessage,
    Conversation,
    Recipe,
    RecipeStatus,
    RecipeTag,
    RecipeVersion,
    SyntheticExample,
)


class RecipeTagInline(admin.TabularInline):
    model = RecipeTag
    extra = 0


class RecipeVersionInline(admin.TabularInline):
    model = RecipeVersion
    fields = ["id", "version", "changelog", "created_by", "created_at", "approved_by", "approved_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False
    show_change_link = True

    def has_add_permission(self, request, obj=None):
        return False  # versions are created through recipes.services.version_create


@admin.register(Recipe)
class RecipeAdmin(admin.ModelAdmin):
    list_display = ["id", "name", "model_family", "level", "status", "parent", "updated_at"]
    list_filter = ["model_family", "level", "status"]
    search_fields = ["id", "name", "description"]
    readonly_fields = ["id", "model_family", "level", "parent", "created_by", "created_at", "updated_at"]
    list_select_related = ["parent"]
    inlines = [RecipeTagInline, RecipeVersionInline]
    actions = ["deprecate"]

    def has_add_permission(self, request):
        return False  # a recipe needs a validated first version: use the API, the pages or a clone

    @admin.action(description="Deprecate selected recipes", permissions=["change"])
    def deprecate(self, request, queryset):
        done = 0
        for recipe in queryset:
            try:
                services.recipe_update(recipe=recipe, user=request.user, status=RecipeStatus.DEPRECATED)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{recipe.id}: {exc.detail}", messages.ERROR)
        self.message_user(request, f"{done} recipe(s) deprecated.")


@admin.register(RecipeVersion)
class RecipeVersionAdmin(admin.ModelAdmin):
    """Versions are immutable: everything is read-only; approval is an action."""

    list_display = ["id", "recipe", "version", "created_at", "approved_at", "approved_by", "gate"]
    list_filter = ["recipe__model_family", "recipe__level", ("approved_at", admin.EmptyFieldListFilter)]
    search_fields = ["id", "recipe__id", "recipe__name", "version"]
    list_select_related = ["recipe", "approved_by"]
    readonly_fields = [
        "id",
        "recipe",
        "version",
        "base_version",
        "suggested_bump",
        "force_note",
        "manifest_pretty",
        "changelog",
        "created_by",
        "created_at",
        "approved_by",
        "approved_at",
        "approval_run",
        "approval_override_reason",
        "approval_pretty",
        "gate_now",
    ]
    exclude = ["manifest", "approval_json"]
    actions = ["approve"]

    @admin.display(description="manifest")
    def manifest_pretty(self, obj):
        return pretty_json(obj.manifest)

    @admin.display(description="gate")
    def gate(self, obj):
        """How the version was approved: passed (on evidence), overridden, or before gates."""
        if obj.approved_at is None:
            return "—"
        return (obj.approval_json or {}).get("gate", "before gates")

    @admin.display(description="approval record")
    def approval_pretty(self, obj):
        return pretty_json(obj.approval_json) if obj.approval_json else "—"

    @admin.display(description="approval gate now")
    def gate_now(self, obj):
        """For an unapproved version: what the gate says today (evidence, reasons)."""
        if obj.approved_at is not None:
            return "approved"
        return pretty_json(approval_gate(obj))

    def has_add_permission(self, request):
        return False

    def has_delete_permission(self, request, obj=None):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def has_approve_permission(self, request):
        return request.user.has_perm("recipes.approve_recipeversion")

    @admin.action(
        description="Approve selected versions (through the approval gate)", permissions=["approve"]
    )
    def approve(self, request, queryset):
        if not request.user.has_perm("recipes.approve_recipeversion"):
            raise PermissionDenied
        done = 0
        for version in queryset:
            try:
                services.version_approve(version=version, user=request.user)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{version}: {exc.detail}", messages.ERROR)
        self.message_user(request, f"{done} version(s) approved.")


@admin.register(SyntheticExample)
class SyntheticExampleAdmin(admin.ModelAdmin):
    list_display = ["id", "recipe", "updated_at"]
    search_fields = ["id", "recipe__id", "recipe__name"]
    exclude = [
        "schema_json",
        "sample_rows_json",
        "expected_output_json",
        "example_metrics_json",
        "generator_json",
    ]
    readonly_fields = [
        "id",
        "recipe",
        "schema",
        "sample_rows",
        "expected_output",
        "example_metrics",
        "generator",
        "created_at",
        "updated_at",
    ]

    def has_add_permission(self, request):
        return False

    def has_change_permission(self, request, obj=None):
        return False

    def schema(self, obj):
        return pretty_json(obj.schema_json)

    def sample_rows(self, obj):
        return pretty_json(obj.sample_rows_json)

    def expected_output(self, obj):
        return pretty_json(obj.expected_output_json)

    def example_metrics(self, obj):
        return pretty_json(obj.example_metrics_json)

    def generator(self, obj):
        return pretty_json(obj.generator_json)


class ChatMessageInline(admin.TabularInline):
    model = ChatMessage
    fields = ["role", "content", "created_at"]
    readonly_fields = fields
    extra = 0
    can_delete = False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["id", "user", "title", "created_recipe", "updated_at"]
    search_fields = ["id", "title", "user__username"]
    readonly_fields = ["id", "user", "title", "state_json", "created_recipe", "created_at", "updated_at"]
    inlines = [ChatMessageInline]

    def has_add_permission(self, request):
        return False
