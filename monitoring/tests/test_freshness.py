"""Data freshness of a checked batch (monitoring.freshness: pure, no database)."""

from datetime import UTC, datetime

import pandas as pd

from monitoring.freshness import batch_freshness

NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)
MANIFEST = {"monitoring": {"freshness": {"features": ["date", "price", "nope"], "max_age_hours": 48}}}


def _frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "date": ["2026-03-07", "2026-03-08", "2026-03-09"],
            "price": [1.0, 2.0, None],  # its newest non-null row is a day older
        }
    )


def test_real_timestamps_age_each_watched_feature_against_now():
    out = batch_freshness(_frame(), MANIFEST, "forecasting", real_times=True, now=NOW)
    assert out["max_age_hours"] == 48
    # a daily forecaster's row is complete at the end of its day (test_freshness_periods.py)
    assert out["features"]["date"] == {
        "newest": "2026-03-09T00:00:00+00:00",
        "age_hours": 12.0,
        "stale": False,
        "period_end": "2026-03-10T00:00:00+00:00",
    }
    assert out["features"]["price"]["age_hours"] == 36.0 and out["features"]["price"]["stale"] is False
    assert out["features"]["nope"] == {
        "newest": None,
        "age_hours": None,
        "stale": None,
        "error": "missing column",
    }
    assert out["max_age_hours_observed"] == 36.0


def test_a_synthetic_batch_is_moved_so_its_newest_row_is_now():
    out = batch_freshness(_frame(), MANIFEST, "forecasting", real_times=False, now=NOW)
    assert out["features"]["date"]["age_hours"] == 0.0
    assert out["features"]["price"]["age_hours"] == 24.0 and out["features"]["price"]["stale"] is False


def test_nothing_watched_or_no_time_column():
    assert batch_freshness(_frame(), {}, "forecasting", real_times=True, now=NOW) == {}
    no_time = batch_freshness(
        pd.DataFrame({"price": [1.0]}), MANIFEST, "forecasting", real_times=True, now=NOW
    )
    assert no_time == {"max_age_hours": 48, "period": "D", "features": {}}
