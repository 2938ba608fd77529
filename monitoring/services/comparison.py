"""Comparing models of one recipe on the same labelled window (issue #14 §4).

``models_compare`` evaluates every model with its family's own prepare + evaluate on one
frame, puts paired bootstrap intervals over the grain around every metric and around each
model's difference from the reference (``monitoring.comparison``, pure), measures each
model's input drift against its own training profile, keeps the family's plot data of each
(overlaid on the page by ``runs.plots.compare_figures``) and gives each challenger a verdict
(``monitoring.comparison.verdict``). The result is stored as a ``Comparison``.

The window, by default, is the newest labelled batch the reference was checked on (a window
of its synthetic world, or an uploaded dataset); a retrain compares on its held-out batch. A
dataset of more than COMPARE_MAX_ROWS rows is compared on a uniform sample of it, which the
result's ``window`` (in words) and ``sample`` say.
"""

from __future__ import annotations

from datetime import datetime
from functools import partial

import numpy as np
import pandas as pd
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, InvalidInput, field_error, lookup
from mlworkspace.ids import new_id
from models_registry.models import MLModel
from notifications.services import notify
from recipes.catalog import PRIMARY_METRIC, metric_direction
from runs import artifacts, dataset_files
from runs.data import sample_by
from runs.families import get_family, worlds
from runs.metrics import metric_checks
from runs.models import Dataset
from runs.selectors import model_training_batch
from runs.services import dataset_require_ready, synthetic_resolve

from .. import comparison as stats
from .. import drift as drift_lib
from ..models import Comparison, Retrain
from ..selectors import last_synthetic_batch

REPLICATES = 200
LEVEL = 0.95
MAX_MODELS = 5


def newest_labelled_batch(model: MLModel) -> dict | None:
    """The newest synthetic batch (in the model's world) it was checked or scored on, as
    recorded, with its concept and no shift (a comparison is on unshifted data); None if it
    has none. The query is the one the next check continues from (last_synthetic_batch)."""
    training = model_training_batch(model) or {}
    batch = last_synthetic_batch(model, int(training.get("seed") or 0), training=training)
    return batch | {"shift": {}} if batch else None


def comparison_frame(window: dict, family_name: str, manifest: dict) -> tuple[pd.DataFrame, str, dict | None]:
    """The labelled frame of a recorded window, its description in words, and the sample it is
    (``{"rows", "of", "by"}``), None when it is every row. A dataset of more than
    COMPARE_MAX_ROWS rows is read as a uniform sample of about that many, chunk by chunk (whole
    series when the family samples by series: `manifest`'s grain), as a train run reads one."""
    family = get_family(family_name)
    if window.get("dataset_id"):
        dataset = Dataset.objects.get(pk=window["dataset_id"])
        by = sample_by(family_name, manifest)
        try:
            frame, total = dataset_files.read_sample(dataset, max_rows=settings.COMPARE_MAX_ROWS, by=by)
        except ValueError as exc:  # e.g. a dataset without the grain a series sample keeps whole
            raise field_error(
                "dataset_id", f"dataset '{dataset.name}' cannot be compared on: {exc}"
            ) from None
        if total <= settings.COMPARE_MAX_ROWS:  # read_sample read every row
            return frame, f"dataset '{dataset.name}'", None
        unit = f" of whole series by {', '.join(by)}" if by else ""
        described = f"dataset '{dataset.name}' (a uniform sample{unit}: {len(frame):,} of its {total:,} rows)"
        return frame, described, {"rows": int(len(frame)), "of": int(total), "by": by}
    return worlds.generate(family, window), worlds.describe(family, window), None


def _window(reference: MLModel, *, dataset_id=None, synthetic=None, user=None) -> dict:
    """The window a request names (a dataset, a synthetic batch of the reference's world) or,
    by default, the newest labelled batch the reference was checked on."""
    if dataset_id is not None:
        visible = Dataset.objects.visible_to(user) if user is not None else Dataset.objects.all()
        dataset = lookup(visible, "dataset_id", dataset_id)
        dataset_require_ready(dataset, "dataset_id")
        if dataset.recipe_id not in (None, reference.recipe_id):
            raise field_error("dataset_id", f"'{dataset.pk}' was uploaded for another recipe")
        return {"dataset_id": dataset.pk, "name": dataset.name}
    if synthetic is not None:
        resolved = synthetic_resolve(
            family_name=reference.recipe.model_family,
            synthetic=synthetic,
            after=model_training_batch(reference),
        )
        if resolved.get("shift"):
            raise field_error("synthetic/shift", "a comparison is on unshifted data")
        return resolved
    window = newest_labelled_batch(reference)
    if window is None:
        raise Conflict(
            f"'{reference.name}' has not been checked on labelled data yet: give a dataset_id or a "
            "synthetic window to compare on.",
            [{"path": "/dataset_id", "message": "no labelled batch to default to"}],
        )
    return window


def _check_models(models: list[MLModel]) -> None:
    if len(models) < 2:
        raise field_error("challenger_id", "name at least one other model to compare with")
    if len(models) > MAX_MODELS:
        raise field_error("challenger_ids", f"at most {MAX_MODELS - 1} challengers at once")
    if len({m.pk for m in models}) < len(models):
        raise field_error("challenger_id", "a model cannot be compared with itself")
    reference = models[0]
    for model in models[1:]:
        if model.recipe_id != reference.recipe_id:
            raise field_error("challenger_id", f"'{model.pk}' is a model of another recipe")
    for model in models:
        if not model.artifacts_json.get("model"):
            raise field_error("challenger_id", f"'{model.name}' has no trained artifact yet")


def _evaluate(model: MLModel, frame: pd.DataFrame) -> tuple[pd.DataFrame, dict, dict]:
    """(predictions, plots, drift summary) of `model` on `frame`."""
    manifest = model.recipe_version.manifest
    family = get_family(model.recipe.model_family)
    fitted, _schema = artifacts.load_model(model)
    try:
        prepared = family.prepare(frame, manifest, log=lambda message: None)
        _metrics, predictions, plots = family.evaluate(fitted, prepared, manifest)
    except ValueError as exc:
        raise InvalidInput(
            f"'{model.name}' cannot be evaluated on this window: {exc}",
            [{"path": "/", "message": str(exc)}],
        ) from None
    drift_config = (manifest.get("monitoring") or {}).get("drift") or {}
    drift = {}
    if drift_config.get("features") and model.training_run_id:
        profile = artifacts.read_json_artifact(model.training_run_id, model.artifacts_json, "profile.json")
        report = drift_lib.drift_report(
            profile,
            frame,
            method=drift_config.get("method", "PSI"),
            threshold=float(drift_config.get("threshold", 0.2)),
            features=[f for f in drift_config["features"] if f in frame.columns],
        )
        drift = {k: report.get(k) for k in ("method", "threshold", "max_psi", "max_ks", "drifted_features")}
    return predictions, plots, drift


def compare_models(models: list[MLModel], frame: pd.DataFrame) -> dict:
    """The comparison's result (plain JSON): every model evaluated on `frame` (see the module
    docstring); the first model is the reference."""
    reference = models[0]
    family_name = reference.recipe.model_family
    family = get_family(family_name)
    manifest = reference.recipe_version.manifest
    evaluated = {m.pk: _evaluate(m, frame) for m in models}
    boot = stats.paired_bootstrap(
        {pk: predictions for pk, (predictions, _plots, _drift) in evaluated.items()},
        partial(family.prediction_metrics, manifest=manifest),
        family.BOOTSTRAP_GROUPS,
        constant=family.CONSTANT_METRICS,
        columns=getattr(family, "METRIC_COLUMNS", None),
        n=REPLICATES,
        level=LEVEL,
    )
    metric = PRIMARY_METRIC.get(family_name)
    direction = metric_direction(family_name, metric) if metric else None
    rows = []
    for model in models:
        values = boot["models"][model.pk]
        checks = metric_checks(
            manifest, family_name, {k: v["value"] for k, v in values.items() if v["value"] is not None}
        )
        rows.append(
            {
                "id": model.pk,
                "name": model.name,
                "status": model.status,
                "role": model.role,
                "metrics": {
                    k: v | {"status": (checks.get(k) or {}).get("status")} for k, v in values.items()
                },
                "critical": sorted(k for k, c in checks.items() if c.get("status") == "critical"),
                "drift": evaluated[model.pk][2],
            }
        )
    verdicts = {
        row["id"]: stats.verdict(
            metric=metric,
            direction=direction,
            difference=boot["difference"][row["id"]].get(metric),
            critical=row["critical"],
            level=LEVEL,
        )
        for row in rows[1:]
    }
    return {
        "rows": int(len(frame)),
        "groups": boot["groups"],
        "replicates": boot["replicates"],
        "level": LEVEL,
        "metric": metric,
        "direction": direction,
        "models": rows,
        "difference": boot["difference"],
        "verdicts": verdicts,
        "plots": {pk: _plain(plots) for pk, (_p, plots, _d) in evaluated.items()},
    }


def _plain(value):
    """Plot data as strict JSON (numpy scalars and arrays to Python, non-finite to None)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, (np.floating, float)):
        return float(value) if np.isfinite(value) else None
    if isinstance(value, np.integer):
        return int(value)
    if isinstance(value, (pd.Timestamp, datetime)):
        return value.isoformat()
    return value


@transaction.atomic
def models_compare(
    *,
    models: list[MLModel],
    user=None,
    dataset_id: str | None = None,
    synthetic: dict | None = None,
    window: dict | None = None,
    retrain: Retrain | None = None,
    at: datetime | None = None,
) -> Comparison:
    """Compare `models` (the reference first) on one labelled window and store the result.
    `window`: an already recorded window (a retrain's held-out batch); otherwise `dataset_id`,
    `synthetic` or the reference's newest labelled batch. Bad input is a 400 naming the field."""
    _check_models(models)
    reference = models[0]
    window = window or _window(reference, dataset_id=dataset_id, synthetic=synthetic, user=user)
    manifest = reference.recipe_version.manifest
    frame, described, sample = comparison_frame(window, reference.recipe.model_family, manifest)
    result = compare_models(models, frame) | {"window": described, "sample": sample}
    first = models[1]
    summary = result["verdicts"][first.pk]["summary"]
    comparison = Comparison.objects.create(
        id=new_id("cmp"),
        recipe_id=reference.recipe_id,
        reference=reference,
        model_ids_json=[m.pk for m in models],
        window_json=window,
        result_json=result,
        summary=f"{first.name}: {summary}",
        retrain=retrain,
        created_by=user,
        created_at=at or timezone.now(),
    )
    notify(
        "comparison.verdict",
        recipe=reference.recipe,
        payload={
            "summary": f"Comparison with {reference.name}: {comparison.summary}",
            "comparison_id": comparison.pk,
            "reference_id": reference.pk,
            "challenger_ids": [m.pk for m in models[1:]],
            "primary_metric": result["metric"],
            "verdicts": {pk: v["verdict"] for pk, v in result["verdicts"].items()},
        },
        at=at,
    )
    audit.record(
        user,
        "model.compare",
        reference,
        detail={"comparison_id": comparison.pk, "models": comparison.model_ids_json},
        at=at,
    )
    return comparison
