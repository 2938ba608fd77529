import json

from django.utils.html import format_html


def pretty_json(value) -> str:
    """Read-only JSON, indented, for admin detail pages."""
    return format_html(
        '<pre style="white-space:pre-wrap;max-height:40em;overflow:auto">{}</pre>',
        json.dumps(value, indent=2, sort_keys=True, default=str),
    )
