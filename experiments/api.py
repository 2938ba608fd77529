"""The experiments API: start (POST), list, detail with the statistics, outcomes, stop."""

from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response

from mlworkspace.errors import InvalidInput, lookup
from models_registry.models import MLModel
from recipes import access
from recipes.models import Recipe

from . import perms, selectors, services
from .filters import ExperimentFilter
from .models import Experiment
from .serializers import (
    ExperimentCreateSerializer,
    ExperimentDetailSerializer,
    ExperimentOutcomesResultSerializer,
    ExperimentOutcomesSerializer,
    ExperimentSerializer,
    StopSerializer,
)


class ExperimentViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, viewsets.GenericViewSet):
    """A/B and shadow tests on a recipe's production model (the predict endpoint routes
    requests while one runs). `POST` starts one, `GET /{id}` shows its statistics,
    `POST /{id}/outcomes` records outcomes per unit, `POST /{id}/stop` decides (winner
    "challenger" promotes it to production). Another client's experiment is a 404."""

    serializer_class = ExperimentSerializer
    filterset_class = ExperimentFilter
    ordering_fields = ["started_at", "stopped_at", "status"]
    ordering = ["-started_at", "-id"]
    lookup_value_regex = "[^/]+"
    # Writes check the one access rule per object (recipes.access.check_write) with the
    # permissions of experiments/perms.py; there is no experiments-specific Django permission.
    permission_classes = [IsAuthenticated]

    def get_queryset(self):
        return selectors.experiments_for_list(self.request.user)

    def _detail(self, experiment: Experiment, code=status.HTTP_200_OK, **extra) -> Response:
        experiment = get_object_or_404(self.get_queryset(), pk=experiment.pk)
        context = {"statistics": selectors.experiment_statistics(experiment)}
        return Response(
            {**ExperimentDetailSerializer(experiment, context=context).data, **extra}, status=code
        )

    @extend_schema(responses=ExperimentDetailSerializer)
    def retrieve(self, request, *args, **kwargs):
        return self._detail(self.get_object())

    @extend_schema(request=ExperimentCreateSerializer, responses={201: ExperimentDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = ExperimentCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        values = dict(data.validated_data)
        user = request.user
        recipe = lookup(Recipe.objects.visible_to(user), "recipe_id", values.pop("recipe_id"))
        access.check_write(user, recipe, perms.START_OR_STOP)
        models = MLModel.objects.visible_to(user)
        champion = lookup(models, "champion_id", values.pop("champion_id"))
        challenger = lookup(models, "challenger_id", values.pop("challenger_id"))
        experiment = services.experiment_start(
            user=user, recipe=recipe, champion=champion, challenger=challenger, **values
        )
        return self._detail(experiment, status.HTTP_201_CREATED)

    @extend_schema(request=ExperimentOutcomesSerializer, responses=ExperimentOutcomesResultSerializer)
    @action(detail=True, methods=["post"])
    def outcomes(self, request, pk=None):
        """`{"outcomes": [{"unit": "c1", "value": 1.0}, ...]}`: one outcome per exposed unit
        (posting a unit again replaces it). Units never exposed are counted in
        `unknown_units` (the first few in `unknown_examples`) and not recorded."""
        experiment = self.get_object()
        access.check_write(request.user, experiment, perms.POST_OUTCOMES)
        body = request.data if isinstance(request.data, dict) else {}
        unknown = sorted(set(body) - {"outcomes"})
        if unknown:
            raise InvalidInput(
                f"/{unknown[0]}: unknown field",
                [{"path": f"/{key}", "message": "unknown field"} for key in unknown],
            )
        result = services.experiment_outcomes(
            experiment=experiment, outcomes=body.get("outcomes"), user=request.user
        )
        return Response(ExperimentOutcomesResultSerializer(result).data)

    @extend_schema(request=StopSerializer, responses=ExperimentDetailSerializer)
    @action(detail=True, methods=["post"])
    def stop(self, request, pk=None):
        """`{"winner": "champion" | "challenger" | "none"}`. "challenger" promotes it to
        production through the model lifecycle (the champion goes to staging, both audited)."""
        experiment = self.get_object()
        access.check_write(request.user, experiment, perms.START_OR_STOP)
        data = StopSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        result = services.experiment_stop(experiment=experiment, user=request.user, **data.validated_data)
        return self._detail(result["experiment"], promoted=result["promoted"], replaced=result["replaced"])
