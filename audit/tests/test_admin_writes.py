"""Edits made in the admin go through the services, so they follow the rules and are audited."""

import pytest
from django.contrib import admin
from django.contrib.messages.storage.cookie import CookieStorage
from django.forms.models import model_to_dict

from audit.models import AuditEvent
from recipes.models import Client, ClientMembership, Recipe, RecipeStatus

pytestmark = pytest.mark.django_db


@pytest.fixture
def root(django_user_model):
    return django_user_model.objects.create_superuser("root", password="pw-root-12345")


def _request(rf, user):
    request = rf.post("/admin/")
    request.user = user
    request._messages = CookieStorage(request)
    return request


def _form(model_admin, request, obj, **changes):
    Form = model_admin.get_form(request, obj, change=obj is not None)
    data = {**(model_to_dict(obj, fields=list(Form.base_fields)) if obj else {}), **changes}
    data = {k: ("" if v is None else v) for k, v in data.items()}
    form = Form(data=data, instance=obj)
    assert form.is_valid(), form.errors
    return form


def test_recipe_admin_edit_is_a_service_write_with_its_event(rf, root, baselines):
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    model_admin = admin.site._registry[Recipe]
    request = _request(rf, root)
    form = _form(model_admin, request, recipe, description="Edited in the admin")
    model_admin.save_model(request, form.instance, form, change=True)
    assert Recipe.objects.get(pk=recipe.pk).description == "Edited in the admin"
    event = AuditEvent.objects.get(action="recipe.update", object_id=recipe.pk)
    assert event.changes["description"][1] == "Edited in the admin"


def test_recipe_admin_refused_status_move_writes_nothing(rf, root, baselines):
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    Recipe.objects.filter(pk=recipe.pk).update(status=RecipeStatus.DRAFT)
    recipe.refresh_from_db()
    model_admin = admin.site._registry[Recipe]
    request = _request(rf, root)
    form = _form(model_admin, request, recipe, status=RecipeStatus.APPROVED)  # only by approving
    model_admin.save_model(request, form.instance, form, change=True)
    assert Recipe.objects.get(pk=recipe.pk).status == RecipeStatus.DRAFT
    assert not AuditEvent.objects.filter(action="recipe.update").exists()
    assert any("Not saved" in str(m) for m in request._messages._queued_messages)


def test_client_admin_creates_through_the_service_and_audits_the_team(rf, root, user):
    model_admin = admin.site._registry[Client]
    request = _request(rf, root)
    form = _form(model_admin, request, None, name="Acme Foods", slug="acme-foods")
    model_admin.save_model(request, form.instance, form, change=False)
    client = Client.objects.get(slug="acme-foods")
    assert client.pk.startswith("client_") and form.instance.pk == client.pk
    assert AuditEvent.objects.filter(action="client.create", object_id=client.pk).count() == 1

    inline = model_admin.get_inline_instances(request, client)[0]
    Formset = inline.get_formset(request, client)
    prefix = Formset.get_default_prefix()
    data = {
        f"{prefix}-TOTAL_FORMS": "1",
        f"{prefix}-INITIAL_FORMS": "0",
        f"{prefix}-0-user": str(user.pk),
        f"{prefix}-0-role": "lead",
    }
    formset = Formset(data=data, instance=client, prefix=prefix)
    assert formset.is_valid(), formset.errors
    model_admin.save_formset(request, form, formset, change=True)
    assert ClientMembership.objects.get(client=client, user=user).role == "lead"
    assert AuditEvent.objects.filter(action="client.member_add", object_id=client.pk).count() == 1
