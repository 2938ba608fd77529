"""The study of a tune run in the API: ``GET /runs/{id}/study`` (its trials and the best) and
``POST /runs/{id}/study/save-best`` (a new recipe version with the best hyperparameters)."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import serializers, status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from recipes import access, tuning
from recipes import perms as recipe_perms

from . import services, tuning_selectors
from .models import Run


class TrialSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    state = serializers.CharField(help_text="complete, pruned, fail, running or waiting")
    value = serializers.FloatField(allow_null=True, help_text="The tuned metric on the validation rows")
    params = serializers.DictField(child=serializers.JSONField())
    baseline = serializers.BooleanField(help_text="The version's own values (the study's first trial)")
    error = serializers.CharField(allow_blank=True)
    pruned_at = serializers.IntegerField(
        allow_null=True, help_text="The boosting round a pruned trial stopped at"
    )
    started_at = serializers.CharField(allow_null=True)
    finished_at = serializers.CharField(allow_null=True)
    seconds = serializers.FloatField(allow_null=True)
    run_id = serializers.CharField(allow_null=True, help_text="The trial's child run")
    worker = serializers.CharField(
        allow_null=True,
        help_text="The worker that ran it (tuning.workers: the study's trials may run on several)",
    )


class BestTrialSerializer(serializers.Serializer):
    number = serializers.IntegerField()
    value = serializers.FloatField()
    params = serializers.DictField(child=serializers.JSONField())
    metrics = serializers.DictField(child=serializers.JSONField(), help_text="On the validation rows")
    baseline = serializers.BooleanField()


class StudySerializer(serializers.Serializer):
    run_id = serializers.CharField()
    status = serializers.CharField(help_text="The tune run's status")
    started = serializers.BooleanField(help_text="False until a worker asked for the first trial")
    study_name = serializers.CharField(allow_null=True)
    metric = serializers.CharField(allow_null=True)
    direction = serializers.CharField(allow_null=True)
    counts = serializers.DictField(child=serializers.IntegerField())
    best = BestTrialSerializer(allow_null=True)
    trials = TrialSerializer(many=True)


class SavedVersionSerializer(serializers.Serializer):
    recipe_id = serializers.CharField()
    version_id = serializers.CharField()
    version = serializers.CharField()
    suggested_bump = serializers.CharField()
    hyperparameters = serializers.DictField(
        child=serializers.JSONField(), help_text="The new version's training hyperparameters"
    )


def _tune_run(request, run_id: str) -> Run:
    return tuning_selectors.get_tune_run(Run.objects.visible_to(request.user), run_id)


class RunStudyView(APIView):
    """A tune run's Optuna study: every trial (state, the tuned metric on the validation rows,
    its hyperparameters, its child run) and the best. 404 for a run that is no tune run."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: StudySerializer})
    def get(self, request, run_id):
        run = _tune_run(request, run_id)
        data = tuning_selectors.tune_study(run)
        body = {"run_id": run.pk, "status": run.status, "started": data is not None}
        empty = {
            "study_name": None,
            "metric": None,
            "direction": None,
            "counts": {},
            "best": None,
            "trials": [],
        }
        return Response(StudySerializer({**body, **(data or empty)}).data)


class RunStudySaveBestView(APIView):
    """Save the best trial's hyperparameters as a new version of the recipe (the tuned
    version's manifest with them in its training stage; the suggested semver bump). 201 with
    the version; 409 when there is no finished trial, a newer version exists, or the best
    trial's values are the version's own (no change)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=None, responses={201: SavedVersionSerializer})
    def post(self, request, run_id):
        run = _tune_run(request, run_id)
        access.check_write(request.user, run.recipe, recipe_perms.ADD_VERSION)
        created = services.tune_save_best(run=run, user=request.user)
        stage = (tuning.training_stage(created.manifest) or (0, {}))[1]
        body = {
            "recipe_id": created.recipe_id,
            "version_id": created.pk,
            "version": created.version,
            "suggested_bump": created.suggested_bump,
            "hyperparameters": (stage.get("config") or {}).get("hyperparameters") or {},
        }
        return Response(SavedVersionSerializer(body).data, status=status.HTTP_201_CREATED)
