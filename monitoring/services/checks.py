"""A monitoring check: compute a snapshot of a model on a batch (an uploaded dataset or a
window of its synthetic world), record it and keep the alert episodes.

A dataset of more than CHECK_STREAM_ROWS rows is not loaded: it is read in chunks of
CHECK_CHUNK_ROWS rows (`scan_table`, only the columns feature drift and freshness need), which
feed accumulators whose results equal the in-memory ones (monitoring.drift.DriftStream,
monitoring.freshness.FreshnessStream); the model predicts (and is evaluated on) the first
CHECK_SAMPLE_ROWS rows only, which the snapshot says.

A model whose train run explained it (explanations.json with ``attribution.mean_abs``) also
gets attribution drift: a seeded sample of at most monitoring.attribution.CHECK_EXPLAIN_ROWS
of the rows it predicted -- as many of them as CHECK_EXPLAIN_SECONDS allow -- is explained
(runs.explain) and compared with the training explanation, stored under the snapshot's
``drift_metrics_json["explain"]`` (alert names ``explain.rank_change``,
``explain.<feature>.share``). A batch that cannot be explained keeps its snapshot, without
them."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Protocol

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, field_error, lookup
from mlworkspace.ids import new_id
from mlworkspace.metrics import timed_check
from models_registry.models import MLModel
from models_registry.selectors import model_explanations
from notifications.services import notify
from runs import artifacts, dataset_files
from runs import explain as explain_lib
from runs.data import model_input, read_chunks, read_first_rows, table_columns
from runs.families import get_family, worlds
from runs.models import Dataset
from runs.selectors import model_training_batch
from runs.services import dataset_require_ready, synthetic_resolve

from .. import attribution, rules
from .. import drift as drift_lib
from ..freshness import FreshnessStream
from ..models import Alert, AlertState, MonitorSnapshot
from ..selectors import last_synthetic_batch
from .retraining import retrain_after_snapshot

logger = logging.getLogger(__name__)


def _manifest(model: MLModel) -> dict:
    return model.recipe_version.manifest or {}


@transaction.atomic
def snapshot_record(
    *,
    model: MLModel,
    performance: dict | None = None,
    drift: dict | None = None,
    freshness: dict | None = None,
    external_alerts: dict | None = None,
    captured_at: datetime | None = None,
    source: str = "external",
    dataset=None,
    row_count: int | None = None,
) -> MonitorSnapshot:
    """Store a snapshot and evaluate the manifest's alert rules against it.

    Each rule that fires opens an alert (or keeps the open one); a rule that no longer fires
    resolves its open alert. Alerts posted by an external system are kept as they were sent,
    under "external".
    """
    captured_at = captured_at or timezone.now()
    manifest = _manifest(model)
    alert_rules = ((manifest.get("monitoring") or {}).get("alerts")) or {}
    context = rules.snapshot_context(performance or {}, drift or {}, freshness or {})
    evaluated = rules.evaluate_alerts(alert_rules, context)
    alerts_json = dict(evaluated)
    if external_alerts:
        alerts_json["external"] = external_alerts
    snapshot = MonitorSnapshot.objects.create(
        id=new_id("snap"),
        model=model,
        captured_at=captured_at,
        performance_metrics_json=performance or {},
        drift_metrics_json=drift or {},
        data_freshness_json=freshness or {},
        alerts_json=alerts_json,
        source=source,
        dataset=dataset,
        row_count=row_count,
    )
    open_alerts = {
        a.name: a for a in Alert.objects.select_for_update().filter(model=model, state=AlertState.FIRING)
    }
    opened = []
    for name, result in evaluated.items():
        current = open_alerts.get(name)
        if result.get("firing"):
            if current is None:
                opened.append(name)
                alert = Alert.objects.create(
                    model=model,
                    name=name,
                    severity=result.get("severity", "warning"),
                    condition=result.get("condition", ""),
                    state=AlertState.FIRING,
                    fired_at=captured_at,
                    last_values_json=result.get("values", {}),
                    first_snapshot=snapshot,
                    last_snapshot=snapshot,
                )
                _notify_alert("alert.opened", model, alert, snapshot)
            else:
                current.last_snapshot = snapshot
                current.last_values_json = result.get("values", {})
                current.save(update_fields=["last_snapshot", "last_values_json"])
        elif result.get("firing") is False and current is not None:
            # None (unknown: a name the snapshot lacks) keeps the alert as it is.
            current.state = AlertState.RESOLVED
            current.resolved_at = captured_at
            current.last_snapshot = snapshot
            current.save(update_fields=["state", "resolved_at", "last_snapshot"])
            _notify_alert("alert.resolved", model, current, snapshot)
    # Rules removed from the manifest no longer watch anything: close their episodes.
    for name, current in open_alerts.items():
        if name not in evaluated:
            current.state = AlertState.RESOLVED
            current.resolved_at = captured_at
            current.save(update_fields=["state", "resolved_at"])
    MLModel.objects.filter(pk=model.pk).update(last_check_at=captured_at)
    firing = sorted(name for name, result in evaluated.items() if result.get("firing"))
    audit.record(
        None,
        "monitoring.check",
        model,
        detail={"snapshot_id": snapshot.id, "source": source, "firing": firing},
    )
    # The retraining policy acts as the check completes: an alert it opened, enough new rows.
    retrain_after_snapshot(model=model, snapshot=snapshot, opened=opened)
    return snapshot


def _notify_alert(event: str, model: MLModel, alert: Alert, snapshot: MonitorSnapshot) -> None:
    """Webhooks and e-mail subscribers of the recipe hear that an alert opened or resolved."""
    verb = "opened" if event == "alert.opened" else "resolved"
    notify(
        event,
        recipe=model.recipe,
        payload={
            "summary": f"{alert.severity} alert {alert.name} {verb} on {model.name}",
            "model_id": model.pk,
            "model_name": model.name,
            "alert_id": alert.pk,
            "alert": alert.name,
            "severity": alert.severity,
            "condition": alert.condition,
            "values": alert.last_values_json,
            "snapshot_id": snapshot.pk,
            "fired_at": alert.fired_at,
            "resolved_at": alert.resolved_at,
        },
        at=snapshot.captured_at,
    )


# --------------------------------------------------------------------------- a check


def synthetic_batch(model: MLModel, synthetic: dict | None) -> dict:
    """Resolve a check's synthetic request: by default the next window of the model's world,
    after the last batch checked (or, the first time, after its training data)."""
    synthetic = dict(synthetic or {})
    after = last_synthetic_batch(model, synthetic.get("seed"))
    if after is None:
        after = model_training_batch(model)
    return synthetic_resolve(family_name=model.recipe.model_family, synthetic=synthetic, after=after)


class Accumulator(Protocol):
    """What a chunked read feeds: DriftStream, FreshnessStream."""

    def columns(self, available: list[str]) -> list[str]: ...

    def add(self, chunk: pd.DataFrame) -> None: ...


def scan_table(path: Path, fmt: str, *, feed: Sequence[Accumulator], chunk_rows: int) -> int:
    """Read the table once in chunks of `chunk_rows` rows, only the columns the accumulators in
    `feed` need, and add every chunk to each of them; returns the table's rows. The monitoring
    check of a large dataset and bench/bench_scale.py's drift part both read through this."""
    available = table_columns(path, fmt)
    columns = list(dict.fromkeys(c for acc in feed for c in acc.columns(available)))
    rows = 0
    # With nothing to read, one column still counts the rows.
    for chunk in read_chunks(path, fmt, columns=columns or available[:1], chunk_rows=chunk_rows):
        for acc in feed:
            acc.add(chunk)
        rows += len(chunk)
    return rows


def _batch(
    model: MLModel, *, dataset_id=None, synthetic=None, profile=None, feed: Sequence[Accumulator] = ()
) -> tuple[pd.DataFrame, Dataset | None, dict, int]:
    """The batch to check, added to the accumulators in `feed` (feature drift, freshness):
    (the rows the model predicts, the dataset, what the batch is, the batch's rows).

    What it is: ``{"source": "dataset", ...}`` or the resolved synthetic batch (whose
    timestamps are moved so its newest row is 'now'). A dataset of more than
    CHECK_STREAM_ROWS rows is read in chunks: every row feeds the accumulators, the model
    predicts the first CHECK_SAMPLE_ROWS (``"streamed": true, "sample_rows": n``)."""
    family = get_family(model.recipe.model_family)
    if dataset_id is not None:
        dataset = lookup(Dataset, "dataset_id", dataset_id)
        dataset_require_ready(dataset, "dataset_id")  # still being profiled, or invalid: a 400
        batch = {"source": "dataset", "dataset_id": dataset.pk, "name": dataset.name}
        if dataset.row_count > settings.CHECK_STREAM_ROWS:
            with dataset_files.local_copy(dataset) as path:
                rows = scan_table(path, dataset.format, feed=feed, chunk_rows=settings.CHECK_CHUNK_ROWS)
                first = read_first_rows(
                    path, dataset.format, settings.CHECK_SAMPLE_ROWS, chunk_rows=settings.CHECK_CHUNK_ROWS
                )
            return first, dataset, {**batch, "streamed": True, "sample_rows": len(first)}, rows
        frame = dataset_files.read_frame(dataset)
    else:
        dataset = None
        resolved = synthetic_batch(model, synthetic)
        frame = worlds.generate(family, resolved, model.recipe_version.manifest)
        shift = resolved["shift"]
        unknown = [name for name in shift if name not in frame.columns]
        if unknown:
            raise field_error("synthetic/shift", f"unknown column '{unknown[0]}'")
        if shift:
            frame = drift_lib.shift_batch(frame, shift, profile, resolved["seed"])
        batch = {"source": "synthetic", **resolved, "description": worlds.describe(family, resolved)}
    for acc in feed:
        acc.add(frame)
    return frame, dataset, batch, len(frame)


def _attribution_drift(model: MLModel, family, fitted, schema: dict, frame: pd.DataFrame) -> dict | None:
    """The batch's attribution drift against the training explanation (the shape of
    monitoring.attribution.drift_entry), None when the model has no explanation to compare
    with, or ``{"error": ...}`` when the batch could not be explained.

    Explaining is an extra of the check: whatever goes wrong in it (rows without a column the
    model takes, values it cannot score, a damaged artifact) is logged and left out of the
    snapshot rather than losing the drift, freshness and performance the check did compute."""
    try:
        document = model_explanations(model)
        reference = attribution.reference_means(document)
        if reference is None:
            return None
        rows = model_input(attribution.sample_rows(frame, document), schema)
        background = artifacts.explanation_background(model)
        current, explained = attribution.chunked_means(
            lambda part: explain_lib.attribution_means(family, fitted, part, background),
            rows,
            budget_seconds=settings.CHECK_EXPLAIN_SECONDS,
            first=settings.CHECK_EXPLAIN_FIRST_ROWS,
        )
        if not current:
            return {
                "error": "none of the batch's rows could be explained (e.g. series the model does not know)"
            }
        metrics = explain_lib.attribution_drift(reference, current)
    except Exception as exc:  # noqa: BLE001 -- see the docstring: never sinks the check
        logger.warning("attribution drift of model %s left out: %r", model.pk, exc, exc_info=True)
        return {"error": f"the batch could not be explained: {type(exc).__name__}: {exc}"[:500]}
    return attribution.drift_entry(
        reference, current, metrics, document=document, rows=explained, sample_rows=len(rows)
    )


@timed_check  # /metrics: mlworkspace_monitoring_check_duration_seconds{family, source}
def model_check(
    *,
    model: MLModel,
    source: str = "check",
    dataset_id: str | None = None,
    synthetic: dict | None = None,
    captured_at: datetime | None = None,
    with_performance: bool = True,
    with_attribution: bool = True,
) -> MonitorSnapshot:
    """Compute and store a snapshot for `model` on a batch (an uploaded dataset, or a
    synthetic batch of its world); alert rules are evaluated (snapshot_record).

    `with_performance=False` (the check of a scored batch) leaves performance out even when
    the batch carries labels: a scored batch's performance comes from its outcomes.

    `with_attribution=False` skips the attribution drift (explaining the batch's sample costs
    up to about CHECK_EXPLAIN_SECONDS, more for a forecaster's first chunk of rows): for a
    caller that runs many checks in a row and does not need it.

    `captured_at` (default now) also anchors synthetic batches' timestamps: backfilling a
    history (seed_demo) checks each batch as of its own time."""
    if not model.training_run_id or not model.artifacts_json.get("model"):
        raise Conflict(f"Model '{model.id}' has no trained artifact yet; train it before checking it.")
    manifest = model.recipe_version.manifest
    family_name = model.recipe.model_family
    family = get_family(family_name)
    run_id, run_artifacts = model.training_run_id, model.artifacts_json
    profile = artifacts.read_json_artifact(run_id, run_artifacts, "profile.json")
    drift_config = (manifest.get("monitoring") or {}).get("drift") or {}
    stream = None
    if drift_config.get("features"):
        stream = drift_lib.DriftStream(
            profile,
            method=drift_config.get("method", "PSI"),
            threshold=float(drift_config.get("threshold", 0.2)),
            features=list(drift_config["features"]),
        )
    freshness_stream = FreshnessStream(manifest, family_name)
    feed = [acc for acc in (stream, freshness_stream) if acc is not None]
    frame, dataset, batch, rows = _batch(
        model, dataset_id=dataset_id, synthetic=synthetic, profile=profile, feed=feed
    )
    real_times = batch["source"] == "dataset"
    fitted, schema = artifacts.load_model(model)
    # Feature drift and freshness need only the data. Scoring can legitimately fail on a
    # batch (a forecaster only scores periods after its history): then the snapshot says so
    # and carries no prediction drift or performance, instead of failing the whole check.
    # `frame` is the whole batch, or a streamed batch's first rows (batch["sample_rows"]).
    scoring_error = None
    try:
        prediction = np.asarray(family.predict(fitted, frame), dtype=float)
    except ValueError as exc:
        prediction, scoring_error = None, f"the model cannot score this batch: {exc}"
    drift = stream.report(prediction) if stream is not None else {}
    if scoring_error and drift:
        drift["prediction"] = {"error": scoring_error, "drifted": False}
    # Attribution drift, on (a sample of) the rows the model predicted; not on rows it
    # cannot score, which it cannot explain either.
    if with_attribution and scoring_error is None:
        explained = _attribution_drift(model, family, fitted, schema, frame)
        if explained is not None:
            drift["explain"] = explained
    performance = {}
    labels = (manifest.get("requirements") or {}).get("labels") or []
    if (
        with_performance
        and scoring_error is None
        and labels
        and all(label in frame.columns for label in labels)
    ):
        prepared = family.prepare(frame, manifest, log=lambda message: None)
        metrics, _predictions, _plots = family.evaluate(fitted, prepared, manifest)
        performance = {
            k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)
        }
    captured_at = captured_at or timezone.now()
    freshness = freshness_stream.report(real_times=real_times, now=captured_at)
    freshness["batch"] = batch  # which world and window (or dataset) the batch came from
    return snapshot_record(
        model=model,
        performance=performance,
        drift=drift,
        freshness=freshness,
        source=source,
        dataset=dataset,
        row_count=rows,
        captured_at=captured_at,
    )
