"""Run artifacts: the files a run writes (model, profile, schema, predictions, plots), stored
as ``artifacts/<run_id>/<name>`` through the file store (mlworkspace.storage: the media folder
or an S3-compatible bucket), each recorded in the run's `artifacts_json` with its sha256 and
size when stored. Nothing is loaded or served unless its bytes still match that sha256 (a
replaced file is refused, never unpickled — and no artifact is a pickle in the first place).
A run writes its files into a local folder first (``work/artifacts``); ``publish`` stores them."""

from __future__ import annotations

import json
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from operator import itemgetter
from pathlib import Path
from threading import Lock
from typing import BinaryIO

import pandas as pd
from django.conf import settings

from mlworkspace import storage
from mlworkspace.errors import InvalidInput, NotFound
from recipes.manifest import grain_columns

from . import explain
from .data import model_input, time_column
from .families import get_family
from .pipeline import json_safe, score_rows

MODEL_SUBDIR = "model"
# A predict request's rows are split over PREDICT_THREADS threads only in chunks of at least
# this many rows: for fewer, a thread costs more than it saves.
PREDICT_PARALLEL_MIN_ROWS = 10_000


def folder(run_id: str) -> str:
    """The run's folder in the file store."""
    return f"artifacts/{run_id}"


def publish(run_id: str, local_dir: Path | None, kinds: dict[str, str]) -> dict:
    """Store the files a run wrote under `local_dir` ({name: kind}; a run that wrote none, a
    trial, has no folder) and return its artifacts_json (storage.StorageError when the store
    refuses one)."""
    if kinds and local_dir is None:
        raise ValueError(f"run {run_id} lists artifacts but no folder holds them")
    files = {}
    for name, kind in kinds.items():
        files[name] = {"kind": kind, **storage.put(f"{folder(run_id)}/{name}", local_dir / name)}
    return described(run_id, files)


def described(run_id: str, files: dict[str, dict]) -> dict:
    """artifacts_json for the recorded `files` ({name: {kind, size, sha256}})."""
    return {
        "dir": folder(run_id),
        "files": files,
        "model": sorted(n for n, e in files.items() if e.get("kind") == "model"),
    }


def _entry(run_id: str, artifacts_json: dict, name: str) -> tuple[str, str, str]:
    """(store name, sha256, how to name it in messages) of a recorded artifact; NotFound if the
    run recorded none of that name."""
    entry = (artifacts_json or {}).get("files", {}).get(name)
    if not entry:
        raise NotFound(f"Run '{run_id}' has no artifact '{name}'.")
    try:
        stored = storage.clean_name(f"{folder(run_id)}/{name}")
    except ValueError:
        raise NotFound(f"Run '{run_id}' has no artifact '{name}'.") from None
    return stored, entry.get("sha256") or "", f"Artifact '{name}' of run '{run_id}'"


def fetch(run_id: str, artifacts_json: dict, name: str, dest: Path) -> Path:
    """Download a recorded artifact to `dest`, checked against its sha256."""
    stored, sha256, what = _entry(run_id, artifacts_json, name)
    return storage.fetch(stored, sha256, dest, what=what)


@contextmanager
def local_copy(run_id: str, artifacts_json: dict, name: str) -> Iterator[Path]:
    """A checked local copy of a recorded artifact for the duration of the block."""
    stored, sha256, what = _entry(run_id, artifacts_json, name)
    with storage.local_copy(stored, sha256, what=what) as path:
        yield path


def open_checked(run_id: str, artifacts_json: dict, name: str) -> BinaryIO:
    """An open, checked copy of a recorded artifact, to stream to a user."""
    stored, sha256, what = _entry(run_id, artifacts_json, name)
    return storage.open_checked(stored, sha256, what=what)


def download(run_id: str, artifacts_json: dict, name: str, *, filename: str, content_type=None):
    """The response giving a user a recorded artifact (mlworkspace.storage.download)."""
    stored, sha256, what = _entry(run_id, artifacts_json, name)
    return storage.download(stored, sha256, filename=filename, content_type=content_type, what=what)


def read_bytes(run_id: str, artifacts_json: dict, name: str) -> bytes:
    stored, sha256, what = _entry(run_id, artifacts_json, name)
    return storage.read_bytes(stored, sha256, what=what)


def fetch_model(run_id: str, artifacts_json: dict, dest: Path) -> Path:
    """Download every model file (checked) under `dest`; returns the model folder for
    family.load()."""
    names = (artifacts_json or {}).get("model") or []
    if not names:
        raise NotFound(f"Run '{run_id}' has no model artifact.")
    for name in names:
        fetch(run_id, artifacts_json, name, dest / name)
    return dest / MODEL_SUBDIR


def read_json_artifact(run_id: str, artifacts_json: dict, name: str) -> dict:
    return json.loads(read_bytes(run_id, artifacts_json, name))


# Loaded models, keyed by run and model sha256s, so /predict does not reload every call.
_CACHE: OrderedDict = OrderedDict()
_CACHE_LOCK = Lock()
_CACHE_SIZE = 8


def load_model(model):
    """(family model object, schema dict) for a registered model's training run."""
    run_id = model.training_run_id
    artifacts_json = model.artifacts_json
    if not run_id or not artifacts_json.get("model"):
        raise NotFound(f"Model '{model.id}' has no trained artifact yet.")
    key = (run_id, tuple(artifacts_json["files"][n]["sha256"] for n in artifacts_json["model"]))
    with _CACHE_LOCK:
        if key in _CACHE:
            _CACHE.move_to_end(key)
            return _CACHE[key]
    family = get_family(model.recipe.model_family)
    work = storage.work_dir("model")
    try:  # the families' load() reads every file into memory: the copy goes at once
        loaded = (
            family.load(fetch_model(run_id, artifacts_json, work)),
            read_json_artifact(run_id, artifacts_json, "schema.json"),
        )
    finally:
        storage.remove(work)
    with _CACHE_LOCK:
        _CACHE[key] = loaded
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return loaded


# The explain stage's files (runs.pipeline.explain_stage): the document the API serves and the
# background rows per-prediction explanations need.
EXPLANATIONS = "explanations.json"
EXPLANATION_BACKGROUND = "explanation_background.parquet"
# Loaded explanation files (backgrounds, documents), keyed by run, file and sha256, like the
# loaded models: a predict request with "explain" reads neither from the store again.
_EXPLAIN_CACHE: OrderedDict = OrderedDict()


def has_explanations(model) -> bool:
    """Whether the model's train run wrote explanations (a model trained before the explain
    stage existed, or by a version without one, has none)."""
    files = (model.artifacts_json or {}).get("files") or {}
    return bool(model.training_run_id) and EXPLANATIONS in files and EXPLANATION_BACKGROUND in files


def no_explanations_message(model) -> str:
    """What a request for the explanations of a model that has none is told."""
    return (
        f"Model '{model.id}' has no explanations: its train run computed none (it was trained "
        "before the explain stage existed, by a recipe version without an explain stage, or the "
        "stage could not compute them; its run log says which). Retrain it with a recipe version "
        "whose pipeline has an 'explain' stage."
    )


def _explain_file(model, name: str, read):
    """``read(local path)`` of one of the model's explanation files, checked and cached."""
    run_id, artifacts_json = model.training_run_id, model.artifacts_json
    key = (run_id, name, artifacts_json["files"][name].get("sha256"))
    with _CACHE_LOCK:
        if key in _EXPLAIN_CACHE:
            _EXPLAIN_CACHE.move_to_end(key)
            return _EXPLAIN_CACHE[key]
    with local_copy(run_id, artifacts_json, name) as path:
        value = read(path)
    with _CACHE_LOCK:
        _EXPLAIN_CACHE[key] = value
        while len(_EXPLAIN_CACHE) > 2 * _CACHE_SIZE:
            _EXPLAIN_CACHE.popitem(last=False)
    return value


def explanation_background(model) -> pd.DataFrame | None:
    """The background rows of the model's explanations (sha256-checked, cached like the loaded
    model), or None when the model has no explanations. Callers must not change the frame."""
    if not has_explanations(model):
        return None
    return _explain_file(model, EXPLANATION_BACKGROUND, pd.read_parquet)


def explanation_document(model) -> dict | None:
    """The model's explanations.json (checked, cached), or None when it has none. Callers must
    not change the dict (``models_registry.selectors.model_explanations`` reads a fresh copy)."""
    if not has_explanations(model):
        return None
    return _explain_file(model, EXPLANATIONS, lambda path: json.loads(Path(path).read_bytes()))


def explain_rows(model, rows: list[dict]) -> list[dict]:
    """Per-prediction explanations of request rows (``runs.explain.explain_rows``), parallel
    to ``predict_rows``'s predictions: the rows typed as the model's schema (``rows_frame``,
    its 400s naming the row and column), the loaded model, its background and document.
    NotFound (404) when the model has no explanations; rows the family cannot explain (a
    ValueError of the family's code, as in ``predict_rows``) are a 400 on /rows."""
    if not has_explanations(model):
        raise NotFound(no_explanations_message(model))
    fitted, schema = load_model(model)
    frame = rows_frame(rows, schema)
    background = explanation_background(model)
    document = explanation_document(model)
    family = get_family(model.recipe.model_family)
    try:
        items = explain.explain_rows(family, fitted, frame, background, document=document)
    except ValueError as exc:
        raise InvalidInput(f"rows: {exc}", [{"path": "/rows", "message": str(exc)}]) from None
    return json_safe(list(items))


def _row_errors(rows: list[dict], columns: list[dict]) -> list[dict]:
    """Per row, per column: a missing column, a number column whose value is not a number
    (bool is not one); up to the row in which the 50th error is found."""
    errors = []
    for index, row in enumerate(rows):
        for col in columns:
            if col["name"] not in row:
                errors.append({"path": f"/rows/{index}/{col['name']}", "message": "missing column"})
                continue
            value = row[col["name"]]
            if col["dtype"] in ("float", "int") and (
                isinstance(value, bool) or not isinstance(value, (int, float))
            ):
                errors.append(
                    {
                        "path": f"/rows/{index}/{col['name']}",
                        "message": f"must be a number, got {value!r:.40}",
                    }
                )
        if len(errors) >= 50:
            break
    return errors


_NUMBERS = frozenset({int, float})


def _table(rows: list[dict], names: list[str], numeric: list[str]) -> list[tuple] | None:
    """The rows as tuples of the columns `names` when every row has every column and every
    `numeric` value is a plain int or float; None otherwise (then _row_errors says which, or
    finds nothing wrong, e.g. a numpy number). The per-cell Python loop of _row_errors took
    ~0.14 s per model for 50,000 rows; itemgetter and type() mapped over the rows run in C."""
    if len(names) < 2 or not rows:
        return None  # itemgetter of one name returns the value, not a tuple: the plain way
    try:
        table = list(map(itemgetter(*names), rows))
    except (KeyError, TypeError, IndexError):
        return None
    for name in numeric:
        if not set(map(type, map(itemgetter(name), rows))) <= _NUMBERS:
            return None
    return table


def rows_frame(rows: list[dict], schema: dict) -> pd.DataFrame:
    """Rows -> a frame with the training columns and types; 400 naming the row and column."""
    columns = schema["input_columns"]
    names = [c["name"] for c in columns]
    table = _table(rows, names, [c["name"] for c in columns if c["dtype"] in ("float", "int")])
    if table is None:
        errors = _row_errors(rows, columns)
        if errors:
            first = errors[0]
            raise InvalidInput(f"{first['path']}: {first['message']}", errors)
        frame = pd.DataFrame([{name: row[name] for name in names} for row in rows])
    else:
        # A list of tuples takes the same way through pandas' type inference as the list of
        # dicts above (a 2-D object array, converted column by column): the same frame.
        frame = pd.DataFrame(table, columns=names)
    frame = model_input(frame, schema)
    for col in columns:
        if col["dtype"] in ("date", "datetime"):
            bad = frame[col["name"]].isna()
            if bad.any():
                index = int(bad.to_numpy().nonzero()[0][0])
                raise InvalidInput(
                    f"/rows/{index}/{col['name']}: not a date",
                    [{"path": f"/rows/{index}/{col['name']}", "message": "not a date"}],
                )
    return frame


def predict_rows(model, rows: list[dict]) -> list:
    """The model's predictions for request rows. A batch of at least
    ``2 × PREDICT_PARALLEL_MIN_ROWS`` rows is predicted in ``PREDICT_THREADS`` chunks at a
    time, as a score run predicts its chunks (``pipeline.score_rows``: one entity's rows stay
    in one chunk, so the predictions are the same as in one call)."""
    fitted, schema = load_model(model)
    frame = rows_frame(rows, schema)
    family = get_family(model.recipe.model_family)
    threads = min(settings.PREDICT_THREADS, len(frame) // PREDICT_PARALLEL_MIN_ROWS)
    try:
        if threads > 1:
            entity = [
                c
                for c in grain_columns(model.recipe_version.manifest)
                if c != time_column(frame, family.NAME)
            ]
            chunk = -(-len(frame) // threads)
            predictions = score_rows(
                family, fitted, frame, entity, chunk_rows=chunk, threads=threads
            ).tolist()
        else:
            predictions = family.predict(fitted, frame)
    except ValueError as exc:
        raise InvalidInput(f"rows: {exc}", [{"path": "/rows", "message": str(exc)}]) from None
    return json_safe(list(predictions))
