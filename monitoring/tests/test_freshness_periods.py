"""Freshness that knows the period (monitoring.freshness; recipes.forecasting_config's check):
a forecasting row stands for a period dated at its start, so its age counts from the period's
end. Pure: no database."""

from datetime import UTC, datetime

import pandas as pd
import pytest

from monitoring.freshness import FreshnessStream, batch_freshness, period_end
from recipes import forecasting_config
from recipes.manifest import validate_manifest


def manifest(frequency: str | None, max_age: float, features=("date", "sales")) -> dict:
    config = {} if frequency is None else {"frequency": frequency}
    return {
        "pipeline": {"stages": [{"name": "prep", "type": "feature_prep", "config": config}]},
        "monitoring": {"freshness": {"max_age_hours": max_age, "features": list(features)}},
    }


def batch(starts: str, periods: int, freq: str) -> pd.DataFrame:
    dates = pd.date_range(starts, periods=periods, freq=freq)
    return pd.DataFrame({"series_id": "s1", "date": dates, "sales": range(periods)})


def at(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


MONTHLY = batch("2026-01-01", 11, "MS")  # January .. November 2026, dated the 1st
QUARTERLY = batch("2025-01-01", 7, "QS")  # 2025 Q1 .. 2026 Q3, dated the quarter's first day


def check(frame, m, now, real_times=True):
    return batch_freshness(frame, m, "forecasting", real_times=real_times, now=now)


def test_a_current_monthly_batch_is_fresh_all_month_and_stale_a_period_late():
    m = manifest("M", 744)
    mid = check(MONTHLY, m, at(2026, 12, 20))
    date = mid["features"]["date"]
    assert mid["period"] == "M"
    assert date["newest"] == "2026-11-01T00:00:00+00:00"
    assert date["period_end"] == "2026-12-01T00:00:00+00:00"
    assert date["age_hours"] == 19 * 24 and date["stale"] is False
    # the last hour of December: November is still the newest complete month
    assert check(MONTHLY, m, at(2026, 12, 31, 23))["features"]["date"]["stale"] is False
    # December's row has not come a day after December ended: one period late
    late = check(MONTHLY, m, at(2027, 1, 2))["features"]["date"]
    assert late["age_hours"] == 32 * 24 and late["stale"] is True
    # before: a month-start date read as its own age called November stale at once
    assert check(MONTHLY, m, at(2026, 12, 2))["features"]["date"]["age_hours"] == 24.0


def test_a_current_quarterly_batch_is_fresh_and_one_quarter_late_is_stale():
    m = manifest("Q", forecasting_config.MAX_PERIOD_HOURS["Q"])
    current = check(QUARTERLY, m, at(2026, 12, 30))["features"]["date"]
    assert current["period_end"] == "2026-10-01T00:00:00+00:00"
    assert current["age_hours"] == 90 * 24 and current["stale"] is False
    late = check(QUARTERLY, m, at(2027, 1, 10))["features"]["date"]
    assert late["age_hours"] == 101 * 24 and late["stale"] is True


def test_a_period_still_running_is_current():
    # December's row (dated the 1st) checked on 10 December: December has not ended
    out = check(batch("2026-10-01", 3, "MS"), manifest("M", 744), at(2026, 12, 10))
    assert out["features"]["date"]["age_hours"] == 0.0 and out["features"]["date"]["stale"] is False


def test_hourly_and_weekly_periods():
    hourly = batch("2026-03-10 00:00", 11, "h")  # 00:00 .. 10:00
    m = manifest("H", 1)
    assert check(hourly, m, at(2026, 3, 10, 11, 30))["features"]["date"]["age_hours"] == 0.5
    late = check(hourly, m, at(2026, 3, 10, 12, 30))["features"]["date"]
    assert late["age_hours"] == 1.5 and late["stale"] is True
    weekly = batch("2026-11-02", 4, "W-MON")  # Mondays .. 23 November (the week to Sunday 29th)
    week = check(weekly, manifest("W", 168), at(2026, 12, 2))["features"]["date"]
    assert week["period_end"] == "2026-11-30T00:00:00+00:00" and week["age_hours"] == 48.0


def test_daily_is_the_default_and_other_families_age_from_the_timestamp():
    daily = batch("2026-03-01", 9, "D")  # .. 9 March
    out = check(daily, manifest(None, 48), at(2026, 3, 10, 12))
    assert out["period"] == "D" and out["features"]["date"]["age_hours"] == 12.0
    nba = pd.DataFrame({"event_time": pd.to_datetime(["2026-03-09", "2026-11-01"])})
    m = manifest("M", 744, features=("event_time",))
    other = batch_freshness(nba, m, "next_best_action", real_times=True, now=at(2026, 12, 20))
    assert "period" not in other and "period_end" not in other["features"]["event_time"]
    assert other["features"]["event_time"]["age_hours"] == 49 * 24


def test_period_end_of_each_frequency():
    stamp = pd.Timestamp("2026-11-18 13:45", tz="UTC")  # a Wednesday
    ends = {f: period_end(stamp, f).isoformat() for f in forecasting_config.FREQUENCIES}
    assert ends == {
        "H": "2026-11-18T14:00:00+00:00",
        "D": "2026-11-19T00:00:00+00:00",
        "W": "2026-11-23T00:00:00+00:00",
        "M": "2026-12-01T00:00:00+00:00",
        "Q": "2027-01-01T00:00:00+00:00",
    }


@pytest.mark.parametrize("real_times", [True, False])
@pytest.mark.parametrize(
    "frame, freq", [(MONTHLY, "M"), (QUARTERLY, "Q"), (batch("2026-03-01", 50, "h"), "H")]
)
def test_the_stream_equals_the_whole_batch(frame, freq, real_times):
    frame = frame.assign(sales=[None if i % 3 == 2 else float(i) for i in range(len(frame))])
    m = manifest(freq, forecasting_config.MAX_PERIOD_HOURS[freq])
    now = at(2027, 1, 2)
    stream = FreshnessStream(m, "forecasting")
    for start in range(0, len(frame), 4):  # row slices of one table, newest not in the last one
        stream.add(frame.iloc[::-1].iloc[start : start + 4])
    assert stream.report(real_times=real_times, now=now) == check(frame, m, now, real_times)


def test_a_synthetic_batch_is_moved_so_its_newest_period_ends_now():
    frame = MONTHLY.assign(sales=[*range(10), None])  # sales' newest month is October
    out = check(frame, manifest("M", 744), at(2026, 12, 20), real_times=False)
    assert out["features"]["date"]["age_hours"] == 0.0
    assert out["features"]["date"]["period_end"] == "2026-12-20T00:00:00+00:00"
    assert out["features"]["sales"]["age_hours"] == 30 * 24  # November's length


# --------------------------------------------------------------------------- validation


def recipe(frequency: str, max_age: float, family: str = "forecasting") -> dict:
    metric = {"forecasting": "MAPE", "pricing": "demand_mape"}[family]
    return {
        "metadata": {
            "id": "recipe_x",
            "name": "X",
            "model_family": family,
            "level": "baseline",
            "version": "1.0.0",
        },
        "requirements": {"feature_sets": {"required": ["sales"]}, "grain": ["series_id", "date"]},
        "pipeline": {
            "stages": [
                {"name": "prep", "type": "feature_prep", "config": {"frequency": frequency}},
                {"name": "train", "type": "training", "config": {}},
            ]
        },
        "evaluation": {
            "metrics": {metric: {"target": 0.2, "threshold_warning": 0.3, "threshold_critical": 0.4}}
        },
        "monitoring": {"freshness": {"max_age_hours": max_age, "features": ["sales"]}},
    }


@pytest.mark.parametrize(
    ("frequency", "max_age", "hours"), [("M", 48, 744), ("Q", 743, 2208), ("W", 167.5, 168), ("D", 12, 24)]
)
def test_a_freshness_limit_shorter_than_a_period_is_refused_with_its_path(frequency, max_age, hours):
    errors = validate_manifest(recipe(frequency, max_age))
    assert [e["path"] for e in errors] == ["/monitoring/freshness/max_age_hours"], errors
    assert f"({hours} hours)" in errors[0]["message"]
    assert forecasting_config.FREQUENCIES[frequency] in errors[0]["message"]


@pytest.mark.parametrize(("frequency", "max_age"), [("M", 744), ("Q", 5000), ("W", 168), ("H", 1), ("D", 24)])
def test_a_limit_of_at_least_one_period_is_valid(frequency, max_age):
    assert validate_manifest(recipe(frequency, max_age)) == []


def test_only_forecasting_recipes_and_known_frequencies_are_checked():
    pricing = recipe("M", 48, family="pricing")
    pricing["pipeline"]["stages"][0]["config"] = {}
    assert validate_manifest(pricing) == []
    errors = validate_manifest(recipe("fortnightly", 48))  # the frequency's own error, not a second one
    assert [e["path"] for e in errors] == ["/pipeline/stages/0/config/frequency"]
    # a run reads check(), which never names a monitoring setting
    assert forecasting_config.check(recipe("M", 48)) == []
