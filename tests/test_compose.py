"""docker-compose.yml, deploy/nginx.conf and the Dockerfile kept true to the code without Docker
(compose cannot run in CI here, issue #16 §2).

The files are read as data and every name in them is checked against the code: the variables
the workspace's containers set are ones the settings read, the `manage.py` commands exist and
accept their options, the worker queues are known and all served, the proxy's upstreams are the
web services, no disk is shared between web servers and workers, and the image installs and
runs what exists. Each check is a function listing problems, run on the real files and on a
broken copy (it must name the fault). One test (marked `once`: it starts processes) runs the
compose file's own web and worker command lines with its own environment against the test
database and a real S3 server: /healthz answers 200 with the workers on their queues, and an
upload and a training run go through the bucket, nothing under a local media folder."""

from __future__ import annotations

import ast
import copy
import importlib.util
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml
from django.conf import settings
from django.core.management import get_commands, load_command_class
from django.core.management.base import CommandError
from rest_framework.authtoken.models import Token

from mlworkspace import queues
from runs.families import get_family
from runs.models import Run, RunStatus
from runs.tests.test_worker_processes import database_url, stop_process_groups

ROOT = Path(__file__).resolve().parent.parent
COMPOSE_FILE = ROOT / "docker-compose.yml"
NGINX_FILE = ROOT / "deploy" / "nginx.conf"
DOCKERFILE = ROOT / "Dockerfile"
# What the compose file must be given (`${NAME:?…}`); the other variables have defaults.
REQUIRED = {
    "SECRET_KEY": "compose-test-secret",
    "POSTGRES_PASSWORD": "pg-test",
    "MINIO_ROOT_PASSWORD": "s3-test-pw",
}
# What every workspace container needs to find the others: a worker on another machine needs
# only these (and the code). DEBUG is set too, to "0".
FLEET_SETTINGS = (
    "DATABASE_URL",
    "SECRET_KEY",
    "AWS_STORAGE_BUCKET_NAME",
    "AWS_S3_ENDPOINT_URL",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
)
# The upload API accepts a request of DATASET_MAX_BYTES plus 1 MiB of multipart framing
# (runs/api.py, DatasetViewSet.create): the proxy must let exactly that through.
UPLOAD_FRAMING_BYTES = 1024 * 1024


def load_compose() -> dict:
    return yaml.safe_load(COMPOSE_FILE.read_text())


# --------------------------------------------------------------------------- reading the files


def interpolate(text: str, values: dict[str, str]) -> str:
    """Compose's variable substitution (`${X}`, `${X:-default}`, `${X:?error}`, `$$`) with
    `values` as the environment: KeyError naming a required variable that is not given."""

    def one(match: re.Match) -> str:
        if match.group(0) == "$$":
            return "$"
        name, op, arg = match.group("name"), match.group("op") or "", match.group("arg") or ""
        value = values.get(name)
        if op.endswith("?"):
            if not value:
                raise KeyError(f"{name}: {arg}")
            return value
        if op.endswith("-"):
            return value if value else arg
        return value or ""

    return re.sub(r"\$\$|\$\{(?P<name>\w+)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}", one, text)


def environment(service: dict) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {key: str(value) for key, value in env.items()}


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of a Dockerfile, continuation lines joined, comments dropped."""
    lines = [line for line in text.splitlines() if not line.lstrip().startswith("#")]
    joined = re.sub(r"\\\n", " ", "\n".join(lines))
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1] if " " in line.strip() else "")
        for line in (raw.strip() for raw in joined.splitlines())
        if line
    ]


def dockerfile_cmd() -> list[str]:
    (cmd,) = [args for instr, args in dockerfile_instructions(DOCKERFILE.read_text()) if instr == "CMD"]
    return json.loads(cmd)


def command_lines(service: dict) -> list[list[str]]:
    """The command lines a service runs: its `command` (or the image's CMD); a `sh -c` script is
    split at `&&` into its commands."""
    command = service.get("command", dockerfile_cmd())
    if isinstance(command, str):
        command = shlex.split(command)
    if command[:2] in (["sh", "-c"], ["/bin/sh", "-c"]):
        return [shlex.split(part) for part in " ".join(command[2:]).split("&&")]
    return [command]


def app_services(compose: dict) -> dict[str, dict]:
    """The services that run the workspace's own image (built from this repository)."""

    def context(service):
        build = service.get("build")
        return build.get("context") if isinstance(build, dict) else build

    return {name: s for name, s in compose["services"].items() if context(s) in (".", "./")}


def web_services(compose: dict) -> dict[str, dict]:
    return {n: s for n, s in app_services(compose).items() if command_lines(s)[0][0] == "gunicorn"}


def worker_services(compose: dict) -> dict[str, dict]:
    return {
        n: s for n, s in app_services(compose).items() if command_lines(s)[0][1:3] == ["manage.py", "worker"]
    }


def env_names_read(path: Path) -> set[str]:
    """The environment variables a module reads: os.environ.get("X") / os.getenv("X") /
    os.environ["X"], and settings.py's own readers env_bool("X", …) / env_list("X", …)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant):
            func = ast.unparse(node.func)
            if func in ("os.environ.get", "os.getenv", "env_bool", "env_list"):
                names.add(node.args[0].value)
        elif isinstance(node, ast.Subscript) and ast.unparse(node.value) == "os.environ":
            if isinstance(node.slice, ast.Constant):
                names.add(node.slice.value)
    return names


SETTINGS_NAMES = env_names_read(ROOT / "mlworkspace" / "settings.py")
# prometheus-client's multiprocess folder, read by mlworkspace/metrics.py.
METRICS_NAMES = env_names_read(ROOT / "mlworkspace" / "metrics.py")
GUNICORN_NAMES = env_names_read(ROOT / "mlworkspace" / "gunicorn.conf.py")


def mounts(service: dict) -> set[str]:
    """The volumes and host paths a service mounts (tmpfs is its own memory, not a mount)."""
    sources = set()
    for volume in service.get("volumes") or []:
        sources.add(volume["source"] if isinstance(volume, dict) else volume.split(":", 1)[0])
    return sources


# --------------------------------------------------------------------------- the checks


def env_problems(compose: dict) -> list[str]:
    problems = []
    webs = web_services(compose)
    for name, service in app_services(compose).items():
        known = SETTINGS_NAMES | METRICS_NAMES | (GUNICORN_NAMES if name in webs else set())
        env = environment(service)
        for var in env:
            if var not in known:
                problems.append(f"{name}: {var} is read by no module of the workspace")
        for var in FLEET_SETTINGS:
            if var not in env:
                problems.append(f"{name}: {var} is not set")
        if env.get("DEBUG") != "0":
            problems.append(f"{name}: DEBUG is not 0")
        if not re.fullmatch(r"\$\{SECRET_KEY:\?[^}]+\}", env.get("SECRET_KEY", "")):
            problems.append(f"{name}: SECRET_KEY is not required from the environment (${{SECRET_KEY:?…}})")
    return problems


def command_problems(compose: dict) -> list[str]:
    problems = []
    commands = get_commands()
    for name, service in app_services(compose).items():
        for argv in command_lines(service):
            if argv[:2] == ["python", "manage.py"]:
                command, args = argv[2], argv[3:]
                if command not in commands:
                    problems.append(f"{name}: manage.py {command} does not exist")
                    continue
                parser = load_command_class(commands[command], command).create_parser("manage.py", command)
                try:
                    parser.parse_args(args)
                except CommandError as exc:
                    problems.append(f"{name}: manage.py {command} {' '.join(args)}: {exc}")
            elif argv[0] == "gunicorn":
                config = argv[argv.index("-c") + 1] if "-c" in argv else None
                if config is None or not (ROOT / config).is_file():
                    problems.append(f"{name}: gunicorn's config {config} is not a file")
                if importlib.util.find_spec(argv[-1]) is None:
                    problems.append(f"{name}: gunicorn's application {argv[-1]} is not a module")
            else:
                problems.append(f"{name}: runs {shlex.join(argv)}, neither `python manage.py …` nor gunicorn")
    return problems


def served_queues(service: dict) -> tuple[str, ...]:
    """The queues a worker service serves: --queues, else WORKER_QUEUES, else all (ValueError if
    a name is unknown)."""
    argv = command_lines(service)[0]
    text = (
        argv[argv.index("--queues") + 1]
        if "--queues" in argv
        else environment(service).get("WORKER_QUEUES", "*")
    )
    return queues.parse(text)


def queue_problems(compose: dict) -> list[str]:
    problems, served, alone = [], set(), False
    for name, service in worker_services(compose).items():
        try:
            mine = served_queues(service)
        except ValueError as exc:
            problems.append(f"{name}: {exc}")
            continue
        served |= set(mine)
        alone = alone or mine == (queues.MONITORING,)
    problems += [f"no worker serves the {q} queue" for q in queues.ALL if q not in served]
    if not alone:
        problems.append("the monitoring queue has no worker of its own (a training would delay checks)")
    return problems


def volume_problems(compose: dict) -> list[str]:
    problems = []
    webs, workers = web_services(compose), worker_services(compose)
    for web in webs:
        for worker in workers:
            for shared in sorted(mounts(webs[web]) & mounts(workers[worker])):
                problems.append(f"{web} and {worker} share {shared}")
    for name, service in app_services(compose).items():
        if mounts(service):
            problems.append(
                f"{name} mounts {', '.join(sorted(mounts(service)))}: the workspace keeps no file on disk"
            )
    named = set(compose.get("volumes") or {})
    users = {v: [n for n, s in compose["services"].items() if v in mounts(s)] for v in named}
    for volume, by in users.items():
        if len(by) != 1:
            problems.append(f"volume {volume} is mounted by {by or 'no service'}")
    return problems


def wiring_problems(compose: dict) -> list[str]:
    """The workspace's settings point at the compose file's own PostgreSQL and MinIO, with their
    credentials; the bucket it uses is the one minio-init creates; start-up order."""
    services, problems = compose["services"], []
    by_image = {s.get("image", "").split(":")[0]: n for n, s in services.items()}
    postgres, minio = services[by_image["postgres"]], services[by_image["minio/minio"]]
    init = services[by_image["minio/mc"]]
    pg_env, minio_env = environment(postgres), environment(minio)
    for name, service in app_services(compose).items():
        env = environment(service)
        url = urlsplit(interpolate(env.get("DATABASE_URL", ""), REQUIRED))
        if (url.hostname, url.port or 5432) != (by_image["postgres"], 5432):
            problems.append(f"{name}: DATABASE_URL is not the postgres service")
        if url.username != pg_env["POSTGRES_USER"] or url.path.lstrip("/") != pg_env["POSTGRES_DB"]:
            problems.append(f"{name}: DATABASE_URL's user or database is not postgres's")
        if url.password != interpolate(pg_env["POSTGRES_PASSWORD"], REQUIRED):
            problems.append(f"{name}: DATABASE_URL's password is not postgres's")
        if urlsplit(env.get("AWS_S3_ENDPOINT_URL", "")).hostname != by_image["minio/minio"]:
            problems.append(f"{name}: AWS_S3_ENDPOINT_URL is not the minio service")
        if (env.get("AWS_ACCESS_KEY_ID"), env.get("AWS_SECRET_ACCESS_KEY")) != (
            minio_env["MINIO_ROOT_USER"],
            minio_env["MINIO_ROOT_PASSWORD"],
        ):
            problems.append(f"{name}: the AWS_* keys are not minio's")
        if env.get("AWS_STORAGE_BUCKET_NAME") != environment(init).get("BUCKET"):
            problems.append(f"{name}: AWS_STORAGE_BUCKET_NAME is not the bucket minio-init creates")
        needs = service.get("depends_on") or {}
        waits = {
            "migrate": "service_completed_successfully",
            by_image["minio/mc"]: "service_completed_successfully",
        }
        if name == "migrate":
            waits = {
                by_image["postgres"]: "service_healthy",
                by_image["minio/mc"]: "service_completed_successfully",
            }
        for other, condition in waits.items():
            if not isinstance(needs, dict) or (needs.get(other) or {}).get("condition") != condition:
                problems.append(f"{name}: does not wait for {other} ({condition})")
    for name in (by_image["postgres"], by_image["minio/minio"]):
        if not services[name].get("healthcheck"):
            problems.append(f"{name} has no healthcheck (the others wait for it to be healthy)")
    return problems


def nginx_problems(text: str, compose: dict) -> list[str]:
    problems = []
    text = re.sub(r"#[^\n]*", "", text)
    upstreams = dict(re.findall(r"upstream\s+(\w+)\s*\{(.*?)\}", text, re.S))
    if len(upstreams) != 1:
        return [f"expected one upstream block, found {len(upstreams)}"]
    ((upstream, body),) = upstreams.items()
    servers = set(re.findall(r"^\s*server\s+(\S+?)\s*;", body, re.M))
    webs = {f"{n}:{environment(s).get('PORT', '8000')}" for n, s in web_services(compose).items()}
    if servers != webs:
        problems.append(f"upstream servers {sorted(servers)} are not the web services {sorted(webs)}")
    locations = dict(re.findall(r"location\s+([^{]+?)\s*\{(.*?)\}", text, re.S))
    if f"proxy_pass http://{upstream};" not in locations.get("= /healthz", ""):
        problems.append("/healthz is not passed through to the web servers")
    if f"proxy_pass http://{upstream};" not in locations.get("/", ""):
        problems.append("/ is not passed to the web servers")
    size = re.search(r"client_max_body_size\s+(\d+)([kmg]?)\s*;", text, re.I)
    limit = settings.DATASET_MAX_BYTES + UPLOAD_FRAMING_BYTES
    if size is None or int(size[1]) * 1024 ** " kmg".index((size[2] or " ").lower()) != limit:
        problems.append(f"client_max_body_size is not DATASET_MAX_BYTES + 1 MiB ({limit} bytes)")
    if not re.search(r"proxy_set_header\s+X-Forwarded-Proto\s+\$scheme\s*;", text):
        problems.append("X-Forwarded-Proto is not set (gunicorn and HTTPS=1 rely on it)")
    proxy = compose["services"]["proxy"]
    if "./deploy/nginx.conf:/etc/nginx/conf.d/default.conf:ro" not in (proxy.get("volumes") or []):
        problems.append("the proxy does not use deploy/nginx.conf")
    if set(proxy.get("depends_on") or []) != set(web_services(compose)):
        problems.append("the proxy does not start after the web services")
    return problems


def dockerfile_problems(text: str) -> list[str]:
    problems = []
    instructions = dockerfile_instructions(text)
    runs = " ; ".join(args for instr, args in instructions if instr == "RUN")
    if ("FROM", "python:3.12-slim") not in instructions:
        problems.append("the image is not built FROM python:3.12-slim")
    if not any(instr == "COPY" and args.split()[0] == "requirements.txt" for instr, args in instructions):
        problems.append("requirements.txt is not copied in before installing")
    if not re.search(r"pip install[^;&]* -r requirements\.txt", runs):
        problems.append("the image does not pip install -r requirements.txt")
    if "requirements-dev" in text:
        problems.append("the image installs the development requirements")
    if not re.search(r"DEBUG=0 [^;&]*manage\.py collectstatic --noinput", runs):
        problems.append("static files are not collected with DEBUG=0")
    users = [args for instr, args in instructions if instr == "USER"]
    user = users[-1] if users else "root"
    if user in ("root", "0"):
        return [*problems, "the containers run as root"]
    env = " ".join(args for instr, args in instructions if instr == "ENV")
    data_dir = re.search(r"DATA_DIR=(\S+)", env)
    if data_dir is None:
        problems.append("DATA_DIR is not set (settings would write under the code)")
    elif not re.search(rf"install -d -o {user}\b[^;&]*(\"\$DATA_DIR\"|{re.escape(data_dir[1])})", runs):
        problems.append(f"DATA_DIR ({data_dir[1]}) is not made writable for {user}")
    return problems


# --------------------------------------------------------------------------- the files as they are


def test_the_compose_file_has_the_services_of_the_topology():
    compose = load_compose()
    assert set(compose["services"]) == {
        "proxy",
        "web1",
        "web2",
        "worker-monitoring",
        "worker-training",
        "migrate",
        "postgres",
        "minio",
        "minio-init",
    }
    assert set(web_services(compose)) == {"web1", "web2"}
    assert set(worker_services(compose)) == {"worker-monitoring", "worker-training"}
    # Three workers: the training one twice.
    assert compose["services"]["worker-training"]["deploy"]["replicas"] == 2
    assert compose["services"]["postgres"]["image"] == "postgres:17-alpine"
    assert compose["services"]["proxy"]["image"] == "nginx:1.27-alpine"
    # One set of settings for every workspace container (the x-workspace-env anchor).
    shared = compose["x-workspace-env"]
    for name, service in app_services(compose).items():
        assert environment(service).items() >= {k: str(v) for k, v in shared.items()}.items(), name


def test_the_settings_the_containers_set_are_read_by_the_workspace():
    # The reader finds the settings' variables, whichever helper reads them.
    assert {
        "DATABASE_URL",
        "DEBUG",
        "ALLOWED_HOSTS",
        "AWS_STORAGE_BUCKET_NAME",
        "WORKER_QUEUES",
    } <= SETTINGS_NAMES
    assert {"HOST", "PORT", "FORWARDED_ALLOW_IPS"} <= GUNICORN_NAMES
    assert env_problems(load_compose()) == []


def test_a_misspelled_or_missing_setting_is_named():
    compose = load_compose()
    env = compose["services"]["worker-monitoring"]["environment"] = dict(compose["x-workspace-env"])
    env["AWS_S3_ENDPOINT"] = env.pop("AWS_S3_ENDPOINT_URL")
    env["SECRET_KEY"] = "fixed-in-the-file"
    compose["services"]["worker-training"]["environment"] = {**compose["x-workspace-env"], "HOST": "0.0.0.0"}
    assert env_problems(compose) == [
        "worker-monitoring: AWS_S3_ENDPOINT is read by no module of the workspace",
        "worker-monitoring: AWS_S3_ENDPOINT_URL is not set",
        "worker-monitoring: SECRET_KEY is not required from the environment (${SECRET_KEY:?…})",
        # gunicorn's HOST means nothing to a worker.
        "worker-training: HOST is read by no module of the workspace",
    ]


def test_the_secret_and_passwords_must_be_given():
    env = load_compose()["x-workspace-env"]
    for missing in REQUIRED:
        given = {k: v for k, v in REQUIRED.items() if k != missing}
        with pytest.raises(KeyError, match=missing):
            [interpolate(str(value), given) for value in env.values()]


def test_every_manage_py_command_exists_with_its_options():
    compose = load_compose()
    assert command_problems(compose) == []
    # What `make migrate` does (the Makefile's migrate target), the migrate service does.
    makefile = (ROOT / "Makefile").read_text()
    target = re.search(r"^migrate:.*\n((?:\t.*\n)+)", makefile, re.M)[1]
    make_steps = [shlex.split(line.split("manage.py", 1)[1]) for line in target.splitlines()]
    compose_steps = [argv[2:] for argv in command_lines(compose["services"]["migrate"])]
    assert compose_steps == make_steps


def test_an_unknown_command_or_option_is_named():
    compose = load_compose()
    services = compose["services"]
    services["web1"] = {
        **services["web1"],
        "command": ["gunicorn", "-c", "gunicorn.conf.py", "mlworkspace.wsgi"],
    }
    services["worker-monitoring"]["command"] = ["python", "manage.py", "worker", "--threads", "4"]
    services["migrate"]["command"] = ["sh", "-c", "python manage.py migrate && python manage.py seed"]
    assert command_problems(compose) == [
        "web1: gunicorn's config gunicorn.conf.py is not a file",
        "worker-monitoring: manage.py worker --threads 4: Error: unrecognized arguments: --threads 4",
        "migrate: manage.py seed does not exist",
    ]


def test_the_workers_serve_known_queues_and_every_queue_is_served():
    compose = load_compose()
    assert queue_problems(compose) == []
    assert served_queues(compose["services"]["worker-monitoring"]) == (queues.MONITORING,)
    assert served_queues(compose["services"]["worker-training"]) == (queues.TRAINING, queues.SCORING)


def test_an_unknown_or_unserved_queue_is_named():
    compose = load_compose()
    compose["services"]["worker-training"]["command"] = [
        "python",
        "manage.py",
        "worker",
        "--queues",
        "training,gpu",
    ]
    assert queue_problems(compose) == [
        "worker-training: unknown queue(s) gpu: use '*' or some of training, scoring, monitoring",
        "no worker serves the training queue",
        "no worker serves the scoring queue",
    ]
    compose["services"]["worker-monitoring"]["command"] = ["python", "manage.py", "worker"]  # all queues
    assert queue_problems(compose) == [
        "worker-training: unknown queue(s) gpu: use '*' or some of training, scoring, monitoring",
        "the monitoring queue has no worker of its own (a training would delay checks)",
    ]


def test_web_servers_and_workers_share_no_disk():
    compose = load_compose()
    assert volume_problems(compose) == []
    assert set(compose["volumes"]) == {"postgres-data", "minio-data"}


def test_a_shared_folder_is_named():
    compose = load_compose()
    compose["services"]["web2"] = copy.deepcopy(compose["services"]["web2"])
    compose["services"]["web2"]["volumes"] = ["media:/var/lib/mlworkspace/media"]
    compose["services"]["worker-training"]["volumes"] = [
        {"type": "volume", "source": "media", "target": "/m"}
    ]
    compose["volumes"]["media"] = None
    assert volume_problems(compose) == [
        "web2 and worker-training share media",
        "web2 mounts media: the workspace keeps no file on disk",
        "worker-training mounts media: the workspace keeps no file on disk",
        "volume media is mounted by ['web2', 'worker-training']",
    ]


def test_the_workspace_uses_the_compose_files_postgres_and_minio():
    assert wiring_problems(load_compose()) == []


def test_a_wrong_database_bucket_or_start_order_is_named():
    compose = load_compose()
    compose["services"]["postgres"]["environment"]["POSTGRES_DB"] = "workspace"
    compose["services"]["minio-init"]["environment"]["BUCKET"] = "other"
    compose["services"]["migrate"]["depends_on"]["postgres"]["condition"] = "service_started"
    problems = wiring_problems(compose)
    assert "web1: DATABASE_URL's user or database is not postgres's" in problems
    assert "worker-training: AWS_STORAGE_BUCKET_NAME is not the bucket minio-init creates" in problems
    assert "migrate: does not wait for postgres (service_healthy)" in problems
    assert len(problems) == 2 * 5 + 1  # two faults in each of the five services, one start order


def test_the_proxy_balances_the_web_services_and_lets_uploads_through():
    assert nginx_problems(NGINX_FILE.read_text(), load_compose()) == []


def test_a_proxy_pointing_elsewhere_is_named():
    text = NGINX_FILE.read_text()
    broken = (
        text.replace("server web2:8000;", "server web3:8000;")
        .replace("client_max_body_size 4097m;", "client_max_body_size 10m;")
        .replace("location = /healthz", "location = /health")
    )
    assert nginx_problems(broken, load_compose()) == [
        "upstream servers ['web1:8000', 'web3:8000'] are not the web services ['web1:8000', 'web2:8000']",
        "/healthz is not passed through to the web servers",
        f"client_max_body_size is not DATASET_MAX_BYTES + 1 MiB ({4 * 1024**3 + 1024 * 1024} bytes)",
    ]


def test_the_image_installs_the_requirements_and_runs_existing_files():
    assert dockerfile_problems(DOCKERFILE.read_text()) == []
    cmd = dockerfile_cmd()
    assert command_problems({"services": {"image": {"build": ".", "command": cmd}}}) == []
    ignored = set((ROOT / ".dockerignore").read_text().split())
    # Never in the image: the developer's environment, database, secret key and .env.
    assert {".venv", "data", ".env"} <= ignored


def test_a_dockerfile_without_requirements_or_as_root_is_named():
    text = DOCKERFILE.read_text()
    broken = text.replace("-r requirements.txt", "-r requirements-dev.txt").replace("USER app", "USER root")
    assert dockerfile_problems(broken) == [
        "the image does not pip install -r requirements.txt",
        "the image installs the development requirements",
        "the containers run as root",
    ]


def test_the_image_installs_the_s3_backend_the_compose_file_selects():
    # AWS_STORAGE_BUCKET_NAME selects django-storages' S3 backend (settings.py), which needs boto3.
    installed = {
        re.split(r"[=<>~!\[; ]", line.strip(), maxsplit=1)[0].lower(): line
        for line in (ROOT / "requirements.txt").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert "django-storages" in installed
    assert "boto3" in installed or re.search(r"\[(s3|boto3)\]", installed["django-storages"])


# --------------------------------------------------------------------------- the commands, run


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def call(request: urllib.request.Request) -> tuple[int, dict]:
    """(status, JSON body) of an HTTP request; a body that is not JSON as {"text": …}."""
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            code, raw = response.status, response.read()
    except urllib.error.HTTPError as exc:
        code, raw = exc.code, exc.read()
    try:
        return code, json.loads(raw)
    except ValueError:
        return code, {"text": raw.decode(errors="replace")[:2000]}


def post(url: str, token: str, body: bytes, content_type: str) -> tuple[int, dict]:
    headers = {"Authorization": f"Token {token}", "Content-Type": content_type}
    return call(urllib.request.Request(url, data=body, method="POST", headers=headers))


def multipart(fields: dict[str, str], filename: str, content: bytes) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = [
        f'--{boundary}\r\nContent-Disposition: form-data; name="{k}"\r\n\r\n{v}\r\n'.encode()
        for k, v in fields.items()
    ]
    parts.append(
        f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{filename}"\r\n'
        "Content-Type: text/csv\r\n\r\n".encode()
        + content
        + b"\r\n"
    )
    return b"".join(parts) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


def wait_for(predicate, timeout: float):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if result := predicate():
            return result
        time.sleep(0.2)
    return None


@pytest.fixture
def containers(tmp_path, s3_storage):
    """start(service, **env): the compose service's command line as a process, with the compose
    file's environment for it. Only what points at the compose network is replaced — the
    database (the test database), the S3 endpoint and keys (the test server's bucket) — plus
    the image's DATA_DIR (a folder of its own: no disk is shared). Nothing else from this
    process's environment is passed on but PATH and HOME."""
    compose, started = load_compose(), []

    def start(name: str, **overrides: str) -> tuple[subprocess.Popen, Path]:
        service = compose["services"][name]
        env = {key: interpolate(value, REQUIRED) for key, value in environment(service).items()}
        replaced = {"DATABASE_URL": database_url(), **s3_storage["env"], **overrides}
        assert set(replaced) <= set(env), set(replaced) - set(env)  # replaced, never added
        data_dir = tmp_path / name
        (data_dir / "prometheus").mkdir(parents=True)
        if "PROMETHEUS_MULTIPROC_DIR" in env:  # a tmpfs in the container
            replaced["PROMETHEUS_MULTIPROC_DIR"] = str(data_dir / "prometheus")
        env.update(replaced, DATA_DIR=str(data_dir), PATH=os.environ["PATH"], HOME=str(data_dir))
        (argv,) = command_lines(service)
        program = {"python": sys.executable, "gunicorn": str(Path(sys.executable).with_name("gunicorn"))}
        log = open(tmp_path / f"{name}.log", "w")  # noqa: SIM115 - the process writes it
        proc = subprocess.Popen(
            [program[argv[0]], *argv[1:]],
            cwd=ROOT,  # the image's WORKDIR: the code
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        started.append(proc)
        return proc, data_dir

    yield start
    stop_process_groups(started)


def files_under(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if p.is_file()]


@pytest.mark.slow
@pytest.mark.once  # processes and HTTP: the same on either database, run on PostgreSQL only
@pytest.mark.django_db(transaction=True)
def test_the_compose_commands_serve_healthz_and_store_files_in_the_bucket(
    containers, s3_storage, baselines, user, tmp_path
):
    token = Token.objects.create(user=user).key
    port = free_port()
    monitoring, monitoring_dir = containers("worker-monitoring")
    training, training_dir = containers("worker-training")
    web, web_dir = containers("web1", HOST="127.0.0.1", PORT=str(port))
    api = f"http://127.0.0.1:{port}"

    def healthy():
        try:
            code, body = call(urllib.request.Request(f"{api}/healthz"))
        except OSError:  # not listening yet
            return None
        return body if code == 200 and body["checks"]["workers"]["alive"] == 2 else None

    health = wait_for(healthy, timeout=25)
    logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
    assert health, logs
    assert {q: v["workers"] for q, v in health["checks"]["queue"]["queues"].items()} == {
        queues.TRAINING: 1,
        queues.SCORING: 1,
        queues.MONITORING: 1,
    }

    # An upload through the web server lands in the bucket, not on its disk.
    content = get_family("location_scoring").generate(3000, 1).to_csv(index=False).encode()
    code, dataset = post(
        f"{api}/api/ml-development/datasets",
        token,
        *multipart({"recipe_id": "recipe_location_base"}, "sites.csv", content),
    )
    assert code == 201, dataset
    bucket = s3_storage["client"]
    stored = bucket.get_object(Bucket=s3_storage["bucket"], Key=f"datasets/{dataset['id']}.csv")
    assert stored["Body"].read() == content

    # A training run on it: executed by the training worker, its artifacts in the bucket.
    code, run = post(
        f"{api}/api/ml-development/runs",
        token,
        json.dumps({"recipe_id": "recipe_location_base", "dataset_id": dataset["id"]}).encode(),
        "application/json",
    )
    assert code == 201, run
    done = wait_for(
        lambda: Run.objects.filter(pk=run["id"]).exclude(status__in=["queued", "running"]).first(), timeout=25
    )
    assert done is not None and done.status == RunStatus.SUCCEEDED, (done and done.error, logs)
    assert done.worker.split(":")[1] == str(training.pid)
    keys = {o["Key"] for o in bucket.list_objects_v2(Bucket=s3_storage["bucket"])["Contents"]}
    assert {f"artifacts/{done.pk}/{name}" for name in done.artifacts_json["files"]} <= keys
    for folder in (web_dir, monitoring_dir, training_dir):
        assert files_under(folder / "media") == [], folder.name
    assert web.poll() is None and monitoring.poll() is None
