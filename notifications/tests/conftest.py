"""A real HTTP receiver on loopback (started by the test, on a free port) and the scopes the
tests send events about: a firm recipe, Client A's recipe and Client B's recipe."""

from __future__ import annotations

import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import SimpleNamespace

import pytest
from django.contrib.auth import get_user_model
from django_tasks_db.models import DBTaskResult

from recipes import client_services
from recipes.models import Recipe
from recipes.services import recipe_clone
from recipes.tests.factories import make_client


class Receiver:
    """Records every request; answers with the queued status codes (then 200), optionally after
    a delay (to make the sender time out)."""

    def __init__(self):
        self.requests: list[dict] = []
        self.codes: list[int] = []
        self.delay = 0.0
        self.lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"

    def _handler(self):
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                with receiver.lock:
                    receiver.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
                    code = receiver.codes.pop(0) if receiver.codes else 200
                if receiver.delay:
                    time.sleep(receiver.delay)
                self.send_response(code)
                if 300 <= code < 400:
                    self.send_header("Location", "http://example.invalid/elsewhere")
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args):  # quiet test output
                pass

        return Handler

    def json(self, index: int = -1) -> dict:
        return json.loads(self.requests[index]["body"])

    def start(self):
        threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        ).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver():
    receiver = Receiver().start()
    yield receiver
    receiver.stop()


@pytest.fixture
def webhook_settings(settings):
    """Short timeouts and few attempts; private addresses allowed, for the receiver on loopback
    (by default webhooks reach public addresses only: test_webhook_addresses)."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.WEBHOOK_TIMEOUT_SECONDS = 2
    settings.WEBHOOK_BACKOFF_SECONDS = 60
    settings.WEBHOOK_MAX_ATTEMPTS = 3
    return settings


@pytest.fixture
def world(client_recipe):
    """firm: the pricing baseline; a: Client A's recipe (member: data scientist; lead; viewer);
    b: Client B's recipe (b_member); admin: a superuser; staff: is_staff, no client."""
    users = get_user_model().objects
    a_lead = users.create_user("a-lead", password="pw-a-lead-1", email="a-lead@example.com")
    a_viewer = users.create_user("a-viewer", password="pw-a-viewer-1", email="a-viewer@example.com")
    b_member = users.create_user("b-member", password="pw-b-member-1", email="b-member@example.com")
    staff = users.create_user("staff", password="pw-staff-1", email="staff@example.com", is_staff=True)
    client_services.membership_set(user=None, client=client_recipe.client, member=a_lead, role="lead")
    client_services.membership_set(user=None, client=client_recipe.client, member=a_viewer, role="viewer")
    client_b = make_client("Client B", {b_member: "lead"})
    recipe_b = recipe_clone(
        source=client_recipe.recipe.parent, user=client_recipe.admin, name="B pricing", client=client_b
    )
    member = client_recipe.member
    member.email = "member@example.com"
    member.save(update_fields=["email"])
    return SimpleNamespace(
        firm=Recipe.objects.get(pk="recipe_pricing_base"),
        a=client_recipe.recipe,
        client_a=client_recipe.client,
        b=recipe_b,
        client_b=client_b,
        member=member,
        a_lead=a_lead,
        a_viewer=a_viewer,
        b_member=b_member,
        staff=staff,
        admin=client_recipe.admin,
        outsider=client_recipe.outsider,
    )


def run_queued() -> list:
    """Run the queued tasks (what a worker's task loop does), oldest first: their results."""
    results = []
    for row in DBTaskResult.objects.ready().order_by("enqueued_at"):
        args = row.args_kwargs
        results.append(row.task.call(*args.get("args", []), **args.get("kwargs", {})))
        row.delete()
    return results
