"""import_mlflow --uri reads a tracking server with mlflow_api.remote (MLflow's REST protocol on
the standard library): against the live workspace (a real implementation of the protocol) it
follows every page of runs/search and metrics/get-history and downloads nested artifacts byte
for byte with no MLflow package importable; against a small stand-in server on loopback, it
sends the credentials MLflow's client would, reads another artifact store through get-artifact,
and turns a refusal, a non-MLflow answer, an unsafe path or a closed port into a CommandError."""

import base64
import hashlib
import io
import json
import re
import socket
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest
from django.conf import settings
from django.core.management import CommandError, call_command

from mlflow_api import remote
from runs.models import MetricPoint, Run, RunParam, RunStatus, RunTag

from .conftest import RECIPE, token_of

TARGET = "recipe_forecasting_base"
BIG = bytes(range(256)) * 41  # 10,496 bytes: many CHUNKs once CHUNK is small


def history(run) -> list:
    rows = MetricPoint.objects.filter(run=run).order_by("key", "step", "timestamp")
    return list(rows.values_list("key", "step", "timestamp", "value"))


def block_mlflow(monkeypatch):
    """No MLflow package can be imported (as on a `make run` install)."""
    for name in [n for n in sys.modules if n == "mlflow" or n.startswith("mlflow.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "mlflow", None)
    with pytest.raises(ImportError):
        import mlflow  # noqa: F401


# ----------------------------------------------------------------------------- the live workspace


@pytest.fixture
def logged(mlflow):
    """Three finished runs of the pricing recipe, logged through the workspace's MLflow API:
    each with a 5-point loss curve and params; the first with artifacts two folders deep."""
    run_ids = []
    for n in range(3):
        run_id = mlflow.create_run(run_name=f"run-{n}", tags=[{"key": "team", "value": f"t{n}"}])
        points = [
            {"key": "loss", "value": (n + 1) / (s + 1), "timestamp": 1_700_000_000_000 + s, "step": s}
            for s in range(5)
        ]
        points.append({"key": "rmse", "value": 3.5 + n, "timestamp": 1_700_000_000_100, "step": 0})
        answer = mlflow.post(
            "runs/log-batch", {"run_id": run_id, "metrics": points, "params": [{"key": "n", "value": str(n)}]}
        )
        assert answer.status_code == 200, answer.content
        run_ids.append(run_id)
    for path, content in {
        "notes.txt": b"hello",
        "docs/readme.md": b"# docs\n",
        "docs/deep/data.bin": BIG,
    }.items():
        assert mlflow.put_artifact(f"runs/{run_ids[0]}/{path}", content).status_code == 200
    for run_id in run_ids:
        mlflow.post("runs/update", {"run_id": run_id, "status": "FINISHED"})
    return run_ids


@pytest.mark.django_db(transaction=True)
@pytest.mark.usefixtures("live_server_closes_its_connections")
def test_import_from_the_live_workspace_pages_through_everything(logged, live_server, user, monkeypatch):
    block_mlflow(monkeypatch)
    # One run per runs/search page, two points per get-history page, 7-byte download chunks.
    monkeypatch.setattr(remote, "RUNS_PAGE", 1)
    monkeypatch.setattr(remote, "HISTORY_PAGE", 2)
    monkeypatch.setattr(remote, "CHUNK", 7)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", token_of(user))
    uri = f"{live_server.url}/mlflow"

    server = remote.TrackingServer(uri)
    assert sorted(r["info"]["run_id"] for r in server.search_runs(RECIPE)) == sorted(logged)
    assert server.metric_history(logged[0], "loss") == [
        (1_700_000_000_000 + s, 1 / (s + 1), s) for s in range(5)
    ]
    assert sorted(server.artifact_paths(logged[0])) == ["docs/deep/data.bin", "docs/readme.md", "notes.txt"]

    out = io.StringIO()
    call_command("import_mlflow", recipe=TARGET, uri=uri, experiment=RECIPE, stdout=out)
    assert "3 imported, 0 skipped, 0 failed." in out.getvalue()
    for n, source_id in enumerate(logged):
        source = Run.objects.get(pk=source_id)
        imported = Run.objects.get(
            recipe_id=TARGET, tag_rows__key="mlflow.importedRunId", tag_rows__value=source_id
        )
        assert imported.status == RunStatus.SUCCEEDED
        assert len(history(imported)) == 6 and history(imported) == history(source)
        assert dict(RunParam.objects.filter(run=imported).values_list("key", "value")) == {"n": str(n)}
        tags = dict(RunTag.objects.filter(run=imported).values_list("key", "value"))
        assert tags["team"] == f"t{n}" and tags["mlflow.runName"] == f"run-{n}"
    first = Run.objects.get(recipe_id=TARGET, tag_rows__key="mlflow.importedRunId", tag_rows__value=logged[0])
    files = first.artifacts_json["files"]
    assert set(files) == {"notes.txt", "docs/readme.md", "docs/deep/data.bin"}
    assert (
        (Path(settings.MEDIA_ROOT) / "artifacts" / first.pk) / "docs" / "deep" / "data.bin"
    ).read_bytes() == BIG
    assert files["docs/deep/data.bin"]["sha256"] == hashlib.sha256(BIG).hexdigest()

    again = io.StringIO()
    call_command("import_mlflow", recipe=TARGET, uri=uri, experiment=RECIPE, stdout=again)
    assert "0 imported, 3 skipped, 0 failed." in again.getvalue()

    # The workspace's own refusal, in MLflow's error shape, is the command's message.
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "not-a-token")
    with pytest.raises(CommandError) as refused:
        call_command("import_mlflow", recipe=TARGET, uri=uri, experiment=RECIPE, stdout=io.StringIO())
    assert str(refused.value).startswith(f"{uri}: Authenticate with your workspace API token")


# ----------------------------------------------------------------------------- a stand-in server


class StandIn(ThreadingHTTPServer):
    """A loopback HTTP server answering from `routes` ({path: (status, content type, body)},
    the body a dict (JSON) or bytes) and recording each request (method, path, query, headers,
    body)."""

    def __init__(self, routes: dict):
        self.routes = routes
        self.requests: list[tuple[str, str, dict, dict, bytes]] = []
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Handler(BaseHTTPRequestHandler):
    def _answer(self):
        parts = urlsplit(self.path)
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append(
            (self.command, parts.path, parse_qs(parts.query), dict(self.headers), body)
        )
        status, kind, content = self.server.routes.get(
            parts.path, (404, "application/json", {"error_code": "ENDPOINT_NOT_FOUND", "message": "no"})
        )
        if isinstance(content, dict):
            content = json.dumps(content).encode()
        self.send_response(status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(content)))
        self.end_headers()
        self.wfile.write(content)

    do_GET = do_POST = _answer

    def log_message(self, *args):
        pass


@pytest.fixture
def stand_in():
    servers = []

    def start(routes: dict) -> StandIn:
        server = StandIn(routes)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


API = "/api/2.0/mlflow"
EXPERIMENT = {"experiment": {"experiment_id": "7", "name": "churn"}}
S3_RUN = {
    "info": {
        "run_id": "abc123",
        "experiment_id": "7",
        "run_name": "",
        "status": "FINISHED",
        "start_time": "1700000000000",  # int64 as proto3's JSON text
        "end_time": 1_700_000_060_000,
        "user_id": "ana",
        "artifact_uri": "s3://bucket/7/abc123/artifacts",
    },
    "data": {
        "metrics": [{"key": "auc", "value": 0.9, "timestamp": 1, "step": 2}],
        "params": [{"key": "depth", "value": "4"}],
        "tags": [{"key": "mlflow.runName", "value": "from-s3"}],
    },
}


def stand_in_mlflow(files: list[dict], content: bytes = b"model bytes") -> dict:
    return {
        f"{API}/experiments/get-by-name": (200, "application/json", EXPERIMENT),
        f"{API}/runs/search": (200, "application/json", {"runs": [S3_RUN]}),
        f"{API}/metrics/get-history": (
            200,
            "application/json",
            {
                "metrics": [
                    {"key": "auc", "value": "NaN", "timestamp": "5", "step": "0"},
                    {"key": "auc", "value": 0.9, "timestamp": 6, "step": 2},
                ]
            },
        ),
        f"{API}/artifacts/list": (200, "application/json", {"files": files}),
        "/get-artifact": (200, "application/octet-stream", content),
    }


@pytest.mark.django_db
def test_another_artifact_store_is_read_through_get_artifact_without_mlflow(baselines, stand_in, monkeypatch):
    block_mlflow(monkeypatch)
    monkeypatch.setenv("MLFLOW_TRACKING_TOKEN", "tok-1")
    monkeypatch.delenv("MLFLOW_TRACKING_USERNAME", raising=False)
    server = stand_in(stand_in_mlflow([{"path": "model.pkl", "is_dir": False, "file_size": 11}]))
    out = io.StringIO()
    call_command("import_mlflow", recipe=TARGET, uri=server.url, experiment="churn", stdout=out)
    assert "1 imported" in out.getvalue()
    run = Run.objects.get(recipe_id=TARGET, tag_rows__key="mlflow.importedRunId", tag_rows__value="abc123")
    assert ((Path(settings.MEDIA_ROOT) / "artifacts" / run.pk) / "model.pkl").read_bytes() == b"model bytes"
    assert RunTag.objects.get(run=run, key="mlflow.runName").value == "from-s3"
    assert run.created_at.timestamp() == 1_700_000_000
    points = list(
        MetricPoint.objects.filter(run=run).order_by("timestamp").values_list("timestamp", "is_nan")
    )
    assert points == [(5, True), (6, False)]

    seen = {path: (method, query, headers, body) for method, path, query, headers, body in server.requests}
    assert all(headers["Authorization"] == "Bearer tok-1" for _, _, _, headers, _ in server.requests)
    method, _, _, body = seen[f"{API}/runs/search"]
    assert method == "POST" and json.loads(body) == {
        "experiment_ids": ["7"],
        "max_results": remote.RUNS_PAGE,
        "order_by": ["attributes.start_time ASC"],
        "run_view_type": "ACTIVE_ONLY",
    }
    assert seen[f"{API}/metrics/get-history"][1]["metric_key"] == ["auc"]
    assert seen["/get-artifact"][1] == {"path": ["model.pkl"], "run_uuid": ["abc123"]}


def test_credentials_are_sent_as_mlflows_client_sends_them(stand_in):
    server = stand_in({f"{API}/experiments/get": (200, "application/json", EXPERIMENT)})
    basic = base64.b64encode(b"ana:s3cret").decode()
    for env, expected in (
        ({"MLFLOW_TRACKING_TOKEN": "tok-2"}, "Bearer tok-2"),
        ({"MLFLOW_TRACKING_USERNAME": "ana", "MLFLOW_TRACKING_PASSWORD": "s3cret"}, f"Basic {basic}"),
        # MLflow's client prefers the username and password when both are set.
        (
            {
                "MLFLOW_TRACKING_TOKEN": "tok-2",
                "MLFLOW_TRACKING_USERNAME": "ana",
                "MLFLOW_TRACKING_PASSWORD": "s3cret",
            },
            f"Basic {basic}",
        ),
        ({}, None),
    ):
        assert remote.TrackingServer(server.url, env=env).experiment("7")["name"] == "churn"
        assert server.requests[-1][3].get("Authorization") == expected


@pytest.mark.django_db
def test_a_refusal_in_mlflows_error_shape_is_the_commands_message(baselines, stand_in):
    server = stand_in(
        {
            f"{API}/experiments/get-by-name": (
                403,
                "application/json",
                {"error_code": "PERMISSION_DENIED", "message": "User ana may not read experiment churn."},
            )
        }
    )
    with pytest.raises(CommandError) as refused:
        call_command("import_mlflow", recipe=TARGET, uri=server.url, experiment="churn")
    assert str(refused.value) == f"{server.url}: User ana may not read experiment churn."
    with pytest.raises(remote.RemoteError) as error:
        remote.TrackingServer(server.url, env={}).experiment_by_name("churn")
    assert (error.value.error_code, error.value.status) == ("PERMISSION_DENIED", 403)


@pytest.mark.django_db
def test_a_missing_experiment_and_a_server_that_is_not_mlflow_are_named(baselines, stand_in):
    server = stand_in({})  # a route not set answers 404 ENDPOINT_NOT_FOUND
    server.routes[f"{API}/experiments/get-by-name"] = (
        404,
        "application/json",
        {"error_code": "RESOURCE_DOES_NOT_EXIST", "message": "Could not find experiment with name 'x'"},
    )
    with pytest.raises(CommandError, match=r"has no experiment 'x'\.$"):
        call_command("import_mlflow", recipe=TARGET, uri=server.url, experiment="x")

    server.routes[f"{API}/experiments/get-by-name"] = (502, "text/html", b"<html><h1>Bad gateway</h1></html>")
    with pytest.raises(CommandError) as refused:
        call_command("import_mlflow", recipe=TARGET, uri=server.url, experiment="x")
    message = str(refused.value)
    assert (
        f"{server.url}/api/2.0/mlflow/experiments/get-by-name?experiment_name=x answered HTTP 502" in message
    )
    assert "Bad gateway" in message

    server.routes[f"{API}/experiments/get-by-name"] = (200, "text/html", b"<html>a web page</html>")
    with pytest.raises(CommandError, match="did not answer a JSON object"):
        call_command("import_mlflow", recipe=TARGET, uri=server.url, experiment="x")


@pytest.mark.django_db
def test_an_unreachable_server_is_a_command_error(baselines):
    with socket.socket() as probe:  # a port nothing listens on once closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    uri = f"http://127.0.0.1:{port}"
    with pytest.raises(CommandError) as refused:
        call_command("import_mlflow", recipe=TARGET, uri=uri, experiment="churn")
    assert str(refused.value).startswith(f"{uri}: {uri}/api/2.0/mlflow/experiments/get-by-name")
    assert "could not be reached" in str(refused.value)


@pytest.mark.django_db
def test_an_artifact_path_leaving_the_folder_is_refused_before_any_file_is_written(
    baselines, stand_in, tmp_path, monkeypatch
):
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    server = stand_in(stand_in_mlflow([{"path": "../../escaped.txt", "is_dir": False}]))
    with pytest.raises(CommandError, match="not a safe relative path"):
        call_command("import_mlflow", recipe=TARGET, uri=server.url, experiment="churn")
    assert not any(p.name == "escaped.txt" for p in tmp_path.rglob("*"))
    assert not Run.objects.filter(recipe_id=TARGET).exists()
    assert "/get-artifact" not in [path for _, path, *_ in server.requests]


def test_a_uri_that_is_no_tracking_server_address_is_refused():
    for uri, says in (
        ("file:///tmp/mlruns", "not a tracking server's http(s) URL"),
        ("http://ana:pw@mlflow.internal", "MLFLOW_TRACKING_USERNAME"),
        ("http://mlflow.internal:port", "port that is not a number"),
    ):
        with pytest.raises(remote.RemoteError, match=re.escape(says)):
            remote.TrackingServer(uri, env={})
