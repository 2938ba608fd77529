"""Datasets and the `quality` stage: reading files, describing columns, checking a frame
against a manifest's `requirements` and the quality stage's config. Plain pandas, no Django."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from recipes.manifest import grain_columns, parse_min_history

from .families import FAMILY_MODULES, get_family, stage_config

HISTORY_UNIT_DAYS = {"day": 1, "week": 7, "month": 30.4375, "year": 365.25}


def read_table(path: Path, fmt: str) -> pd.DataFrame:
    """Read a CSV or Parquet file; ValueError with a readable message if it is not one."""
    try:
        if fmt == "parquet":
            frame = pd.read_parquet(path)
        else:
            frame = pd.read_csv(path, low_memory=False)
    except Exception as exc:  # pandas/pyarrow raise many types for a corrupt file
        raise ValueError(f"could not read the file as {fmt.upper()}: {str(exc)[:300]}") from None
    if frame.shape[1] == 0:
        raise ValueError("the file has no columns")
    return frame


def dtype_name(series: pd.Series) -> str:
    if pd.api.types.is_bool_dtype(series):
        return "bool"
    if pd.api.types.is_integer_dtype(series):
        return "int"
    if pd.api.types.is_float_dtype(series):
        return "float"
    if pd.api.types.is_datetime64_any_dtype(series):
        return "datetime"
    return "string"


def describe_columns(frame: pd.DataFrame) -> list[dict]:
    return [
        {
            "name": str(col),
            "dtype": dtype_name(frame[col]),
            "null_ratio": round(float(frame[col].isna().mean()), 6),
        }
        for col in frame.columns
    ]


def required_columns(manifest: dict, family: str) -> dict[str, list[str]]:
    """Column -> why it is required: feature sets (resolved through the family's catalog;
    an unknown name is a column of that name), grain and labels."""
    reasons: dict[str, list[str]] = {}
    requirements = (manifest or {}).get("requirements") or {}
    sets = {}
    if family in FAMILY_MODULES:
        sets = getattr(get_family(family), "FEATURE_SETS", {})
    for name in (requirements.get("feature_sets") or {}).get("required") or []:
        for column in sets.get(name, [name]):
            reasons.setdefault(column, []).append(f"feature set '{name}'")
    for column in grain_columns(manifest or {}):
        reasons.setdefault(column, []).append("grain")
    for column in requirements.get("labels") or []:
        reasons.setdefault(column, []).append("label")
    return reasons


def requirement_errors(columns: list[dict], manifest: dict, family: str) -> list[str]:
    """Missing required columns, each message naming the column and why it is needed."""
    present = {c["name"] for c in columns}
    return [
        f"column '{column}' is missing (required by {', '.join(why)})"
        for column, why in required_columns(manifest, family).items()
        if column not in present
    ]


def time_column(frame: pd.DataFrame, family: str) -> str | None:
    if family in FAMILY_MODULES:
        for col in getattr(get_family(family), "SCHEMA", []):
            if col.get("role") == "time" and col["name"] in frame.columns:
                return col["name"]
    return None


def quality_errors(frame: pd.DataFrame, manifest: dict, family: str | None = None) -> list[str]:
    """The quality stage's checks: null ratios, duplicates on the grain, value ranges and
    min_history. Every message names the column."""
    config = stage_config(manifest or {}, "quality")
    errors: list[str] = []
    max_null = config.get("max_null_ratio")
    required = required_columns(manifest, family) if family else {}
    if max_null is not None:
        checked = [c for c in (required or frame.columns) if c in frame.columns]
        for column in checked:
            ratio = float(frame[column].isna().mean())
            if ratio > max_null:
                errors.append(f"column '{column}' has {ratio:.1%} nulls (max {max_null:.1%})")
    grain = [c for c in grain_columns(manifest or {}) if c in frame.columns]
    if grain and config.get("unique_grain", True):
        duplicates = int(frame.duplicated(subset=grain).sum())
        if duplicates:
            errors.append(f"{duplicates} duplicate rows on the grain ({', '.join(grain)})")
    for column, bounds in (config.get("ranges") or {}).items():
        if column not in frame.columns:
            continue
        values = pd.to_numeric(frame[column], errors="coerce")
        if "min" in bounds and (values < bounds["min"]).any():
            errors.append(
                f"column '{column}' has {(values < bounds['min']).sum()} values below {bounds['min']}"
            )
        if "max" in bounds and (values > bounds["max"]).any():
            errors.append(
                f"column '{column}' has {(values > bounds['max']).sum()} values above {bounds['max']}"
            )
    history = parse_min_history(((manifest or {}).get("requirements") or {}).get("min_history"))
    if history and family:
        amount, unit = history
        unit = unit.rstrip("s")
        if unit in ("row", "observation"):
            if len(frame) < amount:
                errors.append(f"the data has {len(frame)} rows; min_history needs {amount}")
        else:
            column = time_column(frame, family)
            if column is not None:
                times = pd.to_datetime(frame[column], errors="coerce", utc=True).dropna()
                span_days = (times.max() - times.min()).total_seconds() / 86400 if len(times) else 0
                needed = amount * HISTORY_UNIT_DAYS.get(unit, 1)
                if span_days + 1 < needed:
                    errors.append(
                        f"column '{column}' spans {span_days:.0f} days; min_history needs {amount} {unit}(s)"
                    )
    return errors
