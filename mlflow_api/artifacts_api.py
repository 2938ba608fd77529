"""MLflow's proxied artifact routes (``/api/2.0/mlflow-artifacts/artifacts/<path>``: PUT
uploads, GET downloads, GET with ``?path=`` lists), over the workspace's artifact store: a run's
``artifact_uri`` is ``mlflow-artifacts:/runs/<run id>``, so the client sends every artifact
of a run here, and the files live in the run's own folder of the file store
(runs.artifacts.folder), recorded in its ``artifacts_json`` with their sha256 like the
workspace's own artifacts.

A path must name a run the caller may see (``runs/<run id>/...``) and may not leave that
run's folder: ``..``, ``.``, absolute or encoded forms are refused before any file is opened.
"""

from __future__ import annotations

from django.conf import settings
from django.http import FileResponse
from django.views.decorators.csrf import csrf_exempt

from runs import artifacts as run_artifacts

from . import protocol, selectors, services
from .http import check_run_write, error_response, serve, unsupported_handler
from .protocol import MlflowError, invalid


def _listing(run, directory: str, *, relative_to_run: bool) -> list[dict]:
    prefix = f"{directory.strip('/')}/" if directory.strip("/") and relative_to_run else ""
    return [
        {"path": f"{prefix}{name}", "is_dir": is_dir, **({"file_size": size} if size is not None else {})}
        for name, is_dir, size in selectors.artifact_entries(run, directory)
    ]


def upload(request, user, body, path: str):
    run_id, relative = protocol.split_artifact_path(path)
    run = selectors.run_for(user, run_id)
    check_run_write(user, run)
    # An artifact is as large as a dataset may be (DATASET_MAX_BYTES).
    services.artifact_write(
        user=user, run=run, relative=relative, stream=request, max_bytes=settings.DATASET_MAX_BYTES
    )
    return {}


def download(request, user, body, path: str):
    run_id, relative = protocol.split_artifact_path(path)
    run = selectors.run_for(user, run_id)
    if relative not in ((run.artifacts_json or {}).get("files") or {}):
        raise protocol.not_found(f"Run '{run.pk}' has no artifact '{relative[:200]}'.")
    handle = run_artifacts.open_checked(run.pk, run.artifacts_json, relative)
    return FileResponse(handle, as_attachment=True, filename=relative.rsplit("/", 1)[-1])


def listing(request, user, body):
    path = protocol.string(body, "path")
    run_id, relative = protocol.split_artifact_path(path)
    run = selectors.run_for(user, run_id)
    return {"files": _listing(run, relative, relative_to_run=False)}


def run_listing(request, user, body):
    """GET /api/2.0/mlflow/artifacts/list (the tracking service's listing, paths relative to
    the run's root)."""
    run_id = protocol.string(body, "run_id") or protocol.string(body, "run_uuid")
    if not run_id:
        raise invalid("run_id", "is required")
    run = selectors.run_for(user, run_id)
    directory = protocol.string(body, "path")
    if directory:
        protocol.split_artifact_path(f"{protocol.ARTIFACT_PREFIX}/{run.pk}/{directory}")
    return {
        "root_uri": protocol.run_artifact_uri(run.pk),
        "files": _listing(run, directory, relative_to_run=True),
    }


_NOT_OFFERED = unsupported_handler(
    "This artifact operation",
    "Upload with PUT, download with GET, list with GET ?path= (no deletes, no multipart).",
)


@csrf_exempt
def artifacts(request, path: str = ""):
    """/api/2.0/mlflow-artifacts/artifacts[/<path>]."""
    if request.method == "PUT" and path:
        return serve(request, upload, read_body=False, path=path)
    if request.method == "GET" and path:
        return serve(request, download, path=path)
    if request.method == "GET":
        return serve(request, listing)
    return serve(request, _NOT_OFFERED, read_body=False)


@csrf_exempt
def not_offered(request, path: str = ""):
    """Multipart uploads, presigned URLs: the client uses them only when server-info says so
    (it does not)."""
    return serve(request, _NOT_OFFERED, read_body=False)


@csrf_exempt
def server_info(request):
    """/api/3.0/mlflow/server-info: what the client asks before moving artifacts: artifacts
    are served (proxied), with no multipart and no presigned transfers."""
    if request.method != "GET":
        return error_response(MlflowError("ENDPOINT_NOT_FOUND", "server-info answers GET."))
    return serve(
        request,
        lambda request, user, body: {
            "store_type": "SqlStore",
            "artifact_serving_enabled": True,
            "multipart_uploads_enabled": False,
            "multipart_downloads_enabled": False,
            "artifacts_presigned_only": False,
            "workspaces_enabled": False,
        },
    )
