import django_filters

from .models import AuditEvent


class AuditEventFilter(django_filters.FilterSet):
    """GET /audit?object_type=&object_id=&actor=&action=&client_id=&since=&until=."""

    object_type = django_filters.CharFilter(help_text="recipe, version, model, run, dataset, client, …")
    object_id = django_filters.CharFilter()
    actor = django_filters.CharFilter(field_name="actor_username", help_text="The actor's username.")
    action = django_filters.CharFilter(
        method="filter_action",
        help_text="An action (recipe.clone), or a prefix ending in a dot for a family (recipe.).",
    )
    client_id = django_filters.CharFilter()
    since = django_filters.IsoDateTimeFilter(
        field_name="at", lookup_expr="gte", help_text="ISO 8601, inclusive."
    )
    until = django_filters.IsoDateTimeFilter(
        field_name="at", lookup_expr="lt", help_text="ISO 8601, exclusive."
    )

    class Meta:
        model = AuditEvent
        fields = ["object_type", "object_id", "actor", "action", "client_id", "since", "until"]

    def filter_action(self, queryset, name, value):
        value = value.strip()
        if value.endswith("."):
            return queryset.filter(action__startswith=value)
        return queryset.filter(action=value)
