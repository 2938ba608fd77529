"""Synthetic worlds that continue in time: a seed fixes the entities and the ground truth, a
window the dates; batches for a trained model continue after its training data."""

import pandas as pd
import pytest

from monitoring.services import model_check
from runs.families import get_family, worlds
from runs.models import Run
from runs.tests.factories import trained_model

FAMILIES = ["forecasting", "pricing", "next_best_action", "location_scoring"]
RECIPES = {
    "forecasting": "recipe_forecasting_base",
    "pricing": "recipe_pricing_base",
    "next_best_action": "recipe_nba_base",
    "location_scoring": "recipe_location_base",
}
# Small training batches and checks (fast), big enough for stable metrics.
TRAIN_ROWS = {"forecasting": 20 * 1095, "pricing": 6000, "next_best_action": 20_000, "location_scoring": 5000}
CHECK_ROWS = {"forecasting": 20 * 28, "pricing": 2000, "next_best_action": 8000, "location_scoring": 2000}
ENTITY = {
    "forecasting": "series_id",
    "pricing": "product_id",
    "next_best_action": "customer_id",
    "location_scoring": "site_id",
}
LABEL = {
    "forecasting": "sales",
    "pricing": "units",
    "next_best_action": "converted",
    "location_scoring": "annual_sales",
}
SHIFT = {
    "forecasting": {"price": 3.0},
    "pricing": {"price": 1.5},
    "next_best_action": {"recency_days": 2.0},
    "location_scoring": {"median_income": 1.5},
}


# ----------------------------------------------------------------------------- pure


@pytest.mark.parametrize("name", FAMILIES)
def test_next_window_is_the_same_world_after_the_training_dates(name):
    family = get_family(name)
    train = worlds.resolve(family, {"rows": TRAIN_ROWS[name], "seed": 3})
    batch = worlds.resolve(family, {"rows": CHECK_ROWS[name]}, after=train)
    assert batch["seed"] == 3 and batch["world"] == train["world"]
    assert pd.Timestamp(batch["window"]["start"]) == pd.Timestamp(train["window"]["end"]) + pd.Timedelta(
        days=1
    )
    first, second = worlds.generate(family, train), worlds.generate(family, batch)
    time = family.TIME if hasattr(family, "TIME") and isinstance(family.TIME, str) else "date"
    assert pd.to_datetime(second[time]).min() > pd.to_datetime(first[time]).max()
    # the same entities (products, series, customers, sites) — not new ones
    assert set(second[ENTITY[name]]) <= set(first[ENTITY[name]])
    following = worlds.resolve(family, {"rows": CHECK_ROWS[name]}, after=batch)
    assert following["window"]["start"] > batch["window"]["end"]


@pytest.mark.parametrize("name", ["pricing", "forecasting"])
def test_a_period_has_the_same_data_in_every_window_that_holds_it(name):
    family = get_family(name)
    world = family.layout(TRAIN_ROWS[name])[0]
    step = family.PERIOD_DAYS
    long = family.generate(10**7, 5, world=world, window={"start": 0, "periods": 60 // step * 2})
    short = family.generate(10**7, 5, world=world, window={"start": 40 // step, "periods": 10})
    time = "week" if name == "pricing" else "date"
    lo, hi = short[time].min(), short[time].max()
    part = long[(long[time] >= lo) & (long[time] <= hi)].reset_index(drop=True)
    pd.testing.assert_frame_equal(part, short)


def test_generate_rows_seed_is_the_first_window_of_its_world():
    family = get_family("pricing")
    legacy = family.generate(3000, 7)
    resolved = worlds.resolve(family, {"rows": 3000, "seed": 7})
    pd.testing.assert_frame_equal(legacy, worlds.generate(family, resolved))
    assert resolved["window"]["start"] == family.ORIGIN


@pytest.mark.parametrize(
    "request_, field",
    [
        ({"concept": "nope"}, "concept"),
        ({"start": "yesterday"}, "start"),
        ({"start": "1999-01-01"}, "start"),
        ({"periods": 0}, "periods"),
        ({"seed": -1}, "seed"),
        ({"colour": 1}, "colour"),
    ],
)
def test_bad_requests_name_the_field(request_, field):
    with pytest.raises(worlds.WorldError) as exc:
        worlds.resolve(get_family("pricing"), request_)
    assert exc.value.field == field


def test_another_seed_is_another_world_from_its_beginning():
    family = get_family("pricing")
    train = worlds.resolve(family, {"rows": 3000, "seed": 1})
    other = worlds.resolve(family, {"rows": 3000, "seed": 2}, after=train)
    assert other["seed"] == 2 and other["window"]["start"] == family.ORIGIN


@pytest.mark.parametrize("name", FAMILIES)
def test_concept_changes_the_ground_truth_not_the_features(name):
    family = get_family(name)
    train = worlds.resolve(family, {"rows": TRAIN_ROWS[name], "seed": 3})
    plain = worlds.resolve(family, {"rows": CHECK_ROWS[name]}, after=train)
    changed = worlds.resolve(
        family, {"rows": CHECK_ROWS[name], "concept": next(iter(family.CONCEPTS))}, after=train
    )
    a, b = worlds.generate(family, plain), worlds.generate(family, changed)
    label = LABEL[name]
    features = [c for c in a.columns if c != label and c != "revenue"]
    pd.testing.assert_frame_equal(a[features], b[features])
    assert not a[label].equals(b[label])


# ----------------------------------------------------------------------------- runs and checks


@pytest.mark.django_db
def test_train_and_eval_runs_record_their_world_and_window(user, baselines, api_client):
    model = trained_model(user, rows=3000)
    train = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    assert train["world"] and train["window"]["start"] == get_family("pricing").ORIGIN
    r = api_client.post(
        "/api/ml-development/runs",
        {"recipe_id": model.recipe_id, "run_type": "eval", "model_id": model.id, "params": {"synthetic": {}}},
        format="json",
    )
    assert r.status_code == 201, r.json()
    batch = r.json()["params_json"]["synthetic"]
    assert batch["seed"] == train["seed"] and batch["world"] == train["world"]
    assert batch["window"]["start"] > train["window"]["end"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "synthetic, path",
    [
        ({"concept": "nope"}, "/params/synthetic/concept"),
        ({"start": "soon"}, "/params/synthetic/start"),
        ({"rows": 10}, "/params/synthetic/rows"),
        ({"shift": {"price": 1}}, "/params/synthetic/shift"),
        ({"colour": "red"}, "/params/synthetic/colour"),
    ],
)
def test_run_synthetic_params_are_validated(api_client, baselines, synthetic, path):
    r = api_client.post(
        "/api/ml-development/runs",
        {"recipe_id": "recipe_pricing_base", "params": {"synthetic": synthetic}},
        format="json",
    )
    assert r.status_code == 400, r.json()
    assert path in {e["path"] for e in r.json()["errors"]}


def _firing(snapshot) -> dict:
    return {k: v for k, v in snapshot.alerts_json.items() if isinstance(v, dict) and v.get("firing")}


def _performance_alerts(snapshot) -> dict:
    return {k: v for k, v in _firing(snapshot).items() if "drift" not in v.get("condition", "")}


@pytest.mark.django_db
@pytest.mark.parametrize("name", FAMILIES)
def test_continuation_stays_healthy_and_injected_drift_shows(user, baselines, name):
    """Through the real check service: consecutive windows of the model's world raise no
    drift and no performance alert; `shift` drifts features; `concept` decays performance
    while the features do not drift."""
    model = trained_model(user, recipe_id=RECIPES[name], rows=TRAIN_ROWS[name])
    rows = CHECK_ROWS[name]
    windows = []
    for _ in range(3):
        snapshot = model_check(model=model, synthetic={"rows": rows})
        batch = snapshot.data_freshness_json["batch"]
        windows.append(batch["window"])
        assert snapshot.drift_metrics_json["drifted_count"] == 0, (batch, snapshot.drift_metrics_json)
        assert snapshot.performance_metrics_json, snapshot.drift_metrics_json.get("prediction")
        assert not _firing(snapshot), (batch, snapshot.performance_metrics_json)
    assert windows[0]["start"] < windows[1]["start"] < windows[2]["start"]

    concept = next(iter(get_family(name).CONCEPTS))
    decayed = model_check(model=model, synthetic={"rows": rows, "concept": concept})
    assert decayed.data_freshness_json["batch"]["concept"] == concept
    # no input feature drifts (forecasting also watches its label, sales, which does move)
    assert set(decayed.drift_metrics_json["drifted_features"]) <= {LABEL[name]}, decayed.drift_metrics_json
    assert _performance_alerts(decayed), decayed.performance_metrics_json

    shifted = model_check(model=model, synthetic={"rows": rows, "shift": SHIFT[name]})
    feature = next(iter(SHIFT[name]))
    assert shifted.drift_metrics_json["features"][feature]["drifted"] is True
    assert shifted.data_freshness_json["batch"]["shift"] == SHIFT[name]


@pytest.mark.django_db
def test_forecasting_eval_run_on_synthetic_data_scores_periods_after_the_training_data(user, baselines):
    """The eval batch is the window after the training data (shorter than min_history, which
    is what training needs, not scoring): the forecaster really scores it."""
    from runs.executor import execute_run
    from runs.services import run_start

    model = trained_model(user, recipe_id="recipe_forecasting_base", rows=4 * 1095)
    run = run_start(user=user, recipe=model.recipe, model=model, run_type="eval", params={})
    assert execute_run(run.id) == "succeeded", Run.objects.get(pk=run.id).error
    run = Run.objects.get(pk=run.id)
    batch = run.params_json["synthetic"]
    assert batch["seed"] == 1 and batch["world"] == {"series": 4}
    assert batch["window"]["start"] == "2025-01-02"
    assert 0 < run.metrics_json["MAPE"] < 0.35


@pytest.mark.django_db
def test_run_form_says_which_world_and_offers_concept_drift(as_user, baselines, user):
    model = trained_model(user, rows=3000)
    page = as_user.get("/model-development/runs/new", {"recipe": "recipe_pricing_base"}).content.decode()
    assert 'name="concept"' in page and 'value="less_price_sensitive"' in page
    assert 'name="start"' in page and "the world begins 2022-01-03; data come in weeks" in page
    assert "The seed fixes the synthetic world" in page
    # An eval run with a blank seed is scored on the model's world, after its training data.
    response = as_user.post(
        "/model-development/runs/new",
        {
            "recipe": "recipe_pricing_base",
            "run_type": "eval",
            "model": model.pk,
            "concept": "less_price_sensitive",
        },
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    run = Run.objects.filter(run_type="eval").get()
    train = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    batch = run.params_json["synthetic"]
    assert (batch["seed"], batch["world"], batch["concept"]) == (1, train["world"], "less_price_sensitive")
    assert batch["window"]["start"] > train["window"]["end"]
    bad = as_user.post(
        "/model-development/runs/new",
        {"recipe": "recipe_pricing_base", "run_type": "train", "start": "1990-01-01"},
    )
    assert bad.status_code == 400 and "when the world begins" in bad.content.decode()


@pytest.mark.django_db
def test_an_eval_run_queued_before_worlds_continues_its_models_world(user, baselines, tmp_path):
    from runs.executor import build_spec
    from runs.services import run_start

    model = trained_model(user, rows=3000)
    run = run_start(user=user, recipe=model.recipe, model=model, run_type="eval", params={})
    Run.objects.filter(pk=run.pk).update(params_json={"synthetic": {"rows": 2000}})  # as stored before
    batch = build_spec(Run.objects.get(pk=run.pk), tmp_path)["data"]["synthetic"]
    train = Run.objects.get(pk=model.training_run_id).params_json["synthetic"]
    assert batch["world"] == train["world"] and batch["window"]["start"] > train["window"]["end"]
