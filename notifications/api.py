"""Webhooks: `GET/POST /webhooks`, `GET/PATCH/DELETE /webhooks/{id}`, `POST /webhooks/{id}/test`,
`POST /webhooks/{id}/rotate-secret`, `GET /webhooks/{id}/deliveries`.

Who sees and manages what is notifications.scopes (on top of recipes.access): a webhook you
may not see is a 404, one you see but may not change a 403; a client or recipe named in a
request that you may not see is a 404 naming the field."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied as DjangoPermissionDenied
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from mlworkspace.errors import NotFound, field_error
from recipes import access
from recipes.models import Client, Recipe

from . import events as ev
from . import scopes, services
from .filters import DeliveryFilter, WebhookFilter
from .models import DeliveryStatus, Webhook
from .serializers import (
    DeliverySerializer,
    WebhookCreateSerializer,
    WebhookSerializer,
    WebhookUpdateSerializer,
    WebhookWithSecretSerializer,
)


def _not_found(field: str, value: str) -> NotFound:
    # The same answer for "does not exist" and "not yours", so an id's existence is not confirmed.
    return NotFound(f"{field}: unknown id '{value[:80]}'", [{"path": f"/{field}", "message": "not found"}])


def scope_for(user, client_id: str | None, recipe_id: str | None) -> tuple[Client | None, Recipe | None]:
    """The client or recipe a request names as a webhook's scope, if `user` may see it (404 naming
    the field otherwise); both named is a 400."""
    if client_id and recipe_id:
        raise field_error("recipe_id", "give a client_id or a recipe_id (or neither: firm-wide), not both")
    client = recipe = None
    if client_id:
        client = Client.objects.filter(pk=client_id).first()
        if client is None or not access.can_view(user, client):
            raise _not_found("client_id", client_id)
    if recipe_id:
        recipe = Recipe.objects.visible_to(user).filter(pk=recipe_id).first()
        if recipe is None:
            raise _not_found("recipe_id", recipe_id)
    return client, recipe


class WebhookViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Outgoing webhooks: every event of their scope (a client, a recipe, or firm-wide) is POSTed
    to their URL as signed JSON (see the README's Notifications section). The secret is in the
    answers to create and rotate-secret only."""

    permission_classes = [IsAuthenticated]
    serializer_class = WebhookSerializer
    filterset_class = WebhookFilter
    ordering = ["name", "id"]
    ordering_fields = ["name", "created_at"]
    lookup_value_regex = "[^/]+"
    http_method_names = ["get", "post", "patch", "delete", "head", "options"]

    def get_queryset(self):
        return scopes.visible_webhooks(self.request.user).select_related("client", "recipe", "created_by")

    def _manageable(self) -> Webhook:
        """The webhook of the URL: 404 unless visible, 403 unless the user may change it."""
        webhook = self.get_object()
        try:
            scopes.check_manage(self.request.user, webhook)
        except DjangoPermissionDenied as exc:
            raise exceptions.PermissionDenied(str(exc)) from None
        return webhook

    @extend_schema(request=WebhookCreateSerializer, responses={201: WebhookWithSecretSerializer})
    def create(self, request, *args, **kwargs):
        data = WebhookCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        client, recipe = scope_for(request.user, v.get("client_id"), v.get("recipe_id"))
        if not scopes.can_manage_scope(request.user, client=client, recipe=recipe):
            scope = "client" if client else "recipe" if recipe else "firm"
            raise exceptions.PermissionDenied(scopes.manage_message(scope))
        webhook = services.webhook_create(
            user=request.user,
            name=v["name"],
            url=v["url"],
            client=client,
            recipe=recipe,
            events=v["events"],
            active=v["active"],
        )
        return Response(WebhookWithSecretSerializer(webhook).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=WebhookUpdateSerializer, responses=WebhookSerializer)
    def partial_update(self, request, *args, **kwargs):
        """Change the name, URL, events or active flag. The scope stays: create a new webhook."""
        webhook = self._manageable()
        data = WebhookUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        changes = dict(data.validated_data)
        for field in ("client_id", "recipe_id"):
            if field in changes:
                raise field_error(field, "a webhook's scope cannot change: create a new webhook")
        webhook = services.webhook_update(user=request.user, webhook=webhook, **changes)
        return Response(WebhookSerializer(webhook).data)

    def destroy(self, request, *args, **kwargs):
        """Delete the webhook and its delivery log."""
        services.webhook_delete(user=request.user, webhook=self._manageable())
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses={202: DeliverySerializer})
    @action(detail=True, methods=["post"])
    def test(self, request, pk=None):
        """Send a `test` event now: a worker delivers it (see its status in the deliveries)."""
        delivery = services.webhook_send_test(user=request.user, webhook=self._manageable())
        return Response(DeliverySerializer(delivery).data, status=status.HTTP_202_ACCEPTED)

    @extend_schema(request=None, responses=WebhookWithSecretSerializer)
    @action(detail=True, methods=["post"], url_path="rotate-secret")
    def rotate_secret(self, request, pk=None):
        """A new secret, shown in this answer only; the old one stops signing at once."""
        webhook = services.webhook_rotate_secret(user=request.user, webhook=self._manageable())
        return Response(WebhookWithSecretSerializer(webhook).data)

    @extend_schema(
        parameters=[
            OpenApiParameter("status", str, enum=DeliveryStatus.values, description="Only this status"),
            OpenApiParameter("event", str, enum=list(ev.EVENTS), description="Only this event"),
        ],
        responses=DeliverySerializer(many=True),
    )
    @action(detail=True, methods=["get"], filter_backends=[])
    def deliveries(self, request, pk=None):
        """The delivery log, newest first (`?status=`, `?event=`; paginated): each event sent,
        its attempts, the last response code and error."""
        webhook = self.get_object()
        log = DeliveryFilter(
            request.query_params,
            queryset=scopes.deliveries_visible(request.user, webhook).order_by("-created_at", "-id"),
        )
        if not log.is_valid():
            raise exceptions.ValidationError(log.errors)
        page = self.paginate_queryset(log.qs)
        return self.get_paginated_response(DeliverySerializer(page, many=True).data)
