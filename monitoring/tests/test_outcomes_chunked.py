"""Outcomes posted to a scored batch are joined to its predictions chunk by chunk (issue #16 §3):
the web process holds one chunk of predictions.parquet and the matches, never the file, and the
result is the one a merge of the whole file gives (a copy of that logic is `whole_file_match`)."""

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from pandas.testing import assert_frame_equal

from mlworkspace.errors import Conflict, InvalidInput
from monitoring.models import ScoringBatch
from monitoring.scheduler import check_scored_batches, run_due_checks
from monitoring.services import outcomes as service
from monitoring.tests.test_scoring import API, due, production_model
from runs import artifacts
from runs.executor import execute_run
from runs.families import get_family
from runs.models import Run
from runs.services import dataset_create

GROUP_ROWS = 50


def write_predictions(path, frame: pd.DataFrame, group_rows: int = GROUP_ROWS) -> None:
    """`frame` as runs.score_stream.PredictionWriter writes it: one row group a chunk, the
    first chunk's schema; each chunk's categories only the values it holds (so row groups'
    dictionaries differ, as chunks of a real batch do)."""
    writer = None
    for start in range(0, len(frame), group_rows):
        part = frame.iloc[start : start + group_rows].copy()
        for name in part.columns:
            if isinstance(part[name].dtype, pd.CategoricalDtype):
                part[name] = part[name].cat.remove_unused_categories()
        table = pa.Table.from_pandas(part, schema=writer.schema if writer else None, preserve_index=False)
        if writer is None:
            writer = pq.ParquetWriter(path, table.schema)
        writer.write_table(table)
    writer.close()


def whole_file_match(path, outcomes: pd.DataFrame, grain: list[str], dropped: list[str]):
    """What scoring_outcomes did before it read in chunks: the whole file, one merge."""
    predictions = pd.read_parquet(path)
    outcomes = service._align_keys(outcomes, predictions, grain)
    inputs = predictions.drop(columns=[c for c in dropped if c in predictions.columns])
    joined = inputs.merge(outcomes, on=grain, how="inner", validate="many_to_one")
    keys = outcomes[grain].merge(inputs[grain].drop_duplicates(), on=grain, how="left", indicator=True)
    return joined, keys[keys["_merge"] == "left_only"][grain]


def predictions_frame(rows: int = 300) -> pd.DataFrame:
    """Scored rows of two grain columns (text and date), a category feature whose levels change
    along the file, an integer id, and a score. Site s7 on day 7 is scored twice: in the first
    row group and again in the fifth."""
    i = np.arange(rows)
    frame = pd.DataFrame(
        {
            "site_id": [f"s{k % 100}" for k in i],
            "day": pd.Timestamp("2025-01-01") + pd.to_timedelta(i // 100, unit="D"),
            "region": pd.Categorical(
                [("north", "south", "east")[k % 3] if k < 150 else "west" for k in i],
                categories=["west", "north", "south", "east"],
            ),
            "store": i * 10,
            "size": np.linspace(1.0, 2.0, rows),
            "predicted": np.linspace(5.0, 9.0, rows),
        }
    )
    duplicate = frame.iloc[[7]].assign(size=99.0)
    return pd.concat([frame.iloc[:220], duplicate, frame.iloc[220:]], ignore_index=True)


def posted(frame: pd.DataFrame, picks) -> pd.DataFrame:
    """The outcomes a client posts for these prediction rows (dates as ISO text, as JSON has
    them), with two keys the batch never scored."""
    rows = [
        {"site_id": frame.at[k, "site_id"], "day": frame.at[k, "day"].date().isoformat(), "sales": float(k)}
        for k in picks
    ]
    rows += [{"site_id": "nowhere", "day": "2025-01-01", "sales": 1.0}]
    rows += [{"site_id": "s1", "day": "2030-01-01", "sales": 2.0}]
    return service._outcome_keys(rows, ["site_id", "day"], ["sales"])


@pytest.mark.parametrize("chunk_rows", [GROUP_ROWS, 35, 10_000])  # a row group, less, more
def test_the_chunked_join_is_the_whole_file_join(tmp_path, monkeypatch, chunk_rows):
    frame = predictions_frame()
    path = tmp_path / "predictions.parquet"
    write_predictions(path, frame)
    assert pq.ParquetFile(path).metadata.num_row_groups == 7
    picks = [7, 3, 60, 149, 150, 205, 260, 299, 300]  # matches in five row groups, s7 among them
    outcomes = posted(frame, picks)
    expected, expected_unmatched = whole_file_match(path, outcomes, ["site_id", "day"], ["predicted"])
    monkeypatch.setattr(service, "OUTCOMES_CHUNK_ROWS", chunk_rows)

    joined, unmatched = service._match(
        path, outcomes, ["site_id", "day"], dropped=["predicted"], batch_id="batch_x"
    )

    assert_frame_equal(joined, expected)
    assert_frame_equal(unmatched, expected_unmatched)
    assert len(joined) == len(picks) + 1  # s7 on day 7: both of its predictions
    assert joined.loc[joined["site_id"] == "s7", "size"].tolist() == [frame.at[7, "size"], 99.0]
    assert unmatched["site_id"].tolist() == ["nowhere", "s1"]
    # The category keeps every row group's levels, in the order the whole read gives them.
    assert isinstance(joined["region"].dtype, pd.CategoricalDtype)
    assert joined["region"].cat.categories.tolist() == ["north", "south", "east", "west"]


def test_the_predictions_file_is_read_in_chunks_not_whole(tmp_path, monkeypatch):
    frame = predictions_frame()
    path = tmp_path / "predictions.parquet"
    write_predictions(path, frame)
    whole_reads, chunks = [], []
    real_read_parquet, real_read_chunks = pd.read_parquet, service.read_chunks
    monkeypatch.setattr(
        pd, "read_parquet", lambda p, *a, **k: whole_reads.append(p) or real_read_parquet(p, *a, **k)
    )
    monkeypatch.setattr(pq, "read_table", lambda *a, **k: whole_reads.append(a) or pytest.fail("read whole"))

    def spied_chunks(*args, **kwargs):
        for chunk in real_read_chunks(*args, **kwargs):
            chunks.append(len(chunk))
            yield chunk

    monkeypatch.setattr(service, "read_chunks", spied_chunks)
    monkeypatch.setattr(service, "OUTCOMES_CHUNK_ROWS", GROUP_ROWS)
    joined, _ = service._match(
        path, posted(frame, [3, 299]), ["site_id", "day"], dropped=["predicted"], batch_id="batch_x"
    )
    assert len(joined) == 2
    assert whole_reads == []
    assert chunks == [50, 50, 50, 50, 50, 50, 1]


def test_a_predictions_file_of_no_rows_matches_nothing_as_before(tmp_path):
    path = tmp_path / "predictions.parquet"
    predictions_frame().iloc[:0].to_parquet(path, index=False)
    outcomes = posted(predictions_frame(), [3])
    joined, unmatched = service._match(
        path, outcomes, ["site_id", "day"], dropped=["predicted"], batch_id="batch_x"
    )
    expected, expected_unmatched = whole_file_match(path, outcomes, ["site_id", "day"], ["predicted"])
    assert_frame_equal(joined, expected)
    assert_frame_equal(unmatched, expected_unmatched)
    assert joined.empty and len(unmatched) == 3


def test_a_key_of_the_wrong_type_or_posted_twice_is_a_400_and_a_missing_grain_a_409(tmp_path):
    frame = predictions_frame()
    path = tmp_path / "predictions.parquet"
    write_predictions(path, frame)
    bad_day = service._outcome_keys(
        [
            {"site_id": "s1", "day": "2025-01-01", "sales": 1.0},
            {"site_id": "s2", "day": "soon", "sales": 1.0},
        ],
        ["site_id", "day"],
        ["sales"],
    )
    with pytest.raises(InvalidInput) as raised:
        service._match(path, bad_day, ["site_id", "day"], dropped=["predicted"], batch_id="batch_x")
    assert raised.value.errors[0]["path"] == "/rows/1/day"
    twice = service._outcome_keys(
        [
            {"site_id": "s1", "day": "2025-01-01", "sales": 1.0},
            {"site_id": "s1", "day": "2025-01-01", "sales": 2.0},
        ],
        ["site_id", "day"],
        ["sales"],
    )
    with pytest.raises(InvalidInput) as raised:
        service._match(path, twice, ["site_id", "day"], dropped=["predicted"], batch_id="batch_x")
    assert raised.value.errors[0]["path"] == "/rows/1"
    with pytest.raises(Conflict, match="no grain column 'week'"):
        service._match(path, twice, ["site_id", "week"], dropped=["predicted"], batch_id="batch_x")


# --------------------------------------------------------------------------- through the API


@pytest.fixture
def streamed_batch(baselines, user, settings, monkeypatch):
    """A location model's batch scored from an uploaded dataset of 400 sites, streamed 50 rows a
    chunk: its predictions.parquet has eight row groups. Returns (batch, the uploaded frame)."""
    settings.SCORE_STREAM_ROWS, settings.SCORE_STREAM_CHUNK_ROWS = 100, GROUP_ROWS
    model = production_model(user)
    frame = get_family(model.recipe.model_family).generate(400, 12)
    upload = SimpleUploadedFile("sites.csv", frame.to_csv(index=False).encode())
    dataset_create(user=user, upload=upload, recipe=model.recipe, purpose="scoring")
    (batch_id,) = run_due_checks(due(model))
    batch = ScoringBatch.objects.select_related("run").get(pk=batch_id)
    assert execute_run(batch.run_id) == "succeeded", Run.objects.get(pk=batch.run_id).error
    assert len(check_scored_batches()) == 1
    batch.refresh_from_db()
    with artifacts.local_copy(batch.run_id, batch.run.artifacts_json, "predictions.parquet") as path:
        assert pq.ParquetFile(path).metadata.num_row_groups == 8
    return batch, frame


def test_posted_outcomes_over_many_chunks_score_as_one_chunk_and_never_load_the_file(
    streamed_batch, api_client, monkeypatch
):
    batch, frame = streamed_batch
    picked = frame.iloc[::3]  # a match in every row group
    rows = [{"site_id": r.site_id, "annual_sales": float(r.annual_sales)} for r in picked.itertuples()]
    rows += [{"site_id": "nowhere-1", "annual_sales": 1.0}, {"site_id": "nowhere-2", "annual_sales": 2.0}]
    url = f"{API}/models/{batch.model_id}/outcomes"
    whole_reads = []
    real_read_parquet = pd.read_parquet
    monkeypatch.setattr(
        pd, "read_parquet", lambda p, *a, **k: whole_reads.append(str(p)) or real_read_parquet(p, *a, **k)
    )

    monkeypatch.setattr(service, "OUTCOMES_CHUNK_ROWS", GROUP_ROWS)
    chunked = api_client.post(url, {"rows": rows}, format="json")
    assert chunked.status_code == 200, chunked.json()
    assert not [p for p in whole_reads if p.endswith("predictions.parquet")]
    monkeypatch.setattr(service, "OUTCOMES_CHUNK_ROWS", 1_000_000)
    whole = api_client.post(url, {"rows": rows}, format="json")
    assert whole.status_code == 200, whole.json()

    chunked, whole = chunked.json(), whole.json()
    assert chunked["outcome_rows"] == whole["outcome_rows"] == len(picked)
    assert chunked["unmatched_rows"] == whole["unmatched_rows"] == 2
    assert (
        chunked["unmatched_keys"]
        == whole["unmatched_keys"]
        == [{"site_id": "nowhere-1"}, {"site_id": "nowhere-2"}]
    )
    assert chunked["performance"] == whole["performance"] and chunked["performance"]


def test_outcomes_that_match_no_chunk_are_still_the_400(streamed_batch, api_client, monkeypatch):
    batch, _frame = streamed_batch
    monkeypatch.setattr(service, "OUTCOMES_CHUNK_ROWS", GROUP_ROWS)
    rows = [{"site_id": f"nowhere-{i}", "annual_sales": 1.0} for i in range(3)]
    r = api_client.post(f"{API}/models/{batch.model_id}/outcomes", {"rows": rows}, format="json")
    assert r.status_code == 400 and r.json()["errors"][0]["path"] == "/rows"
    assert "None of the 3 rows" in r.json()["detail"]
    batch.refresh_from_db()
    assert batch.outcomes_at is None
