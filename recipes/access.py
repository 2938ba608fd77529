"""Who may see and change what — the one access rule, used by the API, the pages, the admin,
downloads, the chat assistant and every app's ``visible_to(user)`` queryset.

Firm objects (baseline and industry recipes and everything hanging off them) are the firm's
shared know-how; a client-level recipe belongs to one Client, and it and everything hanging
off it (versions, models, runs, datasets, snapshots, alerts, chats) belong to that client.

* **See**: firm objects — every signed-in user; a client's objects — its members (any role)
  and superusers. Anyone else gets a 404, never a 403, so an id's existence is not confirmed.
* **Write** (create, change, run, upload, delete): firm objects — the Django model
  permissions of the user's groups, as before (checked by the API's permission classes and
  the pages' ``has_perm``); a client's objects — the user's membership role decides:
  ``data_scientist`` or ``lead`` (a viewer member gets a 403), superusers always. The Django
  model permissions are not required for a client's objects: a client team is staffed per
  client, not through the firm-wide groups.
* **Approve** a version: firm versions — the ``recipes.approve_recipeversion`` permission
  (the firm's Leads); a client's versions — the ``lead`` role in that client (or superuser).
* **Manage clients and members**: superusers and the "Workspace admins" group (the
  ``recipes.manage_clients`` permission).

A small module of our own rather than django-rules: the rule is one predicate over one
membership table, and the part that matters most — the queryset scoping every list, count,
search and chart goes through (``client_scope``) — is a Q object, which django-rules does
not provide. Objects reach their client by duck typing (``client_of``), so this module
imports no other app.
"""

from __future__ import annotations

from django.db.models import Q

from mlworkspace.errors import field_error
from recipes import perms as recipe_perms

from .models import Client, ClientMembership, ClientRole, Recipe

WRITE_ROLES = (ClientRole.DATA_SCIENTIST, ClientRole.LEAD)
APPROVE_ROLES = (ClientRole.LEAD,)
ADMIN_GROUP = "Workspace admins"


def _signed_in(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def member_client_ids(user, roles=None):
    """The ids of the clients `user` belongs to (with one of `roles`), as a subquery."""
    memberships = ClientMembership.objects.filter(user_id=user.pk)
    if roles is not None:
        memberships = memberships.filter(role__in=roles)
    return memberships.values("client_id")


def client_scope(user, path: str = "client") -> Q:
    """A filter keeping the rows `user` may see, for rows that reach their client through
    `path` (``"client"`` on a recipe, ``"recipe__client"`` on a model or run,
    ``"model__recipe__client"`` on a snapshot or alert): firm rows (no client) and the rows
    of the user's clients; everything for superusers; nothing for anonymous users."""
    if not _signed_in(user):
        return Q(pk__in=[])
    if user.is_superuser:
        return Q()
    return Q(**{f"{path}__isnull": True}) | Q(**{f"{path}__in": member_client_ids(user)})


def visible_clients(user):
    """The clients `user` may see: all of them for superusers and client managers, else their own."""
    if not _signed_in(user):
        return Client.objects.none()
    if user.is_superuser or user.has_perm(recipe_perms.MANAGE_CLIENTS):
        return Client.objects.all()
    return Client.objects.filter(pk__in=member_client_ids(user))


def visible_recipes(user):
    return Recipe.objects.visible_to(user)


def client_id_of(obj) -> str | None:
    """The id of the client `obj` belongs to (None for firm objects), by what it holds:
    a client, a recipe, something with a recipe (version, model, run), a dataset (its own
    client, else its recipe's), something with a model (snapshot, alert) or a conversation
    (the recipe it created)."""
    if obj is None:
        return None
    if isinstance(obj, Client):
        return obj.pk
    if hasattr(obj, "level") and hasattr(obj, "client_id") and hasattr(obj, "model_family"):
        return obj.client_id  # a recipe
    if getattr(obj, "client_id", None):
        return obj.client_id  # a dataset uploaded with a client
    if getattr(obj, "recipe_id", None):
        return client_id_of(obj.recipe)
    if getattr(obj, "model_id", None) and hasattr(obj, "model"):
        return client_id_of(obj.model)
    if getattr(obj, "created_recipe_id", None):
        return client_id_of(obj.created_recipe)
    return None


def role_in(user, client_id: str | None) -> str | None:
    """The user's role in the client (None when not a member)."""
    if client_id is None or not _signed_in(user):
        return None
    cache = getattr(user, "_client_roles", None)
    if cache is None:
        cache = dict(ClientMembership.objects.filter(user_id=user.pk).values_list("client_id", "role"))
        user._client_roles = cache  # per request: the user object lives as long as the request
    return cache.get(client_id)


def forget_roles(user) -> None:
    """Drop the per-user role cache (after a membership of this user changed)."""
    if hasattr(user, "_client_roles"):
        del user._client_roles


def can_view(user, obj) -> bool:
    if not _signed_in(user):
        return False
    client_id = client_id_of(obj)
    return client_id is None or user.is_superuser or role_in(user, client_id) is not None


def can_write(user, obj) -> bool:
    """Whether `user` may change `obj` as far as clients go: for a client's object the role
    decides; for a firm object this says yes and the Django model permissions decide."""
    if not can_view(user, obj):
        return False
    client_id = client_id_of(obj)
    return client_id is None or user.is_superuser or role_in(user, client_id) in WRITE_ROLES


def can_approve(user, version) -> bool:
    if not can_view(user, version):
        return False
    client_id = client_id_of(version)
    if client_id is None:
        return user.has_perm(recipe_perms.APPROVE_VERSION)
    return user.is_superuser or role_in(user, client_id) in APPROVE_ROLES


def can_manage_clients(user) -> bool:
    return _signed_in(user) and user.has_perm(recipe_perms.MANAGE_CLIENTS)


def is_client_object(obj) -> bool:
    return client_id_of(obj) is not None


def has_write_role_somewhere(user) -> bool:
    """Whether `user` may write in at least one client (the API lets such a user past the
    model-permission check; the object check then decides)."""
    return role_somewhere(user, WRITE_ROLES)


def check_view(user, obj) -> None:
    """404 (never 403) unless `user` may see `obj`."""
    from django.http import Http404

    if not can_view(user, obj):
        raise Http404("Not found.")


def check_write(user, obj, perm: str | None = None) -> None:
    """404 unless `user` may see `obj`; 403 unless they may change it: a write role in its
    client for a client's object, the Django permission `perm` (when given) for a firm one."""
    from django.core.exceptions import PermissionDenied

    check_view(user, obj)
    if is_client_object(obj):
        if not can_write(user, obj):
            raise PermissionDenied("Changing a client's objects needs the data_scientist or lead role in it.")
    elif perm and not user.has_perm(perm):
        raise PermissionDenied(f"This needs the {perm} permission.")


def check_approve(user, version) -> None:
    from django.core.exceptions import PermissionDenied

    check_view(user, version)
    if not can_approve(user, version):
        if is_client_object(version):
            raise PermissionDenied("Approving a client recipe's version needs the lead role in that client.")
        raise PermissionDenied(
            "Approving a recipe version needs the recipes.approve_recipeversion permission."
        )


def client_for_write(user, client_id) -> Client | None:
    """The client named by `client_id` in a request, for creating something in it: a 400
    naming client_id when it is unknown, not visible to the user (the same message, so its
    existence is not confirmed) or the user has no write role in it. None/"" -> None."""
    if client_id in (None, ""):
        return None
    if not isinstance(client_id, str):
        raise field_error("client_id", "must be a client id")
    client = visible_clients(user).filter(pk=client_id).first()
    if client is None or not can_view(user, client):
        raise field_error("client_id", f"unknown client '{client_id[:80]}'")
    if not can_write(user, client):
        raise field_error("client_id", "you need the data_scientist or lead role in this client")
    return client


def role_somewhere(user, roles) -> bool:
    return _signed_in(user) and ClientMembership.objects.filter(user_id=user.pk, role__in=roles).exists()


def same_client(obj, path: str = "client") -> Q:
    """Rows (reaching their client through `path`) that may be used with `obj`: firm rows and
    rows of obj's own client — a client's data is never used for another client's model."""
    client_id = client_id_of(obj)
    if client_id is None:
        return Q(**{f"{path}__isnull": True})
    return Q(**{f"{path}__isnull": True}) | Q(**{path: client_id})
