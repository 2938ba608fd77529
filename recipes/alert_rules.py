"""The alert-condition language of a manifest's ``monitoring.alerts``: its grammar, its
meaning, and the names a manifest's alerts may use.

Plain Python, no Django import. It belongs to the manifest's language, so it lives in
``recipes``: ``recipes.manifest`` validates every alert condition with it, and
``monitoring.rules`` evaluates conditions against monitoring snapshots with it.

User text is never handed to ``eval``/``exec``/``ast``: it goes through a tokenizer and a
recursive-descent parser into a tiny tree that is evaluated against a name -> value mapping.

Grammar (keywords case-insensitive)::

    condition  := or_expr
    or_expr    := and_expr (("or" | "||") and_expr)*
    and_expr   := not_expr (("and" | "&&") not_expr)*
    not_expr   := ("not" | "!") not_expr | comparison
    comparison := sum [("<" | "<=" | ">" | ">=" | "==" | "!=") sum]     # not chained
    sum        := product (("+" | "-") product)*
    product    := unary (("*" | "/") unary)*
    unary      := ("-" | "+") unary | primary
    primary    := NUMBER | NAME | "true" | "false" | "(" or_expr ")"

    NUMBER     := 12 | 0.5 | .5 | 1e-3 | 2.5E+2              (negatives via unary minus)
    NAME       := [A-Za-z_][A-Za-z0-9_@.]*  e.g. MAPE, precision@k, drift.price.psi

Precedence: ``not`` binds tighter than ``and``, which binds tighter than ``or``;
arithmetic binds tighter than comparisons. Values are numbers and booleans; a name that
is missing from the context (or ``None``/NaN) is *unknown*, and unknown propagates with
three-valued logic: ``false and unknown`` is false, ``true or unknown`` is true, a
comparison or arithmetic with an unknown operand is unknown, and so is division by zero.

Names available to a manifest's alerts (:func:`allowed_names`; how a monitoring snapshot
maps onto them is ``monitoring.rules.snapshot_context``)::

    MAPE, precision@k, ...                 performance metrics of the snapshot
    drift.<feature>.psi | .ks | .p_value | .drifted    (and drift.prediction.*)
    drift.max_psi, drift.max_ks, drift.drifted_count
    freshness.<feature>.age_hours | .stale, freshness.max_age_hours (oldest feature)
    explain.rank_change                    attribution drift (issue #17): how far the features'
                                           order by mean |contribution| moved from the training
                                           explanation's (mean absolute change of rank; 0 = same)
    explain.<feature>.share                that feature's share of the batch's total mean
                                           |contribution| (0..1)

The features of ``explain.<feature>.share`` are the ones ``runs.explain`` explains the trained
model in (per family: a forecaster's series is one feature named after its key, a pricing model
leaves out columns it never reads), known only once it is trained, so any one-segment feature
name is allowed (:class:`AllowedNames`); the shape of an ``explain.`` name is checked when the
condition is parsed, with a message that says which names exist.
"""

from __future__ import annotations

import difflib
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from . import catalog

__all__ = [
    "DRIFT_AGGREGATES",
    "DRIFT_STATS",
    "EXPLAIN_PREFIX",
    "EXPLAIN_RANK_CHANGE",
    "EXPLAIN_STATS",
    "FRESHNESS_STATS",
    "MAX_CONDITION_LENGTH",
    "AllowedNames",
    "Condition",
    "ConditionError",
    "allowed_names",
    "explain_feature",
    "explain_name_problem",
    "parse_condition",
]

MAX_CONDITION_LENGTH = 500
MAX_DEPTH = 32  # nesting of parentheses / not / unary minus
DRIFT_STATS = ("psi", "ks", "p_value", "drifted")
DRIFT_AGGREGATES = ("drift.max_psi", "drift.max_ks", "drift.drifted_count")
FRESHNESS_STATS = ("age_hours", "stale")
# Attribution drift (monitoring.attribution): explain.rank_change, explain.<feature>.share.
EXPLAIN_PREFIX = "explain."
EXPLAIN_RANK_CHANGE = "explain.rank_change"
EXPLAIN_STATS = ("share",)

Value = float | bool | None


class ConditionError(ValueError):
    """A condition that cannot be parsed or evaluated; says what and where (1-based column)."""

    def __init__(self, message: str, position: int | None = None):
        self.message = message
        self.position = position  # 0-based offset into the text, or None
        self.column = None if position is None else position + 1
        super().__init__(message if position is None else f"{message} at column {position + 1}")


# ---------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # num name bool and or not cmp ( ) + - * / end
    value: Any
    pos: int


_KEYWORDS = {"and": "and", "or": "or", "not": "not", "true": "bool", "false": "bool"}
_TWO_CHAR = {"<=": "cmp", ">=": "cmp", "==": "cmp", "!=": "cmp", "&&": "and", "||": "or"}
_ONE_CHAR = {"<": "cmp", ">": "cmp", "!": "not", "(": "(", ")": ")", "+": "+", "-": "-", "*": "*", "/": "/"}
_NAME_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_NAME_CHARS = _NAME_START | frozenset("0123456789@.")
_DIGITS = frozenset("0123456789")
_SPACE = frozenset(" \t\r\n")


def _describe(ch: str) -> str:
    return repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"


def _number(text: str, pos: int) -> tuple[float, int]:
    i = pos
    n = len(text)
    while i < n and text[i] in _DIGITS:
        i += 1
    if i < n and text[i] == ".":
        i += 1
        while i < n and text[i] in _DIGITS:
            i += 1
    if i < n and text[i] in "eE":
        j = i + 1
        if j < n and text[j] in "+-":
            j += 1
        if j < n and text[j] in _DIGITS:
            while j < n and text[j] in _DIGITS:
                j += 1
            i = j
        else:
            raise ConditionError("malformed exponent in number", j)
    if i < n and text[i] in _NAME_CHARS:
        raise ConditionError(f"unexpected {_describe(text[i])} after number", i)
    value = float(text[pos:i])
    if not math.isfinite(value):
        raise ConditionError("number out of range", pos)
    return value, i


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        if ch in _SPACE:
            i += 1
        elif ch in _DIGITS or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
            value, end = _number(text, i)
            tokens.append(_Token("num", value, i))
            i = end
        elif ch in _NAME_START:
            j = i + 1
            while j < n and text[j] in _NAME_CHARS:
                j += 1
            word = text[i:j]
            kind = _KEYWORDS.get(word.lower())
            if kind == "bool":
                tokens.append(_Token("bool", word.lower() == "true", i))
            elif kind:
                tokens.append(_Token(kind, word.lower(), i))
            else:
                if word.endswith(".") or ".." in word:
                    raise ConditionError(f"malformed name {word!r}", i)
                problem = explain_name_problem(word)
                if problem is not None:
                    raise ConditionError(problem, i)
                tokens.append(_Token("name", word, i))
            i = j
        elif text[i : i + 2] in _TWO_CHAR:
            tokens.append(_Token(_TWO_CHAR[text[i : i + 2]], text[i : i + 2], i))
            i += 2
        elif ch in _ONE_CHAR:
            tokens.append(_Token(_ONE_CHAR[ch], ch, i))
            i += 1
        elif ch == "=":
            raise ConditionError("unexpected '=' (use '==' to compare)", i)
        elif ch in "&|":
            raise ConditionError(f"unexpected {ch!r} (use '{ch * 2}' or '{'and' if ch == '&' else 'or'}')", i)
        else:
            raise ConditionError(f"unexpected character {_describe(ch)}", i)
    tokens.append(_Token("end", None, n))
    return tokens


# ---------------------------------------------------------------------------- tree

# Nodes are tuples: ("num", v) ("bool", v) ("name", s) ("not", x) ("and", xs) ("or", xs)
# ("cmp", op, a, b) ("arith", op, a, b) ("neg", x); each paired with a static type:
# "num", "bool" or "any" (a name: its value decides).


@dataclass(frozen=True, slots=True)
class _Node:
    op: str
    args: tuple
    type: str
    pos: int


class _Parser:
    def __init__(self, text: str):
        self.text = text
        self.tokens = _tokenize(text)
        self.i = 0
        self.depth = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def fail(self, message: str, tok: _Token | None = None) -> ConditionError:
        tok = tok or self.tok
        return ConditionError(message, tok.pos)

    def unexpected(self, expected: str) -> ConditionError:
        tok = self.tok
        if tok.kind == "end":
            return self.fail(f"unexpected end of condition, expected {expected}")
        shown = self.text[tok.pos : self.tokens[self.i + 1].pos].strip()[:40]
        return self.fail(f"unexpected {shown!r}, expected {expected}")

    def nest(self, tok: _Token) -> None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(f"condition nested too deeply (more than {MAX_DEPTH} levels)", tok)

    def parse(self) -> _Node:
        node = self.or_expr()
        if self.tok.kind != "end":
            if self.tok.kind == ")":
                raise self.fail("unbalanced ')'")
            raise self.unexpected("an operator or the end of the condition")
        self.require_bool(node)
        return node

    def require_bool(self, node: _Node) -> None:
        if node.type == "num":
            raise ConditionError("expected a condition (a comparison or true/false), got a number", node.pos)

    def require_num(self, node: _Node, op: str) -> None:
        if node.type == "bool":
            raise ConditionError(f"{op!r} needs numbers, got a condition", node.pos)

    def logical(self, kind: str, operand) -> _Node:
        first = operand()
        if self.tok.kind != kind:
            return first
        items = [first]
        while self.tok.kind == kind:
            self.advance()
            items.append(operand())
        for item in items:
            self.require_bool(item)
        return _Node(kind, tuple(items), "bool", first.pos)

    def or_expr(self) -> _Node:
        return self.logical("or", self.and_expr)

    def and_expr(self) -> _Node:
        return self.logical("and", self.not_expr)

    def not_expr(self) -> _Node:
        if self.tok.kind == "not":
            tok = self.advance()
            self.nest(tok)
            operand = self.not_expr()
            self.depth -= 1
            self.require_bool(operand)
            return _Node("not", (operand,), "bool", tok.pos)
        return self.comparison()

    def comparison(self) -> _Node:
        left = self.sum()
        if self.tok.kind != "cmp":
            return left
        op_tok = self.advance()
        right = self.sum()
        if self.tok.kind == "cmp":
            raise self.fail("chained comparisons are not supported (use 'and')")
        if op_tok.value not in ("==", "!="):
            self.require_num(left, op_tok.value)
            self.require_num(right, op_tok.value)
        return _Node("cmp", (op_tok.value, left, right), "bool", left.pos)

    def arith(self, ops: str, operand) -> _Node:
        left = operand()
        while self.tok.kind in ops:
            op_tok = self.advance()
            right = operand()
            self.require_num(left, op_tok.value)
            self.require_num(right, op_tok.value)
            left = _Node("arith", (op_tok.value, left, right), "num", left.pos)
        return left

    def sum(self) -> _Node:
        return self.arith("+-", self.product)

    def product(self) -> _Node:
        return self.arith("*/", self.unary)

    def unary(self) -> _Node:
        if self.tok.kind in ("-", "+"):
            tok = self.advance()
            self.nest(tok)
            operand = self.unary()
            self.depth -= 1
            self.require_num(operand, tok.value)
            if tok.kind == "+":
                return operand
            if operand.op == "num":
                return _Node("num", (-operand.args[0],), "num", tok.pos)
            return _Node("neg", (operand,), "num", tok.pos)
        return self.primary()

    def primary(self) -> _Node:
        tok = self.tok
        if tok.kind == "num":
            self.advance()
            return _Node("num", (tok.value,), "num", tok.pos)
        if tok.kind == "bool":
            self.advance()
            return _Node("bool", (tok.value,), "bool", tok.pos)
        if tok.kind == "name":
            self.advance()
            if self.tok.kind == "(":
                raise self.fail("function calls are not supported")
            return _Node("name", (tok.value,), "any", tok.pos)
        if tok.kind == "(":
            self.advance()
            self.nest(tok)
            inner = self.or_expr()
            self.depth -= 1
            if self.tok.kind != ")":
                if self.tok.kind == "end":
                    raise ConditionError("unbalanced '(': missing ')'", tok.pos)
                raise self.unexpected("')'")
            self.advance()
            return inner
        if tok.kind == ")":
            if self.depth == 0:
                raise self.fail("unbalanced ')'")
            if self.i > 0 and self.tokens[self.i - 1].kind == "(":
                raise self.fail("empty parentheses")
        if tok.kind == "end" and self.i == 0:
            raise self.fail("empty condition")
        raise self.unexpected("a number, a name, true/false or '('")


def _names(node: _Node, out: set[str]) -> set[str]:
    if node.op == "name":
        out.add(node.args[0])
    for arg in node.args:
        if isinstance(arg, _Node):
            _names(arg, out)
        elif isinstance(arg, tuple):
            for item in arg:
                if isinstance(item, _Node):
                    _names(item, out)
    return out


# ---------------------------------------------------------------------------- evaluation


def _lookup(context: Mapping[str, Any], name: str) -> Value:
    value = context.get(name)
    if isinstance(value, bool):
        return value
    if isinstance(value, int | float) and math.isfinite(value):
        return float(value)
    return None  # missing, None, NaN, or something that is not a number or boolean


def _as_bool(value: Value, node: _Node) -> bool | None:
    if value is None or isinstance(value, bool):
        return value
    name = node.args[0] if node.op == "name" else "expression"
    raise ConditionError(f"{name!r} is a number, not a condition (compare it, e.g. {name} > 0)", node.pos)


def _as_num(value: Value, node: _Node) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool):
        name = node.args[0] if node.op == "name" else "expression"
        raise ConditionError(f"{name!r} is true/false, not a number", node.pos)
    return value


def _eval(node: _Node, ctx: Mapping[str, Any]) -> Value:
    op = node.op
    if op in ("num", "bool"):
        return node.args[0]
    if op == "name":
        return _lookup(ctx, node.args[0])
    if op == "not":
        value = _as_bool(_eval(node.args[0], ctx), node.args[0])
        return None if value is None else not value
    if op == "and" or op == "or":
        decisive = op == "or"  # True decides an "or", False decides an "and"
        result: bool | None = not decisive
        for item in node.args:
            value = _as_bool(_eval(item, ctx), item)
            if value is decisive:
                return decisive
            if value is None:
                result = None
        return result
    if op == "cmp":
        cmp, a_node, b_node = node.args
        a, b = _eval(a_node, ctx), _eval(b_node, ctx)
        if a is None or b is None:
            return None
        if cmp == "==":
            return a == b
        if cmp == "!=":
            return a != b
        a, b = _as_num(a, a_node), _as_num(b, b_node)
        if cmp == "<":
            return a < b
        if cmp == "<=":
            return a <= b
        if cmp == ">":
            return a > b
        return a >= b
    if op == "neg":
        value = _as_num(_eval(node.args[0], ctx), node.args[0])
        return None if value is None else -value
    if op == "arith":
        sym, a_node, b_node = node.args
        a = _as_num(_eval(a_node, ctx), a_node)
        b = _as_num(_eval(b_node, ctx), b_node)
        if a is None or b is None:
            return None
        if sym == "+":
            out = a + b
        elif sym == "-":
            out = a - b
        elif sym == "*":
            out = a * b
        else:
            if b == 0:
                return None
            out = a / b
        return out if math.isfinite(out) else None
    raise AssertionError(f"unknown node {op}")  # pragma: no cover


class Condition:
    """A parsed alert condition. Immutable; evaluate it against many contexts."""

    __slots__ = ("_tree", "names", "text")

    def __init__(self, text: str, tree: _Node):
        self.text = text
        self._tree = tree
        self.names: frozenset[str] = frozenset(_names(tree, set()))

    def evaluate(self, context: Mapping[str, Any]) -> bool | None:
        """True/False, or None when unknown (a needed name is missing or None).

        Raises :class:`ConditionError` when a value has the wrong type for its place
        (e.g. a numeric name used directly as a condition).
        """
        value = _eval(self._tree, context)
        return _as_bool(value, self._tree)

    def unknown_names(self, allowed: Iterable[str]) -> list[str]:
        """Names in the condition that are not in ``allowed``, sorted."""
        # An AllowedNames keeps its own membership (any explain.<feature>.share).
        allowed = allowed if isinstance(allowed, AllowedNames) else set(allowed)
        return sorted(n for n in self.names if n not in allowed)

    def __repr__(self) -> str:
        return f"Condition({self.text!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Condition) and other.text == self.text

    def __hash__(self) -> int:
        return hash(self.text)


def parse_condition(text: str) -> Condition:
    """Parse an alert condition; :class:`ConditionError` (a ``ValueError``) if it is invalid."""
    if not isinstance(text, str):
        raise ConditionError(f"condition must be a string, not {type(text).__name__}")
    if len(text) > MAX_CONDITION_LENGTH:
        raise ConditionError(
            f"condition is too long ({len(text)} characters, at most {MAX_CONDITION_LENGTH})",
            MAX_CONDITION_LENGTH,
        )
    return _parse_cached(text)


@lru_cache(maxsize=512)
def _parse_cached(text: str) -> Condition:
    if not text.strip():
        raise ConditionError("empty condition", 0)
    return Condition(text, _Parser(text).parse())


# ---------------------------------------------------------------------------- names


def explain_feature(name: str) -> str | None:
    """The feature of a well-formed ``explain.<feature>.share`` name, else None."""
    if not name.startswith(EXPLAIN_PREFIX):
        return None
    parts = name[len(EXPLAIN_PREFIX) :].split(".")
    if len(parts) == 2 and parts[0] and parts[1] in EXPLAIN_STATS:
        return parts[0]
    return None


def explain_name_problem(name: str) -> str | None:
    """Why ``name``, in the ``explain.`` namespace, is not an attribution-drift name (None when
    it is one, or is not in that namespace)."""
    if not name.startswith(EXPLAIN_PREFIX) or name == EXPLAIN_RANK_CHANGE or explain_feature(name):
        return None
    parts = name[len(EXPLAIN_PREFIX) :].split(".")
    use = f"use {EXPLAIN_RANK_CHANGE} or explain.<feature>.share"
    if len(parts) == 1 or parts[0] == EXPLAIN_RANK_CHANGE[len(EXPLAIN_PREFIX) :]:
        if difflib.get_close_matches(name, [EXPLAIN_RANK_CHANGE], n=1, cutoff=0.7):
            hint = f"; did you mean {EXPLAIN_RANK_CHANGE!r}?"
        else:
            hint = f" (e.g. explain.{parts[0]}.share)" if len(parts) == 1 else ""
        return f"{name!r} is not an attribution-drift name: {use}{hint}"
    if len(parts) == 2:
        stats = ", ".join(repr(s) for s in EXPLAIN_STATS)
        return (
            f"{name!r} is not an attribution-drift name: a feature's attribution drift is "
            f"{stats} (explain.{parts[0]}.share, its share of the mean |contribution|); {use}"
        )
    return f"{name!r} is not an attribution-drift name: the feature must be one name without dots; {use}"


class AllowedNames(set):
    """The names a manifest's alerts may use (:func:`allowed_names`): the listed names, and
    every well-formed ``explain.<feature>.share`` -- a model's explained features are known
    only once it is trained, so the feature cannot be checked against the manifest."""

    def __contains__(self, name: object) -> bool:
        return set.__contains__(self, name) or (isinstance(name, str) and explain_feature(name) is not None)


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _str_list(value: Any) -> list[str]:
    """Names from a list of strings (or of {"name": ...} objects), or a mapping's keys."""
    if isinstance(value, Mapping):
        return [str(k) for k in value]
    if isinstance(value, list | tuple):
        out = []
        for item in value:
            if isinstance(item, str):
                out.append(item)
            elif isinstance(item, Mapping) and isinstance(item.get("name"), str):
                out.append(item["name"])
        return out
    return []


def allowed_names(manifest: Any, family: str | None = None) -> AllowedNames:
    """The names a manifest's alert conditions may use.

    Performance metrics (``evaluation.metrics`` keys, ``monitoring.metrics`` and the metric
    catalog of ``family`` -- by default the manifest's ``metadata.model_family``), drift
    names for each ``monitoring.drift.features`` entry and ``prediction``, drift
    aggregates, freshness names for each ``monitoring.freshness.features`` entry, and
    attribution drift: ``explain.rank_change`` and ``explain.<feature>.share`` -- listed for
    the features the manifest names (``lineage.input_features``, drift features), so a typo's
    hint finds them, and allowed for any feature (:class:`AllowedNames`).
    Missing or malformed blocks just contribute nothing.
    """
    manifest = _mapping(manifest)
    if family is None:
        family = _mapping(manifest.get("metadata")).get("model_family")
        family = family if isinstance(family, str) else None
    names = AllowedNames()
    names.update(str(k) for k in _mapping(_mapping(manifest.get("evaluation")).get("metrics")))
    monitoring = _mapping(manifest.get("monitoring"))
    names.update(_str_list(monitoring.get("metrics")))
    names.update(catalog.METRICS.get(family, {}))
    for feature in [*_str_list(_mapping(monitoring.get("drift")).get("features")), "prediction"]:
        names.update(f"drift.{feature}.{stat}" for stat in DRIFT_STATS)
    names.update(DRIFT_AGGREGATES)
    for feature in _str_list(_mapping(monitoring.get("freshness")).get("features")):
        names.update(f"freshness.{feature}.{stat}" for stat in FRESHNESS_STATS)
    names.add("freshness.max_age_hours")
    names.add(EXPLAIN_RANK_CHANGE)
    named = [
        *_str_list(_mapping(manifest.get("lineage")).get("input_features")),
        *_str_list(_mapping(monitoring.get("drift")).get("features")),
    ]
    names.update(
        f"{EXPLAIN_PREFIX}{feature}.{stat}"
        for feature in named
        if feature and "." not in feature
        for stat in EXPLAIN_STATS
    )
    return names
