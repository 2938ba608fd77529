"""The pipeline's `explain` stage (issue #17 §1): a train run of each family explains its model
on its own holdout and writes explanations.json, explanations.parquet and
explanation_background.parquet (kind "explanations"); eval, backtest and score runs skip it; a
failure of the stage never fails the run (the model is kept, the run says why it has no
explanations). Runs go through runs.pipeline.execute in-process on small synthetic batches; the
last tests go through the executor, so the files are stored with their sha256 like every
artifact and read back through runs.artifacts.

Run alone with: .venv/bin/python -m pytest -q runs/tests/test_explain_stage.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pandas as pd
import pytest

from recipes import baselines, explain_config
from runs import artifacts, pipeline

# Small batches (a few seconds per family) that still leave a holdout of at least the sample.
ROWS = {"forecasting": 4 * 1095, "pricing": 3000, "next_best_action": 4000, "location_scoring": 2000}
# A small explain config: fewer repeats, grid points and ICE rows than the baselines' defaults.
SMALL = {
    "sample_size": 200,
    "background_size": 8,
    "repeats": 2,
    "top_features": 2,
    "ice_rows": 5,
    "grid_points": 5,
}
FILES = ("explanations.json", "explanations.parquet", "explanation_background.parquet")


def manifest(family: str, config: dict | None = None) -> dict:
    m = copy.deepcopy(baselines.manifest(family))
    for stage in m["pipeline"]["stages"]:
        if stage["type"] == "explain":
            stage["config"] = copy.deepcopy(SMALL if config is None else config)
    return m


def explain_index(m: dict) -> int:
    return next(i for i, s in enumerate(m["pipeline"]["stages"]) if s["type"] == "explain")


def spec(tmp_path: Path, family: str, run_type: str = "train", m: dict | None = None, **extra) -> dict:
    return {
        "run_id": f"run_{run_type}",
        "run_type": run_type,
        "family": family,
        "manifest": m if m is not None else manifest(family),
        "data": {"synthetic": {"rows": ROWS[family], "seed": 1}},
        "artifact_dir": str(tmp_path / run_type),
        "model_dir": None,
        "model_schema": None,
        "threads": 1,
        **extra,
    }


def run(s: dict) -> tuple[dict, list[tuple]]:
    messages: list[tuple] = []
    result = pipeline.execute(s, lambda *m: messages.append(m))
    return result, messages


def stage_events(messages: list[tuple], index: int) -> list[tuple]:
    return [m[2:] for m in messages if m[0] == "stage" and m[1] == index]


def logs(messages: list[tuple]) -> list[tuple[str, str]]:
    return [(m[1], m[2]) for m in messages if m[0] == "log"]


@pytest.mark.parametrize("family", list(ROWS))
def test_a_train_run_writes_the_three_explanation_files(tmp_path, family):
    s = spec(tmp_path, family)
    result, messages = run(s)
    out = Path(s["artifact_dir"])
    index = explain_index(s["manifest"])
    assert stage_events(messages, index)[-1][0] == "succeeded"
    for name in FILES:
        assert (out / name).is_file(), name
        assert result["artifacts"][name] == "explanations"

    document = json.loads((out / "explanations.json").read_text())
    assert document["family"] == family
    assert document["version"] == 1
    assert isinstance(document["method"], str) and document["method"]
    assert document["methods"] == list(explain_config.METHODS)
    assert 0 < document["sample_rows"] <= SMALL["sample_size"]
    assert document["seed"] == 0
    ranking = document["global"]
    assert ranking and [r["importance"] for r in ranking] == sorted(
        (r["importance"] for r in ranking), reverse=True
    )
    assert document["permutation"]["repeats"] == SMALL["repeats"]
    # The resolved default metric of the family (pricing: the demand model's error).
    assert document["permutation"]["metric"] == explain_config.default_metric(family)
    assert document["family_view"]["kind"] == family

    contributions = pd.read_parquet(out / "explanations.parquet")
    # Every sample row, or as many as the attribution budget allowed (the notes say so).
    assert 0 < len(contributions) <= document["sample_rows"]
    if len(contributions) < document["sample_rows"]:
        assert any("budget" in note for note in document["notes"])
    contrib = [c for c in contributions.columns if c.startswith("contrib.")]
    assert contrib and {"base_value", "output"} <= set(contributions.columns)
    background = pd.read_parquet(out / "explanation_background.parquet")
    assert len(background) == document["background_rows"] <= SMALL["background_size"]

    # The log says what was computed: the method and the top features.
    said = [m for level, m in logs(messages) if m.startswith("explain: computed ")]
    assert len(said) == 1
    assert (
        f"{document['method']} attributions of {len(contributions)} of {document['sample_rows']}" in said[0]
    )
    assert ", ".join(r["feature"] for r in ranking[:3]) in said[0]


def test_the_stage_explains_the_run_split_with_the_resolved_config(tmp_path, monkeypatch):
    seen = {}
    real = pipeline.explain_model

    def spy(family, model, train, test, manifest_, config, *, log, threads=1):
        seen.update(family=family.NAME, train=len(train), test=len(test), config=config, threads=threads)
        return real(family, model, train, test, manifest_, config, log=log, threads=threads)

    monkeypatch.setattr(pipeline, "explain_model", spy)
    config = {"sample_size": 100, "methods": ["permutation", "shap"], "metric": "calibration", "repeats": 2}
    s = spec(tmp_path, "location_scoring", m=manifest("location_scoring", config))
    _, messages = run(s)
    # The holdout size the training stage logged is the test frame the stage explained.
    trained = next(m for _, m in logs(messages) if m.startswith("training: ") and "holdout rows" in m)
    assert trained == f"training: {seen['train']} training rows, {seen['test']} holdout rows"
    assert seen["family"] == "location_scoring"
    assert seen["config"] == explain_config.resolve(config, family="location_scoring")
    assert seen["config"]["methods"] == ["shap", "permutation"]
    document = json.loads((Path(s["artifact_dir"]) / "explanations.json").read_text())
    assert document["methods"] == ["shap", "permutation"]
    assert document["dependence"] is None  # not asked for
    assert document["permutation"]["metric"] == "calibration"


def test_the_deployments_caps_bound_the_manifests_sizes(tmp_path, monkeypatch):
    """settings.EXPLAIN_CAPS (spec["explain_caps"]) lowers what a manifest asks, never raises it,
    and never below the smallest value the validator allows."""
    seen = {}
    real = pipeline.explain_model

    def spy(family, model, train, test, manifest_, config, *, log, threads=1):
        seen.update(config)
        return real(family, model, train, test, manifest_, config, log=log, threads=threads)

    monkeypatch.setattr(pipeline, "explain_model", spy)
    config = {"sample_size": 300, "repeats": 2, "grid_points": 10}
    caps = {"sample_size": 80, "repeats": 4, "grid_points": 1}
    run(spec(tmp_path, "pricing", m=manifest("pricing", config), explain_caps=caps))
    assert (seen["sample_size"], seen["repeats"], seen["grid_points"]) == (80, 2, 3)


def test_permutation_alone_writes_no_attributions(tmp_path):
    s = spec(tmp_path, "pricing", m=manifest("pricing", {**SMALL, "methods": ["permutation"]}))
    result, messages = run(s)
    out = Path(s["artifact_dir"])
    assert all(result["artifacts"][name] == "explanations" for name in FILES)
    document = json.loads((out / "explanations.json").read_text())
    assert document["methods"] == ["permutation"] and document["global"]
    assert document["dependence"] is None
    said = [m for _, m in logs(messages) if m.startswith("explain: computed ")]
    assert said == [
        f"explain: computed permutation: {document['method'] or 'no'} attributions of "
        + (f"{len(pd.read_parquet(out / 'explanations.parquet'))} of " if document["method"] else "")
        + f"{document['sample_rows']} held-out rows ({document['background_rows']} background rows); "
        + "top features by permutation importance: "
        + ", ".join(r["feature"] for r in document["global"][:3])
    ]


def test_eval_and_score_runs_skip_the_stage(tmp_path):
    train = spec(tmp_path, "location_scoring")
    run(train)
    model_dir = str(Path(train["artifact_dir"]) / "model")
    schema = json.loads((Path(train["artifact_dir"]) / "schema.json").read_text())
    index = explain_index(train["manifest"])
    for run_type in ("eval", "score"):
        s = spec(tmp_path, "location_scoring", run_type=run_type, model_dir=model_dir, model_schema=schema)
        s["data"]["synthetic"]["seed"] = 2
        result, messages = run(s)
        status, detail = stage_events(messages, index)[-1]
        assert status == "skipped"
        assert f"{run_type} run" in detail and "train runs" in detail
        assert not any(kind == "explanations" for kind in result["artifacts"].values())
        assert not any((Path(s["artifact_dir"]) / name).exists() for name in FILES)


def test_a_backtest_skips_the_stage(tmp_path):
    s = spec(tmp_path, "location_scoring", run_type="backtest")
    result, messages = run(s)
    assert stage_events(messages, explain_index(s["manifest"]))[-1][0] == "skipped"
    assert "explanations" not in result["artifacts"].values()


def test_a_failing_explain_stage_keeps_the_model_and_says_why(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("the attribution did not converge")

    monkeypatch.setattr(pipeline, "explain_model", broken)
    s = spec(tmp_path, "location_scoring")
    result, messages = run(s)  # no exception: the run succeeds
    out = Path(s["artifact_dir"])
    status, detail = stage_events(messages, explain_index(s["manifest"]))[-1]
    assert status == "skipped"
    assert "could not be computed" in detail and "did not converge" in detail
    assert any(kind == "model" for kind in result["artifacts"].values())
    assert (out / "model").is_dir() and "metrics.json" in result["artifacts"]
    assert not any(name in result["artifacts"] for name in FILES)
    assert not any((out / name).exists() for name in FILES)
    warnings = [m for level, m in logs(messages) if level == "warning" and m.startswith("explain:")]
    assert len(warnings) == 1 and "did not converge" in warnings[0]


def test_a_half_written_explanation_is_removed(tmp_path, monkeypatch):
    """A failure after explanations.json was written (the Parquet refused) leaves no file."""
    real = pipeline.explain_model

    def unwritable(*args, **kwargs):
        e = real(*args, **kwargs)
        unstorable = pd.DataFrame({"x": [object()]})  # pyarrow cannot write a Python object
        return type(e)(document=e.document, contributions=unstorable, background=e.background)

    monkeypatch.setattr(pipeline, "explain_model", unwritable)
    s = spec(tmp_path, "location_scoring", m=manifest("location_scoring", {**SMALL, "methods": ["shap"]}))
    result, messages = run(s)
    assert stage_events(messages, explain_index(s["manifest"]))[-1][0] == "skipped"
    assert not any((Path(s["artifact_dir"]) / name).exists() for name in FILES)


def test_a_manifest_without_an_explain_stage_writes_no_explanations(tmp_path):
    m = manifest("location_scoring")
    m["pipeline"]["stages"] = [st for st in m["pipeline"]["stages"] if st["type"] != "explain"]
    s = spec(tmp_path, "location_scoring", m=m)
    result, _ = run(s)
    assert "explanations" not in result["artifacts"].values()


# --------------------------------------------------------------------------- stored and read back


def test_the_files_are_stored_checked_and_read_back(user, baselines):
    from runs.tests.factories import trained_model

    model = trained_model(user, "recipe_location_base", rows=ROWS["location_scoring"])
    files = model.artifacts_json["files"]
    for name in FILES:
        assert files[name]["kind"] == "explanations" and len(files[name]["sha256"]) == 64
    assert artifacts.has_explanations(model)
    background = artifacts.explanation_background(model)
    assert isinstance(background, pd.DataFrame)
    assert artifacts.explanation_background(model) is background  # cached
    document = artifacts.explanation_document(model)
    assert document["family"] == "location_scoring"
    # A model whose run wrote no explanations (trained before the stage existed).
    model.artifacts_json = {
        **model.artifacts_json,
        "files": {n: e for n, e in files.items() if n not in FILES},
    }
    assert not artifacts.has_explanations(model)
    assert artifacts.explanation_background(model) is None
    assert artifacts.explanation_document(model) is None
