"""The Notifications page: it renders, the create form (the secret shown once), Send test,
rotate, edit, delete, the delivery log, e-mail subscriptions; 404 and 403 as the API."""

from __future__ import annotations

import pytest
from django.test import Client

from notifications import services
from notifications.models import Delivery, EmailSubscription, Webhook

PAGE = "/model-development/notifications"
pytestmark = pytest.mark.django_db


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_the_page_renders_with_the_nav_link_and_bounded_queries(world, django_assert_max_num_queries):
    for n in range(5):
        hook = services.webhook_create(
            user=None, name=f"A hook {n}", url="https://a.example.com", client=world.client_a
        )
        services.webhook_send_test(user=None, webhook=hook)
    services.webhook_create(user=None, name="B hook", url="https://b.example.com", client=world.client_b)
    client = signed_in(world.a_lead)
    with django_assert_max_num_queries(20):
        response = client.get(PAGE)
    assert response.status_code == 200
    html = response.content.decode()
    assert 'href="/model-development/notifications"' in html  # the nav link
    assert html.count('data-webhook="') == 5 and "B hook" not in html
    assert html.count(">Send test</button>") == 5
    assert 'id="webhook-form"' in html and 'id="subscription-form"' in html


def test_the_create_form_shows_the_secret_once(world):
    client = signed_in(world.a_lead)
    response = client.post(
        PAGE,
        {
            "name": "Slack relay",
            "url": "https://relay.example.com/ml",
            "scope": f"client:{world.client_a.pk}",
            "events": ["alert.opened", "retrain.decided"],
        },
    )
    assert response.status_code == 201
    webhook = Webhook.objects.get()
    assert (webhook.name, webhook.client_id, webhook.events) == (
        "Slack relay",
        world.client_a.pk,
        ["alert.opened", "retrain.decided"],
    )
    assert webhook.created_by == world.a_lead
    assert webhook.secret in response.content.decode()
    assert webhook.secret not in client.get(PAGE).content.decode()
    assert webhook.secret not in client.get(f"{PAGE}/webhooks/{webhook.pk}").content.decode()


def test_the_create_form_shows_errors_and_offers_only_scopes_one_manages(world):
    client = signed_in(world.a_lead)
    response = client.post(
        PAGE, {"name": "x", "url": "ftp://x.example.com", "scope": f"client:{world.client_a.pk}"}
    )
    assert response.status_code == 400
    assert "must start with http:// or https://" in response.content.decode()
    # Another client's scope is not on offer: a forged value is refused.
    response = client.post(
        PAGE, {"name": "x", "url": "https://x.example.com", "scope": f"client:{world.client_b.pk}"}
    )
    assert response.status_code == 400
    response = client.post(PAGE, {"name": "x", "url": "https://x.example.com", "scope": "firm"})
    assert response.status_code == 400
    response = client.post(PAGE, {"name": "x", "url": "https://x.example.com", "scope": ""})
    assert response.status_code == 400  # no default scope: it is picked on purpose
    assert Webhook.objects.count() == 0
    page = client.get(PAGE).content.decode()
    assert f'value="client:{world.client_a.pk}"' in page
    assert f'value="client:{world.client_b.pk}"' not in page and 'value="firm"' not in page
    # Someone who manages no scope gets no form, and is told who does.
    viewer_page = signed_in(world.a_viewer).get(PAGE).content.decode()
    assert 'id="webhook-form"' not in viewer_page and "You manage no scope" in viewer_page


def test_send_test_button(world, django_capture_on_commit_callbacks):
    hook = services.webhook_create(user=None, name="A", url="https://a.example.com", client=world.client_a)
    client = signed_in(world.a_lead)
    with django_capture_on_commit_callbacks(execute=True):
        response = client.post(f"{PAGE}/webhooks/{hook.pk}/test")
    assert response.status_code == 302 and response["Location"] == f"{PAGE}/webhooks/{hook.pk}"
    assert Delivery.objects.get().event == "test"
    # With HTMX the log comes back with the new test delivery, polling while it is on its way.
    response = client.post(f"{PAGE}/webhooks/{hook.pk}/test", headers={"HX-Request": "true"})
    html = response.content.decode()
    assert response.status_code == 200 and "<html" not in html
    assert html.count('data-status="pending"') == 2 and 'data-live="1"' in html


def test_the_webhook_page_shows_the_log_and_its_manage_forms(world):
    hook = services.webhook_create(user=None, name="A", url="https://a.example.com", client=world.client_a)
    services.notify("alert.opened", recipe=world.a, payload={})
    Delivery.objects.update(status="failed", attempts=8, response_code=500, error="HTTP 500")
    url = f"{PAGE}/webhooks/{hook.pk}"
    html = signed_in(world.a_lead).get(url).content.decode()
    assert 'data-status="failed"' in html and "HTTP 500" in html and 'data-live="0"' in html
    assert 'id="webhook-edit-form"' in html and "Rotate secret" in html and hook.secret_hint in html
    # A viewer of the client reads the log, without the forms; an outsider gets a 404.
    viewer = signed_in(world.a_viewer).get(url).content.decode()
    assert 'data-status="failed"' in viewer and 'id="webhook-edit-form"' not in viewer
    assert "Managing a client&#x27;s webhooks needs the lead role" in viewer
    assert signed_in(world.b_member).get(url).status_code == 404
    assert signed_in(world.a_viewer).post(f"{url}/test").status_code == 403
    assert (
        signed_in(world.a_viewer).post(url, {"name": "x", "url": "https://x.example.com"}).status_code == 403
    )
    assert signed_in(world.b_member).post(f"{url}/delete").status_code == 404
    assert Webhook.objects.filter(pk=hook.pk).exists()


def test_edit_rotate_and_delete(world):
    hook = services.webhook_create(user=None, name="A", url="https://a.example.com", client=world.client_a)
    client = signed_in(world.a_lead)
    url = f"{PAGE}/webhooks/{hook.pk}"
    response = client.post(
        url, {"name": "A renamed", "url": "https://a2.example.com", "events": ["model.status"]}
    )
    assert response.status_code == 302
    hook.refresh_from_db()
    assert (hook.name, hook.url, hook.events, hook.active) == (
        "A renamed",
        "https://a2.example.com",
        ["model.status"],
        False,  # the box was not ticked
    )
    response = client.post(url, {"name": "A", "url": "mailto:x@example.com"})
    assert response.status_code == 400 and "must start with http" in response.content.decode()

    old = hook.secret
    response = client.post(f"{url}/rotate")
    hook.refresh_from_db()
    assert response.status_code == 200 and hook.secret != old
    assert hook.secret in response.content.decode() and old not in response.content.decode()

    response = client.post(f"{url}/delete")
    assert response.status_code == 302 and not Webhook.objects.exists()


def test_email_subscriptions_on_the_page(world):
    client = signed_in(world.member)
    response = client.post(
        f"{PAGE}/subscriptions", {"scope": f"client:{world.client_a.pk}", "events": ["alert.opened"]}
    )
    assert response.status_code == 302
    subscription = EmailSubscription.objects.get()
    assert (subscription.user, subscription.client, subscription.events) == (
        world.member,
        world.client_a,
        ["alert.opened"],
    )
    assert 'data-subscription="' in client.get(PAGE).content.decode()
    # Another client's scope is not on offer; another user's subscription is not theirs to delete.
    assert client.post(f"{PAGE}/subscriptions", {"scope": f"client:{world.client_b.pk}"}).status_code == 400
    assert signed_in(world.a_lead).post(f"{PAGE}/subscriptions/{subscription.pk}/delete").status_code == 404
    assert client.post(f"{PAGE}/subscriptions/{subscription.pk}/delete").status_code == 302
    assert not EmailSubscription.objects.exists()


def test_subscribing_without_an_address_says_so(world):
    world.a_viewer.email = ""
    world.a_viewer.save(update_fields=["email"])
    response = signed_in(world.a_viewer).post(f"{PAGE}/subscriptions", {"scope": f"recipe:{world.a.pk}"})
    assert response.status_code == 400
    assert "your account has no e-mail address" in response.content.decode()


def test_anonymous_users_go_to_the_login(client):
    response = client.get(PAGE)
    assert response.status_code == 302 and response["Location"].startswith("/accounts/login/")
