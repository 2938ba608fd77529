"""The production loop of the demo's site scorer, run through the same services the workers,
the pages and the API call: daily checks of its synthetic world (a covariate-drift episode,
then a concept change), the retrains its calibration alert starts and a person's review of
each (the recipe's promotion is manual), an A/B test of the challenger that won on the
held-out window — real traffic routed by the predict endpoint's code, outcomes from the
world's real labels — whose result promotes it, and the new champion's batch scoring. Every
write is dated in one timeline: the daily checks, each retrain and review hours after the
check that started it, the A/B test's daily traffic after the last check and its stop, then
the scoring at seeding."""

from __future__ import annotations

import json
import time
from collections import Counter
from datetime import datetime, timedelta

from django.utils import timezone

from experiments.models import ExperimentMode, Winner
from experiments.selectors import experiment_statistics
from experiments.services import experiment_outcomes, experiment_predict, experiment_start, experiment_stop
from models_registry.models import MLModel, ModelStatus
from models_registry.services import model_set_status
from monitoring.models import Retrain, RetrainDecision, RetrainStatus
from monitoring.services import (
    model_check,
    retrain_decide,
    scoring_check,
    scoring_claim_check,
    scoring_next_batch,
    scoring_outcomes,
    scoring_start,
    synthetic_batch,
)
from recipes.manifest import grain_columns
from runs.families import get_family, worlds
from runs.services import run_move_in_time, synthetic_resolve

from .builder import DemoBuilder

# Rows of each daily monitoring batch: enough for stable PSI and ranking metrics.
BATCH_ROWS = 1500
# Site-scoring feature shifted during the drift episode (a numeric monitoring.drift feature).
DRIFT_FEATURE = "population_3km"
# Batch scoring of the production site scorer (deployment.mode: batch): its last few runs.
SCORED_BATCHES = 3
# Checks of the last ATTRIBUTION_DAYS days of a history also compute attribution drift.
ATTRIBUTION_DAYS = 7
# The person's bar for testing a challenger on live traffic: this much better (relative) on the
# retrain's held-out window, on the family's primary metric, with no critical breach.
AB_MIN_IMPROVEMENT = 0.02
# The A/B test: half of the sites to each arm; AB_BATCHES predict requests of AB_BATCH_ROWS
# sites, one day of the world each (after the last day checked), reach AB_HORIZON sites with an
# outcome per arm (about 350 per arm: a site seen twice counts once). The outcome of a site is
# how far the sales forecast its arm served missed its realised annual sales: the champion
# still forecasts the sales of the world before the competitor opened.
AB_SPLIT = 0.5
AB_BATCHES = 4
AB_BATCH_ROWS = 200
AB_HORIZON = 250
# The lead reviews a retrain's decision this long after it is made.
REVIEW_DELAY = timedelta(hours=1)
# The A/B test's steps: it starts this long after the review that asked for it, its first
# day's traffic comes this long after the champion's last check (or the start, if later) and
# each next day's a day later, the outcomes of a day's traffic are posted this long after it,
# and the test is stopped this long after the last outcomes.
AB_STEP = timedelta(hours=1)


def drift_schedule(days: int) -> dict[int, float]:
    """Day index (0 = oldest) -> shift in reference standard deviations of DRIFT_FEATURE.

    The episode covers about 44-61% of the history (days 40-54 of 90) and grows from 0.4 to
    0.8 standard deviations in its first half (PSI from about 0.3 to above 1, where the
    model's calibration suffers too); outside it there is no shift, so the alerts resolve on
    the first day after it."""
    start = int(days * 0.44)
    end = max(start + 2, int(days * 0.61))
    if end >= days:  # too short a history for an episode with a recovery after it
        return {}
    length = end - start
    return {d: round(0.4 + 0.4 * min(1.0, 2 * (d - start) / length), 2) for d in range(start, end)}


def concept_schedule(days: int) -> set[int]:
    """Day indexes of the concept change: the last 3% of the history, at least two days (days
    88-90 of 90), after the covariate-drift episode. A competitor opens and stays: the features
    do not move, only the ground truth does, so the calibration alert opens, the recipe's
    retraining policy trains a challenger on the new ground truth, it wins on the held-out
    window, and the A/B test that decides its promotion follows (ab_test: its traffic on the
    days the history leaves free after its last check)."""
    start = days - max(2, round(days * 0.03))
    if start < 1 or start <= max(drift_schedule(days), default=-1) + 1:
        return set()
    return set(range(start, days))


def history(
    demo: DemoBuilder,
    model: MLModel,
    *,
    days: int,
    rows: int,
    shifts: dict[int, float] | None = None,
    concepts: set[int] | None = None,
) -> tuple[MLModel, MLModel | None]:
    """One scheduled check a day, oldest first, ending yesterday: consecutive one-day
    windows of the model's own synthetic world, continuing after its training data (each
    check resolves the window after the previous one), with the covariate drift of
    `shifts` and the family's concept change on the days of `concepts`. A retrain that a
    check starts (the recipe's retraining policy) is trained and decided two hours later,
    as the workers would, and reviewed by the demo's lead (`review`). Returns the production
    model at the end and the challenger the lead wants to A/B test (None if none).

    A history with a concept change ends AB_BATCHES days ago instead: the challenger its
    retrain trains may be A/B tested, and the test's AB_BATCHES daily requests follow the
    last check (ab_test), the first hours after it, the last about a day before seeding."""
    shifts = shifts or {}
    concepts = concepts or set()
    concept = next(iter(get_family(model.recipe.model_family).CONCEPTS))
    # Ending earlier, it starts earlier too: still after the demo's earlier steps, whose last
    # comes days before the end of builder.LEAD_DAYS (workspace/tests/test_demo_timeline.py
    # checks the order).
    last = timezone.now().replace(minute=0, second=0, microsecond=0) - timedelta(
        days=AB_BATCHES if concepts else 1
    )
    started = time.monotonic()
    candidate = None
    for day in range(days):
        k = shifts.get(day, 0)
        synthetic = {"rows": rows, "periods": 1}
        if k:
            synthetic["shift"] = {DRIFT_FEATURE: k}
        if day in concepts:
            synthetic["concept"] = concept
        captured_at = last - timedelta(days=days - 1 - day)
        # Attribution drift (explaining a sample of the batch: ~1-6 s a check) on the last
        # ATTRIBUTION_DAYS checks only: the Monitoring tab shows its recent history, and seeding
        # 90 days of four families does not take 10 minutes longer.
        snapshot = model_check(
            model=model,
            source="scheduled",
            synthetic=synthetic,
            captured_at=captured_at,
            with_attribution=day >= days - ATTRIBUTION_DAYS,
        )
        firing = [name for name, r in snapshot.alerts_json.items() if r.get("firing")]
        if k or firing or day in concepts:
            psi = snapshot.drift_metrics_json.get("max_psi")
            shifted = f"{DRIFT_FEATURE} shifted {k} sd, " if k else ""
            changed = f"concept change '{concept}', " if day in concepts else ""
            psi_text = f"max PSI {psi:.2f}, " if isinstance(psi, (int, float)) else ""
            demo.say(
                f"  day {day + 1}/{days}: {shifted}{changed}{psi_text}firing: {', '.join(firing) or 'nothing'}"
            )
        model, waiting = retrains(demo, model, captured_at + timedelta(hours=2))
        candidate = waiting or candidate
    batch = ((snapshot.data_freshness_json or {}).get("batch") or {}) if days else {}
    window = batch.get("window") or {}
    world = f" (world seed {batch['seed']}, up to {window.get('end')})" if batch else ""
    demo.say(f"  {days} daily checks{world} in {time.monotonic() - started:.1f}s")
    return model, candidate


def retrains(demo: DemoBuilder, model: MLModel, at: datetime) -> tuple[MLModel, MLModel | None]:
    """Train and decide the retrains of `model` that a check just started (the workers'
    job), dated `at`. Returns the production model after the decision and the challenger a
    review picked for an A/B test (None if none)."""
    candidate = None
    for retrain in Retrain.objects.filter(champion=model, status=RetrainStatus.TRAINING):
        demo.say(f"  retrain ({retrain.get_trigger_display().lower()}): {retrain.reason}")
        run = demo.execute(retrain.run)
        run_move_in_time(run=run, at=at)
        decided = retrain_decide(retrain=retrain, at=at + timedelta(hours=1))
        demo.say(f"  retrain decided: {decided.get_decision_display() or decided.status}: {decided.reason}")
        if decided.decision == RetrainDecision.PROMOTED:
            model = MLModel.objects.get(pk=decided.challenger_id)
            demo.summary["models"].append(model)
        elif decided.decision == RetrainDecision.REVIEW:
            candidate = review(demo, decided, decided.decided_at + REVIEW_DELAY) or candidate
    return model, candidate


def review(demo: DemoBuilder, retrain: Retrain, at: datetime) -> MLModel | None:
    """The lead's review of a retrain the policy left to a person (promotion manual), on the
    numbers of its comparison: a challenger at least AB_MIN_IMPROVEMENT better on the held-out
    window with no critical breach is returned, to be A/B tested on live traffic; any other is
    archived at `at` and the champion stays."""
    numbers = retrain.comparison_json or {}
    improvement, critical = numbers.get("improvement"), numbers.get("critical") or []
    challenger = MLModel.objects.get(pk=retrain.challenger_id)
    if improvement is not None and improvement >= AB_MIN_IMPROVEMENT and not critical:
        demo.say(
            f"  the lead's review: the challenger is {improvement:.1%} better on the held-out window; "
            "an A/B test on live traffic decides its promotion"
        )
        return challenger
    if improvement is None:
        why = f"its {numbers.get('metric')} could not be compared"
    else:
        why = f"{abs(improvement):.1%} {'better' if improvement >= 0 else 'worse'} on the held-out window"
        why += f", critical breach of {', '.join(critical)}" if critical else ""
    model_set_status(model=challenger, user=demo.user, status=ModelStatus.ARCHIVED, at=at)
    demo.say(f"  the lead's review: the champion stays (the challenger is {why}); challenger archived")
    return None


def _winner(analysis: dict) -> str:
    """The decision the statistics support: the arm with the lower error when the test is final
    and significant, else no winner (nothing changes)."""
    if not analysis.get("final") or not analysis.get("significant"):
        return Winner.NONE
    return Winner.CHALLENGER if analysis["difference"]["value"] < 0 else Winner.CHAMPION


def ab_test(demo: DemoBuilder, champion: MLModel, challenger: MLModel) -> MLModel:
    """The lead's A/B test of `challenger` against the production model, through the services
    the API calls: started on the recipe (half of the units, by the family's grain column),
    fed AB_BATCHES requests of the next days of the world (experiment_predict: each site
    served by its arm's model, as POST /models/{id}/predict routes it), each site's outcome —
    the absolute error of the sales forecast it was served against its realised annual sales,
    the world's label — posted (as POST /experiments/{id}/outcomes), then stopped with the
    winner the statistics support, which promotes it through the model lifecycle. Returns the
    production model after it.

    Dated in the history's timeline (the services' `at`): started AB_STEP after the lead's
    review of the retrain that trained `challenger`; the requests a day apart, the first
    AB_STEP after the champion's last check (they serve the world's days after the checked
    ones), each one's outcomes AB_STEP after it; stopped AB_STEP after the last outcomes,
    before the scoring, which is dated at seeding."""
    recipe = champion.recipe
    manifest = champion.recipe_version.manifest
    family = get_family(recipe.model_family)
    unit_key = grain_columns(manifest)[0]
    labels = list(manifest["requirements"]["labels"])
    metric = f"abs_error_{labels[0]}"
    retrain = Retrain.objects.get(challenger=challenger)
    started_at = retrain.decided_at + REVIEW_DELAY + AB_STEP
    last_check = champion.snapshots.latest("captured_at").captured_at
    first_served_at = max(started_at, last_check) + AB_STEP
    experiment = experiment_start(
        user=demo.user,
        recipe=recipe,
        champion=champion,
        challenger=challenger,
        mode=ExperimentMode.AB,
        split=AB_SPLIT,
        unit_key=unit_key,
        horizon=AB_HORIZON,
        metric=metric,
        at=started_at,
    )
    demo.summary["experiments"].append(experiment)
    demo.say(
        f"A/B test {experiment.pk}: '{challenger.name}' serves {AB_SPLIT:.0%} of the sites "
        f"(by {unit_key}); outcome {metric} (lower is better); horizon {AB_HORIZON} sites per arm"
    )
    errors: dict[str, float] = {}  # unit -> absolute error of the first answer it was served
    batch = synthetic_batch(champion, {"rows": AB_BATCH_ROWS, "periods": 1})
    for i in range(AB_BATCHES):
        if i:
            batch = synthetic_resolve(
                family_name=family.NAME, synthetic={"rows": AB_BATCH_ROWS, "periods": 1}, after=batch
            )
        frame = worlds.generate(family, batch)
        # The endpoint takes complete rows (a null feature is a 400): the few sites without a
        # traffic counter are left to the batch scoring.
        frame = frame.dropna().reset_index(drop=True)
        rows = json.loads(frame.drop(columns=labels).to_json(orient="records", date_format="iso"))
        served_at = first_served_at + timedelta(days=i)
        answer = experiment_predict(champion, rows, at=served_at)
        fresh = []
        for row, served, actual in zip(rows, answer["predictions"], frame[labels[0]], strict=True):
            unit = str(row[unit_key])
            if unit not in errors:  # a site requested again keeps its arm; its outcome is its first answer's
                errors[unit] = abs(float(served) - float(actual))
                fresh.append(unit)
        posted = experiment_outcomes(
            experiment=experiment,
            outcomes=[{"unit": unit, "value": errors[unit]} for unit in fresh],
            user=demo.user,
            at=served_at + AB_STEP,
        )
        arms = Counter(answer["arms"])
        demo.say(
            f"  {served_at:%Y-%m-%d}, day {batch['window']['start']} of the world: {len(rows)} sites "
            f"predicted ({arms['champion']} champion, {arms['challenger']} challenger); "
            f"{posted['recorded']} outcomes posted, {posted['unknown_units']} unknown"
        )
    analysis = experiment_statistics(experiment)["analysis"]
    for arm, row in analysis["arms"].items():
        mean = f"{row['mean']:,.0f}" if row["mean"] is not None else "—"
        demo.say(f"  {arm}: {row['n']} sites with an outcome, mean {metric} {mean}")
    if analysis["difference"] is not None:
        d = analysis["difference"]
        demo.say(f"  challenger − champion {d['value']:,.0f} ({d['low']:,.0f} to {d['high']:,.0f})")
    demo.say(f"  {analysis['statement']}")
    winner = _winner(analysis)
    stopped = experiment_stop(
        experiment=experiment, user=demo.user, winner=winner, at=served_at + 2 * AB_STEP
    )
    if stopped["promoted"]:
        promoted = MLModel.objects.get(pk=stopped["promoted"])
        demo.summary["models"].append(promoted)
        replaced = ", ".join(f"'{champion.name}'" if pk == champion.pk else pk for pk in stopped["replaced"])
        demo.say(
            f"  stopped, winner {winner}: '{promoted.name}' → production (replaced {replaced or 'nothing'})"
        )
        return promoted
    demo.say(f"  stopped, winner {winner}: '{champion.name}' stays in production")
    return MLModel.objects.get(pk=champion.pk)


def scoring(demo: DemoBuilder, model: MLModel, *, batches: int, rows: int) -> None:
    """The next `batches` scorings of the batch-mode model, as the workers run them: each
    slot's next window scored by a real score run and checked; the oldest batch then gets its
    outcomes (the synthetic world's real labels for that window). They are the demo's last
    steps, after the A/B test (stopped hours before seeding), so each is dated when it runs."""
    family = get_family(model.recipe.model_family)
    manifest = model.recipe_version.manifest
    scored = []
    for _ in range(batches):
        when = timezone.now()
        dataset, batch = scoring_next_batch(model, rows=rows)
        scoring = scoring_start(model=model, scheduled_for=when, dataset=dataset, batch=batch)
        demo.execute(scoring.run)
        run_move_in_time(run=scoring.run, at=when)
        scoring_claim_check(scoring, when)
        scoring_check(batch=scoring, captured_at=when)
        scored.append(scoring)
    first = scored[0]
    truth = worlds.generate(family, first.batch_json)
    keys = [*grain_columns(manifest), *manifest["requirements"]["labels"]]
    result = scoring_outcomes(batch=first, rows=truth[keys].to_dict("records"), user=demo.user)
    demo.say(
        f"  {batches} scored batches of '{model.name}'; outcomes for {first.window_key}: "
        f"{result['outcome_rows']} rows matched, {result['unmatched_rows']} unmatched"
    )
