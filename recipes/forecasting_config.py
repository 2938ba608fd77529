"""The forecasting family's stage settings: what is allowed, checked when a manifest is
validated (``recipes.manifest`` calls ``check``), and read with the same rules when a run
starts (``runs.families.forecasting`` raises the first of ``problems``), so a version that
validated never fails at run time on one of these settings.

Plain Python (no Django import), like ``recipes.tuning``.

    pipeline.stages[type=feature_prep].config:
      frequency: D | W                      # daily or weekly periods (default D)
      calendar_features: [dayofweek, month] # of CALENDAR_FEATURES
      lags: [1, 7, 14]                      # positive whole periods, at least one
      rolling_windows: [7, 28]              # positive whole periods
    pipeline.stages[type=training].config:
      algorithm: auto | seasonal_naive | ets | arima | lightgbm
      candidates: [ets, lightgbm]           # what auto chooses among (non-empty)
      horizon: 28                           # days ahead, at least 1
      season_length: 7                      # periods in a season, at least 1
      interval_level: 0.9                   # between 0 and 1
      stat_level: total | series
"""

from __future__ import annotations

import math
from typing import Any

FREQUENCIES = {"D": "daily", "W": "weekly"}
ALGORITHMS = ("seasonal_naive", "ets", "arima", "lightgbm")
CALENDAR_FEATURES = ("dayofweek", "dayofmonth", "dayofyear", "weekofyear", "month", "quarter", "year")
STAT_LEVELS = ("total", "series")

Path_ = tuple[str | int, ...]


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _stages(manifest: Any) -> list[tuple[int, dict]]:
    pipeline = manifest.get("pipeline") if isinstance(manifest, dict) else None
    stages = pipeline.get("stages") if isinstance(pipeline, dict) else None
    return [(i, s) for i, s in enumerate(stages if isinstance(stages, list) else []) if isinstance(s, dict)]


def check(manifest: Any) -> list[tuple[Path_, str]]:
    """Every problem of the forecasting settings above: [(path, message)]."""
    errors: list[tuple[Path_, str]] = []
    for index, stage in _stages(manifest):
        config = stage.get("config")
        if not isinstance(config, dict):
            continue
        base: Path_ = ("pipeline", "stages", index, "config")
        if stage.get("type") == "feature_prep":
            errors.extend(_feature_prep(config, base))
        elif stage.get("type") == "training":
            errors.extend(_training(config, base))
    return errors


def _feature_prep(config: dict, base: Path_) -> list[tuple[Path_, str]]:
    errors = []
    if "frequency" in config:
        freq = config["frequency"]
        if not isinstance(freq, str) or freq.upper() not in FREQUENCIES:
            known = " or ".join(f"'{k}' ({v})" for k, v in FREQUENCIES.items())
            errors.append(((*base, "frequency"), f"'frequency' must be {known}, got {freq!r}"))
    if "calendar_features" in config:
        names = config["calendar_features"]
        bad = [n for n in names if n not in CALENDAR_FEATURES] if isinstance(names, list) else None
        if bad is None or bad:
            errors.append(
                (
                    (*base, "calendar_features"),
                    f"'calendar_features' must be a list of {', '.join(CALENDAR_FEATURES)}"
                    + (f"; unknown: {', '.join(map(str, bad))}" if bad else ""),
                )
            )
    for key, at_least_one in (("lags", True), ("rolling_windows", False)):
        if key in config:
            values = config[key]
            ok = isinstance(values, list) and all(_whole(v) and v >= 1 for v in values)
            if not ok or (at_least_one and not values):
                need = "a non-empty list" if at_least_one else "a list"
                errors.append(
                    ((*base, key), f"'{key}' must be {need} of whole numbers of periods, at least 1")
                )
    return errors


def _training(config: dict, base: Path_) -> list[tuple[Path_, str]]:
    errors = []
    if "algorithm" in config and config["algorithm"] not in (*ALGORITHMS, "auto"):
        errors.append(
            (
                (*base, "algorithm"),
                f"'algorithm' must be auto or one of {', '.join(ALGORITHMS)}, got {config['algorithm']!r}",
            )
        )
    if "candidates" in config:
        values = config["candidates"]
        if not isinstance(values, list) or not values or any(v not in ALGORITHMS for v in values):
            errors.append(
                ((*base, "candidates"), f"'candidates' must be a non-empty list of {', '.join(ALGORITHMS)}")
            )
    for key, what in (("horizon", "days ahead"), ("season_length", "periods in a season")):
        if key in config and not (_whole(config[key]) and config[key] >= 1):
            errors.append(((*base, key), f"'{key}' must be a whole number of {what}, at least 1"))
    if "interval_level" in config and not (
        _number(config["interval_level"]) and 0 < config["interval_level"] < 1
    ):
        errors.append(
            ((*base, "interval_level"), "'interval_level' must be a number between 0 and 1, e.g. 0.9")
        )
    if "stat_level" in config and config["stat_level"] not in STAT_LEVELS:
        errors.append(((*base, "stat_level"), f"'stat_level' must be {' or '.join(STAT_LEVELS)}"))
    return errors
