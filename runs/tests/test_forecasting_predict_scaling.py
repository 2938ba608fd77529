"""Forecasting's predict at scale gives the forecasts of the step-by-step computation.

``predict`` forecasts only the series a batch asks for, in groups of series
(``FORECAST_CELLS``), builds the LightGBM features of every period up front and grows the
rolling sums one period at a time. The reference below is the straightforward recursion it
replaced: every series of the model, the whole feature matrix rebuilt by ``_lgb_features``
for each period. The two must agree exactly (same floats), for LightGBM and the other
algorithms, however the series are grouped.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from runs.families import forecasting as fc
from runs.pipeline import score_rows

DAYS = 500
N_SERIES = 6
FAST_LGB = {"n_estimators": 25, "learning_rate": 0.1, "num_leaves": 7, "min_data_in_leaf": 20}


def manifest(training: dict) -> dict:
    return {
        "requirements": {"grain": ["series_id", "date"], "labels": ["sales"]},
        "pipeline": {
            "stages": [
                {"name": "prep", "type": "feature_prep", "config": {}},
                {
                    "name": "train",
                    "type": "training",
                    "config": {"horizon": 14, "hyperparameters": FAST_LGB} | training,
                },
            ]
        },
        "evaluation": {"validation": {"method": "time_holdout", "test_size": 0.1}},
    }


def quiet(_message: str) -> None:
    pass


@pytest.fixture(scope="module")
def data() -> pd.DataFrame:
    return fc.generate(N_SERIES * DAYS, 5, days=DAYS)


@pytest.fixture(scope="module")
def lgb_model(data):
    return fc.fit(data, manifest({"algorithm": "lightgbm"}), threads=1, log=quiet)


def future_rows(model: dict, data: pd.DataFrame, days: int) -> pd.DataFrame:
    """``days`` days after the model's history for every series, known features from the
    generator's next days (their sales dropped), shuffled, with one day of one series left
    out (so a known feature falls back to the series' median) and one series asked for
    fewer days."""
    world = {"series": N_SERIES}
    start = (pd.Timestamp(model["last_date"]) - pd.Timestamp(fc.START_DATE)).days + 1
    later = fc.generate(0, 5, world=world, window={"start": start, "periods": days})
    later = later.drop(columns=["sales"])
    later = later.drop(index=later.index[3])  # a missing day of series 0
    short = later["series_id"] == later["series_id"].iloc[-1]
    later = later[~short | (later["date"] <= later["date"].min() + pd.Timedelta(days=days // 3))]
    return later.sample(frac=1.0, random_state=1).reset_index(drop=True)


def reference_forecast_rows(model: dict, rows: pd.DataFrame) -> np.ndarray:
    """The point forecasts the slow way: all the model's series forecast to the furthest
    requested period, LightGBM features rebuilt from the whole matrix for every period."""
    spec = model["spec"]
    index = {k: i for i, k in enumerate(model["series"])}
    s_idx = np.array([index[str(k)] for k in rows["series_id"]], dtype=np.int64)
    last = pd.Timestamp(model["last_date"])
    dates = pd.to_datetime(rows[spec["time_column"]]).dt.normalize()
    assert spec["frequency"] == "D"  # the reference steps in days
    steps = (dates - last).dt.days.to_numpy(dtype=np.int64)
    n, periods = len(model["series"]), int(steps.max())
    future = pd.DatetimeIndex([last + pd.Timedelta(days=h + 1) for h in range(periods)])
    state = model["state"]
    if model["algorithm"] == "seasonal_naive":
        season = np.asarray(state["last_season"], dtype=float)
        forecast = season[:, np.arange(periods) % season.shape[1]]
    elif model["algorithm"] in ("ets", "arima"):
        paths = np.asarray(state["paths"], dtype=float)
        shares = np.asarray(state["shares"], dtype=float)
        pos = future.day_of_week.to_numpy() % shares.shape[1]
        forecast = paths[0, :periods][None, :] * shares[:, pos]
    else:
        known_future = {}
        for f in model["known_features"]:
            fill = np.asarray(state["known_fill"][f], dtype=float)
            vals = rows[f].to_numpy(dtype=float)
            sums, cnts = np.zeros((n, periods)), np.zeros((n, periods))
            np.add.at(sums, (s_idx, steps - 1), vals)
            np.add.at(cnts, (s_idx, steps - 1), 1)
            with np.errstate(invalid="ignore", divide="ignore"):
                known_future[f] = np.where(cnts > 0, sums / cnts, fill[:, None])
        tail = np.asarray(state["tail"], dtype=float)
        scale = np.asarray(state["scale"], dtype=float)
        width = tail.shape[1]
        ys = np.hstack([tail / scale[:, None], np.full((n, periods), np.nan)])
        for j in range(periods):
            col = np.array([width + j])
            known = {f: known_future[f][:, j : j + 1] for f in state["known"]}
            x = fc._lgb_features(ys, col, future[j : j + 1], known, state, spec)
            ys[:, width + j] = np.clip(state["booster"].predict(x.reshape(n, -1), num_threads=1), 0.0, None)
        forecast = ys[:, width:] * scale[:, None]
    return forecast[s_idx, steps - 1]


def test_lightgbm_predict_equals_the_step_by_step_reference(lgb_model, data):
    assert lgb_model["algorithm"] == "lightgbm"
    rows = future_rows(lgb_model, data, days=90)
    expected = reference_forecast_rows(lgb_model, rows)
    got = np.asarray(fc.predict(lgb_model, rows))
    assert got.shape == (len(rows),)
    assert np.array_equal(got, expected)
    # the known features matter: a forecast with promotions everywhere is different
    promo = np.asarray(fc.predict(lgb_model, rows.assign(promo=1)))
    assert not np.allclose(promo, got)


def test_series_groups_change_no_forecast(lgb_model, data, monkeypatch):
    rows = future_rows(lgb_model, data, days=60)
    whole = np.asarray(fc.predict(lgb_model, rows))
    monkeypatch.setattr(fc, "FORECAST_CELLS", 100)  # one series per group
    assert np.array_equal(np.asarray(fc.predict(lgb_model, rows)), whole)
    monkeypatch.setattr(fc, "FORECAST_CELLS", 130)  # two series per group (60 days each)
    assert np.array_equal(np.asarray(fc.predict(lgb_model, rows)), whole)


def test_a_batch_of_some_series_forecasts_them_as_the_whole_batch_does(lgb_model, data):
    rows = future_rows(lgb_model, data, days=40)
    whole = pd.Series(fc.predict(lgb_model, rows))
    some = rows["series_id"].isin(sorted(rows["series_id"].unique())[1:3])
    part = fc.predict(lgb_model, rows[some])
    assert np.array_equal(np.asarray(part), whole[some.to_numpy()].to_numpy())


@pytest.mark.parametrize("algorithm", ["seasonal_naive", "ets"])
def test_other_algorithms_equal_the_reference(data, algorithm, monkeypatch):
    model = fc.fit(data, manifest({"algorithm": algorithm}), threads=1, log=quiet)
    assert model["algorithm"] == algorithm
    rows = future_rows(model, data, days=30)
    expected = reference_forecast_rows(model, rows)
    assert np.array_equal(np.asarray(fc.predict(model, rows)), expected)
    monkeypatch.setattr(fc, "FORECAST_CELLS", 1)
    assert np.array_equal(np.asarray(fc.predict(model, rows)), expected)


def test_pinned_forecasts(lgb_model, data):
    """A few forecasts of the fixture's model, pinned: a change to the forecasting arithmetic
    (not only to how it is organised) shows here."""
    rows = future_rows(lgb_model, data, days=30).sort_values(["series_id", "date"]).reset_index(drop=True)
    got = np.asarray(fc.predict(lgb_model, rows))
    picks = [0, 7, 29, len(rows) - 1]
    assert got[picks] == pytest.approx(PINNED, rel=1e-9)


# computed with the step-by-step implementation this module's reference describes
PINNED = [39.35301238470458, 38.22937818874485, 24.293807827525196, 23.874630777457494]


def test_score_rows_uses_the_familys_chunk_size_and_threads_change_no_score(lgb_model, data):
    rows = future_rows(lgb_model, data, days=20)
    calls: list[int] = []

    class Family:
        SCORE_CHUNK_ROWS = 45  # about two series of 20 days a call

        @staticmethod
        def predict(model, batch):
            calls.append(len(batch))
            return fc.predict(model, batch)

    whole = np.asarray(fc.predict(lgb_model, rows))
    scores = score_rows(Family, lgb_model, rows, ["series_id"])
    assert len(calls) >= 3 and max(calls) <= 45
    assert np.array_equal(scores, whole)
    calls.clear()
    assert np.array_equal(score_rows(Family, lgb_model, rows, ["series_id"], threads=2), whole)
    assert len(calls) >= 3
    assert fc.SCORE_CHUNK_ROWS >= 1_000_000  # forecasting predicts large batches in one call
