"""The Notifications page: the webhooks you may see (create one, send a test, rotate its
secret, edit, deactivate or delete it, read its delivery log) and your own e-mail
subscriptions. The writes go through notifications.services, as the API's; who may do what
is notifications.scopes."""

from __future__ import annotations

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import OuterRef, Subquery
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect
from django.views.decorators.http import require_http_methods, require_POST

from mlworkspace.errors import DomainError
from mlworkspace.forms import add_domain_errors
from mlworkspace.views import is_fragment, paginate, render_page

from . import events as ev
from . import scopes, services
from .filters import DeliveryFilter
from .forms import SubscriptionForm, WebhookEditForm, WebhookForm, resolve_scope
from .models import OPEN_STATUSES, Delivery, DeliveryStatus, EmailSubscription, Webhook

LOG_PAGE_SIZE = 20
# The badge each delivery status wears (classes of static/css/app.css).
STATUS_BADGES = {
    DeliveryStatus.PENDING: "queued",
    DeliveryStatus.RETRYING: "warning",
    DeliveryStatus.DELIVERED: "succeeded",
    DeliveryStatus.FAILED: "failed",
}


def _get_webhook_for_user(user, webhook_id: str) -> Webhook:
    """The webhook, 404 unless the user may see it."""
    return get_object_or_404(
        scopes.visible_webhooks(user).select_related("client", "recipe", "created_by"), pk=webhook_id
    )


def _managed_webhook(request: HttpRequest, webhook_id: str) -> Webhook:
    """The webhook, 404 unless visible, 403 (with who may) unless the user may change it."""
    webhook = _get_webhook_for_user(request.user, webhook_id)
    scopes.check_manage(request.user, webhook)
    return webhook


def _webhooks(user) -> list[Webhook]:
    """The visible webhooks with their newest delivery's status and time (one query)."""
    newest = Delivery.objects.filter(webhook_id=OuterRef("pk")).order_by("-created_at", "-id")
    webhooks = list(
        scopes.visible_webhooks(user)
        .select_related("client", "recipe")
        .annotate(
            last_status=Subquery(newest.values("status")[:1]),
            last_at=Subquery(newest.values("created_at")[:1]),
        )
        .order_by("name", "id")
    )
    for webhook in webhooks:
        webhook.can_manage = scopes.can_manage(user, webhook)
        webhook.last_badge = STATUS_BADGES.get(webhook.last_status, "muted")
    return webhooks


def _page_context(
    request: HttpRequest,
    *,
    form: WebhookForm | None = None,
    subscription_form: SubscriptionForm | None = None,
    created: Webhook | None = None,
) -> dict:
    user = request.user
    return {
        "nav": "notifications",
        "webhooks": _webhooks(user),
        "form": form or WebhookForm(user=user),
        "subscription_form": subscription_form or SubscriptionForm(user=user),
        "subscriptions": list(
            EmailSubscription.objects.filter(user=user)
            .select_related("client", "recipe")
            .order_by("created_at")
        ),
        "created": created,
        "events": ev.EVENTS,
        "has_email": bool((user.email or "").strip()),
    }


@login_required
@require_http_methods(["GET", "POST"])
def notifications(request: HttpRequest) -> HttpResponse:
    """The page; POST creates a webhook (its secret is shown on the answer, once)."""
    if request.method == "GET":
        return render_page(request, "notifications/notifications.html", _page_context(request))
    form = WebhookForm(request.POST, user=request.user)
    if form.is_valid():
        client, recipe = resolve_scope(form.cleaned_data["scope"])
        try:
            webhook = services.webhook_create(
                user=request.user,
                name=form.cleaned_data["name"],
                url=form.cleaned_data["url"],
                client=client,
                recipe=recipe,
                events=form.cleaned_data["events"],
            )
        except DomainError as exc:
            add_domain_errors(form, exc, {"client_id": "scope", "recipe_id": "scope"})
        else:
            # Rendered, not redirected: the secret must not travel through a message or the URL.
            context = _page_context(request, created=webhook)
            return render_page(request, "notifications/notifications.html", context, status=201)
    context = _page_context(request, form=form)
    return render_page(request, "notifications/notifications.html", context, status=400)


# --------------------------------------------------------------------------- one webhook


def _log_context(request: HttpRequest, webhook: Webhook) -> dict:
    log = DeliveryFilter(
        request.GET or None,
        queryset=scopes.deliveries_visible(request.user, webhook).order_by("-created_at", "-id"),
    )
    deliveries = log.qs if log.is_bound and log.is_valid() else log.queryset
    page = paginate(request, deliveries, per_page=LOG_PAGE_SIZE)
    for delivery in page.object_list:
        delivery.badge = STATUS_BADGES.get(delivery.status, "muted")
    return {
        "webhook": webhook,
        "page": page,
        "status_filter": request.GET.get("status", ""),
        "statuses": DeliveryStatus.choices,
        # While something is on its way, the log refreshes itself.
        "live": any(d.status in OPEN_STATUSES for d in page.object_list),
    }


def _webhook_context(request: HttpRequest, webhook: Webhook, **extra) -> dict:
    can_manage = scopes.can_manage(request.user, webhook)
    edit_form = extra.pop("edit_form", None) or WebhookEditForm(
        initial={"name": webhook.name, "url": webhook.url, "events": webhook.events, "active": webhook.active}
    )
    return {
        "nav": "notifications",
        "can_manage": can_manage,
        "manage_message": scopes.manage_message(webhook.scope),
        "edit_form": edit_form,
        "events": ev.EVENTS,
        **_log_context(request, webhook),
        **extra,
    }


@login_required
@require_http_methods(["GET", "POST"])
def webhook_detail(request: HttpRequest, webhook_id: str) -> HttpResponse:
    """A webhook's settings and delivery log (`?status=`, `?page=`; HTMX: the log only).
    POST: the edit form (name, URL, events, active)."""
    if request.method == "GET":
        webhook = _get_webhook_for_user(request.user, webhook_id)
        context = _webhook_context(request, webhook)
        return render_page(request, "notifications/webhook_detail.html", context, partial="deliveries")
    webhook = _managed_webhook(request, webhook_id)
    form = WebhookEditForm(request.POST)
    if form.is_valid():
        try:
            services.webhook_update(user=request.user, webhook=webhook, **form.cleaned_data)
        except DomainError as exc:
            add_domain_errors(form, exc)
        else:
            messages.success(request, f"Saved the webhook “{form.cleaned_data['name']}”.")
            return redirect("pages:webhook", webhook_id=webhook.pk)
    context = _webhook_context(request, webhook, edit_form=form)
    return render_page(request, "notifications/webhook_detail.html", context, status=400)


@login_required
@require_POST
def webhook_test(request: HttpRequest, webhook_id: str) -> HttpResponse:
    """Send test: a `test` delivery, sent by a worker at once. HTMX gets the log back."""
    webhook = _managed_webhook(request, webhook_id)
    services.webhook_send_test(user=request.user, webhook=webhook)
    if is_fragment(request):
        context = _webhook_context(request, webhook)
        return render_page(request, "notifications/webhook_detail.html", context, partial="deliveries")
    messages.success(request, "A test delivery is on its way: its result shows in the log below.")
    return redirect("pages:webhook", webhook_id=webhook.pk)


@login_required
@require_POST
def webhook_rotate(request: HttpRequest, webhook_id: str) -> HttpResponse:
    """A new secret, shown on this answer only."""
    webhook = services.webhook_rotate_secret(user=request.user, webhook=_managed_webhook(request, webhook_id))
    context = _webhook_context(request, webhook, new_secret=webhook.secret)
    return render_page(request, "notifications/webhook_detail.html", context)


@login_required
@require_POST
def webhook_delete(request: HttpRequest, webhook_id: str) -> HttpResponse:
    webhook = _managed_webhook(request, webhook_id)
    services.webhook_delete(user=request.user, webhook=webhook)
    messages.success(request, f"Deleted the webhook “{webhook.name}” and its delivery log.")
    return redirect("pages:notifications")


# --------------------------------------------------------------------------- e-mail


@login_required
@require_POST
def subscription_set(request: HttpRequest) -> HttpResponse:
    """Subscribe to a scope's events by e-mail (again: change the events)."""
    form = SubscriptionForm(request.POST, user=request.user)
    if form.is_valid():
        client, recipe = resolve_scope(form.cleaned_data["scope"])
        try:
            services.subscription_set(
                user=request.user, client=client, recipe=recipe, events=form.cleaned_data["events"]
            )
        except DomainError as exc:
            add_domain_errors(form, exc, {"email": "scope", "client_id": "scope", "recipe_id": "scope"})
        else:
            messages.success(request, f"E-mails will go to {request.user.email}.")
            return redirect("pages:notifications")
    context = _page_context(request, subscription_form=form)
    return render_page(request, "notifications/notifications.html", context, status=400)


@login_required
@require_POST
def subscription_delete(request: HttpRequest, subscription_id: str) -> HttpResponse:
    subscription = get_object_or_404(EmailSubscription, pk=subscription_id, user=request.user)
    services.subscription_delete(subscription=subscription)
    messages.success(request, "Unsubscribed.")
    return redirect("pages:notifications")
