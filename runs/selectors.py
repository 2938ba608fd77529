"""Reads of runs that other pages and services share (the library's Runs tab, a model's
training batch)."""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from django.db import connections
from django.db.models import Exists, F, FilteredRelation, OuterRef, Q, QuerySet, Subquery
from django.db.models.lookups import In

from models_registry.models import MLModel
from recipes import catalog
from recipes.models import Recipe

from . import search as search_syntax
from .models import Executor, Run, RunMetric, RunOutcome, RunParam, RunQuerySet, RunStatus, RunTag, RunType
from .search import Clause, OrderTerm, SearchError

# A list row shows none of these: do not fetch a page's worth of plots, artifact maps,
# parameters and manifests.
LIST_DEFERRED = ("plots_json", "artifacts_json", "params_json", "recipe_version__manifest")


def run_list(user) -> RunQuerySet:
    """The runs `user` may see, with what a list row shows (unordered, unfiltered)."""
    return Run.objects.visible_to(user).for_list().defer(*LIST_DEFERRED)


def model_training_batch(model: MLModel | None) -> dict | None:
    """The synthetic batch a model's artifact was trained on (as its train run recorded it),
    or None (no trained artifact, or trained on an uploaded dataset)."""
    if model is None or not model.training_run_id:
        return None
    run = Run.objects.filter(pk=model.training_run_id).only("params_json", "dataset_id").first()
    if run is None or run.dataset_id:
        return None
    return (run.params_json or {}).get("synthetic") or {}


# ----------------------------------------------------------------------------- search
# `?filter=` / `?order_by=` of the runs list, the Runs tab and the MLflow API's search_runs
# (issue #15 §1). runs.search parses the text; these functions turn clauses into joins on the
# tracking rows (runs.models RunMetric / RunParam / RunTag: one row per (run, key), so a join
# never multiplies runs). bench/README.md §8 measured the choices below.

# The run's columns behind runs.search.ATTRIBUTES.
ATTRIBUTE_FIELDS = {
    "run_id": "id",
    "status": "status",
    "run_type": "run_type",
    "recipe_id": "recipe_id",
    "recipe_version_id": "recipe_version_id",
    "model_id": "model_id",
    "outcome": "outcome",
    "executor": "executor",
    "start_time": "started_at",
    "end_time": "finished_at",
    "created": "created_at",
}
# Values an enumerated attribute may take (MLflow's run statuses are accepted too).
ATTRIBUTE_CHOICES = {
    "status": RunStatus.values,
    "run_type": RunType.values,
    "outcome": [*RunOutcome.values, ""],
    "executor": Executor.values,
}
MLFLOW_STATUSES = {
    "RUNNING": RunStatus.RUNNING,
    "SCHEDULED": RunStatus.QUEUED,
    "FINISHED": RunStatus.SUCCEEDED,
    "FAILED": RunStatus.FAILED,
    "KILLED": RunStatus.CANCELLED,
}
RELATIONS = {"metrics": "metric_rows", "params": "param_rows", "tags": "tag_rows"}
# Ties (and runs without the ordered value) newest first, as the list's default order.
ORDER_THEN = ("-created_at", "-id")
_LOOKUPS = {"=": "exact", "<": "lt", "<=": "lte", ">": "gt", ">=": "gte", "IN": "in"}


def search_alias(entity: str, key: str) -> str:
    """The join alias of one (entity, key): the same for the filter and the order, so an
    `order_by=metrics.MAPE` after `filter=metrics.MAPE < 0.15` reuses the filter's join."""
    return f"search_{entity[0]}_{hashlib.sha1(key.encode()).hexdigest()[:12]}"


def _joined(queryset, entity: str, key: str, added: set[str]) -> tuple:
    alias = search_alias(entity, key)
    if alias not in added:
        relation = RELATIONS[entity]
        queryset = queryset.alias(
            **{alias: FilteredRelation(relation, condition=Q(**{f"{relation}__key": key}))}
        )
        added.add(alias)
    return queryset, alias


def _like_regex(pattern: str) -> str:
    """A SQL LIKE pattern (% any text, _ one character) as an anchored regular expression
    that SQLite (Python's re) and PostgreSQL read alike."""
    parts = ["(?s)^"]
    for ch in pattern:
        parts.append(".*" if ch == "%" else "." if ch == "_" else re.escape(ch))
    parts.append("$")
    return "".join(parts)


def _compare(field: str, op: str, value) -> Q:
    """`field op value` that is false for NULL (a missing or NaN value never matches)."""
    if op == "!=":
        return Q(**{f"{field}__lt": value}) | Q(**{f"{field}__gt": value})
    if op == "LIKE":
        return Q(**{f"{field}__regex": _like_regex(value)})
    if op == "ILIKE":
        return Q(**{f"{field}__iregex": _like_regex(value)})
    if op == "NOT IN":
        # An expression, not a lookup: negating a lookup through a join would become a subquery.
        return Q(**{f"{field}__isnull": False}) & ~Q(In(F(field), list(value)))
    return Q(**{f"{field}__{_LOOKUPS[op]}": list(value) if op == "IN" else value})


def _time_bound(clause: Clause) -> datetime:
    try:
        return datetime.fromtimestamp(clause.value / 1000, tz=UTC)
    except (OverflowError, OSError, ValueError):
        raise SearchError(
            f"attributes.{clause.key} is a time in milliseconds since the epoch; {clause.value:g} is out of range",
            clause.value_pos,
        ) from None


def _time_compare(field: str, clause: Clause) -> Q:
    """Times are compared at millisecond precision (MLflow's): `= t` is [t, t + 1 ms)."""
    start = _time_bound(clause)
    end = start + timedelta(milliseconds=1)
    op = clause.op
    if op == "=":
        return Q(**{f"{field}__gte": start, f"{field}__lt": end})
    if op == "!=":
        return Q(**{f"{field}__lt": start}) | Q(**{f"{field}__gte": end})
    return Q(**{f"{field}__{_LOOKUPS[op]}": {"<": start, "<=": end, ">": end, ">=": start}[op]})


def _choice(clause: Clause, value: str) -> str:
    choices = ATTRIBUTE_CHOICES[clause.key]
    if value in choices:
        return value
    if clause.key == "status" and value.upper() in MLFLOW_STATUSES:
        return MLFLOW_STATUSES[value.upper()]
    if value.lower() in choices:
        return value.lower()
    shown = ", ".join(repr(c) for c in choices)
    raise SearchError(f"unknown {clause.key} {value!r}: expected one of {shown}", clause.value_pos)


def _attribute_q(clause: Clause) -> Q:
    field = ATTRIBUTE_FIELDS[clause.key]
    if search_syntax.ATTRIBUTES[clause.key] == "time":
        return _time_compare(field, clause)
    value = clause.value
    if clause.key in ATTRIBUTE_CHOICES and clause.op in ("=", "!=", "IN", "NOT IN"):
        value = (
            tuple(_choice(clause, v) for v in value) if isinstance(value, tuple) else _choice(clause, value)
        )
    if clause.op == "!=":
        return Q(**{f"{field}__isnull": False}) & ~Q(**{field: value})
    if clause.op == "NOT IN":
        return Q(**{f"{field}__isnull": False}) & ~Q(**{f"{field}__in": list(value)})
    return _compare(field, clause.op, value)


def _conditions(queryset: QuerySet, clauses: Sequence[Clause], added: set[str]) -> tuple[QuerySet, list]:
    """The joins (added to `queryset` and to `added`) and conditions of a filter."""
    conditions = []
    for clause in clauses:
        if clause.entity == "attributes":
            conditions.append(_attribute_q(clause))
            continue
        queryset, alias = _joined(queryset, clause.entity, clause.key, added)
        if clause.entity == "params" and clause.numeric:
            field = f"{alias}__value_num"
        else:
            field = f"{alias}__value"
        conditions.append(_compare(field, clause.op, clause.value))
    return queryset, conditions


def search_filter(queryset: QuerySet, clauses: Sequence[Clause]) -> QuerySet:
    """`queryset` limited to the runs matching every clause (runs.search.parse_filter).

    Each metric/param/tag key is one join on its tracking rows, filtered by the key, and
    every condition goes into one `filter()` so that clauses on one key share the join (a
    second `filter()` through a reverse relation would join again). A run without the key,
    or with a NaN metric, matches no comparison (MLflow's rule). A SearchError names the
    column of a value the database cannot take (an unknown status, a time out of range)."""
    if not clauses:
        return queryset
    queryset, conditions = _conditions(queryset, clauses, set())
    return queryset.filter(*conditions)


def check_filter(clauses: Sequence[Clause]) -> None:
    """SearchError for a clause whose value the query cannot take (what search_filter would
    raise), without a query: forms validate with it."""
    for clause in clauses:
        if clause.entity == "attributes":
            _attribute_q(clause)


# Attributes that may be NULL: ordered NULLS LAST. The others are ordered plainly, so an
# index on them (created_at) still serves the order.
NULLABLE_ATTRIBUTES = {"start_time", "end_time", "model_id"}


def _order_exprs(term: OrderTerm, alias: str | None) -> list:
    def direction(expr, nulls_last=True):
        if not nulls_last:
            return expr.desc() if term.descending else expr.asc()
        return expr.desc(nulls_last=True) if term.descending else expr.asc(nulls_last=True)

    if term.entity == "attributes":
        return [direction(F(ATTRIBUTE_FIELDS[term.key]), term.key in NULLABLE_ATTRIBUTES)]
    if term.entity == "params":  # numbers by number first, then text
        return [direction(F(f"{alias}__value_num")), direction(F(f"{alias}__value"))]
    if term.entity == "metrics":  # numbers, then NaN, then runs without the metric
        return [direction(F(f"{alias}__value")), F(f"{alias}__is_nan").desc(nulls_last=True)]
    return [direction(F(f"{alias}__value"))]


def _ordered_by(queryset: QuerySet, terms: Sequence[OrderTerm], added: set[str]) -> tuple[QuerySet, list]:
    """The joins (LEFT: a run without the key still counts) and expressions of `terms`."""
    exprs = []
    for term in terms:
        alias = None
        if term.entity != "attributes":
            queryset, alias = _joined(queryset, term.entity, term.key, added)
        exprs += _order_exprs(term, alias)
    return queryset, exprs


def _then(then: Sequence) -> list:
    out = list(then)
    names = {t.lstrip("-") for t in out if isinstance(t, str)}
    out += [t for t in ORDER_THEN if t.lstrip("-") not in names]
    return out


def run_search(
    queryset: QuerySet,
    *,
    filter: str | Sequence[Clause] | None = None,  # noqa: A002 - the API's parameter
    order_by: str | Sequence[str] | Sequence[OrderTerm] | None = None,
    then: Sequence = (),
) -> QuerySet | MetricOrderedRuns:
    """The runs of `queryset` matching `filter`, in `order_by` order, then `then` (fields
    of the list's `ordering`), then newest first: MLflow's search_runs over the workspace.
    Text is parsed by runs.search (a SearchError names the column of a mistake); parsed
    clauses and terms are taken as they are.

    Ordered by a metric first, the result is a MetricOrderedRuns (a sliceable sequence with
    count(), see there); otherwise an ordered queryset."""
    clauses = search_syntax.parse_filter(filter) if filter is None or isinstance(filter, str) else filter
    if order_by is None or isinstance(order_by, str) or any(isinstance(t, str) for t in order_by):
        terms = search_syntax.parse_order_by(order_by)
    else:
        terms = tuple(order_by)
    seen, unique = set(), []
    for term in terms:  # a key ordered twice: its first place decides
        if (term.entity, term.key) not in seen:
            seen.add((term.entity, term.key))
            unique.append(term)
    if unique and unique[0].entity == "metrics":
        return MetricOrderedRuns(queryset, clauses, unique, _then(then))
    added: set[str] = set()
    if connections[queryset.db].vendor == "sqlite":
        # SQLite runs a correlated EXISTS for each run it reads in the order's index (newest
        # first) and stops after the page; with joins it built every match and sorted them
        # (bench/README.md §8). PostgreSQL's hash joins beat a walk there.
        conditions = [_attribute_q(c) if c.entity == "attributes" else _probe(c, "pk") for c in clauses]
    else:
        queryset, conditions = _conditions(queryset, clauses, added)
    queryset, exprs = _ordered_by(queryset, unique, added)
    return queryset.filter(*conditions).order_by(*exprs, *_then(then))


class _ProbeExists(Exists):
    """EXISTS kept a per-run probe. PostgreSQL turns a plain EXISTS into a join and, misjudging
    how few runs pass `key = 'max_depth' AND value_num = 6` (it assumes key and value are
    independent), hashes every candidate run instead of walking the ordered metric's index
    and stopping after a page; `OFFSET 0` stops that rewrite (bench/README.md §8). SQLite
    always evaluates EXISTS per row."""

    def as_postgresql(self, compiler, connection, **extra_context):
        sql, params = self.as_sql(compiler, connection, **extra_context)
        if sql.endswith(" LIMIT 1)"):
            sql = f"{sql[:-1]} OFFSET 0)"
        return sql, params


RELATED_MODELS = {"metrics": RunMetric, "params": RunParam, "tags": RunTag}


def _probe(clause: Clause, run_ref: str) -> Exists:
    """`clause` as an EXISTS on its tracking row of the run `run_ref` names."""
    field = "value_num" if clause.entity == "params" and clause.numeric else "value"
    rows = RELATED_MODELS[clause.entity].objects.filter(run_id=OuterRef(run_ref), key=clause.key)
    return _ProbeExists(rows.filter(_compare(field, clause.op, clause.value)))


class MetricOrderedRuns:
    """Runs in the order of one metric, runs without a value after the others (NaN first,
    then missing; then `then`), as a sliceable sequence with count(): what Django's
    Paginator and DRF's pagination read.

    A slice walks the metric's (key, value, run) index in order from the first value the
    filter allows and stops after the slice: the filter's other clauses are probes of each
    walked run's rows (_ProbeExists), so the cost is the entries walked, never every run
    that matches (the NULLS LAST of one LEFT JOIN cannot use the index, and PostgreSQL's
    hash plan reads every candidate: bench/README.md §8). Past the runs with a value, the
    rest comes from a second query."""

    ordered = True  # for Paginator's unordered-list warning

    def __init__(self, queryset: QuerySet, clauses: Sequence[Clause], terms: Sequence[OrderTerm], then: list):
        self.term = term = terms[0]
        alias = search_alias("metrics", term.key)
        added: set[str] = set()
        valued, _ = _joined(queryset, "metrics", term.key, added)
        conditions = [Q(**{f"{alias}__value__isnull": False})]
        on_key = [c for c in clauses if c.entity == "metrics" and c.key == term.key]
        # A filter clause on the metric keeps only runs with a value: nothing comes after.
        self.complete = bool(on_key)
        for clause in clauses:
            if clause.entity == "attributes":
                conditions.append(_attribute_q(clause))
            elif clause in on_key:
                conditions.append(_compare(f"{alias}__value", clause.op, clause.value))
            else:  # probed on the walked index entry's run, before its run row is read
                conditions.append(_probe(clause, f"{alias}__run_id"))
        valued, rest = _ordered_by(valued, terms[1:], added)
        value = F(f"{alias}__value")
        self.valued = valued.filter(*conditions).order_by(
            value.desc() if term.descending else value.asc(), *rest, *then
        )
        self.matching = search_filter(queryset, clauses)
        self.clauses, self.terms, self.then = clauses, terms, then
        self._count = None

    def count(self) -> int:
        if self._count is None:
            self._count = self.matching.count()
        return self._count

    def __len__(self) -> int:
        return self.count()

    def _others(self) -> QuerySet:
        """The matching runs without a value of the metric: NaN first, then `then`."""
        rows = RunMetric.objects.filter(run=OuterRef("pk"), key=self.term.key)
        added = {search_alias(c.entity, c.key) for c in self.clauses if c.entity != "attributes"}
        others, rest = _ordered_by(self.matching, self.terms[1:], added)
        return (
            others.alias(search_valued=Exists(rows.filter(value__isnull=False)))
            .filter(search_valued=False)
            .alias(search_nan=Exists(rows.filter(is_nan=True)))
            .order_by(F("search_nan").desc(), *rest, *self.then)
        )

    def __getitem__(self, index):
        if not isinstance(index, slice):
            rows = self[index : index + 1]
            if not rows:
                raise IndexError(index)
            return rows[0]
        start, stop = index.start or 0, index.stop
        if start < 0 or stop is None or stop < start or index.step not in (None, 1):
            raise ValueError("MetricOrderedRuns takes non-negative, bounded slices")
        if stop == start:
            return []
        rows = list(self.valued[start:stop])
        if len(rows) == stop - start or self.complete:
            return rows
        # Past the runs with a value: how many there are is `start + len(rows)` when the
        # slice began among them, else one count.
        n_valued = start + len(rows) if rows else self.valued.count()
        rest_start = max(0, start - n_valued)
        return rows + list(self._others()[rest_start : rest_start + (stop - start - len(rows))])

    def __iter__(self):
        return iter(self[0 : self.count()])


# ----------------------------------------------------------------------------- the Runs tab

MAX_METRIC_COLUMNS = 6


def recipes_with_runs(user, limit: int = 200) -> list:
    """(id, name) of the recipes `user` may see that have runs, by name: the Runs tab's recipe
    picker (which shows that recipe's metrics as columns)."""
    from_runs = Run.objects.filter(recipe=OuterRef("pk"))
    visible = Recipe.objects.visible_to(user).filter(Exists(from_runs)).order_by("name", "id")
    return list(visible.values_list("id", "name")[:limit])


def tab_recipe(user, recipe_id: str) -> Recipe | None:
    """The recipe the Runs tab shows the metrics of (None if unknown or not visible)."""
    if not recipe_id:
        return None
    return Recipe.objects.visible_to(user).filter(pk=recipe_id).only("id", "name", "model_family").first()


def metric_columns(recipe: Recipe, *, sample: int = 200) -> list[str]:
    """The metric keys a recipe's runs have (among its `sample` newest runs), at most
    MAX_METRIC_COLUMNS: the family's primary metric first, then the family's catalog order,
    then the others by name."""
    recent = Run.objects.filter(recipe=recipe).order_by("-created_at").values("pk")[:sample]
    keys = set(RunMetric.objects.filter(run__in=Subquery(recent)).values_list("key", flat=True).distinct())
    family = catalog.METRICS.get(recipe.model_family, {})
    primary = catalog.PRIMARY_METRIC.get(recipe.model_family)
    rank = {name: i for i, name in enumerate(family)}
    ordered = sorted(keys, key=lambda k: (k != primary, k not in rank, rank.get(k, 0), k))
    return ordered[:MAX_METRIC_COLUMNS]


def metric_cells(runs: Sequence[Run], keys: Sequence[str]) -> dict[str, list]:
    """run id -> the latest value of each of `keys` (None when missing, NaN for NaN): one
    query for a page of runs."""
    values = {
        (run_id, key): (math.nan if is_nan else value)
        for run_id, key, value, is_nan in RunMetric.objects.filter(
            run_id__in=[r.pk for r in runs], key__in=list(keys)
        ).values_list("run_id", "key", "value", "is_nan")
    }
    return {r.pk: [values.get((r.pk, key)) for key in keys] for r in runs}
