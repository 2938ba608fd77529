"""A monitoring check of a dataset larger than CHECK_STREAM_ROWS reads it in chunks (issue #16
§3): the same feature drift and freshness as the in-memory check, over every row; prediction
drift and performance on the first CHECK_SAMPLE_ROWS rows, which the snapshot says."""

import io
import math
from datetime import UTC, datetime

import pandas as pd
import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile

from mlworkspace.errors import Conflict
from monitoring.freshness import FreshnessStream, batch_freshness
from monitoring.services import checks, model_check
from runs import data as run_data
from runs import dataset_files
from runs.families import get_family
from runs.services import dataset_create
from runs.tests.factories import trained_model

pytestmark = pytest.mark.django_db
LOCATION = "recipe_location_base"  # drift: 4 numeric + 1 categorical; freshness on observed_at
ROWS = 2_500
NOW = datetime(2026, 12, 3, 12, 0, tzinfo=UTC)


@pytest.fixture
def small_chunks(settings):
    settings.CHECK_STREAM_ROWS = 1_000
    settings.CHECK_CHUNK_ROWS = 300
    settings.CHECK_SAMPLE_ROWS = 500
    return settings


@pytest.fixture
def model(baselines, user):
    return trained_model(user, recipe_id=LOCATION, rows=3000)


def batch_frame() -> pd.DataFrame:
    """The location family's rows with drift, nulls, and the newest observation in the last
    row (outside the first CHECK_SAMPLE_ROWS rows and the first chunk)."""
    frame = get_family("location_scoring").generate(ROWS, 5)
    frame["median_income"] = frame["median_income"] * 1.4
    frame.loc[frame.index[::7], "foot_traffic"] = None
    frame.loc[frame.index[-1], "observed_at"] = pd.Timestamp("2026-12-01 08:00:00")
    frame.loc[frame.index[-1], "competitor_count"] = 3
    return frame


def upload(model, user, frame: pd.DataFrame, fmt: str):
    if fmt == "parquet":
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        content = buffer.getvalue()
    else:
        content = frame.to_csv(index=False).encode()
    dataset = dataset_create(
        user=user, upload=SimpleUploadedFile(f"sites.{fmt}", content), recipe=model.recipe
    )
    assert dataset.status == "ready" and dataset.row_count == ROWS, dataset.validation_json
    return dataset


def check(model, dataset):
    return model_check(model=model, source="check", dataset_id=dataset.pk, captured_at=NOW)


def assert_same_features(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name, entry in expected.items():
        assert got[name].keys() == entry.keys(), name
        for key, value in entry.items():
            if isinstance(value, float):
                assert math.isclose(got[name][key], value, rel_tol=0, abs_tol=1e-12), (name, key)
            else:
                assert got[name][key] == value, (name, key)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_streamed_check_gives_the_in_memory_feature_drift_and_freshness(
    model, user, small_chunks, monkeypatch, fmt
):
    dataset = upload(model, user, batch_frame(), fmt)
    # The reference: the same dataset loaded whole.
    small_chunks.CHECK_STREAM_ROWS = 10_000_000
    whole = check(model, dataset)
    assert "streamed" not in whole.data_freshness_json["batch"]
    small_chunks.CHECK_STREAM_ROWS = 1_000

    read = []
    real_read_chunks = checks.read_chunks

    def recorded(path, fmt, *, columns, chunk_rows):
        for chunk in real_read_chunks(path, fmt, columns=columns, chunk_rows=chunk_rows):
            read.append((len(chunk), list(chunk.columns)))
            yield chunk

    def no_whole_read(dataset):
        raise AssertionError("a streamed check must not load the table")

    monkeypatch.setattr(checks, "read_chunks", recorded)
    monkeypatch.setattr(dataset_files, "read_frame", no_whole_read)
    streamed = check(model, dataset)

    assert streamed.row_count == whole.row_count == ROWS
    assert_same_features(streamed.drift_metrics_json["features"], whole.drift_metrics_json["features"])
    for key in ("max_psi", "drifted_features", "drifted_count"):
        assert streamed.drift_metrics_json[key] == pytest.approx(whole.drift_metrics_json[key])
    assert "median_income" in streamed.drift_metrics_json["drifted_features"]
    assert streamed.drift_metrics_json["features"]["median_income"]["n_cur"] == ROWS
    # Freshness over every row: the newest observation is the last row's.
    fresh, fresh_whole = streamed.data_freshness_json, whole.data_freshness_json
    assert fresh["features"] == fresh_whole["features"]
    assert fresh["features"]["observed_at"]["newest"] == "2026-12-01T08:00:00+00:00"
    assert fresh["max_age_hours_observed"] == fresh_whole["max_age_hours_observed"]
    # Prediction drift and performance: the first 500 rows, and the snapshot says so.
    batch = fresh["batch"]
    assert batch["streamed"] is True and batch["sample_rows"] == 500
    assert batch["dataset_id"] == dataset.pk
    assert streamed.drift_metrics_json["prediction"]["n_cur"] == 500
    assert whole.drift_metrics_json["prediction"]["n_cur"] == ROWS
    assert set(streamed.performance_metrics_json) == set(whole.performance_metrics_json)
    assert streamed.performance_metrics_json != whole.performance_metrics_json
    # Read in chunks of at most 300 rows, every row once, only the columns drift and
    # freshness need (the drift features, the time column, the watched features).
    stream_chunks = [(n, cols) for n, cols in read if "site_id" not in cols]
    assert sum(n for n, _ in stream_chunks) == ROWS
    assert max(n for n, _ in stream_chunks) <= 300 and len(stream_chunks) >= 9
    assert set(stream_chunks[0][1]) == {
        "population_3km",
        "median_income",
        "competitor_count",
        "foot_traffic",
        "region",
        "observed_at",
    }


def test_a_dataset_at_the_threshold_is_checked_in_memory(model, user, small_chunks):
    small_chunks.CHECK_STREAM_ROWS = ROWS  # "more than" CHECK_STREAM_ROWS streams
    snapshot = check(model, upload(model, user, batch_frame(), "parquet"))
    assert "streamed" not in snapshot.data_freshness_json["batch"]
    assert snapshot.drift_metrics_json["prediction"]["n_cur"] == ROWS


def test_a_streamed_check_of_an_altered_file_is_a_conflict_naming_the_dataset(model, user, small_chunks):
    dataset = upload(model, user, batch_frame(), "csv")
    default_storage.delete(dataset.file.name)
    default_storage.save(dataset.file.name, ContentFile(b"site_id,region\nx,north\n"))
    with pytest.raises(Conflict, match=dataset.pk):
        check(model, dataset)


def test_read_chunks_names_a_corrupt_file_without_its_path(tmp_path):
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 not really")
    with pytest.raises(ValueError, match="could not read the file as PARQUET") as info:
        list(run_data.read_chunks(path, "parquet", columns=["a"], chunk_rows=10))
    assert str(tmp_path) not in str(info.value)


@pytest.mark.parametrize("real_times", [True, False])
def test_freshness_of_chunks_equals_freshness_of_the_whole_frame(real_times):
    """The newest timestamp per feature is a max over chunks; a synthetic batch's shift uses the
    newest row of all chunks. A watched feature null in every chunk but one, and one missing."""
    frame = pd.DataFrame(
        {
            "observed_at": pd.date_range("2026-01-01", periods=12, freq="D").astype(str),
            "foot_traffic": [1.0] * 3 + [None] * 9,  # its newest value is in the first chunk
            "competitor_count": [None] * 11 + [2.0],  # in the last chunk only
        }
    )
    manifest = {
        "monitoring": {
            "freshness": {
                "max_age_hours": 100,
                "features": ["observed_at", "foot_traffic", "competitor_count", "nope"],
            }
        }
    }
    whole = batch_freshness(frame, manifest, "location_scoring", real_times=real_times, now=NOW)
    stream = FreshnessStream(manifest, "location_scoring")
    assert stream.columns(list(frame.columns)) == ["observed_at", "foot_traffic", "competitor_count"]
    for start in range(0, 12, 5):
        stream.add(frame.iloc[start : start + 5])
    assert stream.report(real_times=real_times, now=NOW) == whole
    assert whole["features"]["nope"]["error"] == "missing column"
    assert whole["features"]["competitor_count"]["newest"] == whole["features"]["observed_at"]["newest"]
    assert (
        whole["features"]["foot_traffic"]["age_hours"] - whole["features"]["observed_at"]["age_hours"]
        == 9 * 24
    )
