"""The webhooks API: create (secret shown once), read, change, delete, send a test, rotate the
secret, the delivery log; errors naming the field; who sees (404) and who changes (403)."""

from __future__ import annotations

import json

import pytest
from django_tasks_db.models import DBTaskResult
from rest_framework.test import APIClient

from audit.models import AuditEvent
from notifications import services
from notifications.models import Delivery, Webhook
from notifications.tasks import deliver_task

API = "/api/ml-development/webhooks"
pytestmark = pytest.mark.django_db


def as_(user) -> APIClient:
    client = APIClient()
    client.force_authenticate(user)
    return client


def create(user, **body):
    body = {"name": "Ops relay", "url": "https://hooks.example.com/ml", **body}
    return as_(user).post(API, body, format="json")


def test_a_client_lead_creates_a_webhook_and_sees_the_secret_once(world):
    response = create(world.a_lead, client_id=world.client_a.pk, events=["alert.opened", "model.status"])
    assert response.status_code == 201, response.json()
    body = response.json()
    secret = body["secret"]
    assert secret.startswith("whsec_") and len(secret) > 30
    assert body["secret_hint"] == f"…{secret[-4:]}"
    assert (body["scope"], body["client_id"], body["recipe_id"]) == ("client", world.client_a.pk, None)
    assert body["events"] == ["alert.opened", "model.status"]
    assert body["created_by"] == "a-lead"
    assert Webhook.objects.get(pk=body["id"]).secret == secret

    read = as_(world.a_lead).get(f"{API}/{body['id']}").json()
    assert "secret" not in read and read["secret_hint"] == body["secret_hint"]
    listed = as_(world.a_lead).get(API).json()
    assert [w["id"] for w in listed["results"]] == [body["id"]]
    assert secret not in json.dumps(listed)


@pytest.mark.parametrize(
    "body, path, message",
    [
        ({"url": "ftp://hooks.example.com/x"}, "/url", "must start with http:// or https://"),
        ({"url": "not a url"}, "/url", "must not contain spaces or control characters"),
        ({"url": "https://"}, "/url", "needs a host name"),
        ({"url": "https://user:pw@hooks.example.com/"}, "/url", None),
        ({"url": "https://hooks.example.com:99999/"}, "/url", "is not a valid URL"),
        ({"events": ["alert.opened", "alert.exploded"]}, "/events", None),
        ({"events": "alert.opened"}, "/events", None),
        ({"name": ""}, "/name", None),
        ({"secret": "mine"}, "/secret", "unknown field"),
    ],
)
def test_bad_input_is_a_400_naming_the_field(world, body, path, message):
    response = create(world.a_lead, client_id=world.client_a.pk, **body)
    assert response.status_code == 400, response.json()
    errors = response.json()["errors"]
    assert errors[0]["path"] == path
    if message:
        assert errors[0]["message"] == message
    assert Webhook.objects.count() == 0


def test_unknown_event_message_lists_the_events(world):
    response = create(world.a_lead, client_id=world.client_a.pk, events=["alert.exploded"])
    message = response.json()["errors"][0]["message"]
    assert message.startswith("unknown event 'alert.exploded'; one of: alert.opened, alert.resolved")


def test_client_and_recipe_together_is_a_400(world):
    response = create(world.a_lead, client_id=world.client_a.pk, recipe_id=world.a.pk)
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "/recipe_id"


def test_another_clients_recipe_or_client_is_a_404_naming_the_field(world):
    response = create(world.a_lead, recipe_id=world.b.pk)
    assert response.status_code == 404
    assert response.json()["errors"] == [{"path": "/recipe_id", "message": "not found"}]
    response = create(world.a_lead, client_id=world.client_b.pk)
    assert response.status_code == 404
    assert response.json()["errors"] == [{"path": "/client_id", "message": "not found"}]
    response = create(world.a_lead, client_id="client_nope")
    assert response.status_code == 404
    assert Webhook.objects.count() == 0


def test_who_may_create_which_scope(world):
    # A client's webhooks: its leads (a data scientist or viewer of it may not).
    assert create(world.member, client_id=world.client_a.pk).status_code == 403
    assert create(world.a_viewer, client_id=world.client_a.pk).status_code == 403
    # A recipe's: who may change the recipe (a data scientist of its client, yes; a viewer, no).
    assert create(world.member, recipe_id=world.a.pk).status_code == 201
    assert create(world.a_viewer, recipe_id=world.a.pk).status_code == 403
    # A firm recipe's: the recipes.change_recipe permission (the firm's data scientists).
    assert create(world.outsider, recipe_id=world.firm.pk).status_code == 201
    assert create(world.a_viewer, recipe_id=world.firm.pk).status_code == 403
    # Firm-wide: admins (staff) only.
    refused = create(world.member)
    assert refused.status_code == 403
    assert refused.json()["detail"] == "Firm-wide webhooks are managed by workspace admins (staff) only."
    assert create(world.staff).status_code == 201
    assert APIClient().post(
        API, {"name": "x", "url": "https://x.example.com"}, format="json"
    ).status_code in (
        401,
        403,
    )


def test_who_sees_and_who_changes(world):
    hook = services.webhook_create(
        user=None, name="A ops", url="https://a.example.com", client=world.client_a
    )
    firm = services.webhook_create(user=None, name="Firm", url="https://firm.example.com")
    url = f"{API}/{hook.pk}"

    # A viewer of the client sees it (and its log) but may not change it: 403.
    assert as_(world.a_viewer).get(url).status_code == 200
    assert as_(world.a_viewer).get(f"{url}/deliveries").status_code == 200
    assert as_(world.a_viewer).patch(url, {"active": False}, format="json").status_code == 403
    assert as_(world.a_viewer).post(f"{url}/test").status_code == 403
    assert as_(world.a_viewer).post(f"{url}/rotate-secret").status_code == 403
    assert as_(world.a_viewer).delete(url).status_code == 403
    # Someone outside the client does not know it exists: 404 everywhere.
    for client in (as_(world.b_member), as_(world.outsider)):
        assert client.get(url).status_code == 404
        assert client.patch(url, {"active": False}, format="json").status_code == 404
        assert client.post(f"{url}/test").status_code == 404
        assert client.get(f"{url}/deliveries").status_code == 404
    # Firm-wide webhooks are the admins' only.
    assert as_(world.member).get(f"{API}/{firm.pk}").status_code == 404
    assert as_(world.staff).get(f"{API}/{firm.pk}").status_code == 200
    assert {w["name"] for w in as_(world.a_viewer).get(API).json()["results"]} == {"A ops"}
    assert {w["name"] for w in as_(world.admin).get(API).json()["results"]} == {"A ops", "Firm"}
    assert [w["name"] for w in as_(world.admin).get(API, {"scope": "firm"}).json()["results"]] == ["Firm"]
    assert [
        w["name"] for w in as_(world.admin).get(API, {"client_id": world.client_a.pk}).json()["results"]
    ] == ["A ops"]
    bad = as_(world.admin).get(API, {"scope": "galaxy"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["path"] == "/scope"
    assert Webhook.objects.get(pk=hook.pk).active is True


def test_change_events_and_active_audited_without_the_secret(world):
    hook = create(world.a_lead, client_id=world.client_a.pk).json()
    url = f"{API}/{hook['id']}"
    response = as_(world.a_lead).patch(url, {"events": ["retrain.decided"], "active": False}, format="json")
    assert response.status_code == 200, response.json()
    assert (response.json()["events"], response.json()["active"]) == (["retrain.decided"], False)

    response = as_(world.a_lead).patch(url, {"client_id": world.client_b.pk}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "/client_id"
    response = as_(world.a_lead).patch(url, {"url": "javascript:alert(1)"}, format="json")
    assert (response.status_code, response.json()["errors"][0]["path"]) == (400, "/url")

    rotated = as_(world.a_lead).post(f"{url}/rotate-secret").json()
    assert rotated["secret"] != hook["secret"] and rotated["secret"].startswith("whsec_")
    assert Webhook.objects.get(pk=hook["id"]).secret == rotated["secret"]

    assert as_(world.a_lead).delete(url).status_code == 204
    assert not Webhook.objects.filter(pk=hook["id"]).exists()

    events = AuditEvent.objects.filter(object_id=hook["id"]).order_by("at", "id")
    assert [e.action for e in events] == [
        "webhook.create",
        "webhook.update",
        "webhook.rotate_secret",
        "webhook.delete",
    ]
    assert events[1].changes == {"active": [True, False], "events": [[], ["retrain.decided"]]}
    assert all(e.actor_username == "a-lead" and e.client_id == world.client_a.pk for e in events)
    trail = json.dumps([[e.changes, e.detail] for e in events])
    assert hook["secret"] not in trail and rotated["secret"] not in trail
    assert "secret" not in events[0].changes and "url" in events[0].changes


def test_send_test_enqueues_a_test_delivery(world, django_capture_on_commit_callbacks):
    hook = services.webhook_create(user=None, name="A", url="https://a.example.com", recipe=world.a)
    with django_capture_on_commit_callbacks(execute=True):
        response = as_(world.member).post(f"{API}/{hook.pk}/test")
    assert response.status_code == 202, response.json()
    body = response.json()
    assert (body["event"], body["status"], body["attempts"]) == ("test", "pending", 0)
    assert (body["recipe_id"], body["client_id"]) == (world.a.pk, world.client_a.pk)
    assert body["payload"]["requested_by"] == "member"
    [queued] = DBTaskResult.objects.filter(task_path=deliver_task.module_path)
    assert queued.args_kwargs["args"] == [body["id"]]


def test_the_delivery_log_is_paginated_newest_first_and_filterable(world):
    hook = services.webhook_create(user=None, name="A", url="https://a.example.com", client=world.client_a)
    for n in range(3):
        services.notify("alert.opened", recipe=world.a, payload={"n": n})
    Delivery.objects.filter(payload__n=0).update(status="failed", error="HTTP 500", response_code=500)
    url = f"{API}/{hook.pk}/deliveries"

    page = as_(world.a_viewer).get(url, {"page_size": 2}).json()
    assert page["count"] == 3 and page["next"]
    assert [d["payload"]["n"] for d in page["results"]] == [2, 1]
    failed = as_(world.a_viewer).get(url, {"status": "failed"}).json()
    assert [(d["payload"]["n"], d["response_code"], d["error"]) for d in failed["results"]] == [
        (0, 500, "HTTP 500")
    ]
    bad = as_(world.a_viewer).get(url, {"status": "lost"})
    assert bad.status_code == 400 and bad.json()["errors"][0]["path"] == "/status"


def test_a_firm_wide_log_shows_an_admin_only_the_clients_they_may_see(world):
    firm = services.webhook_create(user=None, name="Firm", url="https://firm.example.com")
    services.notify("alert.opened", recipe=world.a, payload={})
    services.notify("alert.opened", recipe=world.firm, payload={})
    url = f"{API}/{firm.pk}/deliveries"
    assert [d["recipe_id"] for d in as_(world.staff).get(url).json()["results"]] == [world.firm.pk]
    assert {d["recipe_id"] for d in as_(world.admin).get(url).json()["results"]} == {
        world.firm.pk,
        world.a.pk,
    }


def test_list_queries_do_not_grow_with_webhooks(world, django_assert_max_num_queries):
    for n in range(6):
        services.webhook_create(
            user=None, name=f"hook {n}", url="https://a.example.com", client=world.client_a
        )
    client = as_(world.a_lead)
    with django_assert_max_num_queries(4):
        response = client.get(API)
    assert response.json()["count"] == 6
