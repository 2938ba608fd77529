"""Training on a dataset larger than TRAIN_MAX_ROWS (issue #16 §3): the run reads a uniform
sample chunk by chunk — rows, or whole series for forecasting — and says so in its log; a
score run still reads every row."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from recipes.models import Recipe
from runs import data as run_data
from runs.executor import execute_run
from runs.families import get_family
from runs.models import Run, RunStatus
from runs.services import dataset_create, run_start


def table(tmp_path, frame: pd.DataFrame, fmt: str):
    path = tmp_path / f"t.{fmt}"
    if fmt == "parquet":
        frame.to_parquet(path, index=False, row_group_size=700)
    else:
        frame.to_csv(path, index=False)
    return path


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(run_data, "SAMPLE_CHUNK_ROWS", 900)  # many chunks from a small file


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_table_within_the_limit_is_read_whole(tmp_path, fmt):
    frame = pd.DataFrame({"a": np.arange(500), "b": np.arange(500) * 0.5})
    read, total = run_data.read_sample(table(tmp_path, frame, fmt), fmt, max_rows=500)
    assert total == 500
    pd.testing.assert_frame_equal(read, frame)


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_larger_table_gives_a_uniform_row_sample_of_about_max_rows(tmp_path, fmt, small_chunks):
    frame = pd.DataFrame({"a": np.arange(10_000), "b": np.arange(10_000) % 7})
    path = table(tmp_path, frame, fmt)
    read, total = run_data.read_sample(path, fmt, max_rows=2_000, seed=3)
    assert total == 10_000
    assert 1_700 <= len(read) <= 2_300
    assert read["a"].is_unique and set(read["a"]) <= set(frame["a"])
    assert read["a"].min() < 1_000 and read["a"].max() > 9_000  # from every chunk, not the head
    again, _ = run_data.read_sample(path, fmt, max_rows=2_000, seed=3)
    pd.testing.assert_frame_equal(read, again)  # reproducible with its seed


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_sample_by_series_keeps_each_series_whole(tmp_path, fmt, small_chunks):
    series, days = 200, 50
    frame = pd.DataFrame(
        {
            "store": np.repeat(np.arange(series) % 10, days),
            "sku": np.repeat(np.arange(series) // 10, days),
            "day": np.tile(np.arange(days), series),
        }
    )
    read, total = run_data.read_sample(
        table(tmp_path, frame, fmt), fmt, max_rows=2_000, by=["store", "sku"], seed=1
    )
    assert total == series * days
    sizes = read.groupby(["store", "sku"]).size()
    assert (sizes == days).all()  # no series cut by the chunks
    assert 25 <= len(sizes) <= 55  # about 2,000 / 10,000 of the 200 series


def test_a_sample_of_a_missing_grain_column_is_a_readable_error(tmp_path, small_chunks):
    frame = pd.DataFrame({"a": np.arange(3_000)})
    with pytest.raises(ValueError, match="no column"):
        run_data.read_sample(table(tmp_path, frame, "csv"), "csv", max_rows=100, by=["store"])


@pytest.mark.django_db
def test_a_run_on_a_large_dataset_trains_on_a_sample_and_says_so(baselines, user, settings):
    settings.TRAIN_MAX_ROWS = 1_000
    frame = get_family("pricing").generate(4_000, 1)
    dataset = dataset_create(
        user=user, upload=SimpleUploadedFile("big.csv", frame.to_csv(index=False).encode())
    )
    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_pricing_base"), dataset=dataset)
    execute_run(run.id)
    run.refresh_from_db()
    assert run.status == RunStatus.SUCCEEDED, run.error
    (line,) = run.logs.filter(message__contains="TRAIN_MAX_ROWS").values_list("message", flat=True)
    assert "4,000 rows" in line and "uniform sample of rows" in line


@pytest.mark.django_db
def test_a_forecasting_run_samples_whole_series(baselines, user, settings):
    family = get_family("forecasting")
    frame = family.generate(6_000, 1)
    settings.TRAIN_MAX_ROWS = len(frame) // 2
    dataset = dataset_create(
        user=user, upload=SimpleUploadedFile("series.parquet", _parquet(frame)), name="series"
    )
    run = run_start(user=user, recipe=Recipe.objects.get(pk="recipe_forecasting_base"), dataset=dataset)
    execute_run(run.id)
    run = Run.objects.get(pk=run.pk)
    assert run.status == RunStatus.SUCCEEDED, run.error
    (line,) = run.logs.filter(message__contains="TRAIN_MAX_ROWS").values_list("message", flat=True)
    assert "whole series" in line


def _parquet(frame: pd.DataFrame) -> bytes:
    import io

    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    return buffer.getvalue()


# --------------------------------------------------------------------------- profiling in chunks


def test_a_chunked_profile_equals_the_whole_tables_profile(tmp_path, small_chunks):
    rng = np.random.default_rng(0)
    n = 5_000
    frame = pd.DataFrame(
        {
            "price": np.where(rng.random(n) < 0.1, np.nan, rng.normal(10, 2, n)),
            "units": rng.integers(0, 50, n),
            "region": rng.choice(["north", "south", "east"], n),
            "day": pd.date_range("2024-01-01", periods=n, freq="D").strftime("%Y-%m-%d"),
            "stamp": pd.date_range("2024-01-01", periods=n, freq="37min").strftime("%Y-%m-%dT%H:%M:%S"),
            "note": ["n/a" if i % 900 == 5 else f"x{i}" for i in range(n)],
        }
    )
    for fmt in ("csv", "parquet"):
        path = table(tmp_path, frame, fmt)
        whole = run_data.describe_columns(run_data.read_table(path, fmt))
        chunked = run_data.describe_chunks(run_data.read_chunks(path, fmt))
        for expected, got in zip(whole, chunked, strict=True):
            assert got.keys() == expected.keys(), (fmt, expected["name"])
            for key, value in expected.items():
                assert got[key] == (pytest.approx(value) if isinstance(value, float) else value), (
                    fmt,
                    expected["name"],
                    key,
                )


def test_a_chunk_without_values_does_not_decide_a_columns_type(tmp_path, small_chunks):
    # The first 900-row CSV chunk of "note" is empty: pandas reads that chunk as float.
    frame = pd.DataFrame({"note": [None] * 900 + [f"x{i}" for i in range(900)], "n": np.arange(1_800)})
    path = table(tmp_path, frame, "csv")
    chunked = run_data.describe_chunks(run_data.read_chunks(path, "csv"))
    assert chunked == run_data.describe_columns(run_data.read_table(path, "csv"))
    assert chunked[0]["dtype"] == "string"
    empty = pd.DataFrame({"gone": [np.nan] * 1_000})  # no values at all: the reader's type
    assert run_data.describe_chunks([empty.iloc[:500], empty.iloc[500:]])[0]["dtype"] == "float"


def test_a_chunked_profile_stops_counting_distinct_values_past_the_cap(tmp_path, small_chunks, monkeypatch):
    monkeypatch.setattr(run_data, "DISTINCT_MAX", 1_000)
    frame = pd.DataFrame({"id": np.arange(3_000), "flag": np.arange(3_000) % 2})
    columns = run_data.describe_chunks(run_data.read_chunks(table(tmp_path, frame, "parquet"), "parquet"))
    assert [c["distinct"] for c in columns] == [None, 2]
    assert columns[0]["min"] == 0 and columns[0]["max"] == 2_999


@pytest.mark.django_db
def test_a_large_upload_is_profiled_in_chunks_and_checked_on_a_sample(
    baselines, user, settings, small_chunks
):
    settings.DATASET_CHECK_SAMPLE_ROWS = 1_000
    settings.DATASET_INLINE_PROFILE_ROWS = 10  # profiled by the worker task, as a large upload is
    frame = get_family("pricing").generate(4_000, 1)
    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    dataset = dataset_create(
        user=user, upload=SimpleUploadedFile("big.parquet", _parquet(frame)), recipe=recipe
    )
    assert dataset.status == "processing"
    from runs.services import dataset_profile

    assert dataset_profile(dataset_id=dataset.pk) == "ready"
    dataset.refresh_from_db()
    assert dataset.row_count == len(frame)
    expected = run_data.describe_columns(frame)
    assert [(c["name"], c["dtype"], c["distinct"]) for c in dataset.columns_json] == [
        (c["name"], c["dtype"], c["distinct"]) for c in expected
    ]
    assert dataset.validation_json["valid"] is True
    assert 700 <= dataset.validation_json["sample_rows"] <= 1_300
