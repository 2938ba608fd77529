"""Data freshness of a checked batch: how old each watched feature's newest row is.

Pure (pandas, no Django): monitoring.services.model_check calls it on the batch it checks.
The newest timestamp of a feature is a max over rows, so a batch read in chunks is checked
with a FreshnessStream (``add`` each chunk, then ``report``); ``batch_freshness`` is the
whole batch as one chunk.

A forecasting recipe's rows stand for periods (its feature_prep ``frequency``: hours, days,
Monday-to-Sunday weeks, calendar months or quarters) dated at their start, so a November row of
a monthly forecaster is dated 1 November and is complete only on 1 December: its age counts
from the end of its period (0 while the period runs), and an up-to-date monthly batch is never
called stale for being dated a month ago. Every other family's rows age from their timestamp.
The end of the newest row's period is the end of the newest period, so the stream keeps only
the newest timestamps, as before."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from recipes import forecasting_config
from runs.data import time_column


def _config(manifest: dict) -> dict:
    return (manifest.get("monitoring") or {}).get("freshness") or {}


def row_period(manifest: dict, family: str) -> str | None:
    """The period a row of the recipe's batches stands for (a forecasting recipe's frequency:
    H, D, W, M or Q), or None when a row is a moment (the other families)."""
    return forecasting_config.recipe_frequency(manifest) if family == "forecasting" else None


def period_end(stamp: pd.Timestamp, freq: str) -> pd.Timestamp:
    """The end of the period of ``freq`` a UTC timestamp falls in (the next period's start)."""
    period = pd.Timestamp(stamp).tz_convert(None).to_period(forecasting_config.PANDAS_PERIODS[freq])
    return (period + 1).start_time.tz_localize("UTC")


class FreshnessStream:
    """The newest timestamp of each watched feature over the chunks added so far (a feature's
    row counts when both its value and the time are known). Chunks are row slices of one table:
    the same columns in each."""

    def __init__(self, manifest: dict, family: str):
        config = _config(manifest)
        self.family = family
        self.features: list[str] = list(config.get("features") or [])
        self.max_age = config.get("max_age_hours")
        self.period = row_period(manifest, family)
        self.seen = False
        self.column: str | None = None
        self.present: set[str] = set()
        self.newest: dict[str, pd.Timestamp] = {}  # per watched feature with a timed row
        self.times_max: pd.Timestamp | None = None

    def columns(self, available: list[str]) -> list[str]:
        """Of a table's columns, the ones a chunk needs: the time column and the watched
        features (none when nothing is watched or there is no time column)."""
        if not self.features:
            return []
        column = time_column(pd.DataFrame(columns=available), self.family)
        if column is None:
            return []
        return [column, *(f for f in self.features if f in available and f != column)]

    def add(self, frame: pd.DataFrame) -> None:
        if not self.features:
            return
        column = time_column(frame, self.family)
        if not self.seen:
            self.seen, self.column = True, column
            self.present = {f for f in self.features if f == column or f in frame.columns}
        if column is None:
            return
        times = pd.to_datetime(frame[column], errors="coerce", utc=True)
        if not times.notna().any():
            return
        self.times_max = _later(self.times_max, times.max())
        for feature in self.present:
            mask = times.notna() if feature == column else times.notna() & frame[feature].notna()
            if mask.any():
                self.newest[feature] = _later(self.newest.get(feature), times[mask].max())

    def report(self, *, real_times: bool, now: datetime) -> dict:
        """The manifest's ``monitoring.freshness`` against the batch: per watched feature its
        newest timestamp, age in hours at ``now`` and whether it is older than
        ``max_age_hours`` ({} when the manifest watches no feature).

        ``real_times=False`` (a synthetic batch): the batch's timestamps are moved so its
        newest row is ``now`` (a forecasting batch: so its newest period ends ``now``), so a
        synthetic world's dates do not read as years stale.

        A forecasting batch's ages count from the end of each newest row's period (module
        doc), which each feature's entry gives as ``period_end`` (and the report as ``period``)."""
        if not self.features:
            return {}
        out = {"max_age_hours": self.max_age, "features": {}}
        if self.period is not None:
            out["period"] = self.period
        if self.column is None:
            return out

        def complete(stamp: pd.Timestamp) -> pd.Timestamp:  # when the row's data are complete
            return stamp if self.period is None else period_end(stamp, self.period)

        shift = (
            pd.Timestamp(now) - complete(self.times_max)
            if not real_times and self.times_max is not None
            else None
        )
        for feature in self.features:
            if feature not in self.present:
                out["features"][feature] = {
                    "newest": None,
                    "age_hours": None,
                    "stale": None,
                    "error": "missing column",
                }
                continue
            newest = self.newest.get(feature)
            if newest is None or pd.isna(newest):
                out["features"][feature] = {"newest": None, "age_hours": None, "stale": True}
                continue
            ended = complete(newest)
            if shift is not None:
                newest, ended = newest + shift, ended + shift
            age = (pd.Timestamp(now) - ended).total_seconds() / 3600
            if self.period is not None:
                age = max(age, 0.0)  # a period still running is current
            out["features"][feature] = {
                "newest": newest.isoformat(),
                "age_hours": round(age, 3),
                "stale": bool(self.max_age is not None and age > self.max_age),
            }
            if self.period is not None:
                out["features"][feature]["period_end"] = ended.isoformat()
        ages = [f["age_hours"] for f in out["features"].values() if f.get("age_hours") is not None]
        out["max_age_hours_observed"] = max(ages) if ages else None
        return out


def _later(a: pd.Timestamp | None, b: pd.Timestamp) -> pd.Timestamp:
    return b if a is None or b > a else a


def batch_freshness(
    frame: pd.DataFrame, manifest: dict, family: str, *, real_times: bool, now: datetime
) -> dict:
    """FreshnessStream.report of ``frame`` as the one chunk."""
    stream = FreshnessStream(manifest, family)
    stream.add(frame)
    return stream.report(real_times=real_times, now=now)
