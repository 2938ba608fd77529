"""The manifest's ``retraining`` section as plain values: when a production model is retrained,
on which data, and how its challenger may replace it.

Plain Python (no Django import): the manifest validator (``recipes.manifest``) checks the
section with the same parsers the runtime uses, so there is one grammar for durations and
windows. ``policy(manifest)`` reads a *valid* manifest's section into a ``RetrainPolicy``;
it is ``None`` when the manifest has no ``retraining`` section (no automatic retraining;
manual retrains are still allowed).

    retraining:
      triggers:
        schedule: "0 3 * * 1"       # 5-field cron or null
        alerts: [mape_decay]        # names of monitoring.alerts
        min_new_rows: 20000         # new rows scored/checked since the champion's training
      cooldown: "7 days"            # hours, days or weeks; default "0 days"
      window: "last 104 weeks"      # or "latest 3 datasets"; absent = the champion's size
      promotion:
        mode: auto                  # manual | auto (manual when absent)
        min_improvement: 0.02       # relative, on the primary metric; auto only; default 0
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

PROMOTION_MODES = ("manual", "auto")
DEFAULT_PROMOTION = "manual"
DEFAULT_COOLDOWN = "0 days"

DURATION_EXAMPLE = "'7 days' (hours, days or weeks)"
WINDOW_EXAMPLE = "'last 104 weeks' (days or weeks) or 'latest 3 datasets'"

# At most 9 digits, so no long string reaches int() (whose digit limit raises a less helpful
# ValueError); the amounts are then capped at _MAX_DAYS.
_DURATION_RE = re.compile(r"^\s*([0-9]{1,9})\s*(hour|day|week)s?\s*$", re.IGNORECASE)
_PERIOD_RE = re.compile(r"^\s*last\s+([0-9]{1,9})\s*(day|week)s?\s*$", re.IGNORECASE)
_DATASETS_RE = re.compile(r"^\s*latest\s+([0-9]{1,9})\s*datasets?\s*$", re.IGNORECASE)
_UNIT_DAYS = {"day": 1, "week": 7}
_UNIT_HOURS = {"hour": 1, "day": 24, "week": 7 * 24}
# No retraining setting needs more than a century; the cap also keeps timedelta() (which
# overflows on huge counts) and the runtime's date arithmetic safe.
_MAX_DAYS = 100 * 366


@dataclass(frozen=True)
class Window:
    """The training data of a retrain: "last <n> days|weeks" of the data (``kind="period"``,
    ``days`` = n * 1 or 7) or the "latest <n> datasets" uploaded for the recipe
    (``kind="datasets"``, ``days`` None)."""

    kind: str  # "period" | "datasets"
    count: int
    days: int | None


@dataclass(frozen=True)
class RetrainPolicy:
    schedule: str | None
    alerts: tuple[str, ...]
    min_new_rows: int | None
    cooldown: timedelta
    window: Window | None
    promotion: str  # "manual" | "auto"
    min_improvement: float

    @property
    def automatic(self) -> bool:
        """Whether anything starts a retrain by itself (a schedule, an alert or a row count)."""
        return bool(self.schedule or self.alerts or self.min_new_rows)


def _shown(text: Any) -> str:
    if isinstance(text, str):
        return repr(text if len(text) <= 40 else text[:37] + "...")
    return "null" if text is None else type(text).__name__


def parse_duration(text: Any) -> timedelta:
    """'7 days' -> timedelta(days=7); '12 hours', '2 weeks', '1 day', '0 days' too (any case).

    ValueError("must be like '7 days' (hours, days or weeks), got ...") for anything else.
    """
    m = _DURATION_RE.match(text) if isinstance(text, str) else None
    if not m:
        raise ValueError(f"must be like {DURATION_EXAMPLE}, got {_shown(text)}")
    hours = int(m[1]) * _UNIT_HOURS[m[2].lower()]
    if hours > _MAX_DAYS * 24:  # checked before timedelta(), which overflows on huge counts
        raise ValueError(f"must be like {DURATION_EXAMPLE} and at most 100 years, got {_shown(text)}")
    return timedelta(hours=hours)


def parse_window(text: Any) -> Window:
    """'last 104 weeks' -> Window("period", 104, 728); 'last 90 days' -> Window("period", 90, 90);
    'latest 3 datasets' -> Window("datasets", 3, None). The count is at least 1.

    ValueError naming the accepted forms for anything else.
    """
    if isinstance(text, str):
        period = _PERIOD_RE.match(text)
        if period:
            count = int(period[1])
            days = count * _UNIT_DAYS[period[2].lower()]
            _check_count(text, count)
            if days > _MAX_DAYS:
                raise ValueError(f"must be at most 100 years of data, got {_shown(text)}")
            return Window(kind="period", count=count, days=days)
        datasets = _DATASETS_RE.match(text)
        if datasets:
            count = int(datasets[1])
            _check_count(text, count)
            return Window(kind="datasets", count=count, days=None)
    raise ValueError(f"must be like {WINDOW_EXAMPLE}, got {_shown(text)}")


def _check_count(text: str, count: int) -> None:
    if count < 1:
        raise ValueError(f"must cover at least 1 day, week or dataset, got {_shown(text)}")


def policy(manifest: Any) -> RetrainPolicy | None:
    """The retraining policy of a valid manifest; None when it has no ``retraining`` section.

    Defaults: no triggers, cooldown 0, window None (as much data as the champion was trained
    on), promotion "manual", min_improvement 0. Raises ValueError (from the parsers) only on
    a manifest the validator would have refused.
    """
    section = manifest.get("retraining") if isinstance(manifest, dict) else None
    if not isinstance(section, dict):
        return None
    triggers = section.get("triggers") or {}
    promotion = section.get("promotion") or {}
    rows = triggers.get("min_new_rows")
    window = section.get("window")
    return RetrainPolicy(
        schedule=triggers.get("schedule"),
        alerts=tuple(dict.fromkeys(triggers.get("alerts") or ())),
        min_new_rows=int(rows) if rows is not None else None,
        cooldown=parse_duration(section.get("cooldown", DEFAULT_COOLDOWN)),
        window=parse_window(window) if window is not None else None,
        promotion=promotion.get("mode", DEFAULT_PROMOTION),
        min_improvement=float(promotion.get("min_improvement", 0)),
    )
