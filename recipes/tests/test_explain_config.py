"""The `explain` stage's settings (issue #17 §1): their reading (recipes.explain_config), every
validator error with its path (recipes.manifest), the stage's place in the pipeline, and the
diff's bump rule (recipes.lineage), without a database; then one round through the API.

Run alone with: .venv/bin/python -m pytest -q recipes/tests/test_explain_config.py
"""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from recipes import catalog, explain_config
from recipes.baselines import families
from recipes.baselines import manifest as baseline_manifest
from recipes.lineage import semantic_diff
from recipes.manifest import validate_manifest


def explain_index(m: dict) -> int:
    return next(i for i, s in enumerate(m["pipeline"]["stages"]) if s["type"] == "explain")


def with_config(config: dict, family: str = "pricing") -> dict:
    """The family's baseline with its explain stage's config replaced."""
    m = copy.deepcopy(baseline_manifest(family))
    m["pipeline"]["stages"][explain_index(m)]["config"] = copy.deepcopy(config)
    return m


def errors_of(config: dict, family: str = "pricing") -> list[tuple[str, str]]:
    return [(e["path"], e["message"]) for e in validate_manifest(with_config(config, family), family=family)]


def only_error(config: dict, suffix: str, family: str = "pricing") -> str:
    m = with_config(config, family)
    path = f"/pipeline/stages/{explain_index(m)}/config/{suffix}"
    errors = errors_of(config, family)
    assert [p for p, _ in errors] == [path], errors
    return errors[0][1]


def test_module_has_no_django_import():
    code = "import sys, recipes.explain_config; print(any(m.split('.')[0] == 'django' for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------------- reading


def test_explain_is_a_stage_type_and_every_baseline_has_one_after_evaluation():
    assert "explain" in catalog.STAGE_TYPES
    for family in families():
        m = baseline_manifest(family)
        types = [s["type"] for s in m["pipeline"]["stages"]]
        assert types.count("explain") == 1
        assert types.index("explain") > types.index("evaluation") > types.index("training")
        assert validate_manifest(m, family=family, level="baseline") == []


def test_an_empty_config_resolves_to_the_defaults():
    resolved = explain_config.resolve({})
    assert resolved == explain_config.DEFAULTS
    assert resolved is not explain_config.DEFAULTS
    resolved["methods"].append("x")  # a copy: the defaults are untouched
    assert explain_config.DEFAULTS["methods"] == list(explain_config.METHODS)
    assert explain_config.resolve(None) == explain_config.DEFAULTS


def test_resolve_keeps_given_values_orders_methods_and_fills_the_family_metric():
    config = {"sample_size": 800, "methods": ["dependence", "shap"], "seed": 3, "interaction": False}
    resolved = explain_config.resolve(config, family="forecasting")
    assert resolved["sample_size"] == 800 and resolved["seed"] == 3 and resolved["interaction"] is False
    assert resolved["methods"] == ["shap", "dependence"]
    assert resolved["metric"] == "MAPE"
    assert config["methods"] == ["dependence", "shap"]  # the input is untouched
    # Pricing's primary metric scores the price recommendation: the demand model's error instead.
    assert explain_config.resolve({}, family="pricing")["metric"] == "demand_mape"
    assert explain_config.resolve({}, family="next_best_action")["metric"] == "uplift@k"
    assert explain_config.resolve({"metric": "RMSE"}, family="location_scoring")["metric"] == "RMSE"
    assert explain_config.resolve({})["metric"] is None  # no family: left to the caller


def test_resolve_applies_the_deployments_caps_down_never_below_the_range():
    config = {"sample_size": 800}
    assert explain_config.resolve(config, caps={"sample_size": 200})["sample_size"] == 200
    assert explain_config.resolve(config, caps={"sample_size": 5000})["sample_size"] == 800  # never raised
    assert (
        explain_config.resolve(config, caps={"sample_size": 1})["sample_size"]
        == explain_config.RANGES["sample_size"][0]
    )
    assert explain_config.resolve(config, caps={"unknown": 1}) == explain_config.resolve(config)


@pytest.mark.parametrize("family", catalog.FAMILIES)
def test_every_default_metric_is_a_metric_of_its_family(family):
    assert explain_config.default_metric(family) in catalog.METRICS[family]


def test_a_full_valid_config_has_no_problem():
    config = {
        "sample_size": 20_000,
        "background_size": 1,
        "repeats": 50,
        "top_features": 20,
        "ice_rows": 0,
        "grid_points": 3,
        "decomposition_series": 200,
        "methods": ["permutation"],
        "metric": "calibration",
        "interaction": False,
        "seed": 0,
    }
    assert explain_config.problems(config, "pricing") == []
    assert errors_of(config) == []


# --------------------------------------------------------------------------- each bad field, its path


@pytest.mark.parametrize(
    ("key", "value", "words"),
    [
        ("sample_size", 49, "from 50 to 20000, got 49"),
        ("sample_size", 20_001, "from 50 to 20000"),
        ("sample_size", 500.0, "whole number"),
        ("sample_size", "500", "whole number"),
        ("sample_size", True, "whole number"),
        ("background_size", 0, "from 1 to 256"),
        ("background_size", 257, "from 1 to 256"),
        ("repeats", 0, "from 1 to 50"),
        ("repeats", 51, "from 1 to 50"),
        ("top_features", 0, "from 1 to 20"),
        ("top_features", 21, "from 1 to 20"),
        ("ice_rows", -1, "from 0 to 200"),
        ("ice_rows", 201, "from 0 to 200"),
        ("grid_points", 2, "from 3 to 100"),
        ("grid_points", 101, "from 3 to 100"),
        ("decomposition_series", 0, "from 1 to 200"),
        ("decomposition_series", 201, "from 1 to 200"),
        ("methods", [], "non-empty list"),
        ("methods", "shap", "non-empty list"),
        ("metric", "MAPE", "a pricing metric"),
        ("metric", 3, "a pricing metric"),
        ("interaction", 1, "true or false"),
        ("interaction", "yes", "true or false"),
        ("seed", -1, "at least 0"),
        ("seed", 1.5, "whole number"),
        ("seed", False, "whole number"),
    ],
)
def test_each_bad_field_is_reported_at_its_path(key, value, words):
    message = only_error({key: value}, key)
    assert f"'{key}'" in message and words in message


def test_a_bad_method_is_reported_at_its_item():
    assert "'lime' is not an explanation method" in only_error({"methods": ["shap", "lime"]}, "methods/1")
    assert "more than once" in only_error({"methods": ["shap", "shap"]}, "methods/1")


def test_an_unknown_field_is_named_with_a_hint():
    assert "did you mean 'sample_size'?" in only_error({"samples_size": 100}, "samples_size")
    assert "allowed: sample_size" in only_error({"zzz": 1}, "zzz")


def test_metric_is_checked_against_the_manifest_family():
    assert errors_of({"metric": "MAPE"}, family="forecasting") == []
    assert "a forecasting metric" in only_error({"metric": "demand_mape"}, "metric", family="forecasting")
    assert errors_of({"metric": None}) == []
    # No family known: any family's metric is accepted, nothing else.
    assert explain_config.problems({"metric": "uplift@k"}, None) == []
    assert explain_config.problems({"metric": "nope"}, None)[0][0] == ("metric",)


def test_every_problem_at_once():
    errors = errors_of({"sample_size": 1, "repeats": 0, "methods": ["x"], "seed": -2})
    base = "/pipeline/stages/5/config"
    assert [p for p, _ in errors] == [
        f"{base}/sample_size",
        f"{base}/repeats",
        f"{base}/methods/0",
        f"{base}/seed",
    ]


def test_a_config_that_is_not_an_object_is_a_schema_error():
    m = with_config({})
    m["pipeline"]["stages"][5]["config"] = [1]
    assert [e["path"] for e in validate_manifest(m, family="pricing")] == ["/pipeline/stages/5/config"]


WEIRD = [None, [], {}, [[1]], {"a": [1]}, "x", "", 1.5, True, -1, 10**30, float("nan"), [None], ["shap", []]]


@pytest.mark.parametrize("value", WEIRD)
def test_malformed_values_never_raise(value):
    for key in explain_config.DEFAULTS:
        found = explain_config.problems({key: value}, "pricing")
        assert all(path[0] == key for path, _ in found)
        explain_config.resolve({key: value})
        validate_manifest(with_config({key: value}), family="pricing")
    assert explain_config.problems(value, "pricing") if not isinstance(value, dict) else True


# --------------------------------------------------------------------------- the stage's place


def test_explain_before_training_or_evaluation_is_refused():
    m = copy.deepcopy(baseline_manifest("pricing"))
    stages = m["pipeline"]["stages"]
    stages.insert(2, stages.pop(5))  # before the training stage (now 3) and evaluation (now 4)
    errors = [(e["path"], e["message"]) for e in validate_manifest(m, family="pricing")]
    assert [p for p, _ in errors] == ["/pipeline/stages/2/type"]
    assert "after the 'evaluation' stage (stage 4)" in errors[0][1]
    m = copy.deepcopy(baseline_manifest("pricing"))
    stages = m["pipeline"]["stages"]
    stages.insert(3, stages.pop(5))  # after training (2), before evaluation (now 4)
    errors = [(e["path"], e["message"]) for e in validate_manifest(m, family="pricing")]
    assert [p for p, _ in errors] == ["/pipeline/stages/3/type"]
    assert "after the 'evaluation' stage (stage 4)" in errors[0][1]
    # Without an evaluation stage, before training is still refused.
    m = copy.deepcopy(baseline_manifest("pricing"))
    m["pipeline"]["stages"] = [s for s in m["pipeline"]["stages"] if s["type"] != "evaluation"]
    m["pipeline"]["stages"].insert(0, m["pipeline"]["stages"].pop())
    errors = [(e["path"], e["message"]) for e in validate_manifest(m, family="pricing")]
    assert [p for p, _ in errors] == ["/pipeline/stages/0/type"]
    assert "after the 'training' stage (stage 3)" in errors[0][1]


def test_explain_right_after_training_without_evaluation_is_valid():
    m = copy.deepcopy(baseline_manifest("location_scoring"))
    m["pipeline"]["stages"] = [s for s in m["pipeline"]["stages"] if s["type"] != "evaluation"]
    assert validate_manifest(m, family="location_scoring") == []


def test_at_most_one_explain_stage():
    m = copy.deepcopy(baseline_manifest("pricing"))
    m["pipeline"]["stages"].append({"name": "explain_again", "type": "explain", "config": {}})
    errors = validate_manifest(m, family="pricing")
    assert [e["path"] for e in errors] == ["/pipeline/stages/6/type"]
    assert "only one 'explain' stage" in errors[0]["message"]


def test_a_tuning_section_in_the_explain_stage_is_reported_once():
    config = {"tuning": {"space": {"num_leaves": {"type": "int", "low": 8, "high": 64}}}}
    errors = errors_of(config, family="location_scoring")
    assert len(errors) == 1 and errors[0][0].endswith("/config/tuning")
    assert "belongs in the training stage" in errors[0][1]


# --------------------------------------------------------------------------- lineage


def test_a_change_of_the_explain_config_is_a_patch():
    old = baseline_manifest("pricing")
    for config in ({"sample_size": 2000}, {"methods": ["shap"]}, {"metric": "calibration", "seed": 4}):
        result = semantic_diff(old, with_config(config))
        assert result["suggested_bump"] == "patch", result
        assert all(c["path"].startswith("/pipeline/stages/explain/config") for c in result["changes"])
    # A method dropped from the set, then one added back.
    smaller = with_config({"methods": ["shap", "permutation"]})
    assert (
        semantic_diff(smaller, with_config({"methods": ["shap", "permutation", "dependence"]}))[
            "suggested_bump"
        ]
        == "patch"
    )


def test_adding_the_explain_stage_is_minor_and_removing_it_is_not_major():
    with_stage = baseline_manifest("pricing")
    without = copy.deepcopy(with_stage)
    without["pipeline"]["stages"] = [s for s in without["pipeline"]["stages"] if s["type"] != "explain"]
    added = semantic_diff(without, with_stage)
    assert added["suggested_bump"] == "minor"
    removed = semantic_diff(with_stage, without)
    assert removed["suggested_bump"] == "minor"
    assert "model is unchanged" in removed["changes"][0]["reason"]
    # Any other stage removed is still major.
    no_publish = copy.deepcopy(with_stage)
    no_publish["pipeline"]["stages"] = [s for s in no_publish["pipeline"]["stages"] if s["name"] != "publish"]
    assert semantic_diff(with_stage, no_publish)["suggested_bump"] == "major"


# --------------------------------------------------------------------------- through the API


def test_the_versions_api_names_the_bad_explain_field(api_client, baselines):
    from recipes.models import Recipe

    recipe = Recipe.objects.get(pk="recipe_pricing_base")
    manifest = copy.deepcopy(recipe.current_version.manifest)
    manifest["pipeline"]["stages"][explain_index(manifest)]["config"] = {"sample_size": 10}
    r = api_client.post(
        f"/api/ml-development/recipes/{recipe.id}/versions", {"manifest": manifest}, format="json"
    )
    assert r.status_code == 400, r.content
    paths = [e["path"] for e in r.json()["errors"]]
    assert paths == [f"/manifest/pipeline/stages/{explain_index(manifest)}/config/sample_size"]
