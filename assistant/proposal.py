"""Slots -> a proposed manifest, always valid.

``build(base_manifest, family=..., level=..., name=..., description=..., slots=...)`` starts
from the starting recipe's manifest and applies the slots one group at a time (frequency,
horizon, metric targets, schedule, drift, ...). After each group the manifest is checked with
``recipes.manifest.validate_manifest``; a group that would make it invalid is not applied and
its errors are explained in plain words, so the result is always a manifest the validator
accepts. ``missing_questions`` lists the follow-up questions still open for a family.
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from recipes import catalog, forecasting_config
from recipes.lineage import diff as manifest_diff
from recipes.manifest import rewrite_metadata, validate_manifest

from .nlu.schedule import describe_cron

PROPOSAL_ID = "recipe_proposed_draft"  # replaced by the real id when the draft is created
THRESHOLD_FIELDS = ("target", "threshold_warning", "threshold_critical")
FIELD_WORDS = {
    "target": "target",
    "threshold_warning": "warning threshold",
    "threshold_critical": "critical threshold",
}

# Settings that follow the frequency (recipes.forecasting_config.PERIOD_DEFAULTS, the family's
# defaults per frequency): when the frequency changes, a setting still at the old frequency's
# default takes the new one's.
FREQUENCY_SETTINGS = {
    "feature_prep": ("lags", "rolling_windows", "calendar_features"),
    "training": ("season_length", "stat_history", "share_window", "max_forecast_periods"),
}

REQUIRED = {
    "forecasting": ["frequency", "horizon_days", "target"],
    "pricing": ["objective", "price_bounds"],
    "next_best_action": ["deployment_mode", "k"],
    "location_scoring": ["k"],
}
QUESTIONS = {
    "context": "Which industry is this for (for example grocery, telco or retail banking), and is it for a specific client?",
    "industry": "Which industry is {client} in (for example grocery, telco or retail banking)? A client recipe sits under an industry recipe.",
    "client": "Which client is it for?",
    "frequency": "Should the forecast be daily or weekly (or hourly, monthly, quarterly)?",
    "horizon_days": "How far ahead should it forecast (for example '8 weeks ahead')?",
    "target": "What accuracy do you need (for example 'MAPE under 12%')?",
    "objective": "Should the recommended prices maximise revenue or margin?",
    "price_bounds": "How far may a recommended price move from the current price (for example 'within ±10%')?",
    "deployment_mode": "Should recommendations be served in real time (an API call per customer) or scored in batch?",
    "k": {
        "next_best_action": "What share of customers will receive the offer (for example 'the top 10%')?",
        "location_scoring": "What share of candidate sites do you shortlist (for example 'the top 20%')?",
    },
}


# How the open questions are named when "create it" leaves them at the starting values.
OPEN_LABELS = {
    "context": "the industry or client",
    "industry": "the client's industry",
    "client": "the client",
    "frequency": "the frequency",
    "horizon_days": "the forecast horizon",
    "target": "the accuracy target",
    "objective": "the price objective",
    "price_bounds": "the price bounds",
    "deployment_mode": "the deployment mode",
    "k": "the targeted share k",
}


@dataclass
class Result:
    manifest: dict
    # (slot key, metric or None, "forecast horizon: 56 days (8 weeks)")
    applied: list[tuple[str, str | None, str]] = field(default_factory=list)
    rejected: list[str] = field(default_factory=list)  # plain-words explanations
    rejected_slots: list[tuple[str, str | None]] = field(default_factory=list)  # (slot, metric or None)
    errors: list[dict] = field(default_factory=list)  # of the final manifest: [] = valid

    @property
    def valid(self) -> bool:
        return not self.errors


# --------------------------------------------------------------------------- manifest helpers


def stage(manifest: dict, stage_type: str) -> dict | None:
    """The first pipeline stage of a type (its dict, mutable), or None."""
    stages = (manifest.get("pipeline") or {}).get("stages") or []
    for st in stages:
        if isinstance(st, dict) and st.get("type") == stage_type:
            return st
    return None


def stage_config(manifest: dict, stage_type: str, *, create: bool = True) -> dict | None:
    st = stage(manifest, stage_type)
    if st is None:
        return None
    if not isinstance(st.get("config"), dict):
        if not create:
            return None
        st["config"] = {}
    return st["config"]


def _num_text(v: float) -> str:
    return f"{v:g}"


def _pct(v: float) -> str:
    return f"{v * 100:g}%"


def _days_text(days: int) -> str:
    if days % 7 == 0:
        weeks = days // 7
        return f"{days} days ({weeks} week{'s' if weeks != 1 else ''})"
    return f"{days} day{'s' if days != 1 else ''}"


def plain_errors(errors: list[dict], limit: int = 3) -> str:
    """Validator errors in plain words: 'metric MAPE: the target (0.12) must be at most the
    warning threshold (0.05), because lower is better'."""
    lines = []
    for e in errors[:limit]:
        msg = e["message"]
        m = re.match(
            r"metric '([^']+)': '(\w+)' \(([^)]+)\) must be (<=|>=) '(\w+)' \(([^)]+)\) because (.+)$", msg
        )
        if m:
            name, a, av, op, b, bv, why = m.groups()
            word = "at most" if op == "<=" else "at least"
            msg = f"for {name}, the {FIELD_WORDS.get(a, a)} ({av}) must be {word} the {FIELD_WORDS.get(b, b)} ({bv}), because {why}"
        where = e["path"].lstrip("/").replace("/", " > ") or "the manifest"
        lines.append(f"{msg} (at {where})")
    more = len(errors) - limit
    text = "; ".join(lines)
    if more > 0:
        text += f"; and {more} more problem{'s' if more != 1 else ''}"
    return text


def _set_path(manifest: dict, path: list[str], value: Any) -> None:
    """Set a dotted path; 'pipeline.<stage name or type>.<key>' reaches into that stage's config."""
    if path and path[0] == "pipeline" and len(path) >= 3 and path[1] != "stages":
        stages = (manifest.get("pipeline") or {}).get("stages") or []
        target = next((s for s in stages if isinstance(s, dict) and s.get("name") == path[1]), None) or next(
            (s for s in stages if isinstance(s, dict) and s.get("type") == path[1]), None
        )
        if target is None:
            raise KeyError(f"there is no pipeline stage named or typed '{path[1]}'")
        node = target.setdefault("config", {})
        rest = path[2:]
        if rest and rest[0] == "config":
            rest = rest[1:]
        path, manifest = rest, node
        if not path:
            raise KeyError("name a config key of the stage")
    node = manifest
    for key in path[:-1]:
        if not isinstance(node.get(key), dict):
            node[key] = {}
        node = node[key]
    node[path[-1]] = value


def _deep_merge(into: dict, patch: dict) -> None:
    for k, v in patch.items():
        if isinstance(v, dict) and isinstance(into.get(k), dict) and k != "metadata":
            _deep_merge(into[k], v)
        else:
            into[k] = copy.deepcopy(v)


# --------------------------------------------------------------------------- slot groups


def _frequency(m: dict, slots: dict, family: str) -> str | None:
    freq = slots["frequency"]
    cfg = stage_config(m, "feature_prep")
    if cfg is None:
        return None
    old = forecasting_config.frequency(cfg.get("frequency", "D"))
    cfg["frequency"] = freq
    if old is not None and old != freq:
        src, dst = forecasting_config.PERIOD_DEFAULTS[old], forecasting_config.PERIOD_DEFAULTS[freq]
        for stage_type, keys in FREQUENCY_SETTINGS.items():
            scfg = stage_config(m, stage_type)
            if scfg is None:
                continue
            for key in keys:
                if scfg.get(key) == src[key]:
                    scfg[key] = copy.deepcopy(dst[key])
        tcfg = stage_config(m, "training")
        arima = tcfg.get("arima") if tcfg else None
        if isinstance(arima, dict) and arima.get("seasonal_order") == src["arima_seasonal_order"]:
            arima["seasonal_order"] = copy.deepcopy(dst["arima_seasonal_order"])
        # A freshness limit shorter than the new period would call every current batch stale
        # (forecasting_config.check_freshness): scale it by the periods' ratio (48 h for daily
        # data, two days, becomes two weeks for weekly data).
        freshness = (m.get("monitoring") or {}).get("freshness")
        limit = freshness.get("max_age_hours") if isinstance(freshness, dict) else None
        need = forecasting_config.MAX_PERIOD_HOURS[freq]
        if isinstance(limit, (int, float)) and not isinstance(limit, bool) and limit < need:
            freshness["max_age_hours"] = math.ceil(limit * need / forecasting_config.MAX_PERIOD_HOURS[old])
    spec = (m.get("deployment") or {}).get("endpoint_spec")
    if isinstance(spec, dict) and "frequency" in spec:
        spec["frequency"] = freq
    line = f"frequency: {forecasting_config.FREQUENCIES[freq]}"
    fresh = (m.get("monitoring") or {}).get("freshness")
    period = forecasting_config.MAX_PERIOD_HOURS[freq]
    limit = fresh.get("max_age_hours") if isinstance(fresh, dict) else None
    if isinstance(limit, (int, float)) and limit < period:
        # A batch is up to one period old (forecasting_config.check_freshness): the freshness
        # limit follows a longer period; one the user states is applied (and checked) after.
        fresh["max_age_hours"] = period
        line += f" (data freshness limit raised to one period, {period} hours)"
    return line


def _horizon(m: dict, slots: dict, family: str) -> str | None:
    days = int(slots["horizon_days"])
    cfg = stage_config(m, "training")
    if cfg is None:
        return None
    cfg["horizon"] = days
    spec = (m.get("deployment") or {}).get("endpoint_spec")
    if isinstance(spec, dict) and "horizon_days" in spec:
        spec["horizon_days"] = days
    return f"forecast horizon: {_days_text(days)}"


TIME_COLUMNS = ("date", "week", "month", "day", "timestamp", "period", "time")


def _grain(m: dict, slots: dict, family: str) -> str | None:
    """Entity columns from the slots plus the starting grain's time columns; unchanged when
    that is what the starting recipe already has ("for each customer" in an NBA brief)."""
    req = m.setdefault("requirements", {})
    old = req.get("grain")
    old_cols = [c.strip() for c in old.split(",")] if isinstance(old, str) else list(old or [])
    time_cols = [c for c in old_cols if c in TIME_COLUMNS]
    tcfg = stage_config(m, "feature_prep", create=False) or {}
    if (
        isinstance(tcfg.get("time_column"), str)
        and tcfg["time_column"] in old_cols
        and tcfg["time_column"] not in time_cols
    ):
        time_cols.append(tcfg["time_column"])
    grain = [c for c in slots["grain"] if c not in time_cols] + time_cols
    if grain == old_cols:
        return None
    req["grain"] = grain
    return f"grain: {', '.join(grain)}"


def _labels(m: dict, slots: dict, family: str) -> str:
    m.setdefault("requirements", {})["labels"] = list(slots["labels"])
    return f"labels: {', '.join(slots['labels'])}"


def _min_history(m: dict, slots: dict, family: str) -> str:
    m.setdefault("requirements", {})["min_history"] = slots["min_history"]
    return f"minimum history: {slots['min_history']}"


def _rewrite_alerts(m: dict, name: str, old: float | None, new: float | None) -> None:
    """Alert conditions written as '<metric> <op> <old threshold>' follow the threshold."""
    if old is None or new is None or old == new:
        return
    alerts = (m.get("monitoring") or {}).get("alerts") or {}
    pattern = re.compile(rf"^\s*{re.escape(name)}\s*(<=|>=|<|>)\s*(-?\d+(?:\.\d+)?)\s*$")
    for alert in alerts.values():
        if not isinstance(alert, dict) or not isinstance(alert.get("condition"), str):
            continue
        cm = pattern.match(alert["condition"])
        if cm and float(cm.group(2)) == float(old):
            alert["condition"] = f"{name} {cm.group(1)} {_num_text(new)}"


def _metric_applier(name: str, fields: dict[str, float]) -> Callable[[dict, dict, str], str]:
    def apply(m: dict, slots: dict, family: str) -> str | None:
        if not any(f in THRESHOLD_FIELDS for f in fields):
            return None  # named without a number: said back (reply.said_back), nothing changes
        direction = catalog.metric_direction(family, name)
        metrics = m.setdefault("evaluation", {}).setdefault("metrics", {})
        block = metrics.get(name) if isinstance(metrics.get(name), dict) else {}
        old = {f: block.get(f) for f in THRESHOLD_FIELDS}
        new = dict(block)
        new.update({f: v for f, v in fields.items() if f in THRESHOLD_FIELDS})
        if direction:
            _make_consistent(new, old, direction, explicit=set(fields))
        metrics[name] = new
        _rewrite_alerts(m, name, old.get("threshold_critical"), new.get("threshold_critical"))
        _rewrite_alerts(m, name, old.get("threshold_warning"), new.get("threshold_warning"))
        parts = []
        for f in THRESHOLD_FIELDS:
            if f in new and (f in fields or new.get(f) != old.get(f)):
                value = new[f]
                shown = _pct(value) if name in _PERCENT_METRICS else _num_text(value)
                moved = "" if f in fields else " (moved to stay consistent)"
                parts.append(f"{FIELD_WORDS[f]} {shown}{moved}")
        return f"{name}: " + ", ".join(parts)

    return apply


_PERCENT_METRICS = {
    "MAPE",
    "WAPE",
    "coverage",
    "revenue_lift",
    "margin_impact",
    "demand_mape",
    "hit_rate@k",
    "precision@k",
}


def _make_consistent(new: dict, old: dict, direction: str, *, explicit: set[str]) -> None:
    """Move the thresholds the user did not set so that target, warning and critical stay in
    order for the metric's direction (lower is better: target <= warning <= critical)."""
    lower = direction == catalog.LOWER

    def ok(a: float, b: float) -> bool:  # a is at least as good as b
        return a <= b if lower else a >= b

    def gap(a_field: str, b_field: str) -> float:
        a, b = old.get(a_field), old.get(b_field)
        if isinstance(a, (int, float)) and isinstance(b, (int, float)) and a != b:
            return abs(b - a)
        base = new.get(a_field) or new.get(b_field) or 1.0
        return abs(base) * 0.25 or 0.01

    sign = 1 if lower else -1
    order = list(THRESHOLD_FIELDS)
    # Walk outward from what the user set: later fields follow earlier ones, earlier follow later.
    for i in range(len(order) - 1):
        a, b = order[i], order[i + 1]
        if a in new and b in new and not ok(new[a], new[b]) and b not in explicit:
            new[b] = round(new[a] + sign * gap(a, b), 6)
    for i in range(len(order) - 1, 0, -1):
        a, b = order[i - 1], order[i]
        if a in new and b in new and not ok(new[a], new[b]) and a not in explicit:
            new[a] = round(new[b] - sign * gap(a, b), 6)
    if "target" in new and "threshold_critical" in new and "threshold_warning" not in new:
        if not ok(new["target"], new["threshold_critical"]) and "threshold_critical" not in explicit:
            new["threshold_critical"] = round(new["target"] + sign * gap("target", "threshold_critical"), 6)


def _deployment_mode(m: dict, slots: dict, family: str) -> str:
    m.setdefault("deployment", {})["mode"] = slots["deployment_mode"]
    return f"deployment: {'real time (API)' if slots['deployment_mode'] == 'realtime' else 'batch'}"


def _schedule(m: dict, slots: dict, family: str) -> str:
    dep = m.setdefault("deployment", {})
    dep.setdefault("mode", "batch")
    dep["schedule"] = slots["schedule"]
    return f"schedule: {slots['schedule']} ({describe_cron(slots['schedule'])})"


def _retrain_schedule(m: dict, slots: dict, family: str) -> str:
    """A retraining schedule goes to the retraining policy (recipes.retraining), not to the
    deployment's scoring schedule."""
    section = m.get("retraining") if isinstance(m.get("retraining"), dict) else None
    if section is None:
        section = m["retraining"] = {}
    triggers = section.get("triggers") if isinstance(section.get("triggers"), dict) else None
    if triggers is None:
        triggers = section["triggers"] = {}
    triggers["schedule"] = slots["retrain_schedule"]
    return f"retraining: {slots['retrain_schedule']} ({describe_cron(slots['retrain_schedule'])})"


# A named input -> the optional columns the forecasting family reads as known future inputs
# (feature_prep.known_features: used when the uploaded data has them, ignored otherwise).
FEATURE_COLUMNS = {
    "holidays": ["holiday_flag"],
    "school_holidays": ["school_holiday_flag"],
    "weather": ["temperature", "precipitation"],
    "temperature": ["temperature"],
    "rainfall": ["precipitation"],
    "humidity": ["humidity"],
    "solar": ["solar_generation"],
    "storms": ["storm_warning"],
    "paydays": ["payday_flag"],
    "promotions": ["promo"],
    "price": ["price"],
    "price_cuts": ["price"],
    "marketing_spend": ["marketing_spend"],
    "events": ["event_flag"],
    "flu_season": ["flu_index"],
    "elective_schedule": ["elective_admissions"],
    "stockouts": ["stockout_flag"],
}


def feature_columns(features: list[str]) -> list[str]:
    return list(dict.fromkeys(c for f in features for c in FEATURE_COLUMNS.get(f, [])))


def _features(m: dict, slots: dict, family: str) -> str | None:
    cfg = stage_config(m, "feature_prep")
    if cfg is None:
        return None
    known = list(cfg.get("known_features") or [])
    added = [c for c in feature_columns(slots["features"]) if c not in known]
    if not added:
        return None
    cfg["known_features"] = known + added
    return "optional input columns: " + ", ".join(added) + " (used when your data has them)"


_DRIFT_ALERT_RE = re.compile(r"^\s*drift\.max_(psi|ks)\s*(>=|>)\s*(\d+(?:\.\d+)?)\s*$")


def _drift(m: dict, slots: dict, family: str) -> str:
    mon = m.setdefault("monitoring", {})
    drift = mon.get("drift") if isinstance(mon.get("drift"), dict) else None
    method = slots.get("drift_method") or (drift or {}).get("method") or "PSI"
    default_threshold = 0.2 if method == "PSI" else 0.1
    threshold = slots.get("drift_threshold")
    if threshold is None:
        threshold = (drift or {}).get("threshold", default_threshold)
    if drift is None:
        drift = mon["drift"] = {}
    old_threshold = drift.get("threshold")
    drift["method"] = method
    drift["threshold"] = threshold
    for alert in (mon.get("alerts") or {}).values():
        if isinstance(alert, dict) and isinstance(alert.get("condition"), str):
            am = _DRIFT_ALERT_RE.match(alert["condition"])
            if am and (old_threshold is None or float(am.group(3)) == float(old_threshold)):
                alert["condition"] = f"drift.max_{method.lower()} {am.group(2)} {_num_text(threshold)}"
    return f"drift: {method} with threshold {_num_text(threshold)}"


def _freshness(m: dict, slots: dict, family: str) -> str:
    mon = m.setdefault("monitoring", {})
    fresh = mon.get("freshness") if isinstance(mon.get("freshness"), dict) else None
    if fresh is None:
        fresh = mon["freshness"] = {}
    fresh["max_age_hours"] = slots["freshness_hours"]
    hours = slots["freshness_hours"]
    days = f" ({_num_text(hours / 24)} days)" if hours >= 24 and hours % 24 == 0 else ""
    return f"data freshness: at most {_num_text(hours)} hours old{days}"


def _objective(m: dict, slots: dict, family: str) -> str | None:
    cfg = stage_config(m, "training")
    if cfg is None:
        return None
    cfg["objective"] = slots["objective"]
    return f"price objective: maximise {slots['objective']}"


def _price_bounds(m: dict, slots: dict, family: str) -> str | None:
    cfg = stage_config(m, "training")
    if cfg is None:
        return None
    pb = slots["price_bounds"]
    cfg["price_bounds"] = {"min_change": pb["min_change"], "max_change": pb["max_change"]}
    return f"price changes: from {_pct(pb['min_change'])} to +{_pct(pb['max_change'])} of the current price"


def _k(m: dict, slots: dict, family: str) -> str | None:
    cfg = stage_config(m, "evaluation")
    if cfg is None:
        return None
    cfg["k"] = slots["k"]
    who = "customers" if family == "next_best_action" else "sites"
    return f"top share k: {_pct(slots['k'])} of {who}"


def _offer_cost(m: dict, slots: dict, family: str) -> str | None:
    cfg = stage_config(m, "evaluation")
    if cfg is None:
        return None
    cfg["offer_cost"] = slots["offer_cost"]
    return f"offer cost: {_num_text(slots['offer_cost'])} per offer"


def _override_applier(override: dict) -> Callable[[dict, dict, str], str]:
    def apply(m: dict, slots: dict, family: str) -> str:
        path, value = override["path"], override["value"]
        if not path:
            if not isinstance(value, dict):
                raise ValueError("paste a JSON object")
            if "metadata" in value and "pipeline" in value:
                keep = m.get("metadata", {})
                m.clear()
                m.update(copy.deepcopy(value))
                m["metadata"] = {
                    **value.get("metadata", {}),
                    **{k: keep[k] for k in ("id", "version") if k in keep},
                }
                return "manifest: replaced by the JSON you pasted"
            _deep_merge(m, value)
            return "manifest: merged the JSON you pasted (" + ", ".join(value) + ")"
        _set_path(m, list(path), value)
        return f"{'.'.join(path)}: {value!r}"

    return apply


def _groups(
    family: str, slots: dict
) -> list[tuple[str, str | None, Callable[[dict, dict, str], str | None]]]:
    """(slot key, metric or None, applier) in the order they are applied."""
    groups: list[tuple[str, str | None, Callable]] = []
    simple = [
        ("frequency", _frequency, ("forecasting",)),
        ("horizon_days", _horizon, ("forecasting",)),
        ("grain", _grain, None),
        ("labels", _labels, None),
        ("min_history", _min_history, None),
    ]
    for key, fn, families in simple:
        if key in slots and (families is None or family in families):
            groups.append((key, None, fn))
    for name, fields in (slots.get("metrics") or {}).items():
        if name in catalog.METRICS.get(family, {}):
            groups.append(("metrics", name, _metric_applier(name, fields)))
    more = [
        ("deployment_mode", _deployment_mode, None),
        ("schedule", _schedule, None),
        ("retrain_schedule", _retrain_schedule, None),
        ("features", _features, ("forecasting",)),
        ("drift", _drift, None),
        ("freshness_hours", _freshness, None),
        ("objective", _objective, ("pricing",)),
        ("price_bounds", _price_bounds, ("pricing",)),
        ("k", _k, ("next_best_action", "location_scoring")),
        ("offer_cost", _offer_cost, ("next_best_action",)),
    ]
    for key, fn, families in more:
        present = ("drift_method" in slots or "drift_threshold" in slots) if key == "drift" else key in slots
        if present and (families is None or family in families):
            groups.append((key, None, fn))
    for i, override in enumerate(slots.get("overrides") or []):
        groups.append(("overrides", str(i), _override_applier(override)))
    return groups


def _error_keys(errors: list[dict]) -> set[tuple[str, str]]:
    return {(e["path"], e["message"]) for e in errors}


def family_config_errors(manifest: dict, family: str) -> list[dict]:
    """The stage-config values the assistant writes, checked the way the family code reads
    them (runs/families/*.py): the manifest schema leaves stage configs open, so a horizon of 0
    would pass validate_manifest and only fail when the run starts."""
    errors: list[dict] = []

    def bad(stage_type: str, key: str, message: str) -> None:
        st = stage(manifest, stage_type) or {}
        errors.append(
            {"path": f"/pipeline/stages/{st.get('name', stage_type)}/config/{key}", "message": message}
        )

    def number(v) -> bool:
        return isinstance(v, (int, float)) and not isinstance(v, bool)

    train = stage_config(manifest, "training", create=False) or {}
    prep = stage_config(manifest, "feature_prep", create=False) or {}
    evaluation = stage_config(manifest, "evaluation", create=False) or {}
    if family == "forecasting":
        if "horizon" in train and not (
            isinstance(train["horizon"], int)
            and not isinstance(train["horizon"], bool)
            and train["horizon"] >= 1
        ):
            bad("training", "horizon", "'horizon' must be a whole number of days, at least 1")
        if "frequency" in prep and forecasting_config.frequency(prep["frequency"]) is None:
            known = ", ".join(f"'{k}' ({v})" for k, v in forecasting_config.FREQUENCIES.items())
            bad("feature_prep", "frequency", f"'frequency' must be {known}")
    if family == "pricing":
        if "objective" in train and train["objective"] not in ("revenue", "margin"):
            bad("training", "objective", "'objective' must be 'revenue' or 'margin'")
        pb = train.get("price_bounds")
        if pb is not None:
            ok = isinstance(pb, dict) and number(pb.get("min_change")) and number(pb.get("max_change"))
            if not ok or not (-1 < pb["min_change"] <= 0 <= pb["max_change"]):
                bad(
                    "training",
                    "price_bounds",
                    "'price_bounds' needs -1 < min_change <= 0 <= max_change (fractions of the current price)",
                )
    if family in ("next_best_action", "location_scoring") and "k" in evaluation:
        if not (number(evaluation["k"]) and 0 < evaluation["k"] < 1):
            bad(
                "evaluation",
                "k",
                "'k' is the share targeted: a fraction between 0 and 1, such as 0.1 for the top 10%",
            )
    if family == "next_best_action" and "offer_cost" in evaluation:
        if not (number(evaluation["offer_cost"]) and evaluation["offer_cost"] >= 0):
            bad("evaluation", "offer_cost", "'offer_cost' must be a number, 0 or more")
    return errors


def check(manifest: dict, *, family: str, level: str) -> list[dict]:
    """Everything the proposal must pass: the manifest validator plus the family config checks."""
    return validate_manifest(manifest, family=family, level=level) + family_config_errors(manifest, family)


def build(
    base_manifest: dict,
    *,
    family: str,
    level: str,
    name: str,
    description: str | None,
    slots: dict,
    label_slots: dict | None = None,
) -> Result:
    """The proposed manifest for ``slots`` on top of ``base_manifest`` (never mutated).

    ``label_slots`` (this message's slots) name a refused change in the explanation as the
    user wrote it, rather than with everything accumulated so far."""
    label_slots = label_slots if label_slots is not None else slots
    manifest = rewrite_metadata(base_manifest, id=PROPOSAL_ID, level=level, version="1.0.0", name=name)
    manifest["metadata"]["model_family"] = family
    if description:
        manifest["metadata"]["description"] = description
    result = Result(manifest=manifest)
    current_errors = check(manifest, family=family, level=level)
    for key, metric, apply in _groups(family, slots):
        candidate = copy.deepcopy(result.manifest)
        try:
            line = apply(candidate, slots, family)
        except (KeyError, ValueError, TypeError) as exc:
            result.rejected.append(
                f"I could not apply {_slot_label(key, metric, slots, label_slots)}: {exc}."
            )
            result.rejected_slots.append((key, metric))
            continue
        errors = check(candidate, family=family, level=level)
        introduced = [e for e in errors if (e["path"], e["message"]) not in _error_keys(current_errors)]
        if introduced:
            result.rejected.append(
                f"I did not apply {_slot_label(key, metric, slots, label_slots)}, because the manifest would not be valid: "
                f"{plain_errors(introduced)}. The proposal keeps the previous value."
            )
            result.rejected_slots.append((key, metric))
            continue
        result.manifest = candidate
        current_errors = errors
        if line:
            result.applied.append((key, metric, line))
    result.errors = current_errors
    return result


def _slot_label(key: str, metric: str | None, slots: dict, label_slots: dict | None = None) -> str:
    if key == "metrics" and metric:
        fields = (label_slots or {}).get("metrics", {}).get(metric) or slots.get("metrics", {}).get(
            metric, {}
        )
        shown = ", ".join(f"{FIELD_WORDS[f]} {_num_text(v)}" for f, v in fields.items() if f in FIELD_WORDS)
        return f"{metric} {shown}".strip()
    if key == "overrides" and metric is not None:
        ov = (slots.get("overrides") or [])[int(metric)]
        return f"'{'.'.join(ov['path'])}'" if ov["path"] else "the JSON you pasted"
    labels = {
        "frequency": "the frequency",
        "horizon_days": "the horizon",
        "grain": "the grain",
        "labels": "the labels",
        "min_history": "the minimum history",
        "deployment_mode": "the deployment mode",
        "schedule": f"the schedule {slots.get('schedule')!r}",
        "retrain_schedule": f"the retraining schedule {slots.get('retrain_schedule')!r}",
        "features": "the input columns",
        "drift": "the drift settings",
        "freshness_hours": "the freshness limit",
        "objective": "the price objective",
        "price_bounds": "the price bounds",
        "k": "the top share k",
        "offer_cost": "the offer cost",
    }
    return labels.get(key, key)


def diff(base_manifest: dict, proposed: dict) -> list[dict]:
    return manifest_diff(base_manifest, proposed)


def missing_slots(family: str, slots: dict, *, skipped: list[str] | tuple = ()) -> list[str]:
    """The open questions' slot keys, most important first."""
    out: list[str] = []
    if slots.get("client") and not slots.get("industry") and not slots.get("client_base"):
        out.append("industry")
    elif slots.get("want_client") and not slots.get("client"):
        out.append("client")
    elif not slots.get("industry") and not slots.get("client") and not slots.get("context_generic"):
        out.append("context")
    for key in REQUIRED.get(family, []):
        if key == "target":
            named = (slots.get("metrics") or {}).items()
            if not any(n in catalog.METRICS.get(family, {}) and fields for n, fields in named):
                out.append("target")
        elif key not in slots:
            out.append(key)
    return [k for k in out if k not in skipped]


def question(key: str, family: str, slots: dict) -> str:
    q = QUESTIONS[key]
    if isinstance(q, dict):
        q = q[family]
    return q.format(client=slots.get("client") or "the client")


def primary_metric(family: str) -> str:
    return catalog.PRIMARY_METRIC[family]
