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

import io
import logging
import math
from datetime import datetime

import pandas as pd
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, transaction
from django.db.models import Sum
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict
from mlworkspace.ids import new_id
from models_registry.models import MLModel, ModelStatus
from models_registry.services import model_register, model_set_status
from notifications.services import notify
from recipes.retraining import RetrainPolicy
from recipes.retraining import policy as retrain_policy
from runs import dataset_files
from runs.families import get_family, worlds
from runs.models import Dataset, DatasetPurpose, DatasetStatus, Run, RunStatus, RunType
from runs.selectors import model_training_batch
from runs.services import dataset_create, run_start, synthetic_resolve

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
    dataset (recorded, so the run is reproducible)."""
    datasets = list(
        Dataset.objects.filter(
            recipe_id=champion.recipe_id, status=DatasetStatus.READY, purpose=DatasetPurpose.TRAINING
        ).order_by("-created_at", "-id")[: count + 1]
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
        frame = pd.concat([dataset_files.read_frame(d) for d in reversed(used)], ignore_index=True)
        buffer = io.BytesIO()
        frame.to_parquet(buffer, index=False)
        train = dataset_create(
            user=user,
            upload=SimpleUploadedFile("retrain.parquet", buffer.getvalue()),
            name=f"Retrain data: {', '.join(d.name for d in reversed(used))}"[:200],
            recipe=champion.recipe,
            client=champion.recipe.client,
        )
    window = {"train": {"dataset_ids": [d.pk for d in reversed(used)], "dataset_id": train.pk}}
    return train, window | {"holdout": {"dataset_id": holdout.pk, "name": holdout.name}}


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
