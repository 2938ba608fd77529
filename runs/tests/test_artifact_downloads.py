"""Artifacts and error texts (issue 12, defect 10): every artifact a run lists can be
downloaded by its listed name (folders included), `../` reaches nothing, and no message a
user sees names a server path."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pandas as pd
import pytest
from django.conf import settings
from django.core.files.uploadedfile import SimpleUploadedFile

from mlworkspace.errors import InvalidInput, NotFound
from mlworkspace.redact import redact_paths
from recipes.models import Recipe
from runs import artifacts
from runs.executor import execute_run
from runs.families import get_family
from runs.models import Run, RunStatus
from runs.services import dataset_create, run_report, run_start
from runs.tests.factories import register

API = "/api/ml-development"
pytestmark = pytest.mark.django_db


def body(response) -> bytes:
    return b"".join(response.streaming_content)


@pytest.fixture
def trained_run(baselines, user) -> Run:
    model = register(user)
    run = run_start(
        user=user, recipe=model.recipe, model=model, params={"synthetic": {"rows": 3000, "seed": 1}}
    )
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    run.refresh_from_db()
    return run


def test_every_listed_artifact_downloads_by_its_listed_name(api_client, as_user, trained_run):
    files = trained_run.artifacts_json["files"]
    assert "model/model.json" in files and "predictions.csv" in files
    for name, entry in files.items():
        response = api_client.get(f"{API}/runs/{trained_run.id}/artifacts/{name}")
        assert response.status_code == 200, (name, response.status_code)
        content = body(response)
        assert hashlib.sha256(content).hexdigest() == entry["sha256"], name
        assert len(content) == entry["size"]
        assert Path(name).name in response["Content-Disposition"]
    # predictions.parquet holds the same table as predictions.csv (its original values).
    exported = pd.read_csv(
        io.BytesIO(body(api_client.get(f"{API}/runs/{trained_run.id}/artifacts/predictions.csv")))
    )
    original = pd.read_parquet(
        io.BytesIO(body(api_client.get(f"{API}/runs/{trained_run.id}/artifacts/predictions.parquet")))
    )
    assert list(exported.columns) == list(original.columns)
    assert len(exported) == len(original) > 0
    # The run page links each artifact to that URL.
    page = as_user.get(f"/model-development/runs/{trained_run.id}").content.decode()
    for name in files:
        assert f"/api/ml-development/runs/{trained_run.id}/artifacts/{name}" in page


TRAVERSALS = [
    "../../settings.py",
    "model/../schema.json",
    "%2e%2e/%2e%2e/secret.txt",
    "..%2F..%2Fsecret.txt",
    "model",
    "model/",
    "nope.csv",
]


def test_names_outside_the_listing_are_404(api_client, anon_client, trained_run):
    (Path(settings.MEDIA_ROOT) / "secret.txt").write_text("server secret")
    for name in TRAVERSALS:
        response = api_client.get(f"{API}/runs/{trained_run.id}/artifacts/{name}")
        assert response.status_code in (400, 404), name
        assert b"server secret" not in (body(response) if response.streaming else response.content)
    # ... and the listed ones keep the permission check.
    response = anon_client.get(f"{API}/runs/{trained_run.id}/artifacts/model/model.json")
    assert response.status_code in (401, 403, 404)


def test_a_listed_name_that_escapes_the_run_folder_is_refused(api_client, baselines, user):
    """An external runner reports whatever artifacts_json it likes: a listed `../` name still
    cannot reach a file outside the run's folder."""
    (Path(settings.MEDIA_ROOT) / "secret.txt").write_text("server secret")
    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), executor="external")
    digest = hashlib.sha256(b"server secret").hexdigest()
    listing = {"files": {"../../secret.txt": {"kind": "metrics", "size": 13, "sha256": digest}}}
    run_report(run=run, user=user, artifacts_json=listing)
    response = api_client.get(f"{API}/runs/{run.id}/artifacts/../../secret.txt")
    assert response.status_code == 404
    assert b"server secret" not in response.content
    with pytest.raises(NotFound):
        artifacts.open_checked(run.id, listing, "../../secret.txt")


def test_a_missing_artifact_file_is_a_404_without_the_server_path(api_client, trained_run):
    (Path(settings.MEDIA_ROOT) / "artifacts" / trained_run.id / "model" / "model.json").unlink()
    response = api_client.get(f"{API}/runs/{trained_run.id}/artifacts/model/model.json")
    assert response.status_code == 404
    text = response.content.decode()
    assert "model/model.json" in text
    assert str(settings.MEDIA_ROOT) not in text and str(settings.BASE_DIR) not in text


# --------------------------------------------------------------------------- no server paths


def pricing_upload(user, name="sales.csv"):
    frame = get_family("pricing").generate(3000, 1)
    return dataset_create(user=user, upload=SimpleUploadedFile(name, frame.to_csv(index=False).encode()))


def test_a_run_whose_dataset_file_is_gone_fails_without_the_server_path(baselines, user):
    dataset = pricing_upload(user)
    Path(dataset.file.path).unlink()
    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), dataset=dataset)
    execute_run(run.id)
    run.refresh_from_db()
    assert run.status == RunStatus.FAILED
    assert dataset.pk in run.error and "missing" in run.error  # the user can tell which file
    shown = run.error + "\n".join(run.logs.values_list("message", flat=True))
    for folder in (settings.MEDIA_ROOT, settings.BASE_DIR, Path(dataset.file.path).parent):
        assert str(folder) not in shown


def test_an_unreadable_upload_is_a_400_without_the_server_path(api_client, baselines):
    response = api_client.post(
        f"{API}/datasets",
        {"file": SimpleUploadedFile("broken.parquet", b"this is not parquet at all")},
        format="multipart",
    )
    assert response.status_code == 400
    text = response.content.decode()
    assert "PARQUET" in text
    assert str(settings.MEDIA_ROOT) not in text and "/datasets/" not in text


def test_domain_errors_never_carry_server_paths():
    media = Path(settings.MEDIA_ROOT)
    exc = InvalidInput(
        f"file: could not open '{media / 'datasets' / 'ds_1.csv'}'",
        [{"path": "/file", "message": f"[Errno 2] No such file: '{settings.BASE_DIR}/runs/x.py'"}],
    )
    assert exc.detail == "file: could not open 'ds_1.csv'"
    assert exc.errors == [{"path": "/file", "message": "[Errno 2] No such file: 'x.py'"}]


def test_redact_paths_keeps_ordinary_text():
    roots = ("/srv/ws", "/tmp")
    assert redact_paths("units/week fell 1/2; see /api/ml-development/runs", roots) == (
        "units/week fell 1/2; see /api/ml-development/runs"
    )
    assert redact_paths("'/srv/ws/media/a b.csv' and /tmpfoo/x and /tmp", roots) == (
        "'a b.csv' and /tmpfoo/x and <server folder>"
    )
