"""Manifest schema + semantic validation and the manifest helpers (no Django needed).

Run alone with: .venv/bin/python -m pytest -p no:django -q recipes/tests/test_manifest.py
"""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from recipes import catalog
from recipes.manifest import (
    ManifestError,
    bump_semver,
    grain_columns,
    load_schema,
    parse_min_history,
    parse_semver,
    rewrite_metadata,
    validate_manifest,
)

BASELINES = Path(__file__).resolve().parent.parent / "baselines"

# One known metric per family, with a consistent target/warning/critical for its direction.
FAMILY_METRIC = {
    "forecasting": ("MAPE", {"target": 0.1, "threshold_warning": 0.15, "threshold_critical": 0.25}),
    "pricing": ("revenue_lift", {"target": 0.05, "threshold_warning": 0.02, "threshold_critical": 0.0}),
    "next_best_action": (
        "qini_coefficient",
        {"target": 0.1, "threshold_warning": 0.05, "threshold_critical": 0.02},
    ),
    "location_scoring": (
        "rank_correlation",
        {"target": 0.6, "threshold_warning": 0.4, "threshold_critical": 0.2},
    ),
}


def minimal(family: str = "forecasting", level: str = "baseline") -> dict:
    metric, block = FAMILY_METRIC[family]
    return {
        "metadata": {
            "id": f"recipe_{catalog.FAMILY_SHORT[family]}_base",
            "name": "Minimal",
            "model_family": family,
            "level": level,
            "version": "1.0.0",
        },
        "requirements": {"feature_sets": {"required": ["sales"]}, "grain": ["store_id", "date"]},
        "pipeline": {"stages": [{"name": "train", "type": "training", "config": {}}]},
        "evaluation": {"metrics": {metric: dict(block)}},
    }


def full(family: str = "forecasting") -> dict:
    m = minimal(family)
    metric = FAMILY_METRIC[family][0]
    m["metadata"]["description"] = "A full manifest"
    m["requirements"].update(
        {
            "feature_sets": {"required": ["sales"], "optional": ["weather"]},
            "labels": ["units"],
            "min_history": "2 years",
        }
    )
    m["pipeline"]["stages"] = [
        {"name": "dq", "type": "quality", "config": {"max_null_ratio": 0.1}},
        {"name": "prep", "type": "feature_prep", "config": {}},
        {"name": "lags", "type": "feature_prep", "config": {"lags": [1, 7]}},
        {"name": "train", "type": "training", "config": {"algorithm": "lightgbm", "anything": {"goes": 1}}},
        {"name": "eval", "type": "evaluation"},
        {"name": "deploy", "type": "deployment", "config": {}},
    ]
    m["evaluation"]["validation"] = {"method": "rolling_origin", "test_size": 0.2, "folds": 3, "horizon": 28}
    m["lineage"] = {"input_features": ["price"], "output_features": ["forecast"]}
    m["deployment"] = {
        "mode": "batch",
        "schedule": "0 6 * * 1",
        "endpoint_spec": {"path": "/x", "extra": [1]},
    }
    m["monitoring"] = {
        "metrics": [metric],
        "drift": {"method": "PSI", "threshold": 0.2, "features": ["price"]},
        "freshness": {"max_age_hours": 24, "features": ["date"]},
        "alerts": {"perf": {"condition": f"{metric} > 1", "severity": "warning"}},
    }
    return m


def errors_at(errors: list[dict], path: str) -> list[str]:
    return [e["message"] for e in errors if e["path"] == path]


def only_error(m: dict, path: str, **kw) -> str:
    """Validate, expect exactly one error, at ``path``; return its message."""
    errors = validate_manifest(m, **kw)
    assert [e["path"] for e in errors] == [path], errors
    return errors[0]["message"]


# --------------------------------------------------------------------------- valid manifests


def test_schema_is_a_valid_draft_2020_12_schema():
    schema = load_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("family", catalog.FAMILIES)
def test_minimal_manifest_is_valid_for_each_family(family):
    assert validate_manifest(minimal(family), family=family, level="baseline") == []
    assert validate_manifest(minimal(family)) == []


@pytest.mark.parametrize("family", catalog.FAMILIES)
def test_full_manifest_is_valid_for_each_family(family):
    assert validate_manifest(full(family), family=family, level="baseline") == []


def test_grain_may_be_a_comma_separated_string_and_optional_parts_may_be_null():
    m = minimal()
    m["requirements"]["grain"] = "store_id, sku_id, week"
    m["requirements"]["min_history"] = None
    m["deployment"] = {"mode": "realtime", "schedule": None}
    assert validate_manifest(m) == []


def test_extra_keys_allowed_in_stage_config_and_endpoint_spec():
    m = full()
    m["pipeline"]["stages"][3]["config"]["whatever"] = {"nested": [1, 2]}
    m["deployment"]["endpoint_spec"]["auth"] = "token"
    assert validate_manifest(m) == []


def test_manifest_error_dataclass():
    e = ManifestError("/metadata/id", "msg")
    assert e.to_dict() == {"path": "/metadata/id", "message": "msg"}


# --------------------------------------------------------------------------- root / prefix


@pytest.mark.parametrize("bad", [None, [], "{}", 3, True])
def test_non_dict_manifest_is_one_error_at_the_root(bad):
    errors = validate_manifest(bad)
    assert len(errors) == 1
    assert errors[0]["path"] == ""
    assert "manifest must be a JSON object" in errors[0]["message"]
    assert validate_manifest(bad, path_prefix="/manifest")[0]["path"] == "/manifest"


def test_path_prefix_is_prepended():
    m = minimal()
    m["evaluation"]["metrics"]["MAPE"]["target"] = "0.1"
    errors = validate_manifest(m, path_prefix="/manifest")
    assert [e["path"] for e in errors] == ["/manifest/evaluation/metrics/MAPE/target"]
    assert (
        validate_manifest(m, path_prefix="/manifest/")[0]["path"]
        == "/manifest/evaluation/metrics/MAPE/target"
    )


# --------------------------------------------------------------------------- schema errors


@pytest.mark.parametrize("section", ["metadata", "requirements", "pipeline", "evaluation"])
def test_missing_required_section(section):
    m = minimal()
    del m[section]
    assert only_error(m, f"/{section}") == f"missing required field '{section}'"


@pytest.mark.parametrize("field", ["id", "name", "model_family", "level", "version"])
def test_missing_required_metadata_field(field):
    m = minimal()
    del m["metadata"][field]
    msg = only_error(m, f"/metadata/{field}")
    assert f"missing required field '{field}'" in msg
    assert "metadata" in msg


@pytest.mark.parametrize(
    ("where", "path"),
    [
        ((), "/foo"),
        (("metadata",), "/metadata/foo"),
        (("evaluation", "metrics", "MAPE"), "/evaluation/metrics/MAPE/foo"),
        (("monitoring", "drift"), "/monitoring/drift/foo"),
        (("monitoring", "freshness"), "/monitoring/freshness/foo"),
        (("monitoring", "alerts", "perf"), "/monitoring/alerts/perf/foo"),
    ],
)
def test_unknown_fields_are_rejected(where, path):
    m = full()
    node = m
    for key in where:
        node = node[key]
    node["foo"] = 1
    assert "unknown field 'foo'" in only_error(m, path)


def test_unknown_field_suggests_the_close_name():
    m = minimal()
    m["evaluation"]["metrics"]["MAPE"]["treshold_warning"] = 0.2
    msg = only_error(m, "/evaluation/metrics/MAPE/treshold_warning")
    assert "unknown field 'treshold_warning'" in msg
    assert "did you mean 'threshold_warning'" in msg


def test_wrong_type_names_field_and_expected_type():
    m = minimal()
    m["evaluation"]["metrics"]["MAPE"]["target"] = "0.1"
    msg = only_error(m, "/evaluation/metrics/MAPE/target")
    assert msg.startswith("'target' must be a number")


def test_boolean_is_not_a_number():
    m = minimal()
    m["evaluation"]["metrics"]["MAPE"]["threshold_critical"] = True
    assert "'threshold_critical' must be a number" in only_error(
        m, "/evaluation/metrics/MAPE/threshold_critical"
    )


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("model_family", "regression", "forecasting, pricing, next_best_action, location_scoring"),
        ("level", "global", "baseline, industry, client"),
    ],
)
def test_metadata_enums(field, value, expected):
    m = minimal()
    m["metadata"][field] = value
    msg = only_error(m, f"/metadata/{field}")
    assert f"'{field}'" in msg and f"'{value}' is not one of {expected}" in msg


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0-beta", "01.0.0", "1.0.0.0", ""])
def test_version_must_be_semver(version):
    m = minimal()
    m["metadata"]["version"] = version
    msg = only_error(m, "/metadata/version")
    assert "'version' must be a semantic version MAJOR.MINOR.PATCH" in msg


def test_version_must_be_a_string():
    m = minimal()
    m["metadata"]["version"] = 1
    assert "'version' must be a string" in only_error(m, "/metadata/version")


def test_wrong_type_with_enum_reports_one_error():
    m = minimal()
    m["deployment"] = {"mode": 5}
    assert "'mode' must be a string" in only_error(m, "/deployment/mode")


def test_enum_message_lists_choices():
    m = minimal()
    m["deployment"] = {"mode": "x"}
    msg = only_error(m, "/deployment/mode")
    assert "'mode'" in msg and "'x' is not one of batch, realtime" in msg


@pytest.mark.parametrize(
    ("grain", "path", "fragment"),
    [
        ([], "", "'grain' must not be empty"),
        ("", "", "'grain' must not be empty"),
        (["store", 3], "/1", "item 1 of 'grain' must be a string"),
        (None, "", "'grain' must be a list or a string"),
        ({"a": 1}, "", "'grain' must be a list or a string"),
    ],
)
def test_grain_shape(grain, path, fragment):
    m = minimal()
    m["requirements"]["grain"] = grain
    assert fragment in only_error(m, f"/requirements/grain{path}")


@pytest.mark.parametrize("grain", ["store,,week", " , store", ["store", " "], "store, store"])
def test_grain_column_names_must_be_non_empty_and_unique(grain):
    m = minimal()
    m["requirements"]["grain"] = grain
    assert "'grain'" in only_error(m, "/requirements/grain")


def test_feature_sets_and_labels_types():
    m = minimal()
    m["requirements"]["feature_sets"] = {"optional": "weather"}
    m["requirements"]["labels"] = "units"
    errors = validate_manifest(m)
    assert errors_at(errors, "/requirements/feature_sets/required") == [
        "missing required field 'required' in 'feature_sets'"
    ]
    assert "'optional' must be a list" in errors_at(errors, "/requirements/feature_sets/optional")[0]
    assert "'labels' must be a list" in errors_at(errors, "/requirements/labels")[0]
    assert len(errors) == 3


@pytest.mark.parametrize(
    "value", ["2 years", "104 weeks", "90 days", "6 months", "500 rows", "1 year", "3 Weeks"]
)
def test_min_history_valid(value):
    m = minimal()
    m["requirements"]["min_history"] = value
    assert validate_manifest(m) == []


@pytest.mark.parametrize("value", ["lots", "2", "years", "0 days", "-3 days", "2 decades", "2.5 years", ""])
def test_min_history_invalid(value):
    m = minimal()
    m["requirements"]["min_history"] = value
    msg = only_error(m, "/requirements/min_history")
    assert "'min_history' must be a history length like '2 years'" in msg


def test_min_history_wrong_type():
    m = minimal()
    m["requirements"]["min_history"] = 730
    assert "'min_history' must be a string or null" in only_error(m, "/requirements/min_history")


# --------------------------------------------------------------------------- pipeline


def test_stages_must_not_be_empty():
    m = minimal()
    m["pipeline"]["stages"] = []
    assert only_error(m, "/pipeline/stages") == "'stages' must not be empty"


def test_stage_missing_name_and_bad_config():
    m = minimal()
    m["pipeline"]["stages"] = [{"type": "training", "config": []}]
    errors = validate_manifest(m)
    assert errors_at(errors, "/pipeline/stages/0/name") == [
        "missing required field 'name' in item 0 of 'stages'"
    ]
    assert "'config' must be an object" in errors_at(errors, "/pipeline/stages/0/config")[0]
    assert len(errors) == 2


def test_unknown_stage_type_is_one_clear_error():
    m = minimal()
    m["pipeline"]["stages"] = [{"name": "train", "type": "train"}]
    msg = only_error(m, "/pipeline/stages/0/type")
    assert "'type'" in msg and "'train' is not one of quality, feature_prep, training" in msg


def test_stage_names_must_be_unique():
    m = minimal()
    m["pipeline"]["stages"] = [{"name": "s", "type": "quality"}, {"name": "s", "type": "training"}]
    msg = only_error(m, "/pipeline/stages/1/name")
    assert "duplicate stage name 's'" in msg


def test_at_most_one_stage_per_type_except_feature_prep():
    m = minimal()
    m["pipeline"]["stages"] = [
        {"name": "p1", "type": "feature_prep"},
        {"name": "p2", "type": "feature_prep"},
        {"name": "t1", "type": "training"},
        {"name": "t2", "type": "training"},
    ]
    msg = only_error(m, "/pipeline/stages/3/type")
    assert "only one 'training' stage" in msg


def test_a_training_stage_is_required():
    m = minimal()
    m["pipeline"]["stages"] = [{"name": "q", "type": "quality"}, {"name": "e", "type": "evaluation"}]
    msg = only_error(m, "/pipeline/stages")
    assert "'stages' needs a stage of type 'training'" in msg


# --------------------------------------------------------------------------- evaluation


def test_metrics_must_not_be_empty():
    m = minimal()
    m["evaluation"]["metrics"] = {}
    assert only_error(m, "/evaluation/metrics") == "'metrics' must not be empty"


def test_metric_needs_a_target_or_threshold():
    m = minimal()
    m["evaluation"]["metrics"]["MAPE"] = {"direction": "lower"}
    msg = only_error(m, "/evaluation/metrics/MAPE")
    assert "metric 'MAPE' needs at least one of target, threshold_warning, threshold_critical" == msg


def test_unknown_metric_for_family():
    m = minimal()
    m["evaluation"]["metrics"]["bogus"] = {"target": 1}
    msg = only_error(m, "/evaluation/metrics/bogus", family="forecasting")
    assert "metric 'bogus' is not a known forecasting metric" in msg and "direction" in msg


def test_metric_of_another_family_is_unknown():
    m = minimal("pricing")
    m["evaluation"]["metrics"]["MAPE"] = {"target": 0.1}
    assert "not a known pricing metric" in only_error(m, "/evaluation/metrics/MAPE")


def test_unknown_metric_with_explicit_direction_is_allowed_and_order_checked():
    m = minimal()
    m["evaluation"]["metrics"]["bias"] = {"target": 0.0, "threshold_warning": 0.05, "direction": "lower"}
    assert validate_manifest(m) == []
    m["evaluation"]["metrics"]["bias"]["direction"] = "higher"
    assert "'target' (0.0) must be >= 'threshold_warning' (0.05)" in only_error(
        m, "/evaluation/metrics/bias/target"
    )


def test_bad_direction_is_one_error():
    m = minimal()
    m["evaluation"]["metrics"]["bias"] = {"target": 0.0, "direction": "down"}
    msg = only_error(m, "/evaluation/metrics/bias/direction")
    assert "'down' is not one of lower, higher" in msg


@pytest.mark.parametrize(
    ("block", "path", "fragment"),
    [
        # lower is better (MAPE): target <= warning <= critical
        (
            {"target": 0.2, "threshold_warning": 0.1},
            "target",
            "'target' (0.2) must be <= 'threshold_warning' (0.1)",
        ),
        (
            {"threshold_warning": 0.3, "threshold_critical": 0.2},
            "threshold_critical",
            "'threshold_warning' (0.3) must be <= 'threshold_critical' (0.2)",
        ),
        (
            {"target": 0.3, "threshold_critical": 0.2},
            "target",
            "'target' (0.3) must be <= 'threshold_critical' (0.2)",
        ),
    ],
)
def test_threshold_order_lower_is_better(block, path, fragment):
    m = minimal()
    m["evaluation"]["metrics"]["MAPE"] = block
    msg = only_error(m, f"/evaluation/metrics/MAPE/{path}")
    assert fragment in msg and "lower is better" in msg and "MAPE" in msg


@pytest.mark.parametrize(
    ("block", "path"),
    [
        ({"target": 0.1, "threshold_warning": 0.2}, "target"),
        ({"threshold_warning": 0.1, "threshold_critical": 0.2}, "threshold_critical"),
        ({"target": 0.1, "threshold_critical": 0.2}, "target"),
    ],
)
def test_threshold_order_higher_is_better(block, path):
    m = minimal("location_scoring")
    m["evaluation"]["metrics"]["rank_correlation"] = block
    msg = only_error(m, f"/evaluation/metrics/rank_correlation/{path}")
    assert "must be >=" in msg and "higher is better" in msg


def test_equal_thresholds_are_fine_and_all_three_wrong_gives_each_pair():
    m = minimal()
    m["evaluation"]["metrics"]["MAPE"] = {"target": 0.1, "threshold_warning": 0.1, "threshold_critical": 0.1}
    assert validate_manifest(m) == []
    m["evaluation"]["metrics"]["MAPE"] = {"target": 0.3, "threshold_warning": 0.2, "threshold_critical": 0.1}
    paths = [e["path"] for e in validate_manifest(m)]
    assert paths == ["/evaluation/metrics/MAPE/target", "/evaluation/metrics/MAPE/threshold_critical"]


def test_order_checked_on_the_numeric_fields_even_when_another_field_is_bad():
    m = minimal()
    m["evaluation"]["metrics"]["MAPE"] = {"target": 0.3, "threshold_warning": 0.2, "threshold_critical": "x"}
    errors = validate_manifest(m)
    assert {e["path"] for e in errors} == {
        "/evaluation/metrics/MAPE/threshold_critical",
        "/evaluation/metrics/MAPE/target",
    }


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("method", "holdout", "'holdout' is not one of time_holdout, rolling_origin, random_holdout, kfold"),
        ("test_size", 0, "'test_size' must be greater than 0"),
        ("test_size", 1, "'test_size' must be less than 1"),
        ("test_size", "0.2", "'test_size' must be a number"),
        ("folds", 1, "'folds' must be at least 2"),
        ("folds", 21, "'folds' must be at most 20"),
        ("folds", 2.5, "'folds' must be an integer"),
        ("horizon", "7", "'horizon' must be an integer"),
    ],
)
def test_validation_block(field, value, fragment):
    m = minimal()
    m["evaluation"]["validation"] = {"method": "kfold", "folds": 5}
    m["evaluation"]["validation"][field] = value
    assert fragment in only_error(m, f"/evaluation/validation/{field}")


def test_validation_method_is_required():
    m = minimal()
    m["evaluation"]["validation"] = {"test_size": 0.2}
    assert "missing required field 'method'" in only_error(m, "/evaluation/validation/method")


def test_non_finite_numbers_are_rejected():
    m = minimal()
    m["evaluation"]["metrics"]["MAPE"]["target"] = float("nan")
    assert "'target' must be a finite number" in only_error(m, "/evaluation/metrics/MAPE/target")


# --------------------------------------------------------------------------- lineage / deployment


def test_lineage_types():
    m = minimal()
    m["lineage"] = {"input_features": "price", "output_features": [1]}
    errors = validate_manifest(m)
    assert "'input_features' must be a list" in errors_at(errors, "/lineage/input_features")[0]
    assert "must be a string" in errors_at(errors, "/lineage/output_features/0")[0]


def test_deployment_mode_required():
    m = minimal()
    m["deployment"] = {"schedule": "0 0 * * *"}
    assert "missing required field 'mode' in 'deployment'" == only_error(m, "/deployment/mode")


@pytest.mark.parametrize("schedule", ["0 6 * * *", "*/15 * * * *", "0 2 * * MON-FRI", "30 4 1 */3 *"])
def test_valid_cron_schedules(schedule):
    m = minimal()
    m["deployment"] = {"mode": "batch", "schedule": schedule}
    assert validate_manifest(m) == []


@pytest.mark.parametrize(
    "schedule", ["0 25 * * *", "daily", "@daily", "0 0 * * * *", "0 0 * *", "", "61 * * * *"]
)
def test_invalid_cron_schedules(schedule):
    m = minimal()
    m["deployment"] = {"mode": "batch", "schedule": schedule}
    assert "'schedule' must be a 5-field cron expression" in only_error(m, "/deployment/schedule")


def test_endpoint_spec_must_be_an_object():
    m = minimal()
    m["deployment"] = {"mode": "realtime", "endpoint_spec": "/predict"}
    assert "'endpoint_spec' must be an object" in only_error(m, "/deployment/endpoint_spec")


# --------------------------------------------------------------------------- monitoring


def test_monitoring_metric_must_be_known_or_defined():
    m = minimal()
    m["evaluation"]["metrics"]["bias"] = {"target": 0, "direction": "lower"}
    m["monitoring"] = {"metrics": ["RMSE", "bias", "nope"]}
    msg = only_error(m, "/monitoring/metrics/2")
    assert "monitoring metric 'nope'" in msg and "evaluation.metrics" in msg


@pytest.mark.parametrize(
    ("drift", "path", "fragment"),
    [
        ({"method": "psi", "threshold": 0.2}, "method", "'psi' is not one of PSI, KS"),
        ({"method": "KS", "threshold": -0.1}, "threshold", "'threshold' must be at least 0"),
        ({"method": "KS"}, "threshold", "missing required field 'threshold' in 'drift'"),
        ({"method": "KS", "threshold": 0.1, "features": "price"}, "features", "'features' must be a list"),
    ],
)
def test_drift_block(drift, path, fragment):
    m = minimal()
    m["monitoring"] = {"drift": drift}
    assert fragment in only_error(m, f"/monitoring/drift/{path}")


@pytest.mark.parametrize("value", [0, -1, "24"])
def test_freshness_max_age_hours(value):
    m = minimal()
    m["monitoring"] = {"freshness": {"max_age_hours": value}}
    assert "'max_age_hours' must be" in only_error(m, "/monitoring/freshness/max_age_hours")


def test_alert_entries():
    m = minimal()
    m["monitoring"] = {
        "alerts": {
            "a": {"condition": "MAPE > 0.2", "severity": "fatal"},
            "b": {"severity": "warning"},
            "c": "MAPE > 0.2",
        }
    }
    errors = validate_manifest(m)
    assert "'fatal' is not one of warning, critical" in errors_at(errors, "/monitoring/alerts/a/severity")[0]
    assert errors_at(errors, "/monitoring/alerts/b/condition") == [
        "missing required field 'condition' in alert 'b'"
    ]
    assert "alert 'c' must be an object" in errors_at(errors, "/monitoring/alerts/c")[0]
    assert len(errors) == 3


# --------------------------------------------------------------------------- alert conditions


def _with_alert(condition: str) -> dict:
    m = minimal()
    m["monitoring"] = {"alerts": {"perf": {"condition": condition, "severity": "critical"}}}
    return m


def test_alert_condition_known_names_pass():
    assert validate_manifest(_with_alert("MAPE > 0.3")) == []
    # drift and freshness names, and the family's catalog metrics, are known too
    assert validate_manifest(_with_alert("drift.max_psi > 0.2 or RMSE > 10")) == []


def test_alert_condition_unknown_name():
    msg = only_error(_with_alert("MAPEE > 0.3"), "/monitoring/alerts/perf/condition")
    assert "'MAPEE'" in msg and "alert 'perf'" in msg and "'condition'" in msg
    assert "did you mean 'MAPE'?" in msg
    msg = only_error(_with_alert("no_such_metric_xyz > 0.3"), "/monitoring/alerts/perf/condition")
    assert "no_such_metric_xyz" in msg


def test_alert_condition_syntax_error():
    msg = only_error(_with_alert("(MAPE > 0.3"), "/monitoring/alerts/perf/condition")
    assert "alert 'perf'" in msg and "not a valid condition" in msg and "unbalanced '('" in msg
    msg = only_error(_with_alert("MAPE >"), "/monitoring/alerts/perf/condition")
    assert "unexpected end of condition" in msg and "at column 7" in msg


def test_alert_conditions_are_always_checked():
    """The manifest's own language: a broken or unknown condition is always an error (there
    is no mode in which alert validation is skipped)."""
    m = minimal()
    m["monitoring"] = {
        "alerts": {
            "a": {"condition": "MAPEE > 1", "severity": "critical"},
            "b": {"condition": "MAPE >", "severity": "warning"},
            "c/d": {"condition": "MAPE > 1", "severity": "info"},
            "e": "nope",
            "f": {"condition": "MAPE + 1", "severity": "warning"},
        }
    }
    errors = validate_manifest(m)
    assert "'MAPEE'" in errors_at(errors, "/monitoring/alerts/a/condition")[0]
    assert "column 7" in errors_at(errors, "/monitoring/alerts/b/condition")[0]
    assert "is not one of warning, critical" in errors_at(errors, "/monitoring/alerts/c~1d/severity")[0]
    assert errors_at(errors, "/monitoring/alerts/e")
    assert "got a number" in errors_at(errors, "/monitoring/alerts/f/condition")[0]
    assert len(errors) == 5


# --------------------------------------------------------------------------- family / level


def test_family_mismatch():
    m = minimal("forecasting")
    errors = validate_manifest(m, family="pricing")
    msg = errors_at(errors, "/metadata/model_family")[0]
    assert "manifest says 'forecasting' but the recipe is 'pricing'" in msg
    # Metric names are checked against the recipe's family.
    assert errors_at(errors, "/evaluation/metrics/MAPE")


def test_level_mismatch():
    msg = only_error(minimal(level="client"), "/metadata/level", level="industry")
    assert "manifest says 'client' but the recipe is 'industry'" in msg


def test_family_is_taken_from_metadata_when_not_given():
    m = minimal("pricing")
    m["evaluation"]["metrics"]["MAPE"] = {"target": 0.1}
    assert "pricing" in only_error(m, "/evaluation/metrics/MAPE")


def test_invalid_family_in_metadata_gives_one_error():
    m = minimal()
    m["metadata"]["model_family"] = "weather"
    assert "'weather' is not one of" in only_error(m, "/metadata/model_family", family="forecasting")


# --------------------------------------------------------------------------- many errors, fuzz


def test_several_errors_are_all_reported():
    m = full()
    m["metadata"]["version"] = "1.0"
    m["metadata"]["colour"] = "red"
    del m["requirements"]["grain"]
    m["pipeline"]["stages"].append({"name": "train", "type": "training"})
    m["evaluation"]["metrics"]["MAPE"]["target"] = 0.5
    m["evaluation"]["validation"]["method"] = "bootstrap"
    m["deployment"]["schedule"] = "every day"
    m["monitoring"]["drift"]["method"] = "chi2"
    m["monitoring"]["metrics"].append("nope")
    errors = validate_manifest(m, family="forecasting", level="industry")
    paths = {e["path"] for e in errors}
    assert paths == {
        "/metadata/version",
        "/metadata/colour",
        "/metadata/level",
        "/requirements/grain",
        "/pipeline/stages/6/name",
        "/pipeline/stages/6/type",
        "/evaluation/metrics/MAPE/target",
        "/evaluation/validation/method",
        "/deployment/schedule",
        "/monitoring/drift/method",
        "/monitoring/metrics/1",
    }, errors
    assert all(isinstance(e["message"], str) and e["message"] for e in errors)
    # Sections come out in manifest order.
    sections = [e["path"].split("/")[1] for e in errors]
    order = ["metadata", "requirements", "pipeline", "evaluation", "deployment", "monitoring"]
    assert sections == sorted(sections, key=order.index)


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, (*path, k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, (*path, i))


REPLACEMENTS = [None, [], {}, "", "x", "1", 1, -1.5, True, [None], [{}], {"a": None}, {"": 1}, float("inf")]


def _check_shape(errors):
    assert isinstance(errors, list)
    for e in errors:
        assert set(e) == {"path", "message"}
        assert isinstance(e["path"], str) and isinstance(e["message"], str) and e["message"]
        assert e["path"] == "" or e["path"].startswith("/")


@pytest.mark.parametrize("family", catalog.FAMILIES)
def test_fuzz_malformed_values_never_raise(family):
    base = full(family)
    for path in list(_paths(base)):
        for repl in REPLACEMENTS:
            m = copy.deepcopy(base)
            if not path:
                m = repl
            else:
                node = m
                for key in path[:-1]:
                    node = node[key]
                node[path[-1]] = repl
            errors = validate_manifest(m, family=family, level="industry", path_prefix="/manifest")
            _check_shape(errors)
        if path and isinstance(path[-1], str):
            m = copy.deepcopy(base)
            node = m
            for key in path[:-1]:
                node = node[key]
            del node[path[-1]]
            _check_shape(validate_manifest(m, family=family))


def test_fuzz_odd_shapes_never_raise():
    odd = [
        {"metadata": [], "requirements": [], "pipeline": [], "evaluation": []},
        {"metadata": {}, "requirements": {"grain": "a,b"}, "pipeline": {"stages": [None, 1, "x", []]}},
        {"pipeline": {"stages": [{"name": 1, "type": ["training"]}, {"name": None, "type": None}]}},
        {
            "evaluation": {
                "metrics": {"MAPE": None, "RMSE": [], "x": "1", "y": {"target": "1", "direction": 3}}
            }
        },
        {"monitoring": {"metrics": [1, None, {}], "alerts": {"a": {"condition": 1}, "b": None}, "drift": []}},
        {"monitoring": {"alerts": [], "freshness": "1h"}, "deployment": {"schedule": 5, "mode": None}},
        {1: 2, None: 3, "metadata": {"version": None, "model_family": ["pricing"]}},
    ]
    for m in odd:
        for fam in (None, "forecasting", "nonsense"):
            _check_shape(validate_manifest(m, family=fam, level="baseline"))


# --------------------------------------------------------------------------- helpers


def test_parse_semver():
    assert parse_semver("1.2.3") == (1, 2, 3)
    assert parse_semver("10.0.12") == (10, 0, 12)
    for bad in ["1.2", "1.2.3.4", "a.b.c", "01.2.3", "", None, 1]:
        with pytest.raises(ValueError):
            parse_semver(bad)


def test_bump_semver():
    assert bump_semver("1.2.3", "major") == "2.0.0"
    assert bump_semver("1.2.3", "minor") == "1.3.0"
    assert bump_semver("1.2.3", "patch") == "1.2.4"
    assert bump_semver("1.2.3") == "1.2.4"
    with pytest.raises(ValueError):
        bump_semver("1.2.3", "build")
    with pytest.raises(ValueError):
        bump_semver("1.2", "patch")


def test_parse_min_history():
    assert parse_min_history("2 years") == (2, "years")
    assert parse_min_history("1 week") == (1, "weeks")
    assert parse_min_history("90 Days") == (90, "days")
    assert parse_min_history("500rows") == (500, "rows")
    assert parse_min_history(None) is None
    for bad in ["", "two years", "0 days", "2 fortnights", 3]:
        with pytest.raises(ValueError):
            parse_min_history(bad)


def test_grain_columns():
    m = minimal()
    assert grain_columns(m) == ["store_id", "date"]
    m["requirements"]["grain"] = " store_id , sku_id,,week "
    assert grain_columns(m) == ["store_id", "sku_id", "week"]
    assert grain_columns({}) == []
    assert grain_columns({"requirements": {"grain": 5}}) == []
    assert grain_columns(None) == []


def test_rewrite_metadata_is_a_deep_copy():
    m = full()
    out = rewrite_metadata(m, id="recipe_x", level="industry", version="2.0.0", name="Retail")
    assert out["metadata"] == {
        **m["metadata"],
        "id": "recipe_x",
        "level": "industry",
        "version": "2.0.0",
        "name": "Retail",
    }
    assert m["metadata"]["id"] == "recipe_forecasting_base"  # input untouched
    out["pipeline"]["stages"][0]["config"]["max_null_ratio"] = 0.5
    assert m["pipeline"]["stages"][0]["config"]["max_null_ratio"] == 0.1
    kept = rewrite_metadata(m, id="a", level="client", version="1.0.1")
    assert kept["metadata"]["name"] == "Minimal"
    assert rewrite_metadata({"metadata": None}, id="a", level="client", version="1.0.0")["metadata"] == {
        "id": "a",
        "level": "client",
        "version": "1.0.0",
    }


# --------------------------------------------------------------------------- baseline manifests


@pytest.mark.parametrize("family", catalog.FAMILIES)
def test_baseline_manifest_is_valid(family):
    path = BASELINES / f"{family}.json"
    if not path.exists():
        pytest.skip(f"{path.name} not written yet")
    manifest = json.loads(path.read_text(encoding="utf-8"))
    assert validate_manifest(manifest, family=family, level="baseline") == []
    assert manifest["metadata"]["id"] == f"recipe_{catalog.FAMILY_SHORT[family]}_base"
    assert manifest["metadata"]["version"] == "1.0.0"
