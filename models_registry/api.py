from django.conf import settings
from django.db import transaction
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from experiments import services as experiment_services
from mlworkspace.errors import InvalidInput, NotFound, lookup
from models_registry import perms as model_perms
from recipes import access
from recipes.models import Recipe, RecipeVersion

from . import services
from .filters import MLModelFilter
from .models import MLModel
from .serializers import MLModelSerializer, ModelRegisterSerializer, ModelUpdateSerializer, PredictSerializer


class MLModelViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Registered models. `PUT {"status": "production"}` promotes (the previous production
    model of the recipe is demoted to staging and listed in `replaced`)."""

    serializer_class = MLModelSerializer
    filterset_class = MLModelFilter
    ordering_fields = ["name", "created_at", "updated_at", "status"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return MLModel.objects.visible_to(self.request.user).for_list()

    def _out(self, model_id, code=status.HTTP_200_OK, **extra):
        model = get_object_or_404(self.get_queryset(), pk=model_id)
        return Response({**MLModelSerializer(model).data, **extra}, status=code)

    @extend_schema(request=ModelRegisterSerializer, responses={201: MLModelSerializer})
    def create(self, request, *args, **kwargs):
        data = ModelRegisterSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        user = request.user
        recipe = lookup(Recipe.objects.visible_to(user), "recipe_id", values.pop("recipe_id"))
        access.check_write(user, recipe, model_perms.ADD_MODEL)
        version = lookup(
            RecipeVersion.objects.filter(access.client_scope(user, "recipe__client")),
            "recipe_version_id",
            values.pop("recipe_version_id"),
        )
        model = services.model_register(user=request.user, recipe=recipe, recipe_version=version, **values)
        return self._out(model.pk, status.HTTP_201_CREATED)

    @extend_schema(request=ModelUpdateSerializer, responses=MLModelSerializer)
    def update(self, request, *args, **kwargs):
        model = self.get_object()
        data = ModelUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        new_status = values.pop("status", None)
        keep = values.pop("keep_other_production", False)
        replaced = []
        with transaction.atomic():  # fields and status change together or not at all
            if values:
                services.model_update(model=model, user=request.user, **values)
            if new_status is not None:
                replaced = services.model_set_status(
                    model=model, user=request.user, status=new_status, keep_other_production=keep
                )["replaced"]
        return self._out(model.pk, replaced=replaced)

    partial_update = update

    @extend_schema(request=PredictSerializer, responses=None)
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def predict(self, request, pk=None):
        """`{"rows": [{...}]}` -> `{"predictions": [...]}` from the model's trained artifact."""
        model = self.get_object()
        data = PredictSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rows = data.validated_data["rows"]
        if len(rows) > settings.PREDICT_MAX_ROWS:
            raise InvalidInput(
                f"At most {settings.PREDICT_MAX_ROWS} rows per request; got {len(rows)}.",
                [{"path": "/rows", "message": f"more than {settings.PREDICT_MAX_ROWS} rows"}],
            )
        if not model.artifacts_json.get("model"):
            raise NotFound(f"Model '{model.id}' has no trained artifact yet.")
        # While an A/B or shadow test of this model runs, experiments routes the rows by unit
        # and answers with the arms (the response is unchanged otherwise).
        return Response(experiment_services.experiment_predict(model, rows))
