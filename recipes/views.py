"""HTML pages of the recipes app: the library (all four tabs), recipe detail, chat."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Case, F, IntegerField, Prefetch, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url, reswap, retarget

from mlworkspace.errors import Conflict, DomainError
from mlworkspace.forms import add_domain_errors
from mlworkspace.views import (
    active_filters,
    filter_controls,
    is_fragment,
    paginate,
    render_page,
    require_perm,
    sort_columns,
)

from . import access, catalog, selectors, services
from .approval import approval_gate
from .filters import RecipeFilter
from .forms import (
    ApproveForm,
    ChatForm,
    CloneForm,
    RebaseForm,
    RecipeStatusForm,
    VersionForm,
    parse_manifest_text,
    parse_resolutions,
)
from .lineage import semantic_diff
from .manifest import validate_manifest
from .models import Conversation, Recipe, RecipeStatus, RecipeVersion, SyntheticExample


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


# --------------------------------------------------------------------------- library


TABS = [("recipes", "Recipes"), ("models", "Models"), ("runs", "Runs"), ("monitoring", "Monitoring")]
LEVEL_RANK = Case(
    When(level="baseline", then=Value(0)),
    When(level="industry", then=Value(1)),
    default=Value(2),
    output_field=IntegerField(),
)
# Tree order (baseline, then its industry recipes each followed by their clients) computed in
# SQL from the parent and grandparent columns, so it pages like any other ordering.
LINEAGE_ORDER = [
    Coalesce(F("parent__parent__created_at"), F("parent__created_at"), F("created_at")).asc(),
    Coalesce(F("parent__parent_id"), F("parent_id"), F("id")).asc(),
    Case(
        When(level="baseline", then=Value(None)),
        When(level="industry", then=F("created_at")),
        default=F("parent__created_at"),
    ).asc(nulls_first=True),
    Case(
        When(level="baseline", then=Value("")),
        When(level="industry", then=F("id")),
        default=F("parent_id"),
    ).asc(),
    LEVEL_RANK.asc(),
    F("created_at").asc(),
    F("id").asc(),
]
RECIPE_ORDERINGS = {
    "lineage": LINEAGE_ORDER,
    "name": ["name", "id"],
    "family": ["model_family", "name", "id"],
    "level": [LEVEL_RANK.asc(), "name", "id"],
    "status": ["status", "name", "id"],
    "updated": ["updated_at", "id"],
}
RECIPE_COLUMNS = [
    ("Recipe", "name"),
    ("Family", "family"),
    ("Level", "level"),
    ("Status", "status"),
    ("Version", ""),
    ("Tags", ""),
    ("Owner", ""),
    ("Updated", "updated"),
]


def recipes_tab(request: HttpRequest) -> dict:
    base = Recipe.objects.visible_to(request.user).for_list().select_related("parent__parent")
    filterset = RecipeFilter(request.GET or None, queryset=base)
    queryset = filterset.qs if filterset.is_bound and filterset.is_valid() else base
    sort, order, columns = sort_columns(request, RECIPE_COLUMNS, RECIPE_ORDERINGS, "lineage")
    page = paginate(request, queryset.order_by(*order))
    for recipe in page.object_list:
        recipe.depth = catalog.LEVELS.index(recipe.level) if recipe.level in catalog.LEVELS else 0
        recipe.ancestors = [a for a in (getattr(recipe.parent, "parent", None), recipe.parent) if a]
    return {
        "page": page,
        "columns": columns,
        "sort": sort,
        "tree": sort == "lineage",
        "search": request.GET.get("search", ""),
        "filters": filter_controls(
            filterset, [("model_family", "Family"), ("level", "Level"), ("status", "Status")]
        ),
        "filtered": active_filters(request, ["model_family", "level", "status", "search", "tag"]),
        "results_template": "recipes/_recipes_table.html",
        "noun": "recipe",
    }


@login_required
def library(request: HttpRequest) -> HttpResponse:
    """The library: tabs Recipes · Models · Runs · Monitoring, each with filters, sort, paging.

    HTMX: a tab link swaps #library (the whole tab); the filter form, sort headers and pager
    swap only #results, so the search box keeps its focus while typing."""
    from models_registry.views import models_tab
    from monitoring.views import monitoring_tab
    from runs.views import runs_tab

    tab = request.GET.get("tab", "recipes")
    builders = {"recipes": recipes_tab, "models": models_tab, "runs": runs_tab, "monitoring": monitoring_tab}
    if tab not in builders:
        tab = "recipes"
    context = {"nav": "library", "tab": tab, "tabs": TABS, **builders[tab](request)}
    partial = "results" if is_fragment(request) and request.htmx.target == "results" else "library"
    return render_page(request, "recipes/library.html", context, partial=partial)


# --------------------------------------------------------------------------- recipe detail

RECIPE_TABS = [
    ("overview", "Overview"),
    ("manifest", "Manifest Editor"),
    ("versions", "Versions"),
    ("lineage", "Lineage"),
    ("example", "Synthetic example"),
    ("history", "History"),
]


CHILDREN_SHOWN = 20


def _children(recipe: Recipe, user) -> dict:
    """The first children by name; a baseline can have thousands (the rest: a library link).
    Only those the user may see: another client's clones stay unseen."""
    visible = recipe.children.visible_to(user)
    children = list(visible.only("id", "name", "status").order_by("name", "id")[: CHILDREN_SHOWN + 1])
    more = visible.count() - CHILDREN_SHOWN if len(children) > CHILDREN_SHOWN else 0
    return {"children": children[:CHILDREN_SHOWN], "children_more": more}


def _get_recipe_for_user(user, recipe_id: str) -> Recipe:
    return get_object_or_404(
        Recipe.objects.visible_to(user)
        .select_related("parent__parent", "created_by", "client")
        .prefetch_related(
            "tag_set",
            # Version summaries only: the manifest is read for the one version shown.
            Prefetch(
                "versions",
                queryset=RecipeVersion.objects.select_related("created_by", "approved_by")
                .defer("manifest")
                .order_by("created_at", "id"),
            ),
        ),
        pk=recipe_id,
    )


def _permissions(user, recipe: Recipe | None = None) -> dict[str, bool]:
    """What the page offers: for a client's recipe the user's role in the client decides
    (recipes.access), for a firm recipe the Django permissions of their groups."""
    if recipe is not None and access.is_client_object(recipe):
        write = access.can_write(user, recipe)
        return {
            "add_version": write,
            "approve": access.can_approve(user, recipe),
            "change": write,
            "clone": False,  # client recipes are the lowest level
            "register": write,
            "run": write,
        }
    return {
        "add_version": user.has_perm("recipes.add_recipeversion"),
        "approve": user.has_perm("recipes.approve_recipeversion"),
        "change": user.has_perm("recipes.change_recipe"),
        # Cloning an industry recipe writes into a client: a write role there is enough.
        "clone": user.has_perm("recipes.add_recipe")
        or (recipe is not None and recipe.level == "industry" and access.has_write_role_somewhere(user)),
        "register": user.has_perm("models_registry.add_mlmodel"),
        "run": user.has_perm("runs.add_run"),
    }


STATUS_ACTIONS = {
    # target status -> button label, from the legal moves of services.RECIPE_TRANSITIONS
    RecipeStatus.IN_REVIEW: "Submit for review",
    RecipeStatus.DRAFT: "Back to draft",
    RecipeStatus.DEPRECATED: "Deprecate",
}


def _synthetic_example(recipe: Recipe) -> tuple[SyntheticExample | None, Recipe | None]:
    """The recipe's own example or its nearest ancestor's (like the API), in one query."""
    chain = [recipe, *[a for a in (recipe.parent, getattr(recipe.parent, "parent", None)) if a]]
    examples = {e.recipe_id: e for e in SyntheticExample.objects.filter(recipe_id__in=[r.pk for r in chain])}
    for owner in chain:
        if owner.pk in examples:
            return examples[owner.pk], (None if owner.pk == recipe.pk else owner)
    return None, None


def _line_of(text: str, path: str) -> int | None:
    """The line of `text` (JSON) where the key path `path` (a JSON pointer) is, best effort:
    each object key is searched after the previous one; list indices are skipped."""
    if not path:
        return 1
    position, found = 0, False
    for token in path.lstrip("/").split("/"):
        token = token.replace("~1", "/").replace("~0", "~")
        if token.isdigit():
            continue
        match = re.compile(r'"' + re.escape(token) + r'"\s*:').search(text, position)
        if match is None:
            break
        position, found = match.start(), True
    return text.count("\n", 0, position) + 1 if found else None


def _editor_errors(errors: list[dict], text: str, prefix: str = "") -> list[dict]:
    out = []
    for error in errors:
        path = error.get("path") or ""
        if prefix and path.startswith(prefix):
            path = path[len(prefix) :]
        out.append({"path": path or "/", "message": error.get("message", ""), "line": _line_of(text, path)})
    return out


def _side_by_side(old_text: str, new_text: str, context: int = 3) -> list[dict]:
    """Changed hunks of two JSON texts as rows {left_no, left, right_no, right, kind}."""
    old, new = old_text.splitlines(), new_text.splitlines()
    rows: list[dict] = []
    matcher = difflib.SequenceMatcher(a=old, b=new, autojunk=False)
    for group in matcher.get_grouped_opcodes(context):
        if rows:
            rows.append({"kind": "gap"})
        for tag, i1, i2, j1, j2 in group:
            if tag == "equal":
                for i, j in zip(range(i1, i2), range(j1, j2), strict=True):
                    rows.append(
                        {"kind": "same", "left_no": i + 1, "left": old[i], "right_no": j + 1, "right": new[j]}
                    )
                continue
            left, right = list(range(i1, i2)), list(range(j1, j2))
            for k in range(max(len(left), len(right))):
                i = left[k] if k < len(left) else None
                j = right[k] if k < len(right) else None
                rows.append(
                    {
                        "kind": tag,
                        "left_no": None if i is None else i + 1,
                        "left": "" if i is None else old[i],
                        "right_no": None if j is None else j + 1,
                        "right": "" if j is None else new[j],
                    }
                )
    return rows


def _changes_view(changes: list[dict]) -> list[dict]:
    """Semantic-diff changes for a table: values as text, with each change's bump and reason."""
    return [
        {
            "path": c["path"],
            "op": c["op"],
            "old": json_value(c.get("old")),
            "new": json_value(c.get("new")),
            "bump": c.get("bump"),
            "reason": c.get("reason", ""),
        }
        for c in changes
    ]


def _parent_versions(recipe: Recipe) -> list[RecipeVersion]:
    """The parent recipe's versions (summaries, newest first), labelled for the compare selects."""
    if recipe.parent_id is None:
        return []
    versions = list(
        RecipeVersion.objects.filter(recipe_id=recipe.parent_id).defer(
            "manifest", "approval_json", "changelog"
        )
    )
    for v in versions:
        v.label = f"parent {v.version}"
    return sorted(versions, key=lambda v: v.semver, reverse=True)


def _diff_context(
    recipe: Recipe,
    versions: list[RecipeVersion],
    a_id: str | None,
    b_id: str | None,
    parent_versions: list[RecipeVersion] | None = None,
) -> dict:
    """The comparison of two versions — semantic (each change with its bump and why, and the
    bump the whole change needs) and line by line. Either side may be a version of the parent
    recipe; the default is the two newest versions, or for a recipe with one version the
    parent version it derives from against it."""
    parent_versions = _parent_versions(recipe) if parent_versions is None else parent_versions
    context: dict[str, Any] = {"parent_versions": parent_versions, "parent": recipe.parent}
    newest_first = sorted(versions, key=lambda v: v.semver, reverse=True)
    for v in newest_first:
        v.label = v.version
    if not newest_first or len(newest_first) + len(parent_versions) < 2:
        return {**context, "diff_possible": False}
    by_id = {v.id: v for v in [*newest_first, *parent_versions]}
    if len(newest_first) > 1:
        default_a = newest_first[1]
    else:
        base_id = newest_first[0].base_version_id
        default_a = next((v for v in parent_versions if v.id == base_id), parent_versions[0])
    a = by_id.get(a_id or "") or default_a
    b = by_id.get(b_id or "") or newest_first[0]
    # Only the two compared versions' manifests are read.
    manifests = dict(RecipeVersion.objects.filter(pk__in=[a.pk, b.pk]).values_list("id", "manifest"))
    old, new = manifests.get(a.pk, {}), manifests.get(b.pk, {})
    result = semantic_diff(old, new)
    return {
        **context,
        "diff_possible": True,
        "diff_a": a,
        "diff_b": b,
        "changes": _changes_view(result["changes"]),
        "suggested_bump": result["suggested_bump"],
        "bump_counts": [
            (bump, result["by_bump"][bump])
            for bump in ("major", "minor", "patch")
            if result["by_bump"].get(bump)
        ],
        "side_by_side": _side_by_side(manifest_text(old), manifest_text(new)),
    }


# --------------------------------------------------------------------------- lineage and upstream


def _label_tree(node: dict) -> None:
    node["level_label"] = node["level"].title()
    node["status_label"] = dict(RecipeStatus.choices).get(node["status"], node["status"])
    for child in node["children"]:
        _label_tree(child)


def _lineage_context(recipe: Recipe, user=None) -> dict:
    """The chain with provenance counts, and the family tree (a few children per node, always
    the branch leading to this recipe: a baseline can have thousands of descendants)."""
    lineage = selectors.recipe_lineage(recipe) if recipe.current_version is not None else None
    tree = selectors.lineage_tree(recipe, user=user)
    _label_tree(tree)
    node = tree
    while node is not None and not node["current"]:
        node = next((c for c in node["children"] if c["on_path"]), None)
    return {"lineage": lineage, "tree": tree, "upstream_update": bool(node and node["upstream_update"])}


PROVENANCE_FILTERS = [("", "All"), ("own", "Own"), ("inherited", "Inherited"), ("overridden", "Overridden")]


def _provenance_context(recipe: Recipe, source: str) -> dict:
    """The current manifest's leaves with where each comes from (own / inherited from an
    ancestor / overridden, with the ancestor's value) and the parent's leaves it removed."""
    lineage = selectors.recipe_lineage(recipe)
    names = {level["recipe_id"]: level["name"] for level in lineage["chain"]}
    counts = {**lineage["counts"], "removed": len(lineage["removed"])}
    counts[""] = sum(lineage["counts"].values())
    if source not in counts:
        source = ""
    fields = [
        {
            "path": f["path"],
            "value": json_value(f["value"]),
            "source": f["source"],
            "from_id": f["from"],
            "from_name": names.get(f["from"], f["from"]),
            "ancestor_value": json_value(f["ancestor_value"]),
        }
        for f in lineage["fields"]
        if source in ("", f["source"])
    ]
    removed = [
        {
            "path": r["path"],
            "ancestor_value": json_value(r["ancestor_value"]),
            "from_id": r["from"],
            "from_name": names.get(r["from"], r["from"]),
        }
        for r in lineage["removed"]
        if source in ("", "removed")
    ]
    filters = [(key, label, counts[key]) for key, label in PROVENANCE_FILTERS]
    filters.append(("removed", "Removed", counts["removed"]))
    return {
        "provenance": {
            "fields": fields,
            "removed": removed,
            "counts": counts,
            "filters": filters,
            "source": source,
            "chain": lineage["chain"],
            "root": recipe.parent_id is None,
            # A version saved before lineage was recorded knows no parent version to compare with.
            "unknown_base": recipe.parent_id is not None and len(lineage["chain"]) == 1,
        }
    }


def _value_text(value: Any, present: bool) -> str:
    """A conflict side as text: "" when absent, "null" for a JSON null (json_value shows "")."""
    if not present:
        return ""
    return "null" if value is None else json_value(value)


def _upstream_context(
    recipe: Recipe, posted: dict | None = None, errors: list[dict] | None = None
) -> dict | None:
    """The parent's newer approved version, its diff since the version this recipe derives
    from and the merge preview (clean, or its conflicts as rows of the resolution form with
    what was posted); None when there is nothing to take (or no upstream at all)."""
    if recipe.parent_id is None:
        return None
    try:
        upstream = selectors.recipe_upstream(recipe)
    except DomainError:
        return None  # no recorded parent version (a recipe older than lineage tracking)
    if not upstream["update_available"]:
        return None
    preview = upstream["preview"]
    posted = posted or {}
    by_path: dict[str, list[str]] = {}
    general = []
    for error in errors or []:
        if error.get("path") in (c["path"] for c in preview["conflicts"]):
            by_path.setdefault(error["path"], []).append(error["message"])
        else:
            general.append(error)
    conflicts = []
    for i, c in enumerate(preview["conflicts"]):
        mine = posted.get(c["path"], {})
        conflicts.append(
            {
                "index": i,
                "path": c["path"],
                "order": c.get("order", False),
                "base": _value_text(c["base"], c["base_present"]),
                "ours": _value_text(c["ours"], c["ours_present"]),
                "theirs": _value_text(c["theirs"], c["theirs_present"]),
                "base_present": c["base_present"],
                "ours_present": c["ours_present"],
                "theirs_present": c["theirs_present"],
                "choice": mine.get("choice", ""),
                "value": mine.get("value")
                if "value" in mine
                else (manifest_text(c["ours"]) if c["ours_present"] else ""),
                "errors": by_path.get(c["path"], []),
            }
        )
    upstream_diff = preview["upstream_diff"]
    result_diff = preview.get("result_diff")
    return {
        "parent": recipe.parent,
        "base": upstream["base"],
        "theirs": upstream["latest_approved"],
        "ours": upstream["ours"],
        "changes": _changes_view(upstream_diff["changes"]),
        "suggested_bump": upstream_diff["suggested_bump"],
        "clean": preview["clean"],
        "valid": preview["valid"],
        # Clean and valid: one button; conflicts: the resolution form; clean but invalid: neither.
        "offer_form": preview["valid"] or not preview["clean"],
        "invalid": [{"path": e.get("path", ""), "message": e.get("message", "")} for e in preview["errors"]],
        "conflicts": conflicts,
        "result_changes": _changes_view(result_diff["changes"]) if result_diff else [],
        "result_bump": result_diff["suggested_bump"] if result_diff else None,
        "errors": general,
        "open": bool(errors),
    }


# --------------------------------------------------------------------------- approval evidence

GATES_SHOWN = 3


def _comparison_rows(rows: list[dict] | None) -> list[dict]:
    return [
        {**r, "worse_pct": f"{r['worse_by']:+.1%}" if isinstance(r.get("worse_by"), (int, float)) else ""}
        for r in rows or []
    ]


def _gate_view(gate: dict) -> dict:
    """An approval gate result (or the record of one) shaped for the template."""
    evidence = gate.get("evidence") or {}
    return {
        "passed": gate.get("passed", False),
        "reasons": gate.get("reasons") or [],
        "notes": gate.get("notes") or [],
        "run_id": evidence.get("run_id"),
        "run_type": evidence.get("run_type"),
        "breaches": evidence.get("breaches") or [],
        "comparison": _comparison_rows(evidence.get("comparison")),
        "compared_with": gate.get("compared_with"),
        "tolerance": gate.get("tolerance"),
        "tolerance_pct": f"{gate['tolerance']:.1%}"
        if isinstance(gate.get("tolerance"), (int, float))
        else "",
        "runs_checked": gate.get("runs_checked"),
    }


def _approval_record(version: RecipeVersion) -> dict | None:
    """How an approved version was approved: "passed" (the gate, on an evidence run),
    "overridden" (with the reason) or "legacy" (approved before the gate existed)."""
    if not version.is_approved:
        return None
    record = version.approval_json or {}
    if not record.get("gate"):
        return {"kind": "legacy"}
    return {"kind": record["gate"], "reason": version.approval_override_reason, **_gate_view(record)}


def _approval_context(request: HttpRequest, recipe: Recipe, versions: list[RecipeVersion]) -> dict:
    """Each approved version's record; for approvers the gate of the newest unapproved versions
    (and of ?gate=<id>): a handful of queries each, so only a few are evaluated."""
    for v in versions:
        v.approval = _approval_record(v)
    pending = selectors.versions_awaiting_approval(versions)  # newest first; superseded ones left out
    if not (access.can_approve(request.user, recipe) and recipe.status != RecipeStatus.DEPRECATED):
        return {"gates": [], "gates_unchecked": []}
    asked = request.GET.get("gate")
    checked = [v for i, v in enumerate(pending) if i < GATES_SHOWN or v.pk == asked]
    gates = [{"version": v, **_gate_view(approval_gate(v))} for v in checked]
    for v in checked:
        v.gate_shown = True
    return {"gates": gates, "gates_unchecked": [v for v in pending if v not in checked]}


def _status_moves(recipe: Recipe) -> list[tuple[str, str]]:
    return [(status, STATUS_ACTIONS[status]) for status in services.recipe_status_moves(recipe)]


def _detail_context(request: HttpRequest, recipe: Recipe, tab: str, **extra) -> dict:
    versions = list(recipe.versions.all())
    newest_first = sorted(versions, key=lambda v: v.semver, reverse=True)
    awaiting = selectors.versions_awaiting_approval(versions)
    for v in versions:
        # Unapproved but older than an approved version: nothing to approve any more.
        v.superseded = not v.is_approved and v not in awaiting
    context: dict[str, Any] = {
        "nav": "library",
        "recipe": recipe,
        "tab": tab,
        "tabs": RECIPE_TABS,
        "versions": newest_first,
        "current": recipe.current_version,
        "approved_versions": [v for v in versions if v.is_approved],
        # Oldest first: the header offers the newest one (|last).
        "pending_versions": awaiting[::-1],
        "ancestors": [a for a in (getattr(recipe.parent, "parent", None), recipe.parent) if a],
        **_children(recipe, request.user),
        "child_level": catalog.CHILD_LEVEL.get(recipe.level),
        "status_moves": _status_moves(recipe),
        "can": _permissions(request.user, recipe),
        "family_label": catalog.FAMILY_LABELS.get(recipe.model_family, recipe.model_family),
        "clone_form": extra.pop("clone_form", None) or CloneForm(source=recipe, user=request.user),
    }
    # The upstream banner sits above the tabs: a tab swapped in by HTMX leaves it as it is.
    if "upstream" not in extra and not is_fragment(request):
        context["upstream"] = _upstream_context(recipe)
    if tab == "overview":
        from models_registry.models import MLModel
        from runs.models import Run

        context["recent_models"] = list(
            MLModel.objects.filter(recipe=recipe).select_related("recipe_version").order_by("-created_at")[:5]
        )
        context["recent_runs"] = list(
            Run.objects.filter(recipe=recipe)
            .select_related("recipe_version")
            .defer("plots_json", "metrics_json", "metric_checks_json", "artifacts_json", "stages_json")
            .order_by("-created_at")[:5]
        )
        context["metrics"] = _metric_rows(recipe)
    elif tab == "manifest":
        shown = (
            next((v for v in versions if v.id == request.GET.get("version")), None) or recipe.current_version
        )
        context["shown"] = shown
        editing = request.GET.get("edit") == "1" or "form" in extra
        context["editing"] = editing
        # ?view=fields: the current manifest's leaves with their provenance instead of the JSON.
        view = "fields" if request.GET.get("view") == "fields" and shown == recipe.current_version else "json"
        context["view"] = "json" if editing else view
        if shown is not None and context["view"] == "fields":
            context.update(_provenance_context(recipe, request.GET.get("source", "")))
        elif shown is not None:
            manifest = RecipeVersion.objects.values_list("manifest", flat=True).get(pk=shown.pk)
            context["manifest_text"] = manifest_text(manifest)
        if editing:
            form = extra.pop("form", None) or VersionForm(
                initial={"manifest": context.get("manifest_text", "{}")}
            )
            context["form"] = form
            context["editor_errors"] = extra.pop("editor_errors", [])
    elif tab == "versions":
        context.update(_diff_context(recipe, versions, request.GET.get("a"), request.GET.get("b")))
        context.update(_approval_context(request, recipe, newest_first))
        bases = {v.pk: v for v in context["parent_versions"]}
        for v in newest_first:
            v.base = bases.get(v.base_version_id)
    elif tab == "lineage":
        context.update(_lineage_context(recipe, request.user))
    elif tab == "example":
        example, inherited_from = _synthetic_example(recipe)
        context["example"] = example
        context["inherited_from"] = inherited_from
        if example is not None:
            rows = example.sample_rows_json or []
            columns = list(dict.fromkeys(k for row in rows if isinstance(row, dict) for k in row))
            context["sample_columns"] = columns
            context["sample_rows"] = [[json_value(row.get(c)) for c in columns] for row in rows[:20]]
            context["expected_output_text"] = manifest_text(example.expected_output_json)
            context["example_metrics"] = [
                {"name": k, "value": v} for k, v in (example.example_metrics_json or {}).items()
            ]
    context.update(extra)
    return context


def _metric_rows(recipe: Recipe) -> list[dict]:
    """The current version's metric targets, with each metric's direction."""
    version = recipe.current_version
    if version is None:
        return []
    manifest = RecipeVersion.objects.values_list("manifest", flat=True).get(pk=version.pk)
    metrics = ((manifest or {}).get("evaluation") or {}).get("metrics") or {}
    rows = []
    for name, spec in metrics.items():
        spec = spec if isinstance(spec, dict) else {}
        rows.append(
            {
                "name": name,
                "direction": catalog.metric_direction(recipe.model_family, name, spec.get("direction")),
                "target": spec.get("target"),
                "warning": spec.get("threshold_warning"),
                "critical": spec.get("threshold_critical"),
            }
        )
    return rows


@login_required
def recipe_detail(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """Overview · Manifest Editor · Versions · Lineage · Synthetic example (?tab=); HTMX swaps
    the tab. Above the tabs, when the parent has a newer approved version: the upstream banner
    with its diff, the merge preview and the rebase (or conflict resolution) form."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    tab = request.GET.get("tab", "overview")
    if tab not in dict(RECIPE_TABS):
        tab = "overview"
    context = _detail_context(request, recipe, tab)
    return render_page(request, "recipes/recipe_detail.html", context, partial="tab")


@login_required
@require_POST
def manifest_validate(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """Live validation of the editor's text: the errors at their JSON-pointer paths (a fragment)."""
    recipe = get_object_or_404(Recipe.objects.visible_to(request.user), pk=recipe_id)
    text = request.POST.get("manifest", "")
    manifest, syntax_error = parse_manifest_text(text)
    if syntax_error:
        errors = [{"path": "/", "message": syntax_error, "line": None}]
    else:
        found = validate_manifest(
            manifest, family=recipe.model_family, level=recipe.level, max_depth=settings.JSON_MAX_DEPTH
        )
        errors = _editor_errors(found, text)
    context: dict[str, Any] = {"editor_errors": errors, "validated": True, "recipe": recipe}
    if not errors:
        context["bump_hint"] = _bump_hint(recipe, manifest)
    return render(request, "recipes/recipe_detail.html#validation", context)


BUMP_HINT_REASONS = 5


def _bump_hint(recipe: Recipe, manifest: Any) -> dict | None:
    """What "suggested" will take for this text: the bump the changes from the newest version
    need, with the reasons of the biggest changes."""
    latest = recipe.current_version
    if latest is None:
        return None
    result = semantic_diff(latest.manifest, manifest)
    top = [c for c in result["changes"] if c["bump"] == result["suggested_bump"]]
    return {
        "latest": latest.version,
        "count": len(result["changes"]),
        "bump": result["suggested_bump"],
        "reasons": list(dict.fromkeys(c["reason"] for c in top))[:BUMP_HINT_REASONS],
    }


def _new_version_url(recipe: Recipe, created: RecipeVersion) -> str:
    """The versions tab comparing a just-created version with the one before it."""
    previous = max(
        (v for v in recipe.versions.all() if v.pk != created.pk), key=lambda v: v.semver, default=None
    )
    url = reverse("pages:recipe", args=[recipe.pk]) + f"?tab=versions&b={created.pk}"
    return url + (f"&a={previous.pk}" if previous is not None else "")


@login_required
@require_POST
def version_new(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """Save as New Version: the suggested bump (default), an explicit bump or number, and a
    forced smaller one with a note; invalid manifests and refused bumps come back as errors."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    require_perm(request, "recipes.add_recipeversion", "save a new version", obj=recipe)
    form = VersionForm(request.POST)
    text = request.POST.get("manifest", "")
    editor_errors: list[dict] = []
    if form.is_valid():
        values = form.cleaned_data
        try:
            created = services.version_create(
                recipe=recipe,
                user=request.user,
                manifest=values["manifest"],
                version=values["version"],
                bump=values["bump"],
                changelog=values["changelog"],
                force=values["force"],
                force_note=values["force_note"],
            )
        except services.NoChanges as exc:
            form.add_error(None, exc.detail)
        except DomainError as exc:
            manifest_errors = [e for e in exc.errors if (e.get("path") or "").startswith("/manifest")]
            if isinstance(exc, Conflict) and manifest_errors:
                # A bump smaller than the changes need (the manifest itself is valid): the
                # refusal goes on the bump, with the changes that need more.
                form.add_error("version" if values["version"] else "bump", exc.detail)
            else:
                editor_errors = _editor_errors(manifest_errors, text, prefix="/manifest")
                other = [e for e in exc.errors if e not in manifest_errors]
                if other or not manifest_errors:
                    add_domain_errors(
                        form, DomainError(exc.detail, other), {"version": "version", "note": "force_note"}
                    )
                else:
                    form.add_error("manifest", exc.detail)
        else:
            forced = f" (forced: {created.force_note})" if created.force_note else ""
            messages.success(request, f"Saved version {created.version} of “{recipe.name}”{forced}.")
            return redirect(_new_version_url(recipe, created))
    elif "manifest" in form.errors:
        editor_errors = [{"path": "/", "message": form.errors["manifest"][0], "line": None}]
    recipe = _get_recipe_for_user(request.user, recipe_id)
    context = _detail_context(request, recipe, "manifest", form=form, editor_errors=editor_errors)
    return render(request, "recipes/recipe_detail.html", context, status=400)


@login_required
def version_diff(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """The comparison of ?a= and ?b= (version ids); a fragment for HTMX, else the Versions tab."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    if not is_fragment(request):
        query = request.GET.urlencode()
        return redirect(reverse("pages:recipe", args=[recipe.pk]) + f"?tab=versions&{query}")
    versions = list(recipe.versions.all())
    context = {
        "recipe": recipe,
        **_diff_context(recipe, versions, request.GET.get("a"), request.GET.get("b")),
    }
    context["versions"] = sorted(versions, key=lambda v: v.semver, reverse=True)
    return render(request, "recipes/recipe_detail.html#diff", context)


@login_required
@require_POST
def version_approve(request: HttpRequest, recipe_id: str, version_id: str) -> HttpResponse:
    """Approve a version: the approval gate must pass, or `override_reason` says why anyway."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    version = next((v for v in recipe.versions.all() if v.pk == version_id), None)
    if version is None:
        raise Http404(f"Recipe '{recipe.pk}' has no version '{version_id}'.")
    access.check_approve(request.user, version)
    form = ApproveForm(request.POST)
    reason = form.cleaned_data["override_reason"] if form.is_valid() else ""
    url = reverse("pages:recipe", args=[recipe.pk]) + "?tab=versions"
    try:
        approved = services.version_approve(version=version, user=request.user, override_reason=reason)
    except DomainError as exc:
        if request.POST.get("override") and not reason:
            messages.error(request, f"Overriding the approval gate needs a written reason. {exc.detail}")
        else:
            messages.error(request, exc.detail)
        return redirect(f"{url}&gate={version.pk}#approve-{version.pk}")
    how = (
        f" by override: {approved.approval_override_reason}"
        if approved.approval_override_reason
        else " (approval gate passed)"
    )
    messages.success(request, f"Approved version {version.version}{how}; “{recipe.name}” is approved.")
    return redirect(url)


@login_required
@require_POST
def recipe_rebase(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """Take the parent's new approved version: a clean merge at once; conflicts with the
    resolution form's answers (ours / theirs / a JSON value each). Anything refused — bad
    JSON, a conflict left open, an invalid merged manifest — comes back on the form (400)."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    require_perm(request, "recipes.add_recipeversion", "rebase a recipe onto its parent", obj=recipe)
    form = RebaseForm(request.POST)
    resolutions, posted, errors = parse_resolutions(request.POST)
    if not form.is_valid():
        errors.append(
            {"path": "/parent_version", "message": "the parent version is missing: reload the page"}
        )
    if not errors:
        try:
            created = services.recipe_rebase(
                recipe=recipe,
                user=request.user,
                resolutions=resolutions or None,
                parent_version=form.cleaned_data["parent_version"],
                changelog=form.cleaned_data["changelog"],
            )
        except DomainError as exc:
            # The summary first, then each problem at its path (a conflict's path puts it on
            # that conflict's row; /manifest/... paths are the merged manifest's errors).
            errors = [
                {"path": "", "message": exc.detail},
                *({"path": e.get("path") or "", "message": e.get("message", "")} for e in exc.errors),
            ]
        else:
            messages.success(
                request,
                f"Rebased “{recipe.name}” onto {recipe.parent.name} {created.base_version.version}: "
                f"new version {created.version}.",
            )
            return redirect(_new_version_url(recipe, created))
    upstream = _upstream_context(recipe, posted=posted, errors=errors)
    if upstream is None:
        # Nothing to take any more (someone rebased meanwhile, or the recipe changed).
        messages.error(request, errors[0]["message"] if errors else "There is no upstream update to take.")
        return redirect("pages:recipe", recipe_id=recipe.pk)
    tab = request.POST.get("tab") if request.POST.get("tab") in dict(RECIPE_TABS) else "overview"
    recipe = _get_recipe_for_user(request.user, recipe_id)
    context = _detail_context(request, recipe, tab, upstream=upstream, rebase_form=form)
    return render(request, "recipes/recipe_detail.html", context, status=400)


@login_required
@require_POST
def recipe_status(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """Submit for review / back to draft / deprecate (approval has its own action)."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    require_perm(request, "recipes.change_recipe", "change a recipe's status", obj=recipe)
    form = RecipeStatusForm(request.POST)
    if not form.is_valid():
        messages.error(request, "Unknown status.")
    else:
        try:
            services.recipe_update(recipe=recipe, user=request.user, status=form.cleaned_data["status"])
        except DomainError as exc:
            messages.error(request, exc.detail)
        else:
            label = dict(RecipeStatus.choices)[form.cleaned_data["status"]]
            messages.success(request, f"“{recipe.name}” is now {label.lower()}.")
    return redirect("pages:recipe", recipe_id=recipe.pk)


@login_required
@require_http_methods(["GET", "POST"])
def recipe_clone(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """The clone dialog (name, level): a page of its own without JS, a dialog on the detail page."""
    source = _get_recipe_for_user(request.user, recipe_id)
    form = CloneForm(request.POST or None, source=source, user=request.user)
    status = 200
    if request.method == "POST":
        if form.is_valid():
            # The clone is written into its client (or the firm): that decides who may.
            client = form.cleaned_data.get("client")
            require_perm(
                request, "recipes.add_recipe", "clone recipes", obj=client or source.client or source
            )
            try:
                clone = services.recipe_clone(
                    source=source,
                    user=request.user,
                    name=form.cleaned_data["name"],
                    level=form.cleaned_data["level"],
                    description=form.cleaned_data["description"] or None,
                    client=client,
                )
            except DomainError as exc:
                add_domain_errors(form, exc)
            else:
                messages.success(
                    request, f"Created the {clone.level} recipe “{clone.name}” from “{source.name}”."
                )
                url = reverse("pages:recipe", args=[clone.pk])
                return HttpResponseClientRedirect(url) if is_fragment(request) else redirect(url)
        status = 400
    context = {
        "nav": "library",
        "recipe": source,
        "clone_form": form,
        "child_level": catalog.CHILD_LEVEL.get(source.level),
    }
    return render_page(request, "recipes/clone.html", context, partial="form", status=status)


# --------------------------------------------------------------------------- chat


def _text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("question", "message", "text", "field", "path"):
            if isinstance(item.get(key), str):
                return item[key]
    return json.dumps(item, ensure_ascii=False)


def _proposal_view(proposal: Any) -> dict | None:
    """The assistant's proposal, shaped for the template (defensive: the assistant evolves)."""
    if not isinstance(proposal, dict):
        return None
    manifest = proposal.get("manifest")
    diff = [
        {
            "path": d.get("path", ""),
            "op": d.get("op", ""),
            "old": json_value(d.get("old")),
            "new": json_value(d.get("new")),
        }
        for d in proposal.get("diff") or []
        if isinstance(d, dict)
    ]
    return {
        "family": proposal.get("family"),
        "family_label": catalog.FAMILY_LABELS.get(proposal.get("family") or "", proposal.get("family")),
        "level": proposal.get("level"),
        "base_recipe_id": proposal.get("base_recipe_id"),
        "name": proposal.get("name"),
        "valid": proposal.get("valid"),
        "manifest_text": manifest_text(manifest) if manifest is not None else "",
        "diff": diff,
        "missing": [_text(m) for m in proposal.get("missing") or []],
    }


def _sources_view(sources: Any) -> list[dict]:
    out = []
    for source in sources or []:
        if isinstance(source, dict):
            title = source.get("title") or source.get("name") or source.get("id") or source.get("path") or ""
            url = source.get("url") or ""
            out.append(
                {"title": str(title), "url": url if isinstance(url, str) and url.startswith("/") else ""}
            )
        else:
            out.append({"title": str(source), "url": ""})
    return out


def _message_view(role: str, content: str, proposal=None, sources=None, created_recipe_id=None) -> dict:
    return {
        "role": role,
        "content": content,
        "proposal": _proposal_view(proposal),
        "sources": _sources_view(sources),
        "created_recipe_id": created_recipe_id,
    }


@login_required
@require_http_methods(["GET", "POST"])
def chat(request: HttpRequest) -> HttpResponse:
    """Build with Chat: describe the model, get a proposed manifest, say "create it"."""
    from . import chat as assistant

    conversation = None
    conversation_id = request.POST.get("conversation_id") or request.GET.get("c")
    if conversation_id:
        conversation = get_object_or_404(Conversation.objects.visible_to(request.user), pk=conversation_id)
    form = ChatForm(request.POST or None, initial={"conversation_id": conversation_id or ""})

    if request.method == "POST":
        if form.is_valid():
            message = form.cleaned_data["message"]
            try:
                result = assistant.chat_reply(user=request.user, message=message, conversation=conversation)
            except DomainError as exc:
                reply = _message_view("assistant", f"That did not work: {exc.detail}")
                reply["error"] = True
                new_id = conversation.pk if conversation else ""
            else:
                reply = _message_view(
                    "assistant",
                    result.get("reply") or "",
                    result.get("proposal"),
                    result.get("sources"),
                    result.get("created_recipe_id"),
                )
                new_id = result.get("conversation_id") or ""
            url = reverse("pages:chat") + (f"?c={new_id}" if new_id else "")
            if not is_fragment(request):
                return redirect(url)
            context = {"exchange": [_message_view("user", message), reply], "conversation_id": new_id}
            response = render(request, "recipes/chat.html#exchange", context)
            return push_url(response, url) if new_id else response
        if is_fragment(request):
            # The form answers in place of the chat log it normally appends to.
            response = render(request, "recipes/chat.html#form", {"form": form}, status=400)
            return reswap(retarget(response, "#chat-form"), "outerHTML")
    history: list[dict] = []
    if conversation is not None:
        for m in assistant.conversation_history(conversation)["messages"]:
            history.append(_message_view(m["role"], m["content"], m.get("proposal"), m.get("sources")))
        # Only the newest proposal can still be created; older ones were superseded.
        with_proposal = [m for m in history if m["proposal"]]
        for m in with_proposal[:-1]:
            m["superseded"] = True
    context = {
        "nav": "chat",
        "form": form,
        "conversation": conversation,
        "conversation_id": conversation.pk if conversation is not None else "",
        "created_recipe": (
            Recipe.objects.visible_to(request.user).filter(pk=conversation.created_recipe_id).first()
            if conversation is not None and conversation.created_recipe_id
            else None
        ),
        "history": history,
        "conversations": Conversation.objects.visible_to(request.user).only("id", "title", "updated_at")[:20],
    }
    return render(request, "recipes/chat.html", context, status=400 if form.errors else 200)
