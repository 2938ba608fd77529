"""A read-only client of an MLflow tracking server on the standard library (urllib + json), so
``manage.py import_mlflow --uri`` needs no MLflow package. It reads what an import needs, in
MLflow's documented REST protocol (the routes mlflow_api serves itself; the requests MLflow's
own client sends, mlflow/store/tracking/rest_store.py and store/artifact/http_artifact_repo.py):

    GET  api/2.0/mlflow/experiments/get-by-name, experiments/get    the experiment
    POST api/2.0/mlflow/runs/search                                 its runs, page by page
    GET  api/2.0/mlflow/metrics/get-history                         every point of a metric
    GET  api/2.0/mlflow/artifacts/list                              a run's files, folder by folder
    GET  api/2.0/mlflow-artifacts/artifacts/<path>                  a file of an mlflow-artifacts: run
    GET  get-artifact?path=&run_uuid=                               a file of any other run

It authenticates as MLflow's client does, from the environment: MLFLOW_TRACKING_USERNAME and
MLFLOW_TRACKING_PASSWORD (Basic; MLflow's client prefers them when both are set), else
MLFLOW_TRACKING_TOKEN (Bearer); MLFLOW_TRACKING_INSECURE_TLS=true skips the certificate check,
MLFLOW_TRACKING_SERVER_CERT_PATH names a CA bundle to check it with. Every failure is a
RemoteError: the server's own ``error_code`` and ``message`` when it answers in MLflow's error
shape, else a message naming the URL. No Django import.
"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import ssl
from collections.abc import Iterator, Mapping
from pathlib import Path
from urllib.error import HTTPError
from urllib.parse import quote, urlencode, urlsplit
from urllib.request import HTTPSHandler, Request, build_opener

from .mlruns import SourceRun
from .protocol import RUN_NAME_TAG, STATUS_NAME, STATUS_NUMBER

API = "api/2.0/mlflow"
ARTIFACTS_API = "api/2.0/mlflow-artifacts/artifacts"
TIMEOUT = 60  # seconds, for every request (MLFLOW_HTTP_REQUEST_TIMEOUT overrides it)
RUNS_PAGE = 500  # runs per runs/search request
HISTORY_PAGE = 25_000  # points per metrics/get-history request (as many as MLflow's client asks)
CHUNK = 1024 * 1024  # bytes of an artifact read and written at a time
ERROR_BODY = 64 * 1024  # the most of an error answer read
USER_AGENT = "mlworkspace-import-mlflow"
# A part of an artifact path the server lists: no "", ".", "..", backslash or control character
# (a file is written at that path under the scratch folder: it must not leave it).
_SAFE_PART = re.compile(r"[^\x00-\x1f\\]+")
_INT = re.compile(r"-?\d{1,19}")


class RemoteError(Exception):
    """A request the tracking server refused (its ``error_code`` and ``message``), or one that
    did not reach it or was not answered in MLflow's protocol (``error_code`` is "" and the
    message names the URL)."""

    def __init__(self, message: str, error_code: str = "", status: int | None = None):
        super().__init__(message)
        self.message = message
        self.error_code = error_code
        self.status = status


class TrackingServer:
    """The tracking server at `uri` (``http(s)://host[:port][/prefix]``, as MLFLOW_TRACKING_URI),
    with the credentials and TLS settings of `env` (os.environ by default)."""

    def __init__(self, uri: str, *, env: Mapping[str, str] | None = None):
        env = os.environ if env is None else env
        parts = urlsplit(uri.strip())
        try:
            parts.port  # noqa: B018 - a bad port raises ValueError here, not mid-request
        except ValueError:
            raise RemoteError(f"'{uri}' has a port that is not a number") from None
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise RemoteError(f"'{uri}' is not a tracking server's http(s) URL")
        if parts.username is not None or parts.password is not None:
            raise RemoteError(
                "put the credentials in MLFLOW_TRACKING_USERNAME and MLFLOW_TRACKING_PASSWORD "
                "(or MLFLOW_TRACKING_TOKEN), not in the URL"
            )
        if parts.query or parts.fragment:
            raise RemoteError(f"'{uri}' has a query or fragment; give the tracking server's address only")
        self.scheme, self.netloc, self.prefix = parts.scheme, parts.netloc, parts.path.rstrip("/")
        self.base = f"{self.scheme}://{self.netloc}{self.prefix}"

        username, password = env.get("MLFLOW_TRACKING_USERNAME"), env.get("MLFLOW_TRACKING_PASSWORD")
        token = env.get("MLFLOW_TRACKING_TOKEN")
        self.authorization = None
        if username and password:
            pair = base64.b64encode(f"{username}:{password}".encode()).decode()
            self.authorization = f"Basic {pair}"
        elif token:
            self.authorization = f"Bearer {token}"

        timeout = env.get("MLFLOW_HTTP_REQUEST_TIMEOUT") or TIMEOUT
        try:
            self.timeout = float(timeout)
        except ValueError:
            raise RemoteError(f"MLFLOW_HTTP_REQUEST_TIMEOUT={timeout!r} is not a number of seconds") from None
        self._opener = build_opener(HTTPSHandler(context=_tls_context(env)))

    # ------------------------------------------------------------------------- reading

    def experiment_by_name(self, name: str) -> dict | None:
        """The experiment named `name` (with its ``experiment_id``), None when there is none."""
        url = self._url("experiments/get-by-name", {"experiment_name": name})
        try:
            answer = self._json(url)
        except RemoteError as error:
            if error.error_code == "RESOURCE_DOES_NOT_EXIST":
                return None
            raise
        return _experiment(answer, url)

    def experiment(self, experiment_id: str) -> dict:
        url = self._url("experiments/get", {"experiment_id": experiment_id})
        return _experiment(self._json(url), url)

    def search_runs(self, experiment_id: str, *, page_size: int | None = None) -> Iterator[dict]:
        """Every active run of the experiment (MLflow's run JSON: ``info``, ``data``), oldest
        first — a nested run's parent comes before it —, a page at a time."""
        url = self._url("runs/search")
        body = {
            "experiment_ids": [str(experiment_id)],
            "max_results": page_size or RUNS_PAGE,
            "order_by": ["attributes.start_time ASC"],
            "run_view_type": "ACTIVE_ONLY",
        }
        for answer in self._pages(url, body, post=True):
            for run in _items(answer, "runs", url):
                if not isinstance(run, dict) or not isinstance(run.get("info"), dict):
                    raise RemoteError(f"{url} answered a run without 'info'")
                yield run

    def metric_history(self, run_id: str, key: str, *, page_size: int | None = None) -> list:
        """Every point of the run's metric `key` as (timestamp, value, step), in the server's order."""
        url = self._url("metrics/get-history")
        params = {
            "run_id": run_id,
            "run_uuid": run_id,
            "metric_key": key,
            "max_results": page_size or HISTORY_PAGE,
        }
        points = []
        for answer in self._pages(url, params):
            for item in _items(answer, "metrics", url):
                if not isinstance(item, dict):
                    raise RemoteError(f"{url} answered a metric point that is not an object")
                points.append(
                    (
                        _int(item.get("timestamp", 0), "timestamp", url),
                        _float(item.get("value", 0.0), "value", url),
                        _int(item.get("step", 0), "step", url),
                    )
                )
        return points

    def artifact_paths(self, run_id: str) -> Iterator[str]:
        """The relative path of each file among the run's artifacts, every folder listed."""
        url = self._url("artifacts/list")
        folders, seen, files = [""], {""}, set()
        while folders:
            folder = folders.pop()
            params = {"run_id": run_id, **({"path": folder} if folder else {})}
            for answer in self._pages(url, params):
                for entry in _items(answer, "files", url):
                    path = _safe_path(entry.get("path") if isinstance(entry, dict) else None, url)
                    if not entry.get("is_dir"):
                        if path not in files:
                            files.add(path)
                            yield path
                    elif path not in seen:  # a folder listed twice (or as itself) is read once
                        seen.add(path)
                        folders.append(path)

    def download_artifacts(self, run: dict, folder: Path) -> list[tuple[str, Path]]:
        """Every artifact file of `run` (a run of search_runs) streamed into `folder`, at its
        relative path: (relative path, file) of each."""
        info = run["info"]
        run_id = _run_id(info)
        root = info.get("artifact_uri") or ""
        files = []
        for path in self.artifact_paths(run_id):
            target = folder.joinpath(*path.split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            self._download(self._artifact_url(run_id, root, path), target)
            files.append((path, target))
        return files

    # ------------------------------------------------------------------------- HTTP

    def _url(self, endpoint: str, params: dict | None = None) -> str:
        return f"{self.base}/{API}/{endpoint}" + (f"?{urlencode(params)}" if params else "")

    def _artifact_url(self, run_id: str, artifact_uri: str, path: str) -> str:
        """Where a file of the run is downloaded: through the server's artifact proxy for an
        ``mlflow-artifacts:`` run (its host, when the URI names one, as MLflow's client resolves
        it), else the server's get-artifact route, which reads any artifact store."""
        if artifact_uri.startswith("mlflow-artifacts:"):
            parts = urlsplit(artifact_uri)
            root = parts.path.strip("/")
            where = f"{self.scheme}://{parts.netloc or self.netloc}{self.prefix}/{ARTIFACTS_API}"
            return f"{where}/{quote(f'{root}/{path}' if root else path)}"
        return f"{self.base}/get-artifact?{urlencode({'path': path, 'run_uuid': run_id})}"

    def _open(self, url: str, body: dict | None = None):
        request = Request(url, method="GET" if body is None else "POST")
        request.add_header("User-Agent", USER_AGENT)
        if body is not None:
            request.data = json.dumps(body).encode()
            request.add_header("Content-Type", "application/json")
        if self.authorization:
            # Not repeated to where a redirect points: another host must not get the credentials.
            request.add_unredirected_header("Authorization", self.authorization)
        try:
            return self._opener.open(request, timeout=self.timeout)
        except HTTPError as error:
            raise _refusal(url, error) from None
        except (OSError, http.client.HTTPException, ValueError) as error:
            raise RemoteError(f"{url} could not be reached ({_reason(error)})") from None

    def _json(self, url: str, body: dict | None = None) -> dict:
        with self._open(url, body) as response:
            try:
                content = response.read()
            except (OSError, http.client.HTTPException) as error:
                raise RemoteError(f"{url}: the answer broke off ({_reason(error)})") from None
        if not content.strip():
            return {}  # as MLflow's client reads an empty 200
        try:
            answer = json.loads(content)
        except (ValueError, UnicodeDecodeError):
            answer = None
        if not isinstance(answer, dict):
            raise RemoteError(f"{url} did not answer a JSON object (is it an MLflow tracking server?)")
        return answer

    def _pages(self, url: str, fields: dict, *, post: bool = False) -> Iterator[dict]:
        """Each page's answer, following ``next_page_token`` until there is none."""
        token = None
        while True:
            page = {**fields, **({"page_token": token} if token else {})}
            answer = self._json(url, page) if post else self._json(f"{url}?{urlencode(page)}")
            yield answer
            following = answer.get("next_page_token")
            if not following:
                return
            if following == token:
                raise RemoteError(f"{url} answered the same next_page_token twice")
            token = str(following)

    def _download(self, url: str, target: Path) -> None:
        """Stream the answer of `url` into `target`, CHUNK bytes at a time."""
        with self._open(url) as response, open(target, "wb") as out:
            while True:
                try:
                    chunk = response.read(CHUNK)
                except (OSError, http.client.HTTPException) as error:
                    raise RemoteError(f"{url}: the download broke off ({_reason(error)})") from None
                if not chunk:
                    return
                out.write(chunk)


# ----------------------------------------------------------------------------- runs


def source_run(run: dict) -> SourceRun:
    """A run of search_runs as the import reads it: its params and tags (lists of {key, value}
    in MLflow's JSON), its name (``info.run_name`` or the ``mlflow.runName`` tag); no metrics yet
    (metric_history reads each key of metric_keys)."""
    info, data = run["info"], run.get("data") or {}
    tags = _pairs(data.get("tags"), "tags")
    status = info.get("status") or "FINISHED"
    if isinstance(status, int):
        status = STATUS_NAME.get(status, "FINISHED")
    return SourceRun(
        run_id=_run_id(info),
        experiment_id=str(info.get("experiment_id") or ""),
        run_name=str(info.get("run_name") or tags.get(RUN_NAME_TAG) or ""),
        status=status if status in STATUS_NUMBER else "FINISHED",
        start_time=_int(info["start_time"], "start_time", "a run") if info.get("start_time") else None,
        end_time=_int(info["end_time"], "end_time", "a run") if info.get("end_time") else None,
        user_id=str(info.get("user_id") or ""),
        params=_pairs(data.get("params"), "params"),
        tags=tags,
    )


def metric_keys(run: dict) -> list[str]:
    """The keys of the run's metrics (its latest values are listed in ``data.metrics``)."""
    keys = []
    for item in (run.get("data") or {}).get("metrics") or []:
        key = item.get("key") if isinstance(item, dict) else None
        if isinstance(key, str) and key and key not in keys:
            keys.append(key)
    return keys


# ----------------------------------------------------------------------------- answers


def _tls_context(env: Mapping[str, str]) -> ssl.SSLContext | None:
    insecure = (env.get("MLFLOW_TRACKING_INSECURE_TLS") or "").strip().lower() in ("true", "1")
    ca_file = env.get("MLFLOW_TRACKING_SERVER_CERT_PATH")
    if insecure and ca_file:
        raise RemoteError("set MLFLOW_TRACKING_INSECURE_TLS or MLFLOW_TRACKING_SERVER_CERT_PATH, not both")
    if insecure:
        context = ssl.create_default_context()
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
        return context
    if ca_file:
        try:
            return ssl.create_default_context(cafile=ca_file)
        except (OSError, ssl.SSLError) as error:
            raise RemoteError(f"MLFLOW_TRACKING_SERVER_CERT_PATH={ca_file}: {_reason(error)}") from None
    return None


def _refusal(url: str, error: HTTPError) -> RemoteError:
    """An HTTP error answer: the server's message when in MLflow's shape, else one naming the URL."""
    try:
        content = error.read(ERROR_BODY)
    except (OSError, http.client.HTTPException):
        content = b""
    finally:
        error.close()
    try:
        answer = json.loads(content)
    except (ValueError, UnicodeDecodeError):
        answer = None
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        return RemoteError(answer["message"][:2000], str(answer.get("error_code") or ""), error.code)
    text = " ".join(content[:300].decode("utf-8", "replace").split())
    return RemoteError(
        f"{url} answered HTTP {error.code} {error.reason}, not in MLflow's error shape"
        + (f": {text}" if text else ""),
        status=error.code,
    )


def _reason(error: Exception) -> str:
    reason = getattr(error, "reason", None) or getattr(error, "strerror", None) or error
    return str(reason) or type(error).__name__


def _experiment(answer: dict, url: str) -> dict:
    experiment = answer.get("experiment")
    if not isinstance(experiment, dict) or not experiment.get("experiment_id"):
        raise RemoteError(f"{url} answered no experiment with an experiment_id")
    return {**experiment, "experiment_id": str(experiment["experiment_id"])}


def _items(answer: dict, field: str, url: str) -> list:
    items = answer.get(field) or []  # proto3 JSON leaves an empty list out
    if not isinstance(items, list):
        raise RemoteError(f"{url} answered '{field}' that is not a list")
    return items


def _run_id(info: dict) -> str:
    run_id = info.get("run_id") or info.get("run_uuid")
    if not isinstance(run_id, str) or not run_id:
        raise RemoteError("the server answered a run without a run_id")
    return run_id


def _pairs(items, field: str) -> dict[str, str]:
    """A repeated {key, value} message (params, tags) as a dict."""
    out = {}
    for item in items or []:
        if not isinstance(item, dict) or not isinstance(item.get("key"), str):
            raise RemoteError(f"the server answered a run whose {field} are not {{key, value}} objects")
        value = item.get("value")
        out[item["key"]] = "" if value is None else str(value)
    return out


def _int(value, field: str, where: str) -> int:
    """An int64: a number, or its text (proto3's JSON writes int64 as a string)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, str) and _INT.fullmatch(value.strip()):
        return int(value.strip())
    raise RemoteError(f"{where} answered a {field} that is not an integer: {str(value)[:40]!r}")


def _float(value, field: str, where: str) -> float:
    """A double: a number, or its text ("NaN", "Infinity", "-Infinity" in proto3's JSON)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            pass
    raise RemoteError(f"{where} answered a {field} that is not a number: {str(value)[:40]!r}")


def _safe_path(path, url: str) -> str:
    """A listed artifact path that stays inside the folder it is written under."""
    parts = path.split("/") if isinstance(path, str) else []
    if not parts or any(part in ("", ".", "..") or not _SAFE_PART.fullmatch(part) for part in parts):
        raise RemoteError(
            f"{url} listed an artifact path that is not a safe relative path: {str(path)[:200]!r}"
        )
    return path
