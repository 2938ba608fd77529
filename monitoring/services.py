"""Writes on monitoring: check a model on a batch, record a snapshot (posted or computed) and
keep alert episodes."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import pandas as pd
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, InvalidInput, field_error, lookup
from mlworkspace.ids import new_id
from mlworkspace.metrics import timed_check
from models_registry.models import MLModel
from recipes.manifest import grain_columns
from runs import artifacts
from runs.data import read_table
from runs.families import get_family, worlds
from runs.models import Dataset, DatasetStatus, RunType
from runs.selectors import model_training_batch
from runs.services import dataset_require_ready, run_start, synthetic_resolve

from . import drift as drift_lib
from . import rules
from .freshness import batch_freshness
from .models import Alert, AlertState, MonitorSnapshot, ScoringBatch
from .selectors import PREDICTIONS_PARQUET, last_scored_batch, last_synthetic_batch


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
    for name, result in evaluated.items():
        current = open_alerts.get(name)
        if result.get("firing"):
            if current is None:
                Alert.objects.create(
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
    return snapshot


# --------------------------------------------------------------------------- a check


def synthetic_batch(model: MLModel, synthetic: dict | None) -> dict:
    """Resolve a check's synthetic request: by default the next window of the model's world,
    after the last batch checked (or, the first time, after its training data)."""
    synthetic = dict(synthetic or {})
    after = last_synthetic_batch(model, synthetic.get("seed"))
    if after is None:
        after = model_training_batch(model)
    return synthetic_resolve(family_name=model.recipe.model_family, synthetic=synthetic, after=after)


def _batch(
    model: MLModel, *, dataset_id=None, synthetic=None, profile=None
) -> tuple[pd.DataFrame, Dataset | None, dict]:
    """The batch to check and what it is: ``{"source": "dataset", ...}`` or the resolved
    synthetic batch (whose timestamps are moved so its newest row is 'now')."""
    family = get_family(model.recipe.model_family)
    if dataset_id is not None:
        dataset = lookup(Dataset, "dataset_id", dataset_id)
        dataset_require_ready(dataset, "dataset_id")  # still being profiled, or invalid: a 400
        frame = read_table(dataset.file.path, dataset.format)
        return frame, dataset, {"source": "dataset", "dataset_id": dataset.pk, "name": dataset.name}
    resolved = synthetic_batch(model, synthetic)
    frame = worlds.generate(family, resolved)
    shift = resolved["shift"]
    unknown = [name for name in shift if name not in frame.columns]
    if unknown:
        raise field_error("synthetic/shift", f"unknown column '{unknown[0]}'")
    if shift:
        frame = drift_lib.shift_batch(frame, shift, profile, resolved["seed"])
    description = worlds.describe(family, resolved)
    return frame, None, {"source": "synthetic", **resolved, "description": description}


@timed_check  # /metrics: mlworkspace_monitoring_check_duration_seconds{family, source}
def model_check(
    *,
    model: MLModel,
    source: str = "check",
    dataset_id: str | None = None,
    synthetic: dict | None = None,
    captured_at: datetime | None = None,
    with_performance: bool = True,
) -> MonitorSnapshot:
    """Compute and store a snapshot for `model` on a batch (an uploaded dataset, or a
    synthetic batch of its world); alert rules are evaluated (snapshot_record).

    `with_performance=False` (the check of a scored batch) leaves performance out even when
    the batch carries labels: a scored batch's performance comes from its outcomes.

    `captured_at` (default now) also anchors synthetic batches' timestamps: backfilling a
    history (seed_demo) checks each batch as of its own time."""
    if not model.training_run_id or not model.artifacts_json.get("model"):
        raise Conflict(f"Model '{model.id}' has no trained artifact yet; train it before checking it.")
    manifest = model.recipe_version.manifest
    family_name = model.recipe.model_family
    family = get_family(family_name)
    run_id, run_artifacts = model.training_run_id, model.artifacts_json
    profile = artifacts.read_json_artifact(run_id, run_artifacts, "profile.json")
    frame, dataset, batch = _batch(model, dataset_id=dataset_id, synthetic=synthetic, profile=profile)
    real_times = batch["source"] == "dataset"
    fitted, _schema = artifacts.load_model(model)
    drift_config = (manifest.get("monitoring") or {}).get("drift") or {}
    # Feature drift and freshness need only the data. Scoring can legitimately fail on a
    # batch (a forecaster only scores periods after its history): then the snapshot says so
    # and carries no prediction drift or performance, instead of failing the whole check.
    scoring_error = None
    try:
        prediction = np.asarray(family.predict(fitted, frame), dtype=float)
    except ValueError as exc:
        prediction, scoring_error = None, f"the model cannot score this batch: {exc}"
    drift = {}
    if drift_config.get("features"):
        drift = drift_lib.drift_report(
            profile,
            frame,
            method=drift_config.get("method", "PSI"),
            threshold=float(drift_config.get("threshold", 0.2)),
            features=list(drift_config["features"]),
            prediction=prediction,
        )
    if scoring_error and drift:
        drift["prediction"] = {"error": scoring_error, "drifted": False}
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
    freshness = batch_freshness(frame, manifest, family_name, real_times=real_times, now=captured_at)
    freshness["batch"] = batch  # which world and window (or dataset) the batch came from
    return snapshot_record(
        model=model,
        performance=performance,
        drift=drift,
        freshness=freshness,
        source=source,
        dataset=dataset,
        row_count=len(frame),
        captured_at=captured_at,
    )


# --------------------------------------------------------------------------- batch scoring


def scoring_batch_key(batch: dict) -> str:
    """The window key of a batch: ``dataset:<id>`` or ``synthetic:<start>:<periods>``."""
    if batch.get("dataset_id"):
        return f"dataset:{batch['dataset_id']}"
    window = batch["window"]
    return f"synthetic:{window['start']}:{window['periods']}"


def scoring_next_batch(model: MLModel, *, rows: int) -> tuple[Dataset | None, dict]:
    """What a batch-mode model scores next: the newest ready dataset uploaded for its recipe
    if this model has not scored it yet, else the next window of its synthetic world (after
    its last scored or checked window, or the first time after its training data)."""
    dataset = (
        Dataset.objects.filter(recipe_id=model.recipe_id, status=DatasetStatus.READY)
        .order_by("-created_at", "-id")
        .first()
    )
    if (
        dataset is not None
        and not ScoringBatch.objects.filter(
            model=model, window_key=scoring_batch_key({"dataset_id": dataset.pk})
        ).exists()
    ):
        return dataset, {"dataset_id": dataset.pk}
    # The world moves forward: after the newest window scored or checked, else the training data.
    training = model_training_batch(model)
    family = get_family(model.recipe.model_family)
    seen = [
        b for b in (last_scored_batch(model, training), last_synthetic_batch(model, training=training)) if b
    ]
    after = max(seen, key=lambda b: worlds.span(family, b["window"])[0], default=training)
    return None, synthetic_resolve(family_name=family.NAME, synthetic={"rows": rows}, after=after)


@transaction.atomic
def scoring_start(
    *, model: MLModel, scheduled_for: datetime, dataset: Dataset | None = None, batch: dict
) -> ScoringBatch:
    """Create a scoring batch and its score run together (the run is enqueued for a worker
    on commit). Raises IntegrityError when the model already has a batch for this window
    (another worker scored it): then nothing is written."""
    run = run_start(
        user=None,
        recipe=model.recipe,
        recipe_version=model.recipe_version,
        run_type=RunType.SCORE,
        model=model,
        dataset=dataset,
        params={} if dataset is not None else {"synthetic": batch},
    )
    scoring = ScoringBatch.objects.create(
        id=new_id("batch"),
        model=model,
        run=run,
        window_key=scoring_batch_key(batch),
        batch_json=batch if dataset is None else {"dataset_id": dataset.pk},
        scheduled_for=scheduled_for,
    )
    audit.record(
        None,
        "monitoring.scoring_start",
        model,
        detail={"batch_id": scoring.pk, "run_id": run.pk, "window": scoring.window_key},
    )
    return scoring


def scoring_claim_check(batch: ScoringBatch, now: datetime) -> bool:
    """Claim a scored batch's check (one worker wins the conditional update)."""
    return bool(
        ScoringBatch.objects.filter(pk=batch.pk, check_started_at__isnull=True, snapshot__isnull=True).update(
            check_started_at=now
        )
    )


def scoring_check(*, batch: ScoringBatch, captured_at: datetime | None = None) -> MonitorSnapshot:
    """Check the batch a score run scored (drift + freshness of that same data; performance
    comes later, from outcomes) and link the snapshot to the batch. `captured_at`: as in
    model_check (the demo dates its history)."""
    data = batch.batch_json or {}
    source = {"dataset_id": data["dataset_id"]} if data.get("dataset_id") else {"synthetic": data}
    snapshot = model_check(
        model=batch.model, source="scheduled", captured_at=captured_at, with_performance=False, **source
    )
    ScoringBatch.objects.filter(pk=batch.pk).update(snapshot=snapshot)
    batch.snapshot = snapshot
    return snapshot


# --------------------------------------------------------------------------- outcomes

UNMATCHED_SHOWN = 5


def _outcome_keys(rows: list, grain: list[str], labels: list[str]) -> pd.DataFrame:
    """The posted rows as a frame of grain keys and labels; a row missing one is a 400
    naming ``/rows/<i>/<field>``, a key posted twice one naming its second row."""
    for i, row in enumerate(rows):
        if not isinstance(row, dict):
            raise field_error(f"rows/{i}", "must be an object of grain keys and labels")
        for name in grain:
            if row.get(name) in (None, ""):
                raise field_error(f"rows/{i}/{name}", "is required (a grain key of the recipe)")
            if isinstance(row[name], (dict, list)):
                raise field_error(f"rows/{i}/{name}", "must be a string or a number")
        for name in labels:
            value = row.get(name)
            if value is None:
                raise field_error(f"rows/{i}/{name}", "is required (the outcome to score against)")
            if isinstance(value, bool):
                value = int(value)
            if not isinstance(value, (int, float)) or not np.isfinite(value):
                raise field_error(f"rows/{i}/{name}", "must be a finite number")
    return pd.DataFrame(
        [{name: row[name] for name in grain} | {name: float(row[name]) for name in labels} for row in rows]
    )


def _align_keys(outcomes: pd.DataFrame, predictions: pd.DataFrame, grain: list[str]) -> pd.DataFrame:
    """The outcome keys converted to the predictions' column types, so they join; a key
    that cannot be read as its column's type is a 400 naming its row."""
    outcomes = outcomes.copy()
    for name in grain:
        target = predictions[name]
        if pd.api.types.is_datetime64_any_dtype(target):
            converted = pd.to_datetime(outcomes[name], errors="coerce")
            if target.dt.tz is None and getattr(converted.dt, "tz", None) is not None:
                converted = converted.dt.tz_localize(None)
            kind = "a date"
        elif pd.api.types.is_numeric_dtype(target) and not pd.api.types.is_bool_dtype(target):
            converted = pd.to_numeric(outcomes[name], errors="coerce")
            kind = "a number"
        else:
            outcomes[name] = outcomes[name].astype(str)
            continue
        bad = converted.isna()
        if bad.any():
            i = int(np.flatnonzero(bad.to_numpy())[0])
            raise field_error(f"rows/{i}/{name}", f"must be {kind} like the scored batch's '{name}'")
        outcomes[name] = converted.astype(target.dtype)
    duplicated = outcomes.duplicated(subset=grain)
    if duplicated.any():
        i = int(np.flatnonzero(duplicated.to_numpy())[0])
        raise field_error(f"rows/{i}", "the same grain keys as an earlier row")
    return outcomes


def _json_key(values: dict) -> dict:
    return {
        k: (v.isoformat() if hasattr(v, "isoformat") else v.item() if hasattr(v, "item") else v)
        for k, v in values.items()
    }


def scoring_outcomes(*, batch: ScoringBatch, rows: list, user=None) -> dict:
    """Join posted outcomes (grain keys + labels) to a scored batch's predictions, compute
    the manifest's metrics on the matched rows with the family's own prepare + evaluate,
    and store them on the batch. Keys the batch did not score are counted and the first
    few reported, never silently dropped."""
    model = batch.model
    manifest = _manifest(model)
    grain = grain_columns(manifest)
    labels = list((manifest.get("requirements") or {}).get("labels") or [])
    if not grain or not labels:
        raise Conflict(
            f"Recipe '{model.recipe_id}' declares no grain or no labels; outcomes cannot be joined."
        )
    outcomes = _outcome_keys(rows, grain, labels)
    run = batch.run
    path = artifacts.verified_path(run.pk, run.artifacts_json, PREDICTIONS_PARQUET)
    predictions = pd.read_parquet(path)
    missing = [name for name in grain if name not in predictions.columns]
    if missing:
        raise Conflict(f"The predictions of batch '{batch.pk}' have no grain column '{missing[0]}'.")
    outcomes = _align_keys(outcomes, predictions, grain)
    scored = (run.artifacts_json.get("scoring") or {}).get("prediction_columns") or []
    inputs = predictions.drop(columns=[c for c in [*scored, *labels] if c in predictions.columns])
    joined = inputs.merge(outcomes, on=grain, how="inner", validate="many_to_one")
    keys = outcomes[grain].merge(inputs[grain].drop_duplicates(), on=grain, how="left", indicator=True)
    unmatched = keys[keys["_merge"] == "left_only"][grain]
    if joined.empty:
        raise InvalidInput(
            f"None of the {len(outcomes)} rows matches a prediction of batch '{batch.pk}'.",
            [{"path": "/rows", "message": f"no row's {', '.join(grain)} was scored in this batch"}],
        )
    family = get_family(model.recipe.model_family)
    fitted, _schema = artifacts.load_model(model)
    try:
        prepared = family.prepare(joined, manifest, log=lambda message: None)
        metrics, _predictions, _plots = family.evaluate(fitted, prepared, manifest)
    except ValueError as exc:
        raise InvalidInput(
            f"The matched rows cannot be evaluated: {exc}", [{"path": "/rows", "message": str(exc)}]
        ) from None
    performance = {k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)}
    now = timezone.now()
    with transaction.atomic():
        ScoringBatch.objects.filter(pk=batch.pk).update(
            performance_json=performance,
            outcome_rows=len(joined),
            unmatched_rows=len(unmatched),
            outcomes_at=now,
        )
        audit.record(
            user,
            "monitoring.outcomes",
            model,
            detail={"batch_id": batch.pk, "matched": len(joined), "unmatched": len(unmatched)},
        )
    batch.performance_json, batch.outcome_rows, batch.unmatched_rows, batch.outcomes_at = (
        performance,
        len(joined),
        len(unmatched),
        now,
    )
    return {
        "batch_id": batch.pk,
        "model_id": model.pk,
        "window_key": batch.window_key,
        "outcome_rows": len(joined),
        "unmatched_rows": len(unmatched),
        "unmatched_keys": [_json_key(r) for r in unmatched.head(UNMATCHED_SHOWN).to_dict("records")],
        "performance": performance,
        "outcomes_at": now,
    }
