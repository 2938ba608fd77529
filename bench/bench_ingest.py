"""Ingest side by side: the workspace and MLflow's own tracking server, on one machine.

Starts both servers itself on free ports, each with 2 worker processes on a fresh SQLite
database in a temporary folder:

* the workspace as `make run` serves it: gunicorn with mlworkspace/gunicorn.conf.py
  (WEB_CONCURRENCY=2 gthread processes), DEBUG off; migrated, the baseline recipes loaded,
  a data scientist and its API token created first. The background `worker` processes
  `make run` also starts are not started: an external run is never queued for them.
* MLflow's tracking server, `mlflow server --workers 2 --backend-store-uri sqlite:///...`,
  from its own virtualenv bench/.venv-mlflow (created and filled on first use).

Then the same client load against each, interleaved, for several rounds: THREADS client
threads, each with its own keep-alive HTTP connection (http.client), each reporting RUNS
finished runs with 5 params and 5 metrics:

* `mlflow`: MLflow's REST API, three calls per run: runs/create, runs/log-batch (5 params,
  5 metrics), runs/update (FINISHED): what MLflow's client sends for a script's run;
* `workspace, one call`: POST /api/ml-development/runs with "executor": "external", the
  params, metrics_json and "status": "succeeded";
* `workspace, POST + PUT`: the same run as two calls, created (with its params) and then
  reported with PUT /runs/{id}: the way before the one call;
* `workspace, MLflow API`: the workspace's MLflow-compatible API (/mlflow/api/2.0/mlflow/...)
  with MLflow's same three calls: the path of an unchanged MLflow script;
* `workspace, batch of 20`: POST /api/ml-development/runs/batch with 20 such runs per call
  (--batch 0 leaves it out). MLflow's API has no call that creates several runs.

    .venv/bin/python bench/bench_ingest.py                      # 8 threads x 40 runs, 3 rounds
    .venv/bin/python bench/bench_ingest.py --threads 8 --runs 60 --rounds 5

Prints runs/s per target and round, the medians, and the workspace's ratio to MLflow as a
Markdown table for bench/README.md. Everything it starts is stopped at the end, and the
temporary folder removed (--keep keeps it, with both servers' logs).
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import platform
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = ROOT / ".venv" / "bin" / "python"
GUNICORN = ROOT / ".venv" / "bin" / "gunicorn"
MLFLOW_VENV = ROOT / "bench" / ".venv-mlflow"
MLFLOW_VERSION = "3.18.0"
RECIPE = "recipe_pricing_base"
API = "/api/ml-development"
MLFLOW_ROUTES = "/api/2.0/mlflow"
WORKSPACE_MLFLOW_ROUTES = "/mlflow/api/2.0/mlflow"
STARTUP_SECONDS = 240


# ----------------------------------------------------------------------------- setting up


def ensure_mlflow() -> Path:
    """bench/.venv-mlflow with mlflow==MLFLOW_VERSION, created on first use. MLflow's wheel
    pins `mlflow-tracing` to its own version; when the package index lacks that release
    (3.18.0's was not published with it), mlflow is installed without dependencies and then
    every other requirement it declares: `mlflow-skinny` (same version) ships the same
    `mlflow.tracing` modules, so the server does not miss it."""
    mlflow = MLFLOW_VENV / "bin" / "mlflow"
    python = MLFLOW_VENV / "bin" / "python"
    if mlflow.exists():
        return mlflow
    print(f"creating {MLFLOW_VENV.relative_to(ROOT)} with mlflow=={MLFLOW_VERSION} (a few minutes, once)")
    subprocess.run([sys.executable, "-m", "venv", str(MLFLOW_VENV)], check=True)
    pip = [str(python), "-m", "pip", "install", "--quiet"]
    if subprocess.run([*pip, f"mlflow=={MLFLOW_VERSION}"]).returncode != 0:
        subprocess.run([*pip, "--no-deps", f"mlflow=={MLFLOW_VERSION}"], check=True)
        listing = subprocess.run(
            [
                str(python),
                "-c",
                "from importlib.metadata import requires; print('\\n'.join(requires('mlflow')))",
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout.splitlines()
        needed = [r for r in listing if "extra ==" not in r and not r.startswith("mlflow-tracing")]
        subprocess.run([*pip, *needed], check=True)
    if not mlflow.exists():
        sys.exit(f"mlflow was not installed into {MLFLOW_VENV}")
    return mlflow


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def workspace_env(folder: Path, port: int) -> dict:
    """The environment of `make run` (DEBUG off, Prometheus' multiprocess folder) pointed at
    a fresh SQLite file and data folder of this bench's own."""
    data = folder / "workspace-data"
    (data / "prometheus").mkdir(parents=True)
    (folder / "static").mkdir()  # no pages are served: nothing to collect
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlworkspace.settings",
        "DATABASE_URL": f"sqlite:///{folder / 'workspace.sqlite3'}",
        "DATA_DIR": str(data),
        "STATIC_ROOT": str(folder / "static"),
        "DEBUG": "0",
        "PROMETHEUS_MULTIPROC_DIR": str(data / "prometheus"),
        "EMAIL_BACKEND": "django.core.mail.backends.console.EmailBackend",
        "HOST": "127.0.0.1",
        "PORT": str(port),
        "WEB_CONCURRENCY": "2",
    }


def setup_workspace() -> None:
    """(In a child process with workspace_env.) Migrate, load the baseline recipes, create
    the permission groups and a data scientist with an API token; print the token.
    Django is imported here, in the child only: its settings must read the bench's
    environment (workspace_env: the temporary database), which the parent does not have."""
    sys.path.insert(0, str(ROOT))
    import django

    django.setup()
    from django.contrib.auth import get_user_model
    from django.core.management import call_command
    from rest_framework.authtoken.models import Token

    from workspace.groups import ensure_groups

    call_command("migrate", verbosity=0)
    call_command("loaddata", "baseline_recipes", verbosity=0)
    call_command("setup_workspace", verbosity=0)
    user = get_user_model().objects.create_user("bench", password="bench-password-1")
    user.groups.add(ensure_groups()["Data scientists"])
    print(Token.objects.create(user=user).key)


class Server:
    """A server process in its own process group (so stopping it stops its workers), its
    output in a log file."""

    def __init__(self, name: str, command: list[str], env: dict, log: Path):
        self.name = name
        self.log = log
        self.handle = open(log, "wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env=env, stdout=self.handle, stderr=subprocess.STDOUT, start_new_session=True
        )

    def wait_ready(self, port: int, path: str, headers: dict) -> None:
        deadline = time.monotonic() + STARTUP_SECONDS
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                sys.exit(f"{self.name} exited with {self.process.returncode}; see {self.log}")
            try:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
                conn.request("GET", path, headers=headers)
                if conn.getresponse().status == 200:
                    conn.close()
                    return
                conn.close()
            except OSError:
                pass
            time.sleep(0.5)
        sys.exit(f"{self.name} did not answer {path} within {STARTUP_SECONDS} s; see {self.log}")

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait()
        self.handle.close()


# ----------------------------------------------------------------------------- the load


class Client:
    """One keep-alive HTTP/1.1 connection; `call` sends JSON and returns the decoded answer,
    failing loudly on anything but 200/201 (a bench that counts errors as runs is wrong)."""

    def __init__(self, port: int, headers: dict):
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
        self.headers = {"Content-Type": "application/json", "Accept": "application/json", **headers}

    def call(self, method: str, path: str, body: dict) -> dict:
        self.conn.request(method, path, body=json.dumps(body), headers=self.headers)
        response = self.conn.getresponse()
        data = response.read()
        if response.status not in (200, 201):
            raise RuntimeError(f"{method} {path}: {response.status} {data[:300]!r}")
        return json.loads(data)

    def close(self) -> None:
        self.conn.close()


def run_values(n: int) -> tuple[dict, dict]:
    """Run n's 5 params and 5 metrics (distinct per run, as a sweep's would be)."""
    params = {
        "learning_rate": 0.01 + (n % 10) / 100,
        "num_leaves": 16 + n % 48,
        "max_depth": 3 + n % 8,
        "feature_fraction": 0.6 + (n % 5) / 10,
        "seed": n,
    }
    metrics = {
        "elasticity": -1.0 - (n % 100) / 100,
        "demand_mape": 0.10 + (n % 50) / 1000,
        "rmse": 2.0 + (n % 30) / 10,
        "mae": 1.5 + (n % 20) / 10,
        "r2": 0.5 + (n % 40) / 100,
    }
    return params, metrics


def mlflow_calls(routes: str, experiment_id: str) -> Callable[[Client, int], None]:
    """MLflow's three calls for one finished run (what its client sends for a script's run)."""

    def one_run(client: Client, n: int) -> None:
        params, metrics = run_values(n)
        now = int(time.time() * 1000)
        run = client.call(
            "POST",
            f"{routes}/runs/create",
            {"experiment_id": experiment_id, "start_time": now, "run_name": f"bench-{n}", "tags": []},
        )["run"]["info"]
        client.call(
            "POST",
            f"{routes}/runs/log-batch",
            {
                "run_id": run["run_id"],
                "params": [{"key": k, "value": str(v)} for k, v in params.items()],
                "metrics": [{"key": k, "value": v, "timestamp": now, "step": 0} for k, v in metrics.items()],
                "tags": [],
            },
        )
        client.call(
            "POST",
            f"{routes}/runs/update",
            {"run_id": run["run_id"], "status": "FINISHED", "end_time": int(time.time() * 1000)},
        )

    return one_run


def external_run(n: int) -> dict:
    """Run n as the workspace's API takes a finished external run."""
    params, metrics = run_values(n)
    return {
        "recipe_id": RECIPE,
        "executor": "external",
        "status": "succeeded",
        "params": params,
        "metrics_json": metrics,
    }


def workspace_one_call(client: Client, n: int) -> None:
    client.call("POST", f"{API}/runs", external_run(n))


def workspace_two_calls(client: Client, n: int) -> None:
    """Before the one call: create the run (with its params), then report it with PUT."""
    run = external_run(n)
    created = client.call("POST", f"{API}/runs", {k: run[k] for k in ("recipe_id", "executor", "params")})
    client.call(
        "PUT", f"{API}/runs/{created['id']}", {"status": "succeeded", "metrics_json": run["metrics_json"]}
    )


def workspace_batch(size: int) -> Callable[[Client, int], None]:
    """POST /runs/batch with `size` runs per call (then `load`'s unit of work is a batch)."""

    def one_batch(client: Client, n: int) -> None:
        client.call("POST", f"{API}/runs/batch", {"runs": [external_run(n * size + i) for i in range(size)]})

    return one_batch


def batch_name(size: int) -> str:
    return f"workspace, batch of {size}"


def load(port: int, headers: dict, one_run, threads: int, runs: int, offset: int) -> float:
    """`threads` threads, each doing `runs` units of work (a run, or a batch) over its own
    connection; the seconds from all threads released at once to the last unit done."""
    clients = [Client(port, headers) for _ in range(threads)]
    start = threading.Barrier(threads + 1)
    errors: list[BaseException] = []

    def work(index: int) -> None:
        start.wait()
        try:
            for i in range(runs):
                one_run(clients[index], offset + index * runs + i)
        except BaseException as error:  # reported after the round: the figures would be wrong
            errors.append(error)

    pool = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for t in pool:
        t.start()
    start.wait()
    began = time.perf_counter()
    for t in pool:
        t.join()
    elapsed = time.perf_counter() - began
    for client in clients:
        client.close()
    if errors:
        raise errors[0]
    return elapsed


# ----------------------------------------------------------------------------- main


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--threads", type=int, default=8, help="client threads (default 8)")
    parser.add_argument("--runs", type=int, default=40, help="runs per thread and round (default 40)")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (default 3)")
    parser.add_argument(
        "--batch", type=int, default=20, help="runs per POST /runs/batch call (default 20; 0 leaves it out)"
    )
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder and the logs")
    args = parser.parse_args()

    mlflow = ensure_mlflow()
    folder = Path(tempfile.mkdtemp(prefix="bench-ingest-"))
    servers: list[Server] = []
    try:
        ws_port, ml_port = free_port(), free_port()
        env = workspace_env(folder, ws_port)
        token = subprocess.run(
            [str(PYTHON), __file__, "--setup-workspace"],
            cwd=ROOT,
            env=env,
            check=True,
            capture_output=True,
            text=True,
        ).stdout.split()[-1]
        ws_headers = {"Authorization": f"Token {token}"}
        servers.append(
            Server(
                "gunicorn",
                [str(GUNICORN), "-c", "mlworkspace/gunicorn.conf.py", "mlworkspace.wsgi"],
                env,
                folder / "workspace.log",
            )
        )
        servers.append(
            Server(
                "mlflow server",
                [
                    str(mlflow),
                    "server",
                    "--workers",
                    "2",
                    "--backend-store-uri",
                    f"sqlite:///{folder / 'mlflow.sqlite3'}",
                    "--default-artifact-root",
                    str(folder / "mlflow-artifacts"),
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(ml_port),
                ],
                {**os.environ, "MLFLOW_TRACKING_URI": ""},
                folder / "mlflow.log",
            )
        )
        servers[0].wait_ready(ws_port, f"{API}/recipes/{RECIPE}", ws_headers)
        servers[1].wait_ready(ml_port, "/health", {})
        experiment = Client(ml_port, {}).call(
            "POST", f"{MLFLOW_ROUTES}/experiments/create", {"name": "bench"}
        )

        # name: (port, headers, one unit of work, runs per unit)
        targets = {
            "mlflow": (ml_port, {}, mlflow_calls(MLFLOW_ROUTES, experiment["experiment_id"]), 1),
            "workspace, one call": (ws_port, ws_headers, workspace_one_call, 1),
            "workspace, POST + PUT": (ws_port, ws_headers, workspace_two_calls, 1),
            "workspace, MLflow API": (ws_port, ws_headers, mlflow_calls(WORKSPACE_MLFLOW_ROUTES, RECIPE), 1),
        }
        if args.batch:
            targets[batch_name(args.batch)] = (ws_port, ws_headers, workspace_batch(args.batch), args.batch)
        # Warm-up, not timed: every worker process and thread of each server has imported
        # what it lazily imports and connected (MLflow's first round was slower without it).
        for port, headers, work, size in targets.values():
            load(port, headers, work, args.threads, max(1, 10 // size), offset=1_000_000)

        results: dict[str, list[float]] = {name: [] for name in targets}
        rows = []
        names = list(targets)
        for r in range(args.rounds):
            # Interleaved, the order turned each round: no target always runs first or last.
            for name in names[r % len(names) :] + names[: r % len(names)]:
                port, headers, work, size = targets[name]
                units = max(1, args.runs // size)
                runs = args.threads * units * size
                seconds = load(port, headers, work, args.threads, units, offset=r * args.threads * units)
                results[name].append(runs / seconds)
                # The machine's 1-minute load average after the round: other work on the cores.
                rows.append((r + 1, name, runs, seconds, runs / seconds, os.getloadavg()[0]))
                print(
                    f"round {r + 1}: {name:<26} {runs} runs in {seconds:6.2f} s = {runs / seconds:7.1f} runs/s"
                )
    finally:
        for server in servers:
            server.stop()
        if args.keep:
            print(f"kept {folder}")
        else:
            shutil.rmtree(folder, ignore_errors=True)

    report(args, rows, results)


def report(args, rows: list[tuple], results: dict[str, list[float]]) -> None:
    print()
    print(
        f"{date.today()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, mlflow {MLFLOW_VERSION}; "
        f"{args.threads} client threads x {args.runs} runs per round, {args.rounds} rounds, interleaved"
    )
    print()
    print("| round | target | runs | seconds | runs/s | load average after |")
    print("| ---: | --- | ---: | ---: | ---: | ---: |")
    for r, name, n, seconds, rate, load_average in rows:
        print(f"| {r} | {name} | {n} | {seconds:.2f} | {rate:.1f} | {load_average:.1f} |")
    print()
    base = results["mlflow"]
    print(
        "| target | HTTP calls per run | median runs/s | runs/s per round | × MLflow per round | × MLflow (median) |"
    )
    print("| --- | ---: | ---: | --- | --- | ---: |")
    calls = {
        "mlflow": "3",
        "workspace, one call": "1",
        "workspace, POST + PUT": "2",
        "workspace, MLflow API": "3",
    }
    if args.batch:
        calls[batch_name(args.batch)] = f"1/{args.batch}"
    for name, rates in results.items():
        ratios = [rate / b for rate, b in zip(rates, base, strict=True)]
        per_round = ", ".join(f"{rate:.1f}" for rate in rates)
        ratio_per_round = ", ".join(f"{ratio:.2f}" for ratio in ratios)
        print(
            f"| {name} | {calls[name]} | {statistics.median(rates):.1f} | {per_round} | {ratio_per_round} | "
            f"{statistics.median(ratios):.2f} |"
        )


if __name__ == "__main__":
    if sys.argv[1:] == ["--setup-workspace"]:
        setup_workspace()
    else:
        main()
