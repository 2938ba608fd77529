"""The recipe page's context: what each of its tabs shows (overview, manifest editor,
versions with their approval evidence, lineage with provenance and upstream, synthetic
example, history). recipes/views.py handles the requests and renders with these."""

from __future__ import annotations

import difflib
import re
from typing import Any

from django.http import HttpRequest

from mlworkspace.errors import DomainError
from mlworkspace.views import is_fragment, json_value, manifest_text
from models_registry import perms as model_perms
from recipes import perms as recipe_perms
from runs import perms as run_perms

from . import access, catalog, selectors, services
from .approval import approval_gate
from .forms import (
    CloneForm,
    VersionForm,
)
from .lineage import semantic_diff
from .models import Recipe, RecipeStatus, RecipeVersion

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
        "add_version": user.has_perm(recipe_perms.ADD_VERSION),
        "approve": user.has_perm(recipe_perms.APPROVE_VERSION),
        "change": user.has_perm(recipe_perms.CHANGE_RECIPE),
        # Cloning an industry recipe writes into a client: a write role there is enough.
        "clone": user.has_perm(recipe_perms.ADD_RECIPE)
        or (recipe is not None and recipe.level == "industry" and access.has_write_role_somewhere(user)),
        "register": user.has_perm(model_perms.ADD_MODEL),
        "run": user.has_perm(run_perms.ADD_RUN),
    }


STATUS_ACTIONS = {
    # target status -> button label, from the legal moves of services.RECIPE_TRANSITIONS
    RecipeStatus.IN_REVIEW: "Submit for review",
    RecipeStatus.DRAFT: "Back to draft",
    RecipeStatus.DEPRECATED: "Deprecate",
}


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


def located_errors(errors: list[dict], text: str, prefix: str = "") -> list[dict]:
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


def diff_context(
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


def upstream_context(
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


def detail_context(request: HttpRequest, recipe: Recipe, tab: str, **extra) -> dict:
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
        "ancestors": recipe.ancestors,
        **_children(recipe, request.user),
        "child_level": catalog.CHILD_LEVEL.get(recipe.level),
        "status_moves": _status_moves(recipe),
        "can": _permissions(request.user, recipe),
        "family_label": catalog.FAMILY_LABELS.get(recipe.model_family, recipe.model_family),
        "clone_form": extra.pop("clone_form", None) or CloneForm(source=recipe, user=request.user),
    }
    # The upstream banner sits above the tabs: a tab swapped in by HTMX leaves it as it is.
    if "upstream" not in extra and not is_fragment(request):
        context["upstream"] = upstream_context(recipe)
    builder = TAB_BUILDERS.get(tab)
    if builder is not None:
        context.update(builder(request, recipe, versions, newest_first, extra))
    context.update(extra)
    return context


# One builder per tab of the recipe page: (request, recipe, versions oldest first, versions
# newest first, the caller's extra context, which a builder may take values from) -> context.


def _overview_tab(request, recipe, versions, newest_first, extra) -> dict:
    # The recipe's models and runs through its reverse relations (recipes imports neither app).
    return {
        "recent_models": list(recipe.models.select_related("recipe_version").order_by("-created_at")[:5]),
        "recent_runs": list(
            recipe.runs.select_related("recipe_version")
            .defer("plots_json", "metrics_json", "metric_checks_json", "artifacts_json", "stages_json")
            .order_by("-created_at")[:5]
        ),
        "metrics": _metric_rows(recipe),
    }


def _manifest_tab(request, recipe, versions, newest_first, extra) -> dict:
    context: dict[str, Any] = {}
    shown = next((v for v in versions if v.id == request.GET.get("version")), None) or recipe.current_version
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
        context["form"] = extra.pop("form", None) or VersionForm(
            initial={"manifest": context.get("manifest_text", "{}")}
        )
        context["editor_errors"] = extra.pop("editor_errors", [])
    return context


def _versions_tab(request, recipe, versions, newest_first, extra) -> dict:
    context = diff_context(recipe, versions, request.GET.get("a"), request.GET.get("b"))
    context.update(_approval_context(request, recipe, newest_first))
    bases = {v.pk: v for v in context["parent_versions"]}
    for v in newest_first:
        v.base = bases.get(v.base_version_id)
    return context


def _lineage_tab(request, recipe, versions, newest_first, extra) -> dict:
    return _lineage_context(recipe, request.user)


def _example_tab(request, recipe, versions, newest_first, extra) -> dict:
    example, inherited_from = selectors.synthetic_example_for(recipe)
    context: dict[str, Any] = {"example": example, "inherited_from": inherited_from}
    if example is not None:
        rows = example.sample_rows_json or []
        columns = list(dict.fromkeys(k for row in rows if isinstance(row, dict) for k in row))
        context["sample_columns"] = columns
        context["sample_rows"] = [[json_value(row.get(c)) for c in columns] for row in rows[:20]]
        context["expected_output_text"] = manifest_text(example.expected_output_json)
        context["example_metrics"] = [
            {"name": k, "value": v} for k, v in (example.example_metrics_json or {}).items()
        ]
    return context


TAB_BUILDERS = {
    "overview": _overview_tab,
    "manifest": _manifest_tab,
    "versions": _versions_tab,
    "lineage": _lineage_tab,
    "example": _example_tab,
}  # "history" is rendered from the audit partial alone


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
