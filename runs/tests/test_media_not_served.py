"""Files are served only through permission-checked views, whatever DEBUG is (issue 12,
defect 6): no /media/ URL, the dataset file comes from GET /datasets/{id}/download."""

import importlib
import io
from pathlib import Path

import pandas as pd
import pytest
from django.urls import clear_url_caches

from runs.models import Dataset

API = "/api/ml-development"
pytestmark = pytest.mark.django_db


@pytest.fixture
def debug_urls(settings):
    """The URLconf as `make dev` builds it (DEBUG on at import time), restored afterwards."""
    import mlworkspace.urls

    before = settings.DEBUG
    settings.DEBUG = True
    importlib.reload(mlworkspace.urls)
    clear_url_caches()
    yield
    settings.DEBUG = before
    importlib.reload(mlworkspace.urls)
    clear_url_caches()


@pytest.fixture
def uploaded(api_client) -> Dataset:
    body = io.BytesIO(pd.DataFrame({"a": [1, 2, 3], "b": ["x", "y", "z"]}).to_csv(index=False).encode())
    body.name = "client-data.csv"
    response = api_client.post(f"{API}/datasets", {"file": body}, format="multipart")
    assert response.status_code == 201, response.json()
    dataset = Dataset.objects.get(pk=response.json()["id"])
    assert Path(dataset.file.path).is_file()
    return dataset


def test_media_urls_are_not_served_even_with_debug_on(debug_urls, uploaded, client, user):
    url = f"/media/{uploaded.file.name}"
    assert client.get(url).status_code == 404  # anonymous
    client.force_login(user)
    assert client.get(url).status_code == 404  # signed in: only through the download view


def test_signed_in_user_downloads_the_file_through_the_view(uploaded, api_client):
    response = api_client.get(f"{API}/datasets/{uploaded.pk}/download")
    assert response.status_code == 200
    assert b"".join(response.streaming_content) == Path(uploaded.file.path).read_bytes()
    assert 'attachment; filename="client-data.csv"' in response["Content-Disposition"]


def test_anonymous_download_is_refused(uploaded, anon_client):
    response = anon_client.get(f"{API}/datasets/{uploaded.pk}/download")
    assert response.status_code in (401, 403)


def test_download_of_an_unknown_dataset_or_a_missing_file_is_a_404(uploaded, api_client):
    assert api_client.get(f"{API}/datasets/ds_nope/download").status_code == 404
    Path(uploaded.file.path).unlink()
    response = api_client.get(f"{API}/datasets/{uploaded.pk}/download")
    assert response.status_code == 404
    assert str(Path(uploaded.file.path).parent) not in response.content.decode()  # no server path


def test_the_dataset_page_links_to_the_download_view(uploaded, as_user):
    page = as_user.get(f"/model-development/datasets/{uploaded.pk}").content.decode()
    assert f'href="/api/ml-development/datasets/{uploaded.pk}/download"' in page
    assert "/media/" not in page
