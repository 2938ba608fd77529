"""The runs list's search in the API (issue #15 §1): the ordering backend and the pagination
that `filter=` / `order_by=` need. runs.filters.RunFilter parses and applies both (through
runs.selectors.run_search); these two classes keep DRF from undoing or over-paying for it.
"""

from __future__ import annotations

from rest_framework.exceptions import NotFound
from rest_framework.filters import OrderingFilter
from rest_framework.response import Response
from rest_framework.utils.urls import remove_query_param, replace_query_param

from mlworkspace.errors import field_error
from mlworkspace.pagination import Pagination


def _given(request, name: str) -> bool:
    return any(value.strip() for value in request.query_params.getlist(name))


class RunSearchOrdering(OrderingFilter):
    """DRF's `ordering`, unless the request has `order_by`: RunFilter already put the runs in
    that order (possibly as a runs.selectors.MetricOrderedRuns, which has no order_by())."""

    def filter_queryset(self, request, queryset, view):
        if not _given(request, "order_by"):
            return super().filter_queryset(request, queryset, view)
        if _given(request, self.ordering_param):
            raise field_error("ordering", "give either ordering or order_by, not both")
        return queryset


COUNT_HELP = (
    "How many runs match. With `filter` it is null unless this page holds the last matches: "
    "counting every match of a search costs as much as the search itself, so follow `next`."
)


class RunSearchPagination(Pagination):
    """Page numbers as everywhere; with `filter`, pages without a full count.

    Counting the runs a filter matches walks every candidate (bench/README.md §8: it costs
    more than the page itself), while a page ordered by a metric stops after its rows. So a
    filtered page reads one row more than it shows, to know whether a next page exists, and
    `count` is exact only when the page reaches the end of the matches (else null)."""

    def paginate_queryset(self, queryset, request, view=None):
        self.searching = _given(request, "filter")
        if not self.searching:
            return super().paginate_queryset(queryset, request, view)
        self.request = request
        page_size = self.get_page_size(request)
        raw = request.query_params.get(self.page_query_param) or "1"
        if not raw.isdigit() or int(raw) < 1:
            raise NotFound(self.invalid_page_message)
        self.number = int(raw)
        start = (self.number - 1) * page_size
        rows = list(queryset[start : start + page_size + 1])
        if self.number > 1 and not rows:
            raise NotFound(self.invalid_page_message)
        self.more = len(rows) > page_size
        rows = rows[:page_size]
        self.found = None if self.more else start + len(rows)
        return rows

    def get_paginated_response(self, data):
        if not self.searching:
            return super().get_paginated_response(data)
        url = self.request.build_absolute_uri()
        previous = None
        if self.number == 2:
            previous = remove_query_param(url, self.page_query_param)
        elif self.number > 2:
            previous = replace_query_param(url, self.page_query_param, self.number - 1)
        following = replace_query_param(url, self.page_query_param, self.number + 1) if self.more else None
        return Response(
            {
                "count": self.found,
                "next": following,
                "previous": previous,
                "results": data,
            }
        )

    def get_paginated_response_schema(self, schema):
        out = super().get_paginated_response_schema(schema)
        out["properties"]["count"] = {
            "type": "integer",
            "nullable": True,
            "example": 123,
            "description": COUNT_HELP,
        }
        return out
