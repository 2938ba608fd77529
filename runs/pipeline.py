"""The pipeline executor: runs a manifest's `pipeline.stages` on data. Plain Python, no Django.

It runs in a child process of the worker (`child_main`), reporting through a pipe:
    ("log", level, message)              a log line
    ("stage", index, status, detail)     a stage started / succeeded / skipped / failed
    ("result", dict)                     the outcome (metrics, artifact kinds, plots)
    ("error", message)                   the run failed (message names the cause)
The worker turns these into rows; the child never touches the database.

spec = {
  "run_id", "run_type": "train"|"eval"|"backtest", "family", "manifest",
  "data": {"synthetic": {"rows", "seed"}} | {"path", "format"},
  "artifact_dir": str (this run's MEDIA_ROOT/artifacts/<run_id>),
  "model_dir": str | None (eval: the verified model directory of the evaluated model),
  "threads": int,
}
"""

from __future__ import annotations

import json
import os
import time
import traceback
from pathlib import Path

MODEL_SUBDIR = "model"


class StageFailed(Exception):
    """A stage's checks failed; the message is shown to the user as the run's error."""


def _limit_threads(threads: int) -> None:
    # Parallelism comes from worker processes: oversubscribed OpenMP threads spin instead
    # of working, so every numeric library gets the configured count (default 1).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(threads)


def child_main(spec: dict, conn) -> None:
    """Entry point of the run's child process."""
    _limit_threads(int(spec.get("threads", 1)))
    parent = os.getppid()

    def emit(*message):
        # A dead parent (worker killed) means nobody will record this run: stop.
        if os.getppid() != parent:
            os._exit(3)
        conn.send(message)

    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(int(spec.get("threads", 1))):
            result = execute(spec, emit)
        emit("result", result)
    except StageFailed as exc:
        emit("error", str(exc))
    except Exception as exc:  # any crash fails the run with its traceback in the logs
        emit("log", "error", traceback.format_exc()[-4000:])
        emit("error", f"{type(exc).__name__}: {exc}")
    finally:
        conn.close()


def load_data(spec: dict, family, emit):
    source = spec["data"]
    if "path" in source:
        from .data import read_table

        frame = read_table(Path(source["path"]), source["format"])
        emit(
            "log",
            "info",
            f"Loaded dataset {Path(source['path']).name}: {len(frame)} rows × {frame.shape[1]} columns",
        )
        return frame
    synthetic = source.get("synthetic") or {}
    rows = int(synthetic.get("rows") or family.DEFAULT_ROWS)
    seed = int(synthetic.get("seed") or 0)
    frame = family.generate(rows, seed)
    emit("log", "info", f"Generated synthetic {family.NAME} data: {len(frame)} rows (seed {seed})")
    return frame


def json_safe(value):
    """numpy scalars/arrays and NaN -> plain JSON values."""
    import math

    import numpy as np

    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return [json_safe(v) for v in value.tolist()]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating, float)):
        value = float(value)
        return None if math.isnan(value) or math.isinf(value) else value
    if isinstance(value, (np.bool_,)):
        return bool(value)
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def _input_columns(frame, family, manifest) -> list[dict]:
    """Columns a prediction request must carry: the schema's non-outcome columns present in
    the training frame (labels and treatment are outcomes, not inputs)."""
    from .data import dtype_name

    labels = set((manifest.get("requirements") or {}).get("labels") or [])
    roles = {c["name"]: c.get("role") for c in family.SCHEMA}
    out = []
    for col in frame.columns:
        if col in labels or roles.get(col) in ("label", "treatment"):
            continue
        if col in roles:
            out.append({"name": col, "dtype": dtype_name(frame[col])})
    return out


def execute(spec: dict, emit) -> dict:
    from .data import quality_errors, requirement_errors
    from .families import get_family
    from .metrics import metric_checks

    family = get_family(spec["family"])
    manifest = spec["manifest"]
    run_type = spec["run_type"]
    threads = int(spec.get("threads", 1))
    out_dir = Path(spec["artifact_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = manifest["pipeline"]["stages"]

    def log(message: str, level: str = "info"):
        emit("log", level, message)

    raw = load_data(spec, family, emit)
    frame = raw
    model = None
    result: dict = {"metrics": {}, "artifacts": {}, "plots": {}, "folds": []}
    split = None

    for index, stage in enumerate(stages):
        kind, name = stage["type"], stage["name"]
        emit("stage", index, "running", "")
        started = time.monotonic()
        if kind == "quality":
            from .data import describe_columns

            problems = requirement_errors(describe_columns(frame), manifest, family.NAME)
            problems += quality_errors(frame, manifest, family.NAME)
            if problems:
                for p in problems:
                    log(f"quality: {p}", "error")
                raise StageFailed(f"Data quality checks failed: {'; '.join(problems[:5])}")
            log(f"quality: {len(frame)} rows passed requirement, null, grain, range and history checks")
        elif kind == "feature_prep":
            frame = family.prepare(frame, manifest, log=log)
            log(f"feature_prep: {frame.shape[1]} columns after transforms")
        elif kind == "training":
            if run_type == "eval":
                model = family.load(Path(spec["model_dir"]))
                emit("stage", index, "skipped", "eval run: the registered model's artifact is used")
                log("training: skipped (evaluating the registered model's artifact)")
                continue
            if run_type == "backtest":
                emit("stage", index, "skipped", "backtest: models are fitted per fold in evaluation")
                log("training: deferred to the backtest folds")
                continue
            split = family.split(frame, manifest)
            train, test = split
            log(f"training: {len(train)} training rows, {len(test)} holdout rows")
            model = family.fit(train, manifest, threads=threads, log=log)
        elif kind == "evaluation":
            if run_type == "backtest":
                folds = family.folds(frame, manifest)
                fold_metrics = []
                for number, (train, test) in enumerate(folds, start=1):
                    fold_model = family.fit(train, manifest, threads=threads, log=log)
                    metrics, _, _ = family.evaluate(fold_model, test, manifest)
                    fold_metrics.append(json_safe(metrics))
                    log(
                        f"backtest fold {number}/{len(folds)}: "
                        + ", ".join(f"{k}={v:.4g}" for k, v in metrics.items() if isinstance(v, (int, float)))
                    )
                names = sorted({k for m in fold_metrics for k in m})
                mean = {}
                for k in names:
                    values = [m[k] for m in fold_metrics if isinstance(m.get(k), (int, float))]
                    if values:
                        mean[k] = sum(values) / len(values)
                result["metrics"] = mean
                result["folds"] = fold_metrics
                predictions, plots = None, {"folds": fold_metrics}
            else:
                if model is None:
                    raise StageFailed("The pipeline has no training stage before evaluation.")
                test = frame if run_type == "eval" else split[1]
                metrics, predictions, plots = family.evaluate(model, test, manifest)
                result["metrics"] = json_safe(metrics)
            result["plots"] = json_safe(plots)
            for metric, check in metric_checks(manifest, family.NAME, result["metrics"]).items():
                if check["status"] is None:
                    log(f"evaluation: {metric} = {check['value']:.4g}")
                    continue
                level = {"pass": "info", "warning": "warning", "critical": "error"}[check["status"]]
                target = check["meets_target"]
                note = (
                    ""
                    if target is None
                    else (" (meets target)" if target else f" (target {check['target']})")
                )
                log(f"evaluation: {metric} = {check['value']:.4g} → {check['status']}{note}", level)
            if predictions is not None:
                predictions.to_csv(out_dir / "predictions.csv", index=False)
                result["artifacts"]["predictions.csv"] = "predictions"
            (out_dir / "metrics.json").write_text(
                json.dumps({"metrics": result["metrics"], "folds": result["folds"]}, indent=2)
            )
            result["artifacts"]["metrics.json"] = "metrics"
        elif kind == "deployment":
            if run_type != "train":
                emit("stage", index, "skipped", f"{run_type} run: nothing to deploy")
                continue
            result["deploy"] = True
            log("deployment: the artifact will be attached to the run's model (if it has one)")
        else:  # the validator only admits the five types
            raise StageFailed(f"Unknown stage type '{kind}' in stage '{name}'")
        emit("stage", index, "succeeded", f"{time.monotonic() - started:.2f}s")

    if run_type == "train" and model is not None:
        model_dir = out_dir / MODEL_SUBDIR
        model_dir.mkdir(parents=True, exist_ok=True)
        for file_name in family.save(model, model_dir):
            result["artifacts"][f"{MODEL_SUBDIR}/{file_name}"] = "model"
        schema = {"family": family.NAME, "input_columns": _input_columns(raw, family, manifest)}
        (out_dir / "schema.json").write_text(json.dumps(schema, indent=2))
        result["artifacts"]["schema.json"] = "schema"
        profile = reference_profile(raw, family, model, manifest, split)
        if profile is not None:
            (out_dir / "profile.json").write_text(json.dumps(profile))
            result["artifacts"]["profile.json"] = "profile"
            log("monitoring: stored the reference profile of the training data")
    return json_safe(result)


def reference_profile(raw, family, model, manifest, split):
    """The compact profile drift checks compare against: the monitored features of the raw
    training rows, and the model's predictions on them."""
    drift = (manifest.get("monitoring") or {}).get("drift") or {}
    features = [f for f in drift.get("features") or [] if f in raw.columns]
    try:
        from monitoring.drift import build_profile
    except ImportError:
        return None
    if split is not None:
        train_index = split[0].index
        reference = raw.loc[raw.index.intersection(train_index)] if len(train_index) else raw
        if len(reference) == 0:
            reference = raw
    else:
        reference = raw
    sample = (
        reference.sample(n=min(len(reference), 50_000), random_state=0)
        if len(reference) > 50_000
        else reference
    )
    try:
        import numpy as np

        prediction = np.asarray(family.predict(model, sample), dtype=float)
    except Exception:
        prediction = None
    return build_profile(reference, features, prediction=prediction)
