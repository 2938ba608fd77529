from django.db.models import Prefetch
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from mlworkspace.errors import NotFound, lookup
from mlworkspace.permissions import CanApproveVersions

from . import services
from .filters import RecipeFilter
from .manifest import validate_manifest
from .models import Recipe, RecipeVersion, SyntheticExample
from .serializers import (
    CloneSerializer,
    ManifestValidateSerializer,
    RecipeCreateSerializer,
    RecipeDetailSerializer,
    RecipeSerializer,
    RecipeUpdateSerializer,
    RecipeVersionSerializer,
    SyntheticExampleSerializer,
    VersionCreateSerializer,
)


def recipe_queryset(user):
    return Recipe.objects.visible_to(user).for_list()


def recipe_detail_queryset(user):
    """One recipe with everything the detail shows (current version with its manifest)."""
    return (
        Recipe.objects.visible_to(user)
        .select_related("parent", "created_by")
        .prefetch_related(
            "tag_set",
            Prefetch("versions", queryset=RecipeVersion.objects.select_related("created_by", "approved_by")),
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
    `parent_id`, `tag`, `search`; order with `ordering` (e.g. `-created_at`, `name`)."""

    filterset_class = RecipeFilter
    ordering_fields = ["name", "created_at", "updated_at", "level", "model_family", "status"]
    ordering = ["created_at", "id"]
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        if self.action == "retrieve":
            return recipe_detail_queryset(self.request.user)
        return recipe_queryset(self.request.user)

    def get_serializer_class(self):
        return RecipeDetailSerializer if self.action == "retrieve" else RecipeSerializer

    def _detail(self, recipe_id, code=status.HTTP_200_OK):
        recipe = get_object_or_404(recipe_detail_queryset(self.request.user), pk=recipe_id)
        return Response(RecipeDetailSerializer(recipe).data, status=code)

    @extend_schema(request=RecipeCreateSerializer, responses={201: RecipeDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = RecipeCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        parent = lookup(Recipe, "parent_id", values.pop("parent_id", None))
        recipe = services.recipe_create(user=request.user, parent=parent, **values)
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
        """Copy the current manifest into a new draft recipe one level down (`?name=`)."""
        source = self.get_object()
        body = request.data if isinstance(request.data, dict) else {}
        merged = {**{k: v for k, v in request.query_params.items() if k in ("name", "level")}, **body}
        data = CloneSerializer(data=merged)
        data.is_valid(raise_exception=True)
        recipe = services.recipe_clone(source=source, user=request.user, **data.validated_data)
        return self._detail(recipe.pk, status.HTTP_201_CREATED)

    @extend_schema(methods=["get"], responses=RecipeVersionSerializer(many=True))
    @extend_schema(
        methods=["post"], request=VersionCreateSerializer, responses={201: RecipeVersionSerializer}
    )
    @action(detail=True, methods=["get", "post"])
    def versions(self, request, pk=None):
        """GET: every version, oldest first. POST: a new version (`version` or `bump`)."""
        recipe = self.get_object()
        if request.method == "GET":
            versions = recipe.versions.select_related("created_by", "approved_by").order_by(
                "created_at", "id"
            )
            return Response(RecipeVersionSerializer(versions, many=True).data)
        data = VersionCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        created = services.version_create(recipe=recipe, user=request.user, **data.validated_data)
        return Response(RecipeVersionSerializer(created).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=None, responses=RecipeVersionSerializer)
    @action(
        detail=True,
        methods=["post"],
        url_path=r"versions/(?P<version_id>[^/]+)/approve",
        permission_classes=[CanApproveVersions],
    )
    def approve(self, request, pk=None, version_id=None):
        """Approve one version (needs `recipes.approve_recipeversion`); the recipe becomes approved."""
        recipe = self.get_object()
        version = (
            recipe.versions.filter(pk=version_id).first()
            or recipe.versions.filter(version=version_id).first()
        )
        if version is None:
            raise NotFound(f"Recipe '{recipe.id}' has no version '{version_id}'.")
        version = services.version_approve(version=version, user=request.user)
        version = RecipeVersion.objects.select_related("created_by", "approved_by").get(pk=version.pk)
        return Response(RecipeVersionSerializer(version).data)

    @extend_schema(responses=RecipeVersionSerializer)
    @action(detail=True, methods=["get"], url_path=r"versions/(?P<version_id>[^/]+)")
    def version_detail(self, request, pk=None, version_id=None):
        recipe = self.get_object()
        version = (
            recipe.versions.select_related("created_by", "approved_by").filter(pk=version_id).first()
            or recipe.versions.select_related("created_by", "approved_by").filter(version=version_id).first()
        )
        if version is None:
            raise NotFound(f"Recipe '{recipe.id}' has no version '{version_id}'.")
        return Response(RecipeVersionSerializer(version).data)

    @extend_schema(responses=SyntheticExampleSerializer)
    @action(detail=True, methods=["get"], url_path="synthetic-example")
    def synthetic_example(self, request, pk=None):
        """The recipe's synthetic example: schema, sample rows, expected output and the metrics
        the baseline really reaches on it. A clone without its own example shows its nearest
        ancestor's (`inherited_from`)."""
        recipe = self.get_object()
        current, seen = recipe, set()
        while current is not None and current.pk not in seen:
            seen.add(current.pk)
            example = SyntheticExample.objects.filter(recipe_id=current.pk).first()
            if example is not None:
                data = SyntheticExampleSerializer(example).data
                data["inherited_from"] = None if current.pk == recipe.pk else current.pk
                return Response(data)
            current = current.parent
        raise NotFound(f"Recipe '{recipe.id}' has no synthetic example.")


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
