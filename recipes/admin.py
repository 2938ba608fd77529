from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied

from audit import services as audit
from mlworkspace.admin_utils import ClientScopedAdmin, pretty_json
from mlworkspace.errors import DomainError
from recipes import perms as recipe_perms

from . import access, client_services, services
from .approval import approval_gate
from .models import (
    Client,
    ClientMembership,
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
class RecipeAdmin(ClientScopedAdmin, admin.ModelAdmin):
    client_path = "client"
    list_display = ["id", "name", "model_family", "level", "client", "status", "parent", "updated_at"]
    list_filter = ["model_family", "level", "status"]
    search_fields = ["id", "name", "description"]
    readonly_fields = [
        "id",
        "model_family",
        "level",
        "parent",
        "client",
        "created_by",
        "created_at",
        "updated_at",
    ]
    list_select_related = ["parent", "client"]
    inlines = [RecipeTagInline, RecipeVersionInline]
    actions = ["deprecate"]

    def has_add_permission(self, request):
        return False  # a recipe needs a validated first version: use the API, the pages or a clone

    def save_model(self, request, obj, form, change):
        # Through the service: status rules, unique names and the audit trail. A refused
        # change is reported on the page and nothing is written.
        fields = {
            k: form.cleaned_data[k] for k in form.changed_data if k in ("name", "description", "status")
        }
        try:
            services.recipe_update(recipe=obj, user=request.user, **fields)
        except DomainError as exc:
            self.message_user(request, f"Not saved: {exc.detail}", messages.ERROR)
            obj.refresh_from_db()

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
class RecipeVersionAdmin(ClientScopedAdmin, admin.ModelAdmin):
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
        return request.user.has_perm(recipe_perms.APPROVE_VERSION) or access.role_somewhere(
            request.user, access.APPROVE_ROLES
        )

    @admin.action(
        description="Approve selected versions (through the approval gate)", permissions=["approve"]
    )
    def approve(self, request, queryset):
        if not self.has_approve_permission(request):
            raise PermissionDenied
        done = 0
        for version in queryset:
            if not access.can_approve(request.user, version):
                self.message_user(request, f"{version}: you may not approve this version.", messages.ERROR)
                continue
            try:
                services.version_approve(version=version, user=request.user)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{version}: {exc.detail}", messages.ERROR)
        self.message_user(request, f"{done} version(s) approved.")


@admin.register(SyntheticExample)
class SyntheticExampleAdmin(ClientScopedAdmin, admin.ModelAdmin):
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


class ClientMembershipInline(admin.TabularInline):
    model = ClientMembership
    fields = ["user", "role", "created_at"]
    readonly_fields = ["created_at"]
    autocomplete_fields = ["user"]
    extra = 0


@admin.register(Client)
class ClientAdmin(admin.ModelAdmin):
    """Clients and their teams: managed by superusers and the Workspace admins group (the
    recipes.manage_clients permission); others see the clients they belong to, read-only."""

    list_display = ["id", "name", "slug", "created_at"]
    search_fields = ["id", "name", "slug"]
    readonly_fields = ["id", "created_at"]
    prepopulated_fields = {"slug": ["name"]}
    inlines = [ClientMembershipInline]

    def get_queryset(self, request):
        return super().get_queryset(request).filter(pk__in=access.visible_clients(request.user).values("pk"))

    def has_add_permission(self, request):
        return access.can_manage_clients(request.user)

    def has_change_permission(self, request, obj=None):
        return access.can_manage_clients(request.user)

    def has_delete_permission(self, request, obj=None):
        return access.can_manage_clients(request.user)

    def has_view_permission(self, request, obj=None):
        return request.user.is_active and request.user.is_staff

    def save_model(self, request, obj, form, change):
        # Through the services (slug rules, the audit trail). A new client's row is the one
        # the service created: the inline memberships then attach to it.
        if change:
            before = audit.snapshot(Client.objects.get(pk=obj.pk))
            super().save_model(request, obj, form, change)  # name and slug only
            audit.record(request.user, "client.update", obj, changes=audit.diff(before, obj))
            return
        created = client_services.client_create(
            user=request.user, name=form.cleaned_data["name"], slug=form.cleaned_data.get("slug")
        )
        obj.pk, obj.slug, obj.created_at = created.pk, created.slug, created.created_at
        obj._state.adding = False

    def save_formset(self, request, form, formset, change):
        # Team changes go through the membership services, so each is in the audit trail.
        client = form.instance
        changed = formset.save(commit=False)
        for membership in formset.deleted_objects:
            client_services.membership_remove(user=request.user, client=client, member=membership.user)
        for membership in changed:
            client_services.membership_set(
                user=request.user, client=client, member=membership.user, role=membership.role
            )
