"""A score run's batch read chunk by chunk and its predictions written chunk by chunk, so a
worker's memory holds one chunk, not the batch (issue #16 §3). Plain pandas/pyarrow, no Django.

``plan`` decides whether a batch streams: a file of more than ``stream_rows`` rows (the run's
``data.stream_rows``, settings.SCORE_STREAM_ROWS) is read ``chunk_rows`` at a time (Parquet
batches of its row groups, CSV chunks), unless one of two things would make its scores or
its columns differ from the in-memory path's, in which case the run scores it in memory and
its log says why:

* **Whole entities.** A family that predicts an entity's later periods from its earlier ones
  (``SAMPLE_BY_SERIES``: forecasting) must see each series whole in one predict call. Chunks
  are cut only between series, so a file streams only when it is *ordered by series* (each
  series' rows contiguous; the order of the series and of the days within one is free). A
  first pass reads only the series columns, chunk by chunk, and checks it: a series seen
  again after another one began means the file is not ordered. Sorting a file larger than
  memory would need an external sort (a second copy of the file on disk and several passes):
  not done here — a data pipeline writes its files by series cheaply, and the fallback is
  the behaviour of before, so nothing that scored before stops scoring.
* **CSV types.** pandas infers a CSV column's type from the rows it reads: a chunk of whole
  numbers is ``int64`` where the whole file (some decimals or gaps further down) is
  ``float64``. The first pass also records each chunk's kind of every column and the second
  reads with the type the whole file has (``float64``, ``str``, or Python objects for a yes/no
  column with gaps); a mix pandas types in no reproducible way (yes/no beside numbers) falls
  back to memory, naming the column.

A chunk that cannot be read is a ``ChunkReadError`` naming the dataset and the rows read
before it.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlworkspace.csvsafe import write_csv

from .data import SAMPLE_CHUNK_ROWS, dtype_name, read_chunks, table_columns, table_shape


class ChunkReadError(ValueError):
    """A chunk of a streamed batch could not be read (the message names the dataset)."""


@dataclass
class StreamPlan:
    """How a batch streams: its file, its rows (exact for Parquet, an upper bound for CSV
    until read), the rows a chunk holds, the series columns chunks are cut between (None: any
    row), and for CSV the types read_csv is given and the columns made Python objects."""

    path: Path
    fmt: str
    name: str
    rows: int
    chunk_rows: int
    entity: list[str] | None = None
    dtypes: dict[str, str] = field(default_factory=dict)
    as_object: list[str] = field(default_factory=list)

    def chunks(self) -> Iterator[pd.DataFrame]:
        """The batch, chunk by chunk in file order (whole series per chunk when ``entity``)."""
        raw = self._read()
        yield from (_entity_chunks(raw, self.entity) if self.entity else raw)

    def head(self) -> pd.DataFrame:
        """The first chunk (what the quality and feature_prep stages of a streamed run check)."""
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
                chunk[col] = chunk[col].astype(object)
            rows += len(chunk)
            yield chunk


def plan(
    path: Path,
    fmt: str,
    *,
    name: str,
    stream_rows: int,
    chunk_rows: int | None,
    entity: list[str] | None = None,
) -> tuple[StreamPlan | None, str]:
    """(the plan, "") when the batch streams; (None, why not) when it is scored in memory ("" when
    it is small enough). Reads the file once before streaming only when it must (CSV types,
    series order); a chunk it cannot read is a ChunkReadError."""
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
            if order.problem:
                return None, f"it is not ordered by series ({', '.join(entity)}): {order.problem}"
            stream.entity = list(entity)
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
        hashed = _entity_hashes(keys)
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


def _entity_hashes(keys: pd.DataFrame) -> np.ndarray:
    normal = pd.DataFrame(
        {
            col: keys[col].astype(float)
            if pd.api.types.is_numeric_dtype(keys[col]) and not pd.api.types.is_bool_dtype(keys[col])
            else keys[col].astype(str)
            for col in keys.columns
        }
    )
    return pd.util.hash_pandas_object(normal, index=False).to_numpy()


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
        hashed = _entity_hashes(chunk[entity])
        tail = len(chunk) - int(np.argmax(hashed[::-1] != hashed[-1])) if (hashed != hashed[-1]).any() else 0
        carry = chunk.iloc[tail:].reset_index(drop=True)
        if tail:
            yield chunk.iloc[:tail].reset_index(drop=True)
    if carry is not None and len(carry):
        yield carry


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
