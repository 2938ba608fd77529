"""Data freshness of a checked batch: how old each watched feature's newest row is.

Pure (pandas, no Django): monitoring.services.model_check calls it on the batch it checks."""

from __future__ import annotations

from datetime import datetime

import pandas as pd

from runs.data import time_column


def batch_freshness(
    frame: pd.DataFrame, manifest: dict, family: str, *, real_times: bool, now: datetime
) -> dict:
    """The manifest's ``monitoring.freshness`` against ``frame``: per watched feature its
    newest timestamp, age in hours at ``now`` and whether it is older than ``max_age_hours``
    ({} when the manifest watches no feature).

    ``real_times=False`` (a synthetic batch): the batch's timestamps are moved so its newest
    row is ``now``, so a synthetic world's dates do not read as years stale."""
    config = (manifest.get("monitoring") or {}).get("freshness") or {}
    features = config.get("features") or []
    max_age = config.get("max_age_hours")
    if not features:
        return {}
    column = time_column(frame, family)
    out = {"max_age_hours": max_age, "features": {}}
    if column is None:
        return out
    times = pd.to_datetime(frame[column], errors="coerce", utc=True)
    if not real_times and times.notna().any():
        times = times + (pd.Timestamp(now) - times.max())
    for feature in features:
        if feature == column:
            mask = times.notna()
        elif feature in frame.columns:
            mask = times.notna() & frame[feature].notna()
        else:
            out["features"][feature] = {
                "newest": None,
                "age_hours": None,
                "stale": None,
                "error": "missing column",
            }
            continue
        newest = times[mask].max() if mask.any() else None
        if newest is None or pd.isna(newest):
            out["features"][feature] = {"newest": None, "age_hours": None, "stale": True}
            continue
        age = (pd.Timestamp(now) - newest).total_seconds() / 3600
        out["features"][feature] = {
            "newest": newest.isoformat(),
            "age_hours": round(age, 3),
            "stale": bool(max_age is not None and age > max_age),
        }
    ages = [f["age_hours"] for f in out["features"].values() if f.get("age_hours") is not None]
    out["max_age_hours_observed"] = max(ages) if ages else None
    return out
