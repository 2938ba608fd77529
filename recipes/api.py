from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from mlworkspace.errors import NotFound, lookup
from mlworkspace.permissions import CanApproveVersions
from recipes import perms as recipe_perms
from runs.evidence import visible_run

from . import access, selectors, services
from .approval import approval_gate
from .filters import RecipeFilter
from .manifest import validate_manifest
from .models import Recipe, RecipeTag, RecipeVersion
from .serializers import (
    ApproveSerializer,
    CloneSerializer,
    ManifestValidateSerializer,
    RebaseSerializer,
    RecipeCreateSerializer,
    RecipeDetailSerializer,
    RecipeSerializer,
    RecipeUpdateSerializer,
    RecipeVersionSerializer,
    SyntheticExampleSerializer,
    VersionCreateSerializer,
    VersionSummarySerializer,
)

# Versions with what their serializer shows (users, the parent version they derive from).
VERSIONS = RecipeVersion.objects.select_related("created_by", "approved_by", "base_version")


def recipe_queryset(user):
    return Recipe.objects.visible_to(user).for_list()


def _columns(serializer, reads: dict[str, tuple[str, ...]]) -> tuple[str, ...]:
    """The columns behind `serializer`'s fields: a field reads the column of its name (a
    foreign key by its `_id`) unless `reads` says what it reads (a property, a related value,
    a prefetch: nothing). A field added to the serializer is fetched with its row; one that is
    no column and not in `reads` fails the list's query (no such field)."""
    return tuple(dict.fromkeys(c for field in serializer.Meta.fields for c in reads.get(field, (field,))))


# What a row of the list shows (RecipeSerializer): the recipe's own columns, its creator's
# username, its tags' names and its versions' summaries (the current one is the highest
# version number), the last two from the prefetches of recipe_list_rows.
# test_api_recipes.py's query count fails if a field's column is missing here.
LIST_ROW_FIELDS = _columns(
    RecipeSerializer,
    {
        "created_by": ("created_by", "created_by__username"),
        "tags": (),
        "current_version": (),
        "version_count": (),
    },
)
# A version's summary (VersionSummarySerializer), and the recipe it is prefetched for.
VERSION_SUMMARY_FIELDS = ("recipe", *_columns(VersionSummarySerializer, {"is_approved": ("approved_at",)}))


def recipe_list_rows(user):
    """The list's rows with only what they show: no parent row (a row names its parent by
    id), no version's manifest or approval record. Less to fetch and fewer objects to build
    than for_list() (bench/README.md §1)."""
    return (
        Recipe.objects.visible_to(user)
        .select_related("created_by")
        .only(*LIST_ROW_FIELDS)
        .prefetch_related(
            Prefetch("tag_set", queryset=RecipeTag.objects.only("recipe", "name")),
            Prefetch("versions", queryset=RecipeVersion.objects.only(*VERSION_SUMMARY_FIELDS)),
        )
    )


# The list's serializer, built once: a ModelSerializer builds its fields by introspecting the
# model each time it is created, a measurable share of a list request (bench/README.md §1).
# RecipeSerializer reads no context, so one instance serves every request and thread.
_LIST_ROW = RecipeSerializer()


def recipe_detail_queryset(user):
    """One recipe with everything the detail shows (current version with its manifest)."""
    return (
        Recipe.objects.visible_to(user)
        .select_related("parent", "created_by")
        .prefetch_related(
            "tag_set",
            Prefetch("versions", queryset=VERSIONS),
        )
    )


class RecipeViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Recipes: templates of a model, versioned. Filter with `model_family`, `level`, `status`,
    `parent_id`, `tag`, `search` (text in the name, description, id or a tag); order with
    `ordering` (e.g. `-created_at`, `name`)."""

    filterset_class = RecipeFilter
    ordering_fields = ["name", "created_at", "updated_at", "level", "model_family", "status"]
    ordering = ["created_at", "id"]
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        if self.action == "list":
            return recipe_list_rows(self.request.user)
        if self.action == "retrieve":
            return recipe_detail_queryset(self.request.user)
        if self.action == "synthetic_example":
            # The chain the example may be inherited from, in the recipe's own query.
            return Recipe.objects.visible_to(self.request.user).select_related("parent__parent")
        return recipe_queryset(self.request.user)

    def get_serializer_class(self):
        return RecipeDetailSerializer if self.action == "retrieve" else RecipeSerializer

    def list(self, request, *args, **kwargs):
        # RecipeSerializer's output (and schema), from the instance built once (_LIST_ROW).
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response([_LIST_ROW.to_representation(recipe) for recipe in page])

    def _detail(self, recipe_id, code=status.HTTP_200_OK):
        recipe = get_object_or_404(recipe_detail_queryset(self.request.user), pk=recipe_id)
        return Response(RecipeDetailSerializer(recipe, context={"request": self.request}).data, status=code)

    @extend_schema(request=RecipeCreateSerializer, responses={201: RecipeDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = RecipeCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        parent = lookup(Recipe.objects.visible_to(request.user), "parent_id", values.pop("parent_id", None))
        client = access.client_for_write(request.user, values.pop("client_id", None))
        access.check_write(request.user, client, recipe_perms.ADD_RECIPE)
        recipe = services.recipe_create(user=request.user, parent=parent, client=client, **values)
        return self._detail(recipe.pk, status.HTTP_201_CREATED)

    @extend_schema(request=RecipeUpdateSerializer, responses=RecipeDetailSerializer)
    def update(self, request, *args, **kwargs):
        recipe = self.get_object()
        data = RecipeUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.recipe_update(recipe=recipe, user=request.user, **data.validated_data)
        return self._detail(recipe.pk)

    partial_update = update

    @extend_schema(
        request=CloneSerializer,
        parameters=[OpenApiParameter("name", str, description="Name of the new recipe (or in the body)")],
        responses={201: RecipeDetailSerializer},
    )
    @action(detail=True, methods=["post"])
    def clone(self, request, pk=None):
        """Copy the current manifest into a new draft recipe one level down (`?name=`). A clone
        of an industry recipe is a client recipe: `client_id` (query or body) names its client,
        in which the user needs the data_scientist or lead role."""
        # Reading the source is enough; the write is into the clone's client (or the firm).
        source = get_object_or_404(self.get_queryset(), pk=pk)
        body = request.data if isinstance(request.data, dict) else {}
        query = {k: v for k, v in request.query_params.items() if k in ("name", "level", "client_id")}
        data = CloneSerializer(data={**query, **body})
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        client = access.client_for_write(request.user, values.pop("client_id", None))
        access.check_write(request.user, client or source.client or source, recipe_perms.ADD_RECIPE)
        recipe = services.recipe_clone(source=source, user=request.user, client=client, **values)
        return self._detail(recipe.pk, status.HTTP_201_CREATED)

    @extend_schema(methods=["get"], responses=RecipeVersionSerializer(many=True))
    @extend_schema(
        methods=["post"], request=VersionCreateSerializer, responses={201: RecipeVersionSerializer}
    )
    @action(detail=True, methods=["get", "post"])
    def versions(self, request, pk=None):
        """GET: every version, oldest first. POST: a new version — `version`, `bump`, or neither
        to take the bump the semantic diff suggests; a smaller one needs `force` and a `note`.
        A manifest with no change from the newest version is refused (409 "no changes")
        unless forced with a note."""
        recipe = self.get_object()
        if request.method == "GET":
            versions = VERSIONS.filter(recipe=recipe).order_by("created_at", "id")
            return Response(RecipeVersionSerializer(versions, many=True).data)
        data = VersionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        values["force_note"] = values.pop("note")
        created = services.version_create(recipe=recipe, user=request.user, **values)
        return Response(
            RecipeVersionSerializer(VERSIONS.get(pk=created.pk)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(request=ApproveSerializer, responses=RecipeVersionSerializer)
    @action(
        detail=True,
        methods=["post"],
        url_path=r"versions/(?P<version_id>[^/]+)/approve",
        permission_classes=[CanApproveVersions],
    )
    def approve(self, request, pk=None, version_id=None):
        """Approve one version (needs `recipes.approve_recipeversion`); the recipe becomes
        approved. The approval gate must pass — a succeeded backtest/eval run on the version
        within its thresholds and the tolerance — or `override_reason` must say why not."""
        recipe = self.get_object()
        version = selectors.version_of(recipe, version_id)
        access.check_approve(request.user, version)
        data = ApproveSerializer(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        run = visible_run(request.user, data.validated_data["evidence_run_id"], field="evidence_run_id")
        services.version_approve(
            version=version,
            user=request.user,
            override_reason=data.validated_data["override_reason"],
            evidence_run=run,
        )
        return Response(RecipeVersionSerializer(VERSIONS.get(pk=version.pk)).data)

    @extend_schema(responses=RecipeVersionSerializer)
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<version_id>[^/]+)")
    def version_detail(self, request, pk=None, version_id=None):
        """One version by id or number."""
        return Response(RecipeVersionSerializer(selectors.version_of(self.get_object(), version_id)).data)

    @extend_schema(responses=None)
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<version_id>[^/]+)/gate")
    def gate(self, request, pk=None, version_id=None):
        """The approval gate on this version now: passed, reasons, the evidence run it would
        use and the comparison with the last approved version; `approval` once approved."""
        version = selectors.version_of(self.get_object(), version_id)
        out = {"version_id": version.pk, "version": version.version}
        out["approval"] = RecipeVersionSerializer(version).data["approval"]
        out["gate"] = approval_gate(version) if version.approved_at is None else None
        return Response(out)

    @extend_schema(
        parameters=[
            OpenApiParameter("against", str, description="Recipe id of version b (default: this recipe)")
        ],
        responses=None,
    )
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<version_id>[^/]+)/diff/(?P<other_id>[^/]+)")
    def diff(self, request, pk=None, version_id=None, other_id=None):
        """Semantic diff from version a to version b: every change by JSON path (list elements
        by identity: stage name, feature name) with its bump (major/minor/patch) and reason,
        and the suggested bump. b may be a version id of any recipe, or a number of the recipe
        named by `?against=`."""
        recipe = self.get_object()
        a = selectors.version_of(recipe, version_id)
        against = request.query_params.get("against")
        if against:
            other_recipe = Recipe.objects.visible_to(request.user).filter(pk=against).first()
            if other_recipe is None:
                raise NotFound(f"Recipe '{against}' does not exist.")
            b = selectors.version_of(other_recipe, other_id)
        else:
            b = RecipeVersion.objects.filter(
                access.client_scope(request.user, "recipe__client"), pk=other_id
            ).first() or selectors.version_of(recipe, other_id)
        return Response(selectors.version_diff(a, b))

    @extend_schema(responses=None)
    @action(detail=True, methods=["get"])
    def lineage(self, request, pk=None):
        """The chain baseline → industry → client (each with the version the next derives
        from), every leaf field's provenance (own / inherited from whom / overridden, with the
        ancestor's value), leaves the recipe removed, and the whole family tree."""
        recipe = self.get_object()
        return Response(
            {**selectors.recipe_lineage(recipe), "tree": selectors.lineage_tree(recipe, user=request.user)}
        )

    @extend_schema(responses=None)
    @action(detail=True, methods=["get"])
    def upstream(self, request, pk=None):
        """Whether the parent has a newer approved version than the one this recipe derives
        from; if so the parent's diff since then and a merge preview with its conflicts."""
        return Response(selectors.recipe_upstream(self.get_object()))

    @extend_schema(request=RebaseSerializer, responses={201: RecipeVersionSerializer})
    @action(detail=True, methods=["post"])
    def rebase(self, request, pk=None):
        """Three-way merge of the parent's new approved version into a new version of this
        recipe. 409 lists the conflicts (path, base, ours, theirs) until `resolutions` settles
        them; `dry_run` returns the preview without writing."""
        recipe = self.get_object()
        data = RebaseSerializer(data=request.data if isinstance(request.data, dict) else {})
        data.is_valid(raise_exception=True)
        values = data.validated_data
        if values["dry_run"]:
            plan = selectors.rebase_plan(
                recipe, parent_version=values["parent_version"] or None, resolutions=values["resolutions"]
            )
            return Response(plan.summary())
        created = services.recipe_rebase(
            recipe=recipe,
            user=request.user,
            resolutions=values["resolutions"],
            parent_version=values["parent_version"] or None,
            changelog=values["changelog"],
        )
        return Response(
            RecipeVersionSerializer(VERSIONS.get(pk=created.pk)).data, status=status.HTTP_201_CREATED
        )

    @extend_schema(responses=SyntheticExampleSerializer)
    @action(detail=True, methods=["get"], url_path="synthetic-example")
    def synthetic_example(self, request, pk=None):
        """The recipe's synthetic example: schema, sample rows, expected output and the metrics
        the baseline really reaches on it. A clone without its own example shows its nearest
        ancestor's (`inherited_from`)."""
        recipe = self.get_object()
        example, inherited_from = selectors.synthetic_example_for(recipe)
        if example is None:
            raise NotFound(f"Recipe '{recipe.id}' has no synthetic example.")
        data = SyntheticExampleSerializer(example).data
        data["inherited_from"] = inherited_from.pk if inherited_from else None
        return Response(data)


class ManifestValidateViewSet(viewsets.ViewSet):
    """Validate a manifest without saving it (the editor's live validation)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=ManifestValidateSerializer, responses=None)
    def create(self, request):
        data = ManifestValidateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        family = request.query_params.get("model_family")
        level = request.query_params.get("level")
        errors = validate_manifest(
            data.validated_data["manifest"], family=family, level=level, path_prefix="/manifest"
        )
        return Response({"valid": not errors, "errors": errors})
