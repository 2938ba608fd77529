"""Datasets and the `quality` stage: reading files, describing columns, checking a frame
against a manifest's `requirements` and the quality stage's config. Plain pandas, no Django."""

from __future__ import annotations

import csv
import io
import itertools
import math
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

import numpy as np
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


SAMPLE_CHUNK_ROWS = 1_000_000


def read_sample(
    path: Path, fmt: str, *, max_rows: int, by: list[str] | None = None, seed: int = 0
) -> tuple[pd.DataFrame, int]:
    """(frame, the table's rows): the whole table when it has at most `max_rows` rows;
    otherwise a uniform sample of about `max_rows` rows, read chunk by chunk so that memory
    holds the sample, not the table. With `by` (grain columns) whole groups are kept or left
    out (a series is never cut), chosen by a seeded hash of their key, so every chunk decides
    the same for one group. ValueError in words when the file cannot be read."""
    total = table_shape(path, fmt, header_max_bytes=1 << 20).rows
    if total <= max_rows:
        return read_table(path, fmt), total
    share = max_rows / total
    rng = np.random.default_rng(seed)
    hash_key = f"{seed:016d}"[-16:]
    kept = []
    try:
        for chunk in read_chunks(path, fmt):
            if by:
                hashed = pd.util.hash_pandas_object(chunk[by], index=False, hash_key=hash_key).to_numpy()
                keep = (hashed % (1 << 32)) < share * (1 << 32)
            else:
                keep = rng.random(len(chunk)) < share
            kept.append(chunk[keep])
    except KeyError as exc:
        raise ValueError(f"the file has no column {exc}") from None
    except ValueError:
        raise
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise ValueError(f"could not read the file as {fmt.upper()}: {_exc_text(exc, path)}") from None
    return pd.concat(kept, ignore_index=True), total


def sample_by(family_name: str, manifest: dict) -> list[str] | None:
    """The columns a sample of a larger-than-memory table keeps whole groups of: a family that
    samples whole series (SAMPLE_BY_SERIES) gives its grain without the time column."""
    family = get_family(family_name)
    if not family.SAMPLE_BY_SERIES:
        return None
    times = {c["name"] for c in getattr(family, "SCHEMA", []) if c.get("role") == "time"}
    return [c for c in grain_columns(manifest) if c not in times] or None


def _read_error(exc: Exception, path: Path, fmt: str) -> ValueError:
    return ValueError(f"could not read the file as {fmt.upper()}: {_exc_text(exc, path)}")


def table_columns(path: Path, fmt: str) -> list[str]:
    """A table's column names, from the Parquet schema or the CSV header (no rows read)."""
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            return list(pq.ParquetFile(path).schema_arrow.names)
        return [str(c) for c in pd.read_csv(path, nrows=0).columns]
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise _read_error(exc, path, fmt) from None


def read_chunks(
    path: Path,
    fmt: str,
    *,
    columns: list[str] | None = None,
    chunk_rows: int | None = None,
    dtype: dict[str, str] | None = None,
) -> Iterator[pd.DataFrame]:
    """The table `chunk_rows` rows at a time (default SAMPLE_CHUNK_ROWS), only `columns` (default
    all): memory holds one chunk, and for Parquet the row group pyarrow decodes it from (pandas
    and pyarrow write groups of about 1M rows). A CSV chunk's types are inferred from its own
    rows, as pandas does, except the columns `dtype` types (runs.score_stream gives the whole
    file's). ValueError in words when the file cannot be read."""
    chunk_rows = chunk_rows or SAMPLE_CHUNK_ROWS
    try:
        if fmt == "parquet":
            import pyarrow.parquet as pq

            # pre_buffer (pyarrow's default) keeps every byte range it has read until the file is
            # closed: memory would grow with the file (1.4 GB after 1 GB of Parquet), not the chunk.
            parquet = pq.ParquetFile(path, pre_buffer=False)
            for batch in parquet.iter_batches(batch_size=chunk_rows, columns=columns):
                # One block per column: no copy into one 2-D block (a third of the read time).
                yield batch.to_pandas(split_blocks=True)
        else:
            yield from pd.read_csv(path, chunksize=chunk_rows, usecols=columns, dtype=dtype, low_memory=False)
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise _read_error(exc, path, fmt) from None


def read_first_rows(path: Path, fmt: str, rows: int, *, chunk_rows: int | None = None) -> pd.DataFrame:
    """The first `rows` rows, every column, reading no further than needed."""
    if rows <= 0:
        return pd.DataFrame()
    if fmt != "parquet":
        try:
            return pd.read_csv(path, nrows=rows, low_memory=False)
        except Exception as exc:  # pandas raises many types for a corrupt file
            raise _read_error(exc, path, fmt) from None
    kept, have = [], 0
    for chunk in read_chunks(path, fmt, chunk_rows=min(rows, chunk_rows or SAMPLE_CHUNK_ROWS)):
        kept.append(chunk.iloc[: rows - have])
        have += len(kept[-1])
        if have >= rows:
            break
    return pd.concat(kept, ignore_index=True) if kept else pd.DataFrame()


# When one Parquet row group holds more rows than a check's budget, the check reads the first
# rows of several groups; each slice is at least this many rows (every slice costs a page of every
# column, so fewer, larger slices read less while still covering the file).
SPREAD_MIN_SLICE_ROWS = 10_000
# pyarrow reads a column chunk through a buffer of this size, page by page, instead of whole: the
# first rows of a group cost its first pages (measured: the first 50,000 rows of a 1M-row group of
# 14 columns peaked at 34 MB of Arrow memory; the whole group at 225 MB).
PARQUET_READ_BUFFER = 1 << 16


class SpreadRows(NamedTuple):
    """Rows that stand for a table (read_spread): the frame, the table's rows, the Parquet row
    groups read (None when read whole or not by group) and how the rows were chosen, in words."""

    frame: pd.DataFrame
    table_rows: int
    row_groups: list[int] | None
    how: str

    @property
    def whole(self) -> bool:
        return len(self.frame) >= self.table_rows


def spread_positions(count: int, k: int) -> list[int]:
    """`k` of the positions 0..count-1 spread evenly, the first and the last included."""
    if k <= 1:
        return [count // 2]
    return [i * (count - 1) // (k - 1) for i in range(k)]


def read_spread(path: Path, fmt: str, *, max_rows: int, table_rows: int | None = None) -> SpreadRows:
    """At most `max_rows` rows that represent the table, read in bounded memory and time: the
    whole table when it has no more rows (read_table, as before); for Parquet, whole row groups
    spread evenly over the file (the first and the last included: a file written in time order
    keeps its span), or, when a single group holds more than `max_rows`, the first rows of up to
    ``max_rows // SPREAD_MIN_SLICE_ROWS`` evenly spread groups; for CSV, which cannot be entered
    in the middle without parsing what comes before, the first rows. `table_rows`: the table's
    rows when the caller knows them (a dataset's profile), else read (the footer, or a CSV's line
    count). ValueError in words when the file cannot be read."""
    max_rows = max(int(max_rows), 1)
    if fmt != "parquet":
        head = None
        if table_rows is None or table_rows > max_rows:
            head = read_first_rows(path, fmt, max_rows + 1)
        if head is None or len(head) <= max_rows:
            whole = read_table(path, fmt)
            return SpreadRows(whole, len(whole), None, "every row")
        if table_rows is None:
            table_rows = table_shape(path, fmt, header_max_bytes=1 << 20).rows
        return SpreadRows(head.iloc[:max_rows], table_rows, None, "the first rows")
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        parquet = pq.ParquetFile(path, pre_buffer=False, buffer_size=PARQUET_READ_BUFFER)
    except Exception as exc:  # pyarrow raises several types for a corrupt footer
        raise _read_error(exc, path, fmt) from None
    meta = parquet.metadata
    total = int(meta.num_rows)
    if total <= max_rows:
        return SpreadRows(read_table(path, fmt), total, None, "every row")
    sizes = {i: meta.row_group(i).num_rows for i in range(meta.num_row_groups)}
    filled = [i for i, rows in sizes.items() if rows]  # an empty group stands for nothing
    largest = max(sizes.values())
    try:  # pyarrow's errors (ArrowInvalid is a ValueError too) name the file by its path
        if largest <= max_rows:
            picked = [filled[p] for p in spread_positions(len(filled), min(len(filled), max_rows // largest))]
            table = parquet.read_row_groups(picked)
            how = "evenly spread row groups"
        else:
            k = min(len(filled), max(1, max_rows // SPREAD_MIN_SLICE_ROWS))
            picked = [filled[p] for p in spread_positions(len(filled), k)]
            per_group = max_rows // len(picked)
            table = pa.Table.from_batches([_first_batch(parquet, g, per_group) for g in picked])
            how = f"the first {per_group:,} rows of {len(picked)} evenly spread row groups"
        frame = table.to_pandas()
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise _read_error(exc, path, fmt) from None
    return SpreadRows(frame, total, picked, how)


def _first_batch(parquet, group: int, rows: int):
    """The first `rows` rows of one row group, decoding no further (the reader is closed)."""
    batches = parquet.iter_batches(batch_size=rows, row_groups=[group])
    try:
        return next(batches)
    finally:
        batches.close()


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


# A column's distinct values are counted exactly (as 64-bit hashes) up to this many; beyond,
# a streamed profile says "—" rather than hold them all.
DISTINCT_MAX = 1_000_000


def describe_chunks(chunks) -> list[dict]:
    """describe_columns of a table read in chunks (a file larger than memory): the same entries,
    exact, except ``distinct``, which is None for a column of more than DISTINCT_MAX values."""
    stats: dict[str, _ColumnStats] = {}
    for chunk in chunks:
        for col in chunk.columns:
            stats.setdefault(str(col), _ColumnStats(str(col))).add(chunk[col])
    return [column.entry() for column in stats.values()]


class _ColumnStats:
    """One column's profile, accumulated chunk by chunk (describe_chunks)."""

    def __init__(self, name: str):
        self.name = name
        self.rows = self.nulls = self.count = 0
        self.kinds: set[str] = set()
        self.hashes: np.ndarray | None = np.empty(0, dtype=np.uint64)
        self.low = self.high = None
        self.total = 0.0
        self.times_low = self.times_high = None
        self.times_ok, self.all_dates = True, True
        self.empty_kind: str | None = None

    def add(self, series: pd.Series) -> None:
        self.rows += len(series)
        self.nulls += int(series.isna().sum())
        kind = dtype_name(series)
        values = series.dropna()
        # A chunk with no values says nothing of the column's type (pandas reads an empty
        # CSV chunk of a text column as float): its type counts only if no chunk has values.
        if len(values):
            self.kinds.add(kind)
        else:
            self.empty_kind = self.empty_kind or kind
        if self.hashes is not None and len(values):
            hashed = pd.util.hash_pandas_object(values.astype(str), index=False).to_numpy()
            self.hashes = np.unique(np.concatenate((self.hashes, hashed)))
            if self.hashes.size > DISTINCT_MAX:
                self.hashes = None
        if not len(values):
            return
        if kind in ("int", "float"):
            low, high = values.min(), values.max()
            self.low = low if self.low is None else min(self.low, low)
            self.high = high if self.high is None else max(self.high, high)
            self.total += float(values.sum())
            self.count += len(values)
        elif kind in ("datetime", "string") and self.times_ok:
            times = values if kind == "datetime" else _iso_times(values)
            if times is None:
                self.times_ok = False
                return
            self.all_dates = self.all_dates and bool((times == times.dt.normalize()).all())
            low, high = times.min(), times.max()
            self.times_low = low if self.times_low is None else min(self.times_low, low)
            self.times_high = high if self.times_high is None else max(self.times_high, high)

    def entry(self) -> dict:
        kinds = self.kinds or {self.empty_kind or "string"}
        if "string" in kinds or len(kinds) > 2 or (len(kinds) == 2 and kinds != {"int", "float"}):
            dtype = "string"
        else:
            dtype = "float" if "float" in kinds else next(iter(kinds), "string")
        entry = {
            "name": self.name,
            "dtype": dtype,
            "null_ratio": round(self.nulls / self.rows, 6) if self.rows else 0.0,
            "distinct": int(self.hashes.size) if self.hashes is not None else None,
        }
        if dtype in ("int", "float") and self.count:
            entry.update(min=_number(self.low), max=_number(self.high), mean=_number(self.total / self.count))
        elif dtype in ("datetime", "string") and self.times_ok and self.times_low is not None:
            dates = self.all_dates
            entry["dtype"] = "date" if dates else "datetime"
            entry.update(
                min=self.times_low.date().isoformat() if dates else self.times_low.isoformat(),
                max=self.times_high.date().isoformat() if dates else self.times_high.isoformat(),
            )
        return entry


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


def dataset_problems(
    frame: pd.DataFrame,
    columns: list[dict],
    manifest: dict,
    family: str,
    *,
    check_history: bool = True,
    outcomes: bool = True,
    table_rows: int | None = None,
) -> list[str]:
    """Why a recipe version cannot use this data, in words: missing required columns, then
    the quality stage's checks (nulls, grain duplicates, ranges, and min_history unless
    `check_history` is off: scoring needs no training history). ``outcomes=False`` for a
    batch a model scores: its labels (and treatment) arrive later, so they are not required.
    `table_rows`: the table's rows when `frame` is only part of it (see quality_errors; `columns`
    is then the whole table's profile). Uploads and the pipeline's quality stage both ask this."""
    whole = {"rows": table_rows, "columns": columns} if table_rows is not None else None
    return requirement_errors(columns, manifest, family, outcomes=outcomes) + quality_errors(
        frame, manifest, family, check_history=check_history, outcomes=outcomes, whole=whole
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


def null_problem(column: str, ratio: float, max_null: float) -> str:
    """The quality stage's words for a column over its null limit (one home for the wording:
    the in-memory check and the streamed one, runs.score_stream.stream_quality)."""
    return f"column '{column}' has {ratio:.1%} nulls (max {max_null:.1%})"


def duplicate_problem(count: int, grain: list[str]) -> str:
    return f"{count} duplicate rows on the grain ({', '.join(grain)})"


def range_problem(column: str, count: int, bound, side: str) -> str:
    """``side``: "below" (the range's min) or "above" (its max)."""
    return f"column '{column}' has {count} values {side} {bound}"


def quality_errors(
    frame: pd.DataFrame,
    manifest: dict,
    family: str | None = None,
    *,
    check_history: bool = True,
    outcomes: bool = True,
    whole: dict | None = None,
) -> list[str]:
    """The quality stage's checks: null ratios, duplicates on the grain, value ranges and
    min_history (``check_history=False`` for data a trained model only scores: an eval run's
    batch is a later window, shorter than the history training needs). Every message names
    the column.

    `whole` (``{"rows": n, "columns": describe_columns entries}``) when `frame` is only part of
    a table whose profile covers every row: null ratios, min_history and whether any value is
    out of range are then the whole table's (a part would miss a rare value or a short span);
    duplicates on the grain, and how many values are out of range, are counted in the part."""
    config = stage_config(manifest or {}, "quality")
    errors: list[str] = []
    profile = {c["name"]: c for c in (whole or {}).get("columns") or []}
    max_null = config.get("max_null_ratio")
    required = required_columns(manifest, family, outcomes=outcomes) if family else {}
    if max_null is not None:
        checked = [c for c in (required or frame.columns) if c in frame.columns]
        for column in checked:
            known = profile.get(column, {}).get("null_ratio")
            ratio = float(known) if known is not None else float(frame[column].isna().mean())
            if ratio > max_null:
                errors.append(null_problem(column, ratio, max_null))
    grain = [c for c in grain_columns(manifest or {}) if c in frame.columns]
    if grain and config.get("unique_grain", True):
        duplicates = int(frame.duplicated(subset=grain).sum())
        if duplicates:
            errors.append(duplicate_problem(duplicates, grain))
    for column, bounds in (config.get("ranges") or {}).items():
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        known = profile.get(column, {})
        if "min" in bounds and (values < bounds["min"]).any():
            errors.append(range_problem(column, int((values < bounds["min"]).sum()), bounds["min"], "below"))
        elif "min" in bounds and _is_number(known.get("min")) and known["min"] < bounds["min"]:
            errors.append(
                f"column '{column}' has values below {bounds['min']} in rows not checked "
                f"(its minimum is {known['min']})"
            )
        if "max" in bounds and (values > bounds["max"]).any():
            errors.append(range_problem(column, int((values > bounds["max"]).sum()), bounds["max"], "above"))
        elif "max" in bounds and _is_number(known.get("max")) and known["max"] > bounds["max"]:
            errors.append(
                f"column '{column}' has values above {bounds['max']} in rows not checked "
                f"(its maximum is {known['max']})"
            )
    history = parse_min_history(((manifest or {}).get("requirements") or {}).get("min_history"))
    if history and family and check_history:
        amount, unit = history
        unit = unit.rstrip("s")
        rows = whole["rows"] if whole else len(frame)
        if unit in ("row", "observation"):
            if rows < amount:
                errors.append(f"the data has {rows} rows; min_history needs {amount}")
        else:
            column = time_column(frame, family)
            if column is not None:
                known = profile.get(column, {})
                dated = known.get("dtype") in ("date", "datetime") and known.get("min") and known.get("max")
                span = [known["min"], known["max"]] if dated else None
                times = pd.to_datetime(
                    pd.Series(span) if span else frame[column], errors="coerce", utc=True
                ).dropna()
                span_days = (times.max() - times.min()).total_seconds() / 86400 if len(times) else 0
                needed = amount * HISTORY_UNIT_DAYS.get(unit, 1)
                if span_days + 1 < needed:
                    errors.append(
                        f"column '{column}' spans {span_days:.0f} days; min_history needs {amount} {unit}(s)"
                    )
    return errors


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
