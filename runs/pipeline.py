"""The pipeline executor: runs a manifest's `pipeline.stages` on data. Plain Python, no Django.

It runs in a child process of the worker (`child_main`), reporting through a pipe:
    ("log", level, message)              a log line
    ("stage", index, status, detail)     a stage started / succeeded / skipped / failed
    ("metrics", [{"key", "value", "step", "timestamp"}, ...])
                                         metric history points, batched (CurveRecorder):
                                         LightGBM training curves (train.<metric>,
                                         valid.<metric>, step = boosting iteration) and a
                                         backtest's fold metrics (fold.<metric>, step = fold)
    ("result", dict)                     the outcome (metrics, artifact kinds, plots)
    ("error", message)                   the run failed (message names the cause)
The worker turns these into rows; the child never touches the database.

spec = {
  "run_id", "run_type": "train"|"eval"|"backtest"|"score", "family", "manifest",
  "data": {"synthetic": {"rows", "seed", "world", "window", "concept"}} | {"path", "format", "max_rows"}
      (max_rows: a train/eval/backtest/tune run reads a sample of a larger file; none for a score run;
       a score run's "stream_rows", "chunk_rows" and "name": a file of more than stream_rows rows
       is scored chunk_rows at a time, see score_batch and runs.score_stream; name is the
       dataset's, for messages),
          (the synthetic batch as resolved by runs.families.worlds.resolve at run creation)
  "artifact_dir": str (a local folder of this run's: its files are stored when it ends),
  "model_dir": str | None (eval, score: the verified model directory of the run's model),
  "model_schema": dict | None (score: the model's schema.json, its input columns),
  "threads": int,
  "explain_caps": dict (optional: upper bounds on the explain stage's sizes, settings.EXPLAIN_CAPS),
  "explain_background": str | None (score: the model's explanation_background.parquet, fetched when
      the deployment stage asks for contribution columns, "explain": true; runs.explain.batch),
  "dask_scheduler_address": str (optional: settings.DASK_SCHEDULER_ADDRESS, for a train run whose
      training stage says distributed: "dask"; runs.distributed),
}
"""

from __future__ import annotations

import json
import os
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from pathlib import Path

from mlworkspace.csvsafe import write_csv
from mlworkspace.redact import default_roots, redact_paths
from monitoring.drift import build_profile
from recipes import explain_config
from recipes.manifest import grain_columns

from . import distributed
from .data import (
    dataset_problems,
    describe_columns,
    dtype_name,
    model_input,
    outcome_columns,
    read_sample,
    read_table,
    requirement_errors,
    sample_by,
    time_column,
)
from .explain import explain_model
from .explain.batch import ScoreContributions
from .families import get_family, worlds
from .history import CurveRecorder, curve_kwargs, fold_points
from .jsonsafe import json_safe  # also imported from here by runs.artifacts, runs.tuning, ...
from .metrics import metric_checks
from .score_stream import ChunkReadError, PredictionWriter, StreamPlan, stream_quality
from .score_stream import plan as stream_plan

MODEL_SUBDIR = "model"
# A score run predicts its batch this many rows at a time (an entity's rows kept together),
# so a family's intermediate arrays stay bounded however large the batch. A family may set its
# own SCORE_CHUNK_ROWS (forecasting does: a call costs it a fixed amount per forecast period).
SCORE_CHUNK_ROWS = 100_000


class StageFailed(Exception):
    """A stage's checks failed; the message is shown to the user as the run's error."""


# --- failures in words ----------------------------------------------------------------
# A failed run shows one line a data scientist can act on: what was wrong with which data
# and what to do. The traceback stays in the run's raw log.

# Quality problems (runs.data messages) -> what to do about them.
_QUALITY_ADVICE = (
    ("is missing", "add the missing column to the dataset (or pick a recipe that does not need it)"),
    ("nulls", "fill or drop the empty values (or raise the quality stage's max_null_ratio)"),
    ("duplicate rows", "remove the duplicate rows on the grain"),
    ("values below", "fix or drop the out-of-range values"),
    ("values above", "fix or drop the out-of-range values"),
    ("min_history", "use a longer history (more rows or dates) or lower requirements.min_history"),
)


def quality_failure(problems: list[str]) -> str:
    """One line for a failed quality stage: the first problems, then what to do."""
    shown = "; ".join(problems[:3])
    more = f" (and {len(problems) - 3} more in the log)" if len(problems) > 3 else ""
    advice = list(dict.fromkeys(a for key, a in _QUALITY_ADVICE for p in problems if key in p))
    todo = "; ".join(advice) if advice else "fix the data"
    return f"The data failed the quality checks: {shown}{more}. To fix: {todo}, then run again."


def _columns_with_gaps(frame) -> list[str]:
    """Numeric columns holding NaN or ±inf, with counts ("promo (60 empty)")."""
    if frame is None:
        return []
    import numpy as np

    out = []
    for col in frame.columns:
        values = frame[col]
        if values.dtype.kind not in "fc":
            continue
        bad = int((~np.isfinite(values.to_numpy(dtype=float))).sum())
        if bad:
            out.append(f"'{col}' ({bad} empty or infinite)")
    return out


def _text_columns(frame) -> list[str]:
    """Columns read as text although some of their values are numbers ("1.5", "n/a")."""
    if frame is None:
        return []
    import pandas as pd

    out = []
    for col in frame.columns:
        if frame[col].dtype != object:
            continue
        numbers = pd.to_numeric(frame[col], errors="coerce")
        if numbers.notna().mean() >= 0.5:  # mostly numbers: a numeric column with stray text
            bad = frame[col][numbers.isna() & frame[col].notna()]
            example = f", e.g. '{bad.iloc[0]}'" if len(bad) else ""
            out.append(f"'{col}'{example}")
    return out


def explain_failure(exc: BaseException, stage: dict | None = None, frame=None, run_type=None) -> str:
    """A crash of a family's code -> "<stage>: <what was wrong with the data> — <what to do>".

    Matches the common causes (a missing column, too little data, empty or non-numeric
    values, series or categories the model never saw, evaluation periods inside the
    training history, memory); anything else keeps the exception's first line.
    """
    import re

    text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    lowered = text.lower()
    where = f"Stage '{stage['name']}' ({stage['type']})" if stage else "The run"
    run = run_type or "run"

    def say(what: str, todo: str) -> str:
        return f"{where} failed: {what} — {todo}."

    if isinstance(exc, MemoryError):
        return say("the worker ran out of memory", "use fewer rows or a worker with more memory")
    if isinstance(exc, KeyError):
        column = exc.args[0] if exc.args else text
        return say(
            f"the data has no column '{column}'",
            "add it to the dataset, or use data with the recipe's schema (synthetic data has it)",
        )
    missing = re.search(r"missing (?:feature )?column(?:\(s\))?:? ?'?([\w, ]+)'?", text)
    if missing:
        return say(
            f"the data has no column {missing.group(1).strip()!r}",
            "add it to the dataset, or use data with the recipe's schema (synthetic data has it)",
        )
    if "after the model's history" in lowered:
        return say(
            f"the evaluation data overlaps the model's training period ({text})",
            "evaluate on dates after the training data (the next window of its world)",
        )
    if (
        "unknown series" in lowered
        or "not in the model's training data" in lowered
        or ("series the model was trained on" in lowered)
    ):
        return say(
            f"the data holds series the model was never trained on ({text})",
            "evaluate on the model's own series, or retrain on data that includes the new ones",
        )
    if "categor" in lowered and ("unseen" in lowered or "unknown" in lowered or "match" in lowered):
        return say(
            f"the data has categories the model never saw ({text})",
            "map them to known categories, or retrain on data that includes them",
        )
    too_little = (
        "not enough history",
        "empty train or test",
        "train or the test set empty",
        "cannot make",
        "folds are empty",
        "no non-empty folds",
        "need at least",
        "no test rows",
        "at least 2 rows",
        "fewer than",
        "too few",
    )
    if any(p in lowered for p in too_little):
        return say(
            f"too little data for this {run} ({text})",
            "use more rows or a longer history, or lower the recipe's validation folds / test_size",
        )
    texts = _text_columns(frame)
    if texts and ("convert" in lowered or "could not" in lowered or "dtype" in lowered or "str" in lowered):
        return say(
            f"column {', '.join(texts[:3])} holds text where numbers are expected",
            "clean those values (or drop the rows) and upload the data again",
        )
    nan_words = ("nan", "infinity", "non-finite", "out of range float", "missing values")
    if any(w in lowered for w in nan_words):
        gaps = _columns_with_gaps(frame)
        what = (
            f"column {', '.join(gaps[:3])} has values the model cannot use"
            if gaps
            else f"the model produced empty or infinite numbers ({text})"
        )
        return say(what, "fill or drop the empty values (or lower the quality stage's max_null_ratio)")
    if texts:
        return say(
            f"column {', '.join(texts[:3])} holds text where numbers are expected ({text})",
            "clean those values (or drop the rows) and upload the data again",
        )
    return say(f"{type(exc).__name__}: {text}", "the raw log has the traceback")


def limit_threads(threads: int) -> None:
    # Parallelism comes from worker processes: oversubscribed OpenMP threads spin instead
    # of working, so every numeric library gets the configured count (default 1).
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "NUMEXPR_NUM_THREADS"):
        os.environ[var] = str(threads)


def server_roots(spec: dict) -> tuple[str, ...]:
    """The folders a run's messages must not show: the run's scratch folders (the artifact
    folder's parent and grandparent), the dataset's and model's folders, and the server's
    usual ones."""
    artifact_dir = Path(spec.get("artifact_dir") or ".")
    extra = [artifact_dir.parent, artifact_dir.parent.parent]
    if "path" in (spec.get("data") or {}):
        extra.append(Path(spec["data"]["path"]).parent)
    if spec.get("model_dir"):
        extra.append(Path(spec["model_dir"]).parent)
    return default_roots(*extra)


def child_main(spec: dict, conn) -> None:
    """Entry point of the run's child process."""
    # Out of the worker's process group: a signal sent to the whole group (Ctrl-C in its
    # terminal, `kill -TERM -<pgid>`) is the worker's to act on — the first drains this run,
    # a second stops the worker — rather than killing the run under it. Not SIG_IGN: the
    # worker's terminate() (cancel, a run reaped meanwhile) must still stop this process.
    os.setpgrp()
    limit_threads(int(spec.get("threads", 1)))
    parent = os.getppid()
    roots = server_roots(spec)

    def emit(*message):
        # A dead parent (worker killed) means nobody will record this run: stop.
        if os.getppid() != parent:
            os._exit(3)
        if message[0] != "result":  # logs and errors are shown to users: no server paths
            message = tuple(redact_paths(m, roots) if isinstance(m, str) else m for m in message)
        conn.send(message)

    try:
        from threadpoolctl import threadpool_limits

        with threadpool_limits(int(spec.get("threads", 1))):
            result = execute(spec, emit)
        emit("result", result)
    except StageFailed as exc:
        if exc.__cause__ is not None:  # an explained crash: its traceback goes to the raw log
            cause = exc.__cause__
            emit("log", "error", "".join(traceback.format_exception(cause))[-4000:])
        emit("error", str(exc))
    except Exception as exc:  # any crash fails the run with its traceback in the logs
        emit("log", "error", traceback.format_exc()[-4000:])
        emit("error", explain_failure(exc))
    finally:
        conn.close()


def load_data(spec: dict, family, emit):
    source = spec["data"]
    if "path" in source:
        path, name = Path(source["path"]), Path(source["path"]).name
        if not source.get("max_rows"):  # a score run scores every row
            frame = read_table(path, source["format"])
            emit("log", "info", f"Loaded dataset {name}: {len(frame)} rows × {frame.shape[1]} columns")
            return frame
        by = sample_by(family.NAME, spec["manifest"])
        frame, total = read_sample(path, source["format"], max_rows=int(source["max_rows"]), by=by)
        if len(frame) < total and distributed.wanted(spec, family):
            emit(
                "log",
                "info",
                f"Dataset {name} has {total:,} rows: a uniform sample of {len(frame):,} (TRAIN_MAX_ROWS) is "
                "checked and evaluated here; every row trains on the Dask cluster (training stage).",
            )
        elif len(frame) < total:
            unit = f"whole series (by {', '.join(by)})" if by else "rows"
            emit(
                "log",
                "warning",
                f"Dataset {name} has {total:,} rows, more than TRAIN_MAX_ROWS ({int(source['max_rows']):,}): "
                f"trained on a uniform sample of {unit}, {len(frame):,} rows × {frame.shape[1]} columns.",
            )
        else:
            emit("log", "info", f"Loaded dataset {name}: {len(frame)} rows × {frame.shape[1]} columns")
        return frame
    # Runs created since worlds exist carry their resolved batch; older ones ({"rows",
    # "seed"}) resolve to the same first window of their world here.
    resolved = worlds.resolve(family, source.get("synthetic") or {})
    frame = worlds.generate(family, resolved, spec["manifest"])
    emit("log", "info", f"Generated synthetic {family.NAME} data: {worlds.describe(family, resolved)}")
    return frame


def _input_columns(frame, family, manifest) -> list[dict]:
    """Columns a prediction request must carry: the schema's non-outcome columns present in
    the training frame (labels and treatment are outcomes, not inputs)."""
    outcomes = outcome_columns(manifest, family.NAME)
    roles = {c["name"]: c.get("role") for c in family.SCHEMA}
    out = []
    for col in frame.columns:
        if col in outcomes:  # labels and treatment (runs.data.outcome_columns)
            continue
        if col in roles:
            out.append({"name": col, "dtype": dtype_name(frame[col])})
    return out


def execute(spec: dict, emit) -> dict:
    """Run the pipeline; a crash inside a stage fails it with a reason in words
    (explain_failure), its traceback kept for the raw log (child_main)."""
    where: dict = {"run_type": spec.get("run_type")}
    try:
        with ExitStack() as cleanup:  # files a stage leaves for later ones (a score run's buckets)
            return _execute(spec, emit, where, cleanup)
    except StageFailed:
        raise
    except Exception as exc:
        raise StageFailed(explain_failure(exc, **where)) from exc


def _execute(spec: dict, emit, where: dict, cleanup: ExitStack) -> dict:
    family = get_family(spec["family"])
    manifest = spec["manifest"]
    run_type = spec["run_type"]
    threads = int(spec.get("threads", 1))
    out_dir = Path(spec["artifact_dir"])
    out_dir.mkdir(parents=True, exist_ok=True)
    stages = manifest["pipeline"]["stages"]

    def log(message: str, level: str = "info"):
        emit("log", level, message)

    raw = frame = inputs = None
    model = None
    result: dict = {"metrics": {}, "artifacts": {}, "plots": {}, "folds": []}
    split = None
    stream = None  # a score run's batch read chunk by chunk (score_batch)

    def score(config: dict | None) -> None:
        """A score run's scoring (its deployment stage's ``config``, or None without one)."""
        nonlocal model, inputs
        model = model if model is not None else family.load(Path(spec["model_dir"]))
        inputs = inputs if inputs is not None else _score_inputs(raw, spec["model_schema"])
        score_batch(
            family,
            model,
            raw,
            inputs,
            manifest,
            out_dir,
            result,
            log,
            threads=threads,
            stream=stream,
            schema=spec["model_schema"],
            contributions=_score_contributions(spec, config, log),
        )

    for index, stage in enumerate(stages):
        kind, name = stage["type"], stage["name"]
        emit("stage", index, "running", "")
        where.update(stage=stage, frame=frame)
        started = time.monotonic()
        if raw is None:
            # Loading (or generating) the data is the first stage's work, so the run shows
            # that stage as running meanwhile rather than "0 of 5" with nothing happening.
            stream, head = _score_stream(spec, family, log) if run_type == "score" else (None, None)
            if stream is not None:
                cleanup.callback(stream.close)
            raw = frame = head if stream is not None else load_data(spec, family, emit)
            if run_type == "score":
                raw = frame = _without_outcomes(raw, family, manifest, log)
            where["frame"] = frame
        if kind == "quality":
            if len(frame) == 0:
                raise StageFailed(
                    "The data has no rows (only a header): upload a file with data rows, then run again."
                )

            if stream is not None:  # every chunk of a streamed batch, as a score run checks it
                problems, checked = _streamed_problems(stream, frame, manifest, family.NAME)
            else:
                problems, checked = (
                    dataset_problems(
                        frame,
                        describe_columns(frame),
                        manifest,
                        family.NAME,
                        check_history=run_type not in ("eval", "score"),
                        outcomes=run_type != "score",
                    ),
                    len(frame),
                )
            if run_type == "score":
                problems = _missing_model_inputs(frame, spec["model_schema"]) + problems
            if problems:
                for p in problems:
                    log(f"quality: {p}", "error")
                raise StageFailed(quality_failure(problems))
            if stream is not None:
                log(
                    f"quality: {checked:,} rows passed requirement, null, grain and range checks "
                    "(every chunk of the streamed batch)"
                )
            else:
                log(f"quality: {checked} rows passed requirement, null, grain, range and history checks")
        elif kind == "feature_prep" and run_type == "score":
            inputs = _score_inputs(raw, spec["model_schema"])
            rows = f"{len(inputs)} rows" if stream is None else "each chunk (as it is scored)"
            log(
                f"feature_prep: {rows} × {inputs.shape[1]} model input columns, typed as the "
                "model's schema (the model applies its own transforms, as POST /models/{id}/predict does)"
            )
        elif kind == "feature_prep":
            frame = family.prepare(frame, manifest, log=log)
            where["frame"] = frame
            log(f"feature_prep: {frame.shape[1]} columns after transforms")
        elif kind == "training" and distributed.wanted(spec, family):
            # Every row of the dataset trains on a Dask cluster (issue #16 §3; runs.distributed);
            # the holdout rows of the loaded sample are evaluated here.
            try:
                split, model = distributed.train(spec, family, raw, frame, log)
            except distributed.ClusterError as exc:
                raise StageFailed(str(exc)) from exc
            _save_model(out_dir, family, model, raw, manifest, split, result, log)
        elif kind == "training":
            if run_type in ("eval", "score"):
                model = family.load(Path(spec["model_dir"]))
                emit("stage", index, "skipped", f"{run_type} run: the registered model's artifact is used")
                verb = "evaluating" if run_type == "eval" else "scoring with"
                log(f"training: skipped ({verb} the registered model's artifact)")
                continue
            if run_type == "backtest":
                emit("stage", index, "skipped", "backtest: models are fitted per fold in evaluation")
                log("training: deferred to the backtest folds")
                continue
            split = family.split(frame, manifest)
            train, test = split
            log(f"training: {len(train)} training rows, {len(test)} holdout rows")
            curves = CurveRecorder(emit)
            model = family.fit(
                train, manifest, threads=threads, log=log, **curve_kwargs(family, curves, test)
            )
            curves.flush()
            if curves.keys:
                log(
                    f"training: recorded {curves.count} points of {len(curves.keys)} training curve(s): "
                    + ", ".join(sorted(curves.keys))
                )
            # Saving the model (and the drift reference) is the training stage's work, so
            # no heavy step runs after the last stage reported success.
            _save_model(out_dir, family, model, raw, manifest, split, result, log)
        elif kind == "evaluation" and run_type == "score":
            emit("stage", index, "skipped", "score run: labels arrive later")
            log("evaluation: skipped (a score run has no labels yet)")
            continue
        elif kind == "evaluation":
            if run_type == "backtest":
                folds = family.folds(frame, manifest)
                fold_metrics = []
                for number, (train, test) in enumerate(folds, start=1):
                    fold_model = family.fit(train, manifest, threads=threads, log=log)
                    metrics, _, _ = family.evaluate(fold_model, test, manifest)
                    fold_metrics.append(json_safe(metrics))
                    emit("metrics", fold_points(number, metrics))
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
                _save_predictions(out_dir, predictions, result, log)
            (out_dir / "metrics.json").write_text(
                json.dumps({"metrics": result["metrics"], "folds": result["folds"]}, indent=2)
            )
            result["artifacts"]["metrics.json"] = "metrics"
        elif kind == "deployment" and run_type == "score":
            score(stage.get("config"))
        elif kind == "deployment":
            if run_type != "train":
                emit("stage", index, "skipped", f"{run_type} run: nothing to deploy")
                continue
            log("deployment: the artifact will be attached to the run's model (if it has one)")
        elif kind == "explain":
            if run_type != "train":
                emit("stage", index, "skipped", f"{run_type} run: explanations are computed by train runs")
                log(f"explain: skipped (a {run_type} run; the model's explanations come from its train run)")
                continue
            if model is None or split is None:  # the validator puts explain after training
                raise StageFailed(f"Stage '{name}' (explain) needs a training stage before it.")
            problem = explain_stage(
                family, model, split, manifest, stage, out_dir, result, log, threads, spec.get("explain_caps")
            )
            if problem is not None:
                emit("stage", index, "skipped", problem)
                continue
        else:  # the validator only admits the stage types of recipes.catalog.STAGE_TYPES
            raise StageFailed(f"Unknown stage type '{kind}' in stage '{name}'")
        emit("stage", index, "succeeded", f"{time.monotonic() - started:.2f}s")

    if run_type == "score" and "scoring" not in result:
        # A pipeline without a deployment stage still scores: that is what the run is for.
        log("scoring: the pipeline has no deployment stage; the batch is scored after its last stage")
        score(None)
    return json_safe(result)


# --- explanations ---------------------------------------------------------------------------

EXPLAIN_FILES = ("explanations.json", "explanations.parquet", "explanation_background.parquet")


def explain_stage(
    family,
    model,
    split,
    manifest,
    stage,
    out_dir: Path,
    result: dict,
    log,
    threads=1,
    caps: dict | None = None,
):
    """A train run's explain stage: ``runs.explain.explain_model`` on the run's own split,
    written as explanations.json (the document the API serves), explanations.parquet (the
    explained sample's contributions) and explanation_background.parquet (the rows later
    per-prediction explanations need), all of kind "explanations". None when they were
    written; else the reason they were not, and the stage is skipped.

    A failure here does not fail the run: the model is already trained, evaluated and saved,
    and its predictions are what the run exists for; losing a good model (and, for a retrain,
    the challenger the policy waits for) because an explanation could not be computed would
    be the worse outcome. The run says so — a warning in its log with the reason, the
    traceback after it, the stage marked skipped with the reason — and the model has no
    explanations (the API answers 404 for them, as for a model trained before the stage)."""
    # caps: the deployment's EXPLAIN_CAPS (spec["explain_caps"])
    config = explain_config.resolve(stage.get("config") or {}, family=family.NAME, caps=caps)
    train, test = split
    try:
        explanation = explain_model(family, model, train, test, manifest, config, log=log, threads=threads)
        document = json_safe(explanation.document)
        (out_dir / "explanations.json").write_text(json.dumps(document, indent=1, allow_nan=False))
        explanation.contributions.to_parquet(out_dir / "explanations.parquet", index=False)
        explanation.background.to_parquet(out_dir / "explanation_background.parquet", index=False)
    except Exception as exc:  # noqa: BLE001 -- see the docstring: a good model is kept
        for file_name in EXPLAIN_FILES:
            (out_dir / file_name).unlink(missing_ok=True)
        reason = explain_failure(exc, stage)
        log(f"explain: no explanations for this model. {reason}", "warning")
        log("".join(traceback.format_exception(exc))[-4000:], "warning")
        return f"explanations could not be computed: {str(exc).strip()[:200] or type(exc).__name__}"
    for file_name in EXPLAIN_FILES:
        result["artifacts"][file_name] = "explanations"
    attributed = len(explanation.contributions) if document.get("method") else None
    log(f"explain: {explain_summary(document, attributed)}")
    return None


def explain_summary(document: dict, attributed: int | None = None) -> str:
    """One line of what the explain stage computed: methods, attribution method, rows, top
    features ("computed shap, permutation, dependence: tree_shap attributions of 500 of 500
    held-out rows (16 background rows); top features by permutation importance: a, b, c").
    ``attributed``: the rows given per-prediction contributions (explanations.parquet), fewer
    than the sample when the attribution budget cut them (the document's notes say so)."""
    ranking = document.get("global") or (document.get("attribution") or {}).get("mean_abs") or []
    top = [str(item.get("feature")) for item in ranking[:3] if isinstance(item, dict)]
    rows = document.get("sample_rows")
    of = f"{attributed} of {rows}" if attributed is not None else f"{rows}"
    line = (
        f"computed {', '.join(document.get('methods') or []) or 'nothing'}: "
        f"{document.get('method') or 'no'} attributions of {of} held-out rows "
        f"({document.get('background_rows')} background rows)"
    )
    if top:
        by = "permutation importance" if document.get("global") else "mean |contribution|"
        line += f"; top features by {by}: {', '.join(top)}"
    return line


# --- score runs ---------------------------------------------------------------------------


def _without_outcomes(frame, family, manifest: dict, log):
    """A score run's batch without the labels and treatment (a synthetic world generates them;
    they must not leak into the input of a model that scores before they are known)."""
    dropped = [c for c in frame.columns if c in outcome_columns(manifest, family.NAME)]
    if dropped:
        log(f"score run: dropped the target column(s) {', '.join(dropped)} (labels arrive later)")
        frame = frame.drop(columns=dropped)
    return frame


def _missing_model_inputs(frame, schema: dict) -> list[str]:
    """The model's input columns (its schema) the batch lacks, as quality problems."""
    return [
        f"column '{c['name']}' is missing (the model was trained with it)"
        for c in schema["input_columns"]
        if c["name"] not in frame.columns
    ]


def _score_inputs(frame, schema: dict):
    """The batch as the model takes it (runs.data.model_input); a clear failure otherwise."""
    missing = _missing_model_inputs(frame, schema)
    if missing:
        raise StageFailed(quality_failure(missing))
    inputs = model_input(frame, schema)
    for col in schema["input_columns"]:
        if col["dtype"] in ("date", "datetime"):
            bad = int(inputs[col["name"]].isna().sum())
            if bad:
                raise StageFailed(
                    f"The data failed the quality checks: column '{col['name']}' has {bad} values "
                    "that are not dates. To fix: fix or drop those rows, then run again."
                )
    return inputs


def score_rows(
    family, model, inputs, entity_columns: list[str], chunk_rows: int | None = None, threads: int = 1
):
    """``family.predict`` for every row of ``inputs`` (a float array in their order), at most
    about ``chunk_rows`` rows per call (default: the family's ``SCORE_CHUNK_ROWS`` if it sets
    one, else ``SCORE_CHUNK_ROWS``). The rows of one entity (the grain without its time,
    e.g. a forecasting series) stay in one call: a family may predict an entity's later
    periods from its earlier ones, so a batch's scores do not depend on the chunk size.

    ``threads`` > 1 (the run's configured thread count) predicts that many chunks at a time
    in threads: the families' predict spends its time in LightGBM, which releases the GIL,
    and a chunk's scores do not depend on the others, so the scores are the same."""
    import numpy as np

    if chunk_rows is None:
        chunk_rows = int(getattr(family, "SCORE_CHUNK_ROWS", SCORE_CHUNK_ROWS))
    n = len(inputs)
    scores = np.empty(n, dtype=float)
    keys = [c for c in entity_columns if c in inputs.columns]
    order, codes = np.arange(n), None
    if keys and n > chunk_rows:
        entity = inputs.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
        order = np.argsort(entity, kind="stable")
        codes = entity[order]
    chunks, start = [], 0
    while start < n:
        end = min(start + chunk_rows, n)
        if codes is not None and end < n:  # end the chunk where an entity begins
            cut = int(np.searchsorted(codes, codes[end], side="left"))
            end = cut if cut > start else int(np.searchsorted(codes, codes[end], side="right"))
        chunks.append(order[start:end])
        start = end

    def predict(rows):
        values = np.asarray(family.predict(model, inputs.iloc[rows]), dtype=float)
        if values.shape != (len(rows),):
            raise ValueError(f"predict() returned {values.shape} values for {len(rows)} rows")
        return values

    if threads > 1 and len(chunks) > 1:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            for rows, values in zip(chunks, pool.map(predict, chunks), strict=True):
                scores[rows] = values
    else:
        for rows in chunks:
            scores[rows] = predict(rows)
    return scores


def score_batch(
    family,
    model,
    batch,
    inputs,
    manifest: dict,
    out_dir: Path,
    result: dict,
    log,
    threads: int = 1,
    stream: StreamPlan | None = None,
    schema: dict | None = None,
    contributions: ScoreContributions | None = None,
) -> None:
    """A score run's work (its deployment stage): predict every row of the batch with the
    family's own predict path, and write the batch's columns (its targets already dropped)
    plus the prediction column as predictions.parquet (exact) and predictions.csv (safe for
    spreadsheets); ``result["scoring"]`` says how many rows and which columns. With
    ``contributions`` (the stage's ``explain``), the first rows' contribution columns too.

    With ``stream`` (a file of more than the run's ``stream_rows``), ``batch`` is its first
    chunk and the whole file is scored chunk by chunk (score_streamed)."""
    if stream is not None:
        score_streamed(
            family, model, stream, batch, schema, manifest, out_dir, result, log, threads, contributions
        )
        return
    time_col = time_column(batch, family.NAME)
    entity = [c for c in grain_columns(manifest) if c != time_col]
    scores = score_rows(family, model, inputs, entity, threads=threads)
    column = family.PREDICTION_COLUMN
    while column in batch.columns:  # an uploaded column of that name is kept as it is
        column = f"{column}_scored"
    scored = batch.reset_index(drop=True).assign(**{column: scores})
    if contributions is not None:
        scored = contributions.join(family, model, scored, inputs)
    _save_predictions(out_dir, scored, result, log, stage="scoring")
    result["scoring"] = {"rows": len(scored), "columns": list(scored.columns), "prediction_columns": [column]}
    log(f"scoring: predicted {len(scored)} rows with the registered model ({column})")


def _score_contributions(spec: dict, config, log) -> ScoreContributions | None:
    """The contributions a score run's deployment stage asks for (``"explain": true``, its
    first ``explain_rows`` rows; recipes.explain_config.scoring_problems), computed against the
    model's explanation background (``spec["explain_background"]``, fetched by the worker);
    None when not asked, or, with a warning, when the model has no explanations."""
    if not explain_config.asks_for_contributions(config):
        return None
    if not spec.get("explain_background"):
        log(
            "scoring: the deployment stage asks for contributions ('explain'), but the model has no "
            "explanations (its train run computed none): the batch is scored without them",
            "warning",
        )
        return None
    rows = int(config.get("explain_rows", explain_config.SCORE_EXPLAIN_ROWS))
    log(f"scoring: contribution columns (contrib_<feature>, base_value) for the first {rows:,} rows")
    return ScoreContributions.from_file(spec["explain_background"], rows)


def _score_stream(spec: dict, family, log) -> tuple[StreamPlan | None, object]:
    """(the plan, its first chunk) when a score run's dataset has more rows than its
    ``data.stream_rows`` and can stream (runs.score_stream.plan); else (None, None) and the
    run reads its batch whole (load_data), its log saying why when the file was large.

    A forecasting file not ordered by series is partitioned into bucket files in the run's work
    directory — the artifact folder's parent: the executor's private folder for the run
    (``storage.work_dir``), removed with it; only the files a run lists in its result are
    stored. The caller closes the plan, which removes the buckets, when the run ends."""
    source = spec["data"]
    if "path" not in source or not source.get("stream_rows"):
        return None, None
    path = Path(source["path"])
    name = source.get("name") or path.name
    limit = int(source["stream_rows"])
    entity = sample_by(family.NAME, spec["manifest"])
    stream = None
    try:
        stream, why = stream_plan(
            path,
            source["format"],
            name=name,
            stream_rows=limit,
            chunk_rows=source.get("chunk_rows"),
            entity=entity,
            work_dir=Path(spec["artifact_dir"]).parent,
        )
        head = stream.head() if stream is not None else None
    except ValueError as exc:  # the footer, the header or a chunk could not be read
        if stream is not None:
            stream.close()
        raise StageFailed(_unreadable(name, exc)) from None
    if stream is None:
        if why:
            log(
                f"score run: dataset {name} has more than SCORE_STREAM_ROWS ({limit:,}) rows but is scored "
                f"in memory, as a whole: {why}. To stream it (memory for one chunk, not the file), "
                + ("write the file with each series' rows together" if "series" in why else "fix that column")
                + ".",
                "warning",
            )
        return None, None
    whole = f" (whole series by {', '.join(stream.entity)})" if stream.entity else ""
    log(
        f"score run: dataset {name} has {stream.rows:,} rows, more than SCORE_STREAM_ROWS ({limit:,}): "
        f"it is read and scored in chunks of about {stream.chunk_rows:,} rows{whole}, and its predictions "
        "are written chunk by chunk; the quality stage reads every chunk"
        + (f"; {stream.note}" if stream.note else "")
    )
    return stream, head


def _streamed_problems(stream: StreamPlan, frame, manifest: dict, family: str) -> tuple[list[str], int]:
    """dataset_problems of a streamed score batch (no history, no outcomes): the columns it
    lacks, from its first chunk ``frame``, and the quality checks over every chunk
    (runs.score_stream.stream_quality); with the rows checked."""
    columns = [str(c) for c in frame.columns]
    missing = requirement_errors([{"name": c} for c in columns], manifest, family, outcomes=False)
    try:
        problems, rows = stream_quality(stream, columns, manifest, family)
    except ChunkReadError as exc:
        raise StageFailed(_unreadable(stream.name, exc)) from None
    return missing + problems, rows


def _unreadable(name: str, exc: Exception) -> str:
    text = str(exc)
    if not text.startswith("dataset '"):
        text = f"dataset '{name}' could not be read: {text}"
    return f"The run could not read its data: {text}. To fix: upload the file again (or a repaired copy), then run again."


def score_streamed(
    family,
    model,
    stream: StreamPlan,
    head,
    schema: dict,
    manifest: dict,
    out_dir: Path,
    result: dict,
    log,
    threads: int = 1,
    contributions: ScoreContributions | None = None,
) -> None:
    """score_batch of a file read chunk by chunk: each chunk's targets dropped, typed as the
    model's schema, predicted (score_rows: the same calls per entity as in memory, so the same
    scores) and appended to predictions.parquet (``pyarrow.parquet.ParquetWriter``, one row
    group a chunk, the columns and types of the in-memory file) and predictions.csv; memory
    holds one chunk. Its summary (rows, the prediction's min / mean / max) is computed
    incrementally over every row; the batch's drift check reads the dataset in chunks itself
    (monitoring's CHECK_STREAM_ROWS). ``head`` is the first chunk, its targets dropped."""
    time_col = time_column(head, family.NAME)
    entity = [c for c in grain_columns(manifest) if c != time_col]
    outcomes = set(outcome_columns(manifest, family.NAME))
    column = family.PREDICTION_COLUMN
    while column in head.columns:  # an uploaded column of that name is kept as it is
        column = f"{column}_scored"
    writer = PredictionWriter(out_dir, column)
    try:
        for chunk in stream.chunks():
            batch = chunk.drop(columns=[c for c in chunk.columns if c in outcomes])
            inputs = _score_inputs(batch, schema)
            scores = score_rows(family, model, inputs, entity, threads=threads)
            scored = batch.reset_index(drop=True).assign(**{column: scores})
            writer.write(
                scored if contributions is None else contributions.join(family, model, scored, inputs)
            )
        if writer.chunks == 0:  # no rows at all: the files still have the columns
            writer.write(head.iloc[:0].assign(**{column: head.index[:0].astype(float)}))
    except ChunkReadError as exc:
        raise StageFailed(_unreadable(stream.name, exc)) from None
    finally:
        writer.close()
    result["artifacts"]["predictions.csv"] = "predictions"
    if writer.parquet_error is None:
        result["artifacts"]["predictions.parquet"] = "predictions"
    else:
        log(f"scoring: predictions.parquet not written ({writer.parquet_error}); the CSV has them", "warning")
    columns = [*map(str, head.columns), column]
    result["scoring"] = {
        "rows": writer.rows,
        "columns": columns,
        "prediction_columns": [column],
        "streamed": {"chunks": writer.chunks, "chunk_rows": stream.chunk_rows},
    }
    log(
        f"scoring: streamed {writer.rows:,} rows in {writer.chunks} chunks with the registered model ({column}); "
        f"summary computed incrementally over every row: {column} {writer.summary()}"
    )


def _save_predictions(out_dir: Path, predictions, result: dict, log, stage: str = "evaluation") -> None:
    """predictions.csv for spreadsheets, with text cells that would be formulas neutralised
    (mlworkspace.csvsafe), and predictions.parquet with the values exactly as they were."""
    write_csv(predictions, out_dir / "predictions.csv")
    result["artifacts"]["predictions.csv"] = "predictions"
    try:
        predictions.to_parquet(out_dir / "predictions.parquet", index=False)
    except (ValueError, TypeError, ImportError) as exc:  # pyarrow refuses e.g. mixed-type columns
        (out_dir / "predictions.parquet").unlink(missing_ok=True)
        log(f"{stage}: predictions.parquet not written ({str(exc)[:200]}); the CSV has them", "warning")
    else:
        result["artifacts"]["predictions.parquet"] = "predictions"


def _save_model(out_dir: Path, family, model, raw, manifest: dict, split, result: dict, log) -> None:
    """The trained model's files, its input schema and the reference profile for drift."""
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


def reference_profile(raw, family, model, manifest, split):
    """The compact profile drift checks compare against: the monitored features of the raw
    training rows, and the model's predictions on them."""
    drift = (manifest.get("monitoring") or {}).get("drift") or {}
    features = [f for f in drift.get("features") or [] if f in raw.columns]
    reference = raw
    # The training rows, found by time: split() resets the index of prepared (re-sorted)
    # frames, so their index does not point at raw rows (taking raw's first rows by that
    # index left whole products out of the reference and flagged drift on healthy batches).
    time_col = next((c["name"] for c in family.SCHEMA if c.get("role") == "time"), None)
    if split is not None and time_col in raw.columns and time_col in split[0].columns and len(split[0]):
        import pandas as pd

        cutoff = pd.to_datetime(split[0][time_col], errors="coerce").max()
        if pd.notna(cutoff):
            in_train = pd.to_datetime(raw[time_col], errors="coerce") <= cutoff
            if in_train.any():
                reference = raw[in_train]
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
