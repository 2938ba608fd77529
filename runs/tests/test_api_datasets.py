"""DELETE /datasets/{id}: 204 for an unused dataset (row and file gone), 409 naming what uses
it, 404 for an unknown id, 403 without the permission."""

import io
from pathlib import Path

import pandas as pd
import pytest

from recipes.models import Recipe
from runs.models import Dataset
from runs.services import run_start

API = "/api/ml-development"
pytestmark = pytest.mark.django_db


def upload(client, recipe_id: str | None = None) -> dict:
    frame = pd.DataFrame(
        {
            "product_id": ["P1", "P2"],
            "store_id": ["S1", "S1"],
            "week": ["2026-01-05", "2026-01-05"],
            "segment": ["snacks", "snacks"],
            "price": [2.0, 2.5],
            "regular_price": [2.5, 2.5],
            "unit_cost": [1.0, 1.2],
            "promo": [0, 1],
            "units": [10, 12],
        }
    )
    body = io.BytesIO(frame.to_csv(index=False).encode())
    body.name = "sales.csv"
    data = {"file": body, **({"recipe_id": recipe_id} if recipe_id else {})}
    response = client.post(f"{API}/datasets", data, format="multipart")
    assert response.status_code == 201, response.json()
    return response.json()


def test_delete_unused_dataset_removes_row_and_file(
    api_client, baselines, django_capture_on_commit_callbacks
):
    ds = upload(api_client)
    path = Path(Dataset.objects.get(pk=ds["id"]).file.path)
    assert path.exists()
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.delete(f"{API}/datasets/{ds['id']}")
    assert response.status_code == 204
    assert not Dataset.objects.filter(pk=ds["id"]).exists() and not path.exists()
    assert api_client.get(f"{API}/datasets/{ds['id']}").status_code == 404


def test_delete_used_dataset_is_a_409_naming_the_runs(api_client, baselines, user):
    ds = upload(api_client, "recipe_pricing_base")
    dataset = Dataset.objects.get(pk=ds["id"])
    run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), dataset=dataset)
    response = api_client.delete(f"{API}/datasets/{ds['id']}")
    assert response.status_code == 409
    body = response.json()
    assert "used by 1 run" in body["detail"]
    assert body["errors"] == [{"path": "/id", "message": "used by 1 run"}]
    assert Dataset.objects.filter(pk=ds["id"]).exists() and Path(dataset.file.path).exists()


def test_delete_unknown_dataset_is_404(api_client, baselines):
    assert api_client.delete(f"{API}/datasets/ds_nope").status_code == 404


def test_delete_needs_the_permission(api_client, viewer_client, anon_client, baselines):
    ds = upload(api_client)
    assert viewer_client.delete(f"{API}/datasets/{ds['id']}").status_code == 403
    assert anon_client.delete(f"{API}/datasets/{ds['id']}").status_code in (401, 403)
    assert Dataset.objects.filter(pk=ds["id"]).exists()
