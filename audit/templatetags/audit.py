"""{% audit_history obj %}: an object's History (templates/audit/_history.html), read through
audit.selectors so every page shows it the same way and scoped alike."""

from django import template

from ..selectors import history
from ..services import object_type_of

register = template.Library()


@register.inclusion_tag("audit/_history.html", takes_context=True)
def audit_history(context, obj):
    request = context.get("request")
    user = getattr(request, "user", None)
    events = history(obj, user) if user is not None else []
    return {"events": events, "object": obj, "object_type": object_type_of(obj)}


@register.filter
def audit_value(value) -> str:
    """A before/after value, short: text as is, other JSON compact, long ones cut."""
    import json

    if value is None:
        return "—"
    text = value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)
    return text if len(text) <= 120 else text[:119] + "…"
