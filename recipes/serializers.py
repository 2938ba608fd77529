from rest_framework import serializers

from . import catalog
from .models import Recipe, RecipeStatus, RecipeVersion, SyntheticExample


class VersionSummarySerializer(serializers.ModelSerializer):
    is_approved = serializers.BooleanField(read_only=True)

    class Meta:
        model = RecipeVersion
        fields = ["id", "version", "created_at", "approved_at", "is_approved"]


class RecipeVersionSerializer(serializers.ModelSerializer):
    """A version; `base_version` is the parent recipe's version it derives from, `approval`
    the approval gate's record (evidence run, metric comparison, override reason)."""

    recipe_id = serializers.CharField(read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    approved_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    is_approved = serializers.BooleanField(read_only=True)
    base_version = serializers.SerializerMethodField()
    approval = serializers.SerializerMethodField()

    class Meta:
        model = RecipeVersion
        fields = [
            "id",
            "recipe_id",
            "version",
            "manifest",
            "changelog",
            "created_by",
            "created_at",
            "approved_by",
            "approved_at",
            "is_approved",
            "base_version",
            "suggested_bump",
            "force_note",
            "approval",
        ]

    def get_base_version(self, version) -> dict | None:
        # base_version_id is on the row; the parent's version number needs the related row,
        # which the version queries select_related.
        base = version.base_version if version.base_version_id else None
        if base is None:
            return None
        return {"recipe_id": base.recipe_id, "version_id": base.pk, "version": base.version}

    def get_approval(self, version) -> dict | None:
        if version.approved_at is None:
            return None
        return {
            **(version.approval_json or {}),
            "evidence_run_id": version.approval_run_id,
            "override_reason": version.approval_override_reason,
        }


class RecipeSerializer(serializers.ModelSerializer):
    parent_id = serializers.CharField(read_only=True, allow_null=True)
    client_id = serializers.CharField(read_only=True, allow_null=True)
    tags = serializers.ListField(child=serializers.CharField(), read_only=True)
    created_by = serializers.SlugRelatedField(slug_field="username", read_only=True)
    current_version = VersionSummarySerializer(read_only=True)
    version_count = serializers.IntegerField(read_only=True)

    class Meta:
        model = Recipe
        fields = [
            "id",
            "name",
            "description",
            "model_family",
            "level",
            "parent_id",
            "client_id",
            "status",
            "tags",
            "owner",
            "created_by",
            "created_at",
            "updated_at",
            "current_version",
            "version_count",
        ]


CHILDREN_LISTED = 100


class RecipeDetailSerializer(RecipeSerializer):
    """A recipe with its current manifest and (the first 100 of) its children; the full list
    is `GET /recipes?parent_id=<id>`."""

    current_version = RecipeVersionSerializer(read_only=True)
    children = serializers.SerializerMethodField()
    children_count = serializers.SerializerMethodField()

    class Meta(RecipeSerializer.Meta):
        fields = [*RecipeSerializer.Meta.fields, "children", "children_count"]

    def _children(self, recipe):
        # Only the children the asking user may see (another client's clones stay unseen).
        request = self.context.get("request")
        user = getattr(request, "user", None)
        return recipe.children.visible_to(user) if user is not None else recipe.children.none()

    def get_children(self, recipe) -> list[dict]:
        children = (
            self._children(recipe)
            .only("id", "name", "level", "status")
            .order_by("name", "id")[:CHILDREN_LISTED]
        )
        return [{"id": c.id, "name": c.name, "level": c.level, "status": c.status} for c in children]

    def get_children_count(self, recipe) -> int:
        return self._children(recipe).count()


class StrictSerializer(serializers.Serializer):
    """Rejects unknown fields instead of silently ignoring a typo."""

    def to_internal_value(self, data):
        if isinstance(data, dict):
            unknown = sorted(set(data) - set(self.fields))
            if unknown:
                raise serializers.ValidationError({name: ["unknown field"] for name in unknown})
        return super().to_internal_value(data)


class RecipeCreateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    model_family = serializers.ChoiceField(choices=catalog.FAMILIES)
    level = serializers.ChoiceField(choices=catalog.LEVELS)
    parent_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)
    description = serializers.CharField(required=False, allow_blank=True, default="")
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False, default=list)
    owner = serializers.CharField(required=False, allow_blank=True, default="", max_length=200)
    manifest = serializers.DictField()
    changelog = serializers.CharField(required=False, allow_blank=True, default="Initial version")
    client_id = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)


class RecipeUpdateSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False)
    owner = serializers.CharField(required=False, allow_blank=True, max_length=200)
    status = serializers.ChoiceField(choices=RecipeStatus.choices, required=False)

    def to_internal_value(self, data):
        if isinstance(data, dict):
            frozen = [k for k in ("manifest", "model_family", "level", "parent_id", "id") if k in data]
            if frozen:
                raise serializers.ValidationError(
                    {
                        k: [
                            "cannot be changed here: a manifest change is a new version "
                            "(POST /recipes/{id}/versions); family, level, parent and id are fixed"
                        ]
                        for k in frozen
                    }
                )
        return super().to_internal_value(data)


class VersionCreateSerializer(StrictSerializer):
    """Without `version` and `bump`, the bump the semantic diff suggests is taken; a smaller
    explicit one needs `force` and a `note`."""

    manifest = serializers.DictField()
    version = serializers.CharField(required=False, max_length=32)
    bump = serializers.ChoiceField(choices=["major", "minor", "patch"], required=False)
    changelog = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    force = serializers.BooleanField(required=False, default=False)
    note = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)


class ApproveSerializer(StrictSerializer):
    override_reason = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    evidence_run_id = serializers.CharField(required=False, allow_blank=True, allow_null=True, default=None)


class RebaseSerializer(StrictSerializer):
    """`resolutions`: {"<json pointer>": "ours" | "theirs" | {"value": ...}} per conflict."""

    resolutions = serializers.JSONField(required=False, default=None)
    parent_version = serializers.CharField(required=False, allow_blank=True, default="", max_length=64)
    changelog = serializers.CharField(required=False, allow_blank=True, default="", max_length=5000)
    dry_run = serializers.BooleanField(required=False, default=False)


class CloneSerializer(StrictSerializer):
    name = serializers.CharField(max_length=200)
    client_id = serializers.CharField(required=False, allow_null=True, allow_blank=True, max_length=64)
    level = serializers.ChoiceField(choices=catalog.LEVELS, required=False)
    description = serializers.CharField(required=False, allow_blank=True)
    tags = serializers.ListField(child=serializers.CharField(max_length=64), required=False)


class ManifestValidateSerializer(StrictSerializer):
    manifest = serializers.JSONField()


class SyntheticExampleSerializer(serializers.ModelSerializer):
    recipe_id = serializers.CharField(read_only=True)

    class Meta:
        model = SyntheticExample
        fields = [
            "id",
            "recipe_id",
            "schema_json",
            "sample_rows_json",
            "expected_output_json",
            "example_metrics_json",
            "generator_json",
            "created_at",
            "updated_at",
        ]
