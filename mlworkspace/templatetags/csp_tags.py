"""``{% plotly_style_guards %}``: what lets plotly.js load under the CSP without a blocked <style>.

When plotly.js loads it registers its map trace types, and that injects MapLibre's CSS as a
<style> element of its own (``if (!document.getElementById("<sha256>")) { create <style> }``).
The CSP blocks a <style> without the nonce, and the browser reports a violation. The
workspace draws no maps, so the page declares those elements itself — empty, with the
request's nonce and the ids plotly.js looks for — and plotly.js skips the injection. The ids
are read from the installed bundle, so a plotly upgrade keeps working (and if plotly changes
the pattern, tests/browser/test_csp.py reports the violation).
"""

import re
from functools import cache

from django import template
from django.utils.html import format_html, format_html_join

from mlworkspace.staticfiles import FILENAME, PLOTLY_DIR

register = template.Library()

_GUARD = re.compile(
    rb'if\(!document\.getElementById\("([0-9a-f]{16,64})"\)\)\{var \w+=document\.createElement\("style"\)'
)


@cache
def plotly_style_ids() -> tuple[str, ...]:
    return tuple(dict.fromkeys(m.decode() for m in _GUARD.findall((PLOTLY_DIR / FILENAME).read_bytes())))


@register.simple_tag(takes_context=True)
def plotly_style_guards(context) -> str:
    nonce = context.get("csp_nonce")
    if nonce is None:
        return ""
    return format_html_join(
        "", '<style id="{}" nonce="{}"></style>', ((i, nonce) for i in plotly_style_ids())
    )


@register.simple_tag(takes_context=True)
def plotly_global_style(context) -> str:
    """The <style> plotly.js adds its own rules to (through the CSSOM, which the CSP allows)."""
    nonce = context.get("csp_nonce")
    # `is not None`: a LazyNonce is falsy until something reads it.
    attr = format_html(' nonce="{}"', nonce) if nonce is not None else ""
    return format_html('<style id="plotly.js-style-global"{}></style>', attr)
