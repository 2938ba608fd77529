"""Deliveries against a real HTTP receiver on loopback: signature, retries with backoff, the
final failure, errors without an answer, and two workers claiming one delivery."""

from __future__ import annotations

import json
import socket
import threading
from datetime import timedelta

import pytest
from django.db import connection
from django.utils import timezone

from notifications import delivery as sender
from notifications import services, signing
from notifications.models import Delivery, DeliveryStatus, Webhook
from runs.management.commands import worker

from .conftest import run_queued


def _hook(url, *, recipe=None, client=None, events=None, active=True) -> Webhook:
    return services.webhook_create(
        user=None, name="hook", url=url, recipe=recipe, client=client, events=events, active=active
    )


def _one_delivery(webhook, recipe, *, at, payload=None) -> Delivery:
    assert services.notify("alert.opened", recipe=recipe, payload=payload or {"alert": "mape"}, at=at) == 1
    return Delivery.objects.get(webhook=webhook)


@pytest.mark.django_db
def test_delivery_is_signed_with_the_secret_and_timestamp(receiver, webhook_settings, world):
    webhook = _hook(receiver.url, client=world.client_a)
    at = timezone.now()
    delivery = _one_delivery(webhook, world.a, at=at, payload={"alert": "mape", "value": 0.31})

    assert sender.deliver(delivery.pk, now=at) == DeliveryStatus.DELIVERED

    [request] = receiver.requests
    headers, body = request["headers"], request["body"]
    assert request["path"] == "/hook"
    assert headers["Content-Type"] == "application/json"
    assert headers["X-Workspace-Event"] == "alert.opened"
    assert headers["X-Workspace-Delivery"] == delivery.pk
    assert headers["X-Workspace-Timestamp"] == str(int(at.timestamp()))
    assert signing.verify(
        webhook.secret,
        headers["X-Workspace-Timestamp"],
        body,
        headers["X-Workspace-Signature"],
        now=at.timestamp(),
    )
    # The same body under another secret, or a changed body, does not verify; nor an old timestamp.
    assert not signing.verify(
        "whsec_other",
        headers["X-Workspace-Timestamp"],
        body,
        headers["X-Workspace-Signature"],
        now=at.timestamp(),
    )
    assert not signing.verify(
        webhook.secret,
        headers["X-Workspace-Timestamp"],
        body + b" ",
        headers["X-Workspace-Signature"],
        now=at.timestamp(),
    )
    assert not signing.verify(
        webhook.secret,
        headers["X-Workspace-Timestamp"],
        body,
        headers["X-Workspace-Signature"],
        now=at.timestamp() + 600,
    )
    document = json.loads(body)
    assert document == {
        "event": "alert.opened",
        "id": delivery.pk,
        "created_at": sender.iso(delivery.created_at),
        "recipe_id": world.a.pk,
        "client_id": world.client_a.pk,
        "data": {"alert": "mape", "value": 0.31},
    }
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.error) == (
        "delivered",
        1,
        200,
        "",
    )
    assert delivery.delivered_at == at and delivery.next_attempt_at is None


@pytest.mark.django_db
def test_a_500_is_retried_with_backoff_then_delivered(receiver, webhook_settings, world):
    webhook = _hook(receiver.url, recipe=world.firm)
    t0 = timezone.now()
    delivery = _one_delivery(webhook, world.firm, at=t0)
    receiver.codes = [500]

    assert sender.deliver(delivery.pk, now=t0) == DeliveryStatus.RETRYING
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.error) == (
        "retrying",
        1,
        500,
        "HTTP 500",
    )
    assert delivery.next_attempt_at == t0 + timedelta(seconds=60)

    # Not yet due: nothing is sent.
    assert sender.deliver_due(now=t0 + timedelta(seconds=59)) == 0
    assert len(receiver.requests) == 1

    assert sender.deliver_due(now=t0 + timedelta(seconds=60)) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.error) == (
        "delivered",
        2,
        200,
        "",
    )
    assert len(receiver.requests) == 2
    # Each attempt is signed at its own time.
    stamps = [r["headers"]["X-Workspace-Timestamp"] for r in receiver.requests]
    assert stamps == [str(int(t0.timestamp())), str(int(t0.timestamp()) + 60)]


@pytest.mark.django_db
def test_after_max_attempts_the_delivery_fails_with_the_last_code(receiver, webhook_settings, world):
    webhook = _hook(receiver.url, recipe=world.firm)
    t0 = timezone.now()
    delivery = _one_delivery(webhook, world.firm, at=t0)
    receiver.codes = [503, 503, 502, 200]

    now = t0
    statuses = []
    for wait in (0, 60, 120):  # backoff doubles: 1 min, then 2 min
        now += timedelta(seconds=wait)
        statuses.append(sender.deliver(delivery.pk, now=now))
    assert statuses == ["retrying", "retrying", "failed"]
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts, delivery.response_code, delivery.error) == (
        "failed",
        3,
        502,
        "HTTP 502",
    )
    assert delivery.next_attempt_at is None
    # A failed delivery is not sent again.
    assert sender.deliver_due(now=now + timedelta(days=1)) == 0
    assert len(receiver.requests) == 3


@pytest.mark.django_db
def test_a_refused_connection_is_recorded_as_an_error(webhook_settings, world):
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    webhook = _hook(f"http://127.0.0.1:{port}/hook", recipe=world.firm)
    t0 = timezone.now()
    delivery = _one_delivery(webhook, world.firm, at=t0)

    assert sender.deliver(delivery.pk, now=t0) == "retrying"
    delivery.refresh_from_db()
    assert delivery.response_code is None
    assert delivery.error.startswith("connection failed:")
    assert "refused" in delivery.error.lower()
    assert "\n" not in delivery.error


@pytest.mark.django_db
def test_a_timeout_is_recorded_as_an_error(receiver, webhook_settings, world):
    webhook_settings.WEBHOOK_TIMEOUT_SECONDS = 0.3
    receiver.delay = 1.5
    webhook = _hook(receiver.url, recipe=world.firm)
    t0 = timezone.now()
    delivery = _one_delivery(webhook, world.firm, at=t0)

    assert sender.deliver(delivery.pk, now=t0) == "retrying"
    delivery.refresh_from_db()
    assert delivery.response_code is None
    assert delivery.error.startswith("timed out after 0.3 s")


@pytest.mark.django_db
def test_a_redirect_is_not_followed(receiver, webhook_settings, world):
    webhook = _hook(receiver.url, recipe=world.firm)
    t0 = timezone.now()
    delivery = _one_delivery(webhook, world.firm, at=t0)
    receiver.codes = [302]

    assert sender.deliver(delivery.pk, now=t0) == "retrying"
    delivery.refresh_from_db()
    assert (delivery.response_code, delivery.error) == (302, "HTTP 302")
    assert len(receiver.requests) == 1  # and nothing went to the Location


@pytest.mark.django_db
def test_a_deactivated_webhook_gets_no_more_attempts(receiver, webhook_settings, world):
    webhook = _hook(receiver.url, recipe=world.firm)
    t0 = timezone.now()
    delivery = _one_delivery(webhook, world.firm, at=t0)
    services.webhook_update(user=None, webhook=webhook, active=False)

    assert sender.deliver(delivery.pk, now=t0) == "failed"
    delivery.refresh_from_db()
    assert delivery.error == "not sent: the webhook was deactivated"
    assert receiver.requests == []
    # New events do not reach it at all.
    assert services.notify("alert.opened", recipe=world.firm, payload={}) == 0


@pytest.mark.django_db
def test_a_stale_claim_loses(receiver, webhook_settings, world):
    """Two workers read the same row; the second claim finds it changed and sends nothing."""
    webhook = _hook(receiver.url, recipe=world.firm)
    t0 = timezone.now()
    delivery = _one_delivery(webhook, world.firm, at=t0)
    first = Delivery.objects.select_related("webhook").get(pk=delivery.pk)
    second = Delivery.objects.select_related("webhook").get(pk=delivery.pk)

    assert sender.attempt(first, now=t0) == "delivered"
    assert sender.attempt(second, now=t0) is None
    assert len(receiver.requests) == 1
    assert Delivery.objects.get(pk=delivery.pk).attempts == 1


@pytest.mark.django_db(transaction=True)
def test_two_concurrent_workers_deliver_once(receiver, webhook_settings, world):
    webhook = _hook(receiver.url, recipe=world.firm)
    t0 = timezone.now()
    delivery = _one_delivery(webhook, world.firm, at=t0)
    receiver.delay = 0.3  # the first attempt is still in flight when the second tries
    barrier = threading.Barrier(2)
    results = []

    def worker():
        try:
            row = Delivery.objects.select_related("webhook").get(pk=delivery.pk)
            barrier.wait()
            results.append(sender.attempt(row, now=t0))
            results.append(sender.deliver_due(now=t0))
        finally:
            connection.close()

    threads = [threading.Thread(target=worker) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)

    assert sorted(results, key=str) == sorted(["delivered", None, 0, 0], key=str)
    assert len(receiver.requests) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("delivered", 1)


@pytest.mark.django_db
def test_the_task_and_the_tick_never_send_twice(
    receiver, webhook_settings, world, django_capture_on_commit_callbacks
):
    """notify enqueues a task on commit; the task sends; the tick then finds nothing due."""
    webhook = _hook(receiver.url, client=world.client_a)
    with django_capture_on_commit_callbacks(execute=True):
        services.notify("retrain.decided", recipe=world.a, payload={"decision": "promote"})
    assert run_queued() == ["delivered"]
    assert sender.deliver_due() == 0
    assert len(receiver.requests) == 1
    assert receiver.json()["data"] == {"decision": "promote"}
    assert Delivery.objects.get(webhook=webhook).status == "delivered"


# Transactional: the tick closes the thread's database connection, as a worker's tick does.
@pytest.mark.django_db(transaction=True)
def test_the_workers_tick_sends_due_deliveries(receiver, webhook_settings, world):
    """The worker's housekeeping includes deliver_due (a task that never ran is sent anyway)."""
    _hook(receiver.url, recipe=world.firm)
    services.notify("model.status", recipe=world.firm, payload={"to": "production"})
    worker.housekeeping()
    assert len(receiver.requests) == 1
    assert Delivery.objects.get().status == "delivered"


@pytest.mark.django_db
def test_only_http_urls_are_opened():
    assert sender.post("file:///etc/passwd", b"{}", {}, 1) == (None, "not an http(s) URL")
    assert sender.post("ftp://example.com/x", b"{}", {}, 1) == (None, "not an http(s) URL")


@pytest.mark.django_db
def test_one_broken_delivery_does_not_stop_the_tick(receiver, webhook_settings, world, monkeypatch):
    _hook(receiver.url, recipe=world.firm)
    _hook(receiver.url, recipe=world.firm)
    t0 = timezone.now()
    services.notify("model.status", recipe=world.firm, payload={}, at=t0)
    real_body_of, calls = sender.body_of, []

    def body_of(delivery):
        calls.append(delivery.pk)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return real_body_of(delivery)

    monkeypatch.setattr(sender, "body_of", body_of)
    assert sender.deliver_due(now=t0) == 1
    assert len(receiver.requests) == 1
    broken = Delivery.objects.get(pk=calls[0])
    # Its claimed attempt counts; it is due again once the lease has passed.
    assert (broken.status, broken.attempts) == ("pending", 1)
    assert broken.next_attempt_at == t0 + sender.lease()
