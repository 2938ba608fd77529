"""A retraining window of several datasets (issue #16 §3) is combined chunk by chunk into one
Parquet dataset: the same rows and values as pandas.concat of the datasets read whole (what the
combination did before), with no dataset ever read whole; datasets that cannot be combined are a
skip naming the dataset and the column."""

import io
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.utils import timezone

from monitoring.models import Retrain, RetrainStatus
from monitoring.services import retraining
from monitoring.services.retraining import Skip
from recipes.models import Recipe
from runs import dataset_files
from runs.models import Dataset, DatasetStatus
from runs.services import dataset_create
from runs.tests.factories import register

pytestmark = pytest.mark.django_db
PRICING = "recipe_pricing_base"
CHUNK = 4  # rows per chunk in these tests: every dataset below spans several chunks


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch):
    monkeypatch.setattr(retraining, "COMBINE_CHUNK_ROWS", CHUNK)


def upload(user, name: str, frame: pd.DataFrame, fmt: str, *, row_group: int | None = None) -> Dataset:
    """`frame` uploaded as CSV, or as Parquet without pandas' metadata (as Spark or DuckDB write
    it: an integer column with gaps is int64 with nulls, not pandas' Int64)."""
    buffer = io.BytesIO()
    if fmt == "csv":
        frame.to_csv(buffer, index=False)
    else:
        table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
        pq.write_table(table, buffer, row_group_size=row_group)
    file = SimpleUploadedFile(f"{name}.{fmt}", buffer.getvalue())
    dataset = dataset_create(user=user, upload=file, name=name, recipe=Recipe.objects.get(pk=PRICING))
    assert dataset.status == DatasetStatus.READY
    return dataset


def concat_before(datasets: list[Dataset]) -> pd.DataFrame:
    """What the combination was before: every dataset read whole, concatenated, written to
    Parquet in memory — read back as the new dataset would be."""
    frame = pd.concat([dataset_files.read_frame(d) for d in datasets], ignore_index=True)
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    buffer.seek(0)
    return pd.read_parquet(buffer)


def forbid_whole_reads(monkeypatch) -> None:
    """dataset_files.read_frame (a whole dataset in memory) fails the test from now on."""

    def whole(dataset):
        raise AssertionError(f"dataset '{dataset.name}' was read whole")

    monkeypatch.setattr(dataset_files, "read_frame", whole)


def combine(datasets: list[Dataset], user, monkeypatch) -> Dataset:
    forbid_whole_reads(monkeypatch)
    return retraining._combine(datasets, recipe=Recipe.objects.get(pk=PRICING), user=user)


def test_csv_and_parquet_datasets_combine_as_concat_did_chunk_by_chunk(baselines, user, monkeypatch):
    # Parquet: `units` has a gap only in its last row group (read per chunk as int, then float),
    # `promo` yes/no with a gap (bool, then objects), `note` text.
    first = pd.DataFrame(
        {
            "store": [f"s{i}" for i in range(10)],
            "units": pd.array([*range(9), None], dtype="Int64"),
            "price": np.linspace(1.0, 2.0, 10),
            "promo": [True, False] * 4 + [None, True],
            "note": ["a", "b"] * 5,
        }
    )
    # CSV: whole numbers in its first chunk, decimals further down (the whole file: float);
    # `price` whole numbers (int, beside the Parquet's floats); `note` never filled (float NaN).
    second = pd.DataFrame(
        {
            "store": [f"t{i}" for i in range(9)],
            "units": [1, 2, 3, 4, 5, 6, 7, 8.5, 9],
            "price": [3, 4, 5, 6, 7, 8, 9, 10, 11],
            "promo": [False, True, True, None, False, False, True, True, False],
            "note": [None] * 9,
        }
    )
    # Parquet with its columns in another order: integer units throughout.
    third = pd.DataFrame(
        {"note": ["c"] * 5, "price": [1.5] * 5, "units": [7] * 5, "store": ["u"] * 5, "promo": [True] * 5}
    )
    datasets = [
        upload(user, "first", first, "parquet", row_group=CHUNK),
        upload(user, "second", second, "csv"),
        upload(user, "third", third, "parquet"),
    ]
    before = concat_before(datasets)
    assert before["units"].dtype == float and before["price"].dtype == float  # the mixing tested

    combined = combine(datasets, user, monkeypatch)

    assert combined.status == DatasetStatus.READY and combined.row_count == 24
    assert combined.name == "Retrain data: first, second, third"
    with dataset_files.local_copy(combined) as path:
        assert pq.ParquetFile(path).num_row_groups == 3 + 3 + 2  # one per chunk: streamed
        after = pd.read_parquet(path)
    pd.testing.assert_frame_equal(after, before)


def test_integer_datasets_stay_integer(baselines, user, monkeypatch):
    frame = pd.DataFrame({"store": ["a", "b", "c", "d", "e"], "units": [1, 2, 3, 4, 5]})
    datasets = [upload(user, "one", frame, "csv"), upload(user, "two", frame, "parquet", row_group=2)]
    before = concat_before(datasets)
    with dataset_files.local_copy(combine(datasets, user, monkeypatch)) as path:
        after = pd.read_parquet(path)
    assert after["units"].dtype == np.int64
    pd.testing.assert_frame_equal(after, before)


def test_a_gap_in_a_later_row_group_types_the_whole_parquet_column(baselines, user, monkeypatch):
    """The first chunks of `units` and `promo` read as int and bool, the file (a gap in its last
    row group) as float and objects: the combination has the file's types, not the first chunk's."""
    gaps = pd.DataFrame(
        {
            "store": list("abcdefghij"),
            "units": pd.array([*range(9), None], dtype="Int64"),
            "promo": [True, False] * 4 + [None, True],
        }
    )
    whole = pd.DataFrame({"store": ["k", "l"], "units": [1, 2], "promo": [True, False]})
    datasets = [upload(user, "gaps", gaps, "parquet", row_group=CHUNK), upload(user, "whole", whole, "csv")]
    before = concat_before(datasets)
    assert before["units"].dtype == float and before["promo"].dtype == object
    with dataset_files.local_copy(combine(datasets, user, monkeypatch)) as path:
        after = pd.read_parquet(path)
    pd.testing.assert_frame_equal(after, before)


@pytest.mark.parametrize("order", ["missing", "extra"])
def test_a_column_one_dataset_lacks_is_a_skip_naming_the_dataset_and_the_column(
    baselines, user, monkeypatch, order
):
    full = pd.DataFrame({"store": ["a", "b"], "units": [1, 2], "price": [1.0, 2.0]})
    short = full.drop(columns="price")
    pair = [("full", full), ("short", short)] if order == "missing" else [("short", short), ("full", full)]
    datasets = [upload(user, name, frame, "csv") for name, frame in pair]
    with pytest.raises(Skip, match="dataset 'short' has no column 'price', which 'full' has"):
        combine(datasets, user, monkeypatch)
    assert Dataset.objects.count() == 2  # nothing stored


def test_text_beside_numbers_is_a_skip_naming_the_column(baselines, user, monkeypatch):
    numbers = pd.DataFrame({"store": ["a", "b"], "code": [1.5, 2.5]})
    text = pd.DataFrame({"store": ["c", "d"], "code": ["x", "y"]})
    datasets = [upload(user, "numbers", numbers, "parquet"), upload(user, "text", text, "csv")]
    with pytest.raises(Skip, match="column 'code' holds values of different kinds .*'numbers'.*'text'"):
        combine(datasets, user, monkeypatch)


def test_a_combination_too_large_to_profile_inline_is_profiled_before_its_run(
    baselines, user, monkeypatch, settings
):
    """A combined file over DATASET_INLINE_PROFILE_BYTES would wait for a worker's profile
    task, and a run refuses a dataset until then: the retrain profiles it itself."""
    frame = pd.DataFrame({"store": [f"s{i}" for i in range(6)], "units": range(6)})
    datasets = [upload(user, "one", frame, "csv"), upload(user, "two", frame, "csv")]
    settings.DATASET_INLINE_PROFILE_BYTES = 1
    combined = combine(datasets, user, monkeypatch)
    assert combined.status == DatasetStatus.READY and combined.row_count == 12
    assert [c["name"] for c in combined.columns_json] == ["store", "units"]


def test_the_window_trains_on_the_combination_of_the_datasets_before_the_newest(baselines, user, monkeypatch):
    frame = pd.DataFrame({"store": ["a", "b", "c"], "units": [1, 2, 3]})
    older, old = upload(user, "older", frame, "csv"), upload(user, "old", frame, "parquet")
    newest = upload(user, "newest", frame.rename(columns={"units": "sold"}), "csv")
    champion = SimpleNamespace(recipe_id=PRICING, recipe=Recipe.objects.get(pk=PRICING))
    forbid_whole_reads(monkeypatch)
    train, window = retraining._dataset_window(champion, 2, user)
    assert window["train"] == {"dataset_ids": [older.pk, old.pk], "dataset_id": train.pk}
    assert window["holdout"] == {"dataset_id": newest.pk, "name": "newest"}
    assert train.row_count == 6 and train.format == "parquet"
    # Recorded by its retrain, the combination is not an upload of a later window, whose
    # datasets' columns differ: a skip naming the dataset and the column.
    model = register(user, PRICING)
    Retrain.objects.create(
        id="retrain_1",
        recipe_id=PRICING,
        champion=model,
        trigger="manual",
        status=RetrainStatus.DECIDED,
        window_json=window,
        created_at=timezone.now(),
    )
    upload(user, "newer", frame, "csv")
    with pytest.raises(Skip, match="dataset 'newest' has no column 'units', which 'old' has"):
        retraining._dataset_window(champion, 2, user)
