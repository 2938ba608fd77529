"""HTML pages of the recipes app: recipe detail."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Prefetch
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods, require_POST
from django_htmx.http import HttpResponseClientRedirect

from mlworkspace.errors import Conflict, DomainError
from mlworkspace.forms import add_domain_errors
from mlworkspace.views import is_fragment, render_page, require_perm
from recipes import perms as recipe_perms

from . import access, catalog, services
from .forms import (
    ApproveForm,
    CloneForm,
    RebaseForm,
    RecipeStatusForm,
    VersionForm,
    parse_manifest_text,
    parse_resolutions,
)
from .lineage import semantic_diff
from .manifest import validate_manifest
from .models import Recipe, RecipeStatus, RecipeVersion
from .page_context import RECIPE_TABS, detail_context, diff_context, located_errors, upstream_context


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


@login_required
def recipe_detail(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """Overview · Manifest Editor · Versions · Lineage · Synthetic example (?tab=); HTMX swaps
    the tab. Above the tabs, when the parent has a newer approved version: the upstream banner
    with its diff, the merge preview and the rebase (or conflict resolution) form."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    tab = request.GET.get("tab", "overview")
    if tab not in dict(RECIPE_TABS):
        tab = "overview"
    context = detail_context(request, recipe, tab)
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
        errors = located_errors(found, text)
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
    require_perm(request, recipe_perms.ADD_VERSION, "save a new version", obj=recipe)
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
                editor_errors = located_errors(manifest_errors, text, prefix="/manifest")
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
    context = detail_context(request, recipe, "manifest", form=form, editor_errors=editor_errors)
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
        **diff_context(recipe, versions, request.GET.get("a"), request.GET.get("b")),
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
    require_perm(request, recipe_perms.ADD_VERSION, "rebase a recipe onto its parent", obj=recipe)
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
    upstream = upstream_context(recipe, posted=posted, errors=errors)
    if upstream is None:
        # Nothing to take any more (someone rebased meanwhile, or the recipe changed).
        messages.error(request, errors[0]["message"] if errors else "There is no upstream update to take.")
        return redirect("pages:recipe", recipe_id=recipe.pk)
    tab = request.POST.get("tab") if request.POST.get("tab") in dict(RECIPE_TABS) else "overview"
    recipe = _get_recipe_for_user(request.user, recipe_id)
    context = detail_context(request, recipe, tab, upstream=upstream, rebase_form=form)
    return render(request, "recipes/recipe_detail.html", context, status=400)


@login_required
@require_POST
def recipe_status(request: HttpRequest, recipe_id: str) -> HttpResponse:
    """Submit for review / back to draft / deprecate (approval has its own action)."""
    recipe = _get_recipe_for_user(request.user, recipe_id)
    require_perm(request, recipe_perms.CHANGE_RECIPE, "change a recipe's status", obj=recipe)
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
                request, recipe_perms.ADD_RECIPE, "clone recipes", obj=client or source.client or source
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
