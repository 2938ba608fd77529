"""A score run whose batch has more rows than its ``data.stream_rows`` reads it chunk by chunk
and writes its predictions chunk by chunk (runs.score_stream, issue #16 §3): the same
predictions as the in-memory path, for every family, from Parquet and from CSV; a
forecasting file out of series order is partitioned into bucket files on disk (the same
predictions, in another row order) and the log says so; the quality stage checks every chunk
(a duplicate in the last chunk fails the run with the in-memory run's message); a chunk that
cannot be read fails the run naming the dataset. All but the worker test drive
runs.pipeline.execute directly (no database); that one runs a real score run through a worker's
executor. runs/tests/test_score_stream_quality.py checks the streamed quality counts alone."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlworkspace import storage
from recipes import baselines
from runs import artifacts
from runs.data import read_table
from runs.executor import execute_run
from runs.families import get_family, worlds
from runs.models import Run, RunLog
from runs.pipeline import StageFailed, execute
from runs.score_stream import StreamPlan, _csv_type, _entity_chunks, plan
from runs.services import dataset_create, run_start
from runs.tests.factories import trained_model

FAMILIES = ["forecasting", "pricing", "next_best_action", "location_scoring"]
TRAIN_ROWS = {"forecasting": 10 * 800, "pricing": 3000, "next_best_action": 3000, "location_scoring": 2000}
SCORE_ROWS = {"forecasting": 10 * 300, "pricing": 3000, "next_best_action": 3000, "location_scoring": 3000}
SMALL_TREES = {"n_estimators": 15, "num_boost_round": 15}
CHUNK = 500


def _manifest(name: str) -> dict:
    """The baseline's manifest with small models and no explain stage (fast)."""
    manifest = copy.deepcopy(baselines.manifest(name))
    stages = manifest["pipeline"]["stages"]
    manifest["pipeline"]["stages"] = [s for s in stages if s["type"] != "explain"]
    for stage in manifest["pipeline"]["stages"]:
        hyper = (stage.get("config") or {}).get("hyperparameters")
        if stage["type"] == "training" and hyper is not None:
            for key, value in SMALL_TREES.items():
                if key in hyper:
                    hyper[key] = value
    requirements = manifest.get("requirements") or {}
    requirements.pop("min_history", None)
    return manifest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """{family: (model folder, its training batch)}, each trained once for the module."""
    out = {}
    for name in FAMILIES:
        folder = tmp_path_factory.mktemp(f"train_{name}")
        batch = worlds.resolve(get_family(name), {"rows": TRAIN_ROWS[name], "seed": 5})
        spec = {
            "run_id": "train",
            "run_type": "train",
            "family": name,
            "manifest": _manifest(name),
            "data": {"synthetic": batch},
            "artifact_dir": str(folder),
            "model_dir": None,
            "threads": 1,
        }
        execute(spec, lambda *m: None)
        out[name] = (folder, batch)
    return out


def _batch(name: str, trained) -> pd.DataFrame:
    folder, train = trained[name]
    family = get_family(name)
    return worlds.generate(family, worlds.resolve(family, {"rows": SCORE_ROWS[name]}, after=train))


def _score(
    name, trained, path: Path, fmt: str, out: Path, stream_rows: int | None, logs: list | None = None
) -> tuple[dict, list]:
    """The score run's result and log lines (also appended to ``logs``, kept when it fails)."""
    folder, _ = trained[name]
    data = {"path": str(path), "format": fmt, "name": "sites-2026"}
    if stream_rows is not None:
        data.update(stream_rows=stream_rows, chunk_rows=CHUNK)
    spec = {
        "run_id": "score",
        "run_type": "score",
        "family": name,
        "manifest": _manifest(name),
        "data": data,
        "artifact_dir": str(out),
        "model_dir": str(folder / "model"),
        "model_schema": json.loads((folder / "schema.json").read_text()),
        "threads": 2,
    }
    logs = [] if logs is None else logs
    result = execute(spec, lambda *m: logs.append(m[2]) if m[0] == "log" else None)
    return result, logs


def _same_predictions(streamed: Path, whole: Path, key: list[str] | None = None) -> None:
    """The same files; with ``key``, the same rows in any order (matched by their key)."""
    a, b = pd.read_parquet(streamed / "predictions.parquet"), pd.read_parquet(whole / "predictions.parquet")
    if key:
        assert not a.duplicated(key).any()
        a, b = (f.sort_values(key, ignore_index=True) for f in (a, b))
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.dtypes.to_dict() == b.dtypes.to_dict()
    csv_a, csv_b = ((d / "predictions.csv").read_bytes().splitlines() for d in (streamed, whole))
    if key:  # the header first, then the same lines
        assert csv_a[0] == csv_b[0] and sorted(csv_a[1:]) == sorted(csv_b[1:])
    else:
        assert csv_a == csv_b


@pytest.mark.parametrize("name", FAMILIES)
def test_streamed_scores_equal_the_in_memory_ones(name, trained, tmp_path):
    batch = _batch(name, trained)
    if name == "forecasting":  # it streams only a file ordered by series
        batch = batch.sort_values(["series_id", "date"], kind="stable", ignore_index=True)
    path = tmp_path / "batch.parquet"
    batch.to_parquet(path, index=False, row_group_size=700)
    whole, whole_logs = _score(name, trained, path, "parquet", tmp_path / "whole", None)
    streamed, logs = _score(name, trained, path, "parquet", tmp_path / "streamed", 1000)

    _same_predictions(tmp_path / "streamed", tmp_path / "whole")
    scoring = streamed["scoring"]
    assert scoring["rows"] == whole["scoring"]["rows"] == len(batch)
    assert scoring["columns"] == whole["scoring"]["columns"]
    assert scoring["prediction_columns"] == whole["scoring"]["prediction_columns"]
    chunks = scoring["streamed"]["chunks"]
    assert chunks >= len(batch) // CHUNK - 1
    assert any(f"streamed {len(batch):,} rows in {chunks} chunks" in line for line in logs), logs
    assert any("computed incrementally over every row" in line for line in logs)
    assert any(
        f"quality: {len(batch):,} rows passed requirement, null, grain and range checks (every chunk" in line
        for line in logs
    ), logs
    assert not any("first chunk" in line for line in logs)
    assert not any("streamed" in line for line in whole_logs)
    assert set(streamed["artifacts"]) >= {"predictions.parquet", "predictions.csv"}
    # one row group a chunk: the file was written chunk by chunk
    assert pq.ParquetFile(tmp_path / "streamed" / "predictions.parquet").num_row_groups == chunks


def test_a_csv_batch_streams_with_the_whole_files_column_types(trained, tmp_path):
    name = "location_scoring"
    batch = _batch(name, trained)
    # Columns pandas types differently chunk by chunk: whole numbers then gaps (float64 for the
    # whole file), numbers then text (text for the whole file).
    batch["visits"] = np.arange(len(batch), dtype=float)
    batch.loc[len(batch) - 10 :, "visits"] = np.nan
    batch["code"] = [str(i) for i in range(len(batch))]
    batch.loc[len(batch) - 5, "code"] = "A-7"
    path = tmp_path / "batch.csv"
    batch.to_csv(path, index=False)
    _, whole_logs = _score(name, trained, path, "csv", tmp_path / "whole", None)
    streamed, logs = _score(name, trained, path, "csv", tmp_path / "streamed", 1000)

    _same_predictions(tmp_path / "streamed", tmp_path / "whole")
    frame = pd.read_parquet(tmp_path / "streamed" / "predictions.parquet")
    assert frame["visits"].dtype == np.float64 and frame["code"].iloc[0] == "0"
    assert streamed["scoring"]["streamed"]["chunks"] == 6
    assert any(f"streamed {len(batch):,} rows in 6 chunks" in line for line in logs)


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_forecasting_file_out_of_series_order_is_partitioned_on_disk(fmt, trained, tmp_path):
    name = "forecasting"
    batch = _batch(name, trained).sort_values(["date", "series_id"], ignore_index=True)  # day by day
    # Columns kept beside the predictions, with gaps in one series only (so in one bucket): a
    # yes/no column (Python objects in every chunk of the CSV) and text.
    gaps = batch["series_id"] == batch["series_id"].iloc[0]
    batch["checked"] = pd.Series(np.arange(len(batch)) % 2 == 0, dtype=object).mask(gaps)
    batch["comment"] = pd.Series([f"note {i}" for i in range(len(batch))]).mask(gaps)
    path = tmp_path / f"batch.{fmt}"
    batch.to_parquet(path, index=False) if fmt == "parquet" else batch.to_csv(path, index=False)
    result, logs = _score(name, trained, path, fmt, tmp_path / "streamed", 1000)
    _score(name, trained, path, fmt, tmp_path / "whole", None)

    _same_predictions(tmp_path / "streamed", tmp_path / "whole", key=["series_id", "date"])
    buckets = -(-len(batch) // CHUNK)  # rows / chunk_rows, rounded up
    note = next(line for line in logs if "partitioned into" in line)
    assert "sites-2026" in note and "not ordered by series (series_id)" in note
    assert f"partitioned into {buckets} buckets on disk" in note
    assert not any("scored in memory" in line for line in logs)
    # Each chunk scored was one bucket: every series whole in one of them (one row group a chunk).
    chunks = result["scoring"]["streamed"]["chunks"]
    assert 1 < chunks <= buckets and result["scoring"]["rows"] == len(batch)
    parquet = pq.ParquetFile(tmp_path / "streamed" / "predictions.parquet")
    groups = [
        set(parquet.read_row_group(i, columns=["series_id"])["series_id"].to_pylist()) for i in range(chunks)
    ]
    assert sum(map(len, groups)) == batch["series_id"].nunique()
    assert not list(tmp_path.glob("score-buckets-*"))  # removed when the run ended


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_bucket_chunks_hold_whole_series_typed_as_the_whole_file(fmt, tmp_path):
    """A bucket holds whole series and reads back the whole file's rows and missing values (NaN
    where read_csv gives NaN); from CSV its types too, also of a yes/no column with gaps in one
    series only (a bucket without them would read it as bool); close removes the buckets."""
    frame = pd.DataFrame({"series_id": ["a", "b", "c"] * 8, "v": np.arange(24) * 1.5})
    frame["checked"] = pd.Series(np.arange(24) % 2 == 0, dtype=object).mask(frame["series_id"] == "a")
    frame["comment"] = pd.Series([f"n{i}" for i in range(24)]).mask(frame["series_id"] == "a")
    path = tmp_path / f"days.{fmt}"
    frame.to_parquet(path, index=False, row_group_size=4) if fmt == "parquet" else frame.to_csv(
        path, index=False
    )
    work = tmp_path / "work"
    work.mkdir()
    stream, why = plan(
        path, fmt, name="days", stream_rows=5, chunk_rows=4, entity=["series_id"], work_dir=work
    )
    assert stream is not None and stream.partitions == 6 and "partitioned into 6 buckets" in stream.note, why
    chunks = list(stream.chunks())
    assert len(chunks) == len(stream.buckets) > 1
    assert sum(chunk["series_id"].nunique() for chunk in chunks) == 3  # each series in one bucket
    whole = read_table(path, fmt)
    gap = {type(v) for v in whole["checked"] if pd.isna(v)}  # NaN from CSV, None from Parquet
    for chunk in chunks:
        # CSV: every chunk has the whole file's types (the plan's); Parquet, as its row groups
        # read one by one: a chunk without gaps reads a yes/no column as bool.
        if fmt == "csv":
            assert chunk.dtypes.to_dict() == whole.dtypes.to_dict()
        assert {type(v) for v in chunk["checked"] if pd.isna(v)} <= gap
    pd.testing.assert_frame_equal(
        pd.concat(chunks).sort_values("v", ignore_index=True), whole, check_exact=True
    )
    stream.close()
    assert list(work.iterdir()) == []


def test_without_a_work_directory_an_unordered_file_is_scored_in_memory(tmp_path):
    path = tmp_path / "days.parquet"
    pd.DataFrame({"series_id": ["a", "b"] * 6, "v": range(12)}).to_parquet(path, index=False)
    stream, why = plan(path, "parquet", name="days", stream_rows=5, chunk_rows=4, entity=["series_id"])
    assert stream is None and "not ordered by series (series_id): the rows of a are not all together" in why


def test_a_chunk_pyarrow_cannot_bucket_falls_back_to_memory_and_leaves_no_files(tmp_path, monkeypatch):
    import pyarrow as pa

    path = tmp_path / "days.csv"
    pd.DataFrame({"series_id": ["a", "b"] * 6, "v": range(12)}).to_csv(path, index=False)
    # A schema the chunks cannot be cast to (the text series as integers): pyarrow refuses the first.
    monkeypatch.setattr(
        StreamPlan,
        "_bucket_schema",
        lambda self, chunk: pa.schema([("series_id", pa.int64()), ("v", pa.int64())]),
    )
    work = tmp_path / "work"
    work.mkdir()
    stream, why = plan(
        path, "csv", name="days", stream_rows=5, chunk_rows=4, entity=["series_id"], work_dir=work
    )
    assert stream is None and "partitioning it on disk failed" in why
    assert list(work.iterdir()) == []


def _with_duplicate_in_last_chunk(batch: pd.DataFrame, grain: list[str]) -> pd.DataFrame:
    """The batch with its last row given the grain key of its first (the last chunk's)."""
    batch = batch.copy()
    batch.loc[len(batch) - 1, grain] = batch.loc[0, grain].to_numpy()
    return batch


def test_a_duplicate_in_the_last_chunk_fails_the_streamed_quality_stage_as_in_memory(trained, tmp_path):
    name = "pricing"
    grain = ["product_id", "store_id", "week"]
    batch = _with_duplicate_in_last_chunk(_batch(name, trained), grain)
    assert not batch.iloc[:CHUNK].duplicated(grain).any()  # the first chunk alone is clean
    path = tmp_path / "batch.parquet"
    batch.to_parquet(path, index=False)
    failures = {}
    for label, stream_rows in (("whole", None), ("streamed", 1000)):
        with pytest.raises(StageFailed) as failed:
            _score(name, trained, path, "parquet", tmp_path / label, stream_rows)
        failures[label] = str(failed.value)
    assert failures["streamed"] == failures["whole"]
    assert "1 duplicate rows on the grain (product_id, store_id, week)" in failures["streamed"]
    assert not (tmp_path / "streamed" / "predictions.csv").exists()  # nothing scored


def test_streamed_quality_problems_are_the_in_memory_ones(trained, tmp_path):
    """Nulls over the limit, values out of range and a duplicate, all past the first chunk, from
    CSV: the logged problems are the in-memory ones."""
    name = "pricing"
    batch = _with_duplicate_in_last_chunk(_batch(name, trained), ["product_id", "store_id", "week"])
    batch.loc[np.arange(CHUNK, len(batch), 15), "price"] = np.nan  # 167 rows (5.6%), none in the first chunk
    batch.loc[len(batch) - 3 :, "promo"] = 2
    path = tmp_path / "batch.csv"
    batch.to_csv(path, index=False)
    problems = {}
    for label, stream_rows in (("whole", None), ("streamed", 1000)):
        logs: list = []
        with pytest.raises(StageFailed):
            _score(name, trained, path, "csv", tmp_path / label, stream_rows, logs)
        problems[label] = [line for line in logs if line.startswith("quality: ")]
    assert problems["streamed"] == problems["whole"]
    assert problems["streamed"] == [
        "quality: column 'price' has 5.6% nulls (max 5.0%)",
        "quality: 1 duplicate rows on the grain (product_id, store_id, week)",
        "quality: column 'promo' has 3 values above 1",
    ]


def test_a_chunk_that_cannot_be_read_fails_the_run_naming_the_dataset(trained, tmp_path):
    name = "location_scoring"
    path = tmp_path / "batch.parquet"
    _batch(name, trained).to_parquet(path, index=False, row_group_size=CHUNK, compression="zstd")
    meta = pq.ParquetFile(path).metadata
    group = meta.row_group(4)  # the fifth chunk: the first four are read and scored
    start = min(group.column(i).data_page_offset for i in range(group.num_columns))
    raw = bytearray(path.read_bytes())
    raw[start : start + group.total_byte_size] = b"\xff" * group.total_byte_size
    path.write_bytes(bytes(raw))

    with pytest.raises(StageFailed) as failed:
        _score(name, trained, path, "parquet", tmp_path / "out", 1000)
    message = str(failed.value)
    assert "dataset 'sites-2026' could not be read after its first 2,000 rows (chunk 5)" in message
    assert "upload the file again" in message and str(tmp_path) not in message


def test_a_small_batch_is_scored_in_memory(trained, tmp_path):
    path = tmp_path / "batch.parquet"
    _batch("pricing", trained).to_parquet(path, index=False)
    result, logs = _score("pricing", trained, path, "parquet", tmp_path / "out", 10_000)
    assert "streamed" not in result["scoring"]
    assert not any("SCORE_STREAM_ROWS" in line for line in logs)


def test_chunks_are_cut_between_entities_and_a_long_entity_stays_whole():
    frame = pd.DataFrame({"k": ["a"] * 3 + ["b"] * 7 + ["c"] * 2, "v": range(12)})
    raw = (frame.iloc[i : i + 4] for i in range(0, 12, 4))
    chunks = list(_entity_chunks(raw, ["k"]))
    assert [c["k"].unique().tolist() for c in chunks] == [["a"], ["b"], ["c"]]
    assert pd.concat(chunks, ignore_index=True).equals(frame)


def test_the_whole_files_type_of_a_csv_column():
    assert _csv_type({"int"}) == "" and _csv_type({"int", "empty"}) == "float64"
    assert _csv_type({"int", "float"}) == "float64" and _csv_type({"str", "int"}) == "str"
    assert _csv_type({"bool", "empty"}) == "object" and _csv_type({"bool", "int"}) is None


def test_a_csv_column_of_no_reproducible_type_is_scored_in_memory(tmp_path):
    path = tmp_path / "odd.csv"
    pd.DataFrame({"flag": ["True"] * 4 + ["1"] * 8, "v": range(12)}).to_csv(path, index=False)
    stream, why = plan(path, "csv", name="odd", stream_rows=5, chunk_rows=4)
    assert stream is None and "column 'flag'" in why


@pytest.mark.django_db
def test_a_worker_streams_an_uploaded_batch_over_score_stream_rows(user, baselines, settings):
    """SCORE_STREAM_ROWS and SCORE_STREAM_CHUNK_ROWS reach the pipeline through the run's spec;
    the streamed files are stored with their sha256 like any run's. About 10 s on the shared
    machine: it trains the pricing model first, as test_score_runs does."""
    settings.SCORE_STREAM_ROWS, settings.SCORE_STREAM_CHUNK_ROWS = 200, 150
    model = trained_model(user)  # pricing
    family = get_family("pricing")
    after = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    batch = worlds.generate(family, worlds.resolve(family, {"rows": 600}, after=after)).drop(
        columns=["units"]
    )
    upload = SimpleUploadedFile("batch.csv", batch.to_csv(index=False).encode())
    dataset = dataset_create(user=user, upload=upload, recipe=model.recipe)
    run = run_start(user=user, recipe=model.recipe, model=model, run_type="score", dataset=dataset)
    execute_run(run.id)
    run.refresh_from_db()
    assert run.status == "succeeded", run.error

    scoring = run.artifacts_json["scoring"]
    assert scoring["rows"] == len(batch) and scoring["streamed"] == {"chunks": 4, "chunk_rows": 150}
    messages = list(RunLog.objects.filter(run=run).values_list("message", flat=True))
    assert any(f"streamed {len(batch)} rows in 4 chunks" in m for m in messages), messages
    assert any(
        f"dataset {dataset.name} has {len(batch)} rows, more than SCORE_STREAM_ROWS" in m for m in messages
    )
    files = run.artifacts_json["files"]
    for name in ("predictions.parquet", "predictions.csv"):
        with artifacts.local_copy(run.id, run.artifacts_json, name) as path:
            assert storage.sha256_of(path) == files[name]["sha256"]
    with artifacts.local_copy(run.id, run.artifacts_json, "predictions.parquet") as path:
        scored = pd.read_parquet(path)
    assert len(scored) == len(batch) and (scored["predicted_units"] > 0).all()


def test_a_forecasting_file_without_its_series_column_fails_the_quality_stage(trained, tmp_path):
    path = tmp_path / "batch.parquet"
    _batch("forecasting", trained).drop(columns=["series_id"]).to_parquet(path, index=False)
    with pytest.raises(StageFailed, match="column 'series_id' is missing"):
        _score("forecasting", trained, path, "parquet", tmp_path / "out", 1000)
