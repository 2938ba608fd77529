from rest_framework import permissions


class ModelPermissions(permissions.DjangoModelPermissions):
    """Logged-in users read everything; writes need the model's add/change/delete permission."""

    authenticated_users_only = True


class CanApproveVersions(permissions.BasePermission):
    message = "Approving a recipe version needs the recipes.approve_recipeversion permission."

    def has_permission(self, request, view):
        return bool(request.user and request.user.has_perm("recipes.approve_recipeversion"))


def has_perm(codename: str):
    """A permission class requiring one Django permission, e.g. has_perm("runs.change_run")."""

    class HasPerm(permissions.BasePermission):
        message = f"This needs the {codename} permission."

        def has_permission(self, request, view):
            return bool(request.user and request.user.is_authenticated and request.user.has_perm(codename))

    HasPerm.__name__ = f"HasPerm_{codename.replace('.', '_')}"
    return HasPerm
