"""Distributed LightGBM training on a Dask cluster (issue #16 §3): a train run whose training stage
says ``distributed: "dask"`` streams its dataset chunk by chunk to the cluster at
DASK_SCHEDULER_ADDRESS and trains there with lightgbm.dask; the model is saved and predicts like a
local one. The cluster tests share one ``LocalCluster`` of 2 worker processes on loopback."""

from __future__ import annotations

import copy
import json

import numpy as np
import pandas as pd
import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from recipes.baselines import HERE as BASELINES
from recipes.manifest import validate_manifest
from recipes.models import Recipe, RecipeVersion
from runs import data as run_data
from runs import distributed
from runs.families import get_family
from runs.pipeline import StageFailed, execute
from runs.services import dataset_create, run_start

ROWS, ROW_GROUP, ROUNDS = 4_000, 1_000, 60


def manifest(family: str, **training) -> dict:
    """The family's baseline, without its explain stage (not what is tested here), with fewer
    boosting rounds and ``training`` merged into the training stage's config."""
    m = json.loads((BASELINES / f"{family}.json").read_text())
    m["pipeline"]["stages"] = [s for s in m["pipeline"]["stages"] if s["type"] != "explain"]
    for stage in m["pipeline"]["stages"]:
        if stage["type"] == "training":
            key = "num_boost_round" if family == "location_scoring" else "n_estimators"
            stage["config"]["hyperparameters"][key] = ROUNDS
            stage["config"].update(training)
    return m


def spec(tmp_path, family: str, address: str, **training) -> dict:
    frame = get_family(family).generate(ROWS, 1)
    path = tmp_path / f"{family}.parquet"
    frame.to_parquet(path, index=False, row_group_size=ROW_GROUP)  # four row groups
    return {
        "run_id": "run_test",
        "run_type": "train",
        "family": family,
        "manifest": manifest(family, distributed="dask", **training),
        "data": {"path": str(path), "format": "parquet", "max_rows": 10 * ROWS},
        "artifact_dir": str(tmp_path / "artifacts"),
        "model_dir": None,
        "model_schema": None,
        "threads": 1,
        "dask_scheduler_address": address,
    }


def run(spec_: dict) -> tuple[dict, list[str]]:
    logs: list[str] = []
    result = execute(spec_, lambda *m: logs.append(m[2]) if m[0] == "log" else None)
    return result, logs


@pytest.fixture(scope="module")
def cluster():
    from distributed import LocalCluster  # noqa: PLC0415 -- only the cluster tests load it

    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1", dashboard_address=None
    ) as local:
        yield local.scheduler_address


@pytest.fixture
def chunks_of_a_row_group(monkeypatch):
    monkeypatch.setattr(run_data, "SAMPLE_CHUNK_ROWS", ROW_GROUP)  # one chunk per row group


def local_twin(spec_: dict, family):
    """The same rows trained in this process: the run's prepared data, its holdout rule."""
    frame = pd.read_parquet(spec_["data"]["path"])
    prepared = family.prepare(frame, spec_["manifest"])
    train, test = distributed.Holdout.of(family, spec_["manifest"]).split(prepared)
    return family.fit(train, spec_["manifest"]), train, test


@pytest.mark.slow
def test_location_scoring_trains_on_the_cluster_close_to_a_local_training(
    tmp_path, cluster, chunks_of_a_row_group
):
    s = spec(tmp_path, "location_scoring", cluster)
    result, logs = run(s)
    family = get_family("location_scoring")
    local, train, test = local_twin(s, family)
    (line,) = [m for m in logs if "trained on the Dask cluster" in m]
    assert f"trained on the Dask cluster at {cluster} with 2 workers on all {len(train):,} rows" in line
    assert not any("TRAIN_MAX_ROWS" in m for m in logs)
    # saved like a local model: the same files, loaded and predicting through the same path
    assert {"model/model.txt", "model/model.json", "schema.json", "profile.json"} <= set(result["artifacts"])
    model = family.load(tmp_path / "artifacts" / "model")
    assert len(family.predict(model, test)) == len(test)
    local_metrics, _, _ = family.evaluate(local, test, s["manifest"])
    cluster_metrics, _, _ = family.evaluate(model, test, s["manifest"])
    assert cluster_metrics == pytest.approx(result["metrics"])  # the run evaluated the same holdout
    # LightGBM's data-parallel learner finds each feature's bins from the workers' rows and sums
    # their histograms, so the trees are close to, not bit-identical with, one process's. Measured
    # on these rows (one run, a machine shared with other jobs; deterministic=True): rank
    # correlation 0.9191 vs 0.9209 locally, RMSE +0.5%, predictions correlated at 0.996. The
    # tolerances leave room for other bins (another LightGBM or row-group layout), not for a
    # model trained on other rows or without its categories.
    assert abs(cluster_metrics["rank_correlation"] - local_metrics["rank_correlation"]) < 0.02
    assert cluster_metrics["RMSE"] == pytest.approx(local_metrics["RMSE"], rel=0.03)
    assert np.corrcoef(family.predict(model, test), family.predict(local, test))[0, 1] > 0.98


@pytest.mark.slow
def test_next_best_action_trains_its_two_models_on_the_cluster(tmp_path, cluster, chunks_of_a_row_group):
    s = spec(tmp_path, "next_best_action", cluster, algorithm="two_model")
    result, logs = run(s)
    family = get_family("next_best_action")
    local, train, test = local_twin(s, family)
    assert any(f"with 2 workers on all {len(train):,} rows" in m for m in logs)
    model = family.load(tmp_path / "artifacts" / "model")
    assert sorted(model.boosters) == ["control", "treated"]
    assert model.propensity == pytest.approx(train["treatment"].mean())
    x = test[model.features]
    for name in ("treated", "control"):  # each outcome model's probabilities, as the local one's
        ours = model.boosters[name].predict(family._matrix(x, model.features, model.categories))
        theirs = local.boosters[name].predict(family._matrix(x, local.features, local.categories))
        # measured identical on these rows (force_col_wise, few features: the same bins); the
        # tolerance is for bins that differ, as in the location test above
        assert np.abs(ours - theirs).mean() < 0.02
    assert set(result["metrics"]) >= {"uplift", "qini_coefficient"}


def test_a_run_asking_for_dask_without_an_address_fails_saying_what_to_set(tmp_path):
    with pytest.raises(StageFailed, match="no DASK_SCHEDULER_ADDRESS: set it"):
        run(spec(tmp_path, "location_scoring", ""))


def test_an_unreachable_scheduler_fails_the_run_in_words(tmp_path, monkeypatch):
    monkeypatch.setattr(distributed, "CONNECT_TIMEOUT_SECONDS", 1)
    with pytest.raises(StageFailed, match="could not connect to the Dask scheduler at tcp://127.0.0.1:9"):
        run(spec(tmp_path, "location_scoring", "tcp://127.0.0.1:9"))


def test_the_holdout_rule_keeps_an_entity_on_one_side_and_cuts_time_at_the_last_share():
    family = get_family("location_scoring")
    frame = family.generate(2_000, 3)
    rule = distributed.Holdout.of(family, manifest("location_scoring"))
    test = rule.mask(frame)
    assert 0.15 < test.mean() < 0.25
    twice = pd.concat([frame, frame])
    assert (rule.mask(twice) == np.concatenate([test, test])).all()  # by the grain, not the position
    timed = copy.deepcopy(manifest("location_scoring"))
    timed["evaluation"]["validation"] = {"method": "time_holdout", "test_size": 0.25}
    by_time = distributed.Holdout.of(family, timed)
    times = pd.to_datetime(frame["observed_at"])
    by_time.set_range(times.min(), times.max())
    assert (by_time.mask(frame) == (times > times.max() - (times.max() - times.min()) * 0.25)).all()


def test_the_first_pass_finds_every_level_and_the_time_range():
    family = get_family("next_best_action")
    frame = family.generate(3_000, 2)
    scanned = distributed.scan((frame.iloc[i : i + 700] for i in range(0, len(frame), 700)), family)
    assert scanned.rows == 3_000
    assert scanned.levels["segment"] == sorted(frame["segment"].astype(str).unique())
    assert scanned.time_max == pd.to_datetime(frame["event_time"]).max()


# --- the manifest switch --------------------------------------------------------------------------


def _paths(family: str, m: dict) -> dict[str, str]:
    return {e["path"]: e["message"] for e in validate_manifest(m, family=family)}


def test_the_switch_is_valid_for_the_two_lightgbm_row_families():
    for family in ("location_scoring", "next_best_action"):
        assert validate_manifest(manifest(family, distributed="dask"), family=family) == []


@pytest.mark.parametrize("family", ["pricing", "forecasting"])
def test_pricing_and_forecasting_refuse_the_switch_naming_its_path_and_why(family):
    m = json.loads((BASELINES / f"{family}.json").read_text())
    index = next(i for i, s in enumerate(m["pipeline"]["stages"]) if s["type"] == "training")
    m["pipeline"]["stages"][index]["config"]["distributed"] = "dask"
    errors = _paths(family, m)
    message = errors[f"/pipeline/stages/{index}/config/distributed"]
    assert "location_scoring and next_best_action families only" in message
    assert "in one process" in message


def test_a_bad_value_or_a_switch_outside_the_training_stage_is_named():
    m = manifest("location_scoring", distributed="spark")
    m["pipeline"]["stages"][0]["config"]["distributed"] = "dask"
    errors = _paths("location_scoring", m)
    assert "must be 'dask'" in errors["/pipeline/stages/2/config/distributed"]
    assert "belongs in the training stage" in errors["/pipeline/stages/0/config/distributed"]


# --- the 400 at run start -------------------------------------------------------------------------


@pytest.mark.django_db
def test_starting_a_dask_train_run_without_an_address_is_a_400(baselines, user, settings, api_client):
    settings.DASK_SCHEDULER_ADDRESS = ""
    recipe = Recipe.objects.get(pk="recipe_location_base")
    version = recipe.current_version
    RecipeVersion.objects.filter(pk=version.pk).update(
        manifest=manifest("location_scoring", distributed="dask")
    )
    frame = get_family("location_scoring").generate(1_200, 1)
    dataset = dataset_create(
        user=user, upload=SimpleUploadedFile("sites.csv", frame.to_csv(index=False).encode())
    )
    answer = api_client.post(
        "/api/ml-development/runs",
        {"recipe_id": recipe.pk, "run_type": "train", "dataset_id": dataset.pk},
        format="json",
    )
    assert answer.status_code == 400, answer.content
    (error,) = answer.json()["errors"]
    assert error["path"] == "/recipe_version_id"
    assert "DASK_SCHEDULER_ADDRESS is not set" in error["message"]
    assert "pipeline.stages[2].config.distributed" in error["message"]
    settings.DASK_SCHEDULER_ADDRESS = "tcp://127.0.0.1:8786"  # set: the run is queued
    run = run_start(user=user, recipe=recipe, dataset=dataset)
    assert run.status == "queued"
