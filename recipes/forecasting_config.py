"""The forecasting family's stage settings: what is allowed, checked when a manifest is
validated (``recipes.manifest`` calls ``check``), and read with the same rules when a run
starts (``runs.families.forecasting`` raises the first of ``problems``), so a version that
validated never fails at run time on one of these settings.

Plain Python (no Django import), like ``recipes.tuning``.

    pipeline.stages[type=feature_prep].config:
      frequency: H | D | W | M | Q          # hourly, daily, weekly, monthly or quarterly periods
                                            # (default D; pandas' MS / QS are read as M / Q)
      calendar_features: [dayofweek, month] # of CALENDAR_FEATURES
      lags: [1, 7, 14]                      # positive whole periods, at least one
      rolling_windows: [7, 28]              # positive whole periods
    pipeline.stages[type=training].config:
      algorithm: auto | seasonal_naive | ets | arima | lightgbm | prophet
      candidates: [ets, lightgbm]           # what auto chooses among (non-empty)
      holidays: {country: GB} | {dates: [2024-12-25, ...]}   # Prophet's holiday effects
      prophet: {seasonality_mode: additive, changepoint_prior_scale: 0.05, uncertainty_samples: 200}
      horizon: 28                           # days ahead, at least 1
      season_length: 7                      # periods in a season, at least 1
      interval_level: 0.9                   # between 0 and 1
      stat_level: total | series
    monitoring.freshness.max_age_hours:     # at least one period of the frequency (``check_freshness``,
                                            # a separate check: a monitoring setting never fails a run)
"""

from __future__ import annotations

import importlib.util
import math
from datetime import date
from typing import Any

FREQUENCIES = {"H": "hourly", "D": "daily", "W": "weekly", "M": "monthly", "Q": "quarterly"}
# pandas' spellings a user may know (the Mauna Loa CO2 record reads as "MS"), read as ours.
FREQUENCY_ALIASES = {"MS": "M", "ME": "M", "QS": "Q", "QE": "Q", "W-MON": "W", "1H": "H", "1D": "D"}
ALGORITHMS = ("seasonal_naive", "ets", "arima", "lightgbm", "prophet", "lstm")
# What ``auto`` compares when a manifest lists no candidates (Prophet fits one model per
# series, ~0.3 s each: a recipe that wants it among the candidates names it).
DEFAULT_CANDIDATES = ("seasonal_naive", "ets", "arima", "lightgbm")
# Algorithms whose package is an optional install: (module, how to install it).
OPTIONAL_PACKAGES = {
    "prophet": ("prophet", "pip install prophet (it is in requirements.txt)"),
    "lstm": ("keras", "make install-lstm (Keras 3 on JAX, requirements-lstm.txt)"),
}
# The LSTM's settings (training.lstm): its size, training and reproducibility.
LSTM_DEFAULTS = {
    "lookback": None,  # periods per window; None: min(2 x season_length, 56)
    "units": 32,
    "epochs": 30,
    "patience": 3,
    "batch_size": 256,
    "learning_rate": 0.003,
    "max_windows": 60_000,
    "seed": 42,
}
PROPHET_SEASONALITY_MODES = ("additive", "multiplicative")
CALENDAR_FEATURES = (
    "hour",
    "dayofweek",
    "dayofmonth",
    "dayofyear",
    "weekofyear",
    "month",
    "quarter",
    "year",
)

# Per frequency: the length of a period in days (a horizon is given in days) and the defaults
# the family uses when a manifest leaves a setting out. One table, read by the family at run
# time (runs.families.forecasting) and by the validator below.
PERIOD_DEFAULTS: dict[str, dict[str, Any]] = {
    "H": {
        "periods_per_day": 24,
        "lags": [1, 2, 24, 48, 168],
        "rolling_windows": [24, 168],
        "calendar_features": ["hour", "dayofweek"],
        "season_length": 24,
        "stat_history": 24 * 28,
        "share_window": 24 * 7,
        "max_forecast_periods": 24 * 30,
        "arima_seasonal_order": [0, 1, 1],
    },
    "D": {
        "periods_per_day": 1,
        "lags": [1, 7, 14, 28, 364],
        "rolling_windows": [7, 28],
        "calendar_features": ["dayofweek", "dayofmonth", "dayofyear", "month"],
        "season_length": 7,
        "stat_history": 364,
        "share_window": 56,
        "max_forecast_periods": 400,
        "arima_seasonal_order": [0, 1, 1],
    },
    "W": {
        "days_per_period": 7,
        "lags": [1, 2, 4, 52],
        "rolling_windows": [4, 13],
        "calendar_features": ["weekofyear", "month"],
        "season_length": 52,
        "stat_history": 156,
        "share_window": 13,
        "max_forecast_periods": 60,
        "arima_seasonal_order": [0, 1, 0],
    },
    "M": {
        "days_per_period": 365.25 / 12,
        "lags": [1, 2, 3, 12],
        "rolling_windows": [3, 12],
        "calendar_features": ["month", "quarter"],
        "season_length": 12,
        "stat_history": 120,
        "share_window": 12,
        "max_forecast_periods": 36,
        "arima_seasonal_order": [0, 1, 1],
    },
    "Q": {
        "days_per_period": 365.25 / 4,
        "lags": [1, 2, 4],
        "rolling_windows": [2, 4],
        "calendar_features": ["quarter"],
        "season_length": 4,
        "stat_history": 60,
        "share_window": 4,
        "max_forecast_periods": 20,
        "arima_seasonal_order": [0, 1, 1],
    },
}


# Pandas' period of each frequency (weeks Monday to Sunday, quarters of the calendar year): the
# family's period calendar, and where monitoring's freshness measures a row's period end.
PANDAS_PERIODS = {"H": "h", "D": "D", "W": "W-SUN", "M": "M", "Q": "Q-DEC"}
# The longest period of each frequency in hours (31-day months, 92-day quarters). A forecasting
# batch's row is dated at its period's start and its age is measured from the period's end
# (monitoring.freshness), so an up-to-date batch, whose next period has not ended yet, is up to
# one period old: a freshness limit shorter than that calls it stale.
MAX_PERIOD_HOURS = {"H": 1, "D": 24, "W": 7 * 24, "M": 31 * 24, "Q": 92 * 24}


def frequency(value: Any) -> str | None:
    """The frequency key (H, D, W, M, Q) a manifest's ``frequency`` names, or None if it names
    none; case-insensitive, pandas' aliases accepted."""
    if not isinstance(value, str):
        return None
    key = value.strip().upper()
    key = FREQUENCY_ALIASES.get(key, key)
    return key if key in FREQUENCIES else None


def recipe_frequency(manifest: Any) -> str | None:
    """The frequency key of a manifest's feature_prep stage (D when it names none, None when
    it names an unknown one)."""
    for _, stage in _stages(manifest):
        if stage.get("type") == "feature_prep":  # the first one, as the family reads it
            config = stage.get("config")
            return frequency(config.get("frequency", "D")) if isinstance(config, dict) else "D"
    return "D"


def horizon_periods(horizon_days: int, freq: str) -> int:
    """How many periods of ``freq`` a horizon of ``horizon_days`` days covers (at least 1)."""
    table = PERIOD_DEFAULTS[freq]
    if "periods_per_day" in table:
        return max(1, int(horizon_days) * int(table["periods_per_day"]))
    return max(1, math.ceil(int(horizon_days) / table["days_per_period"] - 1e-9))


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


def check_freshness(manifest: Any) -> list[tuple[Path_, str]]:
    """``monitoring.freshness.max_age_hours`` against the recipe's frequency: at least its
    longest period (``MAX_PERIOD_HOURS``). Checked when a manifest is validated, apart from
    ``check``, which a run also reads: a monitoring limit never fails a training run."""
    freq = recipe_frequency(manifest)
    monitoring = manifest.get("monitoring") if isinstance(manifest, dict) else None
    freshness = monitoring.get("freshness") if isinstance(monitoring, dict) else None
    limit = freshness.get("max_age_hours") if isinstance(freshness, dict) else None
    if freq is None or not _number(limit) or limit >= MAX_PERIOD_HOURS[freq]:
        return []
    hours = MAX_PERIOD_HOURS[freq]
    return [
        (
            ("monitoring", "freshness", "max_age_hours"),
            f"'max_age_hours' must be at least one period of the recipe's {FREQUENCIES[freq]} frequency "
            f"({hours} hours), got {limit:g}: a row's age counts from the end of its period, so an "
            "up-to-date batch is up to one period old",
        )
    ]


def _feature_prep(config: dict, base: Path_) -> list[tuple[Path_, str]]:
    errors = []
    if "frequency" in config:
        freq = config["frequency"]
        if frequency(freq) is None:
            known = ", ".join(f"'{k}' ({v})" for k, v in FREQUENCIES.items())
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
    named = [
        config.get("algorithm"),
        *(config["candidates"] if isinstance(config.get("candidates"), list) else []),
    ]
    chosen = {v for v in named if isinstance(v, str)}
    for algorithm, (module, install) in OPTIONAL_PACKAGES.items():
        if algorithm in chosen and not installed(module):
            key = "algorithm" if config.get("algorithm") == algorithm else "candidates"
            errors.append(
                ((*base, key), f"'{algorithm}' needs the {module} package, which is not installed: {install}")
            )
    if "holidays" in config:
        errors.extend(_holidays(config["holidays"], (*base, "holidays")))
    if "prophet" in config:
        errors.extend(_prophet(config["prophet"], (*base, "prophet")))
    if "lstm" in config:
        errors.extend(_lstm(config["lstm"], (*base, "lstm")))
    return errors


_LSTM_RANGES = {
    "lookback": (2, 1000),
    "units": (1, 512),
    "epochs": (1, 500),
    "patience": (1, 100),
    "batch_size": (1, 65536),
    "max_windows": (100, 10_000_000),
    "seed": (0, 2**31 - 1),
}


def _lstm(value: Any, path: Path_) -> list[tuple[Path_, str]]:
    if not isinstance(value, dict):
        return [(path, "'lstm' must be an object of LSTM settings")]
    errors = []
    for key, v in value.items():
        if key == "learning_rate":
            if not (_number(v) and 0 < v < 1):
                errors.append(((*path, key), "'learning_rate' must be a number between 0 and 1"))
        elif key in _LSTM_RANGES:
            lo, hi = _LSTM_RANGES[key]
            if not (_whole(v) and lo <= v <= hi) and not (key == "lookback" and v is None):
                errors.append(((*path, key), f"'{key}' must be a whole number from {lo} to {hi}"))
        else:
            errors.append(((*path, key), f"unknown LSTM setting; use {', '.join(LSTM_DEFAULTS)}"))
    return errors


def installed(module: str) -> bool:
    """Whether a third-party package can be imported (without importing it)."""
    return importlib.util.find_spec(module) is not None


def _holidays(value: Any, path: Path_) -> list[tuple[Path_, str]]:
    """``{"country": "GB"}`` (a country the holidays package knows) or ``{"dates": [ISO dates]}``
    (or both)."""
    if not isinstance(value, dict) or not value or set(value) - {"country", "dates"}:
        return [
            (path, "'holidays' must be an object with 'country' (e.g. \"GB\") and/or 'dates' (ISO dates)")
        ]
    errors = []
    if "country" in value:
        country = value["country"]
        known = _countries()
        if not isinstance(country, str) or (known is not None and country.upper() not in known):
            errors.append(
                ((*path, "country"), f"unknown country code {country!r}: use an ISO code such as GB, US, DE")
            )
    if "dates" in value:
        dates = value["dates"]
        bad = [d for d in dates if not _iso_date(d)] if isinstance(dates, list) else None
        if not dates or bad is None or bad:
            errors.append(((*path, "dates"), "'dates' must be a non-empty list of ISO dates (YYYY-MM-DD)"))
    return errors


def _countries() -> set[str] | None:
    if not installed("holidays"):
        return None
    import holidays  # an optional package, imported only to validate a country code

    return {c.upper() for c in holidays.list_supported_countries()}


def _iso_date(value: Any) -> bool:
    try:
        date.fromisoformat(value)
    except (TypeError, ValueError):
        return False
    return True


def _prophet(value: Any, path: Path_) -> list[tuple[Path_, str]]:
    if not isinstance(value, dict):
        return [(path, "'prophet' must be an object of Prophet settings")]
    errors = []
    unknown = sorted(set(value) - {"seasonality_mode", "changepoint_prior_scale", "uncertainty_samples"})
    if unknown:
        errors.append(
            (
                (*path, unknown[0]),
                "unknown Prophet setting; use seasonality_mode, changepoint_prior_scale, uncertainty_samples",
            )
        )
    if "seasonality_mode" in value and value["seasonality_mode"] not in PROPHET_SEASONALITY_MODES:
        errors.append(((*path, "seasonality_mode"), "'seasonality_mode' must be additive or multiplicative"))
    if "changepoint_prior_scale" in value and not (
        _number(value["changepoint_prior_scale"]) and value["changepoint_prior_scale"] > 0
    ):
        errors.append(
            ((*path, "changepoint_prior_scale"), "'changepoint_prior_scale' must be a number above 0")
        )
    if "uncertainty_samples" in value and not (
        _whole(value["uncertainty_samples"]) and 10 <= value["uncertainty_samples"] <= 5000
    ):
        errors.append(
            ((*path, "uncertainty_samples"), "'uncertainty_samples' must be a whole number from 10 to 5000")
        )
    return errors
