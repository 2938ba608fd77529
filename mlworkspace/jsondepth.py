"""How deeply a JSON document nests, found without recursion.

Python's json module and every recursive walk over parsed JSON (copy.deepcopy, jsonschema,
the manifest diff, json.dumps on save) raise RecursionError somewhere below 1,000 levels: a
500 for a body anyone can send. So nothing deeper than ``settings.JSON_MAX_DEPTH`` (default
64) gets past the entry points: the API's JSON parser scans the raw text with
``too_deep_in_text`` before ``json.loads`` (``mlworkspace.parsers``), the manifest forms do
the same with the text they are given, and ``recipes.manifest.validate_manifest`` checks
parsed values with ``too_deep_in_value`` (chat proposals, commands, any other caller).

Depth counts containers: ``{}`` is 1, ``{"a": [1]}`` is 2. Both functions return the JSON
pointer (RFC 6901) of the first container that is one level too deep, or None.

Plain Python with no Django import: the pure core (``recipes/manifest.py``) imports it.
"""

from __future__ import annotations

import json
import re
from typing import Any

DEFAULT_MAX_DEPTH = 64

# One token of JSON text that matters for nesting: a whole string literal (escapes included,
# so brackets inside strings are skipped) or a structural character.
_STRING = r'"[^"\\]*(?:\\.[^"\\]*)*"'
_TOKEN = re.compile(_STRING + r"|[{}\[\]:,]", re.DOTALL)
# The fast pre-check: the text's brackets alone (strings dropped), from which each pass of
# _INNERMOST removes one level of nesting, all in C.
_NOT_BRACKET = re.compile(_STRING + r"|[^{}\[\]]+", re.DOTALL)
_INNERMOST = re.compile(r"\{\}|\[\]")


def pointer(parts) -> str:
    """JSON pointer of a path of keys/indices ('' for the root)."""
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in parts)


def message(limit: int) -> str:
    return f"nested deeper than {limit} levels (the limit for JSON documents)"


def too_deep_in_text(text: str | bytes, limit: int = DEFAULT_MAX_DEPTH) -> str | None:
    """The pointer where JSON text first nests deeper than `limit`, or None.

    Linear in the text and never recursive; it does not parse: malformed text is left for
    json.loads to report (unless its brackets alone nest too deep)."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    if text.count("{") + text.count("[") <= limit:
        return None  # cannot nest deeper than it has brackets (almost every request)
    skeleton = _NOT_BRACKET.sub("", text)
    for _ in range(limit):
        skeleton = _INNERMOST.sub("", skeleton)
        if not skeleton:
            return None
    # Deeper than the limit (or brackets that do not match): find where, token by token.
    # One frame per open container: [is_object, current key or index].
    stack: list[list] = []
    last_string = None
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token[0] == '"':
            last_string = token
        elif token in "{[":
            if len(stack) >= limit:
                return pointer(frame[1] for frame in stack)
            stack.append([token == "{", None if token == "{" else 0])
        elif token in "}]":
            if stack:
                stack.pop()
        elif token == ":":
            if stack and stack[-1][0] and last_string is not None:
                stack[-1][1] = _decode_key(last_string)
        elif stack and not stack[-1][0]:  # a comma in a list: the next item
            stack[-1][1] += 1
    return None


def _decode_key(literal: str) -> str:
    try:
        return json.loads(literal)
    except ValueError:
        return literal[1:-1]


def too_deep_in_value(value: Any, limit: int = DEFAULT_MAX_DEPTH) -> str | None:
    """The pointer where a parsed JSON value (dicts, lists) first nests deeper than `limit`,
    or None; an explicit stack instead of recursion, in document order."""
    stack: list[tuple[Any, int, tuple]] = [(value, 1, ())]
    while stack:
        node, depth, path = stack.pop()
        if isinstance(node, dict):
            items = list(node.items())
        elif isinstance(node, (list, tuple)):
            items = list(enumerate(node))
        else:
            continue
        if depth > limit:
            return pointer(path)
        for key, child in reversed(items):
            if isinstance(child, (dict, list, tuple)):
                stack.append((child, depth + 1, (*path, key)))
    return None
