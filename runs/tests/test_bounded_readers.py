"""The dataset page's check against a recipe in the web process reads a bounded part of a large
dataset (issue #16 §3): at most DATASET_WEB_CHECK_ROWS rows — whole Parquet row groups spread
evenly over the file, the first rows of a CSV — while the null ratios, whether any value is out
of range and the history come from the profile of every row; the page says which rows it
checked. A small dataset is still checked whole, and an unreadable file is said, not a 500."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from recipes.models import Recipe
from runs import data as run_data
from runs.models import Dataset
from runs.services import dataset_create
from runs.tests.test_dataset_pages import HTMX, page, pricing_frame

pytestmark = pytest.mark.django_db
PRICING = "recipe_pricing_base"  # ranges: price >= 0.01, units >= 0; max_null_ratio 0.05
ROWS, GROUP = 5_000, 500  # ten row groups


def numbers(rows: int = ROWS) -> pd.DataFrame:
    return pd.DataFrame({"a": np.arange(rows), "b": np.arange(rows) % 7})


def parquet_bytes(frame: pd.DataFrame, group: int = GROUP) -> bytes:
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, row_group_size=group)
    return buffer.getvalue()


def write(tmp_path: Path, frame: pd.DataFrame, fmt: str, group: int = GROUP) -> Path:
    path = tmp_path / f"t.{fmt}"
    if fmt == "parquet":
        path.write_bytes(parquet_bytes(frame, group))
    else:
        frame.to_csv(path, index=False)
    return path


def clean_pricing(rows: int = ROWS) -> pd.DataFrame:
    """Pricing rows that meet the baseline recipe's requirements (one row per week, so the file
    is in time order and its 5,000 weeks are far more than the 52 the recipe needs)."""
    frame = pricing_frame(rows)
    frame["units"] = 100 + np.arange(rows) % 7
    return frame


def upload_parquet(user, frame: pd.DataFrame, *, recipe_id: str | None = None) -> Dataset:
    upload = SimpleUploadedFile("sales.parquet", parquet_bytes(frame))
    recipe = Recipe.objects.get(pk=recipe_id) if recipe_id else None
    dataset = dataset_create(user=user, upload=upload, recipe=recipe)
    assert dataset.is_ready and dataset.row_count == len(frame)
    return dataset


def check(client, dataset: Dataset, recipe_id: str = PRICING):
    response = client.get(page(dataset.pk), {"recipe": recipe_id}, **HTMX, HTTP_HX_TARGET="check")
    assert response.status_code == 200
    return response.context["check"], response.content.decode()


# --------------------------------------------------------------------------- runs.data.read_spread


def test_a_larger_parquet_is_read_as_whole_row_groups_spread_over_the_file(tmp_path):
    path = write(tmp_path, numbers(), "parquet")
    part = run_data.read_spread(path, "parquet", max_rows=2_000)
    assert part.row_groups == [0, 3, 6, 9]  # the first, the last and evenly between
    assert (part.table_rows, len(part.frame), part.whole) == (ROWS, 2_000, False)
    expected = np.concatenate([np.arange(g * GROUP, (g + 1) * GROUP) for g in (0, 3, 6, 9)])
    assert part.frame["a"].tolist() == expected.tolist()  # whole groups, in file order
    assert part.how == "evenly spread row groups"
    # A budget that is not a multiple of the group size: never more rows than the budget.
    smaller = run_data.read_spread(path, "parquet", max_rows=1_499)
    assert smaller.row_groups == [0, 9] and len(smaller.frame) == 1_000


def test_groups_larger_than_the_budget_give_the_first_rows_of_spread_groups(tmp_path, monkeypatch):
    monkeypatch.setattr(run_data, "SPREAD_MIN_SLICE_ROWS", 100)
    path = write(tmp_path, numbers(), "parquet", group=1_000)  # five groups of 1,000 rows
    part = run_data.read_spread(path, "parquet", max_rows=300)
    assert part.row_groups == [0, 2, 4]
    assert part.frame["a"].tolist() == [*range(0, 100), *range(2_000, 2_100), *range(4_000, 4_100)]
    assert part.how == "the first 100 rows of 3 evenly spread row groups"
    one = run_data.read_spread(path, "parquet", max_rows=150)  # room for one slice only
    assert one.row_groups == [2] and one.frame["a"].tolist() == list(range(2_000, 2_150))


def test_a_larger_csv_gives_its_first_rows_and_the_tables_count(tmp_path):
    path = write(tmp_path, numbers(), "csv")
    part = run_data.read_spread(path, "csv", max_rows=1_000)
    assert part.frame["a"].tolist() == list(range(1_000)) and part.row_groups is None
    assert (part.table_rows, part.how) == (ROWS, "the first rows")  # counted without loading
    known = run_data.read_spread(path, "csv", max_rows=1_000, table_rows=4_321)
    assert known.table_rows == 4_321  # the caller's (a dataset's profile) is taken


@pytest.mark.parametrize("fmt", ["csv", "parquet"])
def test_a_table_within_the_budget_is_read_whole_as_before(tmp_path, fmt):
    path = write(tmp_path, numbers(800), fmt)
    part = run_data.read_spread(path, fmt, max_rows=800)
    assert part.whole and part.row_groups is None and part.how == "every row"
    pd.testing.assert_frame_equal(part.frame, run_data.read_table(path, fmt))


def test_a_corrupt_row_group_is_a_readable_error_without_the_path(tmp_path):
    path = write(tmp_path, numbers(), "parquet")
    raw = bytearray(path.read_bytes())
    raw[200:300] = b"\xff" * 100  # inside the first row group's data; the footer stays valid
    path.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match="could not read the file as PARQUET") as caught:
        run_data.read_spread(path, "parquet", max_rows=1_000)
    assert str(tmp_path) not in str(caught.value)


# --------------------------------------------------------------------------- the dataset page


def test_the_page_checks_a_bounded_spread_and_says_so(as_user, baselines, user, settings):
    frame = clean_pricing()
    frame.loc[ROWS - 1, "price"] = -1  # in the last row group: a checked row
    dataset = upload_parquet(user, frame)
    settings.DATASET_WEB_CHECK_ROWS = 1_000
    result, body = check(as_user, dataset)
    assert result["scope"] == "checked 1,000 of 5,000 rows (evenly spread row groups)"
    assert "Checked 1,000 of 5,000 rows (evenly spread row groups)" in body
    assert result["problems"] == ["column 'price' has 1 values below 0.01"]
    assert 'data-check-result="fail"' in body


def test_the_whole_files_profile_finds_what_the_checked_rows_do_not(as_user, baselines, user, settings):
    frame = clean_pricing()
    frame.loc[2_222, "units"] = -3  # row group 4: not among the checked groups 0 and 9
    frame.loc[GROUP : ROWS - GROUP - 1 : 10, "promo"] = None  # 8% nulls, all outside groups 0 and 9
    dataset = upload_parquet(user, frame)
    settings.DATASET_WEB_CHECK_ROWS = 1_000
    result, body = check(as_user, dataset)
    assert result["scope"].startswith("checked 1,000 of 5,000 rows")
    assert result["problems"] == [
        "column 'promo' has 8.0% nulls (max 5.0%)",
        "column 'units' has values below 0 in rows not checked (its minimum is -3)",
    ]
    # Checked whole, the same file shows the same null ratio (and counts the bad value).
    settings.DATASET_WEB_CHECK_ROWS = ROWS
    whole, _ = check(as_user, dataset)
    assert whole["scope"] is None
    assert whole["problems"] == [
        "column 'promo' has 8.0% nulls (max 5.0%)",
        "column 'units' has 1 values below 0",
    ]


def test_a_clean_large_file_meets_the_requirements_on_its_spread(as_user, baselines, user, settings):
    dataset = upload_parquet(user, clean_pricing())
    settings.DATASET_WEB_CHECK_ROWS = 1_000
    result, body = check(as_user, dataset)
    assert result["problems"] == [] and 'data-check-result="pass"' in body
    assert 'id="check-scope"' in body


def test_a_small_datasets_check_is_the_whole_file_check_of_before(as_user, baselines, user, settings):
    frame = pricing_frame(20, drop=("unit_cost",))
    frame.loc[3, "price"] = -1
    dataset = upload_parquet(user, frame)
    settings.DATASET_WEB_CHECK_ROWS = 20
    result, body = check(as_user, dataset)
    manifest = Recipe.objects.get(pk=PRICING).current_version.manifest
    with open(dataset.file.path, "rb") as handle:
        before = run_data.dataset_problems(
            pd.read_parquet(handle), dataset.columns_json, manifest, "pricing"
        )  # what the page computed before: every row read
    assert result["problems"] == before and len(before) >= 3
    assert result["scope"] is None and 'id="check-scope"' not in body


def test_an_unreadable_row_group_is_the_pages_error_text_not_a_500(as_user, baselines, user, settings):
    dataset = upload_parquet(user, clean_pricing())
    path = Path(dataset.file.path)
    raw = bytearray(path.read_bytes())
    raw[200:300] = b"\xff" * 100  # the first row group, which the check reads
    path.write_bytes(bytes(raw))
    Dataset.objects.filter(pk=dataset.pk).update(sha256=hashlib.sha256(raw).hexdigest())
    settings.DATASET_WEB_CHECK_ROWS = 1_000
    result, body = check(as_user, dataset)
    assert result["readable"] is False
    assert result["problems"][0].startswith("could not read the file as PARQUET")
    assert "could not read the file as PARQUET" in body and str(path.parent) not in body


def test_a_missing_file_is_the_pages_error_text_in_the_check(as_user, baselines, user, settings):
    dataset = upload_parquet(user, clean_pricing())
    Path(dataset.file.path).unlink()
    settings.DATASET_WEB_CHECK_ROWS = 1_000
    result, body = check(as_user, dataset)
    assert result["readable"] is False
    assert result["problems"] == [
        f"The file of dataset 'sales' ({dataset.pk}) is missing from the file store."
    ]
    assert "is missing from the file store" in body
