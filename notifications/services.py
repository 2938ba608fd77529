"""Writes of notifications: `notify` (what the other apps call when something happens), the
webhooks (create, update, delete, rotate the secret, send a test) and e-mail subscriptions.

Who may call the webhook writes is notifications.scopes (checked by the API and the page);
each write is audited with audit.services.record, never with the secret in it.
"""

from __future__ import annotations

import json
import logging
import secrets
from datetime import datetime
from functools import partial
from urllib.parse import urlsplit

from django.db import IntegrityError, transaction
from django.db.models import CharField, Q, Value
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import field_error
from mlworkspace.fields import SafeJSONEncoder
from mlworkspace.ids import new_id
from recipes.models import Client, Recipe

from . import addresses, tasks
from . import events as ev
from .models import Delivery, EmailSubscription, Webhook

logger = logging.getLogger(__name__)

URL_MAX_CHARS = 2000
NAME_MAX_CHARS = 200
SECRET_PREFIX = "whsec_"
EMAIL_SUBJECT_PREFIX = "[ML Workspace]"
UNSET = object()


# --------------------------------------------------------------------------- input rules


def clean_url(url) -> str:
    """An http(s) URL with a host (no credentials in it, no spaces, not an IP literal of a
    non-public address: notifications.addresses): a 400 naming `url` otherwise."""
    if not isinstance(url, str) or not url.strip():
        raise field_error("url", "is required")
    url = url.strip()
    if len(url) > URL_MAX_CHARS:
        raise field_error("url", f"at most {URL_MAX_CHARS} characters")
    if any(ch.isspace() or ord(ch) < 32 or ord(ch) == 127 for ch in url):
        raise field_error("url", "must not contain spaces or control characters")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (raises ValueError for a port that is not a number)
    except ValueError:
        raise field_error("url", "is not a valid URL") from None
    scheme = parts.scheme.lower()
    if scheme not in ("http", "https"):
        raise field_error("url", "must start with http:// or https://")
    if not parts.hostname:
        raise field_error("url", "needs a host name")
    if parts.username is not None or parts.password is not None:
        raise field_error("url", "must not contain a user name or password (the signature authenticates us)")
    # An IP literal is judged now; a host name only when sent (its DNS can change meanwhile).
    literal = addresses.ip_literal(parts.hostname)
    refused = addresses.described(literal) if literal is not None else None
    if refused and not addresses.exempt(parts.hostname):
        raise field_error(
            "url",
            f"points at {refused}: webhooks may only reach public addresses "
            f"(an admin may {addresses.SETTINGS_HINT})",
        )
    return scheme + url[len(parts.scheme) :]


def clean_name(name) -> str:
    if not isinstance(name, str) or not name.strip():
        raise field_error("name", "is required")
    if len(name.strip()) > NAME_MAX_CHARS:
        raise field_error("name", f"at most {NAME_MAX_CHARS} characters")
    return name.strip()


def clean_events(value) -> list[str]:
    try:
        return ev.clean_events(value)
    except ValueError as exc:
        raise field_error("events", str(exc)) from None


def _one_scope(client: Client | None, recipe: Recipe | None) -> None:
    if client is not None and recipe is not None:
        raise field_error("recipe_id", "give a client_id or a recipe_id (or neither: firm-wide), not both")


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def _state(webhook: Webhook) -> dict:
    """What the audit trail keeps of a webhook: every field but the secret."""
    state = audit.snapshot(webhook)
    state.pop("secret", None)
    return state


def json_safe(payload) -> dict:
    """`payload` as plain JSON (dates as ISO text, NaN as null, numpy as numbers)."""
    if payload is None:
        return {}
    if not isinstance(payload, dict):
        payload = {"value": payload}
    return json.loads(json.dumps(payload, cls=SafeJSONEncoder))


# --------------------------------------------------------------------------- webhooks


@transaction.atomic
def webhook_create(
    *,
    user,
    name: str,
    url: str,
    client: Client | None = None,
    recipe: Recipe | None = None,
    events: list[str] | None = None,
    active: bool = True,
) -> Webhook:
    """A new webhook with a new secret (read it from the returned object: it is shown once)."""
    _one_scope(client, recipe)
    webhook = Webhook.objects.create(
        id=new_id("webhook"),
        name=clean_name(name),
        url=clean_url(url),
        secret=new_secret(),
        client=client,
        recipe=recipe,
        events=clean_events(events),
        active=bool(active),
        created_by=user if getattr(user, "is_authenticated", False) else None,
    )
    audit.record(user, "webhook.create", webhook, changes=audit.changes(None, _state(webhook)))
    return webhook


@transaction.atomic
def webhook_update(*, user, webhook: Webhook, name=UNSET, url=UNSET, events=UNSET, active=UNSET) -> Webhook:
    """Change a webhook's name, URL, events or active flag (its scope stays: make a new one)."""
    webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
    before = _state(webhook)
    if name is not UNSET:
        webhook.name = clean_name(name)
    if url is not UNSET:
        webhook.url = clean_url(url)
    if events is not UNSET:
        webhook.events = clean_events(events)
    if active is not UNSET:
        webhook.active = bool(active)
    changes = audit.changes(before, _state(webhook))
    if changes:
        webhook.save()
        audit.record(user, "webhook.update", webhook, changes=changes)
    return webhook


@transaction.atomic
def webhook_delete(*, user, webhook: Webhook) -> None:
    """Delete a webhook and its delivery log (pending deliveries are never sent)."""
    webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
    audit.record(user, "webhook.delete", webhook, changes=audit.changes(_state(webhook), None))
    webhook.delete()


@transaction.atomic
def webhook_rotate_secret(*, user, webhook: Webhook) -> Webhook:
    """A new secret (returned once, on the object); deliveries from now on are signed with it."""
    webhook = Webhook.objects.select_for_update().get(pk=webhook.pk)
    webhook.secret = new_secret()
    webhook.save(update_fields=["secret", "updated_at"])
    # Neither secret goes into the trail: only that it was rotated.
    audit.record(user, "webhook.rotate_secret", webhook, detail={"rotated": True})
    return webhook


@transaction.atomic
def webhook_send_test(*, user, webhook: Webhook, at: datetime | None = None) -> Delivery:
    """A `test` delivery to this webhook, sent by a worker as soon as this commits (also to an
    inactive webhook: the button asks for it)."""
    at = at or timezone.now()
    recipe = webhook.recipe
    delivery = Delivery.objects.create(
        id=new_id("delivery"),
        webhook=webhook,
        event=ev.TEST,
        payload={
            "message": "A test delivery from the ML workspace: your endpoint and signature check work.",
            "webhook_id": webhook.pk,
            "webhook_name": webhook.name,
            "requested_by": user.get_username() if getattr(user, "is_authenticated", False) else "",
        },
        recipe=recipe,
        client_id=webhook.client_id or (recipe.client_id if recipe is not None else None),
        next_attempt_at=at,
        created_at=at,
    )
    transaction.on_commit(partial(_hand_over, [delivery.pk], None), robust=True)
    return delivery


# --------------------------------------------------------------------------- notify


def notify(event: str, *, recipe: Recipe | None, payload: dict, at: datetime | None = None) -> int:
    """Tell the webhooks and e-mail subscribers whose scope covers `recipe` (the recipe, its
    client, or firm-wide) and whose events include `event`: a Delivery per webhook and one
    e-mail per subscriber, handed to the workers when the caller's transaction commits (never
    if it rolls back). Returns how many deliveries and e-mails were queued.

    Cheap when nobody listens (one query) and never raises: it is called from inside
    monitoring checks and lifecycle changes, whose work must not fail because of it."""
    try:
        return _notify(event, recipe=recipe, payload=payload, at=at)
    except Exception:  # a notification must never break what it reports on
        logger.exception("notify(%r) failed: the event was not sent", event)
        return 0


def _listeners(event: str, recipe: Recipe | None) -> tuple[list[str], list[str]]:
    """(webhook ids, subscription ids) that want `event` about `recipe`: one query."""
    client_id = recipe.client_id if recipe is not None else None
    scope = Q(client__isnull=True, recipe__isnull=True)
    if recipe is not None:
        scope |= Q(recipe_id=recipe.pk)
    if client_id:
        scope |= Q(client_id=client_id)
    kind = partial(Value, output_field=CharField())
    hooks = Webhook.objects.filter(scope, active=True).order_by().values_list(kind("webhook"), "id", "events")
    subscriptions = EmailSubscription.objects.filter(scope, user__is_active=True).exclude(user__email="")
    if client_id:
        # E-mail goes only to users who may see the recipe (recipes.access: members, superusers).
        subscriptions = subscriptions.filter(
            Q(user__is_superuser=True) | Q(user__client_memberships__client_id=client_id)
        )
    subscriptions = subscriptions.order_by().values_list(kind("email"), "id", "events")
    webhook_ids, subscription_ids = [], []
    # (order_by(): a union would otherwise be sorted by Webhook's Meta.ordering, not selected.)
    for source, pk, wanted in hooks.union(subscriptions, all=True).order_by():
        if isinstance(wanted, str):  # a JSON column read through UNION may come back as text
            wanted = json.loads(wanted)
        if ev.wants(wanted, event):
            (webhook_ids if source == "webhook" else subscription_ids).append(pk)
    return webhook_ids, sorted(set(subscription_ids))


def _notify(event: str, *, recipe: Recipe | None, payload: dict, at: datetime | None) -> int:
    if event not in ev.SUBSCRIBABLE:
        logger.error("notify: unknown event %r (notifications.events lists them)", event)
        return 0
    webhook_ids, subscription_ids = _listeners(event, recipe)
    if not webhook_ids and not subscription_ids:
        return 0
    at = at or timezone.now()
    data = json_safe(payload)
    client_id = recipe.client_id if recipe is not None else None
    # A savepoint: if anything below fails, the caller's transaction is left as it was.
    with transaction.atomic():
        deliveries = Delivery.objects.bulk_create(
            Delivery(
                id=new_id("delivery"),
                webhook_id=webhook_id,
                event=event,
                payload=data,
                recipe_id=recipe.pk if recipe is not None else None,
                client_id=client_id,
                next_attempt_at=at,
                created_at=at,
            )
            for webhook_id in webhook_ids
        )
        recipients = sorted(
            set(
                EmailSubscription.objects.filter(pk__in=subscription_ids).values_list(
                    "user__email", flat=True
                )
            )
        )
        email = _email(event, recipe, data, at, recipients) if recipients else None
        transaction.on_commit(partial(_hand_over, [d.pk for d in deliveries], email), robust=True)
    return len(deliveries) + len(recipients)


def _email(event: str, recipe: Recipe | None, data: dict, at: datetime, recipients: list[str]) -> dict:
    """The e-mail of an event: a subject naming the event and recipe (or the payload's
    `summary`), a plain-text body with the payload."""
    about = recipe.name if recipe is not None else "the workspace"
    summary = data.get("summary") if isinstance(data.get("summary"), str) else ""
    subject = f"{EMAIL_SUBJECT_PREFIX} {event}: {summary or about}"
    subject = " ".join(subject.split())[:200]  # one line: headers cannot hold line breaks
    lines = [
        f"Event: {event} — {ev.EVENTS[event]}",
        f"Recipe: {recipe.name} ({recipe.pk})" if recipe is not None else "Recipe: —",
        f"Client: {recipe.client_id}" if recipe is not None and recipe.client_id else "Client: — (firm)",
        f"At: {at.isoformat()}",
        "",
        json.dumps(data, indent=2, ensure_ascii=False),
        "",
        "You get this because you subscribed to these events on the Notifications page of the "
        "ML workspace; unsubscribe there.",
    ]
    return {"subject": subject, "body": "\n".join(lines), "recipients": recipients}


def _hand_over(delivery_ids: list[str], email: dict | None) -> None:
    """After the commit: a task per delivery (a worker sends it at once; the workers' tick
    sends whatever a task did not, and the retries) and one for the e-mails."""
    for delivery_id in delivery_ids:
        try:
            tasks.enqueue_delivery(delivery_id)
        except Exception:  # the workers' tick sends it anyway
            logger.exception("could not enqueue delivery %s; the workers' tick will send it", delivery_id)
    if email:
        try:
            tasks.enqueue_email(email["subject"], email["body"], email["recipients"])
        except Exception:  # e-mail is best effort
            logger.exception("could not enqueue the e-mail %r", email["subject"])


# --------------------------------------------------------------------------- e-mail subscriptions


@transaction.atomic
def subscription_set(
    *, user, client: Client | None = None, recipe: Recipe | None = None, events: list[str] | None = None
) -> EmailSubscription:
    """Subscribe `user` to the events of a scope by e-mail (again: change the events)."""
    _one_scope(client, recipe)
    if not (getattr(user, "email", "") or "").strip():
        raise field_error("email", "your account has no e-mail address: ask an admin to add one")
    events = clean_events(events)
    existing = EmailSubscription.objects.select_for_update().filter(user=user, client=client, recipe=recipe)
    subscription = existing.first()
    if subscription is None:
        try:
            with transaction.atomic():
                return EmailSubscription.objects.create(
                    id=new_id("subscription"), user=user, client=client, recipe=recipe, events=events
                )
        except IntegrityError:  # subscribed at the same moment from elsewhere
            subscription = existing.get()
    subscription.events = events
    subscription.save(update_fields=["events"])
    return subscription


@transaction.atomic
def subscription_delete(*, subscription: EmailSubscription) -> None:
    subscription.delete()
