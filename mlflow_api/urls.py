"""The MLflow tracking server's URL space, mounted at /mlflow/ (so the tracking URI is
``http://<workspace>/mlflow``): the tracking and registry routes under ``api/2.0/mlflow/`` (and
``ajax-api/2.0/mlflow/``, MLflow's UI prefix), the proxied artifacts under
``api/2.0/mlflow-artifacts/``, server-info, and ENDPOINT_NOT_FOUND for everything else."""

from __future__ import annotations

import re

from django.urls import re_path
from django.views.decorators.csrf import csrf_exempt
from django.views.generic import RedirectView

from . import api, artifacts_api, registry_api
from .http import endpoint_not_found, serve, unsupported_handler

# (compiled endpoint pattern, method, handler), in order: the first match serves.
ROUTES = [
    (re.compile(pattern), method, handler)
    for pattern, method, handler in (
        *api.ROUTES,
        *registry_api.ROUTES,
        (r"artifacts/list", "GET", artifacts_api.run_listing),
    )
]


@csrf_exempt
def tracking(request, endpoint: str):
    """/api/2.0/mlflow/<endpoint>: the route table, else ENDPOINT_NOT_FOUND (with the methods
    the endpoint does answer, when it exists with another)."""
    methods = set()
    for pattern, method, handler in ROUTES:
        match = pattern.fullmatch(endpoint)
        if match:
            if method == request.method:
                return serve(request, handler, **match.groupdict())
            methods.add(method)
    if methods:
        what = f"{request.method} on '{endpoint[:200]}'"
        return serve(request, unsupported_handler(what, f"It answers {', '.join(sorted(methods))}."))
    return endpoint_not_found(request)


app_name = "mlflow_api"
urlpatterns = [
    re_path(r"^(?:ajax-)?api/2\.0/mlflow/(?P<endpoint>.+?)/?$", tracking, name="tracking"),
    re_path(r"^(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/(?P<path>.+)$", artifacts_api.artifacts),
    re_path(r"^(?:ajax-)?api/2\.0/mlflow-artifacts/artifacts/?$", artifacts_api.artifacts, name="artifacts"),
    re_path(r"^(?:ajax-)?api/2\.0/mlflow-artifacts/(?P<path>.*)$", artifacts_api.not_offered),
    re_path(r"^(?:ajax-)?api/3\.0/mlflow/server-info/?$", artifacts_api.server_info, name="server-info"),
    # The address MLflow's client prints after a run ("View run at <tracking URI>/#/…"): the
    # browser sends no fragment, so it lands on the library's Runs tab.
    re_path(r"^$", RedirectView.as_view(url="/model-development/?tab=runs"), name="home"),
    re_path(r"^.*$", csrf_exempt(endpoint_not_found)),
]
