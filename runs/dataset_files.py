"""A dataset's file, read through the file store (mlworkspace.storage): a checked local copy
(its sha256 is the one recorded at upload), never a path into the media folder. A missing
or altered file is a NotFound / Conflict naming the dataset."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from mlworkspace import storage

from . import data as run_data
from .models import Dataset


def _what(dataset: Dataset) -> str:
    return f"The file of dataset '{dataset.name}' ({dataset.pk})"


def fetch(dataset: Dataset, folder: Path) -> Path:
    """Download the dataset's file (checked) into the local `folder`; returns its path."""
    name = dataset.file.name
    return storage.fetch(name, dataset.sha256, folder / Path(name).name, what=_what(dataset))


@contextmanager
def local_copy(dataset: Dataset) -> Iterator[Path]:
    """A checked local copy of the dataset's file for the duration of the block."""
    with storage.local_copy(dataset.file.name, dataset.sha256, what=_what(dataset)) as path:
        yield path


def download(dataset: Dataset):
    """The response giving a user the dataset's file (mlworkspace.storage.download)."""
    return storage.download(
        dataset.file.name,
        dataset.sha256,
        filename=f"{dataset.name}.{dataset.format}",
        what=_what(dataset),
    )


def read_frame(dataset: Dataset) -> pd.DataFrame:
    """The whole table (ValueError in words when it cannot be read as its format)."""
    with local_copy(dataset) as path:
        return run_data.read_table(path, dataset.format)


def read_spread(dataset: Dataset, max_rows: int) -> run_data.SpreadRows:
    """At most `max_rows` rows that represent the dataset (runs.data.read_spread: every row of a
    small one; evenly spread row groups of a Parquet file, the first rows of a CSV), for a check
    in the web process that must not load a large file whole."""
    with local_copy(dataset) as path:
        return run_data.read_spread(path, dataset.format, max_rows=max_rows, table_rows=dataset.row_count)


def read_sample(dataset: Dataset, *, max_rows: int, by: list[str] | None = None) -> tuple[pd.DataFrame, int]:
    """(frame, the dataset's rows): every row, or a uniform sample of about `max_rows` rows read
    chunk by chunk, whole groups of the `by` columns kept (runs.data.read_sample)."""
    with local_copy(dataset) as path:
        return run_data.read_sample(path, dataset.format, max_rows=max_rows, by=by)


def read_head(dataset: Dataset, rows: int) -> pd.DataFrame:
    """The first `rows` rows (the dataset page's preview)."""
    with local_copy(dataset) as path:
        return run_data.read_first_rows(path, dataset.format, rows)
