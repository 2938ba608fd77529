"""Tests of recipes/alert_rules.py: the alert condition language and the names a manifest's
alerts may use (no Django)."""

from __future__ import annotations

import builtins
import json
from pathlib import Path

import pytest

from recipes import alert_rules
from recipes.alert_rules import ConditionError, parse_condition
from recipes.manifest import validate_manifest


def ev(text, **ctx):
    return parse_condition(text).evaluate(ctx)


# ---------------------------------------------------------------------------- parsing


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("1 < 2", True),
        ("2 < 2", False),
        ("2 <= 2", True),
        ("3 <= 2", False),
        ("3 > 2", True),
        ("2 > 2", False),
        ("2 >= 2", True),
        ("1 >= 2", False),
        ("2 == 2.0", True),
        ("2 == 3", False),
        ("2 != 3", True),
        ("2 != 2", False),
        ("true == true", True),
        ("true != false", True),
        ("-1 < 0", True),
        ("1e-3 == 0.001", True),
        ("2.5E+2 == 250", True),
        (".5 == 0.5", True),
        ("10 / 4 == 2.5", True),
        ("1 + 2 * 3 == 7", True),
        ("(1 + 2) * 3 == 9", True),
        ("2 - 3 - 4 == -5", True),
        ("- -2 == 2", True),
    ],
)
def test_comparisons_and_arithmetic(text, expected):
    assert ev(text) is expected


def test_precedence_not_and_or():
    # not > and > or
    assert ev("true or true and false") is True  # true or (true and false)
    assert ev("(true or true) and false") is False
    assert ev("not false and false") is False  # (not false) and false
    assert ev("not (false and false)") is True
    assert ev("false and false or true") is True  # (false and false) or true
    assert ev("not true or true") is True  # (not true) or true
    assert ev("not a > 1", a=2) is False  # not binds looser than comparisons
    assert ev("a > 1 and b < 2 or c == 3", a=0, b=0, c=3) is True
    assert ev("a > 1 and (b < 2 or c == 3)", a=0, b=0, c=3) is False


def test_keywords_case_insensitive_and_symbols():
    assert ev("TRUE AND Not FALSE") is True
    assert ev("a > 1 && b > 1", a=2, b=2) is True
    assert ev("a > 1 || b > 1", a=0, b=2) is True
    assert ev("!(a > 1)", a=0) is True
    assert ev("!drift.price.drifted", **{"drift.price.drifted": False}) is True


def test_names_with_at_and_dots():
    c = parse_condition("precision@k < 0.3 or drift.price.psi > 0.2 or freshness.sales.age_hours > 48")
    assert c.names == frozenset({"precision@k", "drift.price.psi", "freshness.sales.age_hours"})
    assert c.text.startswith("precision@k")
    assert c.evaluate({"precision@k": 0.5, "drift.price.psi": 0.3, "freshness.sales.age_hours": 1}) is True
    assert ev("hit_rate@k >= 0.2", **{"hit_rate@k": 0.25}) is True
    assert ev("MAPE > 1.5 * 0.1", MAPE=0.16) is True
    assert ev("MAPE > 1.5 * 0.1", MAPE=0.14) is False


def test_three_valued_logic():
    assert ev("MAPE > 0.1") is None  # missing
    assert ev("MAPE > 0.1", MAPE=None) is None
    assert ev("MAPE > 0.1", MAPE=float("nan")) is None
    assert ev("not MAPE > 0.1") is None
    assert ev("MAPE > 0.1 and 1 > 2") is False  # unknown and false = false
    assert ev("1 > 2 and MAPE > 0.1") is False
    assert ev("MAPE > 0.1 and 1 < 2") is None  # unknown and true = unknown
    assert ev("MAPE > 0.1 or 1 < 2") is True  # unknown or true = true
    assert ev("1 < 2 or MAPE > 0.1") is True
    assert ev("MAPE > 0.1 or 1 > 2") is None  # unknown or false = unknown
    assert ev("MAPE * 2 > 0.1") is None
    assert ev("1 / x > 0", x=0) is None  # division by zero is unknown
    assert ev("flag", flag=True) is True
    assert ev("flag") is None


def test_type_errors_at_evaluation():
    with pytest.raises(ConditionError, match="number, not a condition"):
        ev("MAPE", MAPE=0.2)
    with pytest.raises(ConditionError, match="true/false, not a number"):
        ev("flag > 1", flag=True)
    assert ev("flag == true", flag=True) is True


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("(MAPE > 0.1", "unbalanced '('", 1),
        ("MAPE > 0.1)", "unbalanced ')'", 11),
        ("((MAPE > 0.1)", "unbalanced '('", 1),
        ("MAPE >", "unexpected end of condition", 7),
        ("MAPE > 0.1 and", "unexpected end of condition", 15),
        ("or MAPE > 1", "unexpected 'or'", 1),
        ("MAPE > > 1", "unexpected '>'", 8),
        ("MAPE > 0.1 $", "unexpected character '$'", 12),
        ("MAPE = 0.1", "use '=='", 6),
        ("a & b", "use '&&'", 3),
        ("1 < a < 2", "chained comparisons", 7),
        ("a > 1 b", "unexpected 'b'", 7),
        ("()", "empty parentheses", 2),
        ("1 and true", "got a number", 1),
        ("true > 1", "needs numbers", 1),
        ("1.2.3 > a", "after number", 4),
        ("a > 1e", "malformed exponent", 7),
        ("drift..psi > 1", "malformed name", 1),
        ("a > 1e999", "out of range", 5),
    ],
)
def test_syntax_errors_say_what_and_where(text, message, column):
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    assert message in str(info.value)
    assert info.value.column == column
    assert f"at column {column}" in str(info.value)
    assert isinstance(info.value, ValueError)


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_condition(text):
    with pytest.raises(ConditionError, match="empty condition"):
        parse_condition(text)


def test_non_string_condition():
    with pytest.raises(ConditionError, match="must be a string"):
        parse_condition(None)


@pytest.mark.parametrize(
    "text",
    [
        "__import__('os')",
        "__import__('os').system('touch /tmp/pwned')",
        "open('/etc/passwd').read()",
        "MAPE > 0.1 and exec('1')",
        'eval("1")',
        "MAPE.__class__ > 1 ; import os",
        "[x for x in ()]",
        "lambda: 1",
        "a if b else c",
        "{'a': 1}",
        "`rm -rf /`",
        "MAPE > 0.1\x00",
        "a > 1 # comment",
        "\u0430 > 1",  # Cyrillic a
        "x" * 501,
        "MAPE > 0.1 and " * 40 + "true",
        "(" * 40 + "true" + ")" * 40,
        "not " * 40 + "true",
        "-" * 60 + "1 > 0",
    ],
)
def test_hostile_inputs_are_rejected_and_nothing_runs(text, monkeypatch):
    def forbidden(*args, **kwargs):
        raise AssertionError("user text reached eval/exec/__import__")

    monkeypatch.setattr(builtins, "eval", forbidden)
    monkeypatch.setattr(builtins, "exec", forbidden)
    with pytest.raises(ConditionError):
        parse_condition(text)


def test_length_limit_is_exact():
    ok = "a" * (alert_rules.MAX_CONDITION_LENGTH - 4) + " > 1"
    assert parse_condition(ok).names == {"a" * (alert_rules.MAX_CONDITION_LENGTH - 4)}
    with pytest.raises(ConditionError, match="too long"):
        parse_condition(ok + "0")


def test_condition_objects():
    a = parse_condition("MAPE > 0.1")
    assert a == parse_condition("MAPE > 0.1")
    assert a.unknown_names({"RMSE"}) == ["MAPE"]
    assert a.unknown_names({"MAPE"}) == []
    assert "MAPE > 0.1" in repr(a)


# ---------------------------------------------------------------------------- names


MANIFEST = {
    "metadata": {"model_family": "forecasting"},
    "evaluation": {"metrics": {"MAPE": {"target": 0.1}, "custom_score": {"target": 1}}},
    "monitoring": {
        "metrics": ["MAPE", "bias"],
        "drift": {"method": "PSI", "threshold": 0.2, "features": ["price", "promo"]},
        "freshness": {"max_age_hours": 48, "features": ["sales"]},
        "alerts": {
            "mape_high": {"condition": "MAPE > 0.15", "severity": "critical"},
            "drift": {"condition": "drift.max_psi > 0.2 or drift.price.drifted", "severity": "warning"},
            "stale": {"condition": "freshness.max_age_hours > 48", "severity": "warning"},
        },
    },
}


def test_allowed_names_for_a_sample_manifest():
    names = alert_rules.allowed_names(MANIFEST, "forecasting")
    # performance: evaluation metrics, monitoring metrics and the family's catalog
    assert {"MAPE", "custom_score", "bias", "RMSE", "MAE", "WAPE", "coverage"} <= names
    assert "precision@k" not in names
    for feature in ["price", "promo", "prediction"]:
        for stat in ["psi", "ks", "p_value", "drifted"]:
            assert f"drift.{feature}.{stat}" in names
    assert {"drift.max_psi", "drift.max_ks", "drift.drifted_count"} <= names
    assert {"freshness.sales.age_hours", "freshness.sales.stale", "freshness.max_age_hours"} <= names
    assert "freshness.price.age_hours" not in names
    # the family defaults to the manifest's own
    assert alert_rules.allowed_names(MANIFEST) == names
    assert "precision@k" in alert_rules.allowed_names({}, "next_best_action")


@pytest.mark.parametrize(
    "manifest",
    [
        None,
        {},
        [],
        "x",
        {"monitoring": None},
        {"monitoring": {"drift": "x", "freshness": [1]}},
        {"evaluation": {"metrics": ["a"]}, "monitoring": {"drift": {"features": "price"}}},
    ],
)
def test_allowed_names_survives_malformed_manifests(manifest):
    names = alert_rules.allowed_names(manifest, None)
    assert {"drift.max_psi", "drift.prediction.psi", "freshness.max_age_hours"} <= names


# ---------------------------------------------------------------------------- attribution drift


def _baseline(name: str) -> dict:
    return json.loads((Path(alert_rules.__file__).parent / "baselines" / f"{name}.json").read_text())


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("explain.rank_change > 1.5", {"explain.rank_change"}),
        ("explain.price.share < 0.2", {"explain.price.share"}),
        (
            "explain.series_id.share >= 0.1 or explain.rank_change > 1",
            {"explain.series_id.share", "explain.rank_change"},
        ),
    ],
)
def test_attribution_drift_names_parse(text, names):
    assert parse_condition(text).names == names


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("explain.rank > 1", "did you mean 'explain.rank_change'?"),
        ("explain.rank_change.value > 1", "did you mean 'explain.rank_change'?"),
        ("explain.price > 0.2", "(e.g. explain.price.share)"),
        ("explain.price.shares < 0.2", "a feature's attribution drift is 'share'"),
        ("explain.price.mean_abs < 0.2", "(explain.price.share, its share of the mean |contribution|)"),
        ("MAPE > 1 and explain.a.b.share < 0.2", "the feature must be one name without dots"),
    ],
)
def test_malformed_attribution_drift_names_are_refused_with_the_names_that_exist(text, says):
    with pytest.raises(ConditionError) as info:
        parse_condition(text)
    message = str(info.value)
    assert says in message
    assert "use explain.rank_change or explain.<feature>.share" in message
    assert info.value.column == text.index("explain") + 1


def test_names_outside_the_explain_namespace_are_untouched():
    assert parse_condition("explained > 1").names == {"explained"}
    assert parse_condition("Explain.x > 1").names == {"Explain.x"}


def test_allowed_names_take_any_explained_feature_and_list_the_manifests():
    names = alert_rules.allowed_names(_baseline("pricing"))
    assert isinstance(names, alert_rules.AllowedNames)
    listed = {n for n in names if n.startswith("explain.")}
    # the features the manifest names (lineage inputs, drift features) are listed for hints ...
    assert {
        "explain.rank_change",
        "explain.price.share",
        "explain.promo.share",
        "explain.segment.share",
    } <= listed
    # ... and a feature only the trained model's explanation names is allowed too
    assert "explain.series_id.share" not in listed
    assert "explain.series_id.share" in names
    assert "explain.series_id.mean_abs" not in names
    condition = parse_condition("explain.series_id.share > 0.1 and explain.rank_change > 1 and nope > 1")
    assert condition.unknown_names(names) == ["nope"]
    # a plain set of the same names knows only those listed
    assert condition.unknown_names(set(names)) == ["explain.series_id.share", "nope"]


def test_a_baseline_with_attribution_drift_alerts_validates():
    manifest = _baseline("location_scoring")
    manifest["monitoring"]["alerts"]["attribution_moved"] = {
        "condition": "explain.rank_change > 1.5 or explain.foot_traffic.share < 0.2",
        "severity": "warning",
    }
    assert validate_manifest(manifest, family="location_scoring", level="baseline") == []


@pytest.mark.parametrize(
    ("condition", "says"),
    [
        ("explain.rank_chang > 1", "did you mean 'explain.rank_change'?"),
        ("explain.price.shares < 0.2", "'explain.price.shares' is not an attribution-drift name"),
        ("explain.price < 0.2", "(e.g. explain.price.share)"),
    ],
)
def test_manifest_validation_names_the_condition_of_a_bad_attribution_drift_name(condition, says):
    manifest = _baseline("pricing")
    manifest["monitoring"]["alerts"]["attribution_moved"] = {"condition": condition, "severity": "warning"}
    errors = validate_manifest(manifest, family="pricing", level="baseline")
    assert [e["path"] for e in errors] == ["/monitoring/alerts/attribution_moved/condition"]
    assert "alert 'attribution_moved'" in errors[0]["message"]
    assert says in errors[0]["message"]
