"""Alert rules against monitoring snapshots: what a snapshot's names are worth, and which of a
manifest's alerts fire.

Plain Python, no Django import. The condition language itself (grammar, meaning, the names
a manifest may use) is the manifest's: ``recipes.alert_rules``. This module maps one
monitoring snapshot onto those names (:func:`snapshot_context`) and evaluates a manifest's
``monitoring.alerts`` against it (:func:`evaluate_alerts`); the names are listed in
recipes/alert_rules.py.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from recipes.alert_rules import ConditionError, parse_condition

__all__ = [
    "evaluate_alerts",
    "parse_time",
    "snapshot_context",
]


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


# ---------------------------------------------------------------------------- snapshots


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def parse_time(value: Any) -> datetime | None:
    """A datetime or ISO string -> an aware datetime (naive means UTC); None if unparseable."""
    if isinstance(value, datetime):
        dt = value
    elif isinstance(value, str):
        try:
            dt = datetime.fromisoformat(value.strip())
        except ValueError:
            return None
    else:
        return None
    return dt if dt.tzinfo else dt.replace(tzinfo=UTC)


def _age_hours(newest: Any, now: datetime | None) -> float | None:
    if now is None:
        return None
    dt = parse_time(newest)
    if dt is None:
        return None
    now = now if now.tzinfo else now.replace(tzinfo=UTC)
    return (now - dt).total_seconds() / 3600.0


def snapshot_context(
    performance: Mapping[str, Any] | None,
    drift: Mapping[str, Any] | None,
    freshness: Mapping[str, Any] | None,
    *,
    now: datetime | None = None,
) -> dict[str, float | bool]:
    """The name -> value mapping of one monitoring snapshot, for :meth:`Condition.evaluate`.

    * ``performance``: ``{"MAPE": 0.14, ...}`` (a ``{"value": x}`` object is accepted too);
    * ``drift``: the ``monitoring.drift.drift_report`` shape, or the spec's short form
      ``{"PSI": 0.08}`` / ``{"KS": 0.03}`` (-> ``drift.max_psi`` / ``drift.max_ks``); its
      ``"explain"`` entry (attribution drift, ``monitoring.attribution.drift_entry``:
      ``{"rank_change": 0.4, "features": {"price": {"share": 0.3, ...}}}``) gives
      ``explain.rank_change`` and ``explain.<feature>.share``;
    * ``freshness``: ``{"max_age_hours": 48, "features": {"sales": {"newest": iso,
      "age_hours": 3.2, "stale": false}}}`` (``max_age_hours`` there is the limit;
      ``freshness.max_age_hours`` in the context is the age of the oldest feature). With
      ``now``, missing ages are computed from ``newest`` (or the spec's
      ``{"last_update": iso}``) and missing ``stale`` flags from the limit.

    Values that are missing, ``None`` or not finite are left out (so they are unknown).
    """
    ctx: dict[str, float | bool] = {}
    for name, value in _mapping(performance).items():
        if isinstance(value, Mapping):
            value = value.get("value")
        if isinstance(value, bool):
            ctx[str(name)] = value
        elif (num := _num(value)) is not None:
            ctx[str(name)] = num

    drift = _mapping(drift)
    entries = dict(_mapping(drift.get("features")))
    if "prediction" in drift:
        entries["prediction"] = drift["prediction"]
    for feature, entry in entries.items():
        entry = _mapping(entry)
        for stat in ("psi", "ks", "p_value"):
            if (num := _num(entry.get(stat))) is not None:
                ctx[f"drift.{feature}.{stat}"] = num
        if isinstance(entry.get("drifted"), bool):
            ctx[f"drift.{feature}.drifted"] = entry["drifted"]
    features_only = [_mapping(e) for f, e in entries.items() if f != "prediction"]
    for key, stat, short in (("max_psi", "psi", "PSI"), ("max_ks", "ks", "KS")):
        value = _num(drift.get(key))
        if value is None:
            value = _num(drift.get(short)) if short in drift else _num(drift.get(short.lower()))
        if value is None:
            found = [v for e in features_only if (v := _num(e.get(stat))) is not None]
            value = max(found) if found else None
        if value is not None:
            ctx[f"drift.{key}"] = value
    count = _num(drift.get("drifted_count"))
    if count is None and features_only:
        count = float(sum(1 for e in features_only if e.get("drifted") is True))
    if count is not None:
        ctx["drift.drifted_count"] = count
    explain = _mapping(drift.get("explain"))
    if (num := _num(explain.get("rank_change"))) is not None:
        ctx["explain.rank_change"] = num
    for feature, entry in _mapping(explain.get("features")).items():
        if (num := _num(_mapping(entry).get("share"))) is not None:
            ctx[f"explain.{feature}.share"] = num

    freshness = _mapping(freshness)
    limit = _num(freshness.get("max_age_hours"))
    ages = []
    for feature, entry in _mapping(freshness.get("features")).items():
        entry = _mapping(entry)
        age = _num(entry.get("age_hours"))
        if age is None:
            age = _age_hours(entry.get("newest"), now)
        if age is not None:
            ctx[f"freshness.{feature}.age_hours"] = age
            ages.append(age)
        stale = entry.get("stale")
        if not isinstance(stale, bool) and age is not None and limit is not None:
            stale = age > limit
        if isinstance(stale, bool):
            ctx[f"freshness.{feature}.stale"] = stale
    if not ages and "last_update" in freshness:
        age = _age_hours(freshness.get("last_update"), now)
        if age is not None:
            ages.append(age)
    if ages:
        ctx["freshness.max_age_hours"] = max(ages)
    return ctx


def _json_value(value: Any) -> float | bool | None:
    if isinstance(value, bool):
        return value
    return _num(value)


def evaluate_alerts(alerts: Any, context: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """Evaluate a manifest's ``monitoring.alerts`` against a snapshot context.

    Returns ``{name: {"firing": true|false|null, "severity": ..., "condition": text,
    "values": {name: value or null}}}``; ``firing`` is null when unknown. An alert whose
    condition is invalid (or misuses a value's type) gets ``"firing": null`` and an
    ``"error"`` message instead of raising.
    """
    out: dict[str, dict[str, Any]] = {}
    for name, cfg in _mapping(alerts).items():
        cfg = _mapping(cfg)
        text = cfg.get("condition")
        entry: dict[str, Any] = {
            "firing": None,
            "severity": cfg.get("severity"),
            "condition": text,
            "values": {},
        }
        try:
            condition = parse_condition(text)
            entry["values"] = {n: _json_value(context.get(n)) for n in sorted(condition.names)}
            entry["firing"] = condition.evaluate(context)
        except ConditionError as exc:
            entry["error"] = str(exc)
        out[str(name)] = entry
    return out
