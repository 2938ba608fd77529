"""Decompression bombs (issue 12, defect 5): an upload's rows and columns are read from the
Parquet footer or the CSV's first line before anything is loaded, over a limit is a 413 naming
`file` with the numbers, and a large upload is profiled by a worker task (`processing` →
`ready` / `invalid`) instead of in the web request. Every file is built in the test."""

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.tasks import TaskResultStatus
from django_tasks_db.models import DBTaskResult

from runs import data as run_data
from runs.models import Dataset, DatasetStatus
from runs.tasks import profile_dataset_task

API = "/api/ml-development"
LIST = "/model-development/datasets"
pytestmark = pytest.mark.django_db


def zeros_parquet(rows: int, name: str = "bomb.parquet") -> io.BytesIO:
    """One int8 column of zeros: dictionary + RLE encoding make it tiny on disk whatever `rows`."""
    body = io.BytesIO()
    pq.write_table(
        pa.table({"x": pa.array(np.zeros(rows, dtype=np.int8))}),
        body,
        compression="zstd",
        use_dictionary=True,
    )
    body.seek(0)
    body.name = name
    return body


def wide_csv(columns: int, rows: int = 1, name: str = "wide.csv") -> io.BytesIO:
    lines = [",".join(f"c{i}" for i in range(columns))] + [",".join("0" * columns)] * rows
    body = io.BytesIO(("\n".join(lines) + "\n").encode())
    body.name = name
    return body


def pricing_csv(name: str = "sales.csv") -> io.BytesIO:
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
    body.name = name
    return body


@pytest.fixture
def no_full_read(monkeypatch):
    """Fail the test if the upload loads the whole table (the point is not to)."""

    def refuse(*args, **kwargs):
        raise AssertionError("the table was loaded")

    monkeypatch.setattr(run_data, "read_table", refuse)


def dataset_files(settings) -> list[Path]:
    base = Path(settings.MEDIA_ROOT) / "datasets"
    return list(base.iterdir()) if base.is_dir() else []


def test_parquet_with_too_many_rows_is_refused_from_its_footer(api_client, settings, no_full_read):
    settings.DATASET_MAX_ROWS = 100_000
    body = zeros_parquet(300_000)
    assert len(body.getvalue()) < 20_000  # a small file holding a big table
    response = api_client.post(f"{API}/datasets", {"file": body}, format="multipart")
    assert response.status_code == 413, response.json()
    error = response.json()["errors"][0]
    assert error["path"] == "/file"
    assert "300000 rows" in error["message"] and "100000" in error["message"]
    assert not Dataset.objects.exists()
    assert dataset_files(settings) == []  # the stored file is removed too


def test_csv_with_too_many_columns_is_refused_from_its_header(api_client, settings, no_full_read):
    settings.DATASET_MAX_COLUMNS = 2_000
    response = api_client.post(f"{API}/datasets", {"file": wide_csv(5_000)}, format="multipart")
    assert response.status_code == 413
    body = response.json()
    assert body["errors"][0]["path"] == "/file"
    assert "5000 columns; the limit is 2000" in body["errors"][0]["message"]
    assert "5000 columns" in body["detail"]
    assert not Dataset.objects.exists() and dataset_files(settings) == []


def test_csv_rows_are_counted_without_loading(api_client, settings, no_full_read):
    settings.DATASET_MAX_ROWS = 500
    response = api_client.post(f"{API}/datasets", {"file": wide_csv(3, rows=501)}, format="multipart")
    assert response.status_code == 413
    assert "501 rows; the limit is 500" in response.json()["errors"][0]["message"]


def test_rows_times_columns_over_the_cell_limit_is_refused(api_client, settings, no_full_read):
    settings.DATASET_MAX_CELLS = 1_000
    response = api_client.post(f"{API}/datasets", {"file": wide_csv(20, rows=60)}, format="multipart")
    assert response.status_code == 413
    assert "60 rows × 20 columns = 1200 cells; the limit is 1000" in response.json()["errors"][0]["message"]


def test_a_header_line_longer_than_the_read_cap_is_a_400(api_client, settings, no_full_read):
    settings.DATASET_HEADER_MAX_BYTES = 1_000
    response = api_client.post(f"{API}/datasets", {"file": wide_csv(500)}, format="multipart")
    assert response.status_code == 400
    error = response.json()["errors"][0]
    assert error["path"] == "/file" and "longer than 1000 bytes" in error["message"]


def test_a_corrupt_parquet_footer_is_a_400_naming_file(api_client):
    body = io.BytesIO(b"PAR1 this is not parquet PAR1")
    body.name = "broken.parquet"
    response = api_client.post(f"{API}/datasets", {"file": body}, format="multipart")
    assert response.status_code == 400
    assert response.json()["errors"][0]["path"] == "/file"


def test_within_the_limits_a_small_upload_is_profiled_at_once(api_client, settings):
    settings.DATASET_MAX_COLUMNS = 9
    response = api_client.post(f"{API}/datasets", {"file": pricing_csv()}, format="multipart")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "ready" and body["row_count"] == 2 and len(body["columns_json"]) == 9
    assert not DBTaskResult.objects.exists()  # nothing for a worker to do


def test_a_large_upload_is_processing_until_the_worker_task_profiles_it(
    api_client, settings, baselines, django_capture_on_commit_callbacks
):
    settings.DATASET_INLINE_PROFILE_BYTES = 100  # the pricing CSV is bigger than this
    with django_capture_on_commit_callbacks(execute=True):
        response = api_client.post(
            f"{API}/datasets",
            {"file": pricing_csv(), "recipe_id": "recipe_pricing_base"},
            format="multipart",
        )
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "processing" and body["columns_json"] == []
    task = DBTaskResult.objects.get()
    assert task.task_path == profile_dataset_task.module_path
    assert task.args_kwargs["args"] == [body["id"]] and task.status == TaskResultStatus.READY

    # Runs refuse it meanwhile, naming the field.
    refused = api_client.post(
        f"{API}/runs", {"recipe_id": "recipe_pricing_base", "dataset_id": body["id"]}, format="json"
    )
    assert refused.status_code == 400
    assert refused.json()["errors"][0]["path"] == "/dataset_id"
    assert "still being profiled" in refused.json()["errors"][0]["message"]

    # The worker's task, run in-process.
    assert profile_dataset_task.call(body["id"]) == "ready"
    after = api_client.get(f"{API}/datasets/{body['id']}").json()
    assert after["status"] == "ready" and after["row_count"] == 2
    assert [c["name"] for c in after["columns_json"]][:2] == ["product_id", "store_id"]
    assert after["validation_json"]["recipe_id"] == "recipe_pricing_base"
    validation = after["validation_json"]  # checked against the recipe, as an inline upload is
    assert validation["valid"] is (not validation["errors"]) and validation["valid"] is not None
    assert not any("is missing" in e for e in validation["errors"])
    started = api_client.post(
        f"{API}/runs", {"recipe_id": "recipe_pricing_base", "dataset_id": body["id"]}, format="json"
    )
    assert started.status_code == 201, started.json()
    # A second delivery of the task changes nothing.
    assert profile_dataset_task.call(body["id"]).startswith("not processing")


def test_a_parquet_file_with_many_rows_is_profiled_by_a_worker(api_client, settings, no_full_read):
    settings.DATASET_INLINE_PROFILE_ROWS = 1_000
    response = api_client.post(f"{API}/datasets", {"file": zeros_parquet(5_000)}, format="multipart")
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "processing" and body["row_count"] == 5_000  # from the footer


def test_an_unreadable_large_file_becomes_invalid_with_the_reason(api_client, settings, baselines):
    settings.DATASET_INLINE_PROFILE_BYTES = 10
    body = io.BytesIO(b"a,b\n1,2\n1,2,3,4\n")  # the header is fine, a row is not
    body.name = "ragged.csv"
    created = api_client.post(f"{API}/datasets", {"file": body}, format="multipart").json()
    assert created["status"] == "processing"
    assert profile_dataset_task.call(created["id"]) == "invalid"
    dataset = Dataset.objects.get(pk=created["id"])
    assert dataset.status == DatasetStatus.INVALID
    assert "could not read the file as CSV" in dataset.error
    refused = api_client.post(
        f"{API}/runs", {"recipe_id": "recipe_pricing_base", "dataset_id": dataset.pk}, format="json"
    )
    assert refused.status_code == 400
    error = refused.json()["errors"][0]
    assert error["path"] == "/dataset_id" and "invalid" in error["message"]


def test_the_page_says_a_dataset_is_processing_or_invalid(as_user, user, settings, baselines):
    settings.DATASET_INLINE_PROFILE_BYTES = 10
    response = as_user.post(LIST, {"file": pricing_csv()}, follow=True)
    assert response.status_code == 200
    dataset = Dataset.objects.get()
    assert dataset.status == DatasetStatus.PROCESSING
    page = response.content.decode()
    assert 'data-status="processing"' in page and 'id="dataset-processing"' in page
    assert "A worker is profiling it" in page  # the upload's message
    listing = as_user.get(LIST).content.decode()
    assert 'data-status="processing"' in listing
    # The check against a recipe does not load a file no worker has profiled yet.
    check = as_user.get(f"{LIST}/{dataset.pk}?recipe=recipe_pricing_base")
    assert check.status_code == 200 and "it is still being profiled" in check.content.decode()
    Dataset.objects.filter(pk=dataset.pk).update(status=DatasetStatus.INVALID, error="it is broken")
    page = as_user.get(f"{LIST}/{dataset.pk}").content.decode()
    assert 'data-status="invalid"' in page and "This file cannot be used: it is broken" in page
    assert 'data-status="invalid"' in as_user.get(LIST).content.decode()


def test_a_too_big_upload_on_the_page_is_a_form_error_naming_the_numbers(as_user, settings):
    settings.DATASET_MAX_COLUMNS = 10
    response = as_user.post(LIST, {"file": wide_csv(11)})
    assert response.status_code == 400
    assert "11 columns; the limit is 10" in response.content.decode()
    assert not Dataset.objects.exists()


def test_the_upload_form_states_the_limits(as_user, settings):
    settings.DATASET_MAX_COLUMNS = 1234
    page = as_user.get(LIST).content.decode()
    assert 'id="upload-limits"' in page and "1234 columns" in page


def test_existing_datasets_default_to_ready():
    assert Dataset._meta.get_field("status").default == DatasetStatus.READY


def test_a_monitoring_check_refuses_a_dataset_still_being_profiled(api_client, user, settings, baselines):
    from runs.tests.factories import trained_model

    model = trained_model(user)
    settings.DATASET_INLINE_PROFILE_BYTES = 100
    body = api_client.post(
        f"{API}/datasets", {"file": pricing_csv(), "recipe_id": model.recipe_id}, format="multipart"
    ).json()
    assert body["status"] == "processing"
    refused = api_client.post(
        f"{API}/models/{model.id}/monitoring/check", {"dataset_id": body["id"]}, format="json"
    )
    assert refused.status_code == 400, refused.json()
    assert refused.json()["errors"][0]["path"] == "/dataset_id"
    assert "still being profiled" in refused.json()["errors"][0]["message"]
