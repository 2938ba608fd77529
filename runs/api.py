import json

from django.conf import settings
from django.db import transaction
from django.db.models import Count, OuterRef, Subquery
from django.http import StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.utils.text import slugify
from django_filters.rest_framework import DjangoFilterBackend
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import mixins, status, viewsets
from rest_framework.decorators import action
from rest_framework.parsers import FormParser, MultiPartParser
from rest_framework.renderers import BaseRenderer
from rest_framework.response import Response
from rest_framework.settings import api_settings

from mlworkspace.errors import DomainError, NotFound, TooLarge, field_error, lookup
from mlworkspace.parsers import JSONParser
from mlworkspace.permissions import has_perm
from models_registry.models import MLModel
from recipes import access
from recipes.models import Recipe, RecipeVersion
from runs import perms as run_perms

from . import artifacts, dataset_files, history, list_rows, services
from .filters import DatasetFilter, RunFilter
from .models import Dataset, Executor, MetricPoint, Run, RunMetric
from .search_filter import RunSearchOrdering, RunSearchPagination
from .serializers import (
    EXTERNAL_RESULTS,
    DatasetPurposeSerializer,
    DatasetSerializer,
    DatasetUploadSerializer,
    MetricHistorySerializer,
    RunBatchResultSerializer,
    RunBatchSerializer,
    RunCreateSerializer,
    RunDetailSerializer,
    RunLogSerializer,
    RunMetricsSerializer,
    RunSerializer,
    RunUpdateSerializer,
)

LOG_PAGE = 1000


class CSVRenderer(BaseRenderer):
    """``?format=csv`` (a metric's full history, streamed by the view itself). An error met on
    the way (an unknown run or key) is still the API's JSON error shape."""

    media_type = "text/csv"
    format = "csv"
    charset = "utf-8"

    def render(self, data, accepted_media_type=None, renderer_context=None):
        response = (renderer_context or {}).get("response")
        if response is not None:
            response["Content-Type"] = "application/json"
        return json.dumps(data)


def _run_for_metrics(user, run_id: str) -> Run:
    """The run (only its id), or a 404 naming it."""
    run = Run.objects.visible_to(user).filter(pk=run_id).only("id").first()
    if run is None:
        raise NotFound(f"Run '{run_id}' not found.", [{"path": "/id", "message": "unknown run"}])
    return run


def _start(user, v: dict) -> Run:
    """Start the run a validated RunCreateSerializer describes: its recipe, version, model and
    dataset looked up as `user` sees them, the write checked, then `run_start` (or, for an
    external run, `run_start_external` with its results)."""

    def visible(field: str, rows):
        # Only an id that is given is looked up (an absent one builds no queryset: a batch
        # starts up to 100 runs per request).
        return lookup(rows(), field, v[field]) if v.get(field) else None

    recipe = lookup(Recipe.objects.visible_to(user), "recipe_id", v["recipe_id"])
    access.check_write(user, recipe, run_perms.ADD_RUN)
    dataset = visible("dataset_id", lambda: Dataset.objects.visible_to(user))
    if dataset is not None and dataset.client_id not in (None, recipe.client_id):
        # A member of two clients still may not train one client's recipe on the other's data.
        raise field_error("dataset_id", "the dataset belongs to another client than the recipe")
    inputs = {
        "user": user,
        "recipe": recipe,
        "recipe_version": visible(
            "recipe_version_id",
            lambda: RecipeVersion.objects.filter(access.client_scope(user, "recipe__client")),
        ),
        "run_type": v["run_type"],
        "model": visible("model_id", lambda: MLModel.objects.visible_to(user)),
        "dataset": dataset,
        "params": v["params"],
    }
    if v["executor"] == Executor.EXTERNAL:
        results = {name: v[name] for name in EXTERNAL_RESULTS if name in v}
        return services.run_start_external(**inputs, **results)
    return services.run_start(**inputs, executor=v["executor"])


class RunViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.UpdateModelMixin,
    viewsets.GenericViewSet,
):
    """Train / eval / backtest / score runs. Workspace runs are executed by `manage.py worker`;
    runs with `"executor": "external"` are reported with `PUT`, or created with their results
    (`status`, `metrics_json`, `tags`, `params`) in one `POST` (many at once: `POST /runs/batch`)."""

    filterset_class = RunFilter
    # `filter` / `order_by` (issue #15): RunFilter applies them; these keep DRF's ordering from
    # undoing the order and a filtered page from counting every match (runs/search_filter.py).
    filter_backends = [DjangoFilterBackend, RunSearchOrdering]
    pagination_class = RunSearchPagination
    ordering_fields = ["created_at", "started_at", "finished_at", "status"]
    ordering = ["-created_at", "-id"]
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        runs = Run.objects.visible_to(self.request.user)
        # The list reads only what a row shows (runs.list_rows); the other actions whole runs.
        return runs.for_list_rows() if self.action == "list" else runs.for_list()

    def list(self, request, *args, **kwargs):
        # RunSerializer's output and schema, built by runs.list_rows without creating a
        # ModelSerializer for every request.
        page = self.paginate_queryset(self.filter_queryset(self.get_queryset()))
        return self.get_paginated_response(list_rows.run_rows(page))

    def get_serializer_class(self):
        return RunDetailSerializer if self.action == "retrieve" else RunSerializer

    def _out(self, run_id, code=status.HTTP_200_OK):
        return Response(
            RunDetailSerializer(get_object_or_404(self.get_queryset(), pk=run_id)).data, status=code
        )

    @extend_schema(request=RunCreateSerializer, responses={201: RunDetailSerializer})
    def create(self, request, *args, **kwargs):
        data = RunCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        run = _start(request.user, data.validated_data)
        # The services return the run as written, its recipe and version loaded: no re-read.
        return Response(RunDetailSerializer(run).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=RunBatchSerializer, responses={201: RunBatchResultSerializer})
    @action(detail=False, methods=["post"], permission_classes=[has_perm(run_perms.ADD_RUN)])
    def batch(self, request):
        """Report up to 100 finished (or running) external runs in one request: each item is
        what `POST /runs` takes for an external run (`executor` may be left out), and the batch
        is one transaction: all runs are created, or none (the error names
        `/runs/<index>/<field>`). For a runner reporting many runs at once (a sweep, an import)."""
        data = RunBatchSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        runs = []
        with transaction.atomic():
            for index, item in enumerate(data.validated_data["runs"]):
                try:
                    runs.append(_start(request.user, item))
                except DomainError as error:
                    raise error.__class__(
                        f"/runs/{index}: {error.detail}",
                        [{**e, "path": f"/runs/{index}{e.get('path', '')}"} for e in error.errors],
                    ) from None
        return Response({"runs": RunDetailSerializer(runs, many=True).data}, status=status.HTTP_201_CREATED)

    @extend_schema(request=RunUpdateSerializer, responses=RunDetailSerializer)
    def update(self, request, *args, **kwargs):
        run = self.get_object()
        data = RunUpdateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        services.run_report(run=run, user=request.user, **data.validated_data)
        return self._out(run.pk)

    partial_update = update

    @extend_schema(request=None, responses=RunDetailSerializer)
    @action(detail=True, methods=["post"], permission_classes=[has_perm(run_perms.CHANGE_RUN)])
    def cancel(self, request, pk=None):
        """Stop a queued run from starting, or a running one within a heartbeat."""
        run = services.run_cancel(run=self.get_object(), user=request.user)
        return self._out(run.pk)

    @extend_schema(request=None, responses={201: RunDetailSerializer})
    @action(detail=True, methods=["post"], permission_classes=[has_perm(run_perms.ADD_RUN)])
    def retry(self, request, pk=None):
        """A new run with the same inputs (`retry_of_id` points back)."""
        run = services.run_retry(run=self.get_object(), user=request.user)
        return self._out(run.pk, status.HTTP_201_CREATED)

    @extend_schema(
        parameters=[OpenApiParameter("after", int, description="Only lines with seq greater than this")],
        responses=RunLogSerializer(many=True),
    )
    @action(detail=True, methods=["get"])
    def logs(self, request, pk=None):
        """Log lines in order; `?after=<seq>` for incremental reads while the run goes."""
        run = self.get_object()
        after = request.query_params.get("after", "0")
        if not after.isdigit():
            raise field_error("after", "must be a non-negative integer")
        lines = run.logs.filter(seq__gt=int(after)).order_by("seq")[:LOG_PAGE]
        data = RunLogSerializer(lines, many=True).data
        return Response(
            {
                "run_id": run.id,
                "status": run.status,
                "lines": data,
                "last_seq": data[-1]["seq"] if data else int(after),
            }
        )

    @extend_schema(responses=RunMetricsSerializer)
    @action(detail=True, methods=["get"], url_path="metrics")
    def metric_keys(self, request, pk=None):
        """The run's metrics, one per key: its latest value (the highest step's, then the
        latest timestamp's, as MLflow keeps it) and how many points its history has."""
        run = _run_for_metrics(request.user, pk)
        counts = (
            MetricPoint.objects.filter(run_id=run.pk, key=OuterRef("key"))
            .order_by()
            .values("key")
            .annotate(n=Count("id"))
            .values("n")
        )
        rows = (
            RunMetric.objects.filter(run_id=run.pk)
            .annotate(points=Subquery(counts))
            .order_by("key")
            .values_list("key", "value", "is_nan", "step", "timestamp", "points")
        )
        metrics = [
            {
                "key": key,
                "value": history.finite(value),
                "is_nan": is_nan,
                "step": step,
                "timestamp": timestamp,
                "points": points or 0,
            }
            for key, value, is_nan, step, timestamp, points in rows
        ]
        return Response({"run_id": run.pk, "metrics": metrics})

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "key",
                str,
                OpenApiParameter.PATH,
                description="The metric's key, e.g. `valid.l2` (URL-encoded; it may contain `/`).",
            ),
            OpenApiParameter(
                "max_points",
                int,
                description=f"At most this many points ({history.MIN_MAX_POINTS}–{history.MAX_MAX_POINTS}, "
                f"default {history.DEFAULT_MAX_POINTS}): a longer history is downsampled for plots.",
            ),
            OpenApiParameter(
                "format",
                str,
                enum=["json", "csv"],
                description="`csv`: the full history as a CSV download (`key,step,value,timestamp`), "
                "never downsampled.",
            ),
        ],
        responses={(200, "application/json"): MetricHistorySerializer, (200, "text/csv"): OpenApiTypes.STR},
    )
    @action(
        detail=True,
        methods=["get"],
        url_path=r"metrics/(?P<key>.+)/history",
        renderer_classes=[*api_settings.DEFAULT_RENDERER_CLASSES, CSVRenderer],
    )
    def metric_history(self, request, pk=None, key=None):
        """One metric's history in (step, timestamp) order: downsampled to `max_points` for a
        plot (the first, the last, and each bucket's minimum and maximum, so spikes stay), or
        all of it as CSV with `?format=csv`."""
        run = _run_for_metrics(request.user, pk)
        # The order of the index (run, key, step, timestamp): read without a sort (an extra
        # "id" tie-break made PostgreSQL sort 100k rows on disk, twice the time).
        points = MetricPoint.objects.filter(run_id=run.pk, key=key).order_by("step", "timestamp")
        missing = NotFound(
            f"Run '{run.pk}' has no metric '{key}'.",
            [{"path": "/key", "message": "the run has no metric of this key"}],
        )
        if request.accepted_renderer.format == "csv":
            if not points.exists():
                raise missing
            rows = points.values_list("step", "value", "is_nan", "timestamp").iterator(chunk_size=20_000)
            response = StreamingHttpResponse(
                history.csv_chunks(key, rows), content_type="text/csv; charset=utf-8"
            )
            name = slugify(key.replace("/", "-").replace(".", "-")) or "metric"
            response["Content-Disposition"] = f'attachment; filename="{run.pk}-{name}.csv"'
            return response
        try:
            max_points = history.parse_max_points(request.query_params.get("max_points"))
        except ValueError as exc:
            raise field_error("max_points", str(exc)) from None
        rows = list(points.values_list("step", "value", "timestamp"))
        if not rows:
            raise missing
        shown = history.downsample(rows, max_points)
        return Response(
            {
                "run_id": run.pk,
                "key": key,
                "points": [{"step": s, "value": v, "timestamp": t} for s, v, t in shown],
                "total": len(rows),
                "downsampled": len(shown) < len(rows),
            }
        )

    # Any listed name, with its folders (`model/model.json`): only names recorded in the
    # run's artifacts_json are served, and a name leaving the run's folder (`../`) is refused
    # before the store is asked (mlworkspace.storage.clean_name).
    @action(detail=True, methods=["get"], url_path=r"artifacts/(?P<name>.+?)")
    def artifact(self, request, pk=None, name=None):
        """Download one artifact by the name `artifacts_json` lists it under, e.g.
        `predictions.csv` or `model/model.json` (its sha256 is verified first)."""
        run = self.get_object()
        return artifacts.download(run.id, run.artifacts_json, name, filename=name.rsplit("/", 1)[-1])


class DatasetViewSet(
    mixins.ListModelMixin,
    mixins.RetrieveModelMixin,
    mixins.CreateModelMixin,
    mixins.DestroyModelMixin,
    viewsets.GenericViewSet,
):
    """Uploaded datasets (CSV or Parquet), with their columns and a validation report
    against a recipe's requirements. `DELETE` removes an unused dataset (409 while runs
    or monitoring snapshots use it)."""

    serializer_class = DatasetSerializer
    filterset_class = DatasetFilter
    parser_classes = [MultiPartParser, FormParser]
    ordering = ["-created_at", "-id"]
    ordering_fields = ["created_at", "name", "row_count"]
    lookup_value_regex = "[^/]+"

    def get_queryset(self):
        return Dataset.objects.visible_to(self.request.user).select_related("recipe", "created_by")

    @extend_schema(request=DatasetUploadSerializer, responses={201: DatasetSerializer})
    def create(self, request, *args, **kwargs):
        length = int(request.META.get("CONTENT_LENGTH") or 0)
        if length > settings.DATASET_MAX_BYTES + 1024 * 1024:
            raise TooLarge(
                f"The upload is {length} bytes; the limit is {settings.DATASET_MAX_BYTES}.",
                [{"path": "/file", "message": "too large"}],
            )
        data = DatasetUploadSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        recipe = lookup(Recipe.objects.visible_to(request.user), "recipe_id", v.get("recipe_id"))
        client = access.client_for_write(request.user, v.get("client_id"))
        if client is not None and recipe is not None and recipe.client_id not in (None, client.pk):
            raise field_error("client_id", "the recipe belongs to another client")
        # Uploaded against a client recipe, the data is that client's.
        client = client or (recipe.client if recipe is not None else None)
        access.check_write(request.user, client or recipe, run_perms.ADD_DATASET)
        dataset = services.dataset_create(
            user=request.user,
            upload=v["file"],
            name=v.get("name"),
            recipe=recipe,
            client=client,
            purpose=v["purpose"],
        )
        return Response(DatasetSerializer(dataset).data, status=status.HTTP_201_CREATED)

    @extend_schema(request=DatasetPurposeSerializer, responses=DatasetSerializer)
    @action(
        detail=True,
        methods=["post"],
        parser_classes=[JSONParser, FormParser],
        permission_classes=[has_perm(run_perms.CHANGE_DATASET)],
    )
    def purpose(self, request, pk=None):
        """Mark the dataset as its recipe's scoring input (`{"purpose": "scoring"}`: the
        recipe's batch-mode production model scores it once, at one of its next scheduled
        slots, the newest marked dataset first) or back as training data (`"training"`)."""
        dataset = self.get_object()
        data = DatasetPurposeSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        dataset = services.dataset_set_purpose(
            dataset=dataset, user=request.user, purpose=data.validated_data["purpose"]
        )
        return Response(DatasetSerializer(self.get_queryset().get(pk=dataset.pk)).data)

    @extend_schema(responses={204: None})
    def destroy(self, request, *args, **kwargs):
        services.dataset_delete(dataset=self.get_object(), user=request.user)
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(responses={(200, "application/octet-stream"): bytes})
    @action(detail=True, methods=["get"])
    def download(self, request, pk=None):
        """The uploaded file, checked against its sha256 and streamed (files are served only
        here, never from /media/)."""
        dataset = self.get_object()
        return dataset_files.download(dataset)
