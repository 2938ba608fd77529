"""Tests of the next_best_action family and its uplift metrics (no Django needed)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import auc as sk_auc

from recipes.catalog import HIGHER, METRICS, metric_direction, metric_status
from runs.families import next_best_action as nba
from runs.families import stage_config
from runs.metrics import next_best_action as m

MANIFEST_PATH = Path(__file__).resolve().parents[2] / "recipes" / "baselines" / "next_best_action.json"


@pytest.fixture(scope="module")
def manifest() -> dict:
    return json.loads(MANIFEST_PATH.read_text())


def _with_algorithm(manifest: dict, algorithm: str, **hyper) -> dict:
    out = copy.deepcopy(manifest)
    for stage in out["pipeline"]["stages"]:
        if stage["type"] == "training":
            stage["config"]["algorithm"] = algorithm
            stage["config"]["hyperparameters"].update(hyper)
    return out


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return nba.generate(30_000, 7)


@pytest.fixture(scope="module")
def fitted(data, manifest):
    prepared = nba.prepare(data, manifest)
    train, test = nba.split(prepared, manifest)
    model = nba.fit(train, manifest, threads=1)
    return model, train, test


# --------------------------------------------------------------------------- data


def test_generate_is_deterministic_and_seed_dependent():
    a = nba.generate(2_000, 3)
    b = nba.generate(2_000, 3)
    c = nba.generate(2_000, 4)
    pd.testing.assert_frame_equal(a, b)
    assert not a["converted"].equals(c["converted"])


_DTYPE_CHECKS = {
    "string": pd.api.types.is_string_dtype,
    "int": pd.api.types.is_integer_dtype,
    "float": pd.api.types.is_float_dtype,
    "datetime": pd.api.types.is_datetime64_any_dtype,
}


def test_schema_matches_frame():
    df = nba.generate(1_000, 1)
    assert list(df.columns) == [c["name"] for c in nba.SCHEMA]
    for col in nba.SCHEMA:
        assert _DTYPE_CHECKS[col["dtype"]](df[col["name"]]), col
        assert col["role"] in {"grain", "time", "label", "treatment", "feature", "segment"}
    roles = {c["role"] for c in nba.SCHEMA}
    assert {"grain", "time", "label", "treatment"} <= roles
    assert df["customer_id"].is_unique
    assert df["event_time"].is_monotonic_increasing
    assert df.notna().all().all()
    for cols in nba.FEATURE_SETS.values():
        assert set(cols) <= set(df.columns)


def test_generated_experiment_is_randomised_with_heterogeneous_effect():
    df = nba.generate(20_000, 11)
    assert 0.47 < df["treatment"].mean() < 0.53
    # Randomised: the feature distribution does not depend on treatment.
    means = df.groupby("treatment")[["recency_days", "frequency", "monetary"]].mean()
    assert np.allclose(means.loc[0], means.loc[1], rtol=0.05)
    tau = nba.true_uplift(df)
    assert tau.min() < -0.05 and tau.max() > 0.25  # sleeping dogs and persuadables
    observed_ate = (
        df.loc[df.treatment == 1, "converted"].mean() - df.loc[df.treatment == 0, "converted"].mean()
    )
    assert abs(observed_ate - tau.mean()) < 0.02
    assert (df.loc[df.converted == 0, "revenue"] == 0).all()
    assert (df.loc[df.converted == 1, "revenue"] > 0).all()
    gt = nba.ground_truth(11)
    assert gt["uplift_logit"]["premium_segment"] < 0
    json.dumps(gt)


# --------------------------------------------------------------------------- stages


def test_prepare_dedupes_coerces_and_caps(manifest):
    df = nba.generate(50, 2)
    dup = df.iloc[[3]].copy()
    dup["event_time"] = df["event_time"].max() + pd.Timedelta(days=1)
    dup["recency_days"] = 5000
    raw = pd.concat([df, dup], ignore_index=True)
    raw["treatment"] = raw["treatment"].map({1: "true", 0: "false"})
    raw["event_time"] = raw["event_time"].astype(str)
    raw.loc[0, "converted"] = np.nan
    out = nba.prepare(raw, manifest)
    assert len(out) == 49  # one duplicate and one missing label removed
    assert out["customer_id"].is_unique
    row = out[out.customer_id == df.loc[3, "customer_id"]].iloc[0]
    assert row["recency_days"] == 730  # latest row kept, then capped
    assert pd.api.types.is_datetime64_any_dtype(out["event_time"])
    assert set(out["treatment"].unique()) <= {0, 1}


def test_random_and_time_holdout_split(manifest):
    df = nba.generate(1_000, 5)
    train, test = nba.split(df, manifest)
    assert len(test) == 200 and len(train) == 800
    assert set(train.customer_id).isdisjoint(test.customer_id)
    # A random holdout spans the whole time range.
    assert test["event_time"].min() < df["event_time"].quantile(0.05)
    assert test["event_time"].max() > df["event_time"].quantile(0.95)
    timed = copy.deepcopy(manifest)
    timed["evaluation"]["validation"] = {"method": "time_holdout", "test_size": 0.25}
    train, test = nba.split(df, timed)
    assert train["event_time"].max() <= test["event_time"].min()
    assert 200 < len(test) < 300


def test_folds_kfold_and_rolling_origin(manifest):
    df = nba.generate(900, 5)
    folds = nba.folds(df, manifest)
    assert len(folds) == 3
    tests = [set(te.customer_id) for _, te in folds]
    assert set().union(*tests) == set(df.customer_id)
    assert sum(len(t) for t in tests) == len(df)
    rolling = copy.deepcopy(manifest)
    rolling["evaluation"]["validation"] = {"method": "rolling_origin", "folds": 3}
    folds = nba.folds(df, rolling)
    assert len(folds) == 3
    for tr, te in folds:
        assert tr["event_time"].max() < te["event_time"].min()
    assert len(folds[0][0]) < len(folds[1][0]) < len(folds[2][0])


# --------------------------------------------------------------------------- model


def test_save_load_round_trip_identical_predictions(fitted, tmp_path):
    model, _, test = fitted
    files = nba.save(model, tmp_path)
    assert files[0] == "model.json" and all((tmp_path / f).is_file() for f in files)
    for f in files:  # no pickle: text files only
        (tmp_path / f).read_text()
    loaded = nba.load(tmp_path)
    assert nba.predict(loaded, test.head(500)) == nba.predict(model, test.head(500))


@pytest.mark.parametrize("algorithm", ["class_transformation", "x_learner"])
def test_other_learners_round_trip(algorithm, data, manifest, tmp_path):
    small = data.head(6_000)
    model = nba.fit(small, _with_algorithm(manifest, algorithm, n_estimators=40), threads=1)
    nba.save(model, tmp_path)
    loaded = nba.load(tmp_path)
    assert loaded.algorithm == algorithm
    assert np.array_equal(nba.predict(loaded, small.head(300)), nba.predict(model, small.head(300)))


def test_predict_without_labels_and_missing_column(fitted):
    model, _, test = fitted
    rows = test.drop(columns=["treatment", "converted", "revenue", "event_time"]).head(20)
    scores = nba.predict(model, rows)
    assert len(scores) == 20 and all(isinstance(s, float) and -1 <= s <= 1 for s in scores)
    recs = nba.recommend(model, rows)
    assert [r["recommended_action"] == "send_offer" for r in recs] == [s > 0 for s in scores]
    with pytest.raises(ValueError, match="recency_days"):
        nba.predict(model, rows.drop(columns=["recency_days"]))
    # An unseen category is scored (treated as missing), not an error.
    odd = rows.copy()
    odd["channel"] = "carrier_pigeon"
    assert all(math.isfinite(s) for s in nba.predict(model, odd))


def test_fit_is_deterministic(data, manifest):
    small = data.head(4_000)
    cfg = _with_algorithm(manifest, "two_model", n_estimators=30)
    a = nba.predict(nba.fit(small, cfg, threads=1), small.head(100))
    b = nba.predict(nba.fit(small, cfg, threads=1), small.head(100))
    assert a == b


def test_unknown_algorithm_rejected(data, manifest):
    with pytest.raises(ValueError, match="unknown algorithm"):
        nba.fit(data.head(500), _with_algorithm(manifest, "magic"), threads=1)


def test_evaluate_outputs(fitted, manifest):
    model, _, test = fitted
    metrics, predictions, plot = nba.evaluate(model, test, manifest)
    assert set(metrics) == set(METRICS["next_best_action"])
    assert all(type(v) is float and math.isfinite(v) for v in metrics.values())
    assert len(predictions) == len(test)
    assert {
        "customer_id",
        "event_time",
        "converted",
        "treatment",
        "uplift_score",
        "recommended_action",
    } <= set(predictions.columns)
    qini = plot["qini_curve"]
    assert len(qini["x"]) == len(qini["series"]["model"]) == len(qini["series"]["random"]) <= 500
    assert qini["x"][0] == 0 and qini["x"][-1] == 1
    assert qini["series"]["model"][-1] == pytest.approx(qini["series"]["random"][-1], abs=1e-3)
    dec = plot["uplift_by_decile"]
    assert dec["x"] == list(range(1, 11))
    assert dec["series"]["observed"][0] > dec["series"]["random"][0] > dec["series"]["observed"][-1]
    json.dumps(plot)
    out = nba.example_output(model, test.head(3))
    json.dumps(out)
    assert len(out["outputs"]) == 3 and out["outputs"][0]["customer_id"] == test.customer_id.iloc[0]


def test_qini_on_holdout_clearly_beats_random(fitted, manifest):
    """The correctness check: the model ranks the true persuadables first."""
    model, _, test = fitted
    metrics, predictions, _ = nba.evaluate(model, test, manifest)
    y, t = test["converted"].to_numpy(), test["treatment"].to_numpy()
    rng = np.random.default_rng(0)
    random_qinis = [m.qini_coefficient(y, t, rng.random(len(test))) for _ in range(20)]
    assert metrics["qini_coefficient"] > 0.08
    assert metrics["qini_coefficient"] > max(random_qinis) + 0.05
    assert abs(np.mean(random_qinis)) < 0.02
    # Close to what the true uplift function itself achieves on the same holdout.
    oracle = m.qini_coefficient(y, t, nba.true_uplift(test))
    assert metrics["qini_coefficient"] > 0.7 * oracle
    assert np.corrcoef(predictions["uplift_score"], nba.true_uplift(test))[0, 1] > 0.7
    assert metrics["uplift"] > 0.08 and metrics["incremental_revenue"] > 0


def test_baseline_manifest_is_consistent(manifest):
    assert manifest["metadata"]["id"] == "recipe_nba_base"
    assert manifest["metadata"]["name"] == "Next Best Action Baseline v1"
    assert manifest["metadata"]["model_family"] == nba.NAME
    assert set(manifest["evaluation"]["metrics"]) == set(METRICS["next_best_action"])
    for name, levels in manifest["evaluation"]["metrics"].items():
        assert metric_direction(nba.NAME, name) == HIGHER
        assert levels["target"] >= levels["threshold_warning"] >= levels["threshold_critical"], name
    for name in manifest["requirements"]["feature_sets"]["required"]:
        assert name in nba.FEATURE_SETS
    columns = {c["name"] for c in nba.SCHEMA}
    assert set(manifest["lineage"]["input_features"]) <= columns
    assert set(manifest["monitoring"]["drift"]["features"]) <= columns
    assert stage_config(manifest, "training")["algorithm"] in nba.ALGORITHMS
    assert manifest["deployment"]["mode"] == "realtime"
    assert len(manifest["deployment"]["schedule"].split()) == 5


def test_baseline_metrics_pass_on_small_run(fitted, manifest):
    """Even on 30k rows (instead of DEFAULT_ROWS) the baseline is not critical on any metric."""
    model, _, test = fitted
    metrics, _, _ = nba.evaluate(model, test, manifest)
    for name, levels in manifest["evaluation"]["metrics"].items():
        status = metric_status(
            metrics[name], HIGHER, levels["threshold_warning"], levels["threshold_critical"]
        )
        assert status != "critical", (name, metrics[name])


# --------------------------------------------------------------------------- metrics

# Six customers ranked by score (no ties).
Y = np.array([1, 0, 1, 1, 0, 0])
T = np.array([1, 0, 1, 0, 1, 0])
S = np.array([0.9, 0.8, 0.7, 0.6, 0.5, 0.4])
R = np.array([10.0, 0.0, 20.0, 5.0, 0.0, 0.0])


def test_top_k_metrics_hand_values():
    # Top 3 = rows 0,1,2: treated 0,2 both respond, control row 1 does not.
    assert m.top_k_count(6, 0.5) == 3
    assert m.top_k_count(30, 0.1) == 3
    assert m.top_k_count(5, 0.01) == 1
    assert m.uplift_at_k(Y, T, S, 0.5) == pytest.approx(1.0)
    assert m.precision_at_k(Y, T, S, 0.5) == pytest.approx(1.0)
    # ATE = 2/3 - 1/3.
    assert m.uplift(Y, T, S, 0.5) == pytest.approx(1.0 - 1.0 / 3.0)
    # Top 4 adds control responder row 3: 2/2 - 1/2.
    assert m.uplift_at_k(Y, T, S, 4 / 6) == pytest.approx(0.5)
    # Top 1 has no control customer -> undefined.
    assert math.isnan(m.uplift_at_k(Y, T, S, 1 / 6))
    # Revenue: treated mean 15, control mean 0, 3 customers targeted.
    assert m.incremental_revenue(R, T, S, 0.5, population=None) == pytest.approx(45.0)
    assert m.incremental_revenue(R, T, S, 0.5) == pytest.approx(45.0 * 1000 / 6)
    assert m.incremental_revenue(R, T, S, 0.5, offer_cost=1.0, population=None) == pytest.approx(42.0)
    with pytest.raises(ValueError):
        m.uplift_at_k(Y, T, S, 0.0)


def test_curves_hand_values():
    n, q = m.qini_curve(Y, T, S)
    assert n.tolist() == [0, 1, 2, 3, 4, 5, 6]
    assert q.tolist() == pytest.approx([0, 1, 1, 2, 1, 0.5, 1])
    n, u = m.uplift_curve(Y, T, S)
    assert u.tolist() == pytest.approx([0, 0, 2, 3, 2, 5 / 6, 2])
    # Oracle: treated responders {0,2}, then non-responders {1,4,5} as one tie group, then {3}.
    n, q = m.perfect_qini_curve(Y, T)
    assert n.tolist() == [0, 2, 5, 6] and q.tolist() == pytest.approx([0, 2, 2, 1])
    # Areas: model 6.0, random 6 * 1 / 2 = 3, perfect 9.5.
    assert m.qini_coefficient(Y, T, S) == pytest.approx(3.0 / 6.5)
    assert m.auuc(Y, T, S) == pytest.approx(53 / 216)  # (0+2+5+5+17/6+17/6) / 2 / 36
    n, u = m.uplift_curve(Y, T, S)
    assert m.auuc(Y, T, S) == pytest.approx(sk_auc(n / 6, u / 6))


def test_compute_all_names_match_catalog():
    out = m.compute_all(Y, T, S, R, k=0.5)
    assert set(out) == set(METRICS["next_best_action"])
    assert out["uplift@k"] == pytest.approx(1.0)


def _brute_force(y, t, s):
    """Qini and uplift curves straight from the definitions, one prefix at a time."""
    order = np.argsort(-s)
    q, u = [0.0], [0.0]
    for n in range(1, len(y) + 1):
        top = order[:n]
        yt, tt = y[top], t[top] == 1
        nt, nc = tt.sum(), (~tt).sum()
        yt_sum, yc_sum = yt[tt].sum(), yt[~tt].sum()
        q.append(yt_sum - (yc_sum * nt / nc if nc else 0.0))
        u.append((yt_sum / nt - yc_sum / nc) * n if nt and nc else 0.0)
    return np.array(q), np.array(u)


def test_curves_match_brute_force_on_random_data():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 2, 200)
    t = rng.integers(0, 2, 200)
    s = rng.random(200)
    q_ref, u_ref = _brute_force(y, t, s)
    assert np.allclose(m.qini_curve(y, t, s)[1], q_ref)
    assert np.allclose(m.uplift_curve(y, t, s)[1], u_ref)
    k = 0.25
    top = np.argsort(-s)[:50]
    ref = y[top][t[top] == 1].mean() - y[top][t[top] == 0].mean()
    assert m.uplift_at_k(y, t, s, k) == pytest.approx(ref)


def test_qini_perfect_random_and_constant():
    rng = np.random.default_rng(5)
    n = 4_000
    t = rng.integers(0, 2, n)
    y = (rng.random(n) < 0.1 + 0.1 * t).astype(int)
    assert m.qini_coefficient(y, t, y * (2 * t - 1)) == pytest.approx(1.0)
    assert m.qini_coefficient(y, t, np.zeros(n)) == pytest.approx(0.0, abs=1e-12)
    randoms = [m.qini_coefficient(y, t, rng.random(n)) for _ in range(20)]
    assert abs(np.mean(randoms)) < 0.03 and max(randoms) < 0.15
    # Worst ranking (reverse of the oracle) is strongly negative.
    assert m.qini_coefficient(y, t, -(y * (2 * t - 1))) < -0.5
    # auuc of a constant score is the straight line: ATE / 2.
    ate = y[t == 1].mean() - y[t == 0].mean()
    assert m.auuc(y, t, np.zeros(n)) == pytest.approx(ate / 2)


def test_ties_do_not_depend_on_row_order():
    rng = np.random.default_rng(9)
    y = rng.integers(0, 2, 300)
    t = rng.integers(0, 2, 300)
    s = rng.integers(0, 5, 300).astype(float)  # heavy ties
    perm = rng.permutation(300)
    assert m.qini_coefficient(y, t, s) == pytest.approx(m.qini_coefficient(y[perm], t[perm], s[perm]))
    assert m.auuc(y, t, s) == pytest.approx(m.auuc(y[perm], t[perm], s[perm]))


def test_uplift_by_bins():
    out = m.uplift_by_bins(Y, T, S, bins=2)
    assert out["bin"] == [1, 2] and out["count"] == [3, 3]
    # bin 2 = rows 3,4,5: treated {4} rate 0, control {3, 5} rate 0.5.
    assert out["observed"] == pytest.approx([1.0, -0.5])
    assert out["predicted"] == pytest.approx([0.8, 0.5])
