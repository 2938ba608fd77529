from django.conf import settings
from django.db import models
from django.db.models import F, Q, Value
from django.db.models.functions import Coalesce, Lower
from django.utils.functional import cached_property

from mlworkspace.fields import JSONField

from . import catalog

# The model families, from the one list in recipes.catalog: Family.PRICING == "pricing".
Family = models.TextChoices(
    "Family",
    [(key.upper(), (key, label)) for key, label in catalog.FAMILY_LABELS.items()],
    module=__name__,
)


class Level(models.TextChoices):
    BASELINE = "baseline", "Baseline"
    INDUSTRY = "industry", "Industry"
    CLIENT = "client", "Client"


class RecipeStatus(models.TextChoices):
    DRAFT = "draft", "Draft"
    IN_REVIEW = "in_review", "In review"
    APPROVED = "approved", "Approved"
    DEPRECATED = "deprecated", "Deprecated"


class ClientRole(models.TextChoices):
    VIEWER = "viewer", "Viewer"
    DATA_SCIENTIST = "data_scientist", "Data scientist"
    LEAD = "lead", "Lead"


class Client(models.Model):
    """A client of the firm: its client-level recipes and everything hanging off them are
    visible only to its members (recipes.access)."""

    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    slug = models.SlugField(max_length=100, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "ml_client"
        ordering = ["name", "id"]
        permissions = [("manage_clients", "Can manage clients and their members")]

    def __str__(self):
        return self.name


class ClientMembership(models.Model):
    """A user's role in one client: viewer reads, data_scientist also writes, lead also approves."""

    user = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="client_memberships"
    )
    client = models.ForeignKey(Client, on_delete=models.CASCADE, related_name="memberships")
    role = models.CharField(max_length=16, choices=ClientRole.choices)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "ml_client_membership"
        ordering = ["client_id", "user_id"]
        constraints = [
            # Also the index behind every scoped query ("the clients of this user": user first).
            models.UniqueConstraint(fields=["user", "client"], name="ml_client_membership_unique"),
            models.CheckConstraint(condition=Q(role__in=ClientRole.values), name="ml_client_membership_role"),
        ]

    def __str__(self):
        return f"{self.user_id}@{self.client_id} ({self.role})"


class RecipeQuerySet(models.QuerySet):
    def visible_to(self, user):
        # Firm recipes (baseline, industry) for every signed-in user; client recipes for the
        # client's members (recipes.access is the one rule; it imports this module's Client,
        # hence the import here).
        from .access import client_scope

        return self.filter(client_scope(user, "client"))

    def for_list(self):
        """Lists: parent and creator joined; tags and version summaries (no manifests) prefetched."""
        return self.select_related("parent", "created_by").prefetch_related(
            "tag_set",
            models.Prefetch("versions", queryset=RecipeVersion.objects.defer("manifest", "changelog")),
        )


class Recipe(models.Model):
    id = models.CharField(primary_key=True, max_length=64)
    name = models.CharField(max_length=200)
    description = models.TextField(blank=True, default="")
    model_family = models.CharField(max_length=32, choices=Family.choices)
    level = models.CharField(max_length=16, choices=Level.choices)
    parent = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="children"
    )
    status = models.CharField(max_length=16, choices=RecipeStatus.choices, default=RecipeStatus.DRAFT)
    # The client a client-level recipe belongs to (required there, refused above it); its
    # versions, models, runs, datasets, snapshots, alerts and chats belong to it too.
    client = models.ForeignKey(
        Client, null=True, blank=True, on_delete=models.PROTECT, related_name="recipes"
    )
    owner = models.CharField(max_length=200, blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = RecipeQuerySet.as_manager()

    class Meta:
        db_table = "ml_recipe"
        ordering = ["created_at", "id"]
        indexes = [
            # Library filters: ?model_family=&level=&status= (any combination, family first).
            models.Index(fields=["model_family", "level", "status"], name="ml_recipe_family_level_idx"),
            models.Index(fields=["status"], name="ml_recipe_status_idx"),
            models.Index(fields=["level"], name="ml_recipe_level_idx"),
            # Default ordering and ?ordering=-created_at.
            models.Index(fields=["created_at", "id"], name="ml_recipe_created_idx"),
            models.Index(fields=["name"], name="ml_recipe_name_idx"),
        ]
        constraints = [
            models.CheckConstraint(
                condition=Q(model_family__in=catalog.FAMILIES), name="ml_recipe_family_valid"
            ),
            models.CheckConstraint(condition=Q(level__in=catalog.LEVELS), name="ml_recipe_level_valid"),
            models.CheckConstraint(
                condition=Q(status__in=RecipeStatus.values), name="ml_recipe_status_valid"
            ),
            # Baselines are roots; industry and client recipes always have a parent. That the
            # parent is exactly one level up and of the same family is a cross-row rule: the
            # triggers in migration 0002 enforce it in the database.
            models.CheckConstraint(
                condition=(
                    Q(level="baseline", parent__isnull=True)
                    | (~Q(level="baseline") & Q(parent__isnull=False))
                ),
                name="ml_recipe_parent_by_level",
            ),
            # Exactly the client-level recipes belong to a client.
            models.CheckConstraint(
                condition=Q(level="client", client__isnull=False)
                | (~Q(level="client") & Q(client__isnull=True)),
                name="ml_recipe_client_by_level",
            ),
            # Clone names are unique among a parent's children in one workspace (the firm, or one
            # client: another client's names are none of its business), ignoring case.
            # Baselines (no parent) are not concerned: NULLs never collide.
            models.UniqueConstraint(
                F("parent"), Coalesce("client", Value("")), Lower("name"), name="clone_name_unique_per_parent"
            ),
        ]

    def __str__(self):
        return self.name

    @property
    def tags(self) -> list[str]:
        return sorted(tag.name for tag in self.tag_set.all())

    @property
    def ancestors(self) -> list["Recipe"]:
        """The recipes above this one, root first: [baseline, industry] for a client recipe, []
        for a baseline. It follows the parents already loaded: no query when the caller
        select_related("parent__parent"), one per level not loaded otherwise."""
        chain: list[Recipe] = []
        seen = {self.pk}
        parent = self.parent
        while parent is not None and parent.pk not in seen:
            chain.append(parent)
            seen.add(parent.pk)
            parent = parent.parent
        return chain[::-1]

    @cached_property
    def current_version(self) -> "RecipeVersion | None":
        """The newest version. Versions only ever increase, so newest = highest semver; it is
        derived, never stored, so loading fixtures or adding versions cannot leave it stale."""
        versions = list(self.versions.all())
        return max(versions, key=lambda v: v.semver) if versions else None

    @property
    def version_count(self) -> int:
        return len(self.versions.all())


class RecipeTagManager(models.Manager):
    def get_by_natural_key(self, recipe_id, name):
        return self.get(recipe_id=recipe_id, name=name)


class RecipeTag(models.Model):
    """A recipe's tags, one row each so ?tag= is an indexed lookup on every database.
    Fixtures refer to tags by (recipe, name), so loading them never collides with user rows."""

    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE, related_name="tag_set")
    name = models.CharField(max_length=64)

    objects = RecipeTagManager()

    class Meta:
        db_table = "ml_recipe_tag"
        constraints = [models.UniqueConstraint(fields=["recipe", "name"], name="ml_recipe_tag_unique")]
        # ?tag=retail
        indexes = [models.Index(fields=["name"], name="ml_recipe_tag_name_idx")]

    def __str__(self):
        return self.name

    def natural_key(self):
        return (self.recipe_id, self.name)


class RecipeVersion(models.Model):
    """An immutable manifest snapshot. Created by recipes.services.version_create only."""

    id = models.CharField(primary_key=True, max_length=64)
    recipe = models.ForeignKey(Recipe, on_delete=models.CASCADE, related_name="versions")
    version = models.CharField(max_length=32)
    manifest = JSONField()
    changelog = models.TextField(blank=True, default="")
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    approved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approved_at = models.DateTimeField(null=True, blank=True)
    # Lineage: the parent recipe's version this one derives from (set by clone, kept by new
    # versions, moved by rebase); null for baselines.
    base_version = models.ForeignKey(
        "self", null=True, blank=True, on_delete=models.PROTECT, related_name="derived_versions"
    )
    # What the semantic diff from the previous version asked for (patch/minor/major; "" for
    # the first version), and why a smaller number was forced if it was.
    suggested_bump = models.CharField(max_length=8, blank=True, default="")
    force_note = models.TextField(blank=True, default="")
    # The approval gate's record: {"gate": "passed"|"overridden", "checks", "comparison", ...}
    # (see recipes.approval); the evidence run, and the reason when the gate was overridden.
    approval_run = models.ForeignKey(
        "runs.Run", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    approval_json = JSONField(default=dict, blank=True)
    approval_override_reason = models.TextField(blank=True, default="")

    class Meta:
        db_table = "ml_recipe_version"
        ordering = ["recipe_id", "created_at", "id"]
        permissions = [("approve_recipeversion", "Can approve recipe versions")]
        constraints = [
            models.UniqueConstraint(fields=["recipe", "version"], name="ml_recipe_version_unique"),
            models.CheckConstraint(
                condition=Q(version__regex=r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$"),
                name="ml_recipe_version_semver",
            ),
            models.CheckConstraint(
                condition=Q(suggested_bump__in=["", "patch", "minor", "major"]),
                name="ml_recipe_version_bump_valid",
            ),
        ]
        # The version list of a recipe (ordered by creation) uses the unique index's prefix.

    def __str__(self):
        return f"{self.recipe_id} {self.version}"

    @property
    def is_approved(self) -> bool:
        return self.approved_at is not None

    @property
    def semver(self) -> tuple[int, int, int]:
        major, minor, patch = (int(part) for part in self.version.split("."))
        return major, minor, patch


class SyntheticExample(models.Model):
    """What a recipe's data looks like and what its baseline really reaches on it."""

    id = models.CharField(primary_key=True, max_length=64)
    recipe = models.OneToOneField(Recipe, on_delete=models.CASCADE, related_name="synthetic_example")
    schema_json = JSONField(default=list)
    sample_rows_json = JSONField(default=list)
    expected_output_json = JSONField(default=dict)
    example_metrics_json = JSONField(default=dict)
    # How the example was produced: {"rows": N, "seed": S, "recipe_version": "1.0.0", ...}.
    generator_json = JSONField(default=dict)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        db_table = "ml_synthetic_example"

    def __str__(self):
        return f"Synthetic example of {self.recipe_id}"
