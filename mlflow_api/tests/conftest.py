import json

import pytest
from django.db import connections
from rest_framework.authtoken.models import Token

BASE = "/mlflow/api/2.0/mlflow"
RECIPE = "recipe_pricing_base"


class Mlflow:
    """The Django test client speaking MLflow's REST protocol with a token."""

    def __init__(self, client, token: str | None):
        self.client = client
        self.headers = {"HTTP_AUTHORIZATION": f"Bearer {token}"} if token else {}

    def get(self, endpoint: str, **params):
        return self.client.get(f"{BASE}/{endpoint}", params, **self.headers)

    def post(self, endpoint: str, body=None, *, raw: bytes | None = None, method: str = "post"):
        data = raw if raw is not None else json.dumps(body or {})
        return getattr(self.client, method)(
            f"{BASE}/{endpoint}", data=data, content_type="application/json", **self.headers
        )

    def put_artifact(self, path: str, content: bytes):
        return self.client.put(
            f"/mlflow/api/2.0/mlflow-artifacts/artifacts/{path}",
            data=content,
            content_type="application/octet-stream",
            **self.headers,
        )

    def get_artifact(self, artifact: str, **params):
        url = "/mlflow/api/2.0/mlflow-artifacts/artifacts" + (f"/{artifact}" if artifact else "")
        return self.client.get(url, params, **self.headers)

    def create_run(self, experiment_id: str = RECIPE, **body) -> str:
        response = self.post("runs/create", {"experiment_id": experiment_id, **body})
        assert response.status_code == 200, response.content
        return response.json()["run"]["info"]["run_id"]


def token_of(user) -> str:
    return Token.objects.get_or_create(user=user)[0].key


@pytest.fixture
def mlflow(client, user, baselines):
    """`user` (a firm data scientist) logged in with their API token; the baselines loaded."""
    return Mlflow(client, token_of(user))


def error(response) -> tuple[int, str, str]:
    body = response.json()
    assert set(body) == {"error_code", "message"}, body
    return response.status_code, body["error_code"], body["message"]


@pytest.fixture
def live_server_closes_its_connections(monkeypatch):
    """The live server answers each request in a thread of its own; with persistent
    connections (PostgreSQL's CONN_MAX_AGE) each would stay open after its thread ended and
    keep the test database from being dropped."""
    monkeypatch.setitem(connections.settings["default"], "CONN_MAX_AGE", 0)
