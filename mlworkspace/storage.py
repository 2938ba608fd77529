"""Stored files: datasets, run artifacts, predictions — the one place that reads and writes them.

Every file goes through Django's storage API (``STORAGES["default"]``), never a path: the
local media folder is the embedded default, and an S3-compatible bucket (AWS S3, MinIO, Ceph,
GCS in S3 mode) is used when ``AWS_STORAGE_BUCKET_NAME`` is set (django-storages, configured in
settings). A process that needs a file as a file (pandas, LightGBM) gets a *local copy* in a
temporary folder under ``WORK_DIR``, downloaded and checked against the sha256 recorded when it
was stored: a missing file is a ``NotFound``, an altered one a ``Conflict``, both in words,
never a crash and never the altered bytes. Results are written locally first and stored
whole with ``put`` (size and sha256 computed from the local file), so a failed write leaves
nothing half-written under a name the workspace reads.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from django.conf import settings
from django.core.files import File
from django.core.files.storage import default_storage
from django.http import FileResponse, HttpResponseRedirect
from django.http.response import HttpResponseBase

from .errors import Conflict, NotFound

CHUNK = 1 << 20


class StorageError(Exception):
    """The file store could not be written (a full disk, an unreachable bucket), in words."""


def clean_name(name: str) -> str:
    """`name` as a relative, normalised storage name; ValueError if it is absolute, empty or
    leaves its folder with '..' (names come from ids and from MLflow clients' paths)."""
    path = PurePosixPath(name.replace("\\", "/"))
    if not name or path.is_absolute() or ".." in path.parts or str(path) in ("", "."):
        raise ValueError(f"'{name[:200]}' is not a file name inside the store")
    return str(path)


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def put(name: str, source: Path) -> dict:
    """Store the local file `source` under exactly `name` (replacing a file of that name);
    returns its ``{"size", "sha256"}``. StorageError when the store refuses it."""
    name = clean_name(name)
    entry = {"size": source.stat().st_size, "sha256": sha256_of(source)}
    try:
        if default_storage.exists(name):  # the local store would pick another name otherwise
            default_storage.delete(name)
        with open(source, "rb") as fh:
            stored = default_storage.save(name, File(fh, name=name))
    except OSError as exc:
        raise StorageError(f"could not store '{name}': {exc}") from exc
    except Exception as exc:  # the S3 client's errors (botocore) are not OSErrors
        raise StorageError(f"could not store '{name}': {type(exc).__name__}: {exc}") from exc
    if stored != name:
        default_storage.delete(stored)
        raise StorageError(f"the store renamed '{name}' to '{stored}'")
    return entry


def fetch(name: str, sha256: str, dest: Path, *, what: str = "") -> Path:
    """Download stored `name` to the local file `dest`, checking its sha256 on the way: NotFound
    when it is not in the store, Conflict when its bytes no longer match (nothing is left at
    `dest` then). `what` names the file in the messages ("Artifact 'x' of run 'y'")."""
    what = what or f"File '{name}'"
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f".{dest.name}.{uuid.uuid4().hex}.part")
    digest = hashlib.sha256()
    try:
        try:
            source = default_storage.open(name, "rb")
        except FileNotFoundError:
            raise NotFound(f"{what} is missing from the file store.") from None
        with source, open(partial, "wb") as out:
            try:
                while chunk := source.read(CHUNK):
                    digest.update(chunk)
                    out.write(chunk)
            except FileNotFoundError:
                raise NotFound(f"{what} is missing from the file store.") from None
            except OSError:
                raise
            except Exception as exc:  # an S3 object that is not there answers 404 on first read
                if not default_storage.exists(name):
                    raise NotFound(f"{what} is missing from the file store.") from None
                raise StorageError(f"could not read {what}: {type(exc).__name__}: {exc}") from exc
        if digest.hexdigest() != sha256:
            raise Conflict(f"{what} no longer matches its recorded sha256; refusing it.")
        os.replace(partial, dest)
    finally:
        partial.unlink(missing_ok=True)
    return dest


def read_bytes(name: str, sha256: str, *, what: str = "") -> bytes:
    """A small stored file's bytes, checked against `sha256` (NotFound / Conflict as fetch)."""
    with local_copy(name, sha256, what=what) as path:
        return path.read_bytes()


def work_dir(prefix: str) -> Path:
    """A new private folder under WORK_DIR for one job (the caller removes it: ``remove``)."""
    base = Path(settings.WORK_DIR)
    base.mkdir(parents=True, exist_ok=True)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}-", dir=base))


def remove(folder: Path) -> None:
    shutil.rmtree(folder, ignore_errors=True)


@contextmanager
def local_copy(name: str, sha256: str, *, what: str = "") -> Iterator[Path]:
    """A checked local copy of stored `name` for the duration of the block."""
    folder = work_dir("read")
    try:
        yield fetch(name, sha256, folder / PurePosixPath(name).name, what=what)
    finally:
        remove(folder)


def open_checked(name: str, sha256: str, *, what: str = "") -> BinaryIO:
    """An open, checked copy of stored `name` to stream to a user (a FileResponse closes it);
    the copy is an anonymous temporary file, gone when closed."""
    with local_copy(name, sha256, what=what) as path:
        handle = open(path, "rb")  # noqa: SIM115 - the response closes it
        os.unlink(path)  # POSIX: readable until closed, removed from the folder now
        return handle


def download(
    name: str, sha256: str, *, filename: str, content_type: str | None = None, what: str = ""
) -> HttpResponseBase:
    """The response that gives a user stored `name` (call it after the permission check): the
    checked bytes, streamed; or, with FILE_DOWNLOADS_PRESIGNED on an S3 store, a redirect to a
    pre-signed URL of the object (valid AWS_QUERYSTRING_EXPIRE seconds), whose recorded sha256
    the ``X-Content-SHA256`` header carries for the client to check (the server does not read
    the bytes then, so it cannot)."""
    if settings.FILE_DOWNLOADS_PRESIGNED and backend_name() == "s3":
        if not default_storage.exists(name):
            raise NotFound(f"{what or f'File {name!r}'} is missing from the file store.")
        disposition = f'attachment; filename="{filename}"'
        parameters = {"ResponseContentDisposition": disposition}
        if content_type:
            parameters["ResponseContentType"] = content_type
        response = HttpResponseRedirect(default_storage.url(name, parameters=parameters))
        response["X-Content-SHA256"] = sha256
        return response
    return FileResponse(
        open_checked(name, sha256, what=what),
        as_attachment=True,
        filename=filename,
        content_type=content_type,
    )


def delete(name: str) -> None:
    default_storage.delete(name)


def delete_folder(prefix: str) -> int:
    """Delete every stored file under the folder `prefix` (a run's artifacts); returns how many."""
    removed = 0
    for name in list_files(prefix):
        default_storage.delete(name)
        removed += 1
    return removed


def list_files(prefix: str) -> list[str]:
    """The names of the stored files under the folder `prefix`, recursively ([] if none)."""
    prefix = prefix.strip("/")
    try:
        folders, files = default_storage.listdir(prefix)
    except FileNotFoundError:
        return []
    names = [f"{prefix}/{f}" for f in files]
    for folder in folders:
        names.extend(list_files(f"{prefix}/{folder}"))
    return names


def backend_name() -> str:
    """The configured store, for health reports: "local" or "s3"."""
    return "s3" if getattr(settings, "AWS_STORAGE_BUCKET_NAME", "") else "local"
