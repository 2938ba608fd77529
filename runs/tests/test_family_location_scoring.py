"""Location scoring family: data, splits, model, persistence and metrics (no Django)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.stats import spearmanr
from sklearn.metrics import mean_squared_error

from recipes.catalog import HIGHER, METRICS, meets_target, metric_status
from runs.families import get_family
from runs.families import location_scoring as fam
from runs.metrics import location_scoring as m

BASELINE = Path(__file__).resolve().parents[2] / "recipes" / "baselines" / "location_scoring.json"
DTYPE_KIND = {"float": "f", "int": "i", "datetime": "M"}


def manifest(
    method="random_holdout", test_size=0.2, folds=3, k=0.1, rounds=120, prep=None, training=None
) -> dict:
    train_cfg = {"algorithm": "lightgbm", "hyperparameters": {"num_boost_round": rounds}}
    train_cfg.update(training or {})
    return {
        "pipeline": {
            "stages": [
                {"name": "prep", "type": "feature_prep", "config": dict(prep or {})},
                {"name": "train", "type": "training", "config": train_cfg},
                {"name": "evaluate", "type": "evaluation", "config": {"k": k}},
            ]
        },
        "evaluation": {"validation": {"method": method, "test_size": test_size, "folds": folds}},
    }


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return fam.generate(4000, seed=7)


@pytest.fixture(scope="module")
def model(data):
    man = manifest()
    train, _ = fam.split(fam.prepare(data, man), man)
    return fam.fit(train, man, threads=1)


# --------------------------------------------------------------------------- data


def test_generate_is_deterministic_and_seed_dependent():
    a = fam.generate(500, seed=3)
    b = fam.generate(500, seed=3)
    c = fam.generate(500, seed=4)
    pd.testing.assert_frame_equal(a, b)
    assert not np.allclose(a["annual_sales"], c["annual_sales"])
    assert len(fam.generate(1, seed=0)) == 1


def test_schema_matches_frame(data):
    assert list(data.columns) == [c["name"] for c in fam.SCHEMA]
    for col in fam.SCHEMA:
        series = data[col["name"]]
        if col["dtype"] == "string":
            assert pd.api.types.is_string_dtype(series), col["name"]
        else:
            assert series.dtype.kind == DTYPE_KIND[col["dtype"]], (col["name"], series.dtype)
    roles = {c["name"]: c["role"] for c in fam.SCHEMA}
    assert roles["site_id"] == "grain" and roles["observed_at"] == "time" and roles["annual_sales"] == "label"
    assert list(roles.values()).count("time") == 1
    assert data["site_id"].is_unique
    assert (data["annual_sales"] > 0).all()
    features = {c for cols in fam.FEATURE_SETS.values() for c in cols}
    assert features == set(fam.ALL_FEATURES) and features <= set(data.columns)
    # only foot_traffic has (a few) missing values
    nulls = data.isna().mean()
    assert 0 < nulls["foot_traffic"] < 0.03
    assert nulls.drop("foot_traffic").sum() == 0


def test_labels_follow_ground_truth(data):
    g = fam.ground_truth(7)
    ok = data["foot_traffic"].notna()
    resid = np.log(data.loc[ok, "annual_sales"]) - fam.true_log_sales(data.loc[ok])
    # residuals are the N(0, sigma) noise (up to rounding of the stored features)
    assert abs(resid.mean()) < 0.02
    assert resid.std() == pytest.approx(g["noise_sigma"], rel=0.1)


def test_family_registry_and_interface():
    assert get_family("location_scoring") is fam
    assert fam.NAME == "location_scoring"
    assert fam.DEFAULT_ROWS == 100_000
    for name in ("generate", "ground_truth", "prepare", "split", "folds", "fit", "evaluate", "predict"):
        assert callable(getattr(fam, name))


# --------------------------------------------------------------------------- prep and splits


def test_prepare_drops_bad_labels_and_duplicate_sites(data):
    df = data.head(50).copy()
    df.loc[0, "annual_sales"] = np.nan
    df.loc[1, "annual_sales"] = -5.0
    dup = df.iloc[[2]].copy()
    dup["observed_at"] = dup["observed_at"] + pd.Timedelta(days=1)
    dup["annual_sales"] = 123.0
    df = pd.concat([df, dup], ignore_index=True)
    messages = []
    out = fam.prepare(df, manifest(), log=messages.append)
    assert len(out) == 48  # 51 rows - 2 bad labels - 1 older duplicate
    assert out["site_id"].is_unique
    assert out.loc[out["site_id"] == df.loc[2, "site_id"], "annual_sales"].item() == 123.0
    assert any("missing or negative" in msg for msg in messages)
    with pytest.raises(ValueError, match="categorical_encoding"):
        fam.prepare(df, manifest(prep={"categorical_encoding": "target"}))
    with pytest.raises(ValueError, match="missing column: parking_spaces"):
        fam.prepare(df.drop(columns=["parking_spaces"]), manifest())


def test_random_holdout_split(data):
    train, test = fam.split(data, manifest(test_size=0.25))
    assert len(test) == 1000 and len(train) == 3000
    assert set(train["site_id"]).isdisjoint(test["site_id"])
    again = fam.split(data, manifest(test_size=0.25))[1]
    assert list(again["site_id"]) == list(test["site_id"])


def test_time_holdout_split(data):
    train, test = fam.split(data, manifest(method="time_holdout", test_size=0.2))
    assert train["observed_at"].max() < test["observed_at"].min()
    t0, t1 = data["observed_at"].min(), data["observed_at"].max()
    assert test["observed_at"].min() >= t0 + 0.8 * (t1 - t0)
    assert len(train) + len(test) == len(data)
    assert 0.15 < len(test) / len(data) < 0.25  # observed_at is uniform over the range
    with pytest.raises(ValueError, match="test_size"):
        fam.split(data, manifest(test_size=1.5))


def test_kfold_folds_partition_the_rows(data):
    folds = fam.folds(data, manifest(folds=4))
    assert len(folds) == 4
    tests = [set(test["site_id"]) for _, test in folds]
    assert sum(len(t) for t in tests) == len(data)
    assert set().union(*tests) == set(data["site_id"])
    for train, test in folds:
        assert set(train["site_id"]).isdisjoint(test["site_id"])
        assert len(train) + len(test) == len(data)


def test_rolling_origin_folds_move_forward(data):
    folds = fam.folds(data, manifest(method="time_holdout", folds=3))
    assert len(folds) == 3
    previous_end = None
    for train, test in folds:
        assert train["observed_at"].max() < test["observed_at"].min()
        if previous_end is not None:
            assert test["observed_at"].min() > previous_end
        previous_end = test["observed_at"].max()
    assert len(folds[0][0]) < len(folds[1][0]) < len(folds[2][0])


# --------------------------------------------------------------------------- model


def test_correctness_spearman_on_held_out_generated_data():
    """The family brief's check: Spearman >= 0.8 on fresh data from the ground truth."""
    man = manifest(rounds=300)
    model = fam.fit(fam.prepare(fam.generate(20_000, seed=1), man), man, threads=1)
    test = fam.generate(5_000, seed=2)
    metrics, predictions, _ = fam.evaluate(model, test, man)
    rho = spearmanr(test["annual_sales"], predictions["prediction"]).statistic
    assert rho >= 0.8
    assert metrics["rank_correlation"] == pytest.approx(rho, abs=1e-12)
    assert metrics["calibration"] < 0.03
    assert metrics["lift"] > 1.7
    assert metrics["hit_rate@k"] > 0.6


def test_evaluate_outputs(model, data):
    man = manifest(k=0.2)
    _, test = fam.split(data, man)
    metrics, predictions, plot = fam.evaluate(model, test, man)
    assert set(metrics) == set(METRICS["location_scoring"])
    assert all(type(v) is float and math.isfinite(v) for v in metrics.values())
    assert list(predictions.columns) == ["site_id", "observed_at", "actual", "prediction"]
    assert len(predictions) == len(test)
    assert predictions["actual"].tolist() == test["annual_sales"].tolist()
    assert metrics["RMSE"] == pytest.approx(
        math.sqrt(mean_squared_error(predictions["actual"], predictions["prediction"]))
    )
    assert metrics["lift"] == pytest.approx(m.lift(predictions["actual"], predictions["prediction"], 0.2))
    scatter = plot["rank_scatter"]
    assert len(scatter["x"]) == len(scatter["y"]) == 500 and scatter["n_total"] == len(test)
    assert all(0.0 <= v <= 1.0 for v in scatter["x"] + scatter["y"])
    assert plot["decile_lift"]["decile"] == list(range(1, 11))
    lifts = plot["decile_lift"]["lift"]
    assert lifts[0] > 1.5 > lifts[-1]  # the model's top decile sells far more than its bottom one
    assert plot["k"] == 0.2
    json.dumps(plot)


def test_predict_without_labels_and_missing_column(model, data):
    rows = data.head(20).drop(columns=["annual_sales"])
    preds = fam.predict(model, rows)
    assert len(preds) == 20 and all(isinstance(p, float) and p > 0 for p in preds)
    # column order and extra columns do not matter
    shuffled = rows[list(reversed(rows.columns))].assign(extra=1)
    assert fam.predict(model, shuffled) == preds
    with pytest.raises(ValueError, match="missing column: median_income"):
        fam.predict(model, rows.drop(columns=["median_income"]))
    # unseen region and missing values are scored, not rejected
    odd = rows.head(2).copy()
    odd["region"] = "atlantis"
    odd["foot_traffic"] = np.nan
    assert all(math.isfinite(p) for p in fam.predict(model, odd))


def test_save_load_round_trip(model, data, tmp_path):
    files = fam.save(model, tmp_path)
    assert sorted(files) == ["model.json", "model.txt"]
    assert all((tmp_path / f).is_file() for f in files)
    meta = json.loads((tmp_path / "model.json").read_text())
    assert meta["family"] == "location_scoring" and meta["categories"]["region"] == sorted(fam.REGIONS)
    loaded = fam.load(tmp_path)
    rows = data.drop(columns=["annual_sales"]).head(300)
    assert fam.predict(loaded, rows) == fam.predict(model, rows)
    example = fam.example_output(loaded, rows.head(3))
    json.dumps(example)
    assert [o["rank"] for o in sorted(example["output"], key=lambda o: -o["predicted_annual_sales"])] == [
        1,
        2,
        3,
    ]


@pytest.mark.parametrize(
    "prep",
    [
        {"categorical_encoding": "onehot"},
        {"categorical_encoding": "ordinal", "log_transform": []},
        {"log_target": False},
    ],
)
def test_feature_prep_options_train_and_round_trip(prep, data, tmp_path):
    man = manifest(rounds=60, prep=prep)
    train, test = fam.split(fam.prepare(data, man), man)
    model = fam.fit(train, man, threads=1)
    metrics, _, _ = fam.evaluate(model, test, man)
    assert metrics["rank_correlation"] > 0.7
    fam.save(model, tmp_path)
    rows = test.drop(columns=["annual_sales"]).head(50)
    assert fam.predict(fam.load(tmp_path), rows) == fam.predict(model, rows)
    if prep.get("categorical_encoding") == "onehot":
        assert "region=central" in model.meta["design_columns"]


def test_fit_uses_config_and_threads(data):
    man = manifest(
        rounds=15, training={"hyperparameters": {"n_estimators": 15, "num_leaves": 7, "n_jobs": 8}}
    )
    messages = []
    model = fam.fit(data, man, threads=1, log=messages.append)
    assert model.booster.num_trees() == 15
    assert model.meta["params"]["num_threads"] == 1 and "n_jobs" not in model.meta["params"]
    assert model.meta["params"]["num_leaves"] == 7
    assert messages
    bad = copy.deepcopy(man)
    bad["pipeline"]["stages"][1]["config"]["algorithm"] = "xgboost"
    with pytest.raises(ValueError, match="xgboost"):
        fam.fit(data, bad, threads=1)


# --------------------------------------------------------------------------- metrics


def test_average_ranks_and_spearman_hand_values():
    assert m.average_ranks([10, 20, 20, 5]).tolist() == [2.0, 3.5, 3.5, 1.0]
    assert m.rank_correlation([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert m.rank_correlation([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    # ranks (1,2,3,4) vs (1,3,2,4): 1 - 6*sum(d^2)/(n(n^2-1)) = 1 - 6*2/60 = 0.8
    assert m.rank_correlation([1, 2, 3, 4], [1, 3, 2, 4]) == pytest.approx(0.8)
    assert math.isnan(m.rank_correlation([1, 2, 3], [5, 5, 5]))


def test_spearman_matches_scipy_with_ties():
    rng = np.random.default_rng(0)
    a = rng.integers(0, 20, 300).astype(float)
    p = a + rng.integers(0, 15, 300)
    assert m.rank_correlation(a, p) == pytest.approx(spearmanr(a, p).statistic, abs=1e-12)


def test_top_k_hit_rate_and_lift_hand_values():
    actual = [10, 9, 8, 7, 6, 5, 4, 3, 2, 1]
    predicted = [1, 9, 8, 7, 6, 5, 4, 3, 2, 10]  # ranks the worst site first
    assert m.top_count(10, 0.2) == 2 and m.top_count(100, 0.1) == 10 and m.top_count(7, 0.1) == 1
    assert sorted(m.top_k_indices(predicted, 0.2).tolist()) == [1, 9]
    # actual top 2 = {0, 1}; predicted top 2 = {9, 1}; overlap 1 of 2
    assert m.hit_rate_at_k(actual, predicted, 0.2) == pytest.approx(0.5)
    # mean actual of predicted top 2 = (1 + 9) / 2 = 5; overall mean 5.5
    assert m.lift(actual, predicted, 0.2) == pytest.approx(5 / 5.5)
    assert m.hit_rate_at_k(actual, actual, 0.3) == 1.0
    assert m.lift(actual, actual, 0.3) == pytest.approx(9 / 5.5)
    with pytest.raises(ValueError, match="k must be"):
        m.lift(actual, predicted, 0.0)


def test_calibration_rmse_and_deciles():
    actual = np.array([100.0, 200.0, 300.0, 400.0])
    predicted = np.array([110.0, 190.0, 330.0, 420.0])
    # mean(pred) = 262.5, mean(actual) = 250 -> |1.05 - 1| = 0.05
    assert m.calibration(actual, predicted) == pytest.approx(0.05)
    assert m.calibration(actual, actual * 0.9) == pytest.approx(0.1)
    # errors 10, -10, 30, 20 -> sqrt((100+100+900+400)/4) = sqrt(375)
    assert m.rmse(actual, predicted) == pytest.approx(math.sqrt(375.0))
    assert m.rmse(actual, predicted) == pytest.approx(math.sqrt(mean_squared_error(actual, predicted)))
    # 4 rows in 2 groups, best predictions first: (400+300)/2 / 250 = 1.4, (200+100)/2 / 250 = 0.6
    assert m.decile_lift(actual, predicted, groups=2) == pytest.approx([1.4, 0.6])
    with pytest.raises(ValueError, match="differ in length"):
        m.rmse([1.0, 2.0], [1.0])


# --------------------------------------------------------------------------- baseline manifest


def test_baseline_manifest_is_consistent():
    man = json.loads(BASELINE.read_text())
    assert man["metadata"]["id"] == "recipe_location_base"
    assert man["metadata"]["name"] == "Location Scoring Baseline v1"
    assert man["metadata"]["model_family"] == "location_scoring"
    assert set(man["evaluation"]["metrics"]) == set(METRICS["location_scoring"])
    for name, spec in man["evaluation"]["metrics"].items():
        direction = METRICS["location_scoring"][name][0]
        t, w, c = spec["target"], spec["threshold_warning"], spec["threshold_critical"]
        assert (t >= w >= c) if direction == HIGHER else (t <= w <= c), name
    for name in man["requirements"]["feature_sets"]["required"]:
        assert name in fam.FEATURE_SETS
    columns = {c["name"] for c in fam.SCHEMA}
    assert set(man["lineage"]["input_features"]) <= columns
    assert set(man["monitoring"]["drift"]["features"]) <= columns
    assert set(man["monitoring"]["freshness"]["features"]) <= columns
    assert man["deployment"]["mode"] == "batch" and len(man["deployment"]["schedule"].split()) == 5


def test_baseline_manifest_config_runs_and_scores_within_thresholds():
    """The baseline's own stage configs on a smaller sample land within its warning levels."""
    man = json.loads(BASELINE.read_text())
    data = fam.generate(12_000, seed=42)
    train, test = fam.split(fam.prepare(data, man), man)
    metrics, _, _ = fam.evaluate(fam.fit(train, man, threads=1), test, man)
    for name, spec in man["evaluation"]["metrics"].items():
        direction = METRICS["location_scoring"][name][0]
        status = metric_status(
            metrics[name], direction, spec["threshold_warning"], spec["threshold_critical"]
        )
        assert status == "pass", (name, metrics[name])
    assert meets_target(
        metrics["rank_correlation"], HIGHER, man["evaluation"]["metrics"]["rank_correlation"]["target"]
    )
