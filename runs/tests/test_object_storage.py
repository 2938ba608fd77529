"""Files in an S3-compatible object store (issue #16 §1), against a real S3 server on loopback
(moto in server mode, the `s3_storage` fixture): uploads, training, prediction, a monitoring
check, batch scoring and every download go through the bucket, nothing is written under the
local media folder, and a missing or altered object is a clear error, never a crash."""

from __future__ import annotations

import hashlib
import io
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from models_registry.services import model_set_status
from monitoring.models import ScoringBatch
from monitoring.scheduler import check_scored_batches, run_due_checks
from recipes.models import Client
from runs import artifacts
from runs.executor import execute_run
from runs.families import get_family
from runs.models import Dataset, Run, RunStatus
from runs.services import run_start
from runs.tests.factories import register

API = "/api/ml-development"
LOCATION = "recipe_location_base"
pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    return b"".join(response.streaming_content)


def bucket_keys(s3) -> dict[str, bytes]:
    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"]).get("Contents", [])
    return {
        o["Key"]: s3["client"].get_object(Bucket=s3["bucket"], Key=o["Key"])["Body"].read() for o in listed
    }


def local_media_files() -> list[Path]:
    return [p for p in Path(settings.MEDIA_ROOT).rglob("*") if p.is_file()]


def sites_csv(seed: int, rows: int = 3000) -> bytes:
    return get_family("location_scoring").generate(rows, seed).to_csv(index=False).encode()


def upload(api_client, content: bytes, name: str = "sites.csv", **fields) -> dict:
    response = api_client.post(
        f"{API}/datasets", {"file": SimpleUploadedFile(name, content), "recipe_id": LOCATION, **fields}
    )
    assert response.status_code == 201, response.json()
    return response.json()


def train(user, model, dataset_id: str) -> Run:
    run = run_start(user=user, recipe=model.recipe, model=model, dataset=Dataset.objects.get(pk=dataset_id))
    execute_run(run.id)
    run.refresh_from_db()
    return run


def test_upload_train_predict_check_score_and_download_through_the_bucket(
    s3_storage, baselines, user, api_client
):
    content = sites_csv(seed=1)
    dataset = upload(api_client, content)
    keys = bucket_keys(s3_storage)
    assert keys[f"datasets/{dataset['id']}.csv"] == content
    assert hashlib.sha256(content).hexdigest() == Dataset.objects.get(pk=dataset["id"]).sha256

    model = register(user, LOCATION)
    run = train(user, model, dataset["id"])
    assert run.status == RunStatus.SUCCEEDED, run.error
    keys = bucket_keys(s3_storage)
    for name, entry in run.artifacts_json["files"].items():
        stored = keys[f"artifacts/{run.id}/{name}"]
        assert hashlib.sha256(stored).hexdigest() == entry["sha256"] and len(stored) == entry["size"]
    assert "model/model.json" in run.artifacts_json["files"]

    # Prediction loads the model from the bucket.
    artifacts._CACHE.clear()
    rows = get_family("location_scoring").generate(5, 7).drop(columns=["annual_sales"])
    response = api_client.post(
        f"{API}/models/{model.id}/predict", {"rows": rows.to_dict("records")}, format="json"
    )
    assert response.status_code == 200, response.json()
    assert len(response.json()["predictions"]) == 5

    # A monitoring check of an uploaded batch reads it and the training profile from the bucket.
    batch = upload(api_client, sites_csv(seed=2, rows=600), name="batch.csv")
    response = api_client.post(
        f"{API}/models/{model.id}/monitoring/check", {"dataset_id": batch["id"]}, format="json"
    )
    assert response.status_code == 201, response.json()
    assert response.json()["drift_metrics_json"]["features"]

    # Batch scoring of the recipe's scoring input: the predictions are stored in the bucket.
    model_set_status(model=model, user=user, status="staging")
    model_set_status(model=model, user=user, status="production")
    model.refresh_from_db()
    scoring = upload(api_client, sites_csv(seed=3, rows=400), name="scoring.csv", purpose="scoring")
    (batch_id,) = run_due_checks(model.next_check_at)
    scored = ScoringBatch.objects.select_related("run").get(pk=batch_id)
    assert scored.run.dataset_id == scoring["id"]
    assert execute_run(scored.run_id) == "succeeded", Run.objects.get(pk=scored.run_id).error
    assert len(check_scored_batches()) == 1
    response = api_client.get(f"{API}/models/{model.id}/predictions", {"format": "parquet"})
    assert response.status_code == 200
    assert len(pd.read_parquet(io.BytesIO(body(response)))) == 400
    assert f"artifacts/{scored.run_id}/predictions.parquet" in bucket_keys(s3_storage)

    # Downloads stream the bucket's bytes, checked.
    response = api_client.get(f"{API}/datasets/{dataset['id']}/download")
    assert response.status_code == 200 and body(response) == content
    response = api_client.get(f"{API}/runs/{run.id}/artifacts/model/model.json")
    assert response.status_code == 200
    assert (
        hashlib.sha256(body(response)).hexdigest()
        == run.artifacts_json["files"]["model/model.json"]["sha256"]
    )

    assert local_media_files() == []  # nothing under the local media folder
    assert not any(p.is_file() for p in Path(settings.WORK_DIR).rglob("*"))  # scratch cleaned up


def test_an_altered_or_missing_object_is_a_clear_error(s3_storage, baselines, user, api_client):
    s3 = s3_storage
    dataset = upload(api_client, sites_csv(seed=1))
    model = register(user, LOCATION)
    run = train(user, model, dataset["id"])
    assert run.status == RunStatus.SUCCEEDED, run.error

    # An artifact replaced in the bucket is refused (409), never served or loaded.
    s3["client"].put_object(Bucket=s3["bucket"], Key=f"artifacts/{run.id}/model/model.json", Body=b"{}")
    response = api_client.get(f"{API}/runs/{run.id}/artifacts/model/model.json")
    assert response.status_code == 409 and "sha256" in response.json()["detail"]
    artifacts._CACHE.clear()
    rows = get_family("location_scoring").generate(2, 7).drop(columns=["annual_sales"])
    response = api_client.post(
        f"{API}/models/{model.id}/predict", {"rows": rows.to_dict("records")}, format="json"
    )
    assert response.status_code == 409, response.json()

    # A dataset altered in the bucket fails the run that reads it, in words.
    s3["client"].put_object(Bucket=s3["bucket"], Key=f"datasets/{dataset['id']}.csv", Body=b"a,b\n1,2\n")
    again = train(user, register(user, LOCATION, name="Second"), dataset["id"])
    assert again.status == RunStatus.FAILED
    assert dataset["id"] in again.error and "sha256" in again.error

    # A dataset deleted from the bucket: 404 on download, a failed run naming it.
    s3["client"].delete_object(Bucket=s3["bucket"], Key=f"datasets/{dataset['id']}.csv")
    response = api_client.get(f"{API}/datasets/{dataset['id']}/download")
    assert response.status_code == 404 and "missing" in response.json()["detail"]
    third = train(user, register(user, LOCATION, name="Third"), dataset["id"])
    assert third.status == RunStatus.FAILED and "missing" in third.error
    assert local_media_files() == []


def test_an_unreachable_store_is_a_503_and_no_row(s3_storage, baselines, api_client, settings):
    settings.AWS_S3_ENDPOINT_URL = "http://127.0.0.1:9"  # nothing listens there
    settings.STORAGES = {**settings.STORAGES}  # the storage is rebuilt with the new endpoint
    response = api_client.post(
        f"{API}/datasets", {"file": SimpleUploadedFile("sites.csv", sites_csv(seed=1, rows=200))}
    )
    assert response.status_code == 503, response.content
    assert "could not be stored" in response.json()["detail"]
    assert not Dataset.objects.exists()
    assert not any(p.is_file() for p in Path(settings.WORK_DIR).rglob("*"))


def test_presigned_downloads_redirect_after_the_permission_check(
    s3_storage, baselines, user, api_client, viewer_client, settings
):
    settings.FILE_DOWNLOADS_PRESIGNED = True
    content = sites_csv(seed=4, rows=200)
    dataset = upload(api_client, content)
    response = api_client.get(f"{API}/datasets/{dataset['id']}/download")
    assert response.status_code == 302
    assert response["X-Content-SHA256"] == hashlib.sha256(content).hexdigest()
    location = response["Location"]
    assert s3_storage["bucket"] in location and "Signature" in location
    with urllib.request.urlopen(location, timeout=10) as fetched:  # the S3 server answers it
        assert fetched.read() == content
        assert "attachment" in fetched.headers["Content-Disposition"]
    # A missing object is a 404 before any URL is handed out.
    s3_storage["client"].delete_object(Bucket=s3_storage["bucket"], Key=f"datasets/{dataset['id']}.csv")
    response = api_client.get(f"{API}/datasets/{dataset['id']}/download")
    assert response.status_code == 404 and "missing" in response.json()["detail"]
    # No redirect (and no URL) for a caller who may not see the dataset, though it is there.
    s3_storage["client"].put_object(
        Bucket=s3_storage["bucket"], Key=f"datasets/{dataset['id']}.csv", Body=content
    )
    assert api_client.get(f"{API}/datasets/{dataset['id']}/download").status_code == 302
    private = Dataset.objects.get(pk=dataset["id"])
    private.client = Client.objects.create(id="client_hidden", name="Hidden", slug="hidden")
    private.save(update_fields=["client"])
    denied = viewer_client.get(f"{API}/datasets/{dataset['id']}/download")
    assert denied.status_code == 404 and "Location" not in denied


@pytest.mark.django_db(transaction=True)
def test_the_heartbeat_goes_on_while_a_slow_input_downloads(baselines, user, settings, monkeypatch):
    """A large file from a distant bucket can take longer than RUN_STALE_AFTER_SECONDS: the
    run's heartbeat must not stop while the worker downloads it (the reaper would fail it)."""
    from runs import dataset_files

    settings.RUN_HEARTBEAT_SECONDS = 0.1
    dataset = Dataset.objects.get(pk=upload_dataset(user).pk)
    run = run_start(user=user, recipe=register(user, LOCATION).recipe, dataset=dataset)
    fetch, beats = dataset_files.fetch, []

    def slow_fetch(dataset, folder):
        start = Run.objects.get(pk=run.pk).heartbeat_at
        time.sleep(1.0)
        beats.append(Run.objects.get(pk=run.pk).heartbeat_at > start)
        return fetch(dataset, folder)

    monkeypatch.setattr(dataset_files, "fetch", slow_fetch)
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.pk).error
    assert beats == [True]


def upload_dataset(user) -> Dataset:
    from runs.services import dataset_create

    return dataset_create(user=user, upload=SimpleUploadedFile("sites.csv", sites_csv(seed=5, rows=1500)))
