from django.urls import re_path

from .api import AuditEventList

# Included under /api/ml-development/ by mlworkspace.urls.
urlpatterns = [re_path(r"^audit/?$", AuditEventList.as_view(), name="audit-list")]
