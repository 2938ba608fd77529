import django_filters
from django.db.models import Q

from . import events as ev
from .models import Delivery, DeliveryStatus, Scope, Webhook


class WebhookFilter(django_filters.FilterSet):
    """The API's webhook list and the Notifications page alike."""

    scope = django_filters.ChoiceFilter(choices=Scope.choices, method="filter_scope")
    client_id = django_filters.CharFilter(field_name="client_id")
    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    active = django_filters.BooleanFilter()

    class Meta:
        model = Webhook
        fields = ["scope", "client_id", "recipe_id", "active"]

    def filter_scope(self, queryset, name, value):
        return queryset.filter(
            {
                Scope.CLIENT: Q(client__isnull=False),
                Scope.RECIPE: Q(recipe__isnull=False),
                Scope.FIRM: Q(client__isnull=True, recipe__isnull=True),
            }[value]
        )


class DeliveryFilter(django_filters.FilterSet):
    """A webhook's delivery log (GET /webhooks/{id}/deliveries and the webhook's page)."""

    status = django_filters.ChoiceFilter(choices=DeliveryStatus.choices)
    event = django_filters.ChoiceFilter(choices=[(name, name) for name in ev.EVENTS])

    class Meta:
        model = Delivery
        fields = ["status", "event"]
