"""The DRF browsable API under the Content-Security-Policy.

DRF's templates (rest_framework/base.html) lay out a few elements with ``style="..."``
attributes (float: right and the like). Rather than copy and maintain DRF's templates, the
browsable API's responses — developer pages, JSON responses are untouched — get the
project's policy plus ``style-src-attr 'unsafe-inline'``: style *attributes* only. Scripts
keep the strict policy ('self' + nonce: DRF loads all of its scripts from /static/), and so
do <style> elements. A style attribute can change how an element looks but cannot run
script or load anything the policy's other directives forbid.
"""

from django.conf import settings
from django.utils.csp import CSP
from rest_framework.renderers import BrowsableAPIRenderer


def browsable_api_policy() -> dict:
    return {**settings.SECURE_CSP, "style-src-attr": [CSP.UNSAFE_INLINE]}


class CSPBrowsableAPIRenderer(BrowsableAPIRenderer):
    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None and settings.SECURE_CSP:
            # The attribute django.views.decorators.csp.csp_override sets: the middleware then
            # sends this policy instead of SECURE_CSP.
            response._csp_config = browsable_api_policy()
        return super().render(data, accepted_media_type, renderer_context)
