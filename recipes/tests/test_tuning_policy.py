"""The training stage's `tuning` section: its reading (recipes.tuning), every validator error
with its path (recipes.manifest + recipes.tuning) and the diff's bump rule (recipes.lineage),
without a database; then one round through the versions API.

Run alone with: .venv/bin/python -m pytest -q recipes/tests/test_tuning_policy.py
"""

from __future__ import annotations

import copy
import subprocess
import sys
from datetime import timedelta

import pytest

from recipes import tuning
from recipes.baselines import manifest as baseline_manifest
from recipes.lineage import semantic_diff
from recipes.manifest import validate_manifest

BASE = "/pipeline/stages/2/config/tuning"
SPACE = {
    "num_boost_round": {"type": "int", "low": 50, "high": 600, "step": 10},
    "learning_rate": {"type": "log", "low": 0.01, "high": 0.3},
    "feature_fraction": {"type": "float", "low": 0.5, "high": 1.0},
    "objective": {"type": "categorical", "choices": ["regression", "huber"]},
}


def location(section: dict | None = None, family_stage: int = 2) -> dict:
    """The location baseline (its training stage is stage 2) with a tuning section."""
    m = copy.deepcopy(baseline_manifest("location_scoring"))
    if section is not None:
        m["pipeline"]["stages"][family_stage].setdefault("config", {})["tuning"] = copy.deepcopy(section)
    return m


def errors_of(section: dict, family: str = "location_scoring", manifest=None) -> list[tuple[str, str]]:
    m = manifest if manifest is not None else location(section)
    return [(e["path"], e["message"]) for e in validate_manifest(m, family=family)]


def only_error(section: dict, path: str) -> str:
    errors = errors_of(section)
    assert [p for p, _ in errors] == [path], errors
    return errors[0][1]


def test_module_has_no_django_import():
    code = "import sys, recipes.tuning; print(any(m.split('.')[0] == 'django' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- reading


def test_a_full_section_is_valid_and_read_with_its_values():
    section = {
        "metric": "RMSE",
        "direction": "minimize",
        "n_trials": 40,
        "timeout": "30 minutes",
        "seed": 7,
        "parallel": 2,
        "workers": 3,
        "space": SPACE,
    }
    assert errors_of(section) == []
    config = tuning.config(location(section), "location_scoring")
    assert (config.metric, config.direction, config.n_trials, config.seed) == ("RMSE", "minimize", 40, 7)
    assert (config.parallel, config.workers) == (2, 3)
    assert config.timeout == timedelta(minutes=30)
    assert [p.name for p in config.space] == list(SPACE)
    assert config.space[0] == tuning.Param("num_boost_round", "int", 50, 600, 10, ())
    assert config.space[3].choices == ("regression", "huber")


def test_defaults_are_the_primary_metric_its_better_side_twenty_trials_and_no_timeout():
    config = tuning.config(location({"space": SPACE}), "location_scoring")
    assert (config.metric, config.direction, config.n_trials, config.timeout, config.seed) == (
        "rank_correlation",
        "maximize",
        20,
        None,
        0,
    )
    assert tuning.config(location({"space": SPACE}), "location_scoring").parallel == 1
    assert tuning.config(location({"space": SPACE}), "location_scoring").workers == 1
    forecasting = baseline_manifest("forecasting")
    stage = tuning.training_stage(forecasting)[1]
    stage["config"]["tuning"] = {"space": {"num_leaves": {"type": "int", "low": 8, "high": 64}}}
    assert tuning.config(forecasting, "forecasting").direction == "minimize"  # MAPE
    assert tuning.config(baseline_manifest("pricing"), "pricing") is None  # no section


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30 minutes", timedelta(minutes=30)),
        ("1 minute", timedelta(minutes=1)),
        ("2 hours", timedelta(hours=2)),
        ("1 day", timedelta(days=1)),
        ("2 Weeks", timedelta(weeks=2)),
    ],
)
def test_timeouts_read_minutes_and_the_retraining_durations(text, expected):
    assert tuning.parse_timeout(text) == expected


@pytest.mark.parametrize("text", ["0 minutes", "0 hours", "soon", "30 min", "1.5 hours", ""])
def test_timeouts_that_are_no_duration_say_what_is_expected(text):
    with pytest.raises(ValueError, match="minutes|more than zero"):
        tuning.parse_timeout(text)


def test_apply_params_writes_the_training_hyperparameters_and_keeps_the_rest():
    m = location({"space": SPACE})
    out = tuning.apply_params(m, {"num_leaves": 12, "learning_rate": 0.1})
    hyper = tuning.training_stage(out)[1]["config"]["hyperparameters"]
    assert hyper["num_leaves"] == 12 and hyper["learning_rate"] == 0.1
    assert hyper["num_boost_round"] == 300 and hyper["min_data_in_leaf"] == 40  # kept
    assert tuning.training_stage(m)[1]["config"]["hyperparameters"]["num_leaves"] == 31  # a copy
    with pytest.raises(ValueError, match="no training stage"):
        tuning.apply_params({"pipeline": {"stages": []}}, {"a": 1})


def test_current_values_are_the_versions_own_inside_the_space():
    m = location({"space": SPACE})
    config = tuning.config(m, "location_scoring")
    # num_boost_round 300 and learning_rate 0.05 lie inside; feature_fraction 0.9 too; the
    # objective "regression" is a choice.
    assert tuning.current_values(m, config.space) == {
        "num_boost_round": 300,
        "learning_rate": 0.05,
        "feature_fraction": 0.9,
        "objective": "regression",
    }
    narrow = (
        tuning.Param("num_boost_round", "int", 5, 100),
        tuning.Param("num_leaves", "categorical", choices=(8, 16)),
    )
    assert tuning.current_values(m, narrow) == {}  # 300 and 31 are outside


# --------------------------------------------------------------------------- validation paths


@pytest.mark.parametrize(
    ("section", "path", "words"),
    [
        ({}, f"{BASE}/space", "missing required field 'space'"),
        ({"space": {}}, f"{BASE}/space", "must not be empty"),
        ({"space": SPACE, "n_trials": 0}, f"{BASE}/n_trials", "at least 1"),
        ({"space": SPACE, "n_trials": 501}, f"{BASE}/n_trials", "at most 500"),
        ({"space": SPACE, "parallel": 0}, f"{BASE}/parallel", "at least 1"),
        ({"space": SPACE, "parallel": 9}, f"{BASE}/parallel", "at most 8"),
        ({"space": SPACE, "parallel": "2"}, f"{BASE}/parallel", "integer"),
        ({"space": SPACE, "workers": 0}, f"{BASE}/workers", "at least 1"),
        ({"space": SPACE, "workers": 9}, f"{BASE}/workers", "at most 8"),
        ({"space": SPACE, "workers": "2"}, f"{BASE}/workers", "integer"),
        ({"space": SPACE, "workers": 1.5}, f"{BASE}/workers", "integer"),
        ({"space": SPACE, "direction": "up"}, f"{BASE}/direction", "is not one of minimize, maximize"),
        ({"space": SPACE, "timeout": "soon"}, f"{BASE}/timeout", "'timeout' must be like '30 minutes'"),
        ({"space": SPACE, "sampler": "tpe"}, f"{BASE}/sampler", "unknown field 'sampler'"),
        (
            {"space": SPACE, "metric": "MAPE"},
            f"{BASE}/metric",
            "not a metric the location_scoring model reports",
        ),
        (
            {"space": SPACE, "direction": "minimize"},
            f"{BASE}/direction",
            "rank_correlation is higher-is-better",
        ),
        (
            {"space": SPACE, "metric": "RMSE", "direction": "maximize"},
            f"{BASE}/direction",
            "use 'minimize'",
        ),
        (
            {"space": {"num_leafs": {"type": "int", "low": 2, "high": 9}}},
            f"{BASE}/space/num_leafs",
            "did you mean 'num_leaves'",
        ),
        (
            {"space": {"n_estimators": {"type": "int", "low": 2, "high": 9}}},
            f"{BASE}/space/n_estimators",
            "the location_scoring model calls it 'num_boost_round'",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "high": 9}}},
            f"{BASE}/space/num_leaves/low",
            "needs 'low'",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 2}}},
            f"{BASE}/space/num_leaves/high",
            "needs 'high'",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 64, "high": 8}}},
            f"{BASE}/space/num_leaves/low",
            "must be less than 'high'",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 8, "high": 8}}},
            f"{BASE}/space/num_leaves/low",
            "must be less than 'high'",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 2.5, "high": 8}}},
            f"{BASE}/space/num_leaves/low",
            "whole number",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 2, "high": 8, "step": 0.5}}},
            f"{BASE}/space/num_leaves/step",
            "whole number",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 2, "high": 8, "step": 10}}},
            f"{BASE}/space/num_leaves/step",
            "larger than the range",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 2, "high": 8, "step": 0}}},
            f"{BASE}/space/num_leaves/step",
            "greater than 0",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 1, "high": 8}}},
            f"{BASE}/space/num_leaves/low",
            "must be at least 2",
        ),
        (
            {"space": {"num_leaves": {"type": "float", "low": 2, "high": 8}}},
            f"{BASE}/space/num_leaves/type",
            "use type 'int'",
        ),
        (
            {"space": {"num_leaves": {"type": "dice", "low": 2, "high": 8}}},
            f"{BASE}/space/num_leaves/type",
            "is not one of int, float, log, categorical",
        ),
        (
            {"space": {"num_leaves": {"low": 2, "high": 8}}},
            f"{BASE}/space/num_leaves/type",
            "missing required field 'type'",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 2, "high": 8, "max": 9}}},
            f"{BASE}/space/num_leaves/max",
            "unknown field 'max'",
        ),
        (
            {"space": {"num_leaves": {"type": "int", "low": 2, "high": 8, "choices": [4]}}},
            f"{BASE}/space/num_leaves/choices",
            "does not apply to type 'int'",
        ),
        (
            {"space": {"learning_rate": {"type": "log", "low": 0, "high": 0.3}}},
            f"{BASE}/space/learning_rate/low",
            "log scale needs 'low' above 0",
        ),
        (
            {"space": {"learning_rate": {"type": "log", "low": 0.01, "high": 0.3, "step": 0.01}}},
            f"{BASE}/space/learning_rate/step",
            "does not apply to type 'log'",
        ),
        (
            {"space": {"learning_rate": {"type": "float", "low": -1, "high": 0.3}}},
            f"{BASE}/space/learning_rate/low",
            "must be above 0",
        ),
        (
            {"space": {"feature_fraction": {"type": "float", "low": 0.5, "high": 1.5}}},
            f"{BASE}/space/feature_fraction/high",
            "must be at most 1",
        ),
        (
            {"space": {"feature_fraction": {"type": "float", "low": "a", "high": 1}}},
            f"{BASE}/space/feature_fraction/low",
            "must be a number",
        ),
        (
            {"space": {"objective": {"type": "categorical"}}},
            f"{BASE}/space/objective/choices",
            "needs a non-empty list",
        ),
        (
            {"space": {"objective": {"type": "categorical", "choices": []}}},
            f"{BASE}/space/objective/choices",
            "must not be empty",
        ),
        (
            {"space": {"objective": {"type": "categorical", "choices": ["huber", "huber"]}}},
            f"{BASE}/space/objective/choices/1",
            "listed twice",
        ),
        (
            {"space": {"objective": {"type": "categorical", "choices": ["huber", "cubic"]}}},
            f"{BASE}/space/objective/choices/1",
            "is not one of regression",
        ),
        (
            {"space": {"objective": {"type": "categorical", "choices": [{"a": 1}]}}},
            f"{BASE}/space/objective/choices/0",
            "must be a string or a number",
        ),
        (
            {"space": {"objective": {"type": "categorical", "choices": ["huber"], "low": 1}}},
            f"{BASE}/space/objective/low",
            "does not apply to type 'categorical'",
        ),
        (
            {"space": {"objective": {"type": "int", "low": 1, "high": 2}}},
            f"{BASE}/space/objective/type",
            "use type 'categorical'",
        ),
        (
            {"space": {"num_leaves": {"type": "categorical", "choices": [8, 16.5]}}},
            f"{BASE}/space/num_leaves/choices/1",
            "whole number",
        ),
        (
            {"space": {"num_leaves": {"type": "categorical", "choices": [8, "x"]}}},
            f"{BASE}/space/num_leaves/choices/1",
            "must be a number",
        ),
        ({"space": {"num_leaves": "8..64"}}, f"{BASE}/space/num_leaves", "must be an object"),
        ("fast", BASE, "must be an object"),
    ],
)
def test_every_problem_of_a_tuning_section_is_named_at_its_path(section, path, words):
    message = only_error(section, path)
    assert words in message, message


def test_several_problems_are_reported_at_once():
    section = {
        "n_trials": 0,
        "timeout": "soon",
        "space": {
            "num_leaves": {"type": "int", "low": 9, "high": 2},
            "bogus": {"type": "int", "low": 1, "high": 2},
        },
    }
    paths = [p for p, _ in errors_of(section)]
    assert paths == [
        f"{BASE}/n_trials",
        f"{BASE}/timeout",
        f"{BASE}/space/num_leaves/low",
        f"{BASE}/space/bogus",
    ]


def test_tuning_belongs_in_the_training_stage():
    m = location({"space": SPACE}, family_stage=0)  # the quality stage
    assert errors_of({}, manifest=m) == [
        (
            "/pipeline/stages/0/config/tuning",
            "'tuning' belongs in the training stage's config, not in a 'quality' stage",
        )
    ]


def test_each_family_tunes_only_what_its_model_reads():
    nba = copy.deepcopy(baseline_manifest("next_best_action"))
    index, stage = tuning.training_stage(nba)
    stage["config"]["tuning"] = {"space": {"min_data_in_leaf": {"type": "int", "low": 10, "high": 200}}}
    [(path, message)] = errors_of({}, family="next_best_action", manifest=nba)
    assert path == f"/pipeline/stages/{index}/config/tuning/space/min_data_in_leaf"
    assert "the next_best_action model calls it 'min_child_samples'" in message
    stage["config"]["tuning"] = {"space": {"min_child_samples": {"type": "int", "low": 10, "high": 200}}}
    assert errors_of({}, family="next_best_action", manifest=nba) == []

    pricing = copy.deepcopy(baseline_manifest("pricing"))
    index, stage = tuning.training_stage(pricing)
    stage["config"]["tuning"] = {
        "space": {
            "fourier_order": {"type": "int", "low": 0, "high": 4},
            "per_segment": {"type": "categorical", "choices": [True, False]},
            "cov_type": {"type": "categorical", "choices": ["HC1", "nonrobust"]},
        }
    }
    assert errors_of({}, family="pricing", manifest=pricing) == []
    stage["config"]["tuning"]["space"]["per_segment"] = {"type": "categorical", "choices": [True, "no"]}
    [(path, message)] = errors_of({}, family="pricing", manifest=pricing)
    assert path.endswith("/space/per_segment/choices/1") and "true or false" in message


def test_bagging_fraction_needs_a_bagging_frequency():
    m = copy.deepcopy(baseline_manifest("forecasting"))
    index, stage = tuning.training_stage(m)
    stage["config"]["tuning"] = {"space": {"bagging_fraction": {"type": "float", "low": 0.5, "high": 1.0}}}
    [(path, message)] = errors_of({}, family="forecasting", manifest=m)
    assert path == f"/pipeline/stages/{index}/config/tuning/space/bagging_fraction"
    assert "bagging_freq" in message
    stage["config"]["tuning"]["space"]["bagging_freq"] = {"type": "int", "low": 0, "high": 5}
    assert errors_of({}, family="forecasting", manifest=m) == []
    assert (
        errors_of({"space": {"bagging_fraction": {"type": "float", "low": 0.5, "high": 1.0}}}) == []
    )  # location: freq 1


def test_forecasting_hyperparameters_need_lightgbm_to_train():
    m = copy.deepcopy(baseline_manifest("forecasting"))
    index, stage = tuning.training_stage(m)
    stage["config"]["tuning"] = {"space": {"num_leaves": {"type": "int", "low": 8, "high": 64}}}
    assert errors_of({}, family="forecasting", manifest=m) == []  # auto, lightgbm among the candidates
    stage["config"]["algorithm"] = "ets"
    [(path, message)] = errors_of({}, family="forecasting", manifest=m)
    assert path == f"/pipeline/stages/{index}/config/tuning/space"
    assert "algorithm is 'ets'" in message and "every trial would train the same model" in message


# --------------------------------------------------------------------------- the bump


def test_a_tuning_change_and_saved_hyperparameters_are_patches():
    old = location({"space": SPACE})
    new = copy.deepcopy(old)
    stage = tuning.training_stage(new)[1]
    stage["config"]["tuning"]["n_trials"] = 50
    diff = semantic_diff(old, new)
    assert diff["suggested_bump"] == "patch"
    assert [c["reason"] for c in diff["changes"]] == ["stage 'train_gbm' tuning n_trials changed"]
    added = semantic_diff(location(), old)
    assert added["suggested_bump"] == "patch"
    assert added["changes"][0]["reason"] == "stage 'train_gbm' tuning section changed"
    saved = tuning.apply_params(old, {"num_leaves": 12, "learning_rate": 0.1})
    assert semantic_diff(old, saved)["suggested_bump"] == "patch"


@pytest.mark.parametrize("key", ["parallel", "workers"])
def test_more_trials_at_once_is_a_patch_like_parallel(key):
    old = location({"space": SPACE})
    new = copy.deepcopy(old)
    tuning.training_stage(new)[1]["config"]["tuning"][key] = 4
    diff = semantic_diff(old, new)
    assert diff["suggested_bump"] == "patch"
    assert [c["reason"] for c in diff["changes"]] == [f"stage 'train_gbm' tuning {key} changed"]


def test_a_version_with_a_tuning_section_goes_through_the_api(baselines, api_client):
    manifest = location({"space": {"num_leaves": {"type": "int", "low": 4, "high": 2}}})
    url = "/api/ml-development/recipes/recipe_location_base/versions"
    response = api_client.post(url, {"manifest": manifest}, format="json")
    assert response.status_code == 400
    assert response.json()["errors"] == [
        {
            "path": f"/manifest{BASE}/space/num_leaves/low",
            "message": "space 'num_leaves': 'low' (4) must be less than 'high' (2)",
        }
    ]
    tuning.training_stage(manifest)[1]["config"]["tuning"]["space"]["num_leaves"]["high"] = 64
    response = api_client.post(url, {"manifest": manifest}, format="json")
    assert response.status_code == 201, response.json()
    assert response.json()["version"] == "1.0.1"
