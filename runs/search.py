"""The run search language (issue #15 §1): the subset of MLflow's ``search_runs`` syntax the
workspace supports, for ``?filter=`` and ``?order_by=`` of the runs list, the library's Runs tab
and the MLflow-compatible API. Plain Python, no Django import: it turns text into a few
immutable clauses; ``runs.selectors.run_search`` turns those into a query.

User text is never handed to ``eval`` or to SQL: a tokenizer and a recursive-descent parser
read it, and every error names its 1-based column (``SearchError``, an
``recipes.alert_rules.ConditionError``, so it reports positions as alert rules do).

Grammar (keywords and entity names case-insensitive)::

    filter      := "" | clause ("and" clause)*
    clause      := identifier operator value
    identifier  := entity "." key
    entity      := metrics | metric | params | param | tags | tag
                 | attributes | attribute | attr | run
    key         := `any text` | "any text" | [A-Za-z0-9_.@:/-]+
    operator    := "=" | "!=" | "<" | "<=" | ">" | ">=" | LIKE | ILIKE | IN | NOT IN
    value       := NUMBER | STRING | "(" STRING ("," STRING)* ")"     (a list after IN)
    STRING      := '...' | "..."             (a quote inside is doubled: 'it''s')
    NUMBER      := -1 | 0.15 | .5 | 1e-3

    order_by    := identifier [ASC | DESC]    (one per item; several items break ties)

What each entity accepts:

- ``metrics.<key>`` (a run's latest value): ``= != < <= > >=`` with a number. A run without
  the metric, or whose value is NaN, never matches (MLflow's rule).
- ``params.<key>``: a number compares numerically with params that are numbers
  (``params.max_depth >= 6``); a string compares the text (``= != < <= > >= LIKE ILIKE``,
  ``IN (...)``, ``NOT IN (...)``). ``LIKE`` patterns use ``%`` and ``_``; ``ILIKE`` ignores case.
- ``tags.<key>``: strings, with the same operators as params' text.
- ``attributes.<name>``: the run's own columns, see ``ATTRIBUTES``: text ones take strings and
  every operator; times (milliseconds since the epoch, as MLflow's) take numbers and
  ``= != < <= > >=``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import lru_cache

from recipes.alert_rules import ConditionError

MAX_FILTER_LENGTH = 2000
MAX_CLAUSES = 20  # each clause is a join: bound the work one request can ask for
MAX_ORDER_BY = 5
MAX_IN_VALUES = 100

ENTITIES = {
    "metrics": "metrics",
    "metric": "metrics",
    "params": "params",
    "param": "params",
    "parameters": "params",
    "tags": "tags",
    "tag": "tags",
    "attributes": "attributes",
    "attribute": "attributes",
    "attr": "attributes",
    "run": "attributes",
}
# The run's own columns a search may name: canonical name -> "text" | "time". Aliases are
# MLflow's names for the same thing. Times are milliseconds since the epoch.
ATTRIBUTES = {
    "run_id": "text",
    "status": "text",
    "run_type": "text",
    "recipe_id": "text",
    "recipe_version_id": "text",
    "model_id": "text",
    "outcome": "text",
    "executor": "text",
    "start_time": "time",
    "end_time": "time",
    "created": "time",
}
ATTRIBUTE_ALIASES = {"id": "run_id", "experiment_id": "recipe_id", "created_at": "created"}

NUMBER_OPS = ("=", "!=", "<", "<=", ">", ">=")
TEXT_OPS = (*NUMBER_OPS, "LIKE", "ILIKE", "IN", "NOT IN")
_COMPARISONS = {"=", "!=", "<", "<=", ">", ">="}
_KEY_CHARS = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.@:/-")
_WORD_START = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_")
_WORD_CHARS = _WORD_START | frozenset("0123456789")
_DIGITS = frozenset("0123456789")
_SPACE = frozenset(" \t\r\n")


class SearchError(ConditionError):
    """A filter or order_by that cannot be parsed; ``column`` is 1-based (None when the
    error is about the whole text). ``parameter`` names the query parameter
    (``filter`` / ``order_by``), ``item`` the index of an order_by item."""

    def __init__(self, message: str, position: int | None = None, *, parameter: str = "filter", item=None):
        super().__init__(message, position)
        self.parameter = parameter
        self.item = item


@dataclass(frozen=True, slots=True)
class Clause:
    entity: str  # metrics | params | tags | attributes
    key: str  # the metric/param/tag key, or the canonical attribute name
    op: str  # one of TEXT_OPS
    value: float | str | tuple[str, ...]
    pos: int  # 0-based offset of the identifier
    value_pos: int  # 0-based offset of the value (a bad value is reported there)

    @property
    def numeric(self) -> bool:
        return isinstance(self.value, float)


@dataclass(frozen=True, slots=True)
class OrderTerm:
    entity: str
    key: str
    descending: bool = False
    text: str = ""  # the item as given, for messages

    def __str__(self) -> str:
        return self.text or f"{self.entity}.{self.key}{' DESC' if self.descending else ''}"


# ---------------------------------------------------------------------------- tokens


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # ident word op num str ( ) , end
    value: object
    pos: int
    end: int = 0
    entity_word: str = ""  # ident: the entity as written


def _describe(ch: str) -> str:
    return repr(ch) if ch.isprintable() else f"U+{ord(ch):04X}"


class _Lexer:
    """Reads tokens one at a time from `text`; errors are SearchError at their column."""

    def __init__(self, text: str, parameter: str, item):
        self.text = text
        self.parameter = parameter
        self.item = item

    def error(self, message: str, pos: int | None) -> SearchError:
        return SearchError(message, pos, parameter=self.parameter, item=self.item)

    def tokens(self) -> list[_Token]:
        out = []
        i, n, text = 0, len(self.text), self.text
        while i < n:
            ch = text[i]
            if ch in _SPACE:
                i += 1
            elif ch in _WORD_START:
                tok = self.word(i)
                out.append(tok)
                i = tok.end
            elif ch in _DIGITS or ch == "-" or (ch == "." and i + 1 < n and text[i + 1] in _DIGITS):
                tok = self.number(i)
                out.append(tok)
                i = tok.end
            elif ch in "'\"":
                value, end = self.quoted(i, "string")
                out.append(_Token("str", value, i, end))
                i = end
            elif text.startswith(("<=", ">=", "!=", "<>"), i):
                op = "!=" if text[i : i + 2] == "<>" else text[i : i + 2]
                out.append(_Token("op", op, i, i + 2))
                i += 2
            elif text.startswith("==", i):
                raise self.error("unexpected '==' (use '=' to compare)", i)
            elif ch in "=<>":
                out.append(_Token("op", ch, i, i + 1))
                i += 1
            elif ch in "(),":
                out.append(_Token(ch, ch, i, i + 1))
                i += 1
            elif ch == "`":
                raise self.error("a backquoted key needs an entity before it, e.g. metrics.`my metric`", i)
            elif ch == "!":
                raise self.error("unexpected '!' (use '!=' to compare)", i)
            elif ch in "&|":
                raise self.error(f"unexpected {ch!r} (join clauses with 'and')", i)
            else:
                raise self.error(f"unexpected character {_describe(ch)}", i)
        out.append(_Token("end", None, n, n))
        return out

    def quoted(self, pos: int, what: str) -> tuple[str, int]:
        """A '...' / "..." / `...` text starting at `pos` (a doubled quote is one quote)."""
        quote, text = self.text[pos], self.text
        parts, i = [], pos + 1
        while True:
            j = text.find(quote, i)
            if j < 0:
                raise self.error(f"unterminated {what}: missing closing {quote}", pos)
            parts.append(text[i:j])
            if text.startswith(quote * 2, j):
                parts.append(quote)
                i = j + 2
                continue
            return "".join(parts), j + 1

    def word(self, pos: int) -> _Token:
        text, n = self.text, len(self.text)
        j = pos + 1
        while j < n and text[j] in _WORD_CHARS:
            j += 1
        word = text[pos:j]
        if j < n and text[j] == ".":
            return self.identifier(pos, word, j + 1)
        return _Token("word", word.lower(), pos, j)

    def identifier(self, pos: int, entity_word: str, key_pos: int) -> _Token:
        text, n = self.text, len(self.text)
        entity = ENTITIES.get(entity_word.lower())
        if entity is None:
            raise self.error(
                f"unknown entity {entity_word!r}: expected metrics, params, tags or attributes", pos
            )
        if key_pos < n and text[key_pos] in '`"':
            key, end = self.quoted(key_pos, "key")
            if not key:
                raise self.error(f"empty key after '{entity_word}.'", key_pos)
        else:
            end = key_pos
            while end < n and text[end] in _KEY_CHARS:
                end += 1
            key = text[key_pos:end]
            if not key:
                raise self.error(f"expected a key after '{entity_word}.'", key_pos)
        if end < n and (text[end] in _WORD_CHARS or text[end] in "`\"'"):
            raise self.error(f"unexpected {_describe(text[end])} after the key", end)
        return _Token("ident", (entity, key), pos, end, entity_word)

    def number(self, pos: int) -> _Token:
        text, n = self.text, len(self.text)
        i = pos + 1 if text[pos] == "-" else pos
        start = i
        while i < n and text[i] in _DIGITS:
            i += 1
        if i < n and text[i] == ".":
            i += 1
            while i < n and text[i] in _DIGITS:
                i += 1
        if i == start or text[start:i] == ".":
            raise self.error("expected a number after '-'", pos)
        if i < n and text[i] in "eE":
            j = i + 1
            if j < n and text[j] in "+-":
                j += 1
            if j >= n or text[j] not in _DIGITS:
                raise self.error("malformed exponent in number", j)
            while j < n and text[j] in _DIGITS:
                j += 1
            i = j
        if i < n and (text[i] in _WORD_CHARS or text[i] in ".'\"`"):
            raise self.error(f"unexpected {_describe(text[i])} after number", i)
        value = float(text[pos:i])
        if not math.isfinite(value):
            raise self.error("number out of range", pos)
        return _Token("num", value, pos, i)


# ---------------------------------------------------------------------------- parser


class _Parser:
    def __init__(self, text: str, parameter: str = "filter", item=None):
        self.lexer = _Lexer(text, parameter, item)
        self.text = text
        self.tokens = self.lexer.tokens()
        self.i = 0

    @property
    def tok(self) -> _Token:
        return self.tokens[self.i]

    def advance(self) -> _Token:
        tok = self.tokens[self.i]
        self.i += 1
        return tok

    def error(self, message: str, pos: int | None = None) -> SearchError:
        return self.lexer.error(message, self.tok.pos if pos is None else pos)

    def shown(self, tok: _Token) -> str:
        return repr(self.text[tok.pos : tok.end][:40])

    def identifier(self, expected: str) -> _Token:
        tok = self.tok
        if tok.kind == "ident":
            return self.advance()
        if tok.kind == "end":
            raise self.error(
                f"expected {expected}" if self.i == 0 else f"unexpected end, expected {expected}"
            )
        if tok.kind == "word" and tok.value not in ("and", "or", "not", "in", "like", "ilike"):
            word = self.text[tok.pos : tok.end]
            raise self.error(
                f"{word!r} needs an entity: metrics.{word}, params.{word}, tags.{word} or attributes.{word}"
            )
        if tok.kind == "(":
            raise self.error("parentheses are not supported: join clauses with 'and'")
        raise self.error(f"unexpected {self.shown(tok)}, expected {expected}")

    def attribute(self, tok: _Token) -> str:
        entity, key = tok.value
        name = ATTRIBUTE_ALIASES.get(key, key)
        if name not in ATTRIBUTES:
            known = ", ".join(sorted(ATTRIBUTES))
            raise self.error(f"unknown attribute {key!r}: expected one of {known}", tok.pos)
        return name

    # -- filter

    def parse_filter(self) -> tuple[Clause, ...]:
        if self.tok.kind == "end":
            return ()
        clauses = [self.clause()]
        while True:
            tok = self.tok
            if tok.kind == "end":
                return tuple(clauses)
            if tok.kind == "word" and tok.value == "and":
                self.advance()
                if len(clauses) >= MAX_CLAUSES:
                    raise self.error(f"too many clauses (at most {MAX_CLAUSES})", tok.pos)
                clauses.append(self.clause())
                continue
            if tok.kind == "word" and tok.value == "or":
                raise self.error("'or' is not supported: only 'and' joins clauses")
            raise self.error(f"unexpected {self.shown(tok)}, expected 'and' or the end of the filter")

    def operator(self) -> str:
        tok = self.tok
        if tok.kind == "op":
            self.advance()
            return tok.value
        if tok.kind == "word" and tok.value in ("like", "ilike", "in"):
            self.advance()
            return tok.value.upper()
        if tok.kind == "word" and tok.value == "not":
            self.advance()
            if self.tok.kind == "word" and self.tok.value == "in":
                self.advance()
                return "NOT IN"
            raise self.error("expected 'in' after 'not'")
        raise self.error(
            "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN)"
            if tok.kind != "end"
            else "unexpected end, expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN)"
        )

    def clause(self) -> Clause:
        ident = self.identifier("an identifier such as metrics.MAPE, params.max_depth or tags.team")
        entity, key = ident.value
        kind = "number" if entity == "metrics" else "text"
        if entity == "attributes":
            key = self.attribute(ident)
            kind = "number" if ATTRIBUTES[key] == "time" else "text"
        op_tok = self.tok
        op = self.operator()
        name = f"{entity}.{key}"
        if kind == "number" and op not in _COMPARISONS:
            raise self.error(f"{name} compares numbers: use =, !=, <, <=, > or >= (not {op})", op_tok.pos)
        value_tok = self.tok
        if op in ("IN", "NOT IN"):
            value = self.in_list(op)
        elif value_tok.kind == "num":
            self.advance()
            if entity == "tags" or (entity == "attributes" and kind == "text"):
                raise self.error(f"{name} is text: quote the value ('{value_tok.value:g}')", value_tok.pos)
            if op in ("LIKE", "ILIKE"):
                raise self.error(f"{op} needs a quoted pattern, e.g. '%abc%'", value_tok.pos)
            value = value_tok.value
        elif value_tok.kind == "str":
            self.advance()
            if kind == "number":
                raise self.error(f"{name} compares numbers: write the number without quotes", value_tok.pos)
            value = value_tok.value
        elif value_tok.kind == "end":
            raise self.error(f"unexpected end, expected a value after {op}")
        else:
            raise self.error(f"unexpected {self.shown(value_tok)}, expected a value after {op}")
        return Clause(entity, key, op, value, ident.pos, value_tok.pos)

    def in_list(self, op: str) -> tuple[str, ...]:
        if self.tok.kind != "(":
            raise self.error(f"expected '(' and a list of quoted values after {op}")
        opening = self.advance()
        values: list[str] = []
        while True:
            tok = self.tok
            if tok.kind == "str":
                self.advance()
                values.append(tok.value)
            elif tok.kind == ")" and not values:
                raise self.error(f"empty list after {op}")
            elif tok.kind == "num":
                raise self.error(f"{op} lists quoted values: write '{tok.value:g}'")
            elif tok.kind == "end":
                raise self.error(f"unbalanced '(': missing ')' after the {op} list", opening.pos)
            else:
                raise self.error(f"unexpected {self.shown(tok)}, expected a quoted value")
            if len(values) > MAX_IN_VALUES:
                raise self.error(f"too many values in the {op} list (at most {MAX_IN_VALUES})", tok.pos)
            if self.tok.kind == ",":
                self.advance()
                continue
            if self.tok.kind == ")":
                self.advance()
                return tuple(values)
            if self.tok.kind == "end":
                raise self.error(f"unbalanced '(': missing ')' after the {op} list", opening.pos)
            raise self.error(f"unexpected {self.shown(self.tok)}, expected ',' or ')'")

    # -- order_by

    def parse_order(self) -> OrderTerm:
        ident = self.identifier("an identifier such as metrics.MAPE or attributes.start_time")
        entity, key = ident.value
        if entity == "attributes":
            key = self.attribute(ident)
        descending = False
        tok = self.tok
        if tok.kind == "word" and tok.value in ("asc", "desc"):
            descending = tok.value == "desc"
            self.advance()
        elif tok.kind != "end":
            raise self.error(f"unexpected {self.shown(tok)}, expected ASC, DESC or the end")
        if self.tok.kind != "end":
            raise self.error(f"unexpected {self.shown(self.tok)} after {tok.value.upper()}")
        return OrderTerm(entity, key, descending, self.text.strip())


def _check_text(text, parameter: str, item=None) -> str:
    if text is None:
        return ""
    if not isinstance(text, str):
        raise SearchError(f"must be a string, not {type(text).__name__}", parameter=parameter, item=item)
    if len(text) > MAX_FILTER_LENGTH:
        raise SearchError(
            f"too long ({len(text)} characters, at most {MAX_FILTER_LENGTH})",
            MAX_FILTER_LENGTH,
            parameter=parameter,
            item=item,
        )
    if "\x00" in text:  # PostgreSQL's text cannot hold it: refused here, with its column
        raise SearchError(
            "null characters are not allowed", text.index("\x00"), parameter=parameter, item=item
        )
    return text


def parse_filter(text: str | None) -> tuple[Clause, ...]:
    """The clauses of a run filter (empty for an empty or missing filter); a SearchError
    (a ValueError) naming the column of the first error otherwise."""
    return _parse_filter(_check_text(text, "filter"))


@lru_cache(maxsize=512)
def _parse_filter(text: str) -> tuple[Clause, ...]:
    return _Parser(text).parse_filter()


def parse_order_by(items: str | Iterable[str] | None) -> tuple[OrderTerm, ...]:
    """The order terms of an ``order_by`` (one string or a list, as MLflow's ``order_by``):
    ``["metrics.MAPE", "params.max_depth DESC"]``. Blank items are skipped. A SearchError
    names the item (``item``, 0-based) and its column."""
    if items is None:
        return ()
    if isinstance(items, str):
        items = [items]
    out = []
    for index, raw in enumerate(items):
        text = _check_text(raw, "order_by", index)
        if not text.strip():
            continue
        if len(out) >= MAX_ORDER_BY:
            raise SearchError(
                f"too many order_by items (at most {MAX_ORDER_BY})", parameter="order_by", item=index
            )
        out.append(_parse_order(text, index))
    return tuple(out)


@lru_cache(maxsize=256)
def _parse_order(text: str, index: int) -> OrderTerm:
    return _Parser(text, "order_by", index).parse_order()
