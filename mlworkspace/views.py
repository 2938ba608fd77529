"""Small helpers every app's HTML views share: a full page or its HTMX fragment from one
view, permission checks with a readable 403, paging, sortable columns, filter controls and
JSON shown as text (a manifest, a diff or table cell)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.core.paginator import Page, Paginator
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from recipes import access

PAGE_SIZE = 25


def is_fragment(request: HttpRequest) -> bool:
    """An HTMX swap (not a history restore, which needs the whole page)."""
    htmx = getattr(request, "htmx", None)
    return bool(htmx) and not htmx.history_restore_request


def render_page(
    request: HttpRequest, template: str, context: dict, *, partial: str | None = None, status: int = 200
) -> HttpResponse:
    """The full page, or only `template#partial` when HTMX asks for a fragment."""
    name = f"{template}#{partial}" if partial and is_fragment(request) else template
    return render(request, name, context, status=status)


def require_perm(request: HttpRequest, perm: str, what: str, obj=None) -> None:
    """403 with a message saying which permission is missing (the 403 page shows it). With
    `obj` (what the write changes or is created under) the one access rule decides
    (recipes.access): a client's object needs the data_scientist or lead role in its client
    (404 for non-members); a firm object the Django permission `perm`."""
    if obj is not None:
        access.check_view(request.user, obj)
        if access.is_client_object(obj):
            if not access.can_write(request.user, obj):
                raise PermissionDenied(
                    f"You cannot {what}: it needs the data scientist or lead role in this client. "
                    "Ask a workspace admin to change your membership."
                )
            return
    if not request.user.has_perm(perm):
        raise PermissionDenied(
            f"You cannot {what}: it needs the “{perm}” permission. Ask a workspace admin to add you "
            "to the Data scientists (or, for approvals, Leads) group."
        )


def paginate(request: HttpRequest, queryset: QuerySet, per_page: int = PAGE_SIZE) -> Page:
    """The asked `?page=`; one beyond the last (or not a number) shows the nearest page that
    exists, and `page.missing` says so (includes/pager.html shows it) instead of silently
    showing another page."""
    asked = (request.GET.get("page") or "").strip()
    page = Paginator(queryset, per_page).get_page(asked or None)
    page.missing = ""
    if asked:
        pages = page.paginator.num_pages
        try:
            number = int(asked)
        except ValueError:
            number = None
        if number is None or number < 1:
            page.missing = f"“{asked[:20]}” is not a page number. Showing page {page.number}."
        elif number > pages:
            there = "everything fits on one page" if pages == 1 else f"there are only {pages} pages"
            page.missing = f"There is no page {number}: {there}. Showing page {page.number}."
    return page


@dataclass
class Column:
    label: str
    key: str = ""  # sort key; "" = not sortable
    active: str = ""  # "asc" | "desc" | ""
    next_sort: str = ""


def sort_columns(
    request: HttpRequest, columns: list[tuple[str, str]], orderings: dict[str, list], default: str
) -> tuple[str, list, list[Column]]:
    """(sort, order_by, columns) for `?sort=key` / `?sort=-key` limited to `orderings`."""
    sort = request.GET.get("sort") or default
    key = sort.lstrip("-")
    if key not in orderings:
        sort, key = default, default.lstrip("-")
    descending = sort.startswith("-")
    order = []
    for expr in orderings[key]:
        if isinstance(expr, str):
            flipped = expr[1:] if expr.startswith("-") else f"-{expr}"
            order.append(flipped if descending else expr)
        else:
            order.append(expr.copy().reverse_ordering() if descending else expr)
    out = []
    for label, col_key in columns:
        col = Column(label=label, key=col_key)
        if col_key:
            if col_key == key:
                col.active = "desc" if descending else "asc"
                col.next_sort = col_key if descending else f"-{col_key}"
            else:
                col.next_sort = col_key
        out.append(col)
    return sort, order, out


def filter_controls(filterset, names: list[tuple[str, str]]) -> list[dict]:
    """Select boxes for a FilterSet's choice filters: [{name, label, choices, value}]."""
    data = filterset.form.data if filterset.is_bound else {}
    out = []
    for name, label in names:
        field = filterset.form.fields[name]
        choices = [(v, lbl) for v, lbl in getattr(field, "choices", []) if v != ""]
        out.append({"name": name, "label": label, "choices": choices, "value": data.get(name, "")})
    return out


def active_filters(request: HttpRequest, names: list[str]) -> bool:
    return any(request.GET.get(n) for n in names)


def metric_rows(metrics: dict, checks: dict) -> list[dict]:
    """Rows of the metrics-against-targets table (includes/metrics_table.html) from a metrics
    dict and its checks (runs.metrics.metric_checks / Run.metric_checks_json)."""
    rows = []
    for name, value in (metrics or {}).items():
        check = (checks or {}).get(name) or {}
        rows.append(
            {
                "name": name,
                "value": value,
                "target": check.get("target"),
                "warning": check.get("threshold_warning"),
                "critical": check.get("threshold_critical"),
                "direction": check.get("direction"),
                "status": check.get("status"),
                "meets_target": check.get("meets_target"),
            }
        )
    return rows


def manifest_text(manifest: Any) -> str:
    return json.dumps(manifest, indent=2, ensure_ascii=False)


def json_value(value: Any) -> str:
    """A diff/table cell: strings as they are, everything else as compact JSON."""
    if value is None:
        return ""
    if isinstance(value, str):
        return value
    text = json.dumps(value, ensure_ascii=False)
    return json.dumps(value, indent=2, ensure_ascii=False) if len(text) > 60 else text
