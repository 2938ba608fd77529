"""GET /api/ml-development/runs/{id}/export?format=mlflow: one run as a zip of an ``mlruns``
folder (meta.yaml, params/, metrics/ with each metric's full history, tags/, artifacts/),
which MLflow's file store and ``manage.py import_mlflow --mlruns`` read. A workspace API view
(session or token, the workspace's error shape), not an MLflow route."""

from __future__ import annotations

import tempfile

from django.http import FileResponse
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.renderers import JSONRenderer
from rest_framework.views import APIView

from mlworkspace.errors import NotFound, field_error
from runs.models import Run

from . import transfer

FORMATS = ("mlflow",)


class RunExportView(APIView):
    """Export a run in MLflow's file layout (``?format=mlflow``)."""

    permission_classes = [IsAuthenticated]

    # `format` is this view's own parameter, not DRF's renderer override: errors are JSON.
    def perform_content_negotiation(self, request, force=False):
        return JSONRenderer(), JSONRenderer.media_type

    @extend_schema(
        operation_id="runs_export",
        parameters=[OpenApiParameter("format", str, enum=list(FORMATS), required=True)],
        responses={
            (200, "application/zip"): OpenApiResponse(OpenApiTypes.BINARY, description="an mlruns zip")
        },
    )
    def get(self, request, run_id: str):
        run = (
            Run.objects.visible_to(request.user)
            .select_related("recipe", "created_by")
            .filter(pk=run_id)
            .first()
        )
        if run is None:
            raise NotFound(f"Run '{run_id[:200]}' not found.")
        kind = request.query_params.get("format")
        if kind not in FORMATS:
            raise field_error("format", f"must be one of: {', '.join(FORMATS)}")
        out = tempfile.TemporaryFile()
        transfer.run_export(run=run, out=out)
        out.seek(0)
        return FileResponse(
            out, as_attachment=True, filename=f"{run.pk}-mlruns.zip", content_type="application/zip"
        )
