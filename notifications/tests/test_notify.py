"""notify(): who gets an event (scope and events), its cost when nobody listens, that it never
raises into its caller, that a rolled-back caller sends nothing, and e-mail subscriptions."""

from __future__ import annotations

import datetime as dt
import decimal

import pytest
from django.db import transaction
from django_tasks_db.models import DBTaskResult

from mlworkspace.errors import InvalidInput
from notifications import services
from notifications.models import Delivery, EmailSubscription
from notifications.tasks import deliver_task

from .conftest import run_queued


def _hook(name, **scope):
    return services.webhook_create(user=None, name=name, url=f"https://{name}.example.com/hook", **scope)


@pytest.mark.django_db
def test_notify_with_no_listener_is_one_query_and_creates_nothing(
    world, django_assert_num_queries, django_capture_on_commit_callbacks
):
    _hook("inactive", client=world.client_a, active=False)
    _hook("other-client", client=world.client_b)
    _hook("other-events", recipe=world.a, events=["model.status"])
    with django_capture_on_commit_callbacks() as callbacks, django_assert_num_queries(1):
        assert services.notify("alert.opened", recipe=world.a, payload={"alert": "mape"}) == 0
    assert Delivery.objects.count() == 0
    assert callbacks == []


@pytest.mark.django_db
def test_scope_matching(world):
    client_a = _hook("client-a", client=world.client_a)
    client_b = _hook("client-b", client=world.client_b)
    recipe_a = _hook("recipe-a", recipe=world.a)
    recipe_firm = _hook("recipe-firm", recipe=world.firm)
    firm = _hook("firm")

    def receivers(recipe):
        Delivery.objects.all().delete()
        services.notify("alert.opened", recipe=recipe, payload={})
        return set(Delivery.objects.values_list("webhook__name", flat=True))

    # A client webhook gets its client's recipes' events, never another client's; firm-wide gets all.
    assert receivers(world.a) == {client_a.name, recipe_a.name, firm.name}
    assert receivers(world.b) == {client_b.name, firm.name}
    assert receivers(world.firm) == {recipe_firm.name, firm.name}
    assert receivers(None) == {firm.name}


@pytest.mark.django_db
def test_events_filter_and_the_delivery_row(world):
    wants_status = _hook("status-only", client=world.client_a, events=["model.status"])
    _hook("alerts-only", client=world.client_a, events=["alert.opened", "alert.resolved"])
    assert (
        services.notify("model.status", recipe=world.a, payload={"from": "staging", "to": "production"}) == 1
    )
    delivery = Delivery.objects.get()
    assert delivery.webhook_id == wants_status.pk
    assert (delivery.event, delivery.status, delivery.attempts) == ("model.status", "pending", 0)
    assert (delivery.recipe_id, delivery.client_id) == (world.a.pk, world.client_a.pk)
    assert delivery.payload == {"from": "staging", "to": "production"}
    assert delivery.next_attempt_at == delivery.created_at


@pytest.mark.django_db
def test_unknown_events_are_refused_quietly(world):
    _hook("all", client=world.client_a)
    assert services.notify("alert.exploded", recipe=world.a, payload={}) == 0
    assert services.notify("test", recipe=world.a, payload={}) == 0  # only the Send test button
    assert Delivery.objects.count() == 0


@pytest.mark.django_db
def test_deliveries_are_handed_to_the_workers_on_commit(world, django_capture_on_commit_callbacks):
    _hook("a", client=world.client_a)
    _hook("firm")
    with django_capture_on_commit_callbacks(execute=True):
        assert services.notify("alert.resolved", recipe=world.a, payload={}) == 2
    queued = DBTaskResult.objects.filter(task_path=deliver_task.module_path)
    assert sorted(row.args_kwargs["args"][0] for row in queued) == sorted(
        Delivery.objects.values_list("id", flat=True)
    )


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_caller_sends_nothing(world):
    _hook("a", client=world.client_a)
    with pytest.raises(RuntimeError), transaction.atomic():
        assert services.notify("alert.opened", recipe=world.a, payload={}) == 1
        raise RuntimeError("the check failed after notifying")
    assert Delivery.objects.count() == 0
    assert DBTaskResult.objects.count() == 0


@pytest.mark.django_db
def test_notify_never_raises_and_leaves_the_callers_transaction_usable(world, caplog):
    _hook("a", client=world.client_a)
    with transaction.atomic():
        assert services.notify("alert.opened", recipe=world.a, payload={"bad": object()}) == 0
        # The caller goes on writing in its transaction.
        assert EmailSubscription.objects.count() == 0
    assert Delivery.objects.count() == 0
    assert "notify('alert.opened') failed" in caplog.text


@pytest.mark.django_db
def test_payload_values_become_plain_json(world):
    _hook("a", client=world.client_a)
    at = dt.datetime(2026, 1, 5, 6, 0, tzinfo=dt.UTC)
    services.notify(
        "comparison.verdict",
        recipe=world.a,
        payload={"at": at, "lift": decimal.Decimal("0.12"), "ci": [float("nan"), 0.2]},
    )
    assert Delivery.objects.get().payload == {"at": "2026-01-05T06:00:00Z", "lift": "0.12", "ci": [None, 0.2]}


# --------------------------------------------------------------------------- e-mail


@pytest.mark.django_db
def test_email_subscribers_get_the_event_through_the_mail_backend(
    world, mailoutbox, django_capture_on_commit_callbacks
):
    services.subscription_set(user=world.member, client=world.client_a, events=["retrain.decided"])
    services.subscription_set(user=world.a_lead, recipe=world.a)
    services.subscription_set(user=world.b_member, client=world.client_b)
    services.subscription_set(user=world.staff)  # firm-wide, but not a member of Client A

    with django_capture_on_commit_callbacks(execute=True):
        queued = services.notify(
            "retrain.decided",
            recipe=world.a,
            payload={"summary": "Challenger promoted: MAPE 0.12 vs 0.18", "decision": "promote"},
        )
    assert queued == 2
    assert mailoutbox == []  # sent by a worker, not in the caller
    assert run_queued() == [2]
    assert sorted(m.to[0] for m in mailoutbox) == ["a-lead@example.com", "member@example.com"]
    assert all(len(m.to) == 1 for m in mailoutbox)  # nobody sees the others' addresses
    message = mailoutbox[0]
    assert message.subject == "[ML Workspace] retrain.decided: Challenger promoted: MAPE 0.12 vs 0.18"
    assert "Recipe: A pricing" in message.body and '"decision": "promote"' in message.body
    assert message.from_email == "ML Workspace <workspace@localhost>"


@pytest.mark.django_db
def test_email_follows_the_subscriptions_events_and_membership(
    world, mailoutbox, django_capture_on_commit_callbacks
):
    services.subscription_set(user=world.member, client=world.client_a, events=["alert.opened"])
    with django_capture_on_commit_callbacks(execute=True):
        assert services.notify("model.status", recipe=world.a, payload={}) == 0
    # Removed from the client, a subscriber gets nothing more about it.
    world.client_a.memberships.filter(user=world.member).delete()
    with django_capture_on_commit_callbacks(execute=True):
        assert services.notify("alert.opened", recipe=world.a, payload={}) == 0
    run_queued()
    assert mailoutbox == []


@pytest.mark.django_db
def test_subscribing_again_changes_the_events_and_needs_an_address(world):
    first = services.subscription_set(user=world.member, client=world.client_a, events=["alert.opened"])
    again = services.subscription_set(
        user=world.member, client=world.client_a, events=["model.status", "model.status"]
    )
    assert again.pk == first.pk and again.events == ["model.status"]
    assert EmailSubscription.objects.count() == 1
    world.outsider.email = ""
    with pytest.raises(InvalidInput) as refused:
        services.subscription_set(user=world.outsider, recipe=world.firm)
    assert refused.value.errors == [
        {"path": "/email", "message": "your account has no e-mail address: ask an admin to add one"}
    ]
