"""Webhooks, their deliveries, and e-mail subscriptions.

A webhook or subscription has a scope: one client (every recipe of it), one recipe, or
neither (firm-wide: every recipe, every client; webhooks of that scope are for admins).
"""

from django.conf import settings
from django.db import models
from django.db.models import Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from mlworkspace.fields import JSONField

SECRET_HINT_CHARS = 4


class Scope(models.TextChoices):
    CLIENT = "client", "Client"
    RECIPE = "recipe", "Recipe"
    FIRM = "firm", "Firm-wide"


def scope_of(obj) -> str:
    """client, recipe or firm: what a webhook or subscription covers."""
    if obj.client_id:
        return Scope.CLIENT
    if obj.recipe_id:
        return Scope.RECIPE
    return Scope.FIRM


class Webhook(models.Model):
    """An HTTP endpoint that receives the events of its scope as signed JSON POSTs.

    `secret` signs each delivery (notifications.signing). It must be usable to sign, so it is
    stored as it is; it is shown once (on creation and on rotation), never logged, audited or
    listed: the API and the pages show `secret_hint` (its last characters)."""

    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    url = models.CharField(max_length=2000)
    secret = models.CharField(max_length=128)
    client = models.ForeignKey(
        "recipes.Client", null=True, blank=True, on_delete=models.CASCADE, related_name="webhooks"
    )
    recipe = models.ForeignKey(
        "recipes.Recipe", null=True, blank=True, on_delete=models.CASCADE, related_name="webhooks"
    )
    # Event names (notifications.events.SUBSCRIBABLE); empty: every event.
    events = JSONField(default=list, blank=True)
    active = models.BooleanField(default=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "ml_webhook"
        ordering = ["name", "id"]
        indexes = [
            # notify(): the active webhooks of a recipe, its client or the firm (the foreign keys
            # have their own indexes; this one serves the firm-wide rows, client and recipe null).
            models.Index(fields=["active", "client", "recipe"], name="ml_webhook_scope_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(client__isnull=True) | Q(recipe__isnull=True), name="ml_webhook_one_scope"
            ),
            models.CheckConstraint(
                condition=Q(url__startswith="http://") | Q(url__startswith="https://"),
                name="ml_webhook_url_http",
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def scope(self) -> str:
        return scope_of(self)

    @property
    def secret_hint(self) -> str:
        return f"…{self.secret[-SECRET_HINT_CHARS:]}" if self.secret else ""


class DeliveryStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    RETRYING = "retrying", "Retrying"
    DELIVERED = "delivered", "Delivered"
    FAILED = "failed", "Failed"


OPEN_STATUSES = (DeliveryStatus.PENDING, DeliveryStatus.RETRYING)


class Delivery(models.Model):
    """One event sent (or to be sent) to one webhook: its payload, its attempts and the last
    answer. Workers send the open ones (pending, retrying) whose next_attempt_at is due,
    claiming each attempt with a conditional update (notifications.delivery)."""

    id = models.CharField(primary_key=True, max_length=64)
    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    event = models.CharField(max_length=64)
    payload = JSONField(default=dict, blank=True)
    # What the event was about. Not enforced by the database (db_constraint=False, DO_NOTHING):
    # the log outlives a deleted recipe, and the client keeps scoping who may read it.
    recipe = models.ForeignKey(
        "recipes.Recipe",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    client = models.ForeignKey(
        "recipes.Client",
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        related_name="+",
    )
    status = models.CharField(max_length=16, choices=DeliveryStatus.choices, default=DeliveryStatus.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    # When an open delivery may next be attempted (also moved forward while an attempt is in
    # flight, so another worker does not send it meanwhile); null once delivered or failed.
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    response_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=300, blank=True, default="")
    created_at = models.DateTimeField(default=timezone.now)
    delivered_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        db_table = "ml_webhook_delivery"
        ordering = ["-created_at", "-id"]
        verbose_name_plural = "deliveries"
        indexes = [
            # The workers' tick: open deliveries whose next attempt is due, oldest first.
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status__in=["pending", "retrying"]),
                name="ml_delivery_due_idx",
            ),
            # GET /webhooks/{id}/deliveries and the webhook's page: its log, newest first.
            models.Index(fields=["webhook", "-created_at", "-id"], name="ml_delivery_log_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=DeliveryStatus.values), name="ml_delivery_status_valid"
            ),
            models.CheckConstraint(
                condition=~Q(status="delivered") | Q(delivered_at__isnull=False),
                name="ml_delivery_delivered_at",
            ),
        ]

    def __str__(self):
        return f"{self.event} → {self.webhook_id} ({self.status})"


class EmailSubscription(models.Model):
    """A user's wish to get the events of a scope by e-mail (at their account's address).
    Sent only while the user may see the recipe the event is about (recipes.access)."""

    id = models.CharField(primary_key=True, max_length=64)
    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="notification_subscriptions"
    )
    client = models.ForeignKey(
        "recipes.Client", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    recipe = models.ForeignKey(
        "recipes.Recipe", null=True, blank=True, on_delete=models.CASCADE, related_name="+"
    )
    events = JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "ml_email_subscription"
        ordering = ["user_id", "created_at", "id"]
        constraints = [
            models.CheckConstraint(
                condition=Q(client__isnull=True) | Q(recipe__isnull=True), name="ml_subscription_one_scope"
            ),
            # One subscription per user and scope (subscribing again changes its events). Also
            # the index of "my subscriptions" (user first).
            models.UniqueConstraint(
                "user",
                Coalesce("client", Value("")),
                Coalesce("recipe", Value("")),
                name="ml_subscription_unique_scope",
            ),
        ]

    def __str__(self):
        return f"{self.user_id}: {self.scope}"

    @property
    def scope(self) -> str:
        return scope_of(self)
