"""Plain-words schedules -> 5-field cron expressions.

``find_schedule("retrain every Monday at 6")`` -> ``Schedule("0 6 * * 1", "every Monday at 06:00", spans)``.
The spans are the parts of the text that belong to the schedule, so the extractor does not
read "daily at 2am" as a daily forecast frequency.

Recognised: every <weekday>[s] / on <weekday>s / weekdays / weekends, daily / nightly /
every day|night|morning, weekly / every week / once a week, monthly / every month / on the
Nth (of the month), hourly / every N hours, with an optional time ("at 6", "at 6:30",
"at 2am", "at 18:00", "at noon", "at midnight"). A period word (daily, weekly, monthly)
counts as a schedule only next to a scheduling verb (retrain, refresh, run, score, ...) or
a time, so "weekly demand forecast" stays a frequency.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

DAYS = {
    "mon": 1,
    "tue": 2,
    "wed": 3,
    "thu": 4,
    "fri": 5,
    "sat": 6,
    "sun": 0,
}
DAY_NAMES = {
    0: "Sunday",
    1: "Monday",
    2: "Tuesday",
    3: "Wednesday",
    4: "Thursday",
    5: "Friday",
    6: "Saturday",
}
_DAY = (
    r"(?:mon(?:day)?|tue(?:s|sday)?|wed(?:nesday)?|thu(?:rs?|rsday)?|fri(?:day)?|sat(?:urday)?|sun(?:day)?)s?"
)
_DAY_LIST = rf"{_DAY}(?:\s*(?:,|and|&|or|/)\s*{_DAY})*"
_VERB = (
    r"(?:re-?train(?:ed|ing|s)?|re-?fit(?:ted|ting|s)?|re-?calibrat(?:e|ed|es|ing)|reviewed|review(?:s|ing)?|repric(?:e|ed|es|ing)|refresh(?:ed|es|ing)?|re-?run(?:s|ning)?|runs?|running|"
    r"re-?scor(?:e|ed|es|ing)|scor(?:e|ed|es|ing)|updat(?:e|ed|es|ing)|recomput(?:e|ed|es|ing)|"
    r"rebuil(?:d|t|ds|ding)|schedul(?:e|ed|es|ing)|execut(?:e|ed|es|ing)|reforecast(?:ed|s|ing)?)"
)
_TIME = (
    r"(?:at|@|around|by)\s+(?P<h>\d{1,2})(?:[:.h](?P<m>\d{2}))?\s*(?P<ap>a\.?m\.?|p\.?m\.?|h|o'?clock)?(?![\d%])"
    r"|(?P<h2>\d{1,2})(?:[:.](?P<m2>\d{2}))?\s*(?P<ap2>a\.?m\.?|p\.?m\.?)(?![a-z])"
    r"|(?:at\s+)?(?P<word>noon|midday|midnight)"
)
_TIME_RE = re.compile(_TIME, re.I)
_ORD = r"(?P<dom>[1-9]|[12]\d|3[01])(?:st|nd|rd|th)?"

_PATTERNS: list[tuple[str, re.Pattern]] = [
    ("hours", re.compile(r"\bevery\s+(?P<n>\d{1,2})\s+hours?\b", re.I)),
    ("hourly", re.compile(r"\b(?:hourly|every\s+hour|once\s+an\s+hour)\b", re.I)),
    (
        "weekdays",
        re.compile(r"\b(?:every\s+|on\s+|each\s+)?(?:week\s*days?|working\s+days?|business\s+days?)\b", re.I),
    ),
    ("weekends", re.compile(r"\b(?:every\s+|on\s+|at\s+)?weekends?\b", re.I)),
    ("dow", re.compile(rf"\b(?:every|each|on)\s+(?P<days>{_DAY_LIST})\b", re.I)),
    ("dow_plural", re.compile(r"\b(?P<days>(?:mon|tues|wednes|thurs|fri|satur|sun)days)\b", re.I)),
    (
        "dow",
        re.compile(
            r"\b(?P<days>(?:mon|tues|wednes|thurs|fri|satur|sun)day)\s+(?:mornings?|evenings?|nights?)\b",
            re.I,
        ),
    ),
    ("quarterly", re.compile(r"\b(?:every\s+quarter|each\s+quarter|once\s+a\s+quarter|quarterly)\b", re.I)),
    (
        "monthly_dom",
        re.compile(rf"\bon\s+the\s+{_ORD}(?:\s+(?:day\s+)?of\s+(?:the|each|every)\s+month)?\b", re.I),
    ),
    ("monthly", re.compile(r"\b(?:every\s+month|each\s+month|once\s+a\s+month|monthly)\b", re.I)),
    ("weekly", re.compile(r"\b(?:every\s+week|each\s+week|once\s+a\s+week|weekly)\b", re.I)),
    (
        "daily",
        re.compile(
            r"\b(?:every\s+(?:day|night|morning|evening)|(?<!\bfor\s)each\s+(?:day|night|morning)|once\s+a\s+day|daily|"
            r"(?<!\bthe\s)(?<!\bour\s)(?<!\ba\s)(?<!\bper\s)nightly(?!\s+(?:rates?|prices?|pric\w+|rooms?|stays?|fares?|"
            r"tariffs?|charges?|fees?|occupancy|bookings?|revenue|demand|sales|volumes?|guests?|rent)\b))\b",
            re.I,
        ),
    ),
]
# Period words that are also forecast frequencies: a schedule only next to a verb or a time.
_AMBIGUOUS = {"hourly", "weekly", "daily", "monthly", "quarterly"}
# "every Monday", "each night", "once a week" are schedules; "every day", "each week" may be the
# forecast's periods ("how many parcels each week"), so they need a verb or a time like "daily".
_ALWAYS_SCHEDULE_WORDS = re.compile(
    r"^(?:(?:every|each)\s+(?!(?:day|week|month|quarter)\b)|once|nightly)", re.I
)


@dataclass
class Schedule:
    cron: str
    text: str
    spans: list[tuple[int, int]] = field(default_factory=list)
    # "retrain" when a retraining verb goes with it ("retrain every Monday"), "score" for a
    # scoring or refresh verb ("rescore monthly", "batch scoring every night"), None without one.
    kind: str | None = None


_RETRAIN_VERB_RE = re.compile(r"re-?train|re-?fit|rebuil|re-?estimat|re-?calibrat", re.I)


def schedule_kind(verbs: list[str]) -> str | None:
    """What a schedule is for, from the verbs that go with it: retraining or scoring."""
    if any(_RETRAIN_VERB_RE.match(v) for v in verbs):
        return "retrain"
    return "score" if verbs else None


def _parse_days(text: str) -> list[int]:
    out = []
    for m in re.finditer(_DAY, text, re.I):
        key = m.group(0).lower()[:3]
        if key in DAYS and DAYS[key] not in out:
            out.append(DAYS[key])
    return out


def _time_near(text: str, start: int, end: int) -> tuple[int, int, tuple[int, int]] | None:
    """(hour, minute, span) of a time expression just after (or just before) start..end."""
    window_after = text[end : end + 30]
    for m in _TIME_RE.finditer(window_after):
        if re.search(r"[.;\n]", window_after[: m.start()]):
            break
        parsed = _parse_time(m)
        if parsed:
            return parsed[0], parsed[1], (end + m.start(), end + m.end())
    lo = max(0, start - 25)
    window_before = text[lo:start]
    found = None
    for m in _TIME_RE.finditer(window_before):
        if re.search(r"[.;\n]", window_before[m.end() :]):
            continue
        parsed = _parse_time(m)
        if parsed:
            found = (parsed[0], parsed[1], (lo + m.start(), lo + m.end()))
    return found


def _parse_time(m: re.Match) -> tuple[int, int] | None:
    if m.group("word"):
        return (0, 0) if m.group("word").lower() == "midnight" else (12, 0)
    hour_s = m.group("h") or m.group("h2")
    minute_s = m.group("m") or m.group("m2") or "0"
    ap = (m.group("ap") or m.group("ap2") or "").lower().replace(".", "")
    hour, minute = int(hour_s), int(minute_s)
    if ap == "pm" and hour < 12:
        hour += 12
    elif ap == "am" and hour == 12:
        hour = 0
    if hour > 23 or minute > 59:
        return None
    return hour, minute


def _default_time(base_cron: str | None) -> tuple[str, str]:
    """Minute and hour of the starting recipe's schedule when they are plain numbers, else 0 3."""
    fields = (base_cron or "").split()
    if len(fields) == 5 and fields[0].isdigit() and fields[1].isdigit():
        return fields[0], fields[1]
    return "0", "3"


def find_schedule(text: str, *, base_cron: str | None = None, force: bool = False) -> Schedule | None:
    """The schedule described in ``text``, or None. ``force`` accepts a bare period word
    ("weekly") as a schedule (used when the user answers a question about the schedule)."""
    verb_spans = [(m.start(), m.end()) for m in re.finditer(rf"\b{_VERB}\b", text, re.I)]
    for kind, pattern in _PATTERNS:
        for m in pattern.finditer(text):
            word = m.group(0).lower()
            if kind in _AMBIGUOUS and not _ALWAYS_SCHEDULE_WORDS.match(word) and not force:
                timed = _time_near(text, m.start(), m.end())
                timed_after = timed is not None and timed[2][0] >= m.end()
                if not _near_verb(text, m.start(), m.end(), verb_spans) and not timed_after:
                    continue
            found = _build(kind, m, text, base_cron, verb_spans)
            # "weekly on Mondays", "daily at 2": the period word belongs to the schedule too.
            for pm in re.finditer(r"\b(?:weekly|daily|monthly|nightly)\b", text, re.I):
                if any(0 <= s - pm.end() <= 2 or 0 <= pm.start() - e <= 2 for s, e in found.spans):
                    found.spans.append((pm.start(), pm.end()))
            return found
    return None


def _near_verb(text: str, start: int, end: int, verb_spans) -> bool:
    """A scheduling verb shortly before the word (same clause), or right after it."""
    for vs, ve in verb_spans:
        if 0 <= start - ve <= 25 and not re.search(r"[,.;\n]", text[ve:start]):
            return True
        if 0 <= vs - end <= 3:
            return True
    return False


def _build(kind: str, m: re.Match, text: str, base_cron: str | None, verb_spans) -> Schedule:
    spans = [(m.start(), m.end())]
    minute, hour = _default_time(base_cron)
    if re.search(r"night", m.group(0), re.I):
        minute, hour = "0", "2"  # "nightly" without a time: 02:00 rather than the base's hour
    elif part := (
        re.search(r"\b(morning|evening|night)s?$", m.group(0), re.I)
        or re.match(r"\s+(morning|evening|night)s?\b", text[m.end() :], re.I)
    ):
        # "every Sunday night", "Friday evenings": a part of the day without a time.
        minute, hour = "0", {"morning": "6", "evening": "18", "night": "22"}[part.group(1).lower()]
        if part.string != m.group(0):  # the part of the day follows the match
            spans.append((m.end(), m.end() + part.end()))
    timed = _time_near(text, m.start(), m.end())
    at = ""
    if timed and kind not in ("hours", "hourly"):
        hour, minute = str(timed[0]), str(timed[1])
        spans.append(timed[2])
    if kind not in ("hours", "hourly"):
        at = f" at {int(hour):02d}:{int(minute):02d}"
    verbs = []
    for vs, ve in verb_spans:
        if 0 <= m.start() - ve <= 25 and not re.search(r"[,.;\n]", text[ve : m.start()]):
            spans.append((vs, ve))
            verbs.append(text[vs:ve])
        elif 0 <= vs - m.end() <= 3:
            verbs.append(text[vs:ve])
    found = _cron(kind, m, text, minute, hour, at, spans)
    found.kind = schedule_kind(verbs)
    return found


def _cron(kind: str, m: re.Match, text: str, minute: str, hour: str, at: str, spans) -> Schedule:
    if kind == "hours":
        n = max(1, min(23, int(m.group("n"))))
        return Schedule(f"0 */{n} * * *", f"every {n} hours", spans)
    if kind == "hourly":
        return Schedule("0 * * * *", "every hour", spans)
    if kind == "weekdays":
        return Schedule(f"{minute} {hour} * * 1-5", f"every weekday{at}", spans)
    if kind == "weekends":
        return Schedule(f"{minute} {hour} * * 0,6", f"every Saturday and Sunday{at}", spans)
    if kind in ("dow", "dow_plural"):
        days = _parse_days(m.group("days"))
        names = " and ".join(DAY_NAMES[d] for d in days)
        return Schedule(f"{minute} {hour} * * {','.join(str(d) for d in days)}", f"every {names}{at}", spans)
    if kind == "monthly_dom":
        dom = int(m.group("dom"))
        return Schedule(f"{minute} {hour} {dom} * *", f"on day {dom} of every month{at}", spans)
    if kind == "monthly":
        dom_m = re.search(rf"\bon\s+the\s+{_ORD}\b", text[m.end() : m.end() + 30], re.I)
        dom = int(dom_m.group("dom")) if dom_m else 1
        if dom_m:
            spans.append((m.end() + dom_m.start(), m.end() + dom_m.end()))
        return Schedule(f"{minute} {hour} {dom} * *", f"on day {dom} of every month{at}", spans)
    if kind == "quarterly":
        return Schedule(f"{minute} {hour} 1 1,4,7,10 *", f"on the first day of every quarter{at}", spans)
    if kind == "weekly":
        days = []
        on = re.search(rf"\bon\s+(?P<days>{_DAY_LIST})\b", text[m.end() : m.end() + 40], re.I)
        if on:
            days = _parse_days(on.group("days"))
            spans.append((m.end() + on.start(), m.end() + on.end()))
        days = days or [1]
        names = " and ".join(DAY_NAMES[d] for d in days)
        return Schedule(f"{minute} {hour} * * {','.join(str(d) for d in days)}", f"every {names}{at}", spans)
    # daily
    return Schedule(f"{minute} {hour} * * *", f"every day{at}", spans)


def describe_cron(cron: str | None) -> str:
    """A few words for the common cron shapes the assistant writes; the expression otherwise."""
    if not cron:
        return "no schedule"
    fields = cron.split()
    if len(fields) != 5:
        return cron
    minute, hour, dom, month, dow = fields
    if not (minute.isdigit() and hour.isdigit()):
        if hour.startswith("*/") and dom == month == dow == "*":
            return f"every {hour[2:]} hours"
        if hour == "*" and dom == month == dow == "*":
            return "every hour"
        return cron
    at = f"at {int(hour):02d}:{int(minute):02d}"
    if dom == "*" and month == "*" and dow == "*":
        return f"every day {at}"
    if dom == "*" and month == "*":
        if dow == "1-5":
            return f"every weekday {at}"
        if re.fullmatch(r"[0-6](,[0-6])*", dow):
            return "every " + " and ".join(DAY_NAMES[int(d)] for d in dow.split(",")) + f" {at}"
    if dom.isdigit() and month == "*" and dow == "*":
        return f"on day {dom} of every month {at}"
    if dom == "1" and month == "1,4,7,10" and dow == "*":
        return f"on the first day of every quarter {at}"
    return cron
