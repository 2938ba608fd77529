import django_filters
from django import forms
from django.core.exceptions import ValidationError
from django.db.models import Q
from drf_spectacular.utils import extend_schema_field

from recipes.models import Family, Level

from .models import Dataset, Run, RunOutcome, RunStatus, RunType
from .search import SearchError, parse_filter, parse_order_by
from .selectors import check_filter, run_search

FILTER_HELP = (
    "Runs whose metrics, params, tags and attributes match, in MLflow's search syntax: clauses "
    'joined by `and`, e.g. `metrics.MAPE < 0.15 and params.max_depth = 6 and tags.team = "eu"`. '
    "Metrics compare numbers (`= != < <= > >=`; a run without the metric, or NaN, never matches); "
    "params compare numbers numerically and quoted text as text; params, tags and attributes also "
    "take `LIKE`, `ILIKE` (`%` and `_` wildcards), `IN ('a', 'b')` and `NOT IN (...)`. Attributes: "
    "run_id, status, run_type, recipe_id, recipe_version_id, model_id, outcome, executor and the "
    "times start_time, end_time, created (milliseconds since the epoch). Keys with other characters "
    "are quoted: metrics.`my metric`. A mistake is a 400 naming its column. With a filter the "
    "list does not count every match: `count` is null unless this page holds the last matches "
    "(follow `next`)."
)
ORDER_BY_HELP = (
    "Order by a metric, param, tag or attribute, MLflow's `order_by`: `metrics.MAPE`, "
    "`metrics.MAPE DESC`, `params.max_depth`, `attributes.start_time DESC`. Repeat the parameter "
    "to break ties; then newest first. Runs without the ordered value come last (for a metric: "
    "NaN, then missing). Not together with `ordering`."
)


def _invalid(message: str) -> ValidationError:
    # The text goes in as a parameter: it quotes the user's input, whose "%" would otherwise
    # be read as a format (django-filter formats every message with its params).
    return ValidationError("%(message)s", code="search", params={"message": message})


class SearchFilterField(forms.CharField):
    """`?filter=`: the parsed clauses (runs.search), or a ValidationError naming the column."""

    def clean(self, value):
        value = super().clean(value)
        try:
            clauses = parse_filter(value)
            check_filter(clauses)
        except SearchError as error:
            raise _invalid(str(error)) from None
        return clauses


class OrderByField(forms.Field):
    """`?order_by=` (repeatable): the parsed order terms, or a ValidationError naming the item
    and the column."""

    widget = forms.MultipleHiddenInput  # reads every value of a repeated parameter

    def clean(self, value):
        items = [v for v in (value or []) if isinstance(v, str)]
        try:
            return parse_order_by(items)
        except SearchError as error:
            item = items[error.item] if error.item is not None and error.item < len(items) else ""
            prefix = f"{item!r}: " if len(items) > 1 and item else ""
            raise _invalid(f"{prefix}{error}") from None


class SearchFilter(django_filters.CharFilter):
    field_class = SearchFilterField


@extend_schema_field({"type": "array", "items": {"type": "string"}, "description": ORDER_BY_HELP})
class OrderByFilter(django_filters.Filter):
    field_class = OrderByField


class RunFilter(django_filters.FilterSet):
    """Used by the API list and the library's Runs tab alike. `filter` and `order_by` (the
    search of issue #15) are applied last, together, by runs.selectors.run_search: they share
    their joins, and ordered by a metric the result is a MetricOrderedRuns (a sliceable
    sequence, not a queryset)."""

    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    recipe_version_id = django_filters.CharFilter(field_name="recipe_version_id")
    model_id = django_filters.CharFilter(field_name="model_id")
    run_type = django_filters.ChoiceFilter(choices=RunType.choices)
    status = django_filters.ChoiceFilter(choices=RunStatus.choices)
    outcome = django_filters.ChoiceFilter(
        choices=RunOutcome.choices, help_text="What the metrics said against the thresholds."
    )
    model_family = django_filters.ChoiceFilter(field_name="recipe__model_family", choices=Family.choices)
    level = django_filters.ChoiceFilter(field_name="recipe__level", choices=Level.choices)
    search = django_filters.CharFilter(method="filter_search")
    filter = SearchFilter(method="applied_last", help_text=FILTER_HELP)
    order_by = OrderByFilter(method="applied_last")

    class Meta:
        model = Run
        fields = [
            "recipe_id",
            "recipe_version_id",
            "model_id",
            "run_type",
            "status",
            "outcome",
            "model_family",
            "level",
            "search",
            "filter",
            "order_by",
        ]

    def applied_last(self, queryset, name, value):
        return queryset  # see filter_queryset

    def filter_queryset(self, queryset):
        queryset = super().filter_queryset(queryset)
        clauses = self.form.cleaned_data.get("filter") or ()
        terms = self.form.cleaned_data.get("order_by") or ()
        if clauses or terms:
            return run_search(queryset, filter=clauses, order_by=terms)
        return queryset

    def filter_search(self, queryset, name, value):
        value = value.strip()
        if not value:
            return queryset
        return queryset.filter(
            Q(id__icontains=value) | Q(recipe__name__icontains=value) | Q(model__name__icontains=value)
        )


class DatasetFilter(django_filters.FilterSet):
    recipe_id = django_filters.CharFilter(field_name="recipe_id")
    search = django_filters.CharFilter(field_name="name", lookup_expr="icontains")

    class Meta:
        model = Dataset
        fields = ["recipe_id", "search"]
