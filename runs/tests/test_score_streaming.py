"""A score run whose batch has more rows than its ``data.stream_rows`` reads it chunk by chunk
and writes its predictions chunk by chunk (runs.score_stream, issue #16 §3): the same
predictions as the in-memory path, for every family, from Parquet and from CSV; a
forecasting file out of series order is scored in memory and the log says so; a chunk that
cannot be read fails the run naming the dataset. All but the last test drive
runs.pipeline.execute directly (no database); the last runs a real score run through a worker's
executor."""

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
from runs.executor import execute_run
from runs.families import get_family, worlds
from runs.models import Run, RunLog
from runs.pipeline import StageFailed, execute
from runs.score_stream import _csv_type, _entity_chunks, plan
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


def _score(name, trained, path: Path, fmt: str, out: Path, stream_rows: int | None) -> tuple[dict, list]:
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
    logs: list = []
    result = execute(spec, lambda *m: logs.append(m[2]) if m[0] == "log" else None)
    return result, logs


def _same_predictions(streamed: Path, whole: Path) -> None:
    a, b = pd.read_parquet(streamed / "predictions.parquet"), pd.read_parquet(whole / "predictions.parquet")
    pd.testing.assert_frame_equal(a, b, check_exact=True)
    assert a.dtypes.to_dict() == b.dtypes.to_dict()
    assert (streamed / "predictions.csv").read_bytes() == (whole / "predictions.csv").read_bytes()


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


def test_a_forecasting_file_out_of_series_order_is_scored_in_memory(trained, tmp_path):
    name = "forecasting"
    batch = _batch(name, trained).sort_values(["date", "series_id"], ignore_index=True)  # day by day
    path = tmp_path / "batch.parquet"
    batch.to_parquet(path, index=False)
    result, logs = _score(name, trained, path, "parquet", tmp_path / "fallback", 1000)
    _score(name, trained, path, "parquet", tmp_path / "whole", None)

    _same_predictions(tmp_path / "fallback", tmp_path / "whole")
    assert "streamed" not in result["scoring"] and result["scoring"]["rows"] == len(batch)
    warning = next(line for line in logs if "scored in memory" in line)
    assert "sites-2026" in warning and "not ordered by series (series_id)" in warning
    assert "write the file with each series' rows together" in warning


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
