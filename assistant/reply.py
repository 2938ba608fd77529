"""The assistant's wording, in plain Python (no Django, no DRF): the fixed replies and the
small helpers that turn a proposal into text (its name, description, tags and diff lines).

The reply service (``assistant.services``) decides what to say; this module says it.
"""

from __future__ import annotations

import re

from recipes import catalog

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
