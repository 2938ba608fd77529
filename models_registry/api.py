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
from runs import artifacts

from . import selectors, services
from .filters import MLModelFilter
from .models import MLModel
from .serializers import (
    ExplanationsSerializer,
    MLModelSerializer,
    ModelRegisterSerializer,
    ModelUpdateSerializer,
    PredictResponseSerializer,
    PredictSerializer,
)


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

    @extend_schema(responses={200: ExplanationsSerializer})
    @action(detail=True, methods=["get"], permission_classes=[IsAuthenticated])
    def explanations(self, request, pk=None):
        """The model's explanations, as its train run's explain stage computed them on the
        run's holdout: `method` (the per-prediction attribution method) and `method_note`,
        `base_value`, `global` (permutation importance with intervals, sorted), `attribution`
        (mean |contribution| per feature), `dependence` (partial dependence and ICE),
        `family_view` (the family's own figures) and `notes`. 404 when the model has none
        (trained before the explain stage existed, or by a version without one)."""
        model = self.get_object()
        document = selectors.model_explanations(model)
        if document is None:
            raise NotFound(artifacts.no_explanations_message(model))
        return Response(document)

    @extend_schema(request=PredictSerializer, responses={200: PredictResponseSerializer})
    @action(detail=True, methods=["post"], permission_classes=[IsAuthenticated])
    def predict(self, request, pk=None):
        """`{"rows": [{...}]}` -> `{"predictions": [...]}` from the model's trained artifact.

        `"explain": true` adds `"explanations"`, parallel to `"predictions"` (at most
        PREDICT_EXPLAIN_MAX_ROWS rows): per row `method`, `scale`, `output`, `base_value`,
        `contributions` (feature -> value; `base_value` + their sum = `output`, exactly for
        exact methods), `reasons` in words, family extras (pricing: `elasticity`,
        `demand_curve`) and `model_id`, the model whose prediction it explains. While an A/B
        or shadow test of this model runs, a row is explained by the model that served its
        prediction (its arm's in A/B, the champion in shadow mode; the shadow challenger's
        unseen answers are not explained): an explanation always adds up to the prediction it
        stands beside. Every model that may serve must then have explanations (404 otherwise,
        before any row is predicted or exposure recorded)."""
        model = self.get_object()
        data = PredictSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        rows = data.validated_data["rows"]
        explain = data.validated_data["explain"]
        if len(rows) > settings.PREDICT_MAX_ROWS:
            raise InvalidInput(
                f"At most {settings.PREDICT_MAX_ROWS} rows per request; got {len(rows)}.",
                [{"path": "/rows", "message": f"more than {settings.PREDICT_MAX_ROWS} rows"}],
            )
        if explain and len(rows) > settings.PREDICT_EXPLAIN_MAX_ROWS:
            limit = settings.PREDICT_EXPLAIN_MAX_ROWS
            raise InvalidInput(
                f'At most {limit} rows per request with "explain": true; got {len(rows)}.',
                [{"path": "/rows", "message": f"more than {limit} rows to explain"}],
            )
        if not model.artifacts_json.get("model"):
            raise NotFound(f"Model '{model.id}' has no trained artifact yet.")
        serving = _serving_models(model) if explain else []
        for candidate in serving:
            if not artifacts.has_explanations(candidate):
                raise NotFound(artifacts.no_explanations_message(candidate))
        # While an A/B or shadow test of this model runs, experiments routes the rows by unit
        # and answers with the arms (the response is unchanged otherwise). A row that cannot be
        # explained (a 4xx) undoes the exposures its request recorded: all or nothing.
        with transaction.atomic():
            answer = experiment_services.experiment_predict(model, rows)
            if explain:
                answer["explanations"] = _explanations(model, serving, rows, answer)
        return Response(answer)


def _serving_models(model: MLModel) -> list[MLModel]:
    """The models that may answer a predict request for `model`: itself, or both models of
    its running experiment (the other one is a model of the same recipe)."""
    experiment = experiment_services.running_experiment(model)
    if experiment is None:
        return [model]
    return [experiment.champion, experiment.challenger]


def _explanations(model: MLModel, serving: list[MLModel], rows: list[dict], answer: dict) -> list[dict]:
    """One explanation per row, each by the model that served the row's prediction
    (``answer["arms"]`` and ``answer["models"]`` while an experiment runs)."""
    by_id = {m.pk: m for m in [model, *serving]}
    arms, models = answer.get("arms"), answer.get("models") or {}
    served = [models.get(arm, model.pk) for arm in arms] if arms else [model.pk] * len(rows)
    out: list = [None] * len(rows)
    for model_id in dict.fromkeys(served):
        index = [i for i, m in enumerate(served) if m == model_id]
        subset = rows if len(index) == len(rows) else [rows[i] for i in index]
        explainer = by_id.get(model_id) or get_object_or_404(
            MLModel.objects.select_related("recipe"), pk=model_id
        )
        if not artifacts.has_explanations(explainer):  # an experiment started meanwhile
            raise NotFound(artifacts.no_explanations_message(explainer))
        for i, item in zip(index, artifacts.explain_rows(explainer, subset), strict=True):
            out[i] = {**item, "model_id": model_id}
    return out
