"""A page of the API's run list, as cheaply as the rows allow (issue #15 §1's speed).

RunViewSet.list reads its rows through RunQuerySet.for_list_rows (the columns a row shows,
two joins) and serialises them here with one RunSerializer built for the whole process:
a ModelSerializer builds its fields by introspecting the model each time it is created, which
costs about as much as serialising the 50 rows of a page (bench/README.md §1). The
output is RunSerializer's own, field for field (runs/tests/test_list_speed.py), and
RunSerializer stays the list's schema for drf-spectacular.
"""

from __future__ import annotations

from collections.abc import Iterable

from .models import Run
from .serializers import RunSerializer

# Safe to share between threads and requests: RunSerializer reads no context (no request,
# no URLs), and its per-field plan, built on the first row, depends only on the serializer
# and the project's time zone.
_ROW = RunSerializer()


def run_rows(runs: Iterable[Run]) -> list[dict]:
    """The list rows of `runs`, exactly as RunSerializer(runs, many=True).data."""
    return [_ROW.to_representation(run) for run in runs]
