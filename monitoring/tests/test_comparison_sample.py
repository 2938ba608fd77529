"""A model comparison on a dataset larger than COMPARE_MAX_ROWS (issue #16 §3) evaluates the
models on a uniform sample of about that many rows, read chunk by chunk (whole series for
forecasting), and its result says so: ``sample`` and the window in words, on the API and the
comparison page. A dataset within the limit is compared on every row, as before."""

from __future__ import annotations

import io

import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from mlworkspace.errors import InvalidInput
from monitoring.services import models_compare
from monitoring.services.comparison import comparison_frame
from recipes.models import Recipe
from runs import data as run_data
from runs.families import get_family
from runs.services import dataset_create
from runs.tests.factories import trained_model

API = "/api/ml-development"
pytestmark = pytest.mark.django_db
ROWS = 5_000


def upload(user, frame: pd.DataFrame, name: str, recipe_id: str | None = None):
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False, row_group_size=700)
    recipe = Recipe.objects.get(pk=recipe_id) if recipe_id else None
    dataset = dataset_create(
        user=user, upload=SimpleUploadedFile(f"{name}.parquet", buffer.getvalue()), recipe=recipe
    )
    assert dataset.is_ready and dataset.row_count == len(frame)
    return dataset


@pytest.fixture
def small_chunks(monkeypatch):
    monkeypatch.setattr(run_data, "SAMPLE_CHUNK_ROWS", 900)  # the sample is drawn over many chunks


def test_a_larger_dataset_is_compared_on_a_sample_that_the_result_names(
    baselines, user, settings, api_client, as_user, small_chunks
):
    champion = trained_model(user, rows=3000)
    challenger = trained_model(user, rows=4000)
    dataset = upload(user, get_family("pricing").generate(ROWS, 2), "prices", "recipe_pricing_base")

    settings.COMPARE_MAX_ROWS = ROWS  # within the limit: every row, as before
    whole = models_compare(models=[champion, challenger], dataset_id=dataset.pk, user=user).result_json
    assert (whole["rows"], whole["sample"], whole["window"]) == (ROWS, None, "dataset 'prices'")

    settings.COMPARE_MAX_ROWS = 2_000
    comparison = models_compare(models=[champion, challenger], dataset_id=dataset.pk, user=user)
    result = comparison.result_json
    n = result["rows"]
    assert 1_700 <= n <= 2_300  # a uniform sample of about COMPARE_MAX_ROWS rows, not the 5,000
    assert result["sample"] == {"rows": n, "of": ROWS, "by": None}
    assert result["window"] == f"dataset 'prices' (a uniform sample: {n:,} of its 5,000 rows)"
    assert result["verdicts"][challenger.pk]["verdict"] in {"better", "worse", "no_difference"}
    body = api_client.get(f"{API}/comparisons/{comparison.pk}").json()
    assert body["result_json"]["sample"] == result["sample"]
    page = as_user.get(f"/model-development/comparisons/{comparison.pk}").content.decode()
    assert f"On dataset &#x27;prices&#x27; (a uniform sample: {n:,} of its 5,000 rows): {n} rows" in page


def test_a_forecasting_comparison_samples_whole_series(baselines, user, settings, small_chunks):
    frame = get_family("forecasting").generate(4_000, 1, days=100)  # 40 series of 100 days
    dataset = upload(user, frame, "demand")
    manifest = Recipe.objects.get(pk="recipe_forecasting_base").current_version.manifest
    settings.COMPARE_MAX_ROWS = 1_000
    sampled, described, sample = comparison_frame({"dataset_id": dataset.pk}, "forecasting", manifest)
    assert sample == {"rows": len(sampled), "of": 4_000, "by": ["series_id"]}
    sizes = sampled.groupby("series_id").size()
    assert 0 < len(sizes) < 40 and (sizes == 100).all()  # some series, each with all its days
    assert (
        described
        == f"dataset 'demand' (a uniform sample of whole series by series_id: {len(sampled):,} of its 4,000 rows)"
    )


def test_a_series_sample_of_a_dataset_without_the_grain_is_a_400_naming_the_dataset(
    baselines, user, settings, small_chunks
):
    frame = get_family("forecasting").generate(4_000, 1, days=100).drop(columns=["series_id"])
    dataset = upload(user, frame, "no-series")
    manifest = Recipe.objects.get(pk="recipe_forecasting_base").current_version.manifest
    settings.COMPARE_MAX_ROWS = 1_000
    with pytest.raises(InvalidInput) as caught:
        comparison_frame({"dataset_id": dataset.pk}, "forecasting", manifest)
    assert caught.value.errors[0]["path"] == "/dataset_id"
    assert "the file has no column" in caught.value.detail and "series_id" in caught.value.detail
