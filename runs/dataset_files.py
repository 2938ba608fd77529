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


def read_head(dataset: Dataset, rows: int) -> pd.DataFrame:
    """The first `rows` rows (the dataset page's preview)."""
    with local_copy(dataset) as path:
        return run_data.read_first_rows(path, dataset.format, rows)
