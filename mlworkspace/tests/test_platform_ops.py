"""Operations: one log line per record, a warning-free OpenAPI schema, the favicon, and the
demo check `make run` uses to decide whether to print its tip."""

import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.contrib.staticfiles import finders
from django.core.management import CommandError, call_command
from drf_spectacular.drainage import reset_generator_stats

from recipes.models import Level, Recipe
from recipes.services import recipe_clone, recipe_set_tags
from workspace.demo import DEMO_TAG, MARKER_NAME

ROOT = Path(__file__).resolve().parents[2]

# Logs a record on each logger the workspace's processes use, the way `make run` starts them.
LOG_PROBE = """
import logging, django
django.setup()
logging.getLogger("django.request").warning("probe-request Not Found: /nowhere")
logging.getLogger("django.tasks").info("probe-task Task id=1 state=RUNNING")
logging.getLogger("django_tasks_db").info("probe-worker Starting worker")
logging.getLogger("runs.executor").info("probe-executor run finished")
logging.getLogger("monitoring.scheduler").warning("probe-scheduler check failed")
logging.getLogger("django.server").info('"GET /probe-server HTTP/1.1" 200 12')
"""
PROBES = ["probe-request", "probe-task", "probe-worker", "probe-executor", "probe-scheduler", "probe-server"]


@pytest.mark.parametrize("debug", ["1", "0"])
def test_one_log_record_prints_one_line(tmp_path, debug):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "mlworkspace.settings",
        "DEBUG": debug,
        "SECRET_KEY": "test-only",
        "DATA_DIR": str(tmp_path),
        "LOG_LEVEL": "INFO",
    }
    out = subprocess.run(
        [sys.executable, "-c", LOG_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = (out.stdout + out.stderr).splitlines()
    for probe in PROBES:
        printed = [line for line in lines if probe in line]
        assert len(printed) == 1, (probe, printed)
    # Application records say when, how bad and where from; runserver's request lines keep
    # Django's own format.
    (request_line,) = [line for line in lines if "probe-request" in line]
    assert "WARNING django.request: probe-request" in request_line
    (server_line,) = [line for line in lines if "probe-server" in line]
    assert "django.server" not in server_line and server_line.startswith("[")


def test_openapi_schema_builds_without_warnings_or_errors():
    """What `make test` runs: drf-spectacular fails on any warning (enum name collisions,
    views whose responses it cannot infer) and validates the schema."""
    reset_generator_stats()
    call_command("spectacular", fail_on_warn=True, validate=True, file=os.devnull)


def test_openapi_schema_describes_the_chat_responses(api_client):
    schema = api_client.get("/api/schema/", HTTP_ACCEPT="application/json").json()
    paths = schema["paths"]
    chat = next(v for k, v in paths.items() if k.rstrip("/").endswith("/chat"))
    conversation = next(v for k, v in paths.items() if "{conversation_id}" in k)
    reply = chat["post"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    history = conversation["get"]["responses"]["200"]["content"]["application/json"]["schema"]["$ref"]
    components = schema["components"]["schemas"]
    assert set(components[reply.rsplit("/", 1)[1]]["properties"]) == {
        "conversation_id",
        "reply",
        "proposal",
        "created_recipe_id",
        "sources",
    }
    assert "messages" in components[history.rsplit("/", 1)[1]]["properties"]
    # Each status field names its own choice set.
    assert components["RunStatusEnum"]["enum"][:2] == ["queued", "running"]
    assert "in_review" in components["RecipeStatusEnum"]["enum"]
    assert "production" in components["ModelStatusEnum"]["enum"]


def test_chat_schema_annotations_do_not_change_the_reply(api_client):
    r = api_client.post("/api/ml-development/chat", {"message": "hello"}, format="json")
    assert r.status_code == 200
    assert set(r.json()) == {"conversation_id", "reply", "proposal", "created_recipe_id", "sources"}
    bad = api_client.post("/api/ml-development/chat", {}, format="json")
    assert bad.status_code == 400
    assert "message" in str(bad.json())


def test_favicon_is_linked_from_every_page_and_served_at_the_root(client):
    for name in ("favicon.ico", "favicon.svg"):
        path = finders.find(name)
        assert path, name
    assert Path(finders.find("favicon.ico")).read_bytes()[:4] == b"\x00\x00\x01\x00"  # an ICO
    assert b"<svg" in Path(finders.find("favicon.svg")).read_bytes()

    r = client.get("/favicon.ico")
    assert r.status_code == 302
    assert r["Location"].startswith("/static/") and r["Location"].endswith(".ico")

    page = client.get("/accounts/login/").content.decode()
    assert 'rel="icon" href="/static/favicon.svg"' in page
    assert 'rel="icon" href="/static/favicon.ico"' in page


@pytest.mark.django_db
def test_seed_demo_check_says_whether_the_demo_is_there(user, baselines):
    with pytest.raises(CommandError) as missing:
        call_command("seed_demo", check=True, stdout=StringIO())
    assert missing.value.returncode == 1
    assert not Recipe.objects.filter(name=MARKER_NAME).exists()  # the check built nothing

    marker = recipe_clone(
        source=Recipe.objects.get(pk="recipe_forecasting_base"),
        user=user,
        name=MARKER_NAME,
        level=Level.INDUSTRY,
    )
    with pytest.raises(CommandError):  # a recipe of that name is not the demo without its tag
        call_command("seed_demo", check=True, stdout=StringIO())
    recipe_set_tags(recipe=marker, tags=[DEMO_TAG])
    out = StringIO()
    call_command("seed_demo", check=True, stdout=out)
    assert "demo workspace is there" in out.getvalue()
