"""The assistant's wording, in plain Python (no Django, no DRF): the fixed replies and the
small helpers that turn a proposal into text (its name, description, tags and diff lines).

The reply service (``assistant.services``) decides what to say; this module says it.
"""

from __future__ import annotations

import re

from recipes import catalog, forecasting_config

from . import proposal as proposals
from .nlu import extract
from .nlu.text import safe_label

MAX_DIFF_LINES = 25
RECIPE_PAGE = "/model-development/recipes/{id}"

GREETING = (
    "Hello! I draft ML recipes from plain-words descriptions and answer questions about model families, "
    "metrics, drift and recipe levels.\n"
    'Describe the model you need, for example: "weekly demand forecast for 300 grocery stores, 8 weeks ahead, '
    'MAPE under 12%, retrain every Monday at 6" or "which offer to send each customer to maximise incremental '
    'revenue, real-time". When the proposal looks right, say "create it".'
)
EMPTY_REPLY = (
    "Your message was empty. Describe the model you need (what to predict or decide, for whom, how often, "
    "how good it must be) or ask a question."
)
REFUSAL = (
    "I can't do that: I only draft recipes and answer questions about them. Nothing you write changes my rules, "
    'and the only thing I ever write is your own draft recipe, when you say "create it". Reviewing, approving, '
    "deleting or changing other recipes is done on the recipe pages by people with the right permissions."
)
FAMILY_QUESTION = (
    "Which kind of model is it?\n"
    "1. Forecasting: a quantity over time (demand, sales, volumes)\n"
    "2. Pricing: which price to set\n"
    "3. Next best action: which offer or action for each customer\n"
    "4. Location scoring: ranking sites or locations"
)
OUT_OF_SCOPE = (
    "I can't answer that: I only know this workspace (model families, metrics, drift, recipes) and draft recipes "
    "from descriptions, with no access to the internet or live data. Describe the model you need, or ask about the "
    "workspace."
)
LLM_NOTICE = "(The language model could not be reached, so the built-in assistant answered this message.)"
# What each family is for, in one line (as in FAMILY_QUESTION, numbered in catalog.FAMILIES order).
FAMILY_PURPOSE = {
    "forecasting": "a quantity over time (demand, sales, volumes)",
    "pricing": "which price to set, from how demand responds to price",
    "next_best_action": "which offer or action for each customer",
    "location_scoring": "ranking sites or locations",
}


def family_question(options: list[tuple[str, list[str]]]) -> str:
    """Ask which family, offering the two likeliest with a one-line reason each (the words of the
    message that point to it); the full list when there is nothing to rank."""
    if len(options) < 2:
        return "I couldn't tell which kind of model you need. " + FAMILY_QUESTION
    number = {f: i for i, f in enumerate(catalog.FAMILIES, start=1)}
    lines = ["I'm not sure which kind of model you need. Which kind of model is it? The two likeliest:"]
    for family, words in options[:2]:
        label = catalog.FAMILY_LABELS[family]
        quoted = ", ".join(f'"{w}"' for w in words[:3])
        if len(words) > 1:
            because = f"; your words {quoted} point to it"
        elif words:
            because = f"; your word {quoted} points to it"
        else:
            because = "; nothing in your message points to it in particular"
        lines.append(f"{number[family]}. {label}: {FAMILY_PURPOSE[family]}{because}.")
    others = [f for f in catalog.FAMILIES if f not in {o[0] for o in options[:2]}]
    lines.append(
        "Answer with the number or the name"
        + " (or "
        + " or ".join(f"{number[f]} for {catalog.FAMILY_LABELS[f].lower()}" for f in others)
        + ")."
    )
    return "\n".join(lines)


def proposal_name(family: str, slots: dict, level: str) -> str:
    if slots.get("name"):
        return slots["name"]
    noun = extract.FAMILY_NOUNS[family]
    if level == "client" and slots.get("client"):
        return f"{slots['client']} {noun}"
    if slots.get("industry"):
        industry = slots["industry"]
        return f"{industry[:1].upper()}{industry[1:]} {noun}"
    return noun[:1].upper() + noun[1:]


def description(name: str, base_name: str, base_id: str, version: str, brief: str) -> str:
    """The draft's description: which recipe (and version) it was drafted from, and the brief."""
    text = f"{name}: drafted with the recipe assistant from {base_name} ({base_id} {version})."
    if brief:
        text += f" Brief: {brief}"
    return text


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:64]


def tags(source_tags: list[str], slots: dict) -> list[str]:
    """The draft's tags: the source recipe's (without "baseline"), the industry and client, "assistant"."""
    tags = [t for t in source_tags if t != "baseline"]
    for value in (slots.get("industry"), slots.get("client")):
        if value and (slug := _slug(safe_label(value))):
            tags.append(slug)
    tags.append("assistant")
    return list(dict.fromkeys(tags))[:20]


def _short(value) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 80 else text[:77] + "..."


def diff_lines(diff: list[dict]) -> list[str]:
    """A proposal's diff against its starting recipe, one line per change (at most MAX_DIFF_LINES)."""
    lines = []
    for d in diff[:MAX_DIFF_LINES]:
        if d["op"] == "change":
            lines.append(f"- {d['path']}: {_short(d['old'])} -> {_short(d['new'])}")
        elif d["op"] == "add":
            lines.append(f"- {d['path']}: added {_short(d['new'])}")
        else:
            lines.append(f"- {d['path']}: removed")
    if len(diff) > MAX_DIFF_LINES:
        lines.append(f"... and {len(diff) - MAX_DIFF_LINES} more")
    return lines


# --------------------------------------------------------------------------- said back

# A named input -> the column a family's starting recipe may already read under another name.
INPUT_COLUMNS = {
    "footfall": "foot_traffic",
    "population": "population_3km",
    "income": "median_income",
    "competition": "competitor_count",
    "promotions": "promo",
    "price": "price",
    "price_cuts": "price",
}
FEATURE_WORDS = {
    "holidays": "holiday effects",
    "competitor_prices": "competitor prices",
    "competitor_distance": "competitor distance",
    "drive_time": "drive time",
}
CONSTRAINT_WORDS = {
    "sites": "You want {v} sites: the model ranks every candidate and you take the top {v} from its ranking; "
    "there is no setting for a count (k, the share the evaluation looks at, is a fraction).",
    "eligibility": 'Eligibility ("{v}"): the recipe has no eligibility filter; score only the customers who are '
    "eligible (filter the list you upload).",
    "min_margin": "A margin of at least {pct}: the price optimiser has no margin floor; it maximises its objective "
    "within the price bounds, so check the recommended prices' margin before using them.",
    "budget": "A budget of {v}: the recipe has no budget setting; choose k (the share targeted) so the offers fit it.",
    "max_contacts_per_month": "At most {v} contacts a month per customer: the recipe has no contact-frequency "
    "rule; apply it when you send the offers.",
    "min_distance_km": "At least {v} km from an existing site: the recipe has no distance rule; drop the candidates "
    "that are too close before or after scoring.",
    "min_price": "A price floor relative to cost ({v}): the optimiser has no cost floor; only the price bounds.",
    "price_ending": "Prices ending in {v}: the optimiser does not round prices; round its recommendations afterwards.",
    "price_ladder": "Keeping the price ladder: the optimiser prices each product on its own and does not keep "
    "ladders between products.",
    "markdown_steps": "{v} markdown steps: the optimiser recommends one price per product and period, not a "
    "markdown path.",
    "series": "{v} series: noted; the recipe needs no setting for the number of series.",
    "k": "{v:,} to contact: the recipe's k is a share of the customers scored, not a count; set k to {v:,} divided "
    'by the number you score (say "top 5%"), or take the first {v:,} from the ranking.',
}


def said_back(family: str, slots: dict, manifest: dict) -> list[str]:
    """What ``slots`` state that the recipe cannot hold, in plain words (nothing is dropped
    silently): inputs the family cannot read, constraints without a setting, an event-driven
    retraining trigger, a horizon outside forecasting. ``manifest`` is the proposal's."""
    lines: list[str] = []
    inputs = set(((manifest.get("lineage") or {}).get("input_features")) or [])
    prep = next(
        (
            st.get("config") or {}
            for st in (manifest.get("pipeline") or {}).get("stages") or []
            if isinstance(st, dict) and st.get("type") == "feature_prep"
        ),
        {},
    )
    known = set(prep.get("known_features") or [])
    family_word = catalog.FAMILY_LABELS[family].lower()
    for feature in slots.get("features") or []:
        word = FEATURE_WORDS.get(feature, feature.replace("_", " "))
        column = INPUT_COLUMNS.get(feature)
        if column and column in inputs:
            lines.append(f"{word.capitalize()} is already an input of this recipe (`{column}`).")
            continue
        if family == "forecasting":
            from_columns = [c for c in _feature_columns(feature) if c in known]
            if feature == "holidays" and from_columns:
                lines.append(
                    "I can't add holiday effects to this baseline's feature sets; I added `holiday_flag` as an "
                    "optional column — upload it with your data (with its values over the forecast horizon)."
                )
            elif from_columns:
                cols = ", ".join(f"`{c}`" for c in from_columns)
                lines.append(
                    f"The workspace does not fetch {word} data itself; I added {cols} as optional "
                    f"column{'s' if len(from_columns) > 1 else ''} — upload {'them' if len(from_columns) > 1 else 'it'} "
                    "with your data (with values over the forecast horizon)."
                )
            else:
                lines.append(
                    f"I can't add {word} to a forecasting recipe: there is no column for it that I know of."
                )
            continue
        listed = ", ".join(sorted(inputs)) or "a fixed set of inputs"
        lines.append(
            f"I can't add {word} to the {family_word} family: it reads a fixed set of inputs ({listed})."
        )
    for key, value in (slots.get("constraints") or {}).items():
        if key in CONSTRAINT_WORDS:
            pct = f"{value * 100:g}%" if isinstance(value, (int, float)) else value
            lines.append(CONSTRAINT_WORDS[key].format(v=value, pct=pct))
    evaluation = ((manifest.get("evaluation") or {}).get("metrics")) or {}
    for name, fields in (slots.get("metrics") or {}).items():
        if name in catalog.METRICS.get(family, {}) and not any(
            f in proposals.THRESHOLD_FIELDS for f in fields
        ):
            target = (
                (evaluation.get(name) or {}).get("target") if isinstance(evaluation.get(name), dict) else None
            )
            now = (
                f"its target stays {target:g}" if isinstance(target, (int, float)) else "it has no target yet"
            )
            lines.append(
                f"You named {name} without a number: every run of this recipe reports it ({now}). "
                f"Give me a number (for example '{name} of at least …') to set its target."
            )
    if foreign := slots.get("foreign_metrics"):
        own = ", ".join(catalog.METRICS.get(family, {}))
        names = " and ".join(foreign)
        lines.append(
            f"{names} {'is' if len(foreign) == 1 else 'are'} not {'a metric' if len(foreign) == 1 else 'metrics'} "
            f"of the {family_word} family; its runs report {own}. The recipe keeps those."
        )
    if unread := slots.get("unread"):
        quoted = ", ".join('"' + re.sub(r"[^\w\s%$€£.,~+-]", " ", u)[:60].strip() + '"' for u in unread)
        lines.append(
            f"I couldn't tell which setting {quoted} {'is' if len(unread) == 1 else 'are'}, so I did not use "
            f"{'it' if len(unread) == 1 else 'them'}: tell me what {'it' if len(unread) == 1 else 'they'} should "
            "change, if anything."
        )
    if event := slots.get("event_schedule"):
        lines.append(
            f'I can\'t schedule retraining "{event}": a retrain starts on a clock (a cron schedule), on an alert '
            'or after a number of new rows, not on an event. Retrain by hand then ("Retrain now" on the model '
            "page); the retraining policy is unchanged."
        )
    if (freq := slots.get("frequency")) and family != "forecasting":
        word = forecasting_config.FREQUENCIES.get(freq, freq).lower()
        lines.append(
            f"A {word} time step is not a setting of the {family_word} family: it decides per row of the data you "
            f'score. To refresh its decisions {word}, schedule its score runs (for example "score every day at 6am").'
        )
    if "horizon_days" in slots and family != "forecasting":
        lines.append(
            f"A horizon of {slots['horizon_days']} days is not a setting of the {family_word} family."
        )
    return lines


def _feature_columns(feature: str) -> list[str]:
    return proposals.FEATURE_COLUMNS.get(feature, [])


def ambiguity_question(ambiguity: dict, slots: dict) -> str:
    """The one follow-up question about an ambiguous setting (asked before the open ones)."""
    if ambiguity.get("kind") == "period":
        word = ambiguity["word"]
        freq = forecasting_config.FREQUENCIES.get(slots.get("frequency") or "", "another frequency")
        return (
            f'You said "{word}" as well as {freq}: did you mean {word} forecasts (the frequency) or retraining '
            f"{word} (the retraining schedule)?"
        )
    n = ambiguity.get("number")
    return f"A horizon of {n} what: {n} days, weeks or months?"
