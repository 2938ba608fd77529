"""Run artifacts on disk: MEDIA_ROOT/artifacts/<run_id>/, each file recorded in the run's
`artifacts_json` with its sha256 and size at write time. Nothing is loaded or served
unless its bytes still match that sha256 (a replaced file is refused, never unpickled —
and no artifact is a pickle in the first place)."""

from __future__ import annotations

import hashlib
import json
from collections import OrderedDict
from operator import itemgetter
from pathlib import Path
from threading import Lock

import pandas as pd
from django.conf import settings

from mlworkspace.errors import Conflict, InvalidInput, NotFound
from recipes.manifest import grain_columns

from .data import model_input, time_column
from .families import get_family
from .pipeline import json_safe, score_rows

MODEL_SUBDIR = "model"
# A predict request's rows are split over PREDICT_THREADS threads only in chunks of at least
# this many rows: for fewer, a thread costs more than it saves.
PREDICT_PARALLEL_MIN_ROWS = 10_000


def run_dir(run_id: str) -> Path:
    return Path(settings.MEDIA_ROOT) / "artifacts" / run_id


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def describe_files(run_id: str, kinds: dict[str, str]) -> dict:
    """artifacts_json for the files written under run_dir(run_id): {name: kind}."""
    base = run_dir(run_id)
    files = {}
    for name, kind in kinds.items():
        path = base / name
        files[name] = {"kind": kind, "size": path.stat().st_size, "sha256": sha256_file(path)}
    return {
        "dir": f"artifacts/{run_id}",
        "files": files,
        "model": sorted(n for n, k in kinds.items() if k == "model"),
    }


def verified_path(run_id: str, artifacts_json: dict, name: str) -> Path:
    """The path of a recorded artifact whose bytes still match its sha256."""
    entry = (artifacts_json or {}).get("files", {}).get(name)
    if not entry:
        raise NotFound(f"Run '{run_id}' has no artifact '{name}'.")
    base = run_dir(run_id).resolve()
    path = (base / name).resolve()
    if base not in path.parents or not path.is_file():
        raise NotFound(f"Artifact '{name}' of run '{run_id}' is not on this server's storage.")
    if sha256_file(path) != entry.get("sha256"):
        raise Conflict(
            f"Artifact '{name}' of run '{run_id}' no longer matches its recorded sha256; refusing it."
        )
    return path


def verify_model_files(run_id: str, artifacts_json: dict) -> Path:
    """Check every model file, then return the model directory for family.load()."""
    names = (artifacts_json or {}).get("model") or []
    if not names:
        raise NotFound(f"Run '{run_id}' has no model artifact.")
    for name in names:
        verified_path(run_id, artifacts_json, name)
    return run_dir(run_id) / MODEL_SUBDIR


def read_json_artifact(run_id: str, artifacts_json: dict, name: str) -> dict:
    return json.loads(verified_path(run_id, artifacts_json, name).read_text())


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
    directory = verify_model_files(run_id, artifacts_json)
    family = get_family(model.recipe.model_family)
    loaded = (family.load(directory), read_json_artifact(run_id, artifacts_json, "schema.json"))
    with _CACHE_LOCK:
        _CACHE[key] = loaded
        while len(_CACHE) > _CACHE_SIZE:
            _CACHE.popitem(last=False)
    return loaded


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
