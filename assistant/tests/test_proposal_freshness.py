"""The assistant's proposal keeps a forecasting recipe's freshness limit valid when it changes
the frequency (recipes.forecasting_config.check_freshness: at least one period). Pure."""

import json
from pathlib import Path

import pytest

from assistant import proposal

BASE = json.loads((Path(__file__).resolve().parents[2] / "recipes/baselines/forecasting.json").read_text())


def build(**slots):
    return proposal.build(
        BASE, family="forecasting", level="industry", name="X", description=None, slots=slots
    )


def limit(result) -> float:
    return result.manifest["monitoring"]["freshness"]["max_age_hours"]


@pytest.mark.parametrize(("frequency", "hours"), [("W", 336), ("M", 1488), ("Q", 4416), ("H", 48)])
def test_a_new_frequency_scales_a_limit_shorter_than_its_period(frequency, hours):
    assert limit(build()) == 48  # the daily baseline: two days
    result = build(frequency=frequency)
    assert not result.rejected and result.errors == []
    assert proposal.stage_config(result.manifest, "feature_prep")["frequency"] == frequency
    assert limit(result) == hours


def test_an_explicit_limit_shorter_than_the_period_is_refused_with_the_reason():
    result = build(frequency="M", freshness_hours=48)
    assert proposal.stage_config(result.manifest, "feature_prep")["frequency"] == "M"
    assert limit(result) == 1488  # the refused slot leaves the scaled limit
    assert result.rejected and "744 hours" in result.rejected[0]
