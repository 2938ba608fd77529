"""Training curves and fold metrics (issue #15 §2): the LightGBM families report each boosting
iteration's loss to callbacks without changing the trained model, the pipeline sends the
points to the worker in batches, the worker stores them as metric history, and the run and
compare pages draw them."""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import numpy as np
import pytest

from recipes.models import Recipe
from runs import pipeline
from runs.executor import execute_run
from runs.families import get_family
from runs.history import METRICS_BATCH, CurveRecorder, fold_points
from runs.models import MetricPoint, Run, RunMetric
from runs.services import run_start, tracking_log

ROOT = Path(__file__).resolve().parents[2]
FIXTURE = json.loads((ROOT / "fixtures" / "baseline_recipes.json").read_text())
MANIFESTS = {
    o["fields"]["recipe"]: o["fields"]["manifest"] for o in FIXTURE if o["model"] == "recipes.recipeversion"
}


def baseline(recipe_id: str, **training) -> dict:
    manifest = copy.deepcopy(MANIFESTS[recipe_id])
    for stage in manifest["pipeline"]["stages"]:
        if stage["type"] == "training":
            stage.setdefault("config", {}).update(training)
    return manifest


class Seen:
    """A LightGBM callback that keeps what it was shown: (data name, metric, iteration)."""

    def __init__(self):
        self.points = []

    def __call__(self, env):
        self.points.extend((item[0], item[1], env.iteration, item[2]) for item in env.evaluation_result_list)

    def keys(self):
        return sorted({(p[0], p[1]) for p in self.points})


def _boosters(family_name: str, model) -> list[str]:
    if family_name == "location_scoring":
        return [model.booster.model_to_string()]
    if family_name == "next_best_action":
        return [model.boosters[k].model_to_string() for k in sorted(model.boosters)]
    return [model["state"]["booster"].model_to_string()]


CASES = [
    ("location_scoring", "recipe_location_base", {}, [("train", "l2"), ("valid", "l2")]),
    (
        "next_best_action",
        "recipe_nba_base",
        {"algorithm": "two_model"},
        [
            ("train.control", "binary_logloss"),
            ("train.treated", "binary_logloss"),
            ("valid.control", "binary_logloss"),
            ("valid.treated", "binary_logloss"),
        ],
    ),
    (
        "next_best_action",
        "recipe_nba_base",
        {"algorithm": "class_transformation"},
        [("train", "binary_logloss"), ("valid", "binary_logloss")],
    ),
    (
        "next_best_action",
        "recipe_nba_base",
        {"algorithm": "x_learner"},
        [
            *[(f"{d}.mu_{a}", "binary_logloss") for d in ("train", "valid") for a in ("control", "treated")],
            *[(f"{d}.tau_{a}", "l2") for d in ("train", "valid") for a in ("control", "treated")],
        ],
    ),
    ("forecasting", "recipe_forecasting_base", {"algorithm": "lightgbm"}, [("train", "l2"), ("valid", "l2")]),
]


@pytest.mark.parametrize(("family_name", "recipe_id", "training", "keys"), CASES, ids=lambda c: str(c)[:30])
def test_recording_curves_trains_the_same_booster(family_name, recipe_id, training, keys):
    family = get_family(family_name)
    manifest = baseline(recipe_id, **training)
    frame = family.prepare(family.generate(2500, 3), manifest, log=lambda *_: None)
    train, test = family.split(frame, manifest)
    plain = family.fit(train, manifest, threads=1, log=lambda *_: None)
    seen = Seen()
    valid = {"valid": test} if family_name != "forecasting" else {}
    watched = family.fit(train, manifest, threads=1, log=lambda *_: None, callbacks=[seen], **valid)

    # Bit-identical boosters (model text: every tree, split and leaf value) and predictions.
    assert _boosters(family_name, watched) == _boosters(family_name, plain)
    assert np.array_equal(np.asarray(family.predict(watched, test)), np.asarray(family.predict(plain, test)))
    # Every booster's loss on its training rows and on the validation rows, at every iteration.
    assert seen.keys() == sorted(keys)
    rounds = len({p[2] for p in seen.points})
    assert rounds > 50 and len(seen.points) == rounds * len(keys)
    train_loss = [p[3] for p in seen.points if p[0].startswith("train")]
    assert all(np.isfinite(train_loss))


def test_the_validation_curve_is_the_holdout_loss():
    """valid.l2 at the last iteration is the booster's l2 on the holdout's log target."""
    family = get_family("location_scoring")
    manifest = baseline("recipe_location_base")
    frame = family.prepare(family.generate(2000, 5), manifest)
    train, test = family.split(frame, manifest)
    seen = Seen()
    model = family.fit(train, manifest, threads=1, callbacks=[seen], valid=test)
    last = max(p[2] for p in seen.points)
    valid_l2 = next(p[3] for p in seen.points if p[0] == "valid" and p[2] == last)
    raw = model.booster.predict(model.design(test))
    expected = float(np.mean((raw - np.log1p(test["annual_sales"].to_numpy(dtype=float))) ** 2))
    assert valid_l2 == pytest.approx(expected, rel=1e-5)  # LightGBM keeps labels as float32


def test_pricing_has_no_curves():
    assert pipeline.curve_kwargs(get_family("pricing"), CurveRecorder(print), None) == {}


# --------------------------------------------------------------------------- pipeline


def _spec(tmp_path, family, recipe_id, run_type="train", rows=1500, **training) -> dict:
    return {
        "run_id": "run_test",
        "run_type": run_type,
        "family": family,
        "manifest": baseline(recipe_id, **training),
        "data": {"synthetic": {"rows": rows, "seed": 1}},
        "artifact_dir": str(tmp_path / "artifacts"),
        "model_dir": None,
        "model_schema": None,
        "threads": 1,
    }


def test_a_train_run_sends_its_curves_in_batches(tmp_path):
    messages = []
    pipeline.execute(
        _spec(tmp_path, "location_scoring", "recipe_location_base"), lambda *m: messages.append(m)
    )
    batches = [m[1] for m in messages if m[0] == "metrics"]
    points = [p for batch in batches for p in batch]
    assert len(batches) >= 2 and all(0 < len(b) <= METRICS_BATCH for b in batches)
    rounds = 300  # the baseline's num_boost_round
    for key in ("train.l2", "valid.l2"):
        steps = [p["step"] for p in points if p["key"] == key]
        assert steps == list(range(rounds))
    assert {p["key"] for p in points} == {"train.l2", "valid.l2"}
    assert all(isinstance(p["timestamp"], int) and isinstance(p["value"], float) for p in points)
    # The curves come before the result, and are named in the log.
    kinds = [m[0] for m in messages]
    assert kinds.index("metrics") < len(kinds) - 1
    assert any("recorded 600 points of 2 training curve(s): train.l2, valid.l2" in str(m) for m in messages)


def test_a_backtest_sends_each_folds_metrics(tmp_path):
    messages = []
    result = pipeline.execute(
        _spec(tmp_path, "next_best_action", "recipe_nba_base", run_type="backtest", rows=2400),
        lambda *m: messages.append(m),
    )
    points = [p for m in messages if m[0] == "metrics" for p in m[1]]
    # No training curves in a backtest (a model per fold), only the folds' metrics.
    assert points and all(p["key"].startswith("fold.") for p in points)
    folds = result["folds"]
    assert len(folds) == 3
    for number, fold in enumerate(folds, start=1):
        got = {p["key"]: p["value"] for p in points if p["step"] == number}
        assert got["fold.qini_coefficient"] == pytest.approx(fold["qini_coefficient"])
        # The workspace's ranking metrics keep their names (tracking keys allow "@").
        assert got["fold.uplift@k"] == pytest.approx(fold["uplift@k"])


def test_fold_points_keep_numbers_with_valid_keys():
    points = fold_points(
        2, {"MAPE": np.float32(0.25), "hit_rate@k": 0.5, "ok": True, "note": "x", "nan": float("nan")}
    )
    assert [(p["key"], p["step"]) for p in points] == [
        ("fold.MAPE", 2),
        ("fold.hit_rate@k", 2),
        ("fold.nan", 2),
    ]
    assert points[0]["value"] == pytest.approx(0.25) and type(points[0]["value"]) is float


# --------------------------------------------------------------------------- worker, pages


@pytest.mark.django_db
def test_the_worker_stores_the_curves_and_the_pages_draw_them(
    as_user, baselines, user, django_assert_max_num_queries
):
    recipe = Recipe.objects.get(pk="recipe_location_base")
    run = run_start(user=user, recipe=recipe, params={"synthetic": {"rows": 1500, "seed": 1}})
    assert execute_run(run.pk) == "succeeded", Run.objects.get(pk=run.pk).error

    rows = list(MetricPoint.objects.filter(run=run, key="valid.l2").order_by("id"))
    assert [p.step for p in rows] == list(range(300))  # stored in order, one per iteration
    assert all(a.timestamp <= b.timestamp for a, b in zip(rows, rows[1:], strict=False))
    latest = RunMetric.objects.get(run=run, key="valid.l2")
    assert (latest.step, latest.value) == (299, rows[-1].value)
    # The final metrics stay the run's own, at step 0, beside the curves.
    assert RunMetric.objects.get(run=run, key="rank_correlation").step == 0
    assert MetricPoint.objects.filter(run=run, key="train.l2").count() == 300

    with django_assert_max_num_queries(12):  # the page + 2 for the curves, whatever their size
        body = as_user.get(f"/model-development/runs/{run.pk}").content.decode()
    card = re.search(r'<section class="card" id="run-curves">(.*?)</section>', body, re.S).group(1)
    assert "Training curves" in card
    assert card.count("data-plotly-figure") == 1  # train.l2 and valid.l2 on one chart
    assert f'href="/api/ml-development/runs/{run.pk}/metrics/valid.l2/history?format=csv"' in card
    figure = json.loads(re.search(r'<script type="application/json">(.*?)</script>', card, re.S).group(1))
    assert [t["name"] for t in figure["figure"]["data"]] == ["train.l2", "valid.l2"]
    assert figure["figure"]["data"][1]["y"][-1] == pytest.approx(rows[-1].value)


@pytest.mark.django_db
def test_compare_overlays_each_keys_curves(as_user, baselines, user):
    recipe = Recipe.objects.get(pk="recipe_nba_base")
    runs = []
    for seed, slope in ((1, 0.01), (2, 0.02)):
        run = run_start(user=user, recipe=recipe, executor="external")
        tracking_log(
            run=run,
            metrics=[
                {"key": key, "value": 1 - slope * step, "step": step, "timestamp": 1000 + step}
                for key in ("train.binary_logloss", "valid.binary_logloss")
                for step in range(40)
            ],
        )
        Run.objects.filter(pk=run.pk).update(
            status="succeeded", metrics_json={"qini_coefficient": 0.1 * seed}
        )
        runs.append(run)
    response = as_user.get("/model-development/runs/compare", {"ids": f"{runs[0].pk},{runs[1].pk}"})
    assert response.status_code == 200
    section = re.search(r'id="compare-curves"(.*?)</section>', response.content.decode(), re.S).group(1)
    figures = [
        json.loads(s)["figure"]
        for s in re.findall(r'<script type="application/json">(.*?)</script>', section, re.S)
    ]
    assert [f["layout"]["title"]["text"] for f in figures] == ["train.binary_logloss", "valid.binary_logloss"]
    for figure in figures:
        assert len(figure["data"]) == 2  # one line per run
        assert figure["data"][0]["y"][-1] == pytest.approx(1 - 0.01 * 39)
        assert figure["data"][1]["y"][-1] == pytest.approx(1 - 0.02 * 39)
