"""Reading the trail: GET /audit (filters, scoping, read-only), the admin (read-only), failed
sign-ins, and the History tab of the recipe, model and run pages."""

from __future__ import annotations

import datetime as dt

import pytest
from django.contrib import admin
from django.contrib.admin.utils import quote
from django.test import RequestFactory
from django.urls import reverse

from audit import services as audit
from audit.models import AuditEvent
from models_registry import services as model_services
from recipes import client_services
from recipes import services as recipe_services
from recipes.models import Recipe
from runs import services as run_services

pytestmark = pytest.mark.django_db

API = "/api/ml-development"


@pytest.fixture
def base(baselines):
    return Recipe.objects.get(pk="recipe_pricing_base")


@pytest.fixture
def acme(user):
    """A client whose only member is `user`, with one event about it."""
    client = client_services.client_create(user=user, name="Acme")
    client_services.membership_set(user=user, client=client, member=user, role="lead")
    return client


@pytest.fixture
def trail(base, user, lead, acme):
    """Firm events by two people plus the client's events (client.create, member_add)."""
    recipe_services.recipe_update(recipe=base, user=user, description="one")
    recipe_services.recipe_update(recipe=base, user=lead, description="two")
    model = model_services.model_register(
        user=user, name="Pricing model", recipe=base, recipe_version=base.current_version
    )
    return {"base": base, "model": model}


def ids(response):
    assert response.status_code == 200, response.json()
    return [e["id"] for e in response.json()["results"]]


def test_list_is_newest_first_and_paginated(api_client, trail):
    body = api_client.get(f"{API}/audit", {"page_size": 2}).json()
    assert body["count"] == AuditEvent.objects.count() == 5
    assert len(body["results"]) == 2 and body["next"]
    ats = [e["at"] for e in api_client.get(f"{API}/audit").json()["results"]]
    assert ats == sorted(ats, reverse=True)


@pytest.mark.parametrize(
    "params, expected",
    [
        ({"object_type": "recipe", "object_id": "recipe_pricing_base"}, ["recipe.update", "recipe.update"]),
        ({"actor": "lead"}, ["recipe.update"]),
        ({"action": "model.register"}, ["model.register"]),
        ({"action": "client."}, ["client.member_add", "client.create"]),
        ({"object_type": "model"}, ["model.register"]),
    ],
)
def test_filters(api_client, trail, params, expected):
    results = api_client.get(f"{API}/audit", params).json()["results"]
    assert [e["action"] for e in results] == expected


def test_client_id_and_time_filters(api_client, trail, acme):
    assert {
        e["client_id"] for e in api_client.get(f"{API}/audit", {"client_id": acme.pk}).json()["results"]
    } == {acme.pk}
    first = AuditEvent.objects.order_by("at", "id").first()
    old = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    audit.record(None, "recipe.update", trail["base"], at=old)
    assert ids(api_client.get(f"{API}/audit", {"until": "2021-01-01T00:00:00Z"})) == [
        AuditEvent.objects.get(at=old).pk
    ]
    since = ids(api_client.get(f"{API}/audit", {"since": first.at.isoformat()}))
    assert len(since) == 5 and AuditEvent.objects.get(at=old).pk not in since


def test_a_bad_date_is_a_400_naming_the_field(api_client, trail):
    r = api_client.get(f"{API}/audit", {"since": "yesterday-ish"})
    assert r.status_code == 400
    assert "since" in str(r.json())


def test_client_events_are_visible_to_members_and_superusers_only(
    api_client, viewer_client, trail, acme, django_user_model
):
    client_events = set(AuditEvent.objects.filter(client_id=acme.pk).values_list("id", flat=True))
    assert len(client_events) == 2
    assert client_events <= set(ids(api_client.get(f"{API}/audit")))  # a member
    outsider = set(ids(viewer_client.get(f"{API}/audit")))  # not a member
    assert outsider and not outsider & client_events
    assert viewer_client.get(f"{API}/audit", {"client_id": acme.pk}).json()["results"] == []
    root = django_user_model.objects.create_superuser("root", password="pw-root-12345")
    from rest_framework.test import APIClient

    superuser = APIClient()
    superuser.force_authenticate(root)
    assert client_events <= set(ids(superuser.get(f"{API}/audit")))


def test_anonymous_gets_nothing(anon_client, trail):
    assert anon_client.get(f"{API}/audit").status_code in (401, 403)


@pytest.mark.parametrize("method", ["post", "put", "patch", "delete"])
def test_no_write_through_the_api(api_client, trail, method):
    event = AuditEvent.objects.first()
    for url in (f"{API}/audit", f"{API}/audit/{event.pk}"):
        r = getattr(api_client, method)(url, {"action": "x"}, format="json")
        assert r.status_code in (404, 405)
    assert AuditEvent.objects.get(pk=event.pk).action == event.action
    assert AuditEvent.objects.count() == 5


def test_list_query_count_does_not_grow_with_events(api_client, trail, django_assert_max_num_queries):
    for n in range(20):
        audit.record(None, "recipe.update", trail["base"], changes={"description": [str(n), str(n + 1)]})
    with django_assert_max_num_queries(6):
        assert len(ids(api_client.get(f"{API}/audit"))) == 25


# --------------------------------------------------------------------------- failed sign-ins


def test_a_failed_login_is_recorded_without_the_password(client, user):
    r = client.post("/accounts/login/", {"username": "scientist", "password": "not-the-password"})
    assert r.status_code == 200  # the form again
    event = AuditEvent.objects.get(action="auth.login_failed")
    assert event.detail == {"username": "scientist"}
    assert event.actor_id is None and event.ip == "127.0.0.1"
    assert "not-the-password" not in str(event.changes) + str(event.detail)
    client.post("/accounts/login/", {"username": "scientist", "password": "pw-scientist-1"})
    assert AuditEvent.objects.filter(action="auth.login_failed").count() == 1


def test_failed_logins_are_for_superusers_only(api_client, client, user, django_user_model):
    client.post("/accounts/login/", {"username": "nobody", "password": "x"})
    assert api_client.get(f"{API}/audit", {"action": "auth.login_failed"}).json()["results"] == []
    root = django_user_model.objects.create_superuser("root", password="pw-root-12345")
    from rest_framework.test import APIClient

    superuser = APIClient()
    superuser.force_authenticate(root)
    results = superuser.get(f"{API}/audit", {"action": "auth.login_failed"}).json()["results"]
    assert [e["object_repr"] for e in results] == ["nobody"]
    assert results[0]["ip"] == "127.0.0.1"


def test_the_request_ip_and_user_are_recorded_through_the_api(api_client, trail):
    r = api_client.patch(f"{API}/models/{trail['model'].pk}", {"description": "via the API"}, format="json")
    assert r.status_code == 200, r.json()
    event = AuditEvent.objects.get(action="model.update")
    assert event.actor_username == "scientist" and event.ip == "127.0.0.1"
    assert event.changes == {"description": ["", "via the API"]}
    assert "ip" not in api_client.get(f"{API}/audit").json()["results"][0]  # not for everyone


# --------------------------------------------------------------------------- admin


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password="pw-root-12345")


def test_admin_is_read_only_even_for_a_superuser(client, root, trail):
    model_admin = admin.site._registry[AuditEvent]
    request = RequestFactory().get("/admin/")
    request.user = root
    event = AuditEvent.objects.first()
    assert not model_admin.has_add_permission(request)
    assert not model_admin.has_change_permission(request, event)
    assert not model_admin.has_delete_permission(request, event)
    client.force_login(root)
    listing = client.get(reverse("admin:audit_auditevent_changelist"))
    assert listing.status_code == 200 and quote(event.pk) in listing.content.decode()
    assert client.get(reverse("admin:audit_auditevent_change", args=[quote(event.pk)])).status_code == 200
    assert client.get(reverse("admin:audit_auditevent_add")).status_code == 403
    assert (
        client.post(
            reverse("admin:audit_auditevent_delete", args=[quote(event.pk)]), {"post": "yes"}
        ).status_code
        == 403
    )
    changed = client.post(reverse("admin:audit_auditevent_change", args=[quote(event.pk)]), {"action": "x"})
    assert changed.status_code == 403
    bulk = client.post(
        reverse("admin:audit_auditevent_changelist"),
        {"action": "delete_selected", "_selected_action": [event.pk], "post": "yes"},
    )
    assert bulk.status_code in (200, 302)
    assert AuditEvent.objects.filter(pk=event.pk, action=event.action).exists()


def test_admin_lists_only_visible_events(client, viewer, trail, acme):
    from django.contrib.auth.models import Permission

    viewer.is_staff = True
    viewer.save()
    viewer.user_permissions.add(Permission.objects.get(codename="view_auditevent"))
    client.force_login(viewer)
    page = client.get(reverse("admin:audit_auditevent_changelist")).content.decode()
    client_events = AuditEvent.objects.filter(client_id=acme.pk).values_list("id", flat=True)
    assert quote(AuditEvent.objects.filter(client_id=None).first().pk) in page
    assert client_events and not any(quote(pk) in page for pk in client_events)


# --------------------------------------------------------------------------- History on the pages


def test_recipe_history_tab_shows_the_recipe_and_its_versions(as_user, base, user, lead):
    industry = recipe_services.recipe_clone(source=base, user=user, name="Retail pricing")
    recipe_services.recipe_update(recipe=industry, user=lead, description="Retail prices, weekly")
    recipe_services.version_approve(version=industry.current_version, user=lead, override_reason="ok by lead")
    page = as_user.get(f"/model-development/recipes/{industry.pk}?tab=history")
    assert page.status_code == 200
    html = page.content.decode()
    assert 'id="history-table"' in html
    for action in ("recipe.clone", "recipe.update", "version.approve"):
        assert f'data-action="{action}"' in html
    assert "Retail prices, weekly" in html and "ok by lead" in html
    # Another recipe's events are not in this history.
    recipe_services.recipe_update(recipe=base, user=user, description="base only")
    assert (
        "base only"
        not in as_user.get(f"/model-development/recipes/{industry.pk}?tab=history").content.decode()
    )


def test_recipe_history_tab_is_an_htmx_fragment(as_user, base, user):
    recipe_services.recipe_update(recipe=base, user=user, description="fragment")
    r = as_user.get(f"/model-development/recipes/{base.pk}?tab=history", headers={"HX-Request": "true"})
    html = r.content.decode()
    assert r.status_code == 200 and 'id="history-table"' in html and "<html" not in html


def test_model_history_tab(as_user, base, user, lead):
    model = model_services.model_register(
        user=user, name="Pricing model", recipe=base, recipe_version=base.current_version
    )
    model_services.model_update(model=model, user=lead, description="now with holidays")
    html = as_user.get(f"/model-development/models/{model.pk}?tab=history").content.decode()
    assert 'data-action="model.register"' in html and 'data-action="model.update"' in html
    assert "now with holidays" in html
    # The other tabs do not carry it.
    assert 'id="history-table"' not in as_user.get(f"/model-development/models/{model.pk}").content.decode()


def test_run_page_shows_its_history(as_user, base, user):
    run = run_services.run_start(user=user, recipe=base, executor="external")
    run_services.run_cancel(run=run, user=user)
    html = as_user.get(f"/model-development/runs/{run.pk}").content.decode()
    assert 'data-action="run.start"' in html and 'data-action="run.cancel"' in html
    assert "cancelled" in html


def test_history_is_empty_for_an_object_without_events(as_user, base):
    html = as_user.get(f"/model-development/recipes/{base.pk}?tab=history").content.decode()
    assert "No recorded changes yet." in html


# --------------------------------------------------------------------------- flush


@pytest.mark.django_db(transaction=True)
def test_transactional_tests_can_flush_the_trail(baselines, user):
    """Between transactional tests Django empties every table (DELETE on SQLite, TRUNCATE on
    PostgreSQL): the append-only triggers must let that through (teardown would error)."""
    recipe_services.recipe_update(
        recipe=Recipe.objects.get(pk="recipe_pricing_base"), user=user, description="x"
    )
    assert AuditEvent.objects.filter(action="recipe.update").exists()


def test_a_service_without_a_user_records_the_requests_user(api_client, trail):
    """snapshot_record takes no user: the signed-in user of the request is the actor; the
    scheduler (no request) is the system."""
    model = trail["model"]
    r = api_client.post(
        f"{API}/models/{model.pk}/monitoring", {"performance_metrics_json": {"MAPE": 0.1}}, format="json"
    )
    assert r.status_code == 201, r.json()
    event = AuditEvent.objects.get(action="monitoring.check")
    assert (event.actor_username, event.object_id, event.ip) == ("scientist", model.pk, "127.0.0.1")
    from monitoring.services import snapshot_record

    snapshot_record(model=model, performance={"MAPE": 0.2}, source="check")
    latest = AuditEvent.objects.filter(action="monitoring.check").order_by("-at", "-id").first()
    assert latest.actor_id is None and latest.actor_label == "system" and latest.ip is None
