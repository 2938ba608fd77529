import json
from json.encoder import encode_basestring_ascii

from django.conf import settings
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import Func, TextField
from django.db.models.functions import Cast
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.generics import ListAPIView
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from mlworkspace.errors import InvalidInput, NotFound, field_error, lookup
from mlworkspace.permissions import ModelPermissions
from models_registry import perms as models_perms
from models_registry.models import MLModel
from monitoring import perms as monitoring_perms
from recipes import access
from runs import artifacts
from runs import perms as runs_perms
from runs.models import Dataset, RunStatus

from . import selectors, services
from .models import Alert, Comparison, MonitorSnapshot, Retrain, RetrainTrigger, ScoringBatch
from .serializers import (
    AlertSerializer,
    CheckSerializer,
    CompareSerializer,
    ComparisonSerializer,
    OutcomesResultSerializer,
    OutcomesSerializer,
    PredictionsQuerySerializer,
    RetrainSerializer,
    ScoringBatchSerializer,
    SnapshotCreateSerializer,
    SnapshotQuerySerializer,
)

JSON_FIELDS = ["performance_metrics_json", "drift_metrics_json", "data_freshness_json", "alerts_json"]


class IsoUtc(Func):
    """A UTC timestamp as ISO-8601 text, formatted by the database (no per-row Python)."""

    output_field = TextField()

    def as_sqlite(self, compiler, connection, **extra):
        # Django stores UTC datetimes as 'YYYY-MM-DD HH:MM:SS[.ffffff]' text.
        return self.as_sql(
            compiler, connection, template="(replace(%(expressions)s, ' ', 'T') || 'Z')", **extra
        )

    def as_postgresql(self, compiler, connection, **extra):
        template = "to_char(%(expressions)s AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')"
        return self.as_sql(compiler, connection, template=template, **extra)


# Rows read from the cursor at a time: each chunk's text is spliced while it is fresh in the
# CPU's cache. One fetchall() of a 10k-point series made all 80k strings first and then walked
# them, which cost measurably more CPU (bench/README.md §1).
SERIES_CHUNK = 1000


def series_json(model_id: str, snapshots, alerts: list) -> str:
    """The series as JSON text. The database returns every column as text (JSON documents,
    ISO timestamps) and the rows are spliced into the response as they are: a 10k-point
    series never round-trips 40k documents through json.loads/dumps."""
    rows = snapshots.annotate(
        captured_at_text=IsoUtc("captured_at"), **{f"{f}_text": Cast(f, TextField()) for f in JSON_FIELDS}
    ).values_list("id", "captured_at_text", "source", "row_count", *(f"{f}_text" for f in JSON_FIELDS))
    sql, params = rows.query.sql_with_params()
    parts = []
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        while chunk := cursor.fetchmany(SERIES_CHUNK):
            for sid, when, source, row_count, perf, drift, fresh, alerts_text in chunk:
                # The id quoted as json.dumps quotes it, without its per-call overhead; source is
                # a choice (a database constraint) and the timestamp ISO text: nothing to escape.
                sid = encode_basestring_ascii(sid)
                count = "null" if row_count is None else int(row_count)
                parts.append(
                    f'{{"id":{sid},"captured_at":"{when}","source":"{source}","row_count":{count},'
                    f'"performance_metrics_json":{perf},"drift_metrics_json":{drift},'
                    f'"data_freshness_json":{fresh},"alerts_json":{alerts_text}}}'
                )
    parts.reverse()  # fetched newest first (for the limit), returned oldest first
    return (
        f'{{"model_id":{json.dumps(model_id)},"count":{len(parts)},"snapshots":[{",".join(parts)}],'
        f'"alerts":{json.dumps(alerts, cls=DjangoJSONEncoder)}}}'
    )


def _visible_model(request, model_id: str, *related: str) -> MLModel:
    """The model a monitoring endpoint is about, scoped by the one access rule
    (MLModel.objects.visible_to): another client's model is a 404 on every endpoint, so its
    id's existence is not confirmed. ``related``: what the endpoint reads of it."""
    models = MLModel.objects.visible_to(request.user)
    if related:  # (select_related() with no names would follow every foreign key)
        models = models.select_related(*related)
    return get_object_or_404(models, pk=model_id)


def created_response(model: MLModel, snapshot: MonitorSnapshot) -> Response:
    """201 with the stored snapshot, in the same shape as a point of the series."""
    values = MonitorSnapshot.objects.filter(pk=snapshot.pk).values(*MonitorSnapshot.SERIES_FIELDS).get()
    values["captured_at"] = values["captured_at"].isoformat().replace("+00:00", "Z")
    return Response({"model_id": model.pk, **values}, status=status.HTTP_201_CREATED)


class ModelMonitoringView(APIView):
    """GET: the model's snapshots, time-ordered (`since`, `until`, `limit`), and its alerts.
    POST: record a snapshot from an external system; the manifest's alert rules are evaluated."""

    permission_classes = [ModelPermissions]
    queryset = MonitorSnapshot.objects.none()  # for ModelPermissions: POST needs add_monitorsnapshot

    @extend_schema(parameters=[SnapshotQuerySerializer], responses=None)
    def get(self, request, model_id):
        model = _visible_model(request, model_id)
        query = SnapshotQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        snapshots = MonitorSnapshot.objects.filter(model_id=model.pk)
        if "since" in q:
            snapshots = snapshots.filter(captured_at__gte=q["since"])
        if "until" in q:
            snapshots = snapshots.filter(captured_at__lte=q["until"])
        # The newest `limit` points, returned oldest first.
        newest = snapshots.order_by("-captured_at", "-id")[: q["limit"]]
        alerts = AlertSerializer(
            Alert.objects.filter(model_id=model.pk).order_by("-fired_at", "id")[:200], many=True
        )
        return HttpResponse(series_json(model.pk, newest, alerts.data), content_type="application/json")

    @extend_schema(request=SnapshotCreateSerializer, responses=None)
    def post(self, request, model_id):
        model = _visible_model(request, model_id, "recipe", "recipe_version")
        access.check_write(request.user, model, monitoring_perms.RUN_CHECK)
        data = SnapshotCreateSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        snapshot = services.snapshot_record(
            model=model,
            performance=v["performance_metrics_json"],
            drift=v["drift_metrics_json"],
            freshness=v["data_freshness_json"],
            external_alerts=v["alerts_json"],
            captured_at=v.get("captured_at"),
            source="external",
        )
        return created_response(model, snapshot)


class ModelMonitoringCheckView(APIView):
    """Compute drift, performance and freshness for a batch (`dataset_id` or `synthetic`)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=CheckSerializer, responses=None)
    def post(self, request, model_id):
        model = _visible_model(request, model_id, "recipe", "recipe_version", "training_run")
        access.check_write(request.user, model, monitoring_perms.RUN_CHECK)
        data = CheckSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        if "dataset_id" in data.validated_data:
            # Only data the user may see (another client's dataset id reads as unknown).
            lookup(Dataset.objects.visible_to(request.user), "dataset_id", data.validated_data["dataset_id"])
        snapshot = services.model_check(model=model, source="check", **data.validated_data)
        return created_response(model, snapshot)


def _scoring_batch(model: MLModel, *, batch_id: str | None = None, window: str | None = None) -> ScoringBatch:
    """The model's batch named by id or window key, else its newest scored one; a 404 that
    says which is missing."""
    batches = selectors.scoring_batches(model)
    if batch_id:
        batch = batches.filter(pk=batch_id).first()
        if batch is None:
            raise NotFound(f"Model '{model.pk}' has no scoring batch '{batch_id}'.")
    elif window:
        batch = batches.filter(window_key=window).first()
        if batch is None:
            raise NotFound(f"Model '{model.pk}' has no scoring batch for window '{window}'.")
    else:
        batch = selectors.latest_scored_batch(model)
        if batch is None:
            raise NotFound(f"Model '{model.pk}' has no scored batch yet.")
    if batch.run.status != RunStatus.SUCCEEDED:
        raise NotFound(
            f"Scoring batch '{batch.pk}' has no predictions: its score run '{batch.run_id}' is {batch.run.status}."
        )
    return batch


class ModelBatchesView(ListAPIView):
    """The model's scoring batches (batch-mode production models are scored on their
    manifest's schedule), newest first, paginated (`page`, `page_size`)."""

    permission_classes = [IsAuthenticated]
    serializer_class = ScoringBatchSerializer
    queryset = ScoringBatch.objects.none()  # for the schema; get_queryset scopes by model

    def get_queryset(self):
        model = _visible_model(self.request, self.kwargs["model_id"])
        return selectors.scoring_batches(model)


class FileFormatNegotiation(DefaultContentNegotiation):
    """`?format=` names the file to download here, not a DRF renderer: errors are JSON."""

    def select_renderer(self, request, renderers, format_suffix=None):
        return renderers[0], renderers[0].media_type


class ModelPredictionsView(APIView):
    """Download a scored batch's predictions (`batch` id or `window` key; default: the
    newest scored batch) as CSV or Parquet: the scored input columns and the prediction(s)."""

    permission_classes = [IsAuthenticated]
    content_negotiation_class = FileFormatNegotiation

    @extend_schema(
        parameters=[PredictionsQuerySerializer],
        responses={(200, "text/csv"): bytes, (200, "application/vnd.apache.parquet"): bytes},
    )
    def get(self, request, model_id):
        model = _visible_model(request, model_id)
        query = PredictionsQuerySerializer(data=request.query_params)
        query.is_valid(raise_exception=True)
        q = query.validated_data
        batch = _scoring_batch(model, batch_id=q.get("batch"), window=q.get("window"))
        name = selectors.PREDICTIONS_CSV if q["format"] == "csv" else selectors.PREDICTIONS_PARQUET
        return artifacts.download(
            batch.run_id,
            batch.run.artifacts_json,
            name,
            filename=f"{model.pk}-{batch.pk}-predictions.{q['format']}",
            content_type="text/csv" if q["format"] == "csv" else "application/vnd.apache.parquet",
        )


class ModelOutcomesView(APIView):
    """Labels that arrived after a batch was scored: `{"batch_id"?, "rows": [{<grain keys>,
    <label>: value}]}` joined to the batch's predictions; the manifest's metrics on the
    matched rows are stored on the batch. Unknown keys are counted and the first few named."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=OutcomesSerializer, responses={200: OutcomesResultSerializer})
    def post(self, request, model_id):
        model = _visible_model(request, model_id, "recipe", "recipe_version")
        access.check_write(request.user, model, monitoring_perms.RUN_CHECK)
        rows = request.data.get("rows") if isinstance(request.data, dict) else None
        limit = settings.OUTCOMES_MAX_ROWS
        if isinstance(rows, list) and len(rows) > limit:
            raise InvalidInput(
                f"At most {limit} rows per request; got {len(rows)}.",
                [{"path": "/rows", "message": f"more than {limit} rows"}],
            )
        data = OutcomesSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        batch_id = data.validated_data.get("batch_id")
        if batch_id and not ScoringBatch.objects.filter(model_id=model.pk, pk=batch_id).exists():
            raise field_error("batch_id", f"model '{model.pk}' has no scoring batch '{batch_id}'")
        batch = _scoring_batch(model, batch_id=batch_id)
        batch.model = model
        result = services.scoring_outcomes(batch=batch, rows=data.validated_data["rows"], user=request.user)
        return Response(OutcomesResultSerializer(result).data)


class ModelRetrainsView(ListAPIView):
    """GET: the model's retrains (as champion), newest first, paginated: every trigger, skip
    and decision with its reason. POST: retrain it now (a person's trigger: no cooldown);
    201 with the retrain, 409 saying why not (not in production, a retrain already training,
    no data to train or compare on)."""

    permission_classes = [IsAuthenticated]
    serializer_class = RetrainSerializer
    queryset = Retrain.objects.none()  # for the schema; get_queryset scopes by model

    def get_queryset(self):
        model = _visible_model(self.request, self.kwargs["model_id"])
        return selectors.model_retrains(model)

    @extend_schema(request=None, responses={201: RetrainSerializer})
    def post(self, request, model_id):
        model = _visible_model(request, model_id, "recipe", "recipe_version")
        access.check_write(request.user, model, runs_perms.ADD_RUN)
        access.check_write(request.user, model, models_perms.ADD_MODEL)
        retrain = services.retrain_trigger(champion=model, trigger=RetrainTrigger.MANUAL, user=request.user)
        return Response(RetrainSerializer(retrain).data, status=status.HTTP_201_CREATED)


class ModelCompareView(APIView):
    """Compare this model (the reference, e.g. the champion) with one or more models of its
    recipe on the same labelled window: by default the newest labelled batch it was checked
    on, or a `dataset_id`, or a `synthetic` window of its world. 201 with the comparison."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=CompareSerializer, responses={201: ComparisonSerializer})
    def post(self, request, model_id):
        model = _visible_model(request, model_id, "recipe", "recipe_version")
        access.check_write(request.user, model, monitoring_perms.RUN_CHECK)
        data = CompareSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        v = data.validated_data
        field = "challenger_ids" if v.get("challenger_ids") else "challenger_id"
        ids = v.get("challenger_ids") or [v["challenger_id"]]
        visible = MLModel.objects.visible_to(request.user).select_related("recipe", "recipe_version")
        challengers = [lookup(visible, field, i) for i in ids]
        comparison = services.models_compare(
            models=[model, *challengers],
            user=request.user,
            dataset_id=v.get("dataset_id"),
            synthetic=v.get("synthetic"),
        )
        return Response(ComparisonSerializer(comparison).data, status=status.HTTP_201_CREATED)


class ComparisonDetailView(APIView):
    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: ComparisonSerializer})
    def get(self, request, comparison_id):
        comparison = get_object_or_404(Comparison.objects.visible_to(request.user), pk=comparison_id)
        return Response(ComparisonSerializer(comparison).data)
