"""`manage.py migrate_storage` (issue #16 §1): a local installation's files — written by the
workspace's own code under a local MEDIA_ROOT — copied into a bucket on a real S3 server
(moto, `s3_server`), each checked against its recorded sha256 before upload and after."""

from __future__ import annotations

import io
from pathlib import Path

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.core.management import CommandError, call_command

from conftest import use_s3
from mlworkspace import storage
from runs.models import Dataset
from runs.services import dataset_create
from runs.tests.factories import trained_model

pytestmark = pytest.mark.django_db


def local_installation(settings, user) -> tuple[Path, dict[str, bytes], str, str]:
    """Two uploaded datasets and a trained run, stored by the workspace in the local store:
    (MEDIA_ROOT, {store name: bytes} of every file the database records, a dataset id, the
    trained run's id)."""
    assert storage.backend_name() == "local"
    frame = pd.DataFrame({"price": [1.0, 2.5, 3.0], "units": [10, 7, 4]})
    parquet = io.BytesIO()
    frame.to_parquet(parquet)
    csv_set = dataset_create(
        user=user, upload=SimpleUploadedFile("sales.csv", frame.to_csv(index=False).encode())
    )
    dataset_create(user=user, upload=SimpleUploadedFile("sales.parquet", parquet.getvalue()))
    run_id = trained_model(user).training_run_id
    media = Path(settings.MEDIA_ROOT)
    files = {str(p.relative_to(media)): p.read_bytes() for p in media.rglob("*") if p.is_file()}
    recorded = {d.file.name for d in Dataset.objects.all()}
    assert recorded <= files.keys() and len(recorded) == 2
    assert any(name.startswith(f"artifacts/{run_id}/model/") for name in files)
    return media, files, csv_set.pk, run_id


def bucket(s3) -> dict[str, bytes]:
    listed = s3["client"].list_objects_v2(Bucket=s3["bucket"]).get("Contents", [])
    return {
        o["Key"]: s3["client"].get_object(Bucket=s3["bucket"], Key=o["Key"])["Body"].read() for o in listed
    }


def migrate(*args) -> tuple[str, str, CommandError | None]:
    """(stdout, stderr, the CommandError raised or None)."""
    out, err = io.StringIO(), io.StringIO()
    try:
        call_command("migrate_storage", *args, stdout=out, stderr=err)
    except CommandError as exc:
        return out.getvalue(), err.getvalue(), exc
    return out.getvalue(), err.getvalue(), None


def test_every_file_lands_in_the_bucket_with_its_bytes_and_a_second_run_copies_nothing(
    settings, s3_server, baselines, user, monkeypatch
):
    media, files, _, _ = local_installation(settings, user)
    s3 = use_s3(settings, s3_server)

    out, err, failed = migrate("--from", str(media))
    assert failed is None and err == ""
    assert bucket(s3) == files
    size = sum(len(b) for b in files.values())
    assert out.strip().endswith(f"copied {len(files)}, already there 0, problems 0 ({size} bytes)")
    # The local copies stay for the operator to remove.
    assert all((media / name).read_bytes() == content for name, content in files.items())

    def no_upload(name, source):
        raise AssertionError(f"uploaded {name} again")

    monkeypatch.setattr(storage, "put", no_upload)
    out, err, failed = migrate("--from", str(media))
    assert failed is None and err == ""
    assert out.strip() == f"copied 0, already there {len(files)}, problems 0 (0 bytes)"


def test_a_tampered_local_file_is_reported_not_uploaded_and_the_command_fails(
    settings, s3_server, baselines, user
):
    media, files, _, run_id = local_installation(settings, user)
    model_file = f"artifacts/{run_id}/model/model.json"
    (media / model_file).write_bytes(files[model_file] + b" ")
    s3 = use_s3(settings, s3_server)

    out, err, failed = migrate("--from", str(media))
    assert failed is not None and "1 file(s) with problems" in str(failed)
    (line,) = err.strip().splitlines()
    assert line.startswith(f"run {run_id}: {model_file}: the local file's sha256")
    assert "not uploaded" in line
    stored = bucket(s3)
    assert model_file not in stored
    assert stored == {name: content for name, content in files.items() if name != model_file}
    assert f"copied {len(files) - 1}, already there 0, problems 1" in out


def test_a_missing_local_file_is_reported_and_the_rest_copied(settings, s3_server, baselines, user):
    media, files, dataset_id, _ = local_installation(settings, user)
    name = Dataset.objects.get(pk=dataset_id).file.name
    (media / name).unlink()
    s3 = use_s3(settings, s3_server)

    out, err, failed = migrate("--from", str(media))
    assert failed is not None
    assert (
        err.strip() == f"dataset {dataset_id}: {name}: missing from the local folder '{media}'; not uploaded"
    )
    assert set(bucket(s3)) == set(files) - {name}
    assert "problems 1" in out


def test_dry_run_lists_what_would_be_copied_and_uploads_nothing(settings, s3_server, baselines, user):
    media, files, _, _ = local_installation(settings, user)
    s3 = use_s3(settings, s3_server)

    out, err, failed = migrate("--dry-run")  # --from defaults to MEDIA_ROOT
    assert failed is None and err == ""
    assert bucket(s3) == {}
    listed = [
        line.split(": ")[1].rsplit(" (", 1)[0]
        for line in out.splitlines()
        if line.startswith("would copy ") and ": " in line
    ]
    assert sorted(listed) == sorted(files)
    size = sum(len(b) for b in files.values())
    assert out.splitlines()[-1] == f"would copy {len(files)}, already there 0, problems 0 ({size} bytes)"


def test_refuses_when_no_bucket_is_configured(settings, baselines, user):
    media = Path(settings.MEDIA_ROOT)
    with pytest.raises(CommandError, match="nothing to migrate to: set AWS_STORAGE_BUCKET_NAME"):
        call_command("migrate_storage", "--from", str(media), stdout=io.StringIO())


def test_dry_run_and_verify_only_do_not_go_together(settings, s3_server, db):
    use_s3(settings, s3_server)
    with pytest.raises(CommandError, match="not allowed with argument"):
        call_command("migrate_storage", "--dry-run", "--verify-only", stdout=io.StringIO())


def test_a_missing_source_folder_is_refused(settings, s3_server, tmp_path, db):
    use_s3(settings, s3_server)
    with pytest.raises(CommandError, match="is not a folder"):
        call_command("migrate_storage", "--from", str(tmp_path / "nowhere"), stdout=io.StringIO())


def test_verify_only_detects_an_object_altered_in_the_bucket_and_a_copy_replaces_it(
    settings, s3_server, baselines, user
):
    media, files, dataset_id, run_id = local_installation(settings, user)
    s3 = use_s3(settings, s3_server)
    _, _, failed = migrate("--from", str(media))
    assert failed is None

    out, err, failed = migrate("--verify-only")
    assert failed is None and err == ""
    assert out.strip() == f"copied 0, already there {len(files)}, problems 0 (0 bytes)"

    schema = f"artifacts/{run_id}/schema.json"
    s3["client"].put_object(Bucket=s3["bucket"], Key=schema, Body=b'{"altered": true}')
    dataset_file = Dataset.objects.get(pk=dataset_id).file.name
    s3["client"].delete_object(Bucket=s3["bucket"], Key=dataset_file)
    out, err, failed = migrate("--verify-only")
    assert failed is not None
    lines = sorted(err.strip().splitlines())
    assert len(lines) == 2
    assert lines[0].startswith(f"dataset {dataset_id}: {dataset_file}: ") and "missing" in lines[0]
    assert (
        lines[1].startswith(f"run {run_id}: {schema}: ")
        and "no longer matches its recorded sha256" in lines[1]
    )
    assert f"copied 0, already there {len(files) - 2}, problems 2" in out
    # --verify-only writes nothing: the altered object is still there.
    assert bucket(s3)[schema] == b'{"altered": true}'

    # A copy run puts the checked local bytes back.
    out, err, failed = migrate("--from", str(media))
    assert failed is None and err == ""
    assert f"run {run_id}: {schema}: replacing the store's copy" in out
    assert bucket(s3) == files


def test_an_upload_failure_is_reported_and_the_command_fails(
    settings, s3_server, baselines, user, monkeypatch
):
    media, files, _, run_id = local_installation(settings, user)
    s3 = use_s3(settings, s3_server)
    refused = f"artifacts/{run_id}/schema.json"
    real_put = storage.put

    def put(name, source):
        if name == refused:
            raise storage.StorageError(f"could not store '{name}': AccessDenied")
        return real_put(name, source)

    monkeypatch.setattr(storage, "put", put)
    out, err, failed = migrate("--from", str(media))
    assert failed is not None
    assert err.strip() == f"run {run_id}: {refused}: upload failed: could not store '{refused}': AccessDenied"
    assert set(bucket(s3)) == set(files) - {refused}


def test_an_upload_that_reads_back_wrong_is_a_problem(
    settings, s3_server, baselines, user, monkeypatch, tmp_path
):
    """The read-back check is real: bytes that changed on the way are caught after the upload."""
    media, files, dataset_id, _ = local_installation(settings, user)
    use_s3(settings, s3_server)
    name = Dataset.objects.get(pk=dataset_id).file.name
    real_put = storage.put

    def corrupting_put(stored_name, source):
        if stored_name == name:
            bad = tmp_path / "corrupted"
            bad.write_bytes(source.read_bytes()[:-1])
            return real_put(stored_name, bad)
        return real_put(stored_name, source)

    monkeypatch.setattr(storage, "put", corrupting_put)
    out, err, failed = migrate("--from", str(media))
    assert failed is not None
    (line,) = err.strip().splitlines()
    assert line.startswith(f"dataset {dataset_id}: {name}: uploaded, but reading it back failed")
    assert "no longer matches its recorded sha256" in line
