"""Cleaning user text before the assistant reads it.

Nothing here executes or renders anything: markup is removed only so that the extractor
reads words, not tags, and so that no fragment of a tag can end up quoted in a reply or a
recipe name. The raw message is stored as typed; pages escape it when they show it.
"""

from __future__ import annotations

import html
import re
import unicodedata
from dataclasses import dataclass, field

# <script>/<style> blocks are dropped with their content; other tags lose the tag only.
_SCRIPT_RE = re.compile(r"<\s*(script|style|iframe|object|embed)\b[^>]*>.*?(<\s*/\s*\1\s*>|$)", re.I | re.S)
_TAG_RE = re.compile(r"</?\s*[a-zA-Z!][^<>]*>")
_JS_URL_RE = re.compile(r"\b(?:javascript|vbscript|data)\s*:", re.I)
_EVENT_ATTR_RE = re.compile(r"\bon[a-z]+\s*=", re.I)

# Requests the assistant can never carry out, whoever asks: it only drafts recipes and
# answers questions, and writes nothing but the user's own draft.
_INJECTION_PATTERNS = [
    r"\b(?:ignore|disregard|forget|override|bypass)\b.{0,40}\b(?:instructions?|rules?|prompts?|guidelines?|polic(?:y|ies))\b",
    r"\b(?:system|developer)\s+(?:prompt|message|instructions?)\b",
    r"\byou\s+are\s+now\b",
    r"\bact\s+as\s+(?:an?\s+)?(?:admin|administrator|root|superuser|developer)\b",
    r"\bjailbreak\b|\bdan\s+mode\b",
    r"\b(?:drop|truncate)\s+table\b",
    r"\b(?:delete|remove|drop|wipe|erase|destroy)\s+(?:(?:all|every|any|the|other|existing|of)\s+)*"
    r"(?:recipes|models|users|database|tables|versions|runs|conversations|everything)\b",
    r"\b(?:approve|deprecate|promote)\b.{0,40}\b(?:recipes?|versions?|models?)\b",
    r"\b(?:other|another|every|all)\s+users?'?s?\b",
    r"\b(?:password|api[\s_-]?key|secret[\s_-]?key|credentials?|tokens?)\b",
    r"\b(?:make|grant|give)\b.{0,30}\b(?:admin|superuser|staff|permissions?)\b",
    r"\b(?:exec|eval|subprocess|os\.system|import\s+os)\b",
]
_INJECTION_RE = re.compile("|".join(f"(?:{p})" for p in _INJECTION_PATTERNS), re.I | re.S)


@dataclass
class CleanMessage:
    text: str  # what the extractor reads: no markup, no control characters, normalised spaces
    had_markup: bool = False
    injection: bool = False
    truncated: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        return not self.text.strip()


def clean_message(raw: str, *, max_chars: int) -> CleanMessage:
    """The readable text of a message, plus what was removed from it and why."""
    text = raw if isinstance(raw, str) else ""
    truncated = len(text) > max_chars
    if truncated:
        text = text[:max_chars]
    text = unicodedata.normalize("NFKC", text)
    # Format/control characters (zero-width spaces, bidi overrides) hide text from readers.
    text = "".join(ch for ch in text if ch in "\n\t" or unicodedata.category(ch)[0] != "C")
    unescaped = html.unescape(text)
    had_markup = bool(
        _SCRIPT_RE.search(unescaped)
        or _TAG_RE.search(unescaped)
        or _JS_URL_RE.search(unescaped)
        or _EVENT_ATTR_RE.search(unescaped)
    )
    if had_markup:
        text = _SCRIPT_RE.sub(" ", unescaped)
        text = _TAG_RE.sub(" ", text)
        text = _JS_URL_RE.sub(" ", text)
        text = _EVENT_ATTR_RE.sub(" ", text)
        text = text.replace("<", " ").replace(">", " ")
    text = re.sub(r"[ \t]+", " ", text)
    text = re.sub(r"\s*\n\s*", "\n", text).strip()
    out = CleanMessage(text=text, had_markup=had_markup, truncated=truncated)
    out.injection = bool(_INJECTION_RE.search(text))
    if had_markup:
        out.notes.append(
            "Your message contained HTML or script markup; I ignored the markup (it is shown as "
            "plain text and never run) and read only the words."
        )
    if truncated:
        out.notes.append(
            f"Your message was longer than {max_chars} characters; I read only the first {max_chars}."
        )
    return out


_SAFE_NAME_RE = re.compile(r"[^\w &'.\-+/()]", re.UNICODE)


def safe_label(value: str, *, max_len: int = 60) -> str:
    """A short, harmless label taken from user text (a client name, a recipe name): letters,
    digits, spaces and a little punctuation only, so it can be quoted in a reply or stored as
    a name without carrying markup."""
    value = _SAFE_NAME_RE.sub(" ", value or "")
    value = re.sub(r"\s+", " ", value).strip(" .-'&/+")
    return value[:max_len].strip()


def plain(value: str, *, max_len: int = 400) -> str:
    """Free text from an outside source (an LLM's wording) reduced to one plain paragraph."""
    cleaned = clean_message(value or "", max_chars=max_len * 2).text
    cleaned = cleaned.replace("<", "").replace(">", "")
    cleaned = re.sub(r"\s+", " ", cleaned)
    cleaned = re.sub(r"\s+([,.;:!?])", r"\1", cleaned).strip()  # "<b>Sure</b>, ..." -> "Sure, ..."
    return cleaned[:max_len]
