"""The forecasting family's stage settings are checked when a version is validated, each
problem named by its path (recipes.forecasting_config), and a run of an unchecked manifest
fails on the same rule before it trains (runs.families.forecasting)."""

from __future__ import annotations

import copy
import subprocess
import sys

import pytest

from recipes import forecasting_config
from recipes.baselines import manifest as baseline_manifest
from recipes.forecasting_config import MAX_PERIOD_HOURS
from recipes.manifest import validate_manifest


def forecasting(stage_type: str, **config) -> tuple[dict, str]:
    """The forecasting baseline with `config` merged into the stage of `stage_type`, and the
    JSON path of that stage's config."""
    m = copy.deepcopy(baseline_manifest("forecasting"))
    for index, stage in enumerate(m["pipeline"]["stages"]):
        if stage["type"] == stage_type:
            stage.setdefault("config", {}).update(config)
            return m, f"/pipeline/stages/{index}/config"
    raise AssertionError(stage_type)


def errors(m: dict, family: str = "forecasting") -> list[tuple[str, str]]:
    return [(e["path"], e["message"]) for e in validate_manifest(m, family=family)]


def test_module_has_no_django_import():
    code = (
        "import sys, recipes.forecasting_config; print(any(m.split('.')[0] == 'django' for m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize("frequency", ["H", "D", "W", "M", "Q", "d", "w", "MS", "QS", "h"])
def test_every_planning_frequency_is_valid(frequency):
    """With a freshness limit of at least one of its periods (check_freshness: the baseline's
    48 hours fit hourly and daily data only)."""
    m, _ = forecasting("feature_prep", frequency=frequency)
    m["monitoring"]["freshness"]["max_age_hours"] = MAX_PERIOD_HOURS[forecasting_config.frequency(frequency)]
    assert errors(m) == []


@pytest.mark.parametrize(
    ("stage", "config", "field", "words"),
    [
        ("feature_prep", {"frequency": "fortnightly"}, "frequency", "'Q' (quarterly), got 'fortnightly'"),
        ("feature_prep", {"frequency": 7}, "frequency", "got 7"),
        (
            "feature_prep",
            {"calendar_features": ["month", "fortnight"]},
            "calendar_features",
            "unknown: fortnight",
        ),
        ("feature_prep", {"calendar_features": "month"}, "calendar_features", "must be a list of"),
        ("feature_prep", {"lags": []}, "lags", "a non-empty list of whole numbers"),
        ("feature_prep", {"lags": [1, 0]}, "lags", "at least 1"),
        ("feature_prep", {"lags": [1, 2.5]}, "lags", "whole numbers"),
        ("feature_prep", {"rolling_windows": [-3]}, "rolling_windows", "at least 1"),
        ("training", {"algorithm": "tbats"}, "algorithm", "must be auto or one of seasonal_naive, ets"),
        ("training", {"candidates": []}, "candidates", "non-empty list"),
        ("training", {"candidates": ["ets", "tbats"]}, "candidates", "non-empty list of seasonal_naive"),
        ("training", {"horizon": 0}, "horizon", "whole number of days ahead, at least 1"),
        ("training", {"horizon": "4 weeks"}, "horizon", "whole number of days ahead"),
        ("training", {"horizon": True}, "horizon", "whole number"),
        ("training", {"season_length": 0}, "season_length", "periods in a season, at least 1"),
        ("training", {"interval_level": 1.5}, "interval_level", "between 0 and 1"),
        ("training", {"stat_level": "store"}, "stat_level", "must be total or series"),
    ],
)
def test_each_problem_is_named_by_its_path(stage, config, field, words):
    m, base = forecasting(stage, **config)
    found = errors(m)
    assert [p for p, _ in found] == [f"{base}/{field}"], found
    assert words in found[0][1]


def test_several_problems_are_reported_at_once():
    m, prep = forecasting("feature_prep", frequency="5min")
    m2, train = forecasting("training", algorithm="tbats", horizon=-1)
    m["pipeline"]["stages"] = [
        s if s["type"] != "training" else next(t for t in m2["pipeline"]["stages"] if t["type"] == "training")
        for s in m["pipeline"]["stages"]
    ]
    assert {p for p, _ in errors(m)} == {f"{prep}/frequency", f"{train}/algorithm", f"{train}/horizon"}


def test_other_families_are_not_held_to_forecasting_settings():
    m = copy.deepcopy(baseline_manifest("pricing"))
    for stage in m["pipeline"]["stages"]:
        if stage["type"] == "training":
            stage.setdefault("config", {})["horizon"] = 0
    assert errors(m, family="pricing") == []


def test_a_run_of_an_unchecked_manifest_fails_on_the_same_rule_before_training():
    from runs.families import forecasting as family

    m, _ = forecasting("feature_prep", frequency="5min")
    with pytest.raises(ValueError, match=r"pipeline\.stages\.\d+\.config\.frequency: 'frequency' must be"):
        family._spec(m)
