import json

from django.utils.html import format_html

from recipes import access


def pretty_json(value) -> str:
    """Read-only JSON, indented, for admin detail pages."""
    return format_html(
        '<pre class="json-pretty">{}</pre>',  # styled in static/css/admin.css (CSP: no style attributes)
        json.dumps(value, indent=2, sort_keys=True, default=str),
    )


class ClientScopedAdmin:
    """A ModelAdmin mixin applying the one access rule (recipes.access) in the admin: a
    client's rows are listed, counted, searched and opened only by its members (and
    superusers), and changed only with a data_scientist or lead role in it. `client_path`
    is how a row reaches its client."""

    client_path = "recipe__client"

    def get_queryset(self, request):
        return super().get_queryset(request).filter(access.client_scope(request.user, self.client_path))

    def _client_write_ok(self, request, obj) -> bool:
        return obj is None or not access.is_client_object(obj) or access.can_write(request.user, obj)

    def has_change_permission(self, request, obj=None):
        return super().has_change_permission(request, obj) and self._client_write_ok(request, obj)

    def has_delete_permission(self, request, obj=None):
        return super().has_delete_permission(request, obj) and self._client_write_ok(request, obj)
