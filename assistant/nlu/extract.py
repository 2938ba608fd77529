"""From a user message to an intent and slots, with rules (no model, no network).

``read_message(text, ...)`` returns an :class:`Extraction`:

* ``intent``: ``describe`` (a description or an edit of the pending proposal), ``create``,
  ``question`` (guidance from the knowledge base), ``reset``, ``defaults`` (keep the starting
  recipe's values for the open questions), ``skip`` (the current question), ``show``,
  ``greeting`` or ``empty``.
* ``family``: the model family the words point to, or None when unsure: the classifier of
  ``assistant.nlu.classifier`` (word and character n-grams, trained on ``assistant/corpus``)
  combined with the rules' cue scores (``family_scores``), its calibrated probabilities in
  ``family_probs``; below the model's threshold, ``family_options`` names the two likeliest
  families and the words that point to each, for the assistant to ask.
* ``slots``: what the message says about the recipe, in a JSON-able dict (keys below).

Slots: ``industry``, ``client``, ``want_client``, ``frequency`` ("H"|"D"|"W"|"M"|"Q"), ``horizon_days``,
``grain``, ``labels``, ``min_history``, ``metrics`` ({name: {target, threshold_warning,
threshold_critical}}), ``deployment_mode``, ``schedule`` (cron), ``schedule_text``,
``drift_method``, ``drift_threshold``, ``freshness_hours``, ``objective``, ``price_bounds``,
``k``, ``offer_cost``, ``scale``, ``name``, ``foreign_metrics`` (metric names the family does not
compute: said back), ``unread`` (limits and targets no reader used: said back), ``target_edit`` / ``threshold_edit`` (a bare
"change the target to 10%": the metric is resolved by the caller), ``overrides``
([{"path": [...], "value": ...}] from "set a.b.c to X" or a pasted JSON fragment).

The extraction is deliberately literal: every slot comes from a recognisable phrase, so
what the assistant says it understood can be checked against the words.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from recipes import catalog

from . import classifier
from . import settings as stated
from .schedule import find_schedule
from .text import safe_label

# --------------------------------------------------------------------------- vocabulary

FAMILY_CUES: dict[str, list[tuple[str, float]]] = {
    "forecasting": [
        (r"\bforecast\w*", 3),
        (r"\bdemand\b", 1.5),
        (r"\b(?:days?|weeks?|months?|quarters?)\s+(?:ahead|out|forward)\b", 2),
        (r"\bhorizon\b", 2),
        (r"\btime[- ]series\b", 2),
        (
            r"\bpredict\w*\s+(?:the\s+)?(?:future\s+)?(?:sales|volumes?|demand|units|calls|traffic|footfall)",
            2,
        ),
        (r"\b(?:replenishment|inventory|stock\s+levels?|staffing|call\s+volumes?|workforce\s+planning)\b", 2),
        (r"\b(?:mape|wape)\b", 2),
        (r"\bhow\s+many\s+(?:units|items|calls|orders)\b", 2),
        (r"\bforecasting\b", 3),
    ],
    "pricing": [
        (r"\bpric(?:e|es|ing)\b", 3),
        (r"\belasticit\w*", 3),
        (r"\bmark-?downs?\b", 2.5),
        (r"\bdiscount(?:s|ing)?\b", 1.5),
        (r"\bhow\s+much\s+to\s+charge\b", 3),
        (r"\bmargins?\b", 1),
        (r"\bprofit\b", 0.5),
        (r"\bprice\s+(?:optimi[sz]ation|bounds|changes?|points?)\b", 2),
        (r"\bpricing\b", 3),
    ],
    "next_best_action": [
        (r"\bnext[- ]best[- ](?:action|offer)s?\b", 6),
        (r"\bnba\b", 4),
        (r"\boffers?\b", 2.5),
        (r"\bcampaigns?\b", 1.5),
        (r"\buplift\b", 2.5),
        (r"\b(?:cross|up)[- ]?sell\w*", 2.5),
        (r"\bchurn\w*|\bretention\b|\bretain\b", 2),
        (r"\b(?:coupons?|vouchers?|incentives?)\b", 2),
        (r"\b(?:each|every|which|individual)\s+customers?\b", 1.5),
        (r"\bincremental\b", 1.5),
        (r"\btreatments?\b", 1.5),
        (r"\bpersonali[sz]\w*", 1.5),
        (r"\brecommend\w*", 1),
        (r"\bqini\b", 3),
        (r"\bwho\s+to\s+(?:target|contact|call|email)\b", 3),
    ],
    "location_scoring": [
        (r"\bsites?\b", 2),
        (r"\blocations?\b", 1.5),
        (
            r"\bnew\s+(?:stores?|branch(?:es)?|outlets?|restaurants?|shops?|pharmac(?:y|ies)|sites?|locations?)\b",
            2.5,
        ),
        (r"\bwhere\s+to\s+(?:open|put|build|locate|place)\b", 4),
        (r"\btrade[- ]areas?\b", 3),
        (r"\bcatchments?\b", 3),
        (r"\bfoot\s*(?:fall|traffic)\b", 1.5),
        (r"\breal\s+estate\b", 2),
        (r"\bwhite[- ]space\b", 3),
        (r"\bsite\s+(?:selection|scoring|potential)\b", 4),
        (r"\blocation\s+scoring\b", 5),
        (r"\bexpansion\b", 1.5),
        (r"\bopenings?\b", 1.5),
        (r"\brank\w*\s+(?:\w+\s+){0,3}(?:sites|locations|stores|branches|outlets)\b", 3),
        (r"\b(?:site|store|location|branch)\s+potential\b|\bby\s+potential\b", 2),
        (r"\bbranch\s+network\b", 2.5),
        (r"\bclosures?\b", 1.5),
    ],
}
_FAMILY_RES = {f: [(re.compile(p, re.I), w) for p, w in cues] for f, cues in FAMILY_CUES.items()}

# Canonical industry -> synonyms (longest first when matching).
INDUSTRIES: dict[str, list[str]] = {
    "grocery": ["grocery", "groceries", "grocer", "grocers", "supermarket", "supermarkets", "food retail"],
    "telco": [
        "telco",
        "telcos",
        "telecom",
        "telecoms",
        "telecommunications",
        "mobile operator",
        "mobile network",
        "broadband provider",
    ],
    "retail banking": ["retail banking", "retail bank", "banking", "bank", "banks", "credit union"],
    "insurance": ["insurance", "insurer", "insurers"],
    "fashion": ["fashion", "apparel", "clothing"],
    "pharmacy": ["pharmacy", "pharmacies", "drugstore", "drugstores", "chemist", "chemists"],
    "restaurants": [
        "restaurant",
        "restaurants",
        "qsr",
        "quick service",
        "fast food",
        "coffee shop",
        "coffee shops",
    ],
    "convenience": [
        "convenience",
        "convenience store",
        "convenience stores",
        "convenience retail",
        "fuel station",
        "fuel stations",
        "petrol station",
        "gas station",
        "gas stations",
    ],
    "e-commerce": ["e-commerce", "ecommerce", "online retail", "online shop", "webshop", "online store"],
    "utilities": ["utility", "utilities", "energy provider", "energy retailer", "electricity"],
    "hospitality": ["hotel", "hotels", "hospitality"],
    "home improvement": ["diy", "home improvement", "hardware store", "hardware stores"],
    "consumer electronics": ["consumer electronics", "electronics"],
    "airline": ["airline", "airlines"],
    "retail": ["retail", "retailer", "retailers"],
}
# Specific industries before the generic "retail" ("fashion retailer" is fashion), longest first.
_INDUSTRY_TERMS = sorted(
    ((syn, canon) for canon, syns in INDUSTRIES.items() for syn in syns),
    key=lambda x: (x[1] == "retail", -len(x[0])),
)

FAMILY_NOUNS = {
    "forecasting": "demand forecast",
    "pricing": "price optimisation",
    "next_best_action": "next best action",
    "location_scoring": "site scoring",
}

# The metric a family's "target" means when none is named (the catalog's), and aliases users type.
METRIC_ALIASES: dict[str, list[tuple[str, str]]] = {
    "forecasting": [
        ("MAPE", r"\bmape\b|mean\s+absolute\s+percentage\s+error"),
        ("WAPE", r"\bwape\b|weighted\s+(?:absolute\s+)?(?:percentage\s+)?(?:error|mape)"),
        ("RMSE", r"\brmse\b|root\s+mean\s+squared?\s+error"),
        ("MAE", r"\bmae\b|mean\s+absolute\s+error"),
        ("coverage", r"\b(?:interval\s+|prediction\s+interval\s+)?coverage\b"),
        ("MAPE", r"\b(?:forecast\s+)?error\b"),  # "error below 15%": the family's primary metric
    ],
    "pricing": [
        ("demand_mape", r"\bdemand[\s_]mape\b|\bmape\b"),
        ("revenue_lift", r"\brevenue[\s_](?:lift|uplift|gain|increase|improvement)\b"),
        ("margin_impact", r"\bmargin[\s_](?:impact|lift|uplift|gain|increase|improvement)\b"),
        ("elasticity", r"\belasticit(?:y|ies)\b"),
        ("calibration", r"\bcalibration(?:\s+error)?\b"),
    ],
    "next_best_action": [
        (
            "uplift@k",
            r"\buplift\s*@\s*(?:k\b|\d[\d.,]*\s*(?:%|k\b)?)|\buplift\s+(?:at|in\s+the\s+top)\s+(?:k|\d+\s*%)",
        ),
        (
            "precision@k",
            r"\bprecision\s*@\s*(?:k\b|\d[\d.,]*\s*(?:%|k\b)?)|\bprecision(?:\s+at\s+(?:k\b|\d+\s*%)|\b)|\bresponse\s+rate\b",
        ),
        ("qini_coefficient", r"\bqini(?:[\s_]coefficient)?\b"),
        ("auuc", r"\bauuc\b|area\s+under\s+the\s+uplift\s+curve"),
        (
            "incremental_revenue",
            r"\bincremental[\s_]revenue\b(?=\s*(?:of|at|above|over|>|>=|=|:|target|(?:must|should)(?:\s+be)?(?:\s+(?:at\s+least|above|over))?|at\s+least|≥)\s*[$€£]?\s*\d)",
        ),
        ("uplift", r"\buplift\b"),
    ],
    "location_scoring": [
        ("rank_correlation", r"\brank[\s_]correlation\b|\bspearman(?:'s)?(?:\s+(?:rank\s+)?correlation)?\b"),
        ("hit_rate@k", r"\bhit[\s_-]?rate(?:\s*@\s*(?:k\b|\d[\d.,]*\s*%?))?"),
        ("calibration", r"\bcalibration(?:\s+error)?\b"),
        ("RMSE", r"\brmse\b"),
        ("lift", r"\blift\b"),
    ],
}
_METRIC_RES = {
    f: [(name, re.compile(p, re.I)) for name, p in aliases] for f, aliases in METRIC_ALIASES.items()
}
# Metrics expressed as fractions: "12%" and "12" both mean 0.12.
FRACTION_METRICS = {
    "MAPE",
    "WAPE",
    "coverage",
    "revenue_lift",
    "margin_impact",
    "calibration",
    "demand_mape",
    "uplift",
    "uplift@k",
    "precision@k",
    "hit_rate@k",
    "rank_correlation",
}

NUMBER_WORDS = {
    "a": 1,
    "an": 1,
    "one": 1,
    "two": 2,
    "three": 3,
    "four": 4,
    "five": 5,
    "six": 6,
    "seven": 7,
    "eight": 8,
    "nine": 9,
    "ten": 10,
    "eleven": 11,
    "twelve": 12,
    "thirteen": 13,
    "fourteen": 14,
    "fifteen": 15,
    "sixteen": 16,
    "twenty": 20,
    "thirty": 30,
}
_NUM_WORD = r"(?:\d+(?:\.\d+)?|" + "|".join(NUMBER_WORDS) + ")"
UNIT_DAYS = {"hour": 1 / 24, "day": 1, "week": 7, "fortnight": 14, "month": 30.4, "quarter": 91, "year": 365}

# Capitalised words that are not client names.
_NOT_NAMES = {
    "monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday",
    "january", "february", "march", "april", "may", "june", "july", "august", "september",
    "october", "november", "december", "mape", "wape", "rmse", "mae", "psi", "ks", "api", "nba",
    "i", "the", "a", "an", "our", "my", "each", "every", "all", "next", "this", "that", "it",
    "uk", "us", "usa", "eu", "europe", "germany", "france", "spain", "italy", "netherlands",
    "nordics", "asia", "america", "london", "emea", "apac", "latam", "christmas", "easter",
    "black", "q1", "q2", "q3", "q4", "real", "realtime", "batch", "kolmogorov", "lightgbm",
    "arima", "ets", "prophet", "python", "sql", "csv", "json", "please", "thanks", "ok",
}  # fmt: skip
_NAME = r"[A-Z][\w&'.\-]*[\w](?:\s+(?:&\s+)?[A-Z][\w&'.\-]*[\w]){0,3}|[A-Z][\w]"

# --------------------------------------------------------------------------- intent

_CREATE_RE = re.compile(
    r"^(?:(?:ok(?:ay)?|yes|yep|yeah|sure|great|good|looks\s+good|perfect|fine|please|then|now|so|alright|cool)\W*)*"
    r"(?:please\s+)?(?:go\s+ahead(?:\s+and)?|do\s+it|create|save|build|make\s+the\s+(?:draft|recipe))"
    r"(?:\W+(?:it|this|that|the|a|my|draft|recipe|now|please|and|create|save|for\s+me|ahead|one|them))*\W*$",
    re.I,
)
# "create it and run a backtest": create the draft, then start a backtest run of it.
_CREATE_BACKTEST_RE = re.compile(
    r"^(?:(?:ok(?:ay)?|yes|great|good|perfect|fine|please|then|now|so|alright|cool)\W*)*(?:please\s+)?"
    r"(?:create|save|build)\s+(?:it|this|that|the\s+(?:draft|recipe))\s*(?:,\s*)?(?:and|then|,)\s+(?:then\s+)?"
    r"(?:run|start|do|kick\s+off|launch)\s+(?:a\s+|the\s+)?back-?test(?:\s+(?:run|on\s+it|of\s+it|too|as\s+well|please|now))*\W*$",
    re.I,
)
_RESET_RE = re.compile(
    r"\b(?:start\s+(?:over|again|afresh)|new\s+(?:recipe|conversation|chat|model)\b(?!\s+(?:for|to|with))|"
    r"forget\s+(?:it|that|this|everything)|reset|scratch\s+that|clear\s+(?:it|the\s+proposal))\b",
    re.I,
)
_DEFAULTS_RE = re.compile(
    r"\b(?:(?:use|keep|accept|take)\s+(?:the\s+)?(?:defaults?|baseline\s+values|starting\s+values)|defaults?\s+(?:are|is)\s+fine|"
    r"(?:just\s+)?use\s+what\s+you\s+have|that'?s\s+(?:enough|all))\b",
    re.I,
)
_SKIP_RE = re.compile(
    r"^\W*(?:skip(?:\s+(?:it|this|that))?|(?:i\s+)?don'?t\s+know|not\s+sure|no\s+idea|pass|next)\W*$", re.I
)
_SHOW_RE = re.compile(
    r"\b(?:show|display|print|see|view|what(?:'s|\s+is))\b.{0,20}\b(?:manifest|diff|proposal|changes|json)\b",
    re.I,
)
_GREETING_RE = re.compile(
    r"^\W*(?:hi|hello|hey|hallo|good\s+(?:morning|afternoon|evening)|help|what\s+can\s+you\s+do|who\s+are\s+you|thanks?|thank\s+you)\W*$",
    re.I,
)
_QUESTION_START_RE = re.compile(
    r"^\W*(?:what|which|when|why|how|should|can|could|is|are|does|do|explain|tell\s+me|describe|"
    r"what's|whats|difference|compare|define|meaning|when's)\b",
    re.I,
)
_BUILD_REQUEST_RE = re.compile(
    r"\b(?:can|could|would)\s+you\s+(?:please\s+)?(?:build|create|make|draft|set\s+up|help\s+me\s+(?:build|create|with))\b|"
    # "can you help us figure out how many parcels ...?", "could a model tell us the right discount?"
    r"\bhelp\s+(?:me|us)\s+(?:to\s+)?(?:figure\s+out|work\s+out|find\s+out|predict|forecast|estimate|decide|choose|"
    r"pick|rank|score|set|optimi[sz]e|plan|target)\b|"
    r"\b(?:can|could|would)\s+(?:a|the|your|some)\s+model\s+(?:tell|help|predict|forecast|estimate|decide|find|pick|"
    r"rank|recommend|work\s+out)\b|"
    r"\bwhat\s+(?:kind|type|sort)\s+of\s+model\s+(?:would|should|do|could|can)\s+(?:you|we|i)\s+"
    r"(?:suggest|recommend|use|need|build)\b",
    re.I,
)
# A question about the user's own business that a model answers ("which accounts should we
# visit this month?", "how much ice cream will we sell this summer?").
_BUSINESS_QUESTION_RE = re.compile(
    r"^\W*(?:which|where|who|how\s+(?:many|much)|what\s+(?:prices?|discounts?|rates?|fares?))\b", re.I
)


@dataclass
class Extraction:
    intent: str
    family: str | None = None
    family_scores: dict[str, float] = field(default_factory=dict)  # the rules' cue scores
    slots: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)
    family_probs: dict[str, float] = field(default_factory=dict)  # calibrated, {} without the model
    # The two likeliest families and the words of the message that point to each (for asking).
    family_options: list[tuple[str, list[str]]] = field(default_factory=list)


def family_scores(text: str) -> dict[str, float]:
    scores: dict[str, float] = {}
    for family, cues in _FAMILY_RES.items():
        scores[family] = sum(w for rx, w in cues if rx.search(text))
    return scores


def _cue_words(text: str, family: str) -> list[str]:
    """The phrases of ``text`` that the rules' cues for ``family`` matched, strongest first."""
    found = [(w, m.group(0).lower()) for rx, w in _FAMILY_RES[family] if (m := rx.search(text))]
    return list(dict.fromkeys(phrase for _, phrase in sorted(found, key=lambda x: -x[0])))


def rules_family(text: str, *, minimum: float = 2.0) -> str | None:
    """The family with the highest cue score (None below ``minimum`` or on a tie): the rules alone,
    used when the classifier's weights are missing."""
    ranked = sorted(family_scores(text).items(), key=lambda kv: -kv[1])
    best, second = ranked[0], ranked[1]
    if best[1] < minimum or best[1] == second[1]:
        return None
    return best[0]


# A message in a conversation about one family moves to another only on this much cue score
# (the same bar as the reply service's switch); below it, it edits the current proposal.
SWITCH_CUES = 3.0
# The classifier's probability at which a family counts as clearly named (like a cue score of 4).
CLEAR_PROBABILITY = 0.9
# Below this probability a family offered in the question gets no words quoted as its reason.
EVIDENCE_PROBABILITY = 0.02


@dataclass(frozen=True)
class FamilyReading:
    family: str | None  # None when unsure
    scores: dict[str, float]  # the rules' cue scores
    probs: dict[str, float]  # calibrated probability per family ({} without the model)
    options: list[tuple[str, list[str]]]  # the two likeliest families, with the words for each


def read_family(text: str) -> FamilyReading:
    """Which family ``text`` describes: the classifier with the rules, or the rules alone when
    the classifier's weights are missing."""
    scores = family_scores(text)
    if not classifier.available():
        ranked = sorted(catalog.FAMILIES, key=lambda f: -scores[f])
        options = [(f, _cue_words(text, f)[:3]) for f in ranked[:2]]
        return FamilyReading(rules_family(text), scores, {}, options)
    model = classifier.load()
    p = model.predict(text, scores)
    family = p.best if p.confidence >= model.threshold else None
    options = []
    for f in p.ranked[:2]:
        if p.probs[f] < EVIDENCE_PROBABILITY:
            options.append((f, []))  # a family this unlikely has no words worth quoting
            continue
        cues = _cue_words(text, f)
        extra = [w for w in p.evidence[f] if not any(w in c for c in cues)]
        options.append((f, (cues + extra)[:3]))
    return FamilyReading(family, scores, p.probs, options)


def classify_family(text: str) -> tuple[str | None, dict[str, float]]:
    """The family ``text`` describes (None when unsure) and the rules' cue scores."""
    reading = read_family(text)
    return reading.family, reading.scores


_FAMILY_NAMES = {
    "forecasting": r"\bforecast",
    "pricing": r"\bpric(?:e|es|ing)\b",
    "next_best_action": r"\bnext[- ]best\b|\bnba\b|\bactions?\b|\boffers?\b",
    "location_scoring": r"\blocations?\b|\bsites?\b",
}


def named_families(text: str) -> list[str]:
    """The families ``text`` names in so many words ("pricing", "next best action")."""
    return [f for f, rx in _FAMILY_NAMES.items() if re.search(rx, text, re.I)]


def family_choice(text: str) -> str | None:
    """The answer to "which kind of model is it?": its number in the list (1-4) or one family's name."""
    if m := re.fullmatch(r"\W*(?:number\s+|option\s+)?\(?([1-4])\)?\W*", text, re.I):
        return catalog.FAMILIES[int(m.group(1)) - 1]
    named = named_families(text)
    return named[0] if len(named) == 1 and len(text.split()) <= 8 else None


_GUIDANCE_RE = re.compile(
    r"^\W*(?:(?:what|which|when|why|how)\s+(?:is|are|was|does|do|should|would|to|many|much|exactly)\b|"
    r"which\s+(?:family|families|model|kind|type)\b|what\s+(?:kind|type)\s+of\b|explain\b|define\b|"
    r"tell\s+me\s+(?:about|more)\b|what'?s\s+(?:the\s+)?(?:difference|meaning|point)\b|difference\s+between\b|"
    r"meaning\s+of\b|is\s+it\s+better\b|how\s+(?:do|can|should)\s+(?:i|we)\s+(?:read|interpret|understand)\b)",
    re.I,
)


# Words of the workspace itself: a question using them asks for guidance ("what is WAPE?"),
# not for a model ("how many tickets will we sell?").
_WORKSPACE_TERMS_RE = re.compile(
    r"\b(?:mape|wape|rmse|mae|psi|ks|kolmogorov|drift|recipes?|levels?|metrics?|famil(?:y|ies)|qini|auuc|"
    r"uplift\s*@\s*k|precision\s*@\s*k|hit[\s_-]?rate|rank[\s_]correlation|calibration|coverage|thresholds?|"
    r"baselines?|manifests?|lineage|versions?|approv\w*|tuning|freshness|alerts?|assistant|workspace|"
    r"horizon|grain|granularity|lags?|cron|deployment|decomposition|explanations?|importances?|shap|shapley|"
    r"contributions?|waterfall|dependence|"
    r"mean|means|meaning|explain|difference|define|definition)\b",
    re.I,
)
# ... and a question about the user's own business says whose or which ("we", "our", "each
# store") or asks what will happen ("will", "would"); "what is uplift modelling?" does neither.
_OWN_BUSINESS_RE = re.compile(
    r"\b(?:we|we're|we've|our|ours|us|i|i'm|my|each|every|will|would|should|this|these)\b", re.I
)


def mentions_workspace_or_business(text: str) -> bool:
    """Whether ``text`` uses the workspace's own terms or speaks of the user's business."""
    return bool(_WORKSPACE_TERMS_RE.search(text) or _OWN_BUSINESS_RE.search(text))


def detect_intent(
    text: str,
    *,
    slot_count: int,
    has_proposal: bool = False,
    family_score: float = 0,
    family_clear: bool = False,
    family_known: bool = False,
) -> str:
    """create | reset | defaults | skip | show | greeting | question | describe.

    A question-shaped message is a guidance question when it asks for an explanation ("when
    should I use KS?") or carries nothing to build from; "which customers should get the offer?
    we ran a randomised campaign" describes a model and is read as a description, and so is a
    question about the user's own business whose family is clear (``family_clear``) and which uses
    none of the workspace's own terms ("how many tickets will we sell next month?")."""
    t = text.strip()
    if not t:
        return "empty"
    words = len(t.split())
    if words <= 10 and (_CREATE_RE.match(t) or _CREATE_BACKTEST_RE.match(t)):
        return "create"
    if words <= 12 and _RESET_RE.search(t):
        return "reset"
    if _DEFAULTS_RE.search(t) and slot_count == 0:
        return "defaults"
    if words <= 5 and _SKIP_RE.match(t):
        return "skip"
    if words <= 10 and _SHOW_RE.search(t) and slot_count == 0:
        return "show"
    if words <= 6 and _GREETING_RE.match(t):
        return "greeting"
    question_shaped = t.rstrip().endswith("?") or bool(_QUESTION_START_RE.match(t))
    if question_shaped and not _BUILD_REQUEST_RE.search(t):
        # "When should I use KS?" asks for guidance; "can we make it weekly?" edits the proposal.
        own = _OWN_BUSINESS_RE.search(t) and not _WORKSPACE_TERMS_RE.search(t)
        if own and (family_clear or (family_known and _BUSINESS_QUESTION_RE.match(t))):
            return "describe"
        if _GUIDANCE_RE.match(t) or slot_count == 0:
            return "question"
        if slot_count < 2 and not has_proposal and family_score < 4:
            return "question"
    return "describe"


# --------------------------------------------------------------------------- numbers


def _num(s: str) -> float:
    s = s.strip().lower()
    if s in NUMBER_WORDS:
        return float(NUMBER_WORDS[s])
    return float(s.replace(",", ""))


def _clean_float(v: float) -> float | int:
    v = round(v, 6)
    return int(v) if v == int(v) and abs(v) >= 1 else v


def _duration_days(amount: str, unit: str) -> int:
    unit = unit.lower().removesuffix("s")
    return max(1, round(_num(amount) * UNIT_DAYS[unit]))


def _metric_value(metric: str, raw: str, pct: str | None) -> float:
    v = _num(raw)
    if pct:
        v = v / 100
    elif metric in FRACTION_METRICS and abs(v) > 1 and abs(v) <= 100:
        v = v / 100
    return _clean_float(v)


# --------------------------------------------------------------------------- slot readers


def _industry(text: str) -> str | None:
    low = text.lower()
    for syn, canon in _INDUSTRY_TERMS:
        if re.search(rf"(?<![\w-]){re.escape(syn)}(?![\w-])", low):
            return canon
    return None


def _is_name(candidate: str) -> bool:
    words = candidate.split()
    if not words or words[0].lower().strip(".'") in _NOT_NAMES:
        return False
    if _industry(candidate) and len(words) <= 2:
        return False
    if candidate.isupper() and len(candidate) <= 2:
        return False
    return True


def _looks_like_company(answer: str) -> bool:
    """'FreshMart', 'Acme Foods Ltd', 'ACME' look like names; 'pet supplies' like an industry."""
    words = answer.split()
    if re.search(r"\b(?:ltd|inc|plc|gmbh|llc|ag|sa|bv|corp|co)\.?$", answer, re.I):
        return True
    if any(re.search(r"[a-z][A-Z]", w) for w in words):
        return True
    return (
        all(w[:1].isupper() for w in words)
        and _industry(answer) is None
        and words[0].lower() not in _NOT_NAMES
    )


def _trim_name(candidate: str) -> str:
    words = candidate.split()
    while words and words[-1].lower().strip(".'") in _NOT_NAMES:
        words.pop()
    return " ".join(words).strip(" .,'&-")


_CLIENT_PATTERNS = [
    re.compile(
        r"(?i:\b(?:client|customer|account|retailer|chain|company|bank|operator|brand|banner|group|telco|insurer|grocer)\s+"
        r"(?:called|named)\s+)[\"'“]?(?P<c>" + _NAME + ")"
    ),
    re.compile(
        r"(?i:\b(?:for|with)\s+(?:our\s+|the\s+|a\s+)?(?:client|customer|account)\s*:?\s+)[\"'“]?(?P<c>"
        + _NAME
        + ")"
    ),
    re.compile(r"(?i:\bclient\s*[:=]\s*)[\"'“]?(?P<c>" + _NAME + ")"),
    re.compile(r"(?i:\bfor\s+)(?P<c>" + _NAME + r")(?!\w)"),
    re.compile(
        r"(?<![\w])(?P<c>" + _NAME + r")['’]s\s+(?:\d[\d,]*\s+)?(?:\w+\s+)?"
        r"(?i:stores|shops|sites|customers|branches|outlets|products|restaurants|pharmacies|network|portfolio|subscribers|members)\b"
    ),
]


def _client(text: str) -> str | None:
    for rx in _CLIENT_PATTERNS:
        for m in rx.finditer(text):
            candidate = _trim_name(m.group("c"))
            if candidate and _is_name(candidate):
                label = safe_label(candidate)
                if label:
                    return label
    return None


_PRICE_PERIOD_RE = re.compile(
    r"\b(?P<p>hourly|daily|weekly|monthly|quarterly)\s+(?:[a-z-]+\s+){0,2}(?:prices?|pricing|rates?|tariffs?|fares?|"
    r"markdowns?|discounts?)\b|\b(?:prices?|rates?|tariffs?|fares?)\s+(?:[a-z-]+\s+){0,2}(?P<q>hourly|daily|weekly|monthly)\b",
    re.I,
)


def _horizon(text: str, *, bare: bool = False, loose: bool = True) -> int | None:
    """Days ahead: "8 weeks ahead", "for the coming 10 days", "next quarter", "a 12-week forecast",
    "tomorrow". ``loose`` (a forecasting conversation) also reads "next month" and "for 13 weeks"
    without a forecasting word beside them."""
    unit = r"(?P<u>day|week|month|quarter|year|fortnight|hour)s?"
    patterns = [
        rf"\b(?P<n>{_NUM_WORD})[\s-]*{unit}[\s-]+(?:ahead|out|forward|into\s+the\s+future|horizon|in\s+advance)\b",
        rf"\b(?:horizon|look[- ]?ahead|lead\s+time)\s*(?:of|:|=|is|to|should\s+be)?\s*(?P<n>{_NUM_WORD})[\s-]*{unit}\b",
        rf"\b(?:next|coming|following)\s+(?P<n>{_NUM_WORD})\s+{unit}\b",
        rf"\b(?:forecast\w*|predict\w*)\s+(?:\w+\s+){{0,3}}?(?:for\s+)?(?P<n>{_NUM_WORD})\s+{unit}\s+(?:ahead|out)\b",
        rf"\b(?P<n>{_NUM_WORD})[\s-]+{unit}[\s-]+(?:(?:[\w-]+)[\s-]+){{0,3}}?(?:forecasts?|outlook|projections?|view|plan)\b",
        rf"\b(?P<n>{_NUM_WORD})\s+{unit}\s+of\s+(?:(?:[\w-]+)\s+){{0,3}}?(?:forecasts?|projections?|predictions?)\b",
    ]
    if loose:
        patterns.append(
            rf"\bfor\s+(?:the\s+)?(?P<n>{_NUM_WORD})\s+{unit}\b(?!\s+(?:of\s+(?:history|data)|old|ago|before|after))"
        )
    if bare:
        patterns.append(rf"\b(?P<n>{_NUM_WORD})[\s-]*{unit}\b")
    for p in patterns:
        m = re.search(p, text, re.I)
        if m:
            return _duration_days(m.group("n"), m.group("u"))
    m = re.search(
        r"\b(?P<all>(?:the\s+)?whole\s+of\s+)?(?:the\s+)?(?:next|coming)\s+(?P<u>week|fortnight|month|quarter|year)\b",
        text,
        re.I,
    )
    if m and (loose or re.search(r"forecast|predict|ahead|horizon|project", text, re.I)):
        return round(UNIT_DAYS[m.group("u").lower()])
    if re.search(r"\b(?:tomorrow|tomorow|tmrw|day[- ]ahead)\b", text, re.I):
        return 1
    return None


# The forecast frequencies as people say them (recipes.forecasting_config.FREQUENCIES), the
# earliest mention winning: "weekly, not daily" is weekly.
_FREQUENCY_RES = {
    "H": r"hourly|per\s+hour|by\s+hour|each\s+hour|every\s+hour|hour[- ]level|hour[\s-]by[\s-]hour|intraday",
    "D": r"daily|per\s+day|by\s+day|each\s+day|every\s+day|day[- ]level|day[\s-]by[\s-]day",
    "W": r"weekly|per\s+week|by\s+week|each\s+week|every\s+week|week[- ]level|week[\s-]by[\s-]week|weekly\s+buckets",
    "M": r"monthly|per\s+month|by\s+month|each\s+month|every\s+month|month[- ]level|month[\s-]by[\s-]month",
    "Q": r"quarterly|per\s+quarter|by\s+quarter|each\s+quarter|quarter[- ]level",
}
_BARE_FREQUENCY = {"H": r"hours?", "D": r"days?", "W": r"weeks?", "M": r"months?", "Q": r"quarters?"}


def _frequency(text: str, *, bare: bool = False) -> tuple[str | None, str | None]:
    """(the frequency key "H"|"D"|"W"|"M"|"Q" or None, a note when the wording asks for
    something the family cannot do). ``bare``: an answer to "which frequency?" may be one
    word ("weeks")."""
    found = []
    for key, pattern in _FREQUENCY_RES.items():
        m = re.search(rf"\b(?:{pattern})\b", text, re.I)
        if m:
            found.append((m.start(), key))
    if found:
        return min(found)[1], None
    if bare:
        for key, pattern in _BARE_FREQUENCY.items():
            if re.search(rf"\b(?:{pattern})\b", text, re.I):
                return key, None
    # A horizon in days or hours, or "tomorrow", says the periods when nothing else does.
    if re.search(r"\b(?:next|coming|for(?:\s+the)?(?:\s+next)?)\s+\d+\s+hours\b", text, re.I):
        return "H", None
    if re.search(
        r"\b(?:next|coming|for(?:\s+the)?(?:\s+next)?)\s+(?:\d+|two|three|five|seven|ten|fourteen)\s+days\b"
        r"|\b(?:\d+|two|three|five|seven|ten|fourteen)\s+days\s+(?:ahead|out)\b|\b(?:tomorrow|tomorow)\b",
        text,
        re.I,
    ):
        return "D", None
    if re.search(r"\b(?:yearly|per\s+year|by\s+the\s+minute|per\s+minute)\b", text, re.I):
        return None, (
            "The forecasting family works on hourly, daily, weekly, monthly or quarterly data; "
            "I left the frequency as it was."
        )
    return None, None


_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"


def _labels(text: str) -> list[str] | None:
    m = re.search(
        rf"\b(?:labels?|target\s+columns?|label\s+columns?)\s*(?:is|are|=|:|should\s+be|column)?\s*[`\"']?(?P<l>{_IDENT}(?:[`\"']?\s*(?:,|and)\s*[`\"']?{_IDENT})*)",
        text,
        re.I,
    )
    if not m:
        return None
    names = [
        n for n in re.findall(_IDENT, m.group("l")) if n.lower() not in ("and", "is", "are", "the", "column")
    ]
    return names or None


def _min_history(text: str) -> str | None:
    m = re.search(
        rf"\b(?:at\s+least|minimum(?:\s+of)?|min\.?|needs?|requires?)\s+(?P<n>{_NUM_WORD})\s+(?P<u>year|month|week|day)s?\s+of\s+(?:history|data)\b",
        text,
        re.I,
    )
    if not m:
        return None
    n = int(_num(m.group("n")))
    return f"{n} {m.group('u').lower()}{'s' if n != 1 else ''}"


def _metric_spans(text: str, family: str) -> list[tuple[str, int, int]]:
    """(metric, start, end) of each metric mention, the most specific alias winning."""
    taken: list[tuple[str, int, int]] = []
    for name, rx in _METRIC_RES.get(family, []):
        for m in rx.finditer(text):
            if any(s < m.end() and m.start() < e for _, s, e in taken):
                continue
            taken.append((name, m.start(), m.end()))
    return sorted(taken, key=lambda t: t[1])


# Metric names that are a metric whatever surrounds them; the others ("uplift", "lift",
# "calibration", "elasticity", "error", "coverage") are also everyday words of the family and
# count as a metric named without a number only after an evaluation word.
_ACRONYM_METRIC_RE = re.compile(
    r"^(?:mape|wape|rmse|mae|auuc|qini(?:[\s_]coefficient)?|spearman\S*|rank[\s_]correlation|hit[\s_-]?rate.*|"
    r"precision\s*@\s*k|uplift\s*@\s*k|demand[\s_]mape|mean\s+absolute.*|root\s+mean.*|weighted.*|area\s+under.*)$",
    re.I,
)
_EVALUATION_CUE_RE = re.compile(
    r"\b(?:judged?|judging|measured?|measuring|evaluated?|evaluating|assess(?:ed)?|track(?:ed|ing)?|report(?:ed|ing)?|"
    r"metrics?|kpis?|benchmark(?:ed)?|validated?|compared?|care\s+about|look\s+at|focus\s+on|in\s+terms\s+of|"
    r"success|judge\s+(?:it|them|the\s+model)\s+(?:on|by|with))\b[^.;,\n]{0,25}$",
    re.I,
)


def _named_as_metric(text: str, name: str, start: int, end: int) -> bool:
    """Whether a metric mention without a number names the metric (not the everyday word)."""
    if _ACRONYM_METRIC_RE.match(text[start:end].strip()):
        return True
    if name in ("MAPE",):  # "error" alone: only with a number (the family's primary metric)
        return False
    after = text[end : end + 30]
    return bool(
        _EVALUATION_CUE_RE.search(text[max(0, start - 40) : start])
        or re.match(
            r"\s+(?:as\s+(?:the|our)\s+(?:main\s+|primary\s+|key\s+)?(?:metric|kpi|measure))", after, re.I
        )
    )


# Metrics users name that the family does not compute: said back, never mapped silently.
FOREIGN_METRICS: dict[str, str] = {
    "accuracy": r"\baccuracy\b",
    "AUC": r"\bauc\b|\broc(?:[\s-]auc)?\b|area\s+under\s+the\s+(?:roc\s+)?curve",
    "F1": r"\bf1(?:[\s-]score)?\b",
    "recall": r"\brecall\b",
    "R²": r"\br2\b|\br²|\br[\s-]squared\b",
    "log loss": r"\blog[\s-]?loss\b|\bcross[\s-]entropy\b",
    "MAPE": r"\bmape\b",
    "WAPE": r"\bwape\b",
    "RMSE": r"\brmse\b",
    "MAE": r"\bmae\b",
    "SMAPE": r"\bs-?mape\b",
    "MASE": r"\bmase\b",
    "Gini": r"\bgini\b",
    "precision": r"\bprecision\b",
}
_FOREIGN_RES = {name: re.compile(p, re.I) for name, p in FOREIGN_METRICS.items()}


def foreign_metrics(text: str, family: str, read: dict) -> list[str]:
    """Metric names in ``text`` that are not metrics of ``family`` (and were not read as one
    of its metrics): said back, so "AUC above 0.8" on a pricing recipe is not dropped silently."""
    own = {m.lower() for m in catalog.METRICS.get(family, {})}
    spans = [(s, e) for _, s, e in _metric_spans(text, family)]
    out = []
    for name, rx in _FOREIGN_RES.items():
        if name.lower() in own or name in read:
            continue
        for m in rx.finditer(text):
            if any(s <= m.start() < e for s, e in spans):
                continue
            if name == "accuracy" and family in ("forecasting", "pricing") and read:
                break  # "90% accuracy" was read as the family's error metric
            if name == "precision" and family == "next_best_action":
                break
            out.append(name)
            break
    return out


_VALUE_RE = re.compile(
    r"(?P<sign>[-−])?\s?[$€£]?(?P<num>\d*\.\d+|\d+(?:\.\d+)?)\s*(?P<pct>%|percent\b|pct\b|per\s+cent\b|(?P<mult>[km])\b)?",
    re.I,
)
# A number followed by one of these is a duration or a count, not a metric's value.
_NOT_A_VALUE_RE = re.compile(
    r"\s*(?:years?|months?|weeks?|days?|hours?|stores?|sites?|customers?|products?|skus?|series|rows)\b", re.I
)


def _role(words: str) -> str | None:
    w = words.lower()
    if re.search(r"\bwarn", w):
        return "threshold_warning"
    if re.search(r"\b(?:crit|alert|alarm|page)", w):
        return "threshold_critical"
    if re.search(r"\b(?:target|goal|aim)", w):
        return "target"
    return None


def _metrics(text: str, family: str) -> tuple[dict[str, dict[str, float]], list[tuple[int, int]]]:
    """{metric: {field: value}} and the spans read, for "MAPE under 12%", "12% MAPE",
    "MAPE warning at 15%", "rank correlation at least 0.8", "90% accuracy"."""
    out: dict[str, dict[str, float]] = {}
    spans: list[tuple[int, int]] = []
    mentions = _metric_spans(text, family)
    for i, (name, start, end) in enumerate(mentions):
        stop = mentions[i + 1][1] if i + 1 < len(mentions) else len(text)
        window_end = min(stop, end + 90)
        sentence_end = re.search(r"[;\n]|\.(?:\s|$)", text[end:window_end])
        if sentence_end:
            window_end = end + sentence_end.start()
        before = text[max(0, start - 30) : start]
        cursor = end
        found_any = False
        for vm in _VALUE_RE.finditer(text, end, window_end):
            gap = text[cursor : vm.start()]
            compared = re.search(
                r"\b(?:should|must|needs?\s+to|has\s+to)\s+be\b|\bat\s+(?:least|most)\b", gap, re.I
            )
            if len(gap) > (50 if compared else 35) or re.search(r"\b(?:top|best|first)\s*$", gap, re.I):
                break
            # "MAPE under 12% for 300 stores": the first number is the target; later ones
            # need a role word (warning / critical) in front of them.
            role = _role(gap) or (_role(before) if not found_any else None)
            if found_any and role is None:
                break
            if not found_any and role is None:
                if re.search(r"[a-z]{3,}\s+[a-z]{3,}\s+[a-z]{3,}\s+[a-z]{3,}", gap, re.I):
                    break  # too many words between the metric and the number
                role = "target"
            if not vm.group("pct") and _NOT_A_VALUE_RE.match(text, vm.end()):
                break  # "elasticities using 3 years of history"
            value = _metric_value(name, vm.group("num"), None if vm.group("mult") else vm.group("pct"))
            if vm.group("mult"):
                value = _clean_float(value * (1000 if vm.group("mult").lower() == "k" else 1_000_000))
            if vm.group("sign"):
                value = -value
            out.setdefault(name, {})[role] = value
            spans.append((start, vm.end()))
            found_any = True
            cursor = vm.end()
        if not found_any:
            # "12% MAPE", "a 0.8 rank correlation"
            pm = re.search(
                rf"(?<!top\s)(?<![\d.])(?P<sign>[-−])?(?P<num>\d*\.\d+|\d+(?:\.\d+)?|\b{_NUM_WORD})\s*"
                r"(?P<pct>%|percent|per\s+cent)?\s*$",
                before,
                re.I,
            )
            if pm and (pm.group("pct") or "." in pm.group("num")):
                value = _metric_value(name, pm.group("num"), pm.group("pct"))
                out.setdefault(name, {})[_role(before) or "target"] = -value if pm.group("sign") else value
                spans.append((start - len(before) + pm.start(), end))
            elif name not in out and _named_as_metric(text, name, start, end):
                # "judge it with AUUC", "we track WAPE": the metric, without a target (the
                # proposal says it back and still asks for a number).
                out[name] = {}
                spans.append((start, end))
    if family == "next_best_action" and "incremental_revenue" not in out:
        # "at least 50k incremental revenue": the number first, with a thousands suffix.
        inc = re.search(
            r"\b(?:at\s+least|min(?:imum)?(?:\s+of)?|over|above|more\s+than)\s+[$€£]?(?P<n>\d+(?:\.\d+)?)\s*(?P<s>[km])?\s+"
            r"(?:of\s+)?(?:extra\s+|additional\s+)?incremental\s+revenue\b",
            text,
            re.I,
        )
        if inc:
            scale = {"k": 1000, "m": 1_000_000}.get((inc.group("s") or "").lower(), 1)
            out["incremental_revenue"] = {"target": _clean_float(float(inc.group("n")) * scale)}
            spans.append((inc.start(), inc.end()))
    if family in ("forecasting", "pricing"):
        acc = re.search(
            r"(?P<n>\d+(?:\.\d+)?)\s*%\s*(?:forecast\s+)?accura(?:cy|te)\b|\baccuracy\s+(?:of|above|over|at\s+least|>=?|≥)?\s*(?P<n2>\d+(?:\.\d+)?)\s*%",
            text,
            re.I,
        )
        if acc:
            metric = "MAPE" if family == "forecasting" else "demand_mape"
            pct = float(acc.group("n") or acc.group("n2"))
            if 0 < pct < 100 and metric not in out:
                out[metric] = {"target": _clean_float(1 - pct / 100)}
                spans.append((acc.start(), acc.end()))
    if family == "forecasting" and not out:
        # "within about 20%", "off by no more than 10 percent": the error, the family's primary metric.
        within = re.search(
            rf"\b(?:within|off\s+by\s+(?:no\s+more\s+than|at\s+most|less\s+than)|accurate\s+to(?:\s+within)?)\s+"
            rf"(?:about\s+|roughly\s+|around\s+|\+/?-\s*|±\s*)?(?P<n>{_NUM_WORD})\s*(?:%|percent\b|per\s+cent\b)",
            text,
            re.I,
        )
        if within and 0 < _num(within.group("n")) < 100:
            out["MAPE"] = {"target": _clean_float(_num(within.group("n")) / 100)}
            spans.append((within.start(), within.end()))
    return out, spans


def _drift(text: str) -> dict[str, Any]:
    out: dict[str, Any] = {}
    ks = re.search(r"\bks\b|kolmogorov|\bks[- ]test\b", text, re.I)
    psi = re.search(r"\bpsi\b|population\s+stability", text, re.I)
    if ks and psi:
        pick = re.search(
            r"\b(?:use|using|switch(?:ing)?\s+to|with|prefer|change\s+(?:it\s+)?to|set\s+(?:it\s+)?to|go\s+with)\s+(?:the\s+)?(?:a\s+)?"
            r"(?P<m>ks|psi|kolmogorov|population)",
            text,
            re.I,
        )
        instead = re.search(r"\binstead\s+of\s+(?:the\s+)?(?P<m>ks|psi|kolmogorov|population)", text, re.I)
        if pick:
            out["drift_method"] = "KS" if pick.group("m").lower() in ("ks", "kolmogorov") else "PSI"
        elif instead:
            out["drift_method"] = "PSI" if instead.group("m").lower() in ("ks", "kolmogorov") else "KS"
        else:
            out["drift_method"] = "KS" if ks.start() < psi.start() else "PSI"
    elif ks:
        out["drift_method"] = "KS"
    elif psi:
        out["drift_method"] = "PSI"
    m = re.search(
        r"\b(?:psi|ks|drift)\b(?:[\s-]+(?:statistic|score|threshold|alert|limit|level|cut-?off|test))*\s*"
        r"(?:of|at|to|=|:|>|above|over|is|should\s+be|exceeds?|beyond)?\s*(?P<v>\d*\.\d+|\d+(?:\.\d+)?)\s*(?P<pct>%)?",
        text,
        re.I,
    ) or re.search(
        r"\bthreshold\s+(?:for\s+|on\s+)?(?:the\s+)?(?:psi|ks|drift)\b\s*(?:of|at|to|=|:|is)?\s*(?P<v>\d*\.\d+|\d+(?:\.\d+)?)\s*(?P<pct>%)?",
        text,
        re.I,
    )
    if m:
        v = float(m.group("v"))
        out["drift_threshold"] = _clean_float(v / 100 if m.group("pct") else v)
    return out


def _freshness(text: str, *, bare: bool = False) -> float | None:
    unit = r"(?P<u>hours?|hrs?|h|days?|d|weeks?|minutes?|mins?)\b"
    patterns = [
        rf"\b(?:no|not)\s+older\s+than\s+(?P<n>{_NUM_WORD})\s*{unit}",
        rf"\b(?:at\s+most|max(?:imum)?|within|less\s+than|under|up\s+to)\s+(?P<n>{_NUM_WORD})\s*{unit}\s+old\b",
        rf"\bfresh(?:ness|er)?\s*(?:of|:|=|within|under|<|than|limit\s+of)?\s*(?P<n>{_NUM_WORD})\s*{unit}",
        rf"\bstale\s+(?:after|beyond|if\s+older\s+than)\s+(?P<n>{_NUM_WORD})\s*{unit}",
        rf"\b(?:data|features?|inputs?)\s+(?:must\s+be\s+|should\s+be\s+)?(?:at\s+most|max(?:imum)?|under|less\s+than)\s+(?P<n>{_NUM_WORD})\s*{unit}\s+old\b",
        rf"\bmax(?:imum)?[\s_]age(?:[\s_]hours)?\s*(?:of|:|=|is)?\s*(?P<n>{_NUM_WORD})\s*{unit}",
    ]
    if bare:
        patterns.append(rf"\b(?P<n>{_NUM_WORD})\s*{unit}")
    for p in patterns:
        m = re.search(p, text, re.I)
        if m:
            n = _num(m.group("n"))
            u = m.group("u").lower()
            if u.startswith("d"):
                hours = n * 24
            elif u.startswith("w"):
                hours = n * 24 * 7
            elif u.startswith("m"):
                hours = n / 60
            else:
                hours = n
            return _clean_float(hours) if hours > 0 else None
    return None


def _deployment_mode(text: str) -> str | None:
    realtime = re.search(
        r"\breal[- ]?time\b|\brealtime\b|\b(?:via|through|as|behind)\s+(?:an?\s+)?(?:rest\s+)?api\b|\bapi\b|"
        r"\bonline\s+(?:scoring|inference|serving|predictions?)\b|\blow[- ]latency\b|\blive\s+scoring\b|\bon\s+every\s+request\b|\binstant(?:ly)?\b",
        text,
        re.I,
    )
    batch = re.search(
        r"\bbatch\b|\boffline\b|\bovernight\s+(?:run|job|scoring)\b|\bin\s+bulk\b|\bbulk\s+scoring\b",
        text,
        re.I,
    )
    if realtime and batch:
        return (
            "realtime"
            if realtime.start() > batch.start() and re.search(r"instead|rather|not\s+batch", text, re.I)
            else (
                "batch"
                if re.search(r"\b(?:not|no)\s+(?:real[- ]?time|api)\b|instead\s+of\s+real", text, re.I)
                else "realtime"
            )
        )
    if realtime:
        return "realtime"
    if batch:
        return "batch"
    return None


def _objective(text: str, *, bare: bool = False) -> str | None:
    m = re.search(
        r"\b(?:maximi[sz]e|maximi[sz]ing|optimi[sz]e|optimi[sz]ing|for|grow|boost|increase|improve|objective(?:\s+is)?|goal(?:\s+is)?|"
        r"focus\s+on|drive|prioriti[sz]e)\s+(?:the\s+|our\s+|total\s+|gross\s+|overall\s+)*(?P<o>revenue|sales|turnover|margins?|profits?|profitability)\b"
        r"|\b(?P<o2>revenue|margin|profit)\s+(?:objective|maximi[sz]ation|optimi[sz]ation)\b",
        text,
        re.I,
    )
    word = (m.group("o") or m.group("o2")).lower() if m else None
    if word is None and bare:
        b = re.search(r"\b(?P<o>revenue|sales|turnover|margins?|profits?)\b", text, re.I)
        word = b.group("o").lower() if b else None
    if word is None:
        return None
    return "revenue" if word in ("revenue", "sales", "turnover") else "margin"


def _price_bounds(text: str, *, bare: bool = False) -> dict[str, float] | None:
    m = re.search(
        r"\bbetween\s*[-−]\s*(?P<a>\d+(?:\.\d+)?)\s*%\s*and\s*\+?\s*(?P<b>\d+(?:\.\d+)?)\s*%", text, re.I
    )
    if m:
        return {
            "min_change": -_clean_float(float(m.group("a")) / 100),
            "max_change": _clean_float(float(m.group("b")) / 100),
        }
    pricey = re.search(r"\bpric|\brates?\b|\btariffs?\b|\bfares?\b|\bpremiums?\b", text, re.I) or bare
    m = re.search(r"(?:±|\+/-|\+-|plus\s+or\s+minus)\s*(?P<a>\d+(?:\.\d+)?)\s*%", text, re.I)
    if m and pricey:
        v = _clean_float(float(m.group("a")) / 100)
        return {"min_change": -v, "max_change": v}
    m = re.search(
        r"\b(?:within|by\s+at\s+most|at\s+most|no\s+more\s+than|(?:never\s+)?more\s+than|"
        r"max(?:imum)?(?:\s+(?:price\s+)?(?:change|move|movement|increase)s?)?(?:\s+(?:of|is))?|up\s+to|"
        r"limit(?:ed)?\s+to|capped\s+at|cap(?:ped)?\s+(?:at|of)|under|below|less\s+than)\s+(?:±\s*|\+/-\s*)?"
        r"(?P<a>\d+(?:\.\d+)?)\s*%(?P<off>\s+off\b)?",
        text,
        re.I,
    )
    if m:
        ctx = text[max(0, m.start() - 50) : m.end() + 50]
        if bare or re.search(
            r"\bpric|\bchange|\bincrease|\bdiscount|\bmov(?:e|ing)\b|\bmarkdown|\btariff|\bfare|\brent\b|\brates?\b|\bpremium",
            ctx,
            re.I,
        ):
            v = _clean_float(float(m.group("a")) / 100)
            if m.group("off") or re.search(r"\bmark-?downs?\b", ctx, re.I):
                return {"min_change": -v, "max_change": 0}  # "never more than 50% off": only down
            return {"min_change": -v, "max_change": v}
    if bare:
        m = re.search(r"(?P<a>\d+(?:\.\d+)?)\s*%", text)
        if m:
            v = _clean_float(float(m.group("a")) / 100)
            return {"min_change": -v, "max_change": v}
    return None


def _k(text: str, *, bare: bool = False) -> float | None:
    m = (
        re.search(
            r"\b(?:top|best|highest[- ]ranked|top[- ]ranked|first)\s+(?P<n>\d+(?:\.\d+)?)\s*(?:%|percent\b)",
            text,
            re.I,
        )
        or re.search(
            r"\b(?:target|contact|reach|treat|shortlist|select|pick|call|email|mail|send\s+(?:it\s+|offers?\s+|the\s+offer\s+)?to)\w*\s+"
            r"(?:the\s+|only\s+|maybe\s+|about\s+|around\s+|roughly\s+)?(?:top\s+|best\s+)?"
            r"(?P<n>\d+(?:\.\d+)?)\s*(?:%|percent\b)",
            text,
            re.I,
        )
        or re.search(
            r"\b(?:precision|uplift|hit[\s-]?rate|response\s+rate)\s*(?:at|in\s+the\s+top|@)\s*(?P<n>\d+(?:\.\d+)?)\s*(?:%|percent\b)",
            text,
            re.I,
        )
        or re.search(
            r"\b(?:at\s+most|no\s+more\s+than|up\s+to|max(?:imum)?)\s+(?P<n>\d+(?:\.\d+)?)\s*(?:%|percent\b)\s+of\s+"
            r"(?:the\s+|our\s+)?(?:base|customers|members|list|book|portfolio|candidates|sites|accounts)\b",
            text,
            re.I,
        )
    )
    if m is None and (
        tile := re.search(r"\btop\s+(?P<t>decile|quintile|quartile|tenth|fifth|half)\b", text, re.I)
    ):
        return {"decile": 0.1, "tenth": 0.1, "quintile": 0.2, "fifth": 0.2, "quartile": 0.25, "half": 0.5}[
            tile.group("t").lower()
        ]
    if m is None and bare:
        m = re.search(r"(?P<n>\d+(?:\.\d+)?)\s*(?:%|percent\b)", text, re.I) or re.search(
            r"\b(?P<n>0?\.\d+)\b", text
        )
        if m and "." in m.group("n") and float(m.group("n")) < 1 and "%" not in m.group(0):
            return _clean_float(float(m.group("n")))
    if not m:
        return None
    v = float(m.group("n")) / 100
    return _clean_float(v) if 0 < v < 1 else None


def _nba_goal(text: str) -> str | None:
    """What the offers should maximise: the metric that measures it (no manifest change; it
    becomes the metric a bare "target 1500" refers to)."""
    m = re.search(
        r"\b(?:maximi[sz]e|maximi[sz]ing|increase|grow|boost|drive|optimi[sz]e)\s+(?:the\s+)?(?P<g>incremental\s+revenue|revenue|"
        r"conversions?|response(?:\s+rate)?|uplift|sales)\b",
        text,
        re.I,
    )
    if not m:
        return None
    g = m.group("g").lower()
    return "incremental_revenue" if "revenue" in g or g == "sales" else "uplift@k"


_TREATMENT_NOUNS = r"(?:offers?|vouchers?|coupons?|discounts?|calls?|letters?|mailings?|messages?|contacts?|treatments?|incentives?|gifts?)"


def _offer_cost(text: str) -> float | None:
    """The cost of one treatment: "each offer costs us about $5", "a €10 voucher", "each call
    costs about 4 GBP"."""
    m = re.search(
        rf"\b(?:each\s+|an?\s+|the\s+|every\s+)?(?:[\w-]+\s+)?{_TREATMENT_NOUNS}\s+costs?\s+(?:us\s+)?(?:about\s+|around\s+|roughly\s+|~)?"
        r"[$€£]?\s*(?P<v>\d+(?:\.\d+)?)"
        rf"|\bcost\s+(?:per|of\s+(?:an?|each|the))\s+{_TREATMENT_NOUNS}\s+(?:is\s+|of\s+)?(?:about\s+)?[$€£]?\s*(?P<v2>\d+(?:\.\d+)?)"
        rf"|\b(?:an?|the|our)\s+[$€£]\s*(?P<v3>\d+(?:\.\d+)?)\s+{_TREATMENT_NOUNS}\b",
        text,
        re.I,
    )
    if not m:
        return None
    return _clean_float(float(m.group("v") or m.group("v2") or m.group("v3")))


def _scale(text: str) -> dict[str, Any] | None:
    m = re.search(
        r"\b(?P<n>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?\s*[kK]?|\d+)\s+(?:[a-zA-Z-]+\s+){0,2}?"
        r"(?P<u>stores|shops|sites|locations|branches|customers|products|skus|items|series|outlets|restaurants|"
        r"pharmacies|cafes|hotels|stations|subscribers|members|users|accounts|households|candidate\s+sites)\b",
        text,
        re.I,
    )
    if not m:
        return None
    raw = m.group("n").replace(",", "").strip()
    n = float(raw[:-1]) * 1000 if raw.lower().endswith("k") else float(raw)
    return {"count": int(n), "unit": m.group("u").lower()}


def _name(text: str) -> tuple[str, tuple[int, int]] | None:
    """("Grocery weekly v2", span) for "call it Grocery weekly v2" / "name: ..."."""
    m = re.search(
        r"\b(?:call|name|title)\s+it\s+[\"'“]?(?P<n>[^\"'”\n.,;!?]{2,80})", text, re.I
    ) or re.search(
        r"\b(?:recipe\s+)?name\s*(?:should\s+be|:|=)\s*[\"'“]?(?P<n>[^\"'”\n.,;!?]{2,80})", text, re.I
    )
    if not m:
        return None
    label = safe_label(m.group("n"), max_len=80)
    return (label, (m.start(), m.end())) if label else None


def _bare_edits(text: str) -> dict[str, Any]:
    """'change the target to 10%', 'warning threshold 15%', 'change the threshold to 0.15'
    without a metric name (metric mentions are masked out of ``text`` before): the caller
    decides which metric (or the drift threshold)."""
    out: dict[str, Any] = {}

    # "target" as a noun ("change the target to 10%"), not the verb ("target the top 5%").
    m = re.search(
        r"\b(?P<role>target|goal)\s*(?:value\s*)?(?:to|of|=|:|is|at|should\s+be|becomes?)?\s*"
        r"(?P<sign>[-−])?(?P<num>\d+(?:\.\d+)?)(?![\d.])(?:\s*(?P<pct>%))?(?!\s*%)"
        r"(?!\s*(?:of\s+)?(?:the\s+)?(?:customers|sites|users|people|accounts|stores))",
        text,
        re.I,
    )
    if m:
        out["target_edit"] = {
            "value": float(m.group("num")) * (-1 if m.group("sign") else 1),
            "pct": bool(m.group("pct")),
        }
    m = re.search(
        r"\b(?P<role>warning|critical)\b[^\d]{0,25}?(?P<sign>[-−])?(?P<num>\d+(?:\.\d+)?)\s*(?P<pct>%)?",
        text,
        re.I,
    )
    if m:
        field_ = "threshold_warning" if m.group("role").lower() == "warning" else "threshold_critical"
        out["threshold_edit"] = {
            "field": field_,
            "value": float(m.group("num")) * (-1 if m.group("sign") else 1),
            "pct": bool(m.group("pct")),
        }
    elif m := re.search(r"\bthreshold\b[^\d]{0,20}?(?P<num>\d*\.\d+|\d+)\s*(?P<pct>%)?", text, re.I):
        v = float(m.group("num"))
        out["drift_threshold"] = _clean_float(v / 100 if m.group("pct") else v)
    return out


_SET_RE = re.compile(
    r"\bset\s+(?P<path>(?:metadata|requirements|pipeline|evaluation|lineage|deployment|monitoring)(?:\.[\w@-]+)+)\s+(?:to|=)\s+(?P<value>.+?)\s*$",
    re.I | re.S,
)


def _overrides(text: str) -> tuple[list[dict[str, Any]], str | None]:
    """'set deployment.schedule to 0 5 * * 1' and pasted JSON objects -> overrides.
    Returns (overrides, error) where error explains JSON that could not be read."""
    out: list[dict[str, Any]] = []
    m = _SET_RE.search(text)
    if m:
        raw = m.group("value").strip().rstrip(".")
        try:
            value = json.loads(raw)
        except ValueError:
            value = raw.strip("\"'")
        out.append({"path": m.group("path").split("."), "value": value})
        return out, None
    start = text.find("{")
    if start != -1 and text.rstrip().endswith("}"):
        try:
            value = json.loads(text[start:])
        except ValueError as exc:
            return (
                [],
                f"The JSON you pasted could not be read ({exc.msg} at line {exc.lineno}, column {exc.colno}).",
            )
        if isinstance(value, dict):
            out.append({"path": [], "value": value})
    return out, None


# --------------------------------------------------------------------------- entry point


_EDIT_VERB_RE = re.compile(
    r"(?:drop|remove|delete|exclude|add|make|use|change|set|switch|swap|replace|keep|without|no\s+more|"
    r"forget|take|get\s+rid|include|increase|decrease|lower|raise)\b",
    re.I,
)


def read_message(
    text: str,
    *,
    family_hint: str | None = None,
    pending: str | None = None,
    base_cron: str | None = None,
    has_proposal: bool = False,
) -> Extraction:
    """Intent, family and slots of one (already cleaned) message.

    ``family_hint`` is the family of the pending proposal (used when the message names none);
    ``pending`` is the slot the assistant just asked about, so a bare answer ("8 weeks",
    "revenue", "FreshMart") fills it.
    """
    reading = read_family(text)
    family, scores = reading.family, reading.scores
    if pending == "family" and (choice := family_choice(text)):
        family = choice
    elif family_hint and family and family != family_hint and scores.get(family, 0) < SWITCH_CUES:
        # In a conversation about another family the message edits that proposal ("revenue",
        # "12%", "make it daily"): read it with the conversation's family, as the reply service will.
        family = None
    fam = family or family_hint
    slots: dict[str, Any] = {}
    notes: list[str] = []
    consumed: list[tuple[int, int]] = []

    overrides, json_error = _overrides(text)
    if json_error:
        notes.append(json_error)
    if overrides:
        slots["overrides"] = overrides
        intent = "describe"
        return Extraction(
            intent=intent,
            family=family,
            family_scores=scores,
            slots=slots,
            notes=notes,
            family_probs=reading.probs,
            family_options=reading.options,
        )

    sched = find_schedule(text, base_cron=base_cron, force=pending in ("schedule", "retrain_schedule"))
    rest = text
    if sched:
        # A retraining schedule goes to the recipe's retraining policy; a scoring one (or one
        # with no verb) to the deployment's schedule.
        retrain = sched.kind == "retrain" or pending == "retrain_schedule"
        slots["retrain_schedule" if retrain else "schedule"] = sched.cron
        slots["retrain_schedule_text" if retrain else "schedule_text"] = sched.text
        consumed.extend(sched.spans)
        for s, e in sorted(sched.spans, reverse=True):
            rest = rest[:s] + " " * (e - s) + rest[e:]
    elif event := stated.event_schedule(rest):
        slots["event_schedule"] = event[0]
        s, e = event[1]
        rest = rest[:s] + " " * (e - s) + rest[e:]

    if named := _name(rest):
        # The recipe's name is not read for settings: "call it Grocery weekly v2" is not weekly.
        slots["name"] = named[0]
        s, e = named[1]
        rest = rest[:s] + " " * (e - s) + rest[e:]
    if industry := _industry(rest):
        slots["industry"] = industry
    if client := _client(rest):
        slots["client"] = client
    if re.search(r"\bclient[- ](?:level|recipe|specific)\b", rest, re.I):
        slots["want_client"] = True
    if re.search(
        r"\b(?:use|start\s+(?:from|with)|base\s+it\s+on|switch\s+to)\s+(?:the\s+|our\s+)?(?:[\w&-]+\s+){0,3}industry\s+recipe\b",
        rest,
        re.I,
    ):
        slots["start_from"] = "industry"

    if fam in ("forecasting", None) or pending in ("horizon_days", "frequency"):
        if (h := _horizon(rest, bare=pending == "horizon_days", loose=fam == "forecasting")) is not None:
            slots["horizon_days"] = h
        freq, note = _frequency(rest, bare=pending == "frequency")
        if freq:
            slots["frequency"] = freq
        elif note and fam == "forecasting":
            notes.append(note)
    elif fam == "pricing" and (m := _PRICE_PERIOD_RE.search(rest)):
        # "daily room rates", "optimise prices weekly": said back (pricing has no time step).
        slots["frequency"] = stated.PERIOD_WORDS[(m.group("p") or m.group("q")).lower()]

    if fam in ("forecasting", None) and pending not in ("frequency", "horizon_days"):
        # One follow-up question instead of a silent default: a second period word with no verb
        # ("weekly demand ..., monthly"), or a horizon without its unit ("a horizon of 12").
        if word := stated.ambiguous_period(rest, slots.get("frequency")):
            slots["ambiguous"] = {"kind": "period", "word": word}
        elif "horizon_days" not in slots and (n := stated.unitless_horizon(rest)) is not None:
            slots["ambiguous"] = {"kind": "horizon_unit", "number": n}
    grain = stated.grain(rest, modifiers=fam in ("forecasting", None))
    if grain and fam == "next_best_action":
        # "each customer" (subscriber, passenger...) is what next best action always decides for.
        people = {stated.grain_column(n) for n in stated.PERSON_NOUNS}
        grain = [c for c in grain if c not in people] or None
    if grain:
        slots["grain"] = grain
    features = stated.features(rest, fam)
    features += stated.other_inputs(rest, features)
    if features:
        slots["features"] = features
    if dropped := stated.drop_features(rest):
        slots["drop_features"] = dropped
        slots["features"] = [f for f in slots.get("features", []) if f not in dropped]
        if not slots["features"]:
            del slots["features"]
    if constraints := stated.constraints(rest):
        slots["constraints"] = constraints
    if labels := _labels(rest):
        slots["labels"] = labels
    if mh := _min_history(rest):
        slots["min_history"] = mh

    if fam:
        metrics, spans = _metrics(rest, fam)
        if metrics:
            slots["metrics"] = metrics
            consumed.extend(spans)
        if foreign := foreign_metrics(rest, fam, metrics):
            slots["foreign_metrics"] = foreign
    if fam == "pricing" or pending == "objective":
        if obj := _objective(rest, bare=pending == "objective"):
            slots["objective"] = obj
    if fam == "pricing" or pending == "price_bounds":
        if pb := _price_bounds(rest, bare=pending == "price_bounds"):
            slots["price_bounds"] = pb
    if fam in ("next_best_action", "location_scoring") or pending == "k":
        if (k := _k(rest, bare=pending == "k")) is not None:
            slots["k"] = k
    if fam == "next_best_action" and (cost := _offer_cost(rest)) is not None:
        slots["offer_cost"] = cost
    if fam == "next_best_action" and (goal := _nba_goal(rest)):
        slots["goal"] = goal

    if mode := _deployment_mode(rest):
        slots["deployment_mode"] = mode
    drift = _drift(rest)
    slots.update(drift)
    if (fresh := _freshness(rest, bare=pending == "freshness_hours")) is not None:
        slots["freshness_hours"] = fresh
    if scale := _scale(rest):
        slots["scale"] = scale
    masked = rest
    for s, e in consumed:
        masked = masked[:s] + " " * (e - s) + masked[e:]
    bare = _bare_edits(masked)
    if "drift_threshold" in slots:
        bare.pop("drift_threshold", None)
    slots.update(bare)

    if pending == "target" and not slots.get("metrics") and "target_edit" not in slots:
        # A bare answer to "what accuracy do you need?": "12%", "under 15 percent".
        m = _VALUE_RE.search(rest)
        pct = bool(m and m.group("pct") and not m.group("mult"))
        if m and (pct or len(text.split()) <= 3):
            scale = {"k": 1000, "m": 1_000_000}.get((m.group("mult") or "").lower(), 1)
            slots["target_edit"] = {
                "value": float(m.group("num")) * scale * (-1 if m.group("sign") else 1),
                "pct": pct,
            }
    if pending == "context" and re.search(
        r"\b(?:no\s+(?:specific\s+|particular\s+)?(?:client|industry)|generic|any\s+industry|all\s+industries|cross[- ]industry)\b",
        text,
        re.I,
    ):
        slots["context_generic"] = True
    if pending in ("client", "industry", "context") and not slots.get("client") and not slots.get("industry"):
        answer = safe_label(
            re.sub(
                r"(?i)^(?:it'?s\s+|for\s+|the\s+|an?\s+)+|\s+(?:industry|sector|client)$", "", text.strip()
            )
        )
        if (
            answer
            and len(answer.split()) <= 4
            and not re.search(r"\b(?:no|none|not|generic|any)\b", answer, re.I)
            # "drop the weather", "make it weekly": an edit of the proposal, not a name.
            and not _EDIT_VERB_RE.match(answer)
            and not slots.get("drop_features")
        ):
            as_client = pending == "client" or (pending == "context" and _looks_like_company(answer))
            if as_client:
                slots["client"] = answer
            else:
                slots["industry"] = answer.lower()
    if fam and (unread := stated.unread_numbers(rest, slots)):
        slots["unread"] = unread
    informative = {k for k in slots if k not in ("scale", "schedule_text", "retrain_schedule_text", "unread")}
    backtest = bool(_CREATE_BACKTEST_RE.match(text.strip()))
    if backtest:
        slots = {"backtest": True}
    clear = bool(family) and reading.probs.get(family, 0.0) >= CLEAR_PROBABILITY
    intent = detect_intent(
        text,
        slot_count=len(informative) + (1 if family else 0),
        has_proposal=has_proposal,
        family_score=max(scores.get(family, 0.0), 4.0 if clear else 0.0) if family else 0.0,
        family_clear=clear,
        family_known=family is not None,
    )
    return Extraction(
        intent=intent,
        family=family,
        family_scores=scores,
        slots=slots,
        notes=notes,
        family_probs=reading.probs,
        family_options=reading.options,
    )


def merge_slots(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """New slots over old ones; metric fields merge per metric; overrides accumulate."""
    out = dict(old)
    for key, value in new.items():
        if key == "metrics":
            metrics = {k: dict(v) for k, v in (out.get("metrics") or {}).items()}
            for name, fields in value.items():
                metrics.setdefault(name, {}).update(fields)
            out["metrics"] = metrics
        elif key == "overrides":
            out["overrides"] = [*(out.get("overrides") or []), *value]
        elif key == "features":
            out["features"] = list(dict.fromkeys([*(out.get("features") or []), *value]))
        elif key == "drop_features":
            continue  # applied below, after every addition
        elif key == "constraints":
            out["constraints"] = {**(out.get("constraints") or {}), **value}
        elif key in ("target_edit", "threshold_edit"):
            continue  # resolved into "metrics" by the caller
        else:
            out[key] = value
    if dropped := new.get("drop_features"):
        kept = [f for f in out.get("features") or [] if f not in dropped]
        out["features"] = kept
        if not kept:
            out.pop("features", None)
    return out
