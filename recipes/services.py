"""Writes on recipes and versions. Views, viewsets, admin actions, the chat assistant and
management commands call these; each is one transaction, so a failure writes nothing."""

from __future__ import annotations

import copy
from contextlib import contextmanager
from datetime import datetime

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Value
from django.db.models.functions import Lower
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, InvalidInput, field_error
from mlworkspace.ids import new_id

from . import catalog
from .approval import approval_gate
from .lineage import bump_rank, diff, implied_bump, semantic_diff
from .manifest import bump_semver, parse_semver, rewrite_metadata, validate_manifest
from .models import Client, Recipe, RecipeStatus, RecipeTag, RecipeVersion
from .selectors import rebase_plan, versions_awaiting_approval

MAX_TAGS = 20

# Status changes through update (approval has its own service: version_approve).
RECIPE_TRANSITIONS = {
    RecipeStatus.DRAFT: {RecipeStatus.IN_REVIEW, RecipeStatus.DEPRECATED},
    RecipeStatus.IN_REVIEW: {RecipeStatus.DRAFT, RecipeStatus.DEPRECATED},
    RecipeStatus.APPROVED: {RecipeStatus.IN_REVIEW, RecipeStatus.DEPRECATED},
    RecipeStatus.DEPRECATED: {RecipeStatus.DRAFT},
}


class NoChanges(Conflict):
    """409: a new version would hold the same manifest as the newest one (no semantic change)."""


def _stamp(model, pk, at: datetime | None, *fields: str) -> None:
    """Give a just-written row an explicit time (`at`) for history being seeded (the demo):
    auto_now/auto_now_add fields ignore a value passed to save, so this is an update."""
    if at is not None:
        model.objects.filter(pk=pk).update(**dict.fromkeys(fields, at))


def recipe_status_moves(recipe: Recipe) -> list[str]:
    """The statuses `recipe` may move to through recipe_update: the legal transitions, except
    that an approved recipe goes back to review only when a newer version awaits approval."""
    moves = RECIPE_TRANSITIONS.get(recipe.status, set())
    if recipe.status == RecipeStatus.APPROVED and not versions_awaiting_approval(recipe.versions.all()):
        moves = moves - {RecipeStatus.IN_REVIEW}
    return [s for s in (RecipeStatus.IN_REVIEW, RecipeStatus.DRAFT, RecipeStatus.DEPRECATED) if s in moves]


def _clean_tags(tags) -> list[str]:
    if tags is None:
        return []
    if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
        raise field_error("tags", "must be a list of strings")
    cleaned = sorted({t.strip().lower() for t in tags if t.strip()})
    if len(cleaned) > MAX_TAGS:
        raise field_error("tags", f"at most {MAX_TAGS} tags")
    too_long = [t for t in cleaned if len(t) > 64]
    if too_long:
        raise field_error("tags", f"tag '{too_long[0][:20]}…' is longer than 64 characters")
    return cleaned


def recipe_set_tags(*, recipe: Recipe, tags: list[str]) -> None:
    cleaned = _clean_tags(tags)
    recipe.tag_set.exclude(name__in=cleaned).delete()
    existing = set(recipe.tag_set.values_list("name", flat=True))
    RecipeTag.objects.bulk_create([RecipeTag(recipe=recipe, name=t) for t in cleaned if t not in existing])


def _check_parent(*, family: str, level: str, parent: Recipe | None) -> None:
    if level == "baseline":
        if parent is not None:
            raise field_error("parent_id", "a baseline recipe has no parent")
        return
    if parent is None:
        raise field_error(
            "parent_id", f"an {level} recipe needs a parent ({catalog.PARENT_LEVEL[level]} level)"
        )
    if parent.level != catalog.PARENT_LEVEL[level]:
        raise field_error(
            "parent_id",
            f"the parent of a {level} recipe must be a {catalog.PARENT_LEVEL[level]} recipe, "
            f"'{parent.id}' is {parent.level}",
        )
    if parent.model_family != family:
        raise field_error("parent_id", f"the parent is a {parent.model_family} recipe, this one is {family}")


def _check_client(*, level: str, client: Client | None) -> None:
    if level == "client" and client is None:
        raise field_error("client_id", "a client recipe belongs to a client: client_id is required")
    if level != "client" and client is not None:
        raise field_error("client_id", f"a {level} recipe is firm-wide and belongs to no client")


# Clone names: unique, ignoring case, among one parent's children in one workspace (the firm,
# or one client: another client's names are none of a team's business, and a 409 would leak
# them). The database index of that name (recipes.models) backs the check against races.
CLONE_NAME_INDEX = "clone_name_unique_per_parent"


def _name_taken(name: str, parent: Recipe) -> Conflict:
    return Conflict(
        f"{parent.name} already has a recipe named “{name}” (names are unique under one parent, "
        "ignoring case); choose another name.",
        [{"path": "/name", "message": "already used by another recipe under the same parent"}],
    )


def _check_name_free(*, name: str, parent: Recipe | None, client, exclude: str | None = None) -> None:
    if parent is None:
        return  # baselines are roots, not clones
    siblings = Recipe.objects.filter(parent=parent, client=client).alias(lname=Lower("name"))
    siblings = siblings.filter(lname=Lower(Value(name)))
    if exclude is not None:
        siblings = siblings.exclude(pk=exclude)
    if siblings.exists():
        raise _name_taken(name, parent)


@contextmanager
def _name_guard(name: str, parent_of):
    """A concurrent writer took the name between the check and the write: the index refuses,
    and that is the same 409. `parent_of()` gives the parent (read only then)."""
    try:
        with transaction.atomic():
            yield
    except IntegrityError as exc:
        if CLONE_NAME_INDEX in str(exc) and parent_of() is not None:
            raise _name_taken(name, parent_of()) from None
        raise


def _check_manifest(manifest, *, family: str, level: str) -> None:
    errors = validate_manifest(
        manifest, family=family, level=level, path_prefix="/manifest", max_depth=settings.JSON_MAX_DEPTH
    )
    if errors:
        raise InvalidInput(f"The manifest has {len(errors)} error(s).", errors)


def _validated_manifest(
    manifest, *, recipe_id: str, family: str, level: str, version: str, name: str
) -> dict:
    _check_manifest(manifest, family=family, level=level)
    # metadata.id and metadata.version always describe the version being written.
    return rewrite_metadata(manifest, id=recipe_id, level=level, version=version, name=name)


@transaction.atomic
def recipe_create(
    *,
    user,
    name: str,
    model_family: str,
    level: str,
    manifest: dict,
    parent: Recipe | None = None,
    description: str = "",
    tags: list[str] | None = None,
    owner: str = "",
    recipe_id: str | None = None,
    changelog: str = "Initial version",
    status: str = RecipeStatus.DRAFT,
    base_version: RecipeVersion | None = None,
    at: datetime | None = None,
    client: Client | None = None,
) -> Recipe:
    """A new recipe with its first version (1.0.0) holding `manifest`; `base_version` is the
    parent's version it derives from (default: the parent's newest version). `at` dates
    both (seeded history); default now. A client recipe needs its `client` (callers check
    the user's role in it: recipes.access.client_for_write)."""
    if model_family not in catalog.FAMILIES:
        raise field_error("model_family", f"must be one of {', '.join(catalog.FAMILIES)}")
    if level not in catalog.LEVELS:
        raise field_error("level", f"must be one of {', '.join(catalog.LEVELS)}")
    _check_parent(family=model_family, level=level, parent=parent)
    _check_client(level=level, client=client)
    _check_name_free(name=name, parent=parent, client=client)
    recipe_id = recipe_id or new_id("recipe")
    cleaned = _validated_manifest(
        manifest, recipe_id=recipe_id, family=model_family, level=level, version="1.0.0", name=name
    )
    with _name_guard(name, lambda: parent):
        recipe = Recipe.objects.create(
            id=recipe_id,
            name=name,
            description=description or cleaned.get("metadata", {}).get("description", ""),
            model_family=model_family,
            level=level,
            parent=parent,
            client=client,
            status=status,
            owner=owner or (user.get_username() if user else ""),
            created_by=user,
        )
    recipe_set_tags(recipe=recipe, tags=tags or [])
    if base_version is not None and base_version.recipe_id != getattr(parent, "pk", None):
        raise field_error("base_version", "must be a version of the parent recipe")
    first = RecipeVersion.objects.create(
        id=new_id("ver"),
        recipe=recipe,
        version="1.0.0",
        manifest=cleaned,
        changelog=changelog,
        created_by=user,
        base_version=base_version or (parent.current_version if parent is not None else None),
    )
    audit.record(user, "recipe.create", recipe, changes=audit.created(recipe, tags=recipe.tags), at=at)
    _stamp(Recipe, recipe.pk, at, "created_at", "updated_at")
    _stamp(RecipeVersion, first.pk, at, "created_at")
    if at is not None:
        recipe.refresh_from_db(fields=["created_at", "updated_at"])
    return recipe


@transaction.atomic
def recipe_update(*, recipe: Recipe, user, at: datetime | None = None, **fields) -> Recipe:
    """Name, description, owner, tags and status only: a manifest change is a new version.
    `at` dates the change (seeded history); default now."""
    recipe = Recipe.objects.select_for_update().get(pk=recipe.pk)
    before = audit.snapshot(recipe, tags=recipe.tags)
    status = fields.pop("status", None)
    if status is not None and status != recipe.status:
        if status == RecipeStatus.APPROVED:
            raise Conflict(
                "A recipe becomes approved by approving one of its versions: "
                "POST /api/ml-development/recipes/{id}/versions/{version_id}/approve.",
                [{"path": "/status", "message": "use the approve action"}],
            )
        if status not in RECIPE_TRANSITIONS.get(recipe.status, set()):
            raise Conflict(
                f"Illegal status change {recipe.status} → {status}.",
                [{"path": "/status", "message": f"{recipe.status} cannot become {status}"}],
            )
        if status not in recipe_status_moves(recipe):
            raise Conflict(
                "Nothing to review: every version of the recipe up to the newest is approved. "
                "Save a new version first.",
                [{"path": "/status", "message": "no version awaits approval"}],
            )
        recipe.status = status
    tags = fields.pop("tags", None)
    for key in ("name", "description", "owner"):
        if key in fields and fields[key] is not None:
            setattr(recipe, key, fields[key])
    if fields.get("name") is not None:
        _check_name_free(name=recipe.name, parent=recipe.parent, client=recipe.client_id, exclude=recipe.pk)
    with _name_guard(recipe.name, lambda: recipe.parent):
        recipe.save()
    if tags is not None:
        recipe_set_tags(recipe=recipe, tags=tags)
    changed = audit.diff(before, recipe, tags=recipe.tags)
    audit.record(
        user, "recipe.status" if "status" in changed else "recipe.update", recipe, changes=changed, at=at
    )
    _stamp(Recipe, recipe.pk, at, "updated_at")
    return recipe


def _next_version(existing: list[str], *, version: str | None, bump: str | None) -> str:
    latest = max(existing, key=parse_semver) if existing else None
    if version is not None:
        try:
            parse_semver(version)
        except ValueError:
            raise field_error("version", f"'{version}' is not a semantic version MAJOR.MINOR.PATCH") from None
        if version in existing:
            raise Conflict(
                f"Version {version} already exists.", [{"path": "/version", "message": "already exists"}]
            )
        if latest and parse_semver(version) <= parse_semver(latest):
            raise Conflict(
                f"Version {version} is not greater than the latest version {latest}.",
                [{"path": "/version", "message": f"must be greater than {latest}"}],
            )
        return version
    if bump not in ("major", "minor", "patch"):
        raise field_error(
            "bump", "must be major, minor or patch (or leave it out to take the suggested bump)"
        )
    return bump_semver(latest or "0.0.0", bump)


@transaction.atomic
def version_create(
    *,
    recipe: Recipe,
    user,
    manifest: dict,
    version: str | None = None,
    bump: str | None = None,
    changelog: str = "",
    force: bool = False,
    force_note: str = "",
    base_version: RecipeVersion | None = None,
    at: datetime | None = None,
) -> RecipeVersion:
    """A new immutable version; `version` must be greater than every existing one.

    A manifest with no semantic change from the newest version (recipes.lineage: identity
    metadata aside) is refused (409 NoChanges) unless `force` comes with a `force_note`.
    `at` dates the version (seeded history); default now.

    The semantic diff from the newest version says how big the change is (patch/minor/major).
    Without `version` or `bump` that suggested bump is taken; an explicit number or bump
    smaller than it is refused (409, naming the changes) unless `force` comes with a
    `force_note`, which is kept. The new version derives from the same parent version as the
    newest one, or from `base_version` (a rebase)."""
    # Lock the recipe so two concurrent saves cannot both take the same next version.
    recipe = Recipe.objects.select_for_update().get(pk=recipe.pk)
    if recipe.status == RecipeStatus.DEPRECATED:
        raise Conflict("The recipe is deprecated; set it back to draft before adding versions.")
    if force and not (force_note or "").strip():
        raise field_error("note", "forcing a version number needs a note saying why")
    _check_manifest(manifest, family=recipe.model_family, level=recipe.level)
    versions = list(recipe.versions.all())
    latest = max(versions, key=lambda v: v.semver, default=None)
    existing = [v.version for v in versions]
    changes = semantic_diff(latest.manifest, manifest) if latest is not None else None
    suggested = changes["suggested_bump"] if changes else None
    number = _next_version(
        existing, version=version, bump=bump or (None if version else suggested or "patch")
    )
    # A rebase onto a new parent version records new lineage even when the manifest is unchanged.
    rebased = base_version is not None and base_version.pk != getattr(latest, "base_version_id", None)
    if changes is not None and not changes["changes"] and not force and not rebased:
        raise NoChanges(
            f"No changes: the manifest is the same as version {latest.version}, so no version was "
            "saved. Change something, or force it with a note saying why.",
            [{"path": "/manifest", "message": f"no changes from version {latest.version}"}],
        )
    if latest is not None and suggested is not None:
        taken = implied_bump(latest.version, number)
        if bump_rank(taken) < bump_rank(suggested) and not force:
            needing = [c for c in changes["changes"] if bump_rank(c["bump"]) > bump_rank(taken)]
            raise Conflict(
                f"Version {number} is a {taken} bump from {latest.version}, but the changes need a "
                f"{suggested} bump (e.g. {bump_semver(latest.version, suggested)}): "
                f"{'; '.join(c['reason'] for c in needing[:5])}. Give force with a note to keep {number}.",
                [
                    {"path": f"/manifest{c['path']}", "message": f"{c['reason']}: needs a {c['bump']} bump"}
                    for c in needing
                ],
            )
    cleaned = rewrite_metadata(manifest, id=recipe.id, level=recipe.level, version=number, name=recipe.name)
    base_id = base_version.pk if base_version is not None else getattr(latest, "base_version_id", None)
    try:
        with transaction.atomic():
            created = RecipeVersion.objects.create(
                id=new_id("ver"),
                recipe=recipe,
                version=number,
                manifest=cleaned,
                changelog=changelog,
                created_by=user,
                base_version_id=base_id,
                suggested_bump=suggested or "",
                force_note=(force_note or "").strip() if force else "",
            )
    except IntegrityError:
        raise Conflict(
            f"Version {number} already exists.", [{"path": "/version", "message": "already exists"}]
        ) from None
    recipe.save(update_fields=["updated_at"])
    audit.record(
        user,
        "version.create",
        created,
        changes={**audit.created(created), **audit.path_changes((changes or {}).get("changes"), "manifest")},
        detail={"previous_version": getattr(latest, "version", None)},
        at=at,
    )
    _stamp(Recipe, recipe.pk, at, "updated_at")
    _stamp(RecipeVersion, created.pk, at, "created_at")
    if at is not None:
        created.refresh_from_db(fields=["created_at"])
    return created


@transaction.atomic
def version_approve(
    *,
    version: RecipeVersion,
    user,
    override_reason: str = "",
    evidence_run=None,
    at: datetime | None = None,
) -> RecipeVersion:
    """Approve a version (who, when); the recipe becomes approved.

    The approval gate (recipes.approval) must pass on one of the version's succeeded backtest
    or eval runs (or on `evidence_run`); otherwise 409 with its reasons, unless an
    `override_reason` is given (callers check the approve permission). The gate's result,
    the evidence run and any override reason are recorded on the version. `at` is the
    approval time (seeded history); default now."""
    version = RecipeVersion.objects.select_for_update().select_related("recipe").get(pk=version.pk)
    recipe = version.recipe
    before = audit.snapshot(version, recipe_status=recipe.status)
    if recipe.status == RecipeStatus.DEPRECATED:
        raise Conflict("The recipe is deprecated; versions of it cannot be approved.")
    if version.approved_at is None:
        gate = approval_gate(version, evidence_run)
        reason = (override_reason or "").strip()
        if not gate["passed"] and not reason:
            raise Conflict(
                f"Version {version.version} cannot be approved yet: {' '.join(gate['reasons'])} "
                "(someone with the approve permission may override with a written reason).",
                [{"path": "/evidence", "message": r} for r in gate["reasons"]],
            )
        evidence = gate["evidence"]
        version.approval_json = {**gate, "gate": "passed" if gate["passed"] else "overridden"}
        version.approval_run_id = evidence["run_id"] if evidence else None
        version.approval_override_reason = "" if gate["passed"] else reason
        version.approved_at = at or timezone.now()
        version.approved_by = user
        version.save(
            update_fields=[
                "approved_at",
                "approved_by",
                "approval_json",
                "approval_run",
                "approval_override_reason",
            ]
        )
    if recipe.status != RecipeStatus.APPROVED:
        recipe.status = RecipeStatus.APPROVED
        recipe.save(update_fields=["status", "updated_at"])
        _stamp(Recipe, recipe.pk, at, "updated_at")
    audit.record(
        user,
        "version.approve",
        version,
        changes=audit.diff(before, version, recipe_status=recipe.status),
        detail=version.approval_json,
        at=at,
    )
    return version


def default_clone_description(source: Recipe) -> str:
    """A clone's description when none is given: where it comes from (never the source's own
    description, which describes the source)."""
    child_level = catalog.CHILD_LEVEL.get(source.level) or "client"
    version = f" {source.current_version.version}" if source.current_version else ""
    return f"{child_level.capitalize()} recipe cloned from {source.name}{version}."


@transaction.atomic
@audit.as_action("recipe.clone")
def recipe_clone(
    *,
    source: Recipe,
    user,
    name: str,
    level: str | None = None,
    description: str | None = None,
    tags: list[str] | None = None,
    manifest: dict | None = None,
    at: datetime | None = None,
    client: Client | None = None,
) -> Recipe:
    """A new draft recipe one level below `source`, starting from its current manifest
    (or from `manifest`, e.g. the chat assistant's proposal), with parent set.

    What describes the source itself is not copied: without `description` the clone gets a
    line naming where it comes from, and without `tags` it takes the source's tags except
    level names (a clone of a baseline is not tagged "baseline")."""
    child_level = catalog.CHILD_LEVEL.get(source.level)
    if child_level is None:
        raise Conflict(
            f"'{source.id}' is a client recipe, the lowest level; it cannot be cloned further down.",
            [{"path": "/level", "message": "client recipes have no level below"}],
        )
    if level is not None and level != child_level:
        raise field_error("level", f"a clone of a {source.level} recipe is a {child_level} recipe")
    if not name or not name.strip():
        raise field_error("name", "is required")
    if source.current_version is None:
        raise Conflict(f"'{source.id}' has no version to clone.")
    base_manifest = copy.deepcopy(manifest if manifest is not None else source.current_version.manifest)
    if isinstance(base_manifest, dict) and isinstance(base_manifest.get("metadata"), dict):
        base_manifest["metadata"]["level"] = child_level
        base_manifest["metadata"]["model_family"] = source.model_family
    return recipe_create(
        user=user,
        name=name.strip(),
        model_family=source.model_family,
        level=child_level,
        parent=source,
        manifest=base_manifest,
        description=description
        if description is not None and description.strip()
        else default_clone_description(source),
        tags=tags if tags is not None else [t for t in source.tags if t not in catalog.LEVELS],
        changelog=f"Cloned from {source.name} {source.current_version.version}",
        base_version=source.current_version,
        at=at,
        client=client or source.client,  # a client recipe's clone stays in its client
    )


@transaction.atomic
@audit.as_action("recipe.rebase")
def recipe_rebase(
    *,
    recipe: Recipe,
    user,
    resolutions: dict | None = None,
    parent_version: str | None = None,
    changelog: str = "",
) -> RecipeVersion:
    """Take the parent's new approved version into `recipe`: a three-way merge (base: the parent
    version the recipe derives from; theirs: the parent's newest approved version or
    `parent_version`; ours: the recipe's newest version) written as a new unapproved version
    that derives from theirs. Paths changed differently on both sides are a 409 listing
    {path, base, ours, theirs} unless `resolutions` settles each ("ours"/"theirs"/{"value"})."""
    recipe = Recipe.objects.select_for_update().get(pk=recipe.pk)
    plan = rebase_plan(recipe, parent_version=parent_version, resolutions=resolutions)
    if not plan.merge.clean:
        conflicts = plan.merge.conflicts
        raise Conflict(
            f"Rebasing onto {recipe.parent_id} {plan.theirs.version} has {len(conflicts)} conflict(s): "
            f"{', '.join(c['path'] for c in conflicts[:10])}. Send resolutions "
            '{"<path>": "ours" | "theirs" | {"value": ...}} to finish the merge.',
            [
                {
                    "path": c["path"],
                    "message": "changed on both sides" + (" (stage order)" if c.get("order") else ""),
                    **{
                        k: c[k]
                        for k in ("base", "ours", "theirs", "base_present", "ours_present", "theirs_present")
                    },
                }
                for c in conflicts
            ],
        )
    if plan.errors:
        raise InvalidInput(
            f"The merged manifest has {len(plan.errors)} error(s); resolve them differently.", plan.errors
        )
    note = changelog.strip() or (
        f"Rebased onto {recipe.parent.name} {plan.theirs.version} (from {plan.base.version}): "
        f"{len(diff(plan.base.manifest, plan.theirs.manifest))} upstream change(s), "
        f"{len(plan.merge.resolved)} conflict(s) resolved"
    )
    return version_create(
        recipe=recipe, user=user, manifest=plan.merge.manifest, changelog=note, base_version=plan.theirs
    )
