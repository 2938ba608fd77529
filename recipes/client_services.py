"""Writes on clients and their memberships (who may call them: recipes.access.can_manage_clients,
checked by the API and the pages). Kept apart from recipes/services.py, which is about
recipes and versions."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.db import IntegrityError, transaction
from django.utils.text import slugify

from audit import services as audit
from mlworkspace.errors import Conflict, NotFound, field_error
from mlworkspace.ids import new_id

from . import access
from .models import Client, ClientMembership, ClientRole


def _free_slug(base: str) -> str:
    base = (slugify(base) or "client")[:90]
    taken = set(Client.objects.filter(slug__startswith=base).values_list("slug", flat=True))
    slug, n = base, 1
    while slug in taken:
        n += 1
        slug = f"{base}-{n}"
    return slug


@transaction.atomic
@audit.as_action("client.create")
def client_create(*, user, name: str, slug: str | None = None) -> Client:
    """A new client. Without `slug` one is made from the name (unique with -2, -3, …); a
    given slug that is taken is a 409."""
    name = (name or "").strip()
    if not name:
        raise field_error("name", "is required")
    if len(name) > 200:
        raise field_error("name", "at most 200 characters")
    if slug:
        if slugify(slug) != slug or len(slug) > 100:
            raise field_error("slug", "lower-case letters, digits and hyphens only (at most 100)")
        if Client.objects.filter(slug=slug).exists():
            raise Conflict(f"A client with slug '{slug}' exists.", [{"path": "/slug", "message": "is taken"}])
    try:
        with transaction.atomic():
            return Client.objects.create(id=new_id("client"), name=name, slug=slug or _free_slug(name))
    except IntegrityError:  # a concurrent create took the slug
        raise Conflict(
            "A client with this slug exists.", [{"path": "/slug", "message": "is taken"}]
        ) from None


def member_by_username(username) -> object:
    if not isinstance(username, str) or not username.strip():
        raise field_error("username", "is required")
    member = get_user_model().objects.filter(username=username.strip()).first()
    if member is None:
        raise field_error("username", f"unknown user '{username.strip()[:150]}'")
    return member


@transaction.atomic
def membership_set(*, user, client: Client, member, role: str) -> ClientMembership:
    """Add `member` to `client` with `role`, or change their role."""
    if role not in ClientRole.values:
        raise field_error("role", f"must be one of {', '.join(ClientRole.values)}")
    membership, created = ClientMembership.objects.select_for_update().get_or_create(
        user=member, client=client, defaults={"role": role}
    )
    old_role = None if created else membership.role
    if not created and membership.role != role:
        membership.role = role
        membership.save(update_fields=["role"])
    action, changes = (
        "client.member_add" if created else "client.member_role",
        audit.changes({"role": old_role}, {"role": role}),
    )
    audit.record(user, action, client, changes=changes, detail={"username": member.get_username()})
    access.forget_roles(member)
    return membership


@transaction.atomic
def membership_remove(*, user, client: Client, member) -> None:
    old_role = (
        ClientMembership.objects.filter(user=member, client=client).values_list("role", flat=True).first()
    )
    deleted, _ = ClientMembership.objects.filter(user=member, client=client).delete()
    if not deleted:
        raise NotFound(f"'{member.get_username()}' is not a member of {client.name}.")
    audit.record(
        user,
        "client.member_remove",
        client,
        changes={"role": [old_role, None]},
        detail={"username": member.get_username()},
    )
    access.forget_roles(member)
