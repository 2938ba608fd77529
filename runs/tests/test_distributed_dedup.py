"""Distributed training (runs.distributed, issue #16 §3) keeps the rows prepare() of the whole
dataset keeps, though it prepares one chunk at a time: an entity whose rows fall in several
chunks trains on its latest row only, as in a local run. The pure functions, no cluster."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from recipes.baselines import HERE as BASELINES
from runs import data as run_data
from runs import distributed
from runs.families import get_family

CHUNK = 50


def manifest(family: str) -> dict:
    return json.loads((BASELINES / f"{family}.json").read_text())


def slices(frame: pd.DataFrame):
    return lambda: (frame.iloc[i : i + CHUNK] for i in range(0, len(frame), CHUNK))


def with_duplicates(family, frame: pd.DataFrame, label: str) -> pd.DataFrame:
    """`frame` with entities repeated in other chunks: a later observation far down (it wins), an
    earlier one far down (the first wins), a later one without a label (dropped by prepare: the
    first wins), one at the same time (the last in the file wins), one without a time (pandas
    sorts it last: it wins), and one repeated inside its own chunk."""
    grain, time = family.GRAIN, family.TIME
    rows = frame.copy()
    extra = []
    for i, change in enumerate(["later", "earlier", "later_no_label", "same_time", "no_time"]):
        row = rows.iloc[[i]].copy()
        row[label] = row[label] + 1
        if change.startswith("later"):
            row[time] = row[time] + pd.Timedelta(days=30)
        elif change == "earlier":
            row[time] = row[time] - pd.Timedelta(days=30)
        elif change == "no_time":
            row[time] = pd.NaT
        if change == "later_no_label":
            row[label] = np.nan
        extra.append(row)
    inside = rows.iloc[[CHUNK + 1]].copy()
    inside[time] = inside[time] + pd.Timedelta(days=1)
    head = rows.iloc[: 2 * CHUNK]
    out = pd.concat([head.iloc[: CHUNK + 3], inside, head.iloc[CHUNK + 3 :], rows.iloc[2 * CHUNK :], *extra])
    assert out[grain].duplicated().sum() == 6
    return out.reset_index(drop=True)


def local_rows(family, frame: pd.DataFrame, m: dict, holdout: distributed.Holdout) -> pd.DataFrame:
    """A local run's training rows: prepare() of the whole frame, less the holdout."""
    prepared = family.prepare(frame, m)
    return prepared.loc[~holdout.mask(prepared)]


def distributed_rows(family, frame: pd.DataFrame, m: dict, holdout, *, first_pass: bool = True):
    chunks = slices(frame)
    latest = distributed.LatestRows(family, m) if first_pass else None
    seen = distributed.scan(chunks(), family, latest)
    counts = {"read": 0, "prepared": 0, "holdout": 0}
    frames = list(distributed.training_frames(chunks(), family, m, holdout, counts, seen.superseded))
    return pd.concat(frames), counts, seen


def same_rows(ours: pd.DataFrame, theirs: pd.DataFrame, family) -> None:
    """The same rows, values and types, whatever their order."""

    def norm(frame):
        return frame.sort_values([family.GRAIN, family.TIME], kind="stable").reset_index(drop=True)

    pd.testing.assert_frame_equal(norm(ours), norm(theirs[ours.columns]))


@pytest.mark.parametrize(
    ("name", "label"), [("location_scoring", "annual_sales"), ("next_best_action", "converted")]
)
def test_an_entity_split_across_chunks_trains_on_the_rows_a_local_run_keeps(name, label):
    family = get_family(name)
    m = manifest(name)
    frame = with_duplicates(family, family.generate(400, 5), label)
    if name == "next_best_action":  # its label is a 0/1 outcome
        frame[label] = frame[label].clip(upper=1)
    holdout = distributed.Holdout.of(family, m)
    assert distributed.keeps_latest(family, m, family.prepare(frame.iloc[:20], m))
    ours, counts, seen = distributed_rows(family, frame, m, holdout)
    local = local_rows(family, frame, m, holdout)
    assert not ours[family.GRAIN].duplicated().any()
    same_rows(ours, local, family)
    # Superseded: the first rows of "later", "same_time" and "no_time", and the last chunk's
    # "earlier" copy (prepare() dropped the label-less one; the chunk's own repeat is prepare's).
    assert len(seen.superseded) == 4 and counts["superseded"] == 4
    assert counts["prepared"] == len(family.prepare(frame, m))
    # Without the first pass's rows, each chunk keeps its own latest row: the test would see it.
    before, _, _ = distributed_rows(family, frame, m, holdout, first_pass=False)
    assert before[family.GRAIN].duplicated().sum() > 0


def test_with_the_switch_off_every_row_trains_as_locally():
    family = get_family("location_scoring")
    m = copy.deepcopy(manifest("location_scoring"))
    for stage in m["pipeline"]["stages"]:
        if stage["type"] == "feature_prep":
            stage["config"]["drop_duplicate_sites"] = False
    frame = with_duplicates(family, family.generate(400, 5), "annual_sales")
    assert not distributed.keeps_latest(family, m, family.prepare(frame.iloc[:20], m))
    holdout = distributed.Holdout.of(family, m)
    ours, _, seen = distributed_rows(family, frame, m, holdout, first_pass=False)
    assert seen.superseded is None
    local = local_rows(family, frame, m, holdout)
    assert ours[family.GRAIN].duplicated().sum() == local[family.GRAIN].duplicated().sum() > 0
    same_rows(ours, local, family)


def test_a_pipeline_without_feature_prep_keeps_every_row():
    family = get_family("next_best_action")
    m = copy.deepcopy(manifest("next_best_action"))
    m["pipeline"]["stages"] = [s for s in m["pipeline"]["stages"] if s["type"] != "feature_prep"]
    assert not distributed.keeps_latest(family, m, family.generate(20, 1))


def test_the_latest_rows_are_kept_across_many_chunks_by_time_then_position():
    """LatestRows alone, on positions: the kept row of each entity is its latest time (a missing
    one counts as latest), the last in the file among equal times."""

    class Plain:  # a family whose prepare() keeps every row it is given
        GRAIN, TIME = "key", "at"

        @staticmethod
        def prepare(frame, manifest, log=None):
            return frame

    keys = ["a", "b", "a", "c", "a", "b", "c", "b"]
    times = ["2024-01-02", "2024-01-05", "2024-01-03", None, "2024-01-03", "2024-01-01", "2024-01-01", None]
    frame = pd.DataFrame({"key": keys, "at": pd.to_datetime(times)})
    latest = distributed.LatestRows(Plain, {})
    for chunk in distributed.positioned(frame.iloc[i : i + 1] for i in range(len(frame))):
        latest.add(chunk)
    # a: times 2,3,3 -> the second 3 (position 4); b: 5, 1, missing -> missing (7); c: missing (3)
    assert latest.superseded().tolist() == [0, 1, 2, 5, 6]
    assert sorted(latest.positions.tolist()) == [3, 4, 7]


def test_a_parquet_file_read_in_row_groups_keeps_the_local_rows(tmp_path, monkeypatch):
    """The run's own source of chunks (chunk_source: runs.data.read_chunks of its file), one
    chunk per row group, both passes numbering the rows alike."""
    monkeypatch.setattr(run_data, "SAMPLE_CHUNK_ROWS", CHUNK)
    family = get_family("location_scoring")
    m = manifest("location_scoring")
    frame = with_duplicates(family, family.generate(400, 7), "annual_sales")
    path = tmp_path / "sites.parquet"
    frame.to_parquet(path, index=False, row_group_size=CHUNK)
    every, _scan_only = distributed.chunk_source(
        {"data": {"path": str(path), "format": "parquet"}}, None, family
    )
    holdout = distributed.Holdout.of(family, m)
    seen = distributed.scan(every(), family, distributed.LatestRows(family, m))
    counts = {"read": 0, "prepared": 0, "holdout": 0}
    ours = pd.concat(distributed.training_frames(every(), family, m, holdout, counts, seen.superseded))
    assert counts["read"] == len(frame) == seen.rows and len(seen.superseded) == 4
    same_rows(ours, local_rows(family, frame, m, holdout), family)
