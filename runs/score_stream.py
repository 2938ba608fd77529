"""A score run's batch read chunk by chunk and its predictions written chunk by chunk, so a
worker's memory holds one chunk, not the batch (issue #16 §3). Plain pandas/pyarrow, no Django.

``plan`` decides whether a batch streams: a file of more than ``stream_rows`` rows (the run's
``data.stream_rows``, settings.SCORE_STREAM_ROWS) is read ``chunk_rows`` at a time (Parquet
batches of its row groups, CSV chunks). Two things would make its scores or its columns differ
from the in-memory path's; they are handled so:

* **Whole entities.** A family that predicts an entity's later periods from its earlier ones
  (``SAMPLE_BY_SERIES``: forecasting) must see each series whole in one predict call. A first
  pass reads only the series columns, chunk by chunk, and checks whether the file is *ordered
  by series* (each series' rows contiguous; a series seen again after another one began means
  it is not). An ordered file streams with chunks cut between series. A file that is not is
  *partitioned on disk*: one more pass writes each chunk's rows into K bucket Parquet files by a
  hash of the series key (``entity_hashes``; K = rows / chunk_rows, at least 1, so a bucket
  holds about a chunk), in a temporary folder of the run's work directory, removed when the
  run ends (``StreamPlan.close``). Every series lies whole in one bucket, and a bucket is
  scored as one chunk, so the scores are the in-memory ones. The predictions come out bucket
  by bucket (within a bucket in file order), not in file order: each row carries the batch's
  columns, the series and date among them, so it is matched by its key, not its position (and
  a deployment stage's ``explain_rows`` contributions go to the first rows written). Without a
  work directory, or when pyarrow cannot write a chunk to a bucket (a column whose type changes
  between chunks), the file is scored in memory and the run's log says why.
* **CSV types.** pandas infers a CSV column's type from the rows it reads: a chunk of whole
  numbers is ``int64`` where the whole file (some decimals or gaps further down) is
  ``float64``. The first pass also records each chunk's kind of every column and the second
  reads with the type the whole file has (``float64``, ``str``, or Python objects for a yes/no
  column with gaps); a mix pandas types in no reproducible way (yes/no beside numbers) falls
  back to memory, naming the column.

``stream_quality`` is the quality stage of a streamed batch: ``runs.data.quality_errors`` (as a
score run asks it: no history, no outcomes) over every chunk — null and out-of-range counts
summed, duplicates on the grain found across chunks with one 64-bit hash per row — in a pass
that reads only the columns it checks; its messages are the whole-batch ones.

A chunk that cannot be read is a ``ChunkReadError`` naming the dataset and the rows read
before it.
"""

from __future__ import annotations

import math
import shutil
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlworkspace.csvsafe import write_csv
from recipes.manifest import grain_columns

from .data import (
    SAMPLE_CHUNK_ROWS,
    dtype_name,
    duplicate_problem,
    null_problem,
    range_problem,
    read_chunks,
    required_columns,
    table_columns,
    table_shape,
)
from .families import stage_config


class ChunkReadError(ValueError):
    """A chunk of a streamed batch could not be read (the message names the dataset)."""


@dataclass
class StreamPlan:
    """How a batch streams: its file, its rows (exact for Parquet, an upper bound for CSV
    until read), the rows a chunk holds, the series columns chunks are cut between (None: any
    row), for CSV the types read_csv is given and the columns made Python objects, and for a
    file partitioned by series its bucket files ({path: rows}) and what the log says of it."""

    path: Path
    fmt: str
    name: str
    rows: int
    chunk_rows: int
    entity: list[str] | None = None
    dtypes: dict[str, str] = field(default_factory=dict)
    as_object: list[str] = field(default_factory=list)
    buckets: dict[Path, int] = field(default_factory=dict)
    partitions: int = 0
    note: str = ""
    _bucket_dir: Path | None = None
    _objects: list[str] = field(default_factory=list)  # a CSV's columns of Python objects

    def chunks(self) -> Iterator[pd.DataFrame]:
        """The batch, chunk by chunk: in file order (whole series per chunk when ``entity``), or
        for a partitioned file one bucket a chunk."""
        if self.buckets:
            yield from self._bucket_chunks()
            return
        raw = self._read()
        yield from (_entity_chunks(raw, self.entity) if self.entity else raw)

    def close(self) -> None:
        """Remove the bucket files of a partitioned file (nothing to do for another)."""
        if self._bucket_dir is not None:
            shutil.rmtree(self._bucket_dir, ignore_errors=True)
        self._bucket_dir, self.buckets = None, {}

    def head(self) -> pd.DataFrame:
        """The first chunk: the columns and types the quality and feature_prep stages of a
        streamed run start from (the quality stage then reads every chunk: stream_quality)."""
        chunks = self.chunks()
        try:
            return next(chunks)
        except StopIteration:
            return pd.DataFrame()
        finally:
            chunks.close()

    def _read(self, columns: list[str] | None = None, typed: bool = True) -> Iterator[pd.DataFrame]:
        """The file's chunks as read (``columns`` only, as pandas infers them unless ``typed``:
        the first pass), a ChunkReadError naming the dataset for one that cannot be read."""
        rows = 0
        reader = read_chunks(
            self.path,
            self.fmt,
            columns=columns,
            chunk_rows=self.chunk_rows,
            dtype=self.dtypes if typed else None,
        )
        while True:
            try:
                chunk = next(reader)
            except StopIteration:
                return
            except ValueError as exc:
                raise ChunkReadError(
                    f"dataset '{self.name}' could not be read after its first {rows:,} rows "
                    f"(chunk {rows // self.chunk_rows + 1}): {exc}"
                ) from None
            for col in self.as_object if typed else ():
                if col in chunk.columns:  # the quality pass reads some columns only
                    chunk[col] = chunk[col].astype(object)
            rows += len(chunk)
            yield chunk

    def _partition(self, work_dir: Path) -> str:
        """Write the file's rows into K bucket Parquet files by a hash of the series key, in a
        new folder under ``work_dir``: "" when done, else why not (the folder removed). Each
        chunk is converted with the schema of the first (a later chunk whose column pandas typed
        otherwise, e.g. whole numbers with a gap, is cast to it); a column pyarrow cannot cast
        is a reason to score the file in memory. One row group per chunk and bucket."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        count = self.partitions = max(1, math.ceil(self.rows / self.chunk_rows))
        self._bucket_dir = Path(tempfile.mkdtemp(prefix="score-buckets-", dir=work_dir))
        writers: dict[int, pq.ParquetWriter] = {}
        rows: dict[int, int] = {}
        schema = None
        try:
            try:
                for chunk in self._read():
                    if schema is None:
                        schema = self._bucket_schema(chunk)
                        self._objects = [str(c) for c in chunk.columns if chunk[c].dtype == object]
                    which = (entity_hashes(chunk[self.entity]) % np.uint64(count)).astype(np.int64)
                    order = np.argsort(which, kind="stable")  # a bucket's rows keep the file's order
                    bounds = np.searchsorted(which[order], np.arange(count + 1))
                    table = pa.Table.from_pandas(chunk, schema=schema, preserve_index=False).take(order)
                    for bucket in np.flatnonzero(np.diff(bounds)).tolist():
                        if bucket not in writers:
                            writers[bucket] = pq.ParquetWriter(self._bucket_path(bucket), schema)
                            rows[bucket] = 0
                        size = int(bounds[bucket + 1] - bounds[bucket])
                        writers[bucket].write_table(table.slice(int(bounds[bucket]), size))
                        rows[bucket] += size
            finally:
                for writer in writers.values():
                    writer.close()
        except (pa.ArrowException, TypeError) as exc:  # a chunk pyarrow cannot cast to the schema
            self.close()
            return f"a chunk could not be written to a bucket file ({str(exc)[:200]})"
        except BaseException:  # a chunk that cannot be read (ChunkReadError), a full disk, ...
            self.close()
            raise
        self.buckets = {self._bucket_path(b): rows[b] for b in sorted(rows)}
        return ""

    def _bucket_path(self, bucket: int) -> Path:
        return self._bucket_dir / f"bucket-{bucket:05d}.parquet"

    def _bucket_schema(self, chunk: pd.DataFrame):
        """The bucket files' schema: the first chunk's, with a column of no values in it (a null
        type) given the file's type (Parquet) or bool (a CSV yes/no column with gaps)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        schema = pa.Schema.from_pandas(chunk, preserve_index=False)
        source = pq.ParquetFile(self.path).schema_arrow if self.fmt == "parquet" else None
        for index, column in enumerate(schema):
            if not pa.types.is_null(column.type):
                continue
            if source is not None and column.name in source.names:
                schema = schema.set(index, column.with_type(source.field(column.name).type))
            elif column.name in self.as_object:
                schema = schema.set(index, column.with_type(pa.bool_()))
        return schema

    def _bucket_chunks(self) -> Iterator[pd.DataFrame]:
        """Each bucket file read whole (read_chunks, one chunk of its rows), typed as the file's
        chunks are: for CSV, the columns of Python objects in its chunks (a yes/no column with
        gaps) objects again, a missing value NaN as read_csv gives it (pyarrow gives None)."""
        for path, rows in self.buckets.items():
            for chunk in read_chunks(path, "parquet", chunk_rows=max(rows, 1)):
                for col in self._objects if self.fmt != "parquet" else ():
                    # yes/no with gaps: a bucket without a gap reads as bool, one with gaps has None
                    chunk[col] = chunk[col].astype(object)
                    chunk[col] = chunk[col].where(chunk[col].notna(), np.nan)
                yield chunk


def plan(
    path: Path,
    fmt: str,
    *,
    name: str,
    stream_rows: int,
    chunk_rows: int | None,
    entity: list[str] | None = None,
    work_dir: Path | None = None,
) -> tuple[StreamPlan | None, str]:
    """(the plan, "") when the batch streams; (None, why not) when it is scored in memory ("" when
    it is small enough). Reads the file once before streaming only when it must (CSV types,
    series order), and once more to partition a file not ordered by series into bucket files
    under ``work_dir`` (the plan's ``note`` says so; the caller calls ``close`` when done); a
    chunk it cannot read is a ChunkReadError."""
    rows = table_shape(path, fmt, header_max_bytes=1 << 20).rows
    if rows <= max(stream_rows, 0) or rows == 0:
        return None, ""
    stream = StreamPlan(
        path=path, fmt=fmt, name=name, rows=rows, chunk_rows=max(int(chunk_rows or SAMPLE_CHUNK_ROWS), 1)
    )
    if entity and not set(entity) <= set(table_columns(path, fmt)):
        entity = None  # no series to keep whole: the first chunk fails the quality stage, naming it
    if fmt != "parquet" or entity:
        order = _EntityOrder() if entity else None
        kinds: dict[str, set[str]] = {}
        for chunk in stream._read(entity if fmt == "parquet" else None, typed=False):
            if fmt != "parquet":
                for col in chunk.columns:
                    kinds.setdefault(str(col), set()).add(_kind(chunk[col]))
            if order is not None and order.problem is None:
                order.add(chunk[entity])
        if kinds:
            for col, seen in kinds.items():
                read_as = _csv_type(seen)
                if read_as is None:
                    return None, (
                        f"its CSV column '{col}' reads as {' and '.join(sorted(seen))} in different parts "
                        "of the file, which only a whole-file read types exactly"
                    )
                if read_as == "object":
                    stream.as_object.append(col)
                elif read_as:
                    stream.dtypes[col] = read_as
        if order is not None:
            stream.entity = list(entity)
            if order.problem:
                unordered = f"it is not ordered by series ({', '.join(entity)}): {order.problem}"
                if work_dir is None:
                    return None, unordered
                failed = stream._partition(work_dir)
                if failed:
                    return None, f"{unordered}, and partitioning it on disk failed: {failed}"
                stream.note = (
                    f"{unordered}: partitioned into {stream.partitions} buckets on disk by a hash of "
                    "the series key, each scored whole; predictions are written bucket by bucket, "
                    "not in the file's row order"
                )
    return stream, ""


def _kind(series: pd.Series) -> str:
    """What pandas made of a CSV chunk's column: int, float, empty (no values), bool,
    bool_na (yes/no with gaps: Python objects), str, or other."""
    if series.isna().all():
        return "empty"
    name = dtype_name(series)  # a CSV chunk has no datetime columns: read_csv parses no dates
    if name in ("bool", "int", "float"):
        return name
    inferred = pd.api.types.infer_dtype(series, skipna=True)
    if inferred == "boolean":
        return "bool_na"
    if inferred == "string":
        return "str"
    return "other"


def _csv_type(kinds: set[str]) -> str | None:
    """The type the whole file's column has, given the kinds of its chunks: "" (as each chunk
    reads), "float64", "str", "object" (made Python objects after the read), or None (no
    reproducible type: read it whole)."""
    values = kinds - {"empty"}
    if not values or values == {"float"} or values == {"other"}:
        return ""  # as every chunk reads it (float64 reads gaps as NaN)
    if values <= {"int", "float"}:
        return "" if kinds == {"int"} else "float64"  # whole numbers beside decimals or gaps
    if "str" in values and values <= {"str", "int", "float", "bool", "bool_na"}:
        return "" if kinds == {"str"} else "str"  # text anywhere: the whole column is its text
    if values <= {"bool", "bool_na"}:
        return "" if kinds in ({"bool"}, {"bool_na"}) else "object"  # yes/no with gaps: objects
    return None


class _EntityOrder:
    """Whether a table is ordered by entity (each entity's rows contiguous), fed chunk by chunk.
    Holds one 64-bit hash per entity (not per row). A key column's values are hashed as
    numbers when they are numbers (a CSV chunk may read 7 where another reads 7.0)."""

    def __init__(self):
        self.seen = np.empty(0, dtype=np.uint64)
        self.last: int | None = None
        self.problem: str | None = None

    def add(self, keys: pd.DataFrame) -> None:
        if not len(keys):
            return
        hashed = entity_hashes(keys)
        starts = np.r_[True, hashed[1:] != hashed[:-1]]
        runs = hashed[starts]
        first_rows = np.flatnonzero(starts)
        if self.last is not None and runs[0] == self.last:  # the previous chunk's entity goes on
            runs, first_rows = runs[1:], first_rows[1:]
        unique, index = np.unique(runs, return_index=True)
        again = np.isin(runs, self.seen)
        if len(unique) < len(runs) or again.any():
            repeated = np.ones(len(runs), dtype=bool)
            repeated[index] = False
            at = int(np.flatnonzero(repeated | again)[0])
            value = ", ".join(str(v) for v in keys.iloc[int(first_rows[at])].tolist())
            self.problem = f"the rows of {value} are not all together"
            return
        self.seen = np.union1d(self.seen, unique)
        self.last = int(hashed[-1])


def entity_hashes(keys: pd.DataFrame) -> np.ndarray:
    """One 64-bit hash per row of its key columns, the same for one key however a chunk typed
    it: a number hashes as its value (7 in an int64 chunk as 7.0 in a float64 one, exactly, a
    64-bit integer too), anything else as its text."""
    normal = {}
    for col in keys.columns:
        values = keys[col]
        if pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values):
            normal[col], normal[f"{col} whole"] = _number_bits(values)
        else:
            normal[col] = values.astype(str)
    return pd.util.hash_pandas_object(pd.DataFrame(normal, index=keys.index), index=False).to_numpy()


def _number_bits(values: pd.Series) -> tuple[np.ndarray, np.ndarray]:
    """(64 bits, whole): a whole number's int64 bits (whole True), another number's float64
    bits, so 7 and 7.0 are one key and no 64-bit integer is rounded through a float."""
    if pd.api.types.is_integer_dtype(values) and not values.hasnans:
        ints = values.to_numpy(dtype=np.int64)
        return ints.view(np.uint64), np.ones(len(ints), dtype=bool)
    floats = values.to_numpy(dtype=float, na_value=np.nan)
    whole = np.isfinite(floats) & (np.floor(floats) == floats) & (np.abs(floats) < 2.0**63)
    ints = np.where(whole, floats, 0).astype(np.int64)
    return np.where(whole, ints.view(np.uint64), floats.view(np.uint64)), whole


def _entity_chunks(chunks: Iterator[pd.DataFrame], entity: list[str]) -> Iterator[pd.DataFrame]:
    """The chunks of a table ordered by entity, re-cut so each holds whole entities: a chunk's
    last entity (which may go on in the next chunk) is held back and put in front of the
    next. An entity longer than a chunk makes one chunk of its own, whole."""
    carry: pd.DataFrame | None = None
    for chunk in chunks:
        if carry is not None and len(carry):
            chunk = pd.concat([carry, chunk], ignore_index=True)
        if not len(chunk):
            continue
        hashed = entity_hashes(chunk[entity])
        tail = len(chunk) - int(np.argmax(hashed[::-1] != hashed[-1])) if (hashed != hashed[-1]).any() else 0
        carry = chunk.iloc[tail:].reset_index(drop=True)
        if tail:
            yield chunk.iloc[:tail].reset_index(drop=True)
    if carry is not None and len(carry):
        yield carry


def stream_quality(
    stream: StreamPlan, columns: list[str], manifest: dict, family: str
) -> tuple[list[str], int]:
    """(problems, rows checked): ``runs.data.quality_errors`` of the whole batch as a score run
    asks it (``check_history`` and ``outcomes`` off), computed over every chunk of ``stream`` in
    a pass that reads only the columns it checks. ``columns`` are the batch's (its first chunk's,
    targets dropped): the checks see those only, as the in-memory one sees the batch without its
    targets. Null and out-of-range counts are summed; a duplicate on the grain is found across
    chunks by one 64-bit hash of its key per row (``entity_hashes``: 8 bytes a row, 400 MB at
    50M rows), sorted once at the end — two keys of one hash (odds about n²/2⁶⁵ for n rows) would
    count one false duplicate. The messages are runs.data's (``null_problem``, ``duplicate_problem``,
    ``range_problem``), as quality_errors words them."""
    config = stage_config(manifest or {}, "quality")
    present = set(columns)
    max_null = config.get("max_null_ratio")
    required = required_columns(manifest, family, outcomes=False)
    nulls = {c: 0 for c in (required or columns) if c in present} if max_null is not None else {}
    grain = (
        [c for c in grain_columns(manifest or {}) if c in present] if config.get("unique_grain", True) else []
    )
    ranges = {c: b for c, b in (config.get("ranges") or {}).items() if c in present}
    below = {c: 0 for c, b in ranges.items() if "min" in b}
    above = {c: 0 for c, b in ranges.items() if "max" in b}
    hashes = np.empty(stream.rows if grain else 0, dtype=np.uint64)
    rows = 0
    for chunk in stream._read(list(dict.fromkeys([*nulls, *grain, *ranges])) or list(columns[:1])):
        end = rows + len(chunk)
        for col in nulls:
            nulls[col] += int(chunk[col].isna().sum())
        if grain:
            if end > len(hashes):  # a CSV's rows are an upper bound: never more, but be safe
                hashes = np.concatenate((hashes, np.empty(end - len(hashes), dtype=np.uint64)))
            hashes[rows:end] = entity_hashes(chunk[grain])
        for col, bounds in ranges.items():
            values = pd.to_numeric(chunk[col], errors="coerce")
            if col in below:
                below[col] += int((values < bounds["min"]).sum())
            if col in above:
                above[col] += int((values > bounds["max"]).sum())
        rows = end
    errors = [
        null_problem(col, count / rows, max_null)
        for col, count in nulls.items()
        if rows and count / rows > max_null
    ]
    if grain:
        hashes = hashes[:rows]
        hashes.sort()
        duplicates = int(np.count_nonzero(hashes[1:] == hashes[:-1]))
        if duplicates:
            errors.append(duplicate_problem(duplicates, grain))
    for col, bounds in ranges.items():
        if below.get(col):
            errors.append(range_problem(col, below[col], bounds["min"], "below"))
        if above.get(col):
            errors.append(range_problem(col, above[col], bounds["max"], "above"))
    return errors, rows


class PredictionWriter:
    """predictions.parquet and predictions.csv written a chunk at a time: the Parquet file with
    ``pyarrow.parquet.ParquetWriter`` (one row group a chunk; the schema, with its pandas
    metadata, of the first chunk), the CSV appended (``mlworkspace.csvsafe.write_csv``, header
    once). Like the in-memory path, a chunk pyarrow refuses (e.g. mixed types) drops the Parquet
    file and the CSV goes on: ``parquet_error`` says why. Counts rows and chunks, and the
    prediction's minimum, mean and maximum, incrementally."""

    def __init__(self, out_dir: Path, prediction_column: str):
        self.parquet_path, self.csv_path = out_dir / "predictions.parquet", out_dir / "predictions.csv"
        self.column = prediction_column
        self.rows = self.chunks = 0
        self.total, self.low, self.high = 0.0, math.inf, -math.inf
        self.parquet_error: str | None = None
        self._writer = None
        self._schema = None
        self.csv_path.unlink(missing_ok=True)

    def write(self, scored: pd.DataFrame) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        write_csv(scored, self.csv_path, mode="a", header=self.chunks == 0)
        if self.parquet_error is None:
            try:
                table = pa.Table.from_pandas(scored, schema=self._schema, preserve_index=False)
                if self._writer is None:
                    self._schema = table.schema
                    self._writer = pq.ParquetWriter(self.parquet_path, self._schema)
                self._writer.write_table(table)
            except (ValueError, TypeError, pa.ArrowException) as exc:
                self._drop_parquet(str(exc))
        values = scored[self.column].to_numpy(dtype=float)
        finite = values[np.isfinite(values)]
        if len(finite):
            self.total += float(finite.sum())
            self.low, self.high = min(self.low, float(finite.min())), max(self.high, float(finite.max()))
        self.rows += len(scored)
        self.chunks += 1

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None

    def _drop_parquet(self, reason: str) -> None:
        self.close()
        self.parquet_path.unlink(missing_ok=True)
        self.parquet_error = reason[:200] or "pyarrow refused a chunk"

    def summary(self) -> str:
        """The prediction's range and mean over every row ("min 1.2, mean 3.4, max 9.9")."""
        if self.low > self.high:
            return "no finite predictions"
        return f"min {self.low:.4g}, mean {self.total / self.rows:.4g}, max {self.high:.4g}"
