from rest_framework import permissions

from recipes import access
from recipes import perms as recipe_perms

SAFE = permissions.SAFE_METHODS


class ClientObjectPermission(permissions.BasePermission):
    """Object level, for every viewset action that loads its object with get_object(): the
    one access rule of recipes.access — a client's objects need membership to be seen (404
    otherwise) and a data_scientist/lead role to be changed (403)."""

    def has_object_permission(self, request, view, obj):
        if request.method in SAFE:
            access.check_view(request.user, obj)
            return True
        access.check_view(request.user, obj)
        return access.can_write(request.user, obj)


class ModelPermissions(ClientObjectPermission, permissions.DjangoModelPermissions):
    """Logged-in users read; writes on firm objects need the model's add/change/delete
    permission; writes on a client's objects need a data_scientist or lead role in it
    (recipes.access), so a member with such a role passes here and the object check decides."""

    authenticated_users_only = True

    def has_permission(self, request, view):
        if super().has_permission(request, view):
            return True
        return request.method not in SAFE and access.has_write_role_somewhere(request.user)

    def has_object_permission(self, request, view, obj):
        if not super().has_object_permission(request, view, obj):
            return False
        if request.method in SAFE or access.is_client_object(obj):
            return True
        # A firm object: the user's Django model permissions decide, as before.
        return permissions.DjangoModelPermissions.has_permission(self, request, view)


class CanApproveVersions(ClientObjectPermission):
    """Firm Leads (recipes.approve_recipeversion) or a client's leads get past here; the view
    then checks the version itself with recipes.access.check_approve."""

    message = "Approving a recipe version needs the recipes.approve_recipeversion permission."

    def has_permission(self, request, view):
        user = request.user
        if not (user and user.is_authenticated):
            return False
        return user.has_perm(recipe_perms.APPROVE_VERSION) or access.role_somewhere(
            user, access.APPROVE_ROLES
        )

    def has_object_permission(self, request, view, obj):
        access.check_view(request.user, obj)
        return True


def has_perm(codename: str):
    """A permission class requiring one Django permission, e.g. has_perm(run_perms.CHANGE_RUN) with runs.perms."""

    class HasPerm(ClientObjectPermission):
        message = f"This needs the {codename} permission."

        def has_permission(self, request, view):
            user = request.user
            if not (user and user.is_authenticated):
                return False
            return user.has_perm(codename) or access.has_write_role_somewhere(user)

        def has_object_permission(self, request, view, obj):
            if not super().has_object_permission(request, view, obj):
                return False
            return access.is_client_object(obj) or request.user.has_perm(codename)

    HasPerm.__name__ = f"HasPerm_{codename.replace('.', '_')}"
    return HasPerm
