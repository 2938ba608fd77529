"""Reads that combine several rows: a version by reference, lineage with provenance, the
upstream state of a recipe and a rebase preview. The API, the pages and the services share
these; the JSON work itself is done by the pure functions in recipes.lineage."""

from __future__ import annotations

from dataclasses import dataclass

from django.db.models import Q

from mlworkspace.errors import Conflict, InvalidInput, NotFound, field_error

from .lineage import MergeResult, check_resolutions, merge3, provenance, resolution_path, semantic_diff
from .manifest import validate_manifest
from .models import Recipe, RecipeVersion, SyntheticExample


def version_of(recipe: Recipe, ref: str, *, field: str | None = None) -> RecipeVersion:
    """A version of `recipe` by id or by number ("1.2.0"); 404 (or 400 naming `field`)."""
    # Ids ("ver_…") and numbers ("1.2.0") never look alike, so one query finds either.
    version = (
        RecipeVersion.objects.select_related("created_by", "approved_by", "base_version")
        .filter(Q(pk=ref) | Q(version=ref), recipe=recipe)
        .first()
    )
    if version is None:
        if field:
            raise field_error(field, f"recipe '{recipe.id}' has no version '{ref}'")
        raise NotFound(f"Recipe '{recipe.id}' has no version '{ref}'.")
    return version


def version_ref(version: RecipeVersion | None) -> dict | None:
    if version is None:
        return None
    return {"recipe_id": version.recipe_id, "version_id": version.pk, "version": version.version}


def version_diff(a: RecipeVersion, b: RecipeVersion) -> dict:
    """The semantic diff from version `a` to version `b` (any recipes), with the bump it needs."""
    return {"from": version_ref(a), "to": version_ref(b), **semantic_diff(a.manifest, b.manifest)}


def latest_approved(recipe_id: str, *, below: RecipeVersion | None = None) -> RecipeVersion | None:
    """The recipe's highest approved version (lower than `below`, if given), manifest included."""
    approved = RecipeVersion.objects.filter(recipe_id=recipe_id, approved_at__isnull=False).only(
        "id", "version"
    )
    candidates = [v for v in approved if below is None or v.semver < below.semver]
    newest = max(candidates, key=lambda v: v.semver, default=None)
    return RecipeVersion.objects.get(pk=newest.pk) if newest else None


def versions_awaiting_approval(versions) -> list[RecipeVersion]:
    """The unapproved versions newer than the newest approved one, newest first. An older
    unapproved version was superseded by an approval: it awaits nothing."""
    versions = list(versions)
    approved = [v.semver for v in versions if v.is_approved]
    newest_approved = max(approved, default=None)
    pending = [
        v for v in versions if not v.is_approved and (newest_approved is None or v.semver > newest_approved)
    ]
    return sorted(pending, key=lambda v: v.semver, reverse=True)


def recipe_list(user):
    """The recipes `user` may see, with what a list row shows — tags, version summaries and
    the parent and grandparent (the tree's ancestors) — unordered and unfiltered."""
    return Recipe.objects.visible_to(user).for_list().select_related("parent__parent")


def synthetic_example_for(recipe: Recipe) -> tuple[SyntheticExample | None, Recipe | None]:
    """The recipe's synthetic example, or else its nearest ancestor's: (example, the ancestor
    it is inherited from -- None for the recipe's own), (None, None) if the chain has none.
    One query for the whole chain; the ancestors are `recipe.ancestors` (no query when the
    caller select_related("parent__parent"))."""
    chain = [recipe, *reversed(recipe.ancestors)]
    examples = {e.recipe_id: e for e in SyntheticExample.objects.filter(recipe_id__in=[r.pk for r in chain])}
    for owner in chain:
        if owner.pk in examples:
            return examples[owner.pk], (None if owner.pk == recipe.pk else owner)
    return None, None


# --------------------------------------------------------------------------- lineage


def derivation_chain(version: RecipeVersion) -> list[RecipeVersion]:
    """[root version, ..., `version`]: each the version the next one was derived from."""
    chain = [version]
    seen = {version.pk}
    while chain[-1].base_version_id and chain[-1].base_version_id not in seen:
        base = RecipeVersion.objects.select_related("recipe").get(pk=chain[-1].base_version_id)
        seen.add(base.pk)
        chain.append(base)
    return chain[::-1]


def recipe_lineage(recipe: Recipe) -> dict:
    """The chain baseline → … → `recipe` (each with the version the next derives from) and the
    provenance of every leaf of the recipe's current manifest."""
    current = recipe.current_version
    if current is None:
        raise Conflict(f"Recipe '{recipe.id}' has no version.")
    chain = derivation_chain(current)
    levels = []
    for i, v in enumerate(chain):
        r = recipe if v.recipe_id == recipe.pk else v.recipe
        levels.append(
            {
                "recipe_id": r.pk,
                "name": r.name,
                "level": r.level,
                "version_id": v.pk,
                "version": v.version,
                "derived_from": version_ref(chain[i - 1]) if i > 0 else None,
            }
        )
    result = provenance([(v.recipe_id, v.manifest) for v in chain])
    counts = {
        source: sum(f["source"] == source for f in result["fields"])
        for source in ("own", "inherited", "overridden")
    }
    return {"recipe_id": recipe.pk, "chain": levels, "counts": counts, **result}


TREE_CHILDREN = 20


def lineage_tree(recipe: Recipe, children_limit: int | None = None, *, user=None) -> dict:
    """The family tree around `recipe`: its root and the descendants, at most `children_limit`
    per node by name (always the branch leading to `recipe`; `more` counts the others). Each
    node has its current version, the parent version it derives from and whether the parent
    has a newer approved version. Two queries, plus one per ancestor not already loaded
    (`recipe.ancestors`); versions are read for the shown nodes only."""
    limit = TREE_CHILDREN if children_limit is None else children_limit
    ancestors = recipe.ancestors
    root = ancestors[0] if ancestors else recipe
    # Levels are baseline → industry → client: two queries find every descendant.
    # With `user`, only the descendants they may see (another client's recipes stay unseen).
    relatives = Recipe.objects.visible_to(user) if user is not None else Recipe.objects.all()
    family = list(
        relatives.filter(Q(parent_id=root.pk) | Q(parent__parent_id=root.pk))
        .only("id", "name", "level", "status", "parent_id")
        .order_by("name", "id")
    )
    children: dict[str, list[Recipe]] = {}
    for r in family:
        children.setdefault(r.parent_id, []).append(r)
    on_path = {recipe.pk, *(a.pk for a in ancestors)}
    shown: list[Recipe] = [root]
    cut: dict[str, tuple[list[Recipe], int]] = {}
    frontier = [root]
    while frontier:
        nxt = []
        for r in frontier:
            kids = children.get(r.pk, [])
            keep = [k for k in kids if k.pk in on_path]
            keep += [k for k in kids if k.pk not in on_path][: max(0, limit - len(keep))]
            keep.sort(key=lambda k: (k.name, k.pk))
            cut[r.pk] = (keep, len(kids) - len(keep))
            shown += keep
            nxt += keep
        frontier = nxt
    ids = {r.pk for r in shown} | {r.parent_id for r in shown if r.parent_id}
    versions: dict[str, list[RecipeVersion]] = {}
    for v in RecipeVersion.objects.filter(recipe_id__in=ids).only(
        "id", "recipe_id", "version", "approved_at", "base_version_id"
    ):
        versions.setdefault(v.recipe_id, []).append(v)
    by_id = {v.pk: v for vs in versions.values() for v in vs}

    def node(r: Recipe) -> dict:
        mine = versions.get(r.pk, [])
        current = max(mine, key=lambda v: v.semver, default=None)
        base = by_id.get(current.base_version_id) if current and current.base_version_id else None
        parent_approved = [v for v in versions.get(r.parent_id, []) if v.approved_at] if r.parent_id else []
        newest = max(parent_approved, key=lambda v: v.semver, default=None)
        kids, more = cut.get(r.pk, ([], 0))
        return {
            "id": r.pk,
            "name": r.name,
            "level": r.level,
            "status": r.status,
            "version": current.version if current else None,
            "derived_from": base.version if base else None,
            "upstream_update": bool(base and newest and newest.semver > base.semver),
            "current": r.pk == recipe.pk,
            "on_path": r.pk in on_path,
            "children": [node(c) for c in kids],
            "more": more,
        }

    return node(root)


# --------------------------------------------------------------------------- upstream and rebase


@dataclass
class RebasePlan:
    recipe: Recipe
    ours: RecipeVersion
    base: RecipeVersion
    theirs: RecipeVersion
    merge: MergeResult
    errors: list[dict]

    def summary(self) -> dict:
        """What the API and the page show of a planned rebase."""
        return {
            "recipe_id": self.recipe.pk,
            "ours": version_ref(self.ours),
            "base": version_ref(self.base),
            "theirs": version_ref(self.theirs),
            "upstream_diff": semantic_diff(self.base.manifest, self.theirs.manifest),
            "clean": self.merge.clean,
            "conflicts": self.merge.conflicts,
            "resolved": self.merge.resolved,
            "result_diff": semantic_diff(self.ours.manifest, self.merge.manifest)
            if self.merge.clean
            else None,
            "valid": self.merge.clean and not self.errors,
            "errors": self.errors,
        }


def _upstream_versions(recipe: Recipe, parent_version: str | None = None):
    """(ours, base, theirs) for a rebase of `recipe`: its newest version, the parent version
    that one derives from, and the parent's newest approved version (or `parent_version`)."""
    if recipe.parent_id is None:
        raise Conflict(f"'{recipe.id}' is a baseline recipe: it has no upstream.")
    ours = recipe.current_version
    if ours is None or ours.base_version_id is None:
        raise Conflict(f"'{recipe.id}' has no recorded parent version to rebase from.")
    base = RecipeVersion.objects.get(pk=ours.base_version_id)
    if parent_version:
        theirs = version_of(recipe.parent, parent_version, field="parent_version")
        if not theirs.is_approved:
            raise field_error("parent_version", f"version {theirs.version} of the parent is not approved")
    else:
        theirs = latest_approved(recipe.parent_id)
    return ours, base, theirs


def recipe_upstream(recipe: Recipe) -> dict:
    """Whether the parent has an approved version newer than the one the recipe derives from;
    if so the parent's diff since then and a preview of the merge (with its conflicts)."""
    ours, base, theirs = _upstream_versions(recipe)
    available = theirs is not None and theirs.semver > base.semver
    out = {
        "recipe_id": recipe.pk,
        "parent_id": recipe.parent_id,
        "update_available": available,
        "ours": version_ref(ours),
        "base": version_ref(base),
        "latest_approved": version_ref(theirs),
    }
    if available:
        out["preview"] = _plan(recipe, ours, base, theirs).summary()
    return out


def rebase_plan(recipe: Recipe, *, parent_version: str | None = None, resolutions=None) -> RebasePlan:
    """The three-way merge a rebase would write (nothing is written): base = the parent version
    the recipe derives from, theirs = the parent's new version, ours = the recipe's newest."""
    problems = check_resolutions(resolutions)
    if problems:
        raise InvalidInput("resolutions: " + problems[0]["message"], problems)
    ours, base, theirs = _upstream_versions(recipe, parent_version)
    if theirs is None:
        raise Conflict(f"The parent '{recipe.parent_id}' has no approved version to rebase onto.")
    if theirs.semver <= base.semver:
        raise Conflict(
            f"'{recipe.id}' already derives from {recipe.parent_id} {base.version}; "
            f"{theirs.version} is not newer.",
            [{"path": "/parent_version", "message": f"must be newer than {base.version}"}],
        )
    return _plan(recipe, ours, base, theirs, resolutions)


def _plan(recipe: Recipe, ours, base, theirs, resolutions=None) -> RebasePlan:
    merge = merge3(base.manifest, ours.manifest, theirs.manifest, resolutions)
    if merge.unused:
        raise InvalidInput(
            f"resolutions: {', '.join(merge.unused)} is not a conflict of this rebase.",
            [{"path": resolution_path(p), "message": "not a conflict of this rebase"} for p in merge.unused],
        )
    errors = (
        validate_manifest(
            merge.manifest, family=recipe.model_family, level=recipe.level, path_prefix="/manifest"
        )
        if merge.clean
        else []
    )
    return RebasePlan(recipe=recipe, ours=ours, base=base, theirs=theirs, merge=merge, errors=errors)
