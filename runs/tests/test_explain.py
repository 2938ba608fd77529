"""Explanations (runs.explain, issue #17): exactness, the synthetic worlds' ground truth,
reproducibility, the uploaded-data path, drift and the per-row answer. Pure: no Django,
small data (each family trained once per module on a few thousand rows)."""

from __future__ import annotations

import copy
import json
import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from mlworkspace.csvsafe import write_csv
from recipes.explain_config import resolve
from runs.data import read_table
from runs.explain import (
    attribution_drift,
    attribution_means,
    decomposition,
    dependence,
    explain_model,
    explain_rows,
    shapley,
)
from runs.explain.adapters import forecast_alone, input_columns, make_adapter
from runs.families import get_family

BASELINES = Path(__file__).resolve().parents[2] / "recipes" / "baselines"


def quiet(_message: str) -> None:
    pass


def baseline(name: str) -> dict:
    return json.loads((BASELINES / f"{name}.json").read_text())


def _training(manifest: dict) -> dict:
    return next(s for s in manifest["pipeline"]["stages"] if s["type"] == "training")["config"]


def nba_manifest() -> dict:
    m = baseline("next_best_action")
    # a regularised uplift model: the world's uplift is small next to its noise
    _training(m)["hyperparameters"].update(num_leaves=7, min_child_samples=500, n_estimators=150)
    return m


def location_manifest() -> dict:
    m = baseline("location_scoring")
    _training(m)["hyperparameters"]["num_boost_round"] = 150
    return m


def forecasting_manifest() -> dict:
    return {
        "requirements": {"grain": ["series_id", "date"], "labels": ["sales"]},
        "pipeline": {
            "stages": [
                {"name": "prep", "type": "feature_prep", "config": {}},
                {
                    "name": "train",
                    "type": "training",
                    "config": {
                        "algorithm": "lightgbm",
                        "horizon": 28,
                        "hyperparameters": {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 15},
                    },
                },
                {"name": "evaluate", "type": "evaluation", "config": {}},
            ]
        },
        "evaluation": {"validation": {"method": "time_holdout", "test_size": 0.05}},
    }


MANIFESTS = {
    "pricing": lambda: baseline("pricing"),
    "next_best_action": nba_manifest,
    "location_scoring": location_manifest,
    "forecasting": forecasting_manifest,
}


def synthetic(name: str) -> pd.DataFrame:
    family = get_family(name)
    if name == "forecasting":
        return family.generate(8 * 730, 3, days=730)
    rows = {"pricing": 12_000, "next_best_action": 40_000, "location_scoring": 4_000}[name]
    return family.generate(rows, 0)


def trained(name: str, frame: pd.DataFrame | None = None) -> dict:
    family = get_family(name)
    manifest = MANIFESTS[name]()
    frame = synthetic(name) if frame is None else frame
    prepared = family.prepare(frame, manifest, log=quiet)
    train, test = family.split(prepared, manifest)
    model = family.fit(train, manifest, threads=1, log=quiet)
    return {
        "family": family,
        "manifest": manifest,
        "model": model,
        "train": train,
        "test": test,
        "inputs": input_columns(family, manifest, test),
    }


def config(**overrides) -> dict:
    return resolve({"sample_size": 200, "repeats": 3, "top_features": 3, "grid_points": 8} | overrides)


@pytest.fixture(scope="module")
def fitted():
    cache: dict[str, dict] = {}

    def get(name: str) -> dict:
        if name not in cache:
            cache[name] = trained(name)
        return cache[name]

    return get


@pytest.fixture(scope="module")
def explained(fitted):
    cache: dict[str, object] = {}

    def get(name: str):
        if name not in cache:
            f = fitted(name)
            cache[name] = explain_model(
                f["family"], f["model"], f["train"], f["test"], f["manifest"], config(), log=quiet
            )
        return cache[name]

    return get


FAMILIES = ["pricing", "next_best_action", "location_scoring", "forecasting"]


def mean_abs(document: dict) -> dict[str, float]:
    return {e["feature"]: e["mean_abs"] for e in document["attribution"]["mean_abs"]}


# --------------------------------------------------------------------------- exactness


@pytest.mark.parametrize("name", FAMILIES)
def test_contributions_add_up_to_the_output_and_the_output_is_the_prediction(fitted, explained, name):
    f = fitted(name)
    ex = explained(name)
    rows = f["test"][f["inputs"]].iloc[:25].reset_index(drop=True)
    items = explain_rows(f["family"], f["model"], rows, ex.background, document=ex.document)
    expected_method = "tree_shap" if name == "location_scoring" else "exact_shapley"
    predictions = [float(f["family"].predict(f["model"], rows.iloc[[i]])[0]) for i in range(len(rows))]
    for item, prediction in zip(items, predictions, strict=True):
        assert item["method"] == expected_method
        assert abs(item["base_value"] + sum(item["contributions"].values()) - item["output"]) < 1e-6
        if name == "pricing":  # log of the predicted units
            assert math.exp(item["output"]) == pytest.approx(prediction, rel=1e-9)
        elif name == "location_scoring":  # log1p scale before the bias correction factor
            scale = f["model"].meta["target_scale"]
            assert scale * math.exp(item["output"]) - 1.0 == pytest.approx(prediction, rel=1e-9)
        else:
            assert item["output"] == pytest.approx(prediction, rel=1e-9, abs=1e-12)
    # the document's explained sample adds up too
    c = ex.contributions
    contrib = c[[k for k in c.columns if k.startswith("contrib.")]].sum(axis=1)
    assert np.abs(c["base_value"] + contrib - c["output"]).max() < 1e-6


def test_exact_and_sampled_shapley_match_the_closed_form_of_a_linear_model():
    """For f = w.x the interventional Shapley value is w_j (x_j - mean_z z_j), exactly, and
    every random feature order gives it too; an interaction x0*x1 is split in half."""
    rng = np.random.default_rng(1)
    d = 13
    features = [f"x{j}" for j in range(d)]
    rows = pd.DataFrame(rng.normal(size=(3, d)), columns=features)
    background = pd.DataFrame(rng.normal(size=(4, d)), columns=features)
    w = rng.normal(size=d)
    groups = {f: [f] for f in features}

    def linear(frame):
        return frame[features].to_numpy() @ w

    expected = (rows.to_numpy() - background.to_numpy().mean(axis=0)) * w
    phi, fx, base, perms = shapley.sampled(linear, rows, background, groups, features, seed=3)
    assert perms >= 1
    np.testing.assert_allclose(phi, expected, atol=1e-9)
    np.testing.assert_allclose(phi.sum(axis=1) + base, fx, atol=1e-9)
    small = features[:5]
    phi5, fx5, base5 = shapley.exact(lambda fr: fr[small].to_numpy() @ w[:5], rows, background, groups, small)
    np.testing.assert_allclose(phi5, expected[:, :5], atol=1e-9)

    # x0 * x1 against one background row z: phi_0 = phi_1 = (x0 x1 - z0 z1) / 2 when z0 = z1 = 0
    z = pd.DataFrame({"x0": [0.0], "x1": [0.0]})
    x = pd.DataFrame({"x0": [2.0], "x1": [3.0]})
    phi2, _, _ = shapley.exact(
        lambda fr: fr["x0"].to_numpy() * fr["x1"].to_numpy(), x, z, {"x0": ["x0"], "x1": ["x1"]}, ["x0", "x1"]
    )
    np.testing.assert_allclose(phi2, [[3.0, 3.0]])


def test_too_many_features_fall_back_to_the_sampled_estimate_and_say_so(fitted):
    f = fitted("pricing")
    adapter = make_adapter(f["family"], f["model"], f["test"][f["inputs"]])
    wide = copy.copy(adapter)
    extra = [f"noise{j}" for j in range(shapley.MAX_EXACT_FEATURES)]
    rows = f["test"][f["inputs"]].iloc[:2].reset_index(drop=True).assign(**{c: 0.0 for c in extra})
    background = f["train"][f["inputs"]].iloc[:4].reset_index(drop=True).assign(**{c: 1.0 for c in extra})
    wide.features = [*adapter.features, *extra]
    wide.groups = {**adapter.groups, **{c: [c] for c in extra}}
    att = shapley.attributions(wide, rows, background)
    assert att["method"] == "sampled_shapley" and "estimated" in att["note"]
    np.testing.assert_allclose(att["phi"].sum(axis=1) + att["base"], att["output"], atol=1e-9)
    # features the model does not read get nothing
    assert np.abs(att["phi"][:, len(adapter.features) :]).max() == 0.0


@pytest.mark.parametrize("algorithm", ["lightgbm", "seasonal_naive"])
def test_forecasting_rows_are_forecast_as_if_each_were_alone(fitted, algorithm):
    f = fitted("forecasting")
    family, test = f["family"], f["test"]
    model = f["model"]
    if algorithm != model["algorithm"]:
        manifest = forecasting_manifest()
        _training(manifest)["algorithm"] = algorithm
        model = family.fit(f["train"], manifest, threads=1, log=quiet)
    rows = test[f["inputs"]].sample(30, random_state=2).reset_index(drop=True)
    # rows of one series in one call change each other's forecasts (the known features of the
    # recursion), so "alone" is not the batch prediction but one call per row
    alone = forecast_alone(family, model, rows)
    one_by_one = [family.predict(model, rows.iloc[[i]])[0] for i in range(len(rows))]
    np.testing.assert_allclose(alone, one_by_one, rtol=1e-12, atol=1e-12)


# --------------------------------------------------------------------------- ground truth


def test_pricing_price_is_the_first_numeric_driver(explained):
    doc = explained("pricing").document
    means = mean_abs(doc)
    assert means["price"] > means["promo"] and means["price"] > means["week"]
    ranked = [e["feature"] for e in doc["global"]]
    assert ranked.index("price") < ranked.index("promo") and ranked.index("price") < ranked.index("week")
    # the family view: demand falls with price in every segment, with the world's ordering
    segments = {s["segment"]: s for s in doc["family_view"]["segments"]}
    for s in segments.values():
        assert s["units"][0] > s["units"][-1]
        assert all(
            lo <= u + 1e-9 and u <= hi + 1e-9
            for lo, u, hi in zip(s["units_low"], s["units"], s["units_high"], strict=True)
        )
    assert segments["electronics"]["elasticity"] < segments["grocery"]["elasticity"] < 0


def test_next_best_action_uplift_drivers_outrank_the_features_the_uplift_ignores(fitted, explained):
    f = fitted("next_best_action")
    means = mean_abs(explained("next_best_action").document)
    drivers = ["channel", "recency_days", "frequency", "segment"]
    ignored = ["tenure_months", "monetary"]
    assert min(means[d] for d in drivers) > max(means[i] for i in ignored)
    # the same holds for the world's true uplift, explained the same way
    sample = f["test"][f["inputs"]].iloc[:100].reset_index(drop=True)
    background = f["train"][f["inputs"]].iloc[:8].reset_index(drop=True)
    features = drivers + ignored
    truth, _, _ = shapley.exact(
        f["family"].true_uplift, sample, background, {c: [c] for c in features}, features
    )
    true_means = dict(zip(features, np.abs(truth).mean(axis=0), strict=True))
    assert min(true_means[d] for d in drivers) > max(true_means[i] for i in ignored)


def test_location_drivers_rank_as_the_worlds_true_sales(fitted, explained):
    f = fitted("location_scoring")
    family = f["family"]
    means = mean_abs(explained("location_scoring").document)
    features = list(means)
    sample = f["test"][f["inputs"]].iloc[:150].reset_index(drop=True)
    background = f["train"][f["inputs"]].iloc[:16].reset_index(drop=True)
    fill = {"foot_traffic": float(f["train"]["foot_traffic"].median())}  # the truth needs a value

    truth, _, _ = shapley.exact(
        lambda frame: family.true_log_sales(frame.fillna(fill)),
        sample,
        background,
        {c: [c] for c in features},
        features,
    )
    true_means = dict(zip(features, np.abs(truth).mean(axis=0), strict=True))
    model_rank = sorted(features, key=lambda c: -means[c])
    true_rank = sorted(features, key=lambda c: -true_means[c])
    assert set(model_rank[:4]) == set(true_rank[:4])  # income, population, traffic, competitors
    assert set(model_rank[4:]) == set(true_rank[4:])
    rho = stats.spearmanr([means[c] for c in features], [true_means[c] for c in features]).statistic
    assert rho > 0.6


def test_forecasting_price_and_promo_move_the_forecast_as_the_world_does(fitted, explained):
    f = fitted("forecasting")
    doc = explained("forecasting").document
    assert {"price", "promo"} <= {e["feature"] for e in doc["attribution"]["mean_abs"]}
    adapter = make_adapter(f["family"], f["model"], f["test"][f["inputs"]])
    sample = f["test"][f["inputs"]].sample(60, random_state=1).reset_index(drop=True)
    price = dependence.curves(adapter, sample, "price", points=8, ice_rows=5)
    assert price["pd"][0] > price["pd"][-1]  # the world's elasticity is -1.2
    promo = dependence.curves(adapter, sample, "promo", points=8, ice_rows=5)
    by_level = dict(zip(promo["grid"], promo["pd"], strict=True))
    assert by_level[1] > by_level[0]  # a promotion lifts sales 20-50 %
    view = doc["family_view"]
    assert view["kind"] == "forecasting" and view["components"] is None and view["note"]
    assert {r["feature"] for r in view["regressors"]} == {"promo", "price"}


def test_forecasting_decomposition_per_series_adds_up_to_the_forecast(fitted, explained):
    f = fitted("forecasting")
    doc = explained("forecasting").document
    dec = doc["family_view"]["decomposition"]
    assert dec["method"] == "shapley_groups" and "Shapley" in dec["method_note"]
    assert dec["groups"] == {
        "trend": ["series_id"],
        "seasonality": ["date"],
        "holidays": [],
        "regressors": ["promo", "price"],
    }
    keys = [s["series"] for s in dec["series"]]
    volumes = [s["volume"] for s in dec["series"]]
    assert len(keys) == len(set(keys)) == min(20, dec["series_total"]) and volumes == sorted(
        volumes, reverse=True
    )
    interval = f["model"]["interval"]
    assert dec["interval_level"] == interval["level"]
    for entry in dec["series"]:  # rounded to DIGITS decimals in the document
        parts = np.sum([entry[p] for p in decomposition.PARTS], axis=0)
        np.testing.assert_allclose(dec["base_value"] + parts, entry["forecast"], atol=1e-4)
        assert len(entry["date"]) == len(entry["forecast"]) > 0
        # the forecast's interval: the model's ratios, as its predict gives it
        forecast = np.asarray(entry["forecast"])
        np.testing.assert_allclose(entry["lower"], forecast * interval["lower_ratio"], atol=1e-4)
        np.testing.assert_allclose(entry["upper"], forecast * interval["upper_ratio"], atol=1e-4)
        assert (np.asarray(entry["lower"]) <= forecast + 1e-9).all() and (
            forecast <= np.asarray(entry["upper"]) + 1e-9
        ).all()
    # unrounded, the parts add up exactly, and the forecasts are the model's own
    adapter = make_adapter(f["family"], f["model"], f["test"][f["inputs"]])
    rows = f["test"][f["inputs"]].reset_index(drop=True)
    keys_of = rows["series_id"].astype(str).to_numpy()
    background = explained("forecasting").background
    exact = decomposition.shapley_groups(
        adapter,
        rows,
        keys_of,
        np.ones(len(rows)),
        background,
        time_col="date",
        series=2,
        periods=5,
        digits=None,
    )
    assert len(exact["series"]) == 2
    for entry in exact["series"]:
        parts = np.sum([entry[p] for p in decomposition.PARTS], axis=0)
        np.testing.assert_allclose(exact["base_value"] + parts, entry["forecast"], rtol=0, atol=1e-6)
        at = rows.index[keys_of == entry["series"]][:5]
        one_by_one = [f["family"].predict(f["model"], rows.iloc[[i]])[0] for i in at]
        np.testing.assert_allclose(entry["forecast"], one_by_one, rtol=1e-12)


def test_prophet_decomposition_per_series_sums_to_prophets_forecast():
    rng = np.random.default_rng(0)
    parts = {name: rng.normal(size=(3, 6)) for name in ("trend", "weekly", "yearly", "holidays")}
    paths = sum(parts.values()) + 0.5  # the regressors' term: what is left of yhat
    model = {
        "algorithm": "prophet",
        "series": ["a", "b", "c"],
        "state": {
            "paths": paths.tolist(),
            "lower": (paths - 1.0).tolist(),
            "upper": (paths + 1.0).tolist(),
            "components": {k: v.tolist() for k, v in parts.items()},
            "dates": [f"2026-01-0{i + 1}" for i in range(6)],
            "known": ["price"],
        },
    }
    dec = decomposition.prophet_groups(model, {"a": 1.0, "b": 5.0, "c": 3.0}, series=2, periods=4)
    assert dec["method"] == "prophet_components" and [s["series"] for s in dec["series"]] == ["b", "c"]
    assert dec["groups"]["seasonality"] == ["weekly", "yearly"] and dec["groups"]["regressors"] == ["price"]
    for entry, i in zip(dec["series"], (1, 2), strict=True):
        total = np.sum([entry[p] for p in decomposition.PARTS], axis=0)
        np.testing.assert_allclose(total, paths[i, :4], atol=1e-12)
        np.testing.assert_allclose(entry["regressors"], 0.5, atol=1e-12)
        np.testing.assert_allclose(entry["lower"], paths[i, :4] - 1.0)  # Prophet's own interval
        np.testing.assert_allclose(entry["upper"], paths[i, :4] + 1.0)
        np.testing.assert_allclose(entry["seasonality"], (parts["weekly"] + parts["yearly"])[i, :4])
    assert "Prophet" in decomposition.method_note(dec, "prophet")
    assert decomposition.prophet_groups({**model, "algorithm": "ets"}, None, series=2) is None


def test_shapley_decomposition_ranks_by_whole_volume_and_keeps_each_series_first_periods(fitted, explained):
    """Edge cases: fewer series than asked for, periods cut after ranking, rows out of date
    order, one series, no held-out rows."""
    f = fitted("forecasting")
    adapter = make_adapter(f["family"], f["model"], f["test"][f["inputs"]])
    background = explained("forecasting").background
    test = f["test"][f["inputs"]]
    a, b = sorted(test["series_id"].astype(str).unique())[:2]
    rows = test[test["series_id"].astype(str).isin([a, b])]
    rows = rows.sample(frac=1.0, random_state=3).reset_index(drop=True)  # dates out of order
    keys = rows["series_id"].astype(str).to_numpy()
    dates = pd.to_datetime(rows["date"])
    # b has more volume in every early period, a more over its whole holdout (its last day)
    volume = np.where(keys == b, 1.0, np.where(dates == dates[keys == a].max(), 1000.0, 0.0))

    def run(series, rows=rows, keys=keys, volume=volume):
        return decomposition.shapley_groups(
            adapter, rows, keys, volume, background, time_col="date", series=series, periods=3, digits=None
        )

    dec = run(series=5)  # 5 asked, 2 there
    assert [s["series"] for s in dec["series"]] == [a, b]
    assert [s["volume"] for s in dec["series"]] == [1000.0, float((keys == b).sum())]
    for entry in dec["series"]:
        own = sorted(dates[keys == entry["series"]])[:3]
        assert entry["date"] == [str(d.date()) for d in own] and len(entry["forecast"]) == 3
        parts = np.sum([entry[p] for p in decomposition.PARTS], axis=0)
        np.testing.assert_allclose(dec["base_value"] + parts, entry["forecast"], rtol=0, atol=1e-6)
    one = run(series=1)
    assert [s["series"] for s in one["series"]] == [a] and one["series"][0] == dec["series"][0]
    # a model with a single series: the same entry as in a frame with others
    only = keys == a
    alone = run(series=1, rows=rows[only].reset_index(drop=True), keys=keys[only], volume=volume[only])
    np.testing.assert_allclose(alone["series"][0]["forecast"], dec["series"][0]["forecast"], rtol=1e-12)
    # no held-out rows: no series, no base value, and still a note
    empty = run(series=5, rows=rows.iloc[:0], keys=keys[:0], volume=volume[:0])
    assert empty["series"] == [] and empty["base_value"] is None
    assert "Shapley" in decomposition.method_note(empty, "lightgbm")


def test_prophet_decomposition_of_series_without_held_out_rows_and_of_a_single_series():
    parts = {"trend": [[1.0, 2.0, 3.0]] * 3, "weekly": [[0.5, -0.5, 0.0]] * 3}
    model = {
        "algorithm": "prophet",
        "series": ["c", "a", "b"],
        "state": {"paths": [[2.0, 2.0, 4.0]] * 3, "components": parts, "dates": ["d1", "d2", "d3"]},
    }
    # only b had held-out rows: it comes first; a and c (volume 0) follow by key, still decomposed
    dec = decomposition.prophet_groups(model, {"b": 2.0}, series=3, periods=10)
    assert [(s["series"], s["volume"]) for s in dec["series"]] == [("b", 2.0), ("a", 0.0), ("c", 0.0)]
    assert dec["groups"] == {"trend": ["trend"], "seasonality": ["weekly"], "holidays": [], "regressors": []}
    entry = dec["series"][0]
    assert entry["date"] == ["d1", "d2", "d3"] and entry["holidays"] == [0.0, 0.0, 0.0]
    assert entry["regressors"] == [0.5, 0.5, 1.0]  # what is left of yhat
    # no volume at all: the model's own order
    assert [s["series"] for s in decomposition.prophet_groups(model, None, series=2)["series"]] == ["c", "a"]
    single = {**model, "series": ["only"], "state": {**model["state"], "paths": [[2.0, 2.0, 4.0]]}}
    single["state"]["components"] = {k: v[:1] for k, v in parts.items()}
    assert [s["series"] for s in decomposition.prophet_groups(single, {}, series=20)["series"]] == ["only"]
    assert decomposition.prophet_groups({**model, "state": {"paths": [[1.0]]}}, None, series=1) is None


# --------------------------------------------------------------------------- permutation


def test_permutation_importance_is_reproducible_with_its_seed(fitted):
    f = fitted("location_scoring")

    def run(seed):
        cfg = config(methods=["permutation"], seed=seed)
        return explain_model(f["family"], f["model"], f["train"], f["test"], f["manifest"], cfg).document

    first, again, other = run(4), run(4), run(5)
    assert first["global"] == again["global"]
    assert first["global"] != other["global"]
    assert (
        first["permutation"]["direction"] == "higher" and first["permutation"]["metric"] == "rank_correlation"
    )
    top = first["global"][0]
    assert top["importance"] > 0 and top["ci_low"] <= top["importance"] <= top["ci_high"]
    importances = [e["importance"] for e in first["global"]]
    assert importances == sorted(importances, reverse=True)
    # the methods not asked for are null
    assert first["attribution"] is None and first["dependence"] is None and first["method"] is None
    assert first["methods"] == ["permutation"]


# --------------------------------------------------------------------------- uploaded data


@pytest.mark.parametrize("name", ["pricing", "next_best_action", "location_scoring", "forecasting"])
def test_a_model_trained_on_a_csv_upload_explains_like_the_synthetic_one(tmp_path, fitted, explained, name):
    path = tmp_path / "upload.csv"
    write_csv(synthetic(name), path)
    uploaded = trained(name, read_table(path, "csv"))
    f = fitted(name)
    ex = explain_model(
        uploaded["family"],
        uploaded["model"],
        uploaded["train"],
        uploaded["test"],
        uploaded["manifest"],
        config(),
        log=quiet,
    )
    reference = explained(name).document
    doc = ex.document
    for key in ("method", "scale", "output_label", "sample_rows", "background_rows"):
        assert doc[key] == reference[key], key
    assert [e["feature"] for e in doc["attribution"]["mean_abs"]] == [
        e["feature"] for e in reference["attribution"]["mean_abs"]
    ]
    for mine, theirs in zip(
        doc["attribution"]["mean_abs"], reference["attribution"]["mean_abs"], strict=True
    ):
        assert mine["mean_abs"] == pytest.approx(theirs["mean_abs"], rel=1e-6, abs=1e-9)
    # and per prediction, on the upload's own rows
    rows = uploaded["test"][uploaded["inputs"]].iloc[:2].reset_index(drop=True)
    items = explain_rows(uploaded["family"], uploaded["model"], rows, ex.background, document=doc)
    assert all(abs(i["base_value"] + sum(i["contributions"].values()) - i["output"]) < 1e-6 for i in items)
    assert f["inputs"] == uploaded["inputs"]


# --------------------------------------------------------------------------- the document


@pytest.mark.parametrize("name", FAMILIES)
def test_the_document_has_the_contracts_shape(tmp_path, fitted, explained, name):
    f = fitted(name)
    ex = explained(name)
    doc = ex.document
    json.dumps(doc, allow_nan=False)  # served as is
    keys = {
        "version", "family", "model_algorithm", "method", "method_note", "scale", "output_label",
        "base_value", "sample_rows", "background_rows", "seed", "global", "permutation",
        "attribution", "dependence", "family_view", "methods", "notes",
    }  # fmt: skip
    assert keys <= set(doc)
    assert doc["family"] == name and doc["methods"] == ["shap", "permutation", "dependence"]
    assert doc["family_view"]["kind"] == name
    shares = [e["share"] for e in doc["attribution"]["mean_abs"]]
    assert sum(shares) == pytest.approx(1.0)
    dep = doc["dependence"]["features"]
    assert dep and all(len(d["pd"]) == len(d["grid"]) and len(d["ice"]) == 30 for d in dep)
    assert all(len(line) == len(d["grid"]) for d in dep for line in d["ice"])
    assert list(ex.background.columns) == f["inputs"] and len(ex.background) == doc["background_rows"]
    assert {f"contrib.{e['feature']}" for e in doc["attribution"]["mean_abs"]} <= set(
        ex.contributions.columns
    )
    assert {"base_value", "output"} <= set(ex.contributions.columns)
    # written as Parquet by the pipeline: every column must be storable, and read back alike
    ex.contributions.to_parquet(tmp_path / "explanations.parquet", index=False)
    ex.background.to_parquet(tmp_path / "background.parquet", index=False)
    back = pd.read_parquet(tmp_path / "background.parquet")
    rows = f["test"][f["inputs"]].iloc[:3].reset_index(drop=True)
    again = explain_rows(f["family"], f["model"], rows, back, document=doc)
    first = explain_rows(f["family"], f["model"], rows, ex.background, document=doc)
    for a, b in zip(again, first, strict=True):
        assert a["contributions"] == pytest.approx(b["contributions"], rel=1e-9, abs=1e-12)


def test_family_views_hold_their_figures(explained):
    nba = explained("next_best_action").document["family_view"]
    assert {s["segment"] for s in nba["uplift_by_segment"]} == {"value", "mainstream", "premium"}
    assert nba["qini"]["fraction"][0] == 0.0 and nba["qini"]["fraction"][-1] == 1.0
    assert len(nba["qini"]["model"]) == len(nba["qini"]["random"]) == len(nba["qini"]["fraction"])
    assert nba["choice_drivers"][0]["feature"] == "recency_days"
    loc = explained("location_scoring").document["family_view"]
    assert 0 < len(loc["sites"]) <= 20
    site = loc["sites"][0]
    assert loc["average_output"] + sum(site["contributions"].values()) == pytest.approx(
        site["output"], abs=1e-6
    )
    assert (
        site["site_id"] in loc["comparables"] and site["site_id"] not in loc["comparables"][site["site_id"]]
    )
    pricing = explained("pricing").document["family_view"]
    curve = pricing["revenue_curve"]
    assert len(curve["multiplier"]) == len(curve["revenue"]) == len(curve["margin"])
    assert 0.8 - 1e-9 <= curve["recommended_multiplier"] <= 1.2 + 1e-9  # within the price bounds
    assert pricing["elasticity_drivers"][0]["feature"] == "segment"


# --------------------------------------------------------------------------- per prediction


@pytest.mark.parametrize("name", FAMILIES)
def test_one_row_is_explained_with_the_contracts_keys_and_reasons_in_words(fitted, explained, name):
    f = fitted(name)
    ex = explained(name)
    row = f["test"][f["inputs"]].iloc[[3]].reset_index(drop=True)
    (item,) = explain_rows(f["family"], f["model"], row, ex.background, document=ex.document, top=2)
    assert {"method", "scale", "output", "base_value", "contributions", "reasons"} <= set(item)
    assert set(item["contributions"]) == {e["feature"] for e in ex.document["attribution"]["mean_abs"]}
    assert len(item["reasons"]) == 2 and all(isinstance(r, str) and r for r in item["reasons"])
    top = max(item["contributions"], key=lambda k: abs(item["contributions"][k]))
    assert item["reasons"][0].startswith(top)
    json.dumps(item, allow_nan=False)
    if name == "pricing":
        assert item["elasticity"] < 0
        curve = item["demand_curve"]
        assert len(curve["price"]) == len(curve["units"]) and curve["units"][0] > curve["units"][-1]


def test_reasons_compare_the_value_with_the_typical_one_and_give_the_effect(fitted, explained):
    f = fitted("pricing")
    ex = explained("pricing")
    rows = f["test"][f["inputs"]].iloc[:40].reset_index(drop=True)
    items = explain_rows(f["family"], f["model"], rows, ex.background, top=6)
    price_reasons = [r for i in items for r in i["reasons"] if r.startswith("price ")]
    assert price_reasons and all("its typical" in r and "% units" in r for r in price_reasons)
    assert any(" = " in r for i in items for r in i["reasons"])  # a categorical feature


def test_explaining_without_background_rows_is_a_clear_error(fitted):
    f = fitted("next_best_action")
    rows = f["test"][f["inputs"]].iloc[:1]
    with pytest.raises(ValueError, match="background"):
        explain_rows(f["family"], f["model"], rows, None)


def test_attribution_means_are_the_mean_absolute_contributions(fitted, explained):
    f = fitted("pricing")
    ex = explained("pricing")
    rows = f["test"][f["inputs"]].iloc[:30].reset_index(drop=True)
    means = attribution_means(f["family"], f["model"], rows, ex.background)
    items = explain_rows(f["family"], f["model"], rows, ex.background)
    for feature, value in means.items():
        assert value == pytest.approx(np.mean([abs(i["contributions"][feature]) for i in items]))


# --------------------------------------------------------------------------- drift


def test_attribution_drift_is_zero_for_the_same_order_and_positive_for_a_swap():
    reference = {"price": 0.5, "promo": 0.3, "week": 0.2}
    same = attribution_drift(reference, dict(reference))
    assert same["explain.rank_change"] == 0.0
    shares = [v for k, v in same.items() if k.endswith(".share")]
    assert sum(shares) == pytest.approx(1.0) and same["explain.price.share"] == pytest.approx(0.5)
    swapped = attribution_drift(reference, {"price": 0.2, "promo": 0.3, "week": 0.5})
    assert swapped["explain.rank_change"] == pytest.approx(4 / 3)  # price 0->2, week 2->0
    missing = attribution_drift(reference, {"promo": 1.0})
    assert missing["explain.price.share"] == 0.0 and missing["explain.rank_change"] > 0
