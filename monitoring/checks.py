"""A monitoring check: drift, performance and freshness of a batch against a production model."""

from __future__ import annotations

import numpy as np
import pandas as pd
from django.utils import timezone

from mlworkspace.errors import Conflict, field_error, lookup
from mlworkspace.metrics import timed_check
from runs import artifacts
from runs.data import read_table, time_column
from runs.families import get_family, worlds
from runs.models import Dataset
from runs.services import dataset_require_ready, model_training_batch, synthetic_resolve

from . import drift as drift_lib
from .models import MonitorSnapshot
from .services import snapshot_record


def last_synthetic_batch(model, seed: int | None = None, *, training: dict | None = None) -> dict | None:
    """The newest synthetic batch checked for ``model`` in the world of ``seed`` (default:
    the world it was trained in: ``training``, its training batch, if the caller has it),
    as its snapshot recorded it — the next check continues after it."""
    training = training if training is not None else model_training_batch(model)
    if seed is None:
        if training is None:
            return None
        seed = int(training.get("seed") or 0)
    recent = (
        MonitorSnapshot.objects.filter(model=model, data_freshness_json__has_key="batch")
        .order_by("-captured_at", "-id")
        .values_list("data_freshness_json", flat=True)[:50]
    )
    for details in recent:
        batch = (details or {}).get("batch") or {}
        if batch.get("source") == "synthetic" and batch.get("seed") == seed and batch.get("window"):
            return {k: batch[k] for k in ("rows", "seed", "world", "window")}
    return None


def synthetic_batch(model, synthetic: dict | None) -> dict:
    """Resolve a check's synthetic request: by default the next window of the model's world,
    after the last batch checked (or, the first time, after its training data)."""
    synthetic = dict(synthetic or {})
    after = last_synthetic_batch(model, synthetic.get("seed"))
    if after is None:
        after = model_training_batch(model)
    return synthetic_resolve(family_name=model.recipe.model_family, synthetic=synthetic, after=after)


def _batch(
    model, *, dataset_id=None, synthetic=None, profile=None
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


def _freshness(frame: pd.DataFrame, manifest: dict, family: str, real_times: bool, now) -> dict:
    config = (manifest.get("monitoring") or {}).get("freshness") or {}
    features = config.get("features") or []
    max_age = config.get("max_age_hours")
    if not features:
        return {}
    column = time_column(frame, family)
    out = {"max_age_hours": max_age, "features": {}}
    if column is None:
        return out
    times = pd.to_datetime(frame[column], errors="coerce", utc=True)
    if not real_times and times.notna().any():
        times = times + (pd.Timestamp(now) - times.max())
    for feature in features:
        if feature == column:
            mask = times.notna()
        elif feature in frame.columns:
            mask = times.notna() & frame[feature].notna()
        else:
            out["features"][feature] = {
                "newest": None,
                "age_hours": None,
                "stale": None,
                "error": "missing column",
            }
            continue
        newest = times[mask].max() if mask.any() else None
        if newest is None or pd.isna(newest):
            out["features"][feature] = {"newest": None, "age_hours": None, "stale": True}
            continue
        age = (pd.Timestamp(now) - newest).total_seconds() / 3600
        out["features"][feature] = {
            "newest": newest.isoformat(),
            "age_hours": round(age, 3),
            "stale": bool(max_age is not None and age > max_age),
        }
    ages = [f["age_hours"] for f in out["features"].values() if f.get("age_hours") is not None]
    out["max_age_hours_observed"] = max(ages) if ages else None
    return out


@timed_check  # /metrics: mlworkspace_monitoring_check_duration_seconds{family, source}
def run_check(*, model, source: str = "check", dataset_id=None, synthetic=None, captured_at=None):
    """Compute and store a snapshot for `model` on a batch; alert rules are evaluated.

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
    if scoring_error is None and labels and all(label in frame.columns for label in labels):
        prepared = family.prepare(frame, manifest, log=lambda message: None)
        metrics, _predictions, _plots = family.evaluate(fitted, prepared, manifest)
        performance = {
            k: float(v) for k, v in metrics.items() if isinstance(v, (int, float)) and np.isfinite(v)
        }
    captured_at = captured_at or timezone.now()
    freshness = _freshness(frame, manifest, family_name, real_times, captured_at)
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
