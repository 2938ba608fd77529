"""How one chat turn's slots edit the conversation's slots, in plain Python (no Django, no DRF).

The reply service (``assistant.services``) keeps the understood settings of the model being
drafted in ``Conversation.state_json["slots"]``; ``assistant.nlu.extract`` reads a message
into new slots and ``merge_slots`` merges them. What happens around the merge lives here:

``context_only``               the slots worth keeping before the family is known.
``resolve_bare_edits``         "change the target to 10%" -> the metric in focus.
``drop_superseded_overrides``  a plain-words edit replaces an earlier "set a.b.c to X".
``revert_rejected``            slots the validator refused go back to their previous value.
``answer_ambiguity``           the answer to the one follow-up question about an ambiguous setting.
"""

from __future__ import annotations

import copy
import math
import re

from recipes import catalog

from . import proposal as proposals
from .nlu import extract
from .nlu import settings as stated
from .nlu.schedule import find_schedule


def context_only(slots: dict) -> dict:
    return {
        k: v
        for k, v in slots.items()
        if k in ("industry", "client", "want_client", "scale", "name", "start_from")
    }


def resolve_bare_edits(family: str, slots: dict, state: dict) -> None:
    """'change the target to 10%' -> the metric in focus (last named, else the family's primary)."""
    named = list((slots.get("metrics") or {}).keys())
    if slots.get("goal") in catalog.METRICS.get(family, {}):
        state["focus_metric"] = slots["goal"]
    metric = named[-1] if named else state.get("focus_metric") or proposals.primary_metric(family)
    if metric not in catalog.METRICS.get(family, {}):
        metric = proposals.primary_metric(family)
    for key in ("target_edit", "threshold_edit"):
        edit = slots.pop(key, None)
        if not edit:
            continue
        value = edit["value"]
        if edit.get("pct") or (metric in extract.FRACTION_METRICS and 1 < abs(value) <= 100):
            value = value / 100
        field = "target" if key == "target_edit" else edit["field"]
        slots.setdefault("metrics", {}).setdefault(metric, {})[field] = round(value, 6)
    if slots.get("metrics"):
        state["focus_metric"] = list(slots["metrics"])[-1]


# Slot -> the last part of the manifest paths it writes: a later plain-words edit of the same
# setting replaces an earlier "set a.b.c to X" (overrides are applied after the slots).
_SLOT_PATH_KEYS = {
    "frequency": {"frequency"},
    "horizon_days": {"horizon", "horizon_days"},
    "grain": {"grain"},
    "labels": {"labels"},
    "min_history": {"min_history"},
    "deployment_mode": {"mode"},
    "schedule": {"schedule"},
    "retrain_schedule": {"triggers"},
    "drift_method": {"drift", "method"},
    "drift_threshold": {"drift", "threshold"},
    "freshness_hours": {"freshness", "max_age_hours"},
    "objective": {"objective"},
    "price_bounds": {"price_bounds", "min_change", "max_change"},
    "k": {"k"},
    "offer_cost": {"offer_cost"},
}


def drop_superseded_overrides(slots: dict, new_slots: dict) -> None:
    overrides = slots.get("overrides")
    if not overrides:
        return
    touched: set[str] = set()
    for key in new_slots:
        touched |= _SLOT_PATH_KEYS.get(key, set())
    metrics = set(new_slots.get("metrics") or {})

    def superseded(override: dict) -> bool:
        path = [str(p) for p in override.get("path") or []]
        if not path:
            return False  # a pasted JSON fragment stays in force
        if path[-1] in touched and not (path[-1] in ("method", "threshold") and "drift" not in path):
            return True
        return "metrics" in path and any(m in path for m in metrics)

    slots["overrides"] = [o for o in overrides if not superseded(o)]


def revert_rejected(slots: dict, previous: dict, rejected: list[tuple[str, str | None]]) -> None:
    """Put slots the validator refused back to their value before this message (or drop them),
    so a refused edit leaves the proposal as it was and is not retried every turn."""
    for key, metric in rejected:
        if key == "metrics" and metric:
            old = (previous.get("metrics") or {}).get(metric)
            metrics = slots.setdefault("metrics", {})
            if old is not None:
                metrics[metric] = copy.deepcopy(old)
            else:
                metrics.pop(metric, None)
        elif key == "overrides" and metric is not None:
            overrides = slots.get("overrides") or []
            if int(metric) < len(overrides):
                overrides[int(metric)] = None
        else:
            keys = ("drift_method", "drift_threshold") if key == "drift" else (key,)
            for k in keys:
                if k in previous:
                    slots[k] = copy.deepcopy(previous[k])
                else:
                    slots.pop(k, None)
    if "overrides" in slots:
        slots["overrides"] = [o for o in slots["overrides"] if o is not None]


def answer_ambiguity(ambiguity: dict, text: str, *, base_cron: str | None = None) -> dict | None:
    """The slots an answer to the follow-up question about ``ambiguity`` fills, or None when
    the answer does not settle it ("retraining" / "the forecast"; "weeks")."""
    if ambiguity.get("kind") == "period":
        word = ambiguity["word"]
        if re.search(r"\b(?:re-?train\w*|schedul\w*|refresh\w*|both)\b", text, re.I):
            found = find_schedule(f"retrain {word}", base_cron=base_cron)
            return {"retrain_schedule": found.cron, "retrain_schedule_text": found.text} if found else None
        if re.search(
            r"\b(?:forecasts?|frequenc\w*|periods?|data|granularity|buckets?|predictions?)\b", text, re.I
        ):
            return {"frequency": stated.PERIOD_WORDS[word]}
        return None
    if ambiguity.get("kind") == "horizon_unit":
        m = re.search(r"\b(hour|day|week|month|quarter|year)s?\b", text, re.I)
        if not m:
            return None
        days = ambiguity["number"] * extract.UNIT_DAYS[m.group(1).lower()]
        return {"horizon_days": max(1, math.ceil(days) if m.group(1).lower() == "hour" else round(days))}
    return None
