"""The run search language (runs/search.py, pure): what parses into which clauses, and where
every mistake is reported (1-based column)."""

from __future__ import annotations

import pytest

from recipes.alert_rules import ConditionError
from runs.search import (
    MAX_CLAUSES,
    MAX_FILTER_LENGTH,
    MAX_ORDER_BY,
    Clause,
    OrderTerm,
    SearchError,
    parse_filter,
    parse_order_by,
)


def test_the_issue_example_parses_into_three_clauses():
    clauses = parse_filter('metrics.MAPE < 0.15 and params.max_depth = 6 and tags.team = "eu"')
    assert clauses == (
        Clause("metrics", "MAPE", "<", 0.15, 0, 15),
        Clause("params", "max_depth", "=", 6.0, 24, 43),
        Clause("tags", "team", "=", "eu", 49, 61),
    )
    assert clauses[1].numeric and not clauses[2].numeric


@pytest.mark.parametrize("text", ["", "   ", None])
def test_an_empty_filter_has_no_clauses(text):
    assert parse_filter(text) == ()


def test_keywords_and_entity_aliases_ignore_case():
    clauses = parse_filter(
        "METRIC.rmse >= -1e-3 AND Param.lr ILIKE '0.0%' aNd TAG.t not in ('a') and run.id = 'r'"
    )
    assert [(c.entity, c.key, c.op, c.value) for c in clauses] == [
        ("metrics", "rmse", ">=", -0.001),
        ("params", "lr", "ILIKE", "0.0%"),
        ("tags", "t", "NOT IN", ("a",)),
        ("attributes", "run_id", "=", "r"),
    ]


def test_quoted_keys_and_strings():
    clauses = parse_filter(
        "metrics.`my metric` < 1 and params.\"a b\" = 'it''s' and tags.`x` IN (\"p\", 'q')"
    )
    assert [(c.key, c.value) for c in clauses] == [("my metric", 1.0), ("a b", "it's"), ("x", ("p", "q"))]


def test_bare_keys_take_dots_slashes_colons_at_and_dashes():
    (clause,) = parse_filter("metrics.val/l2-loss:a@k.b<.5")
    assert (clause.key, clause.op, clause.value) == ("val/l2-loss:a@k.b", "<", 0.5)


def test_attribute_aliases_map_to_their_canonical_names():
    clauses = parse_filter("attributes.experiment_id = 'recipe_x' and attr.created_at > 1700000000000")
    assert [(c.key, c.value) for c in clauses] == [("recipe_id", "recipe_x"), ("created", 1.7e12)]


def test_not_equal_spelled_as_sql_does():
    assert parse_filter("tags.a <> 'x'")[0].op == "!="


def test_search_errors_are_condition_errors_with_a_column():
    with pytest.raises(ConditionError) as caught:
        parse_filter("metrics.MAPE 0.15")
    assert isinstance(caught.value, SearchError)
    assert caught.value.column == 14
    assert str(caught.value) == (
        "expected a comparison operator (=, !=, <, <=, >, >=, LIKE, ILIKE, IN or NOT IN) at column 14"
    )
    assert caught.value.parameter == "filter"


BAD_FILTERS = [
    # (text, column, words of the message)
    ("metrics.MAPE 0.15", 14, "comparison operator"),
    ("metrics.MAPE <", 15, "expected a value"),
    ("MAPE < 0.1", 1, "needs an entity"),
    ("metric.MAPE < '0.1'", 15, "compares numbers"),
    ("tags.team = 5", 13, "quote the value"),
    ("attributes.status = 1", 21, "quote the value"),
    ("metrics.MAPE < 0.1 or metrics.x > 1", 20, "'or' is not supported"),
    ("metrics.MAPE < 0.1 and", 23, "unexpected end"),
    ("metrics.MAPE < 0.1 and and", 24, "unexpected 'and'"),
    ("foo.bar = 1", 1, "unknown entity 'foo'"),
    ("metrics. = 1", 9, "expected a key"),
    ('metrics."" = 1', 9, "empty key"),
    ("params.x IN ()", 14, "empty list"),
    ("params.x IN ('a'", 13, "missing ')'"),
    ("params.x IN ('a' 'b')", 18, "expected ',' or ')'"),
    ("params.x IN 'a'", 13, "expected '('"),
    ("params.x IN (1)", 14, "quoted values"),
    ("metrics.MAPE LIKE '%'", 14, "compares numbers"),
    ("metrics.MAPE IN ('1')", 14, "compares numbers"),
    ("params.x LIKE 5", 15, "quoted pattern"),
    ("attributes.start_time LIKE '1%'", 23, "compares numbers"),
    ("attributes.start_time > '2024'", 25, "without quotes"),
    ("attributes.nope = 'x'", 1, "unknown attribute 'nope'"),
    ("tags.t = 'unterminated", 10, "unterminated string"),
    ('params."unterminated = 1', 8, "unterminated key"),
    ("metrics.x == 1", 11, "use '='"),
    ("metrics.x ! 1", 11, "use '!='"),
    ("metrics.x < 1.2.3", 16, "after number"),
    ("metrics.x < 1e", 15, "malformed exponent"),
    ("metrics.x < 1e+", 16, "malformed exponent"),
    ("metrics.x < 5abc", 14, "after number"),
    ("metrics.x < -", 13, "expected a number"),
    ("metrics.x < 1e999", 13, "out of range"),
    ("(metrics.x < 1)", 1, "parentheses"),
    ("params.x not like 'a'", 14, "expected 'in'"),
    ("metrics.x < 1 metrics.y > 2", 15, "expected 'and'"),
    ("metrics.x < 1; drop table runs", 14, "unexpected character ';'"),
    ("metrics.x < 1 && metrics.y > 2", 15, "join clauses with 'and'"),
    ("`k` = 1", 1, "needs an entity"),
    ('metrics."a"b = 1', 12, "after the key"),
    ("tags.t = 'a' and tags.u < 'b' and tags.v = ", 44, "expected a value"),
    ("metrics.x < \u00a0", 13, "U+00A0"),
    ("and", 1, "expected an identifier"),
    ("metrics.x <= 'a", 14, "unterminated"),
]


@pytest.mark.parametrize(("text", "column", "words"), BAD_FILTERS)
def test_a_bad_filter_names_its_column(text, column, words):
    with pytest.raises(SearchError) as caught:
        parse_filter(text)
    assert caught.value.column == column, str(caught.value)
    assert words in caught.value.message
    assert str(caught.value).endswith(f"at column {column}")


def test_a_filter_too_long_is_refused_at_the_limit():
    with pytest.raises(SearchError) as caught:
        parse_filter("tags.a = '" + "x" * MAX_FILTER_LENGTH + "'")
    assert caught.value.column == MAX_FILTER_LENGTH + 1
    assert "too long" in caught.value.message


def test_too_many_clauses_are_refused_where_the_extra_one_starts():
    text = " and ".join(f"metrics.m{i} > 0" for i in range(MAX_CLAUSES + 1))
    with pytest.raises(SearchError) as caught:
        parse_filter(text)
    assert caught.value.column == text.rindex(" and ") + 2
    assert parse_filter(" and ".join(f"metrics.m{i} > 0" for i in range(MAX_CLAUSES)))


def test_a_filter_must_be_text():
    with pytest.raises(SearchError) as caught:
        parse_filter(["metrics.x > 1"])
    assert caught.value.column is None and "must be a string" in str(caught.value)


def test_order_by_takes_one_item_or_a_list():
    assert parse_order_by("metrics.MAPE DESC") == (OrderTerm("metrics", "MAPE", True, "metrics.MAPE DESC"),)
    assert parse_order_by(["params.max_depth asc", "", "attribute.start_time", "tags.`a b`"]) == (
        OrderTerm("params", "max_depth", False, "params.max_depth asc"),
        OrderTerm("attributes", "start_time", False, "attribute.start_time"),
        OrderTerm("tags", "a b", False, "tags.`a b`"),
    )
    assert parse_order_by(None) == () == parse_order_by([])


BAD_ORDERS = [
    (["metrics.x sideways"], 0, 11, "expected ASC, DESC"),
    (["metrics.x", "x"], 1, 1, "needs an entity"),
    (["", "tags.a ASC DESC"], 1, 12, "after ASC"),
    (["attributes.colour"], 0, 1, "unknown attribute"),
    (["metrics.x < 1"], 0, 11, "expected ASC, DESC"),
    (["nope.x"], 0, 1, "unknown entity"),
]


@pytest.mark.parametrize(("items", "item", "column", "words"), BAD_ORDERS)
def test_a_bad_order_by_names_its_item_and_column(items, item, column, words):
    with pytest.raises(SearchError) as caught:
        parse_order_by(items)
    assert (caught.value.item, caught.value.column, caught.value.parameter) == (item, column, "order_by")
    assert words in caught.value.message


def test_too_many_order_by_items_are_refused():
    with pytest.raises(SearchError) as caught:
        parse_order_by([f"metrics.m{i}" for i in range(MAX_ORDER_BY + 1)])
    assert caught.value.item == MAX_ORDER_BY


@pytest.mark.parametrize("text", ["tags.a = 'x\x00'", "tags.`a\x00` = 'x'"])
def test_null_characters_are_refused_where_they_are(text):
    with pytest.raises(SearchError) as caught:
        parse_filter(text)
    assert caught.value.column == text.index("\x00") + 1
    with pytest.raises(SearchError) as caught:
        parse_order_by(["metrics.a", "tags.`a\x00`"])
    assert (caught.value.item, caught.value.column) == (1, 8) and "null characters" in caught.value.message
