"""HTML pages of the recipes app: the library (all four tabs), recipe detail, chat."""

from __future__ import annotations

import difflib
import json
import re
from typing import Any

from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Case, F, IntegerField, Prefetch, Value, When
from django.db.models.functions import Coalesce
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect, push_url, reswap, retarget

from mlworkspace.errors import DomainError
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

from . import catalog, services
from .filters import RecipeFilter
from .forms import ChatForm, CloneForm, RecipeStatusForm, VersionForm, parse_manifest_text
from .lineage import diff as manifest_diff
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
    ("example", "Synthetic example"),
]


CHILDREN_SHOWN = 20


def _children(recipe: Recipe) -> dict:
    """The first children by name; a baseline can have thousands (the rest: a library link)."""
    children = list(recipe.children.only("id", "name", "status").order_by("name", "id")[: CHILDREN_SHOWN + 1])
    more = recipe.children.count() - CHILDREN_SHOWN if len(children) > CHILDREN_SHOWN else 0
    return {"children": children[:CHILDREN_SHOWN], "children_more": more}


def _get_recipe_for_user(user, recipe_id: str) -> Recipe:
    return get_object_or_404(
        Recipe.objects.visible_to(user)
        .select_related("parent__parent", "created_by")
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


def _permissions(user) -> dict[str, bool]:
    return {
        "add_version": user.has_perm("recipes.add_recipeversion"),
        "approve": user.has_perm("recipes.approve_recipeversion"),
        "change": user.has_perm("recipes.change_recipe"),
        "clone": user.has_perm("recipes.add_recipe"),
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


def _diff_context(recipe: Recipe, versions: list[RecipeVersion], a_id: str | None, b_id: str | None) -> dict:
    """The comparison of two versions (default: the two newest) — semantic and line by line."""
    if len(versions) < 2:
        return {"diff_possible": False}
    by_id = {v.id: v for v in versions}
    newest_first = sorted(versions, key=lambda v: v.semver, reverse=True)
    a = by_id.get(a_id or "") or newest_first[1]
    b = by_id.get(b_id or "") or newest_first[0]
    # Only the two compared versions' manifests are read.
    manifests = dict(RecipeVersion.objects.filter(pk__in=[a.pk, b.pk]).values_list("id", "manifest"))
    old, new = manifests.get(a.pk, {}), manifests.get(b.pk, {})
    changes = [
        {"path": c["path"], "op": c["op"], "old": json_value(c.get("old")), "new": json_value(c.get("new"))}
        for c in manifest_diff(old, new)
    ]
    return {
        "diff_possible": True,
        "diff_a": a,
        "diff_b": b,
        "changes": changes,
        "side_by_side": _side_by_side(manifest_text(old), manifest_text(new)),
    }


def _status_moves(recipe: Recipe) -> list[tuple[str, str]]:
    return [
        (status, STATUS_ACTIONS[status])
        for status in (RecipeStatus.IN_REVIEW, RecipeStatus.DRAFT, RecipeStatus.DEPRECATED)
        if status in services.RECIPE_TRANSITIONS.get(recipe.status, set())
    ]


def _detail_context(request: HttpRequest, recipe: Recipe, tab: str, **extra) -> dict:
    versions = list(recipe.versions.all())
    context: dict[str, Any] = {
        "nav": "library",
        "recipe": recipe,
        "tab": tab,
        "tabs": RECIPE_TABS,
        "versions": sorted(versions, key=lambda v: v.semver, reverse=True),
        "current": recipe.current_version,
        "approved_versions": [v for v in versions if v.is_approved],
        "pending_versions": [v for v in versions if not v.is_approved],
        "ancestors": [a for a in (getattr(recipe.parent, "parent", None), recipe.parent) if a],
        **_children(recipe),
        "child_level": catalog.CHILD_LEVEL.get(recipe.level),
        "status_moves": _status_moves(recipe),
        "can": _permissions(request.user),
        "family_label": catalog.FAMILY_LABELS.get(recipe.model_family, recipe.model_family),
        "clone_form": extra.pop("clone_form", None) or CloneForm(source=recipe),
    }
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
        if shown is not None:
            manifest = RecipeVersion.objects.values_list("manifest", flat=True).get(pk=shown.pk)
            context["manifest_text"] = manifest_text(manifest)
        editing = request.GET.get("edit") == "1" or "form" in extra
        context["editing"] = editing
        if editing:
            form = extra.pop("form", None) or VersionForm(
                initial={"manifest": context.get("manifest_text", "{}")}
            )
            context["form"] = form
            context["editor_errors"] = extra.pop("editor_errors", [])
    elif tab == "versions":
        context.update(_diff_context(recipe, versions, request.GET.get("a"), request.GET.get("b")))
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
    """Overview · Manifest Editor · Versions · Synthetic example (?tab=); HTMX swaps the tab."""
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
        found = validate_manifest(manifest, family=recipe.model_family, level=recipe.level)
        errors = _editor_errors(found, text)
    return render(
        request,
        "recipes/recipe_detail.html#validation",
        {"editor_errors": errors, "validated": True, "recipe": recipe},
    )


@login_required
@require_POST
def version_new(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """Save as New Version (bump + changelog); invalid manifests come back with their errors."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    require_perm(request, "recipes.add_recipeversion", "save a new version")
    form = VersionForm(request.POST)
    text = request.POST.get("manifest", "")
    editor_errors: list[dict] = []
    if form.is_valid():
        try:
            created = services.version_create(
                recipe=recipe,
                user=request.user,
                manifest=form.cleaned_data["manifest"],
                bump=form.cleaned_data["bump"],
                changelog=form.cleaned_data["changelog"],
            )
        except DomainError as exc:
            manifest_errors = [e for e in exc.errors if (e.get("path") or "").startswith("/manifest")]
            editor_errors = _editor_errors(manifest_errors, text, prefix="/manifest")
            other = [e for e in exc.errors if e not in manifest_errors]
            if other or not manifest_errors:
                add_domain_errors(form, DomainError(exc.detail, other), {"version": "bump"})
            else:
                form.add_error("manifest", exc.detail)
        else:
            previous = max(
                (v for v in recipe.versions.all() if v.pk != created.pk), key=lambda v: v.semver, default=None
            )
            messages.success(request, f"Saved version {created.version} of “{recipe.name}”.")
            url = reverse("pages:recipe", args=[recipe.pk]) + f"?tab=versions&b={created.pk}"
            if previous is not None:
                url += f"&a={previous.pk}"
            return redirect(url)
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
    recipe = _get_recipe_for_user(request.user, recipe_id)
    require_perm(request, "recipes.approve_recipeversion", "approve recipe versions")
    version = next((v for v in recipe.versions.all() if v.pk == version_id), None)
    if version is None:
        raise Http404(f"Recipe '{recipe.pk}' has no version '{version_id}'.")
    try:
        services.version_approve(version=version, user=request.user)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, f"Approved version {version.version}; “{recipe.name}” is approved.")
    return redirect(reverse("pages:recipe", args=[recipe.pk]) + "?tab=versions")


@login_required
@require_POST
def recipe_status(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """Submit for review / back to draft / deprecate (approval has its own action)."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    require_perm(request, "recipes.change_recipe", "change a recipe's status")
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
    form = CloneForm(request.POST or None, source=source)
    status = 200
    if request.method == "POST":
        require_perm(request, "recipes.add_recipe", "clone recipes")
        if form.is_valid():
            try:
                clone = services.recipe_clone(
                    source=source,
                    user=request.user,
                    name=form.cleaned_data["name"],
                    level=form.cleaned_data["level"],
                    description=form.cleaned_data["description"] or None,
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
        conversation = get_object_or_404(Conversation, pk=conversation_id, user=request.user)
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
            Recipe.objects.filter(pk=conversation.created_recipe_id).first()
            if conversation is not None and conversation.created_recipe_id
            else None
        ),
        "history": history,
        "conversations": Conversation.objects.filter(user=request.user).only("id", "title", "updated_at")[
            :20
        ],
    }
    return render(request, "recipes/chat.html", context, status=400 if form.errors else 200)
