import json
import re

from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.db.models import Func, TextField
from django.db.models.functions import Cast
from django.http import HttpResponse
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from mlworkspace.errors import lookup
from mlworkspace.permissions import ModelPermissions
from models_registry.models import MLModel
from monitoring import perms as monitoring_perms
from recipes import access
from runs.models import Dataset

from . import services
from .models import Alert, MonitorSnapshot
from .serializers import AlertSerializer, CheckSerializer, SnapshotCreateSerializer, SnapshotQuerySerializer

SAFE_TOKEN = re.compile(r"[A-Za-z0-9_\-]+")
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


def series_json(model_id: str, snapshots, alerts: list) -> str:
    """The series as JSON text. The database returns every column as text (JSON documents,
    ISO timestamps) and the rows are spliced into the response as they are: a 10k-point
    series never round-trips 40k documents through json.loads/dumps."""
    rows = snapshots.annotate(
        captured_at_text=IsoUtc("captured_at"), **{f"{f}_text": Cast(f, TextField()) for f in JSON_FIELDS}
    ).values_list("id", "captured_at_text", "source", "row_count", *(f"{f}_text" for f in JSON_FIELDS))
    sql, params = rows.query.sql_with_params()
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        fetched = cursor.fetchall()
    parts = []
    for sid, when, source, row_count, perf, drift, fresh, alerts_text in fetched:
        # ids are generated (prefix_ulid) and source is a choice: safe to quote without escaping.
        sid = f'"{sid}"' if SAFE_TOKEN.fullmatch(sid) else json.dumps(sid)
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
