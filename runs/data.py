"""Datasets and the `quality` stage: reading files, describing columns, checking a frame
against a manifest's `requirements` and the quality stage's config. Plain pandas, no Django."""

from __future__ import annotations

import csv
import io
import itertools
import math
from pathlib import Path
from typing import NamedTuple

import pandas as pd

from mlworkspace.redact import default_roots, redact_paths
from recipes.catalog import FAMILIES
from recipes.manifest import grain_columns, parse_min_history

from .families import get_family, stage_config

HISTORY_UNIT_DAYS = {"day": 1, "week": 7, "month": 30.4375, "year": 365.25}


def _exc_text(exc: Exception, path) -> str:
    """A reader's error message without server paths (pyarrow and open() name the file by
    its absolute path): the file name only."""
    return redact_paths(str(exc), default_roots(Path(path).parent))[:300]


def read_table(path: Path, fmt: str) -> pd.DataFrame:
    """Read a CSV or Parquet file; ValueError with a readable message if it is not one."""
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, low_memory=False)
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise ValueError(f"could not read the file as {fmt.upper()}: {_exc_text(exc, path)}") from None
    if frame.shape[1] == 0:
        raise ValueError("the file has no columns")
    return frame


class TableShape(NamedTuple):
    """A file's size in rows and columns, known before it is loaded. ``rows`` is exact for
    Parquet (its footer says) and, for CSV, the number of lines after the header: an upper
    bound (a quoted value may hold a line break), exact after the real read."""

    rows: int
    columns: int


def table_shape(path: Path, fmt: str, *, header_max_bytes: int) -> TableShape:
    """Rows and columns from the Parquet footer, or from a CSV's first line (read with a byte
    cap) and a count of its line breaks, without loading the table: a file small on disk can
    hold far more than memory (a Parquet column of zeros compresses ~10,000:1, a CSV header of
    100,000 columns fits in 1 MB). ValueError with a readable message if it is not a table."""
    if fmt == "parquet":
        import pyarrow.parquet as pq

        try:
            meta = pq.ParquetFile(path).metadata
        except Exception as exc:  # pyarrow raises several types for a corrupt footer
            raise ValueError(f"could not read the file as PARQUET: {_exc_text(exc, path)}") from None
        if meta.num_columns == 0:
            raise ValueError("the file has no columns")
        return TableShape(rows=int(meta.num_rows), columns=int(meta.num_columns))
    with open(path, "rb") as handle:
        head = handle.read(header_max_bytes + 1)
        try:
            records = list(itertools.islice(csv.reader(io.StringIO(head.decode("utf-8", "replace"))), 2))
        except csv.Error as exc:  # e.g. a header field longer than the csv module allows
            raise ValueError(f"could not read the file as CSV: {exc}") from None
        if len(head) > header_max_bytes and len(records) < 2:
            raise ValueError(f"the header line is longer than {header_max_bytes} bytes")
        if not records or not any(field.strip() for field in records[0]):
            raise ValueError("could not read the file as CSV: its first line names no columns")
        # Count line breaks in 1 MB blocks: a bounded, constant-memory scan.
        handle.seek(0)
        lines, last = 0, b""
        while block := handle.read(1024 * 1024):
            lines += block.count(b"\n")
            last = block
    if last and not last.endswith(b"\n"):
        lines += 1  # the last line has no line break
    return TableShape(rows=max(lines - 1, 0), columns=len(records[0]))


def shape_problems(shape: TableShape, *, max_rows: int, max_columns: int, max_cells: int) -> list[str]:
    """Why a table is too big to load, naming the numbers (empty when it is within the limits)."""
    problems = []
    if shape.columns > max_columns:
        problems.append(f"{shape.columns} columns; the limit is {max_columns}")
    if shape.rows > max_rows:
        problems.append(f"{shape.rows} rows; the limit is {max_rows}")
    if not problems and shape.rows * shape.columns > max_cells:
        problems.append(
            f"{shape.rows} rows × {shape.columns} columns = {shape.rows * shape.columns} cells; "
            f"the limit is {max_cells}"
        )
    return problems


def dtype_name(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    return "string"


def model_input(frame: pd.DataFrame, schema: dict) -> pd.DataFrame:
    """The columns a trained model takes (its schema.json ``input_columns``), in its order,
    with dates parsed (a value that is not a date becomes NaT: the caller says where). The
    one preparation of rows a model predicts on: ``POST /models/{id}/predict`` and score runs.
    KeyError naming the first missing column."""
    columns = schema["input_columns"]
    out = frame[[c["name"] for c in columns]].copy()
    for col in columns:
        if col["dtype"] in ("date", "datetime"):
            out[col["name"]] = pd.to_datetime(out[col["name"]], errors="coerce")
    return out


def describe_columns(frame: pd.DataFrame) -> list[dict]:
    """Per column: name, inferred dtype (ISO date text counts as a date), null ratio and a
    small profile (distinct values; min / max / mean of numbers, first / last date), computed
    once at upload for the dataset page."""
    return [_describe(str(col), frame[col]) for col in frame.columns]


def _describe(name: str, series: pd.Series) -> dict:
    dtype = dtype_name(series)
    entry = {
        "name": name,
        "dtype": dtype,
        # An empty column's mean is NaN, which is not JSON: no rows, no nulls.
        "null_ratio": round(float(series.isna().mean()), 6) if len(series) else 0.0,
        "distinct": int(series.nunique(dropna=True)),
    }
    values = series.dropna()
    if dtype in ("int", "float") and len(values):
        entry.update(min=_number(values.min()), max=_number(values.max()), mean=_number(values.mean()))
    elif dtype in ("datetime", "string") and len(values):
        # CSV has no date type: text that is all ISO dates is a date column (the time span
        # min_history is checked on).
        times = values if dtype == "datetime" else _iso_times(values)
        if times is not None:
            dates = bool((times == times.dt.normalize()).all())
            entry["dtype"] = "date" if dates else "datetime"
            low, high = times.min(), times.max()
            entry.update(
                min=low.date().isoformat() if dates else low.isoformat(),
                max=high.date().isoformat() if dates else high.isoformat(),
            )
    return entry


def _iso_times(values: pd.Series) -> pd.Series | None:
    if not isinstance(values.iloc[0], str) or not values.iloc[0][:1].isdigit():
        return None  # cheap rejection of ordinary text before parsing the whole column
    try:
        parsed = pd.to_datetime(values, format="ISO8601", errors="coerce")
    except (ValueError, TypeError):  # e.g. mixed time zones
        return None
    if not pd.api.types.is_datetime64_any_dtype(parsed) or not bool(parsed.notna().all()):
        return None
    return parsed


def _number(value) -> float | int | None:
    value = value.item() if hasattr(value, "item") else value
    if isinstance(value, float):
        return round(value, 6) if math.isfinite(value) else None  # NaN/inf are not JSON
    return value


def read_head(path: Path, fmt: str, rows: int) -> pd.DataFrame:
    """The first `rows` rows without reading the whole file (the dataset page's preview)."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            batch = next(pq.ParquetFile(path).iter_batches(batch_size=rows), None)
            return batch.to_pandas() if batch is not None else pd.DataFrame()
        return pd.read_csv(path, nrows=rows, low_memory=False)
    except Exception as exc:  # the file was readable at upload; say so rather than fail
        raise ValueError(f"could not read the file as {fmt.upper()}: {_exc_text(exc, path)}") from None


def dataset_problems(
    frame: pd.DataFrame,
    columns: list[dict],
    manifest: dict,
    family: str,
    *,
    check_history: bool = True,
    outcomes: bool = True,
) -> list[str]:
    """Why a recipe version cannot use this data, in words: missing required columns, then
    the quality stage's checks (nulls, grain duplicates, ranges, and min_history unless
    `check_history` is off: scoring needs no training history). ``outcomes=False`` for a
    batch a model scores: its labels (and treatment) arrive later, so they are not required.
    Uploads and the pipeline's quality stage both ask this."""
    return requirement_errors(columns, manifest, family, outcomes=outcomes) + quality_errors(
        frame, manifest, family, check_history=check_history, outcomes=outcomes
    )


def outcome_columns(manifest: dict, family: str | None) -> set[str]:
    """The columns a model learns from but never gets as input: the manifest's labels and the
    family's label and treatment columns (a score run's batch does without them)."""
    labels = set(((manifest or {}).get("requirements") or {}).get("labels") or [])
    if family in FAMILIES:
        labels |= {
            c["name"]
            for c in getattr(get_family(family), "SCHEMA", [])
            if c.get("role") in ("label", "treatment")
        }
    return labels


def required_columns(manifest: dict, family: str, *, outcomes: bool = True) -> dict[str, list[str]]:
    """Column -> why it is required: feature sets (resolved through the family's catalog;
    an unknown name is a column of that name), grain and labels (without the
    `outcome_columns` when ``outcomes`` is off)."""
    reasons: dict[str, list[str]] = {}
    requirements = (manifest or {}).get("requirements") or {}
    sets = {}
    if family in FAMILIES:
        sets = getattr(get_family(family), "FEATURE_SETS", {})
    for name in (requirements.get("feature_sets") or {}).get("required") or []:
        for column in sets.get(name, [name]):
            reasons.setdefault(column, []).append(f"feature set '{name}'")
    for column in grain_columns(manifest or {}):
        reasons.setdefault(column, []).append("grain")
    for column in requirements.get("labels") or []:
        reasons.setdefault(column, []).append("label")
    if not outcomes:
        for column in outcome_columns(manifest, family):
            reasons.pop(column, None)
    return reasons


def requirement_errors(
    columns: list[dict], manifest: dict, family: str, *, outcomes: bool = True
) -> list[str]:
    """Missing required columns, each message naming the column and why it is needed."""
    present = {c["name"] for c in columns}
    return [
        f"column '{column}' is missing (required by {', '.join(why)})"
        for column, why in required_columns(manifest, family, outcomes=outcomes).items()
        if column not in present
    ]


def time_column(frame: pd.DataFrame, family: str) -> str | None:
    if family in FAMILIES:
        for col in getattr(get_family(family), "SCHEMA", []):
            if col.get("role") == "time" and col["name"] in frame.columns:
                return col["name"]
    return None


def quality_errors(
    frame: pd.DataFrame,
    manifest: dict,
    family: str | None = None,
    *,
    check_history: bool = True,
    outcomes: bool = True,
) -> list[str]:
    """The quality stage's checks: null ratios, duplicates on the grain, value ranges and
    min_history (``check_history=False`` for data a trained model only scores: an eval run's
    batch is a later window, shorter than the history training needs). Every message names
    the column."""
    config = stage_config(manifest or {}, "quality")
    errors: list[str] = []
    max_null = config.get("max_null_ratio")
    required = required_columns(manifest, family, outcomes=outcomes) if family else {}
    if max_null is not None:
        checked = [c for c in (required or frame.columns) if c in frame.columns]
        for column in checked:
            ratio = float(frame[column].isna().mean())
            if ratio > max_null:
                errors.append(f"column '{column}' has {ratio:.1%} nulls (max {max_null:.1%})")
    grain = [c for c in grain_columns(manifest or {}) if c in frame.columns]
    if grain and config.get("unique_grain", True):
        duplicates = int(frame.duplicated(subset=grain).sum())
        if duplicates:
            errors.append(f"{duplicates} duplicate rows on the grain ({', '.join(grain)})")
    for column, bounds in (config.get("ranges") or {}).items():
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        if "min" in bounds and (values < bounds["min"]).any():
            errors.append(
                f"column '{column}' has {(values < bounds['min']).sum()} values below {bounds['min']}"
            )
        if "max" in bounds and (values > bounds["max"]).any():
            errors.append(
                f"column '{column}' has {(values > bounds['max']).sum()} values above {bounds['max']}"
            )
    history = parse_min_history(((manifest or {}).get("requirements") or {}).get("min_history"))
    if history and family and check_history:
        amount, unit = history
        unit = unit.rstrip("s")
        if unit in ("row", "observation"):
            if len(frame) < amount:
                errors.append(f"the data has {len(frame)} rows; min_history needs {amount}")
        else:
            column = time_column(frame, family)
            if column is not None:
                times = pd.to_datetime(frame[column], errors="coerce", utc=True).dropna()
                span_days = (times.max() - times.min()).total_seconds() / 86400 if len(times) else 0
                needed = amount * HISTORY_UNIT_DAYS.get(unit, 1)
                if span_days + 1 < needed:
                    errors.append(
                        f"column '{column}' spans {span_days:.0f} days; min_history needs {amount} {unit}(s)"
                    )
    return errors
