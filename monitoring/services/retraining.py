"""Retraining: the manifest's ``retraining`` policy (``recipes.retraining``) acted on.

A trigger (the policy's schedule, one of its alerts opening, enough new rows, or a person)
asks to retrain a recipe's production model, the *champion*. ``retrain_trigger`` either
records a skip with its reason (a retrain already training, the cooldown, no new data since
the last one, no data to train on) or registers a *challenger* (``MLModel.challenger_of``) on
the champion's approved version and starts its train run on the policy's window of data.
Once the run has finished, a worker's tick calls ``retrain_decide``: a failed run leaves the
champion untouched; otherwise both models are evaluated on the same held-out window (the
newest labelled batch the champion was checked on, which the challenger did not train on),
and the decision follows the policy's promotion: ``auto`` promotes a challenger that beats
the champion's primary metric by ``min_improvement`` with no critical breach, ``manual``
leaves the choice to a person. Every trigger, skip and decision is a ``Retrain`` row.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from django.core.files.uploadedfile import UploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone
from pandas.api.types import is_bool_dtype, is_integer_dtype, is_object_dtype

from audit import services as audit
from mlworkspace import storage
from mlworkspace.errors import Conflict, TooLarge
from mlworkspace.ids import new_id
from models_registry.models import MLModel, ModelStatus
from models_registry.services import model_register, model_set_status
from notifications.services import notify
from recipes.retraining import RetrainPolicy
from recipes.retraining import policy as retrain_policy
from runs import dataset_files
from runs.data import SAMPLE_CHUNK_ROWS, read_chunks, table_columns
from runs.families import get_family, worlds
from runs.models import Dataset, DatasetPurpose, DatasetStatus, Run, RunStatus, RunType
from runs.score_stream import StreamPlan
from runs.score_stream import plan as stream_plan
from runs.selectors import model_training_batch
from runs.services import dataset_create, dataset_profile, run_start, synthetic_resolve

from ..models import MonitorSnapshot, Retrain, RetrainDecision, RetrainStatus, RetrainTrigger
from .comparison import models_compare, newest_labelled_batch

logger = logging.getLogger(__name__)
CHECKED_SOURCES = ("check", "scheduled")  # snapshots of new data (outcomes re-judge scored rows)
FINISHED = (RunStatus.SUCCEEDED, RunStatus.FAILED, RunStatus.CANCELLED)
# A synthetic retrain window is cut to its newest periods that hold at most this many rows.
RETRAIN_MAX_ROWS = 200_000
RETRAINED = " · retrained "  # a challenger's name: its champion's, and when it was retrained


class Skip(Exception):
    """A trigger that does not start a retrain: ``code`` (its kind) and the reason in words."""

    def __init__(self, code: str, reason: str):
        super().__init__(reason)
        self.code, self.reason = code, reason


# --------------------------------------------------------------------------- what the data is


def _last_retrain(recipe_id) -> Retrain | None:
    """The recipe's newest retrain that started (not a skip)."""
    return (
        Retrain.objects.filter(recipe_id=recipe_id)
        .exclude(status=RetrainStatus.SKIPPED)
        .order_by("-created_at", "-id")
        .first()
    )


def _data_since(champion: MLModel, last: Retrain | None) -> datetime:
    """New data counts from the champion's training, or the recipe's last retrain if later."""
    run = Run.objects.filter(pk=champion.training_run_id).only("finished_at").first()
    trained = (run.finished_at if run is not None else None) or champion.created_at
    return max(trained, last.created_at) if last is not None else trained


def new_rows(champion: MLModel, since: datetime) -> int:
    """Rows of new data the champion was checked or scored on after `since`."""
    total = MonitorSnapshot.objects.filter(
        model=champion, captured_at__gt=since, source__in=CHECKED_SOURCES
    ).aggregate(rows=Sum("row_count"))["rows"]
    return int(total or 0)


def _synthetic_window(champion: MLModel, policy: RetrainPolicy | None) -> dict:
    """Train on the policy's window of the champion's world (default: as many periods as the
    champion's training data), ending where the held-out window (the newest batch the champion
    saw) begins, under that batch's ground truth (its concept)."""
    training = model_training_batch(champion)
    family = get_family(champion.recipe.model_family)
    holdout = newest_labelled_batch(champion)
    if holdout is None:
        raise Skip(
            "no_data", "the champion has not been checked or scored on any data yet: nothing to compare on"
        )
    start, _n = worlds.span(family, holdout["window"])
    if policy is not None and policy.window is not None and policy.window.kind == "period":
        periods = max(1, math.ceil(policy.window.days / int(family.PERIOD_DAYS)))
    else:
        periods = worlds.span(family, training["window"])[1]
    periods = min(periods, start)
    if periods < 1:
        raise Skip("no_data", "the world has no data before the held-out window")
    rows = family.window_rows(training["world"], periods, None)
    if rows > RETRAIN_MAX_ROWS:  # keep the newest periods that fit the row limit
        periods = max(1, periods * RETRAIN_MAX_ROWS // rows)
    request = {
        "seed": int(training["seed"]),
        "start": start - periods,
        "periods": periods,
        "concept": holdout.get("concept"),
    }
    request["start"] = worlds.window_dict(family, request["start"], periods)["start"]
    train = synthetic_resolve(family_name=family.NAME, synthetic=request, after=training)
    return {"train": train, "holdout": holdout}


def _dataset_window(champion: MLModel, count: int, user) -> tuple[Dataset, dict]:
    """Train on the `count` training datasets uploaded for the recipe before its newest one,
    which is held out (scoring input, unlabelled, is not used). Several are combined into one
    dataset (recorded, so the run is reproducible: ``_combine``); an earlier retrain's
    combination is not an upload and never counts as one."""
    combined = [
        train["dataset_id"]
        for train in Retrain.objects.filter(recipe_id=champion.recipe_id).values_list(
            "window_json__train", flat=True
        )
        if isinstance(train, dict) and len(train.get("dataset_ids") or ()) > 1
    ]
    datasets = list(
        Dataset.objects.filter(
            recipe_id=champion.recipe_id, status=DatasetStatus.READY, purpose=DatasetPurpose.TRAINING
        )
        .exclude(pk__in=combined)
        .order_by("-created_at", "-id")[: count + 1]
    )
    if len(datasets) < 2:
        raise Skip(
            "no_data",
            f"the window asks for the latest {count} dataset(s) plus the newest to compare on; "
            f"the recipe has {len(datasets)} ready dataset(s)",
        )
    holdout, used = datasets[0], datasets[1:]
    if len(used) == 1:
        train = used[0]
    else:
        train = _combine(list(reversed(used)), recipe=champion.recipe, user=user)
    window = {"train": {"dataset_ids": [d.pk for d in reversed(used)], "dataset_id": train.pk}}
    return train, window | {"holdout": {"dataset_id": holdout.pk, "name": holdout.name}}


# --------------------------------------------------------------------------- datasets combined
#
# Several datasets become one as pandas.concat of them, each read whole, would make it, but
# chunk by chunk (issue #16 §3): memory holds one chunk, never a dataset. Each dataset is read
# as runs.score_stream streams a batch (Parquet batches, CSV chunks typed as the whole file
# reads), each chunk is given the column types of the combination and appended to one Parquet
# file (a row group a chunk), which becomes the new dataset through dataset_create by its path.
# The types are concat's: a column's type in a dataset is the one the whole file reads as
# (a Parquet integer or yes/no column with gaps anywhere is float / Python objects, though a
# chunk without gaps reads as int / bool), and the combination's is what concat makes of the
# datasets' (integers beside decimals: float64). A column of Python objects (yes/no with gaps,
# text beside an all-empty column) is typed as pyarrow infers it from the values, as
# DataFrame.to_parquet would; values of two kinds (text beside numbers, times beside text) are a
# skip naming the column, where concat's frame could not be written at all. Two differences from
# concat, both deliberate: the datasets must have the same columns (concat would fill a missing
# one with gaps, and turn its integers into floats), and a categorical column is written as its
# values (concat keeps it categorical only when every dataset has the same categories).

COMBINE_CHUNK_ROWS = SAMPLE_CHUNK_ROWS  # rows per chunk: runs.data's default read


@dataclass
class _Part:
    """One dataset of a combination: its columns, how it streams (None: it has no rows), each
    column's type as the whole file reads, and the pyarrow type of its values (null: none)."""

    dataset: Dataset
    columns: list[str]
    stream: StreamPlan | None = None
    dtypes: dict = field(default_factory=dict)
    kinds: dict = field(default_factory=dict)


def _combine(datasets: list[Dataset], *, recipe, user) -> Dataset:
    """The datasets, in this order, as one new dataset of `recipe` (see the comment above).
    Skip (naming the dataset and the column) when they cannot be combined."""
    work = storage.work_dir("retrain")
    try:
        parts = [_part(d, dataset_files.fetch(d, work)) for d in datasets]
        columns, types, schema = _combined_types(parts)
        out = work / "retrain.parquet"
        with pq.ParquetWriter(out, schema) as writer:
            for part in parts:
                _append(writer, part, columns, types, schema)
        name = f"Retrain data: {', '.join(d.name for d in datasets)}"[:200]
        with _WrittenFile(out) as upload:
            try:
                train = dataset_create(
                    user=user, upload=upload, name=name, recipe=recipe, client=recipe.client
                )
            except TooLarge as exc:
                raise Skip(
                    "no_data",
                    f"the {len(datasets)} datasets combined are too big for one dataset: {exc.detail}",
                ) from None
    finally:
        storage.remove(work)
    if train.status == DatasetStatus.PROCESSING:
        # A large file is profiled by a worker's task, and a run refuses a dataset until then:
        # the train run starts now, so it is profiled here (in chunks, as that task would).
        dataset_profile(dataset_id=train.pk)
        train.refresh_from_db()
    if train.status != DatasetStatus.READY:
        raise Skip("no_data", f"the combined dataset '{train.name}' is {train.status}: {train.error}")
    return train


def _part(dataset: Dataset, path: Path) -> _Part:
    """Read `dataset`'s file (a local copy) for what combining it needs, a chunk at a time."""
    try:
        part = _Part(dataset, [str(c) for c in table_columns(path, dataset.format)])
        part.stream, why = stream_plan(
            path, dataset.format, name=dataset.name, stream_rows=0, chunk_rows=COMBINE_CHUNK_ROWS
        )
        if why:  # a CSV column typed differently by different parts of the file
            raise Skip("no_data", f"dataset '{dataset.name}' cannot be read in chunks: {why}")
        if part.stream is None:  # no rows: only its columns count
            return part
        head = part.stream.head()
        part.dtypes = {str(c): _value_dtype(head[c].dtype) for c in head.columns}
        # A Parquet chunk of an integer or yes/no column without gaps reads as int / bool, the
        # whole file as float / objects if any chunk has one: those columns are read once more.
        maybe = [c for c, d in part.dtypes.items() if is_integer_dtype(d) or is_bool_dtype(d)]
        if dataset.format == "parquet" and maybe:
            seen = {c: [part.dtypes[c]] for c in maybe}
            for chunk in read_chunks(path, "parquet", columns=maybe, chunk_rows=COMBINE_CHUNK_ROWS):
                for c in maybe:
                    seen[c].append(chunk[c].dtype)
            part.dtypes |= {c: _concat_dtype(d) for c, d in seen.items()}
    except ValueError as exc:  # unreadable (a ChunkReadError names the dataset)
        raise Skip("no_data", f"dataset '{dataset.name}' could not be read: {exc}") from None
    typed = _arrow_schema(part.dtypes)
    for col, dtype in part.dtypes.items():
        values = head[col].dropna()
        if values.empty:
            part.kinds[col] = pa.null()
        elif not is_object_dtype(dtype):
            part.kinds[col] = typed.field(col).type
        else:
            try:
                part.kinds[col] = pa.array(values.astype(object), from_pandas=True).type
            except (pa.ArrowException, ValueError, TypeError) as exc:
                raise Skip(
                    "no_data",
                    f"column '{col}' of dataset '{dataset.name}' holds values of several kinds: {exc}",
                ) from None
    return part


def _value_dtype(dtype):
    """A categorical column's values' type (categories differ from dataset to dataset)."""
    return dtype.categories.dtype if isinstance(dtype, pd.CategoricalDtype) else dtype


def _concat_dtype(dtypes: list):
    """The type pandas.concat gives a column that has these types in the frames it joins."""
    return pd.concat([pd.DataFrame({"c": pd.Series([], dtype=d)}) for d in dtypes]).dtypes["c"]


def _arrow_schema(dtypes: dict) -> pa.Schema:
    """The Parquet schema pandas gives columns of these types (object columns: null)."""
    frame = pd.DataFrame({c: pd.Series([], dtype=d) for c, d in dtypes.items()})
    return pa.Schema.from_pandas(frame, preserve_index=False)


def _combined_types(parts: list[_Part]) -> tuple[list[str], dict, pa.Schema]:
    """(the columns, in the first dataset's order; each one's pandas type; the Parquet schema).
    Skip naming the dataset and the column when the columns differ or a column's values are of
    kinds no one type holds."""
    first = parts[0]
    for part in parts[1:]:
        missing = [c for c in first.columns if c not in part.columns]
        extra = [c for c in part.columns if c not in first.columns]
        if missing or extra:
            col, lacks, has = (missing[0], part, first) if missing else (extra[0], first, part)
            raise Skip(
                "no_data",
                f"dataset '{lacks.dataset.name}' has no column '{col}', which '{has.dataset.name}' has: "
                "the datasets of a retraining window must have the same columns",
            )
    filled = [p for p in parts if p.stream is not None]
    if not filled:
        raise Skip("no_data", "the datasets of the window have no rows")
    types = {c: _concat_dtype([p.dtypes[c] for p in filled]) for c in first.columns}
    schema = _arrow_schema(types)
    for col, dtype in types.items():
        if not is_object_dtype(dtype):
            continue
        # Objects (concat's type for, e.g., text beside a column with no values): the values' kind,
        # which must be one (text is text, whether pandas holds it as str or as objects).
        kinds = [(p.dataset.name, _same_text(p.kinds[col])) for p in filled if p.kinds[col] != pa.null()]
        if len({kind for _, kind in kinds}) > 1:
            what = ", ".join(f"{kind} in '{name}'" for name, kind in kinds)
            raise Skip(
                "no_data", f"column '{col}' holds values of different kinds ({what}): give it one type"
            )
        kind = kinds[0][1] if kinds else pa.null()
        schema = schema.set(schema.get_field_index(col), pa.field(col, kind))
    return list(first.columns), types, schema


def _same_text(kind: pa.DataType) -> pa.DataType:
    """Text as one kind: pandas' str columns are large_string, Python strings string."""
    return pa.string() if kind == pa.large_string() else kind


def _append(
    writer: pq.ParquetWriter, part: _Part, columns: list[str], types: dict, schema: pa.Schema
) -> None:
    """Write `part`'s rows, chunk by chunk, with the combination's types."""
    if part.stream is None:
        return
    try:
        for chunk in part.stream.chunks():
            frame = chunk[columns].astype(types)
            writer.write_table(pa.Table.from_pandas(frame, schema=schema, preserve_index=False))
    except (pa.ArrowException, ValueError, TypeError) as exc:  # ChunkReadError names the dataset
        raise Skip(
            "no_data", f"dataset '{part.dataset.name}' could not be added to the others: {exc}"
        ) from None


class _WrittenFile(UploadedFile):
    """A file this process wrote, given to dataset_create as Django gives a large upload: by its
    path (``temporary_file_path``), so it is stored without being read into memory."""

    def __init__(self, path: Path):
        # The file is closed when the upload is (used as a context manager).
        super().__init__(open(path, "rb"), name=path.name, size=path.stat().st_size)
        self.path = path

    def temporary_file_path(self) -> str:
        return str(self.path)


# --------------------------------------------------------------------------- a trigger


def _record_skip(*, champion, trigger, detail, code, reason, user, at) -> Retrain:
    retrain = Retrain.objects.create(
        id=new_id("retrain"),
        recipe_id=champion.recipe_id,
        champion=champion,
        trigger=trigger,
        trigger_json=detail or {},
        status=RetrainStatus.SKIPPED,
        skip_code=code,
        reason=reason,
        created_by=user,
        created_at=at,
    )
    audit.record(
        user, "model.retrain_skip", champion, detail={"retrain_id": retrain.pk, "reason": reason}, at=at
    )
    return retrain


def _refuse(champion: MLModel, trigger: str, policy: RetrainPolicy | None, at: datetime) -> None:
    """Raise Skip when this trigger must not start a retrain now."""
    if champion.status != ModelStatus.PRODUCTION:
        raise Skip("not_production", f"'{champion.name}' is {champion.status}, not the production model")
    if not champion.artifacts_json.get("model"):
        raise Skip("not_production", f"'{champion.name}' has no trained artifact")
    running = Retrain.objects.filter(recipe_id=champion.recipe_id, status=RetrainStatus.TRAINING).first()
    if running is not None:
        raise Skip("running", f"retrain {running.pk} of this recipe is still training")
    if trigger == RetrainTrigger.MANUAL:
        return  # a person asked: no cooldown, no row count
    last = _last_retrain(champion.recipe_id)
    cooldown = policy.cooldown if policy is not None else None
    if last is not None and cooldown and at < last.created_at + cooldown:
        until = last.created_at + cooldown
        raise Skip(
            "cooldown",
            f"in cooldown: the last retrain started {last.created_at:%Y-%m-%d %H:%M} UTC; "
            f"the next may start after {until:%Y-%m-%d %H:%M} UTC",
        )
    since = _data_since(champion, last)
    if new_rows(champion, since) == 0:
        raise Skip("no_new_data", f"no new data since {since:%Y-%m-%d %H:%M} UTC")


def retrain_trigger(
    *, champion: MLModel, trigger: str, detail: dict | None = None, user=None, at: datetime | None = None
) -> Retrain:
    """Handle one retrain trigger of a recipe's production model: a skip (recorded, with its
    reason) or a challenger registered on the champion's version and its train run started
    (enqueued for a worker on commit). Never raises for a refused trigger; a person's
    (manual) trigger that is refused raises Conflict so the page and API can say why."""
    at = at or timezone.now()
    policy = retrain_policy(champion.recipe_version.manifest)
    try:
        with transaction.atomic():
            champion = MLModel.objects.select_related("recipe", "recipe_version").get(pk=champion.pk)
            _refuse(champion, trigger, policy, at)
            window_kind = policy.window.kind if policy is not None and policy.window is not None else "period"
            training = model_training_batch(champion)
            if window_kind == "datasets":
                dataset, window = _dataset_window(champion, policy.window.count, user)
                params = {}
            elif not training:
                raise Skip(
                    "no_data",
                    "the champion was trained on an uploaded dataset: give the policy a window of "
                    "'latest <n> datasets' to retrain it on uploads",
                )
            else:
                window = _synthetic_window(champion, policy)
                dataset, params = None, {"synthetic": window["train"]}
            challenger = model_register(
                user=user,
                name=f"{champion.name.split(RETRAINED)[0]}{RETRAINED}{at:%Y-%m-%d %H:%M}",
                recipe=champion.recipe,
                recipe_version=champion.recipe_version,
                owner=champion.owner,
                description=f"Retrained from '{champion.name}' ({trigger}).",
                challenger_of=champion,
                at=at,
            )
            run = run_start(
                user=user,
                recipe=champion.recipe,
                recipe_version=champion.recipe_version,
                run_type=RunType.TRAIN,
                model=challenger,
                dataset=dataset,
                params=params,
                at=at,
            )
            retrain = Retrain.objects.create(
                id=new_id("retrain"),
                recipe_id=champion.recipe_id,
                champion=champion,
                trigger=trigger,
                trigger_json=detail or {},
                status=RetrainStatus.TRAINING,
                reason=f"training challenger '{challenger.name}' ({run.name})",
                challenger=challenger,
                run=run,
                window_json=window,
                created_by=user,
                created_at=at,
            )
            audit.record(
                user,
                "model.retrain",
                champion,
                detail={"retrain_id": retrain.pk, "trigger": trigger, "challenger_id": challenger.pk},
                at=at,
            )
            return retrain
    except Skip as skip:
        if trigger == RetrainTrigger.MANUAL:
            raise Conflict(f"No retrain: {skip.reason}.", [{"path": "/", "message": skip.reason}]) from None
        return _record_skip(
            champion=champion,
            trigger=trigger,
            detail=detail,
            code=skip.code,
            reason=skip.reason,
            user=user,
            at=at,
        )
    except IntegrityError:  # another trigger started the recipe's retrain at the same moment
        reason = "another retrain of this recipe started at the same time"
        if trigger == RetrainTrigger.MANUAL:
            raise Conflict(f"No retrain: {reason}.", [{"path": "/", "message": reason}]) from None
        return _record_skip(
            champion=champion, trigger=trigger, detail=detail, code="running", reason=reason, user=user, at=at
        )


def retrain_after_snapshot(*, model: MLModel, snapshot: MonitorSnapshot, opened: list[str]) -> list[Retrain]:
    """A check's (or posted snapshot's) part of the policy, run by the check itself as it
    completes: an alert of ``triggers.alerts`` that this snapshot opened starts a retrain,
    and so does reaching ``triggers.min_new_rows`` new rows. A failure here is logged and
    recorded, never undoes the check."""
    policy = retrain_policy(model.recipe_version.manifest)
    if policy is None:
        return []
    # The caller's copy may predate a promotion: the row says whether it is the champion.
    current = MLModel.objects.filter(pk=model.pk).values_list("status", "serves_alongside").first()
    if current != (ModelStatus.PRODUCTION, False):
        return []
    at = snapshot.captured_at
    opened_ours = [name for name in opened if name in policy.alerts]
    if opened_ours:
        detail = {"alert": opened_ours[0], "snapshot_id": snapshot.pk}
        return [_trigger_safely(model, RetrainTrigger.ALERT, detail, at)]
    if not policy.min_new_rows or snapshot.source not in CHECKED_SOURCES:
        return []
    rows = new_rows(model, _data_since(model, _last_retrain(model.recipe_id)))
    if rows < policy.min_new_rows:
        return []
    last = Retrain.objects.filter(champion=model).order_by("-created_at", "-id").first()
    if last is not None and last.status == RetrainStatus.SKIPPED and last.trigger == RetrainTrigger.NEW_ROWS:
        try:  # already recorded as waiting (a cooldown): one skip per wait, not one per check
            _refuse(model, RetrainTrigger.NEW_ROWS, policy, at)
        except Skip:
            return []
    return [
        _trigger_safely(model, RetrainTrigger.NEW_ROWS, {"new_rows": rows, "snapshot_id": snapshot.pk}, at)
    ]


def _trigger_safely(model: MLModel, trigger: str, detail: dict, at: datetime) -> Retrain:
    """retrain_trigger in a savepoint: an unexpected error (an unreadable artifact, a bug) is
    logged and recorded as a skip, and the check that triggered it still counts."""
    try:
        with transaction.atomic():
            return retrain_trigger(champion=model, trigger=trigger, detail=detail, at=at)
    except Exception as exc:
        logger.exception("retrain trigger of %s failed", model.pk)
        return _record_skip(
            champion=model,
            trigger=trigger,
            detail=detail,
            code="error",
            reason=f"could not start: {exc}",
            user=None,
            at=at,
        )


# --------------------------------------------------------------------------- the decision


def _decision_numbers(comparison: dict, challenger_id: str) -> dict:
    """What the policy decides on, from a stored comparison: the primary metric of both
    models, the challenger's relative improvement (positive = better), its critical breaches
    and the interval of the difference."""
    metric, direction = comparison["metric"], comparison["direction"]
    champion_row, challenger_row = comparison["models"][0], comparison["models"][1]
    ours = (champion_row["metrics"].get(metric) or {}).get("value")
    theirs = (challenger_row["metrics"].get(metric) or {}).get("value")
    improvement = None
    if ours is not None and theirs is not None and direction:
        gain = (ours - theirs) if direction == "lower" else (theirs - ours)
        improvement = gain / abs(ours) if ours else None
    return {
        "metric": metric,
        "champion": {metric: ours},
        "challenger": {metric: theirs},
        "improvement": improvement,
        "critical": challenger_row["critical"],
        "interval": (comparison["difference"].get(challenger_id) or {}).get(metric),
    }


def _verdict(policy: RetrainPolicy | None, comparison: dict, champion: MLModel) -> tuple[str, str]:
    metric, improvement = comparison["metric"], comparison["improvement"]
    ours, theirs = comparison["champion"].get(metric), comparison["challenger"].get(metric)
    if improvement is None:
        numbers = f"the primary metric {metric} could not be computed for both models"
    else:
        better = "better" if improvement >= 0 else "worse"
        numbers = f"{metric} {theirs:.4g} vs the champion's {ours:.4g}: {abs(improvement):.1%} {better}"
        interval = comparison.get("interval") or {}
        if interval.get("low") is not None and interval.get("high") is not None:
            numbers += f" (difference {interval['value']:+.4g}, 95% interval {interval['low']:+.4g} to {interval['high']:+.4g})"
    breach = f"; critical breach of {', '.join(comparison['critical'])}" if comparison["critical"] else ""
    if champion.status != ModelStatus.PRODUCTION:
        return (
            RetrainDecision.REVIEW,
            f"{numbers}{breach}; the champion left production meanwhile, nothing promoted",
        )
    if policy is None or policy.promotion != "auto":
        return (
            RetrainDecision.REVIEW,
            f"{numbers}{breach}; promotion is manual: promote the challenger on its page",
        )
    needed = policy.min_improvement
    if improvement is not None and improvement >= needed and not comparison["critical"]:
        return RetrainDecision.PROMOTED, f"{numbers} (needs {needed:.1%}), no critical breach: promoted"
    why = breach.lstrip("; ") or f"needs {needed:.1%} better"
    return RetrainDecision.KEPT, f"{numbers}; {why}: the champion stays"


def retrain_decide(*, retrain: Retrain, at: datetime | None = None) -> Retrain:
    """Decide a retrain whose train run has finished (a worker's tick). Claimed with a
    conditional update inside the transaction: two workers never decide one retrain twice,
    and a crash rolls the claim back so a later tick tries again."""
    at = at or timezone.now()
    with transaction.atomic():
        if not Retrain.objects.filter(pk=retrain.pk, status=RetrainStatus.TRAINING).update(decided_at=at):
            return Retrain.objects.get(pk=retrain.pk)
        retrain = Retrain.objects.select_related(
            "champion__recipe",
            "champion__recipe_version",
            "challenger__recipe",
            "challenger__recipe_version",
            "run",
        ).get(pk=retrain.pk)
        champion, challenger, run = retrain.champion, retrain.challenger, retrain.run
        if run is None or run.status != RunStatus.SUCCEEDED or challenger is None:
            what = run.error if run is not None and run.error else (run.status if run is not None else "gone")
            retrain.status, retrain.reason = (
                RetrainStatus.FAILED,
                f"the train run failed ({what}); the champion is untouched",
            )
            if challenger is not None and challenger.status != ModelStatus.ARCHIVED:
                model_set_status(model=challenger, user=None, status=ModelStatus.ARCHIVED, at=at)
        else:
            challenger.refresh_from_db()
            compared = models_compare(
                models=[champion, challenger], window=retrain.window_json["holdout"], retrain=retrain, at=at
            )
            comparison = _decision_numbers(compared.result_json, challenger.pk)
            comparison["comparison_id"] = compared.pk
            policy = retrain_policy(champion.recipe_version.manifest)
            champion.refresh_from_db()
            decision, reason = _verdict(policy, comparison, champion)
            if decision == RetrainDecision.PROMOTED:
                model_set_status(model=challenger, user=None, status=ModelStatus.STAGING, at=at)
                model_set_status(model=challenger, user=None, status=ModelStatus.PRODUCTION, at=at)
            retrain.status, retrain.decision, retrain.reason = RetrainStatus.DECIDED, decision, reason
            retrain.comparison_json = comparison
        retrain.decided_at = at
        retrain.save(update_fields=["status", "decision", "reason", "comparison_json", "decided_at"])
        notify(
            "retrain.decided",
            recipe=champion.recipe,
            payload={
                "summary": f"Retrain of {champion.name}: {retrain.get_decision_display() or retrain.status}",
                "retrain_id": retrain.pk,
                "champion_id": champion.pk,
                "challenger_id": retrain.challenger_id,
                "trigger": retrain.trigger,
                "status": retrain.status,
                "decision": retrain.decision,
                "reason": retrain.reason,
                "comparison_id": (retrain.comparison_json or {}).get("comparison_id"),
            },
            at=at,
        )
        audit.record(
            None,
            "model.retrain_decision",
            champion,
            detail={
                "retrain_id": retrain.pk,
                "status": retrain.status,
                "decision": retrain.decision,
                "reason": retrain.reason,
            },
            at=at,
        )
    return retrain


def finished_retrains():
    """Retrains whose challenger's run has finished and that wait for their decision."""
    return Retrain.objects.filter(status=RetrainStatus.TRAINING, run__status__in=FINISHED)
