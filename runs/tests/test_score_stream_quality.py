"""The quality stage of a streamed score batch (runs.score_stream.stream_quality): the checks of
runs.data.quality_errors, as a score run asks them, counted over every chunk — the same
problems, in the same words, as the whole-batch check; a duplicate found across chunks even
when pandas types its key differently in each (whole numbers, then a chunk with a gap). No
Django, no model: plain files read in chunks of 8 rows."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from runs.data import quality_errors, read_table
from runs.score_stream import entity_hashes, plan, stream_quality

FAMILY = "pricing"
MANIFEST = {
    "requirements": {"grain": ["shop", "week"], "feature_sets": {"required": ["price"]}},
    "pipeline": {
        "stages": [
            {
                "name": "quality",
                "type": "quality",
                "config": {
                    "max_null_ratio": 0.1,
                    "unique_grain": True,
                    "ranges": {"price": {"min": 0}, "promo": {"min": 0, "max": 1}, "absent": {"min": 0}},
                },
            }
        ]
    },
}


def _frame() -> pd.DataFrame:
    """40 clean rows: shops 0-3 × weeks 0-9, whole-number shop ids."""
    return pd.DataFrame(
        {
            "shop": np.repeat(np.arange(4), 10),
            "week": np.tile(np.arange(10), 4),
            "price": np.linspace(1.0, 5.0, 40),
            "promo": np.tile([0, 1], 20),
            "note": ["x"] * 40,
        }
    )


def _problems_both_ways(frame: pd.DataFrame, fmt: str, tmp_path) -> tuple[list[str], list[str], int, set]:
    """(the streamed problems, the whole batch's, the rows streamed, the types its chunks give shop)."""
    path = tmp_path / f"batch.{fmt}"
    if fmt == "parquet":  # no pandas metadata: each chunk's types are pyarrow's default ones
        table = pa.Table.from_pandas(frame, preserve_index=False).replace_schema_metadata(None)
        pq.write_table(table, path, row_group_size=8)
    else:
        frame.to_csv(path, index=False)
    stream, why = plan(path, fmt, name="batch", stream_rows=10, chunk_rows=8)
    assert stream is not None, why
    shops = {str(chunk["shop"].dtype) for chunk in stream.chunks()}
    streamed, rows = stream_quality(stream, list(stream.head().columns), MANIFEST, FAMILY)
    whole = quality_errors(read_table(path, fmt), MANIFEST, FAMILY, check_history=False, outcomes=False)
    return streamed, whole, rows, shops


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_problems_past_the_first_chunk_are_the_whole_batch_ones(fmt, tmp_path):
    frame = _frame().astype({"shop": "Int64"})  # whole numbers, one gap below
    frame.loc[[9, 17, 25, 33, 39], "price"] = np.nan  # 12.5% nulls, over 10%, none in the first chunk
    frame.loc[35, "shop"] = np.nan  # the last chunk reads shop as float64, the first as int64
    # A duplicate of row 12 (shop 1: as float64, not the bits of int64 1, unlike shop 0).
    frame.loc[38, ["shop", "week"]] = frame.loc[12, ["shop", "week"]].to_numpy()
    frame.loc[39, "promo"] = 2
    frame.loc[[30, 31], "price"] = -1.0
    streamed, whole, rows, shops = _problems_both_ways(frame, fmt, tmp_path)
    # Parquet: a gap only in the last row group, whose chunk alone reads shop as float64; CSV:
    # the plan reads every chunk's shop as float64, the whole file's type.
    assert shops == ({"int64", "float64"} if fmt == "parquet" else {"float64"})
    assert (
        streamed
        == whole
        == [
            "column 'price' has 12.5% nulls (max 10.0%)",
            "1 duplicate rows on the grain (shop, week)",
            "column 'price' has 2 values below 0",
            "column 'promo' has 1 values above 1",
        ]
    )
    assert rows == 40


@pytest.mark.parametrize("fmt", ["parquet", "csv"])
def test_a_clean_batch_has_no_problems_and_every_row_is_checked(fmt, tmp_path):
    streamed, whole, rows, _ = _problems_both_ways(_frame(), fmt, tmp_path)
    assert streamed == whole == [] and rows == 40


def test_duplicates_are_counted_as_the_whole_batch_counts_them(tmp_path):
    frame = _frame()
    frame.loc[[20, 30, 39], ["shop", "week"]] = [[0, 1], [0, 1], [1, 3]]  # row 1 thrice, row 13 twice
    streamed, whole, _, _ = _problems_both_ways(frame, "parquet", tmp_path)
    assert streamed == whole == ["3 duplicate rows on the grain (shop, week)"]


def test_key_hashes_equate_a_number_however_typed_and_keep_64_bit_integers_apart():
    ints = pd.DataFrame({"k": np.array([7, 2**53, 2**53 + 1], dtype=np.int64)})
    floats = pd.DataFrame({"k": [7.0, np.nan, 7.5]})
    a, b = entity_hashes(ints), entity_hashes(floats)
    assert a[0] == b[0]  # 7 in an int64 chunk, 7.0 in a float64 one
    assert len(set(a.tolist())) == 3  # 2**53 and 2**53 + 1 are one float64, two keys
    assert len(set(b.tolist())) == 3 and b[2] not in a.tolist()
