"""Outcomes posted for a scored batch: joined to its stored predictions by the grain keys."""

from __future__ import annotations

from datetime import datetime
from itertools import chain
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, InvalidInput, field_error
from recipes.manifest import grain_columns
from runs import artifacts
from runs.data import SAMPLE_CHUNK_ROWS, read_chunks
from runs.families import get_family

from ..models import ScoringBatch
from ..selectors import PREDICTIONS_PARQUET
from .checks import snapshot_record

UNMATCHED_SHOWN = 5
# The predictions are read this many rows at a time (runs.data.read_chunks): a streamed score run
# writes tens of millions of rows, and this join runs in the web process.
OUTCOMES_CHUNK_ROWS = SAMPLE_CHUNK_ROWS


def _outcome_keys(rows: list, grain: list[str], labels: list[str]) -> pd.DataFrame:
    """The posted rows as a frame of grain keys and labels; a row missing one is a 400
    naming ``/rows/<i>/<field>``, a key posted twice one naming its second row."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise field_error(f"rows/{i}", "must be an object of grain keys and labels")
        for name in grain:
            if row.get(name) in (None, ""):
                raise field_error(f"rows/{i}/{name}", "is required (a grain key of the recipe)")
            if isinstance(row[name], (dict, list)):
                raise field_error(f"rows/{i}/{name}", "must be a string or a number")
        for name in labels:
            value = row.get(name)
            if value is None:
                raise field_error(f"rows/{i}/{name}", "is required (the outcome to score against)")
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise field_error(f"rows/{i}/{name}", "must be a finite number")
    return pd.DataFrame(
        [{name: row[name] for name in grain} | {name: float(row[name]) for name in labels} for row in rows]
    )


def _align_keys(outcomes: pd.DataFrame, predictions: pd.DataFrame, grain: list[str]) -> pd.DataFrame:
    """The outcome keys converted to the predictions' column types, so they join; a key
    that cannot be read as its column's type is a 400 naming its row."""
    outcomes = outcomes.copy()
    for name in grain:
        target = predictions[name]
        if pd.api.types.is_datetime64_any_dtype(target):
            converted = pd.to_datetime(outcomes[name], errors="coerce")
            if target.dt.tz is None and getattr(converted.dt, "tz", None) is not None:
                converted = converted.dt.tz_localize(None)
            kind = "a date"
        elif pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target):
            converted = pd.to_numeric(outcomes[name], errors="coerce")
            kind = "a number"
        else:
            outcomes[name] = outcomes[name].astype(str)
            continue
        bad = converted.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise field_error(f"rows/{i}/{name}", f"must be {kind} like the scored batch's '{name}'")
        outcomes[name] = converted.astype(target.dtype)
    duplicated = outcomes.duplicated(subset=grain)
    if duplicated.any():
        i = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise field_error(f"rows/{i}", "the same grain keys as an earlier row")
    return outcomes


def _match(
    path: Path, outcomes: pd.DataFrame, grain: list[str], *, dropped: list[str], batch_id: str
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(the predictions joined to the posted outcomes, the posted keys no prediction has, in
    posted order) for the predictions file at `path`, without its `dropped` columns (the
    scores, any labels). A predictions file without a grain column is a 409; a key that is not
    of its column's type a 400 (_align_keys)."""
    types = _prediction_types(path)
    missing = [name for name in grain if name not in types.columns]
    if missing:
        raise Conflict(f"The predictions of batch '{batch_id}' have no grain column '{missing[0]}'.")
    outcomes = _align_keys(outcomes, types, grain)
    joined = _join_chunks(path, outcomes, grain, [c for c in types.columns if c not in dropped])
    # The matched rows hold every scored key that was posted: the rest were not scored.
    keys = outcomes[grain].merge(joined[grain].drop_duplicates(), on=grain, how="left", indicator=True)
    return joined, keys[keys["_merge"] == "left_only"][grain]


def _prediction_types(path: Path) -> pd.DataFrame:
    """The predictions' columns with the pandas types a whole read gives them and no rows, from
    the Parquet schema (no row is read): the key alignment sees the whole file's types."""
    return pq.ParquetFile(path).schema_arrow.empty_table().to_pandas()


def _join_chunks(path: Path, outcomes: pd.DataFrame, grain: list[str], columns: list[str]) -> pd.DataFrame:
    """The predictions' `columns` inner-joined to the outcomes on the grain, as one merge of the
    whole file would give them (rows in file order, every prediction of a key, many to one),
    read chunk by chunk so that memory holds one chunk and the matches, not the file. A
    category column gets every chunk's categories in the order a whole read unifies them
    (concatenating chunks whose categories differ would turn it into text)."""
    pieces = [
        chunk.merge(outcomes, on=grain, how="inner", validate="many_to_one")
        for chunk in read_chunks(path, "parquet", columns=columns, chunk_rows=OUTCOMES_CHUNK_ROWS)
    ]
    if not pieces:  # a file of no rows
        return _prediction_types(path)[columns].merge(outcomes, on=grain, how="inner", validate="many_to_one")
    joined = pd.concat(pieces, ignore_index=True)
    for name in joined.columns:
        kinds = [piece[name].dtype for piece in pieces]
        if isinstance(joined[name].dtype, pd.CategoricalDtype) or not all(
            isinstance(kind, pd.CategoricalDtype) for kind in kinds
        ):
            continue
        categories = pd.Index(list(dict.fromkeys(chain.from_iterable(kind.categories for kind in kinds))))
        joined[name] = pd.Categorical(joined[name], categories=categories, ordered=kinds[0].ordered)
    return joined


def _json_key(values: dict) -> dict:
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else v.item() if hasattr(v, "item") else v)
        for k, v in values.items()
    }


def scoring_outcomes(*, batch: ScoringBatch, rows: list, user=None, at: datetime | None = None) -> dict:
    """Join posted outcomes (grain keys + labels) to a scored batch's predictions, compute
    the manifest's metrics on the matched rows with the family's own prepare + evaluate,
    and store them on the batch. Keys the batch did not score are counted and the first
    few reported, never silently dropped.

    The performance is also recorded as a snapshot (source "outcomes", at `at`, default now)
    so the manifest's performance alert rules judge it like any check's, and an alert it opens
    is handled like one a check opened."""
    model = batch.model
    manifest = model.recipe_version.manifest or {}
    grain = grain_columns(manifest)
    labels = list((manifest.get("requirements") or {}).get("labels") or [])
    if not grain or not labels:
        raise Conflict(
            f"Recipe '{model.recipe_id}' declares no grain or no labels; outcomes cannot be joined."
        )
    outcomes = _outcome_keys(rows, grain, labels)
    run = batch.run
    scored = (run.artifacts_json.get("scoring") or {}).get("prediction_columns") or []
    with artifacts.local_copy(run.pk, run.artifacts_json, PREDICTIONS_PARQUET) as path:
        joined, unmatched = _match(path, outcomes, grain, dropped=[*scored, *labels], batch_id=batch.pk)
    if joined.empty:
        raise InvalidInput(
            f"None of the {len(outcomes)} rows matches a prediction of batch '{batch.pk}'.",
            [{"path": "/rows", "message": f"no row's {', '.join(grain)} was scored in this batch"}],
        )
    family = get_family(model.recipe.model_family)
    fitted, _schema = artifacts.load_model(model)
    try:
        prepared = family.prepare(joined, manifest, log=lambda message: None)
        metrics, _predictions, _plots = family.evaluate(fitted, prepared, manifest)
    except ValueError as exc:
        raise InvalidInput(
            f"The matched rows cannot be evaluated: {exc}", [{"path": "/rows", "message": str(exc)}]
        ) from None
    performance = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)}
    now = at or timezone.now()
    with transaction.atomic():
        snapshot = snapshot_record(
            model=model,
            performance=performance,
            freshness={
                "batch": {"source": "outcomes", "scoring_batch_id": batch.pk, "window": batch.window_key}
            },
            source="outcomes",
            row_count=len(joined),
            captured_at=now,
        )
        ScoringBatch.objects.filter(pk=batch.pk).update(
            outcome_snapshot=snapshot,
            performance_json=performance,
            outcome_rows=len(joined),
            unmatched_rows=len(unmatched),
            outcomes_at=now,
        )
        audit.record(
            user,
            "monitoring.outcomes",
            model,
            detail={"batch_id": batch.pk, "matched": len(joined), "unmatched": len(unmatched)},
            at=at,
        )
    batch.outcome_snapshot = snapshot
    batch.performance_json, batch.outcome_rows, batch.unmatched_rows, batch.outcomes_at = (
        performance,
        len(joined),
        len(unmatched),
        now,
    )
    return {
        "batch_id": batch.pk,
        "model_id": model.pk,
        "window_key": batch.window_key,
        "outcome_rows": len(joined),
        "unmatched_rows": len(unmatched),
        "unmatched_keys": [_json_key(r) for r in unmatched.head(UNMATCHED_SHOWN).to_dict("records")],
        "performance": performance,
        "outcomes_at": now,
        "snapshot_id": snapshot.pk,
        "alerts_firing": sorted(name for name, r in snapshot.alerts_json.items() if r.get("firing") is True),
    }
