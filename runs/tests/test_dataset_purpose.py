"""A dataset's purpose (issue 14 §2): "scoring" marks it as its recipe's scoring input, the
data its batch-mode production model scores on schedule. Set at upload (API), changed later
(API action, the dataset page's form), audited, refused without a recipe, scoped to clients."""

from pathlib import Path

import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile
from rest_framework.test import APIClient

from audit.models import AuditEvent
from recipes.models import Recipe
from runs.models import Dataset
from runs.services import dataset_create
from runs.tests.test_dataset_pages import HTMX, LIST, csv_upload, page, pricing_frame

API = "/api/ml-development/datasets"
pytestmark = pytest.mark.django_db


def api_upload(client, **fields):
    upload = csv_upload(pricing_frame())
    return client.post(API, {"file": upload, **fields}, format="multipart")


def stored(user, recipe=None, purpose="training") -> Dataset:
    upload = SimpleUploadedFile("sales.csv", pricing_frame().to_csv(index=False).encode())
    return dataset_create(user=user, upload=upload, recipe=recipe, purpose=purpose)


def dataset_files() -> list[Path]:
    folder = Path(settings.MEDIA_ROOT) / "datasets"
    return sorted(folder.iterdir()) if folder.is_dir() else []


def pricing() -> Recipe:
    return Recipe.objects.get(pk="recipe_pricing_base")


# --------------------------------------------------------------------------- API: upload


def test_upload_is_training_data_unless_marked_as_scoring_input(api_client, baselines):
    plain = api_upload(api_client, recipe_id="recipe_pricing_base")
    assert plain.status_code == 201 and plain.json()["purpose"] == "training"
    marked = api_upload(api_client, recipe_id="recipe_pricing_base", purpose="scoring")
    assert marked.status_code == 201, marked.json()
    assert marked.json()["purpose"] == "scoring"
    assert Dataset.objects.get(pk=marked.json()["id"]).purpose == "scoring"
    assert api_client.get(f"{API}/{plain.json()['id']}").json()["purpose"] == "training"


@pytest.mark.parametrize(
    "fields, message",
    [
        ({"recipe_id": "recipe_pricing_base", "purpose": "inference"}, "not a valid choice"),
        ({"purpose": "scoring"}, "recipe"),  # scoring input is a recipe's
    ],
)
def test_a_bad_purpose_at_upload_is_a_400_naming_it_and_stores_nothing(
    api_client, baselines, fields, message
):
    response = api_upload(api_client, **fields)
    assert response.status_code == 400, response.json()
    (error,) = response.json()["errors"]
    assert error["path"] == "/purpose" and message in error["message"]
    assert not Dataset.objects.exists() and dataset_files() == []


# --------------------------------------------------------------------------- API: change


def test_purpose_changes_and_is_audited(api_client, baselines, user):
    dataset = stored(user, pricing())
    response = api_client.post(f"{API}/{dataset.pk}/purpose", {"purpose": "scoring"}, format="json")
    assert response.status_code == 200, response.json()
    assert response.json()["purpose"] == "scoring" and response.json()["id"] == dataset.pk
    dataset.refresh_from_db()
    assert dataset.purpose == "scoring"
    (event,) = AuditEvent.objects.filter(action="dataset.purpose")
    assert (event.object_id, event.actor_username) == (dataset.pk, "scientist")
    assert event.changes == {"purpose": ["training", "scoring"]}
    # Setting it again changes nothing and records nothing; back to training is recorded.
    again = api_client.post(f"{API}/{dataset.pk}/purpose", {"purpose": "scoring"}, format="json")
    assert again.status_code == 200 and again.json()["purpose"] == "scoring"
    assert AuditEvent.objects.filter(action="dataset.purpose").count() == 1
    back = api_client.post(f"{API}/{dataset.pk}/purpose", {"purpose": "training"}, format="json")
    assert back.status_code == 200 and back.json()["purpose"] == "training"
    assert AuditEvent.objects.filter(action="dataset.purpose").count() == 2


@pytest.mark.parametrize(
    "body, message",
    [
        ({"purpose": "inference"}, "not a valid choice"),
        ({"purpose": None}, "null"),
        ({}, "required"),
        ({"purpose": "scoring", "recipe_id": "x"}, None),  # unknown fields are refused too
    ],
)
def test_a_bad_purpose_change_is_a_400_naming_the_field(api_client, baselines, user, body, message):
    dataset = stored(user, pricing())
    response = api_client.post(f"{API}/{dataset.pk}/purpose", body, format="json")
    assert response.status_code == 400, response.json()
    paths = [e["path"] for e in response.json()["errors"]]
    assert paths == (["/recipe_id"] if message is None else ["/purpose"])
    if message:
        assert message in response.json()["errors"][0]["message"].lower()
    dataset.refresh_from_db()
    assert dataset.purpose == "training"


def test_a_dataset_without_a_recipe_cannot_be_scoring_input(api_client, baselines, user):
    dataset = stored(user)
    response = api_client.post(f"{API}/{dataset.pk}/purpose", {"purpose": "scoring"}, format="json")
    assert response.status_code == 400
    (error,) = response.json()["errors"]
    assert error["path"] == "/purpose" and "recipe" in error["message"]
    dataset.refresh_from_db()
    assert dataset.purpose == "training"
    assert not AuditEvent.objects.filter(action="dataset.purpose").exists()


def test_changing_the_purpose_needs_the_permission(viewer_client, anon_client, baselines, user):
    dataset = stored(user, pricing())
    url = f"{API}/{dataset.pk}/purpose"
    assert viewer_client.post(url, {"purpose": "scoring"}, format="json").status_code == 403
    assert anon_client.post(url, {"purpose": "scoring"}, format="json").status_code in (401, 403)
    assert viewer_client.get(f"{API}/{dataset.pk}").json()["purpose"] == "training"  # may still see it
    dataset.refresh_from_db()
    assert dataset.purpose == "training"


def test_another_clients_dataset_is_404_and_its_member_may_mark_it(client_recipe, api_client):
    member = APIClient()
    member.force_authenticate(client_recipe.member)
    created = api_upload(member, recipe_id=client_recipe.recipe.pk, purpose="scoring")
    assert created.status_code == 201, created.json()
    dataset_id = created.json()["id"]
    assert created.json()["client_id"] == client_recipe.client.pk
    # The outsider (api_client: a firm data scientist with every firm permission) sees nothing.
    assert api_client.get(f"{API}/{dataset_id}").status_code == 404
    r = api_client.post(f"{API}/{dataset_id}/purpose", {"purpose": "training"}, format="json")
    assert r.status_code == 404
    # ... and may not upload scoring input for that client's recipe either.
    assert api_upload(api_client, recipe_id=client_recipe.recipe.pk, purpose="scoring").status_code == 400
    assert Dataset.objects.get(pk=dataset_id).purpose == "scoring"
    r = member.post(f"{API}/{dataset_id}/purpose", {"purpose": "training"}, format="json")
    assert r.status_code == 200 and r.json()["purpose"] == "training"


# --------------------------------------------------------------------------- the page


def test_the_dataset_page_shows_the_mark_and_its_form_toggles_it(as_user, baselines, user):
    dataset = stored(user, pricing())
    body = as_user.get(page(dataset.pk)).content.decode()
    assert 'id="purpose" data-purpose="training"' in body and "Mark as scoring input" in body
    # The form (htmx): the section comes back marked.
    response = as_user.post(page(dataset.pk), {"purpose": "scoring"}, **HTMX)
    assert response.status_code == 200
    fragment = response.content.decode()
    assert fragment.lstrip().startswith('<section class="card" id="purpose" data-purpose="scoring">')
    assert 'id="purpose-badge">Scoring input</span>' in fragment and "Unmark: training data" in fragment
    assert "Marked as the scoring input of" in fragment
    assert "<h1>" not in fragment  # only the section
    dataset.refresh_from_db()
    assert dataset.purpose == "scoring"
    assert AuditEvent.objects.filter(action="dataset.purpose", object_id=dataset.pk).count() == 1
    # The list marks it too.
    assert 'data-purpose="scoring"' in as_user.get(LIST).content.decode()
    # Without htmx: back to the page, with a message.
    response = as_user.post(page(dataset.pk), {"purpose": "training"}, follow=True)
    assert response.redirect_chain == [(page(dataset.pk), 302)]
    body = response.content.decode()
    assert "is no longer a scoring input" in body and 'data-purpose="training"' in body
    assert 'data-purpose="scoring"' not in as_user.get(LIST).content.decode()


def test_the_page_form_refuses_a_bad_purpose_in_words(as_user, baselines, user):
    without_recipe = stored(user)
    body = as_user.get(page(without_recipe.pk)).content.decode()
    assert "Only a dataset uploaded for a recipe can be its scoring input" in body
    assert 'id="purpose-form"' not in body
    response = as_user.post(page(without_recipe.pk), {"purpose": "scoring"}, **HTMX)
    assert response.status_code == 400
    assert "upload the dataset for a recipe first" in response.content.decode()
    response = as_user.post(page(without_recipe.pk), {"purpose": "inference"}, **HTMX)
    assert response.status_code == 400 and "not one of the available choices" in response.content.decode()
    without_recipe.refresh_from_db()
    assert without_recipe.purpose == "training"


def test_the_page_form_needs_the_permission(as_viewer, baselines, user):
    dataset = stored(user, pricing())
    body = as_viewer.get(page(dataset.pk)).content.decode()
    assert 'id="purpose" data-purpose="training"' in body and 'id="purpose-form"' not in body
    assert as_viewer.post(page(dataset.pk), {"purpose": "scoring"}).status_code == 403
    dataset.refresh_from_db()
    assert dataset.purpose == "training"


def test_another_clients_dataset_page_is_404_for_an_outsider(client_recipe, as_user):
    dataset = stored(client_recipe.member, client_recipe.recipe, purpose="scoring")
    assert as_user.get(page(dataset.pk)).status_code == 404
    assert as_user.post(page(dataset.pk), {"purpose": "training"}).status_code == 404
    dataset.refresh_from_db()
    assert dataset.purpose == "scoring"
