"""Makes the request being served known to audit.services.record (its user when a service
has no actor argument, and its IP address) for the duration of the request."""

from .services import current_request


class AuditContextMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        token = current_request.set(request)
        try:
            return self.get_response(request)
        finally:
            current_request.reset(token)
