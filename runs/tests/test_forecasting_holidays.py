"""The forecasting world with public holidays (concepts "holidays" and "holidays_trend_break"):
pure, no Django."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runs.families import forecasting as fc
from runs.families import worlds

WORLD = {"series": 20}
# 2024-11-04 .. 2025-01-12: Christmas, Boxing Day and New Year's Day with their eves
WINDOW = {"start": "2024-11-04", "periods": 70}


def frame(concept=None, *, hourly=False, seed=3):
    return fc.generate(0, seed, world=WORLD, window=WINDOW, concept=concept, hourly=hourly)


def masks(df):
    on, eve = fc.holiday_days(pd.DatetimeIndex(pd.to_datetime(df["date"])))
    return on, eve, ~(on | eve)


def test_holiday_days_are_the_countrys_calendar_and_their_eves():
    dates = pd.date_range("2024-12-23", "2025-01-02", freq="D")
    on, eve = fc.holiday_days(dates)
    day = {d.strftime("%m-%d"): (bool(h), bool(e)) for d, h, e in zip(dates, on, eve, strict=True)}
    assert day["12-24"] == (False, True)  # the eve of Christmas
    assert day["12-25"] == (True, False)  # a holiday that is also Boxing Day's eve counts as a holiday
    assert day["12-26"] == (True, False)
    assert day["12-31"] == (False, True) and day["01-01"] == (True, False)
    assert day["12-23"] == day["12-27"] == (False, False)
    empty_on, empty_eve = fc.holiday_days(pd.DatetimeIndex([]))
    assert len(empty_on) == len(empty_eve) == 0


@pytest.mark.parametrize("hourly", [False, True])
def test_holidays_move_only_the_holidays_and_their_eves(hourly):
    plain, hol = frame(hourly=hourly), frame("holidays", hourly=hourly)
    on, eve, other = masks(plain)
    assert on.any() and eve.any()
    # every other day keeps its draw exactly; features never move
    assert np.array_equal(plain["sales"][other], hol["sales"][other])
    for col in ("series_id", "date", "promo", "price"):
        assert plain[col].equals(hol[col])
    # the holiday days carry the documented factors (sums over 20 series: noise averages out)
    assert hol["sales"][on].sum() / plain["sales"][on].sum() == pytest.approx(fc.HOLIDAY_FACTOR, rel=0.15)
    assert hol["sales"][eve].sum() / plain["sales"][eve].sum() == pytest.approx(
        fc.HOLIDAY_EVE_FACTOR, rel=0.15
    )


def test_holidays_with_a_trend_break_are_the_trend_break_plus_the_holidays():
    brk, both = frame("trend_break"), frame("holidays_trend_break")
    on, _, other = masks(brk)
    assert np.array_equal(brk["sales"][other], both["sales"][other])
    assert both["sales"][on].sum() < brk["sales"][on].sum()
    # the break itself: demand well below the plain world's
    assert both["sales"][other].sum() < 0.8 * frame()["sales"][other].sum()


def test_the_holiday_world_is_deterministic():
    assert frame("holidays_trend_break").equals(frame("holidays_trend_break"))
    assert frame("holidays", hourly=True).equals(frame("holidays", hourly=True))
    assert not frame("holidays", seed=4)["sales"].equals(frame("holidays")["sales"])


def test_the_concepts_are_known_to_the_world_and_the_ground_truth():
    resolved = worlds.resolve(fc, {"rows": 2 * 60, "periods": 60, "concept": "holidays_trend_break"})
    assert resolved["concept"] == "holidays_trend_break"
    assert len(worlds.generate(fc, resolved)) == resolved["rows"]
    truth = fc.ground_truth(0)["holidays"]
    assert truth == {"country": "GB", "day_before_factor": 1.6, "holiday_factor": 0.6}
    with pytest.raises(worlds.WorldError):
        worlds.resolve(fc, {"concept": "holiday"})
