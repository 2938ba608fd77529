"""A score run whose deployment stage says ``"explain": true`` writes contribution columns
(``contrib_<feature>``, ``base_value``) beside its predictions for its first ``explain_rows``
rows (issue #17 §2; runs.explain.batch.ScoreContributions, runs.pipeline.score_batch): the
same numbers as /predict's explanations, counted across a streamed file's chunks; the worker
fetches the model's explanation background for it; a bad config is a manifest error naming
its path. The pipeline tests drive runs.pipeline.execute directly (no database)."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest

from recipes import baselines
from recipes.manifest import validate_manifest
from runs import artifacts
from runs.executor import build_spec
from runs.explain import explain_rows
from runs.families import get_family, worlds
from runs.models import Run
from runs.pipeline import execute
from runs.services import run_start
from runs.tests.factories import trained_model

NAME = "pricing"


def _manifest(explain: dict | None) -> dict:
    manifest = copy.deepcopy(baselines.manifest(NAME))
    for stage in manifest["pipeline"]["stages"]:
        if stage["type"] == "deployment" and explain is not None:
            stage["config"] = {**(stage.get("config") or {}), **explain}
    (manifest.get("requirements") or {}).pop("min_history", None)  # small batches
    return manifest


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("train")
    batch = worlds.resolve(get_family(NAME), {"rows": 2000, "seed": 3})
    spec = {
        "run_id": "train",
        "run_type": "train",
        "family": NAME,
        "manifest": _manifest(None),
        "data": {"synthetic": batch},
        "artifact_dir": str(folder),
        "model_dir": None,
        "threads": 1,
        "explain_caps": {
            "sample_size": 100,
            "background_size": 4,
            "repeats": 2,
            "top_features": 3,
            "ice_rows": 5,
        },
    }
    execute(spec, lambda *m: None)
    assert (folder / "explanation_background.parquet").exists()
    return folder, batch


def _score(trained, tmp_path, explain: dict | None, stream_rows: int | None = None):
    folder, train = trained
    family = get_family(NAME)
    batch = worlds.generate(family, worlds.resolve(family, {"rows": 900}, after=train)).drop(
        columns=["units"]
    )
    path = tmp_path / "batch.parquet"
    batch.to_parquet(path, index=False, row_group_size=300)
    data = {"path": str(path), "format": "parquet", "name": "prices"}
    if stream_rows is not None:
        data.update(stream_rows=stream_rows, chunk_rows=300)
    out = tmp_path / ("streamed" if stream_rows else "whole")
    spec = {
        "run_id": "score",
        "run_type": "score",
        "family": NAME,
        "manifest": _manifest(explain),
        "data": data,
        "artifact_dir": str(out),
        "model_dir": str(folder / "model"),
        "model_schema": json.loads((folder / "schema.json").read_text()),
        "threads": 1,
        "explain_background": str(folder / "explanation_background.parquet"),
    }
    logs: list = []
    execute(spec, lambda *m: logs.append(m[2]) if m[0] == "log" else None)
    return pd.read_parquet(out / "predictions.parquet"), logs


def test_the_first_rows_get_the_same_contributions_as_predict_explanations(trained, tmp_path):
    scored, logs = _score(trained, tmp_path, {"explain": True, "explain_rows": 40})
    contrib = [c for c in scored.columns if c.startswith("contrib_")]
    assert contrib and "base_value" in scored.columns
    assert scored.loc[:39, contrib].notna().all().all() and scored.loc[40:, contrib].isna().all().all()
    assert any(
        "contribution columns (contrib_<feature>, base_value) for the first 40 rows" in m for m in logs
    )

    folder, _ = trained
    family = get_family(NAME)
    model = family.load(folder / "model")
    schema = json.loads((folder / "schema.json").read_text())
    inputs = scored[[c["name"] for c in schema["input_columns"] if c["name"] in scored.columns]].iloc[:5]
    background = pd.read_parquet(folder / "explanation_background.parquet")
    for i, item in enumerate(explain_rows(family, model, inputs, background)):
        row = scored.iloc[i]
        assert row["base_value"] == pytest.approx(item["base_value"], abs=1e-9)
        for feature, value in item["contributions"].items():
            assert row[f"contrib_{feature}"] == pytest.approx(value, abs=1e-9)
        # additive: the base value and the contributions make the explained output
        assert row["base_value"] + sum(row[c] for c in contrib) == pytest.approx(item["output"], abs=1e-6)


def test_a_streamed_batch_counts_the_explained_rows_across_its_chunks(trained, tmp_path):
    explain = {"explain": True, "explain_rows": 450}  # the first chunk (300 rows) and half the second
    whole, _ = _score(trained, tmp_path, explain)
    streamed, logs = _score(trained, tmp_path, explain, stream_rows=500)
    assert any(f"streamed {len(whole)} rows in 3 chunks" in m for m in logs), logs
    pd.testing.assert_frame_equal(streamed, whole, check_exact=False, rtol=1e-12)
    explained = whole["base_value"].notna()
    assert explained.sum() == 450 and explained[:450].all()


def test_without_explain_no_contribution_columns(trained, tmp_path):
    scored, _ = _score(trained, tmp_path, None)
    assert not any(c.startswith("contrib_") or c == "base_value" for c in scored.columns)


@pytest.mark.parametrize(
    "config, where",
    [
        ({"explain": "yes"}, "/explain"),
        ({"explain": True, "explain_rows": 0}, "/explain_rows"),
        ({"explain_rows": 10}, "/explain_rows"),
    ],
)
def test_a_bad_contributions_config_names_its_path(config, where):
    manifest = _manifest(config)
    index = next(i for i, s in enumerate(manifest["pipeline"]["stages"]) if s["type"] == "deployment")
    errors = validate_manifest(manifest, family=NAME)
    assert [e["path"] for e in errors] == [f"/pipeline/stages/{index}/config{where}"], errors


@pytest.mark.django_db
def test_the_worker_fetches_the_background_only_when_asked(user, baselines, tmp_path):
    model = trained_model(user)
    assert artifacts.has_explanations(model)
    run = run_start(
        user=user, recipe=model.recipe, model=model, run_type="score", params={"synthetic": {"rows": 50}}
    )
    spec = build_spec(Run.objects.get(pk=run.id), tmp_path / "plain")
    assert spec["explain_background"] is None
    run = Run.objects.get(pk=run.id)
    run.recipe_version.manifest = _manifest({"explain": True})  # in memory only: what the spec reads
    spec = build_spec(run, tmp_path / "asked")
    background = pd.read_parquet(spec["explain_background"])
    assert len(background) and np.isfinite(background.select_dtypes("number").to_numpy()).all()
