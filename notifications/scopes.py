"""Who sees and who manages a webhook, and who may subscribe to what — built on the one
access rule (recipes.access), used by the API, the page and the admin alike.

* A **client** webhook: seen by the client's members, managed by its leads (and admins,
  `is_staff`, who are members; superusers always).
* A **recipe** webhook: seen by whoever sees the recipe, managed by whoever may change it (a
  data scientist or lead of its client; for a firm recipe, `recipes.change_recipe`).
* A **firm-wide** webhook gets every event of every client: seen and managed by admins
  (`is_staff`) only. Its delivery log shows an admin only the deliveries of the clients they
  may see (``deliveries_visible``).

Not seeing is a 404, seeing without managing a 403. An e-mail subscription needs only to see
its scope (firm-wide: admins); e-mails go only to users who may see the event's recipe.
"""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.db.models import Q

from recipes import access
from recipes import perms as recipe_perms
from recipes.models import Client, ClientRole, Recipe

from .models import Delivery, Webhook


def _signed_in(user) -> bool:
    return bool(user is not None and user.is_authenticated and user.is_active)


def is_admin(user) -> bool:
    return _signed_in(user) and (user.is_staff or user.is_superuser)


def visible_webhooks(user):
    """The webhooks `user` may see (see the module docstring)."""
    if not _signed_in(user):
        return Webhook.objects.none()
    if user.is_superuser:
        return Webhook.objects.all()
    members_of = access.member_client_ids(user)
    seen = Q(client__in=members_of) | (Q(recipe__isnull=False) & access.client_scope(user, "recipe__client"))
    if is_admin(user):
        seen |= Q(client__isnull=True, recipe__isnull=True)
    return Webhook.objects.filter(seen)


def deliveries_visible(user, webhook: Webhook):
    """A webhook's deliveries `user` may read: of a firm-wide webhook, only those about the
    firm's recipes and the user's clients."""
    return Delivery.objects.filter(webhook_id=webhook.pk).filter(access.client_scope(user, "client"))


def can_manage_scope(user, *, client: Client | None = None, recipe: Recipe | None = None) -> bool:
    """Whether `user` may create or change webhooks of this scope (they can see it)."""
    if not _signed_in(user):
        return False
    if client is not None:
        return user.is_superuser or (
            access.can_view(user, client)
            and (user.is_staff or access.role_in(user, client.pk) == ClientRole.LEAD)
        )
    if recipe is not None:
        if access.is_client_object(recipe):
            return access.can_write(user, recipe)
        return user.has_perm(recipe_perms.CHANGE_RECIPE)
    return is_admin(user)


def can_manage(user, webhook: Webhook) -> bool:
    return can_manage_scope(user, client=webhook.client, recipe=webhook.recipe)


def check_manage(user, webhook: Webhook) -> None:
    """403 with a message saying who may, unless `user` may change `webhook` (call it on a
    webhook taken from ``visible_webhooks``: not seeing it is the caller's 404)."""
    if not can_manage(user, webhook):
        raise PermissionDenied(manage_message(webhook.scope))


def manage_message(scope: str) -> str:
    return {
        "client": "Managing a client's webhooks needs the lead role in that client.",
        "recipe": "Managing a recipe's webhooks needs the right to change the recipe.",
        "firm": "Firm-wide webhooks are managed by workspace admins (staff) only.",
    }[scope]


def can_subscribe(user, *, client: Client | None = None, recipe: Recipe | None = None) -> bool:
    """E-mail is for oneself: seeing the scope is enough (firm-wide: admins)."""
    if not _signed_in(user):
        return False
    if client is not None:
        return access.can_view(user, client)
    if recipe is not None:
        return access.can_view(user, recipe)
    return is_admin(user)


def clients_managed(user):
    """The clients whose webhooks `user` may manage (for the page's scope choices)."""
    if not _signed_in(user):
        return Client.objects.none()
    if user.is_superuser:
        return Client.objects.all()
    mine = (
        access.member_client_ids(user) if user.is_staff else access.member_client_ids(user, [ClientRole.LEAD])
    )
    return Client.objects.filter(pk__in=mine)


def recipes_managed(user):
    """The recipes whose webhooks `user` may manage (for the page's scope choices)."""
    if not _signed_in(user):
        return Recipe.objects.none()
    if user.is_superuser:
        return Recipe.objects.all()
    writable = Q(client__in=access.member_client_ids(user, access.WRITE_ROLES))
    if user.has_perm(recipe_perms.CHANGE_RECIPE):
        writable |= Q(client__isnull=True)
    return Recipe.objects.filter(writable)
