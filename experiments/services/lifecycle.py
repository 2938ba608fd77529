"""Starting and stopping experiments (the stop promotes the winner through the model
lifecycle)."""

from __future__ import annotations

import math
import re
from datetime import datetime

from django.db import IntegrityError, transaction
from django.utils import timezone

from audit import services as audit
from mlworkspace.errors import Conflict, field_error
from mlworkspace.ids import new_id
from models_registry.models import MLModel, ModelStatus
from models_registry.services import model_set_status
from notifications.services import notify
from recipes.models import Recipe

from .. import stats
from ..models import Experiment, ExperimentMode, ExperimentStatus, Winner
from ..selectors import experiment_statistics
from .values import finite

UNIT_KEY = re.compile(r"[A-Za-z0-9_.\-]{1,100}")
MAX_HORIZON = 100_000_000


def _number(field: str, value, *, low: float, high: float, inclusive_high: bool = False) -> float:
    if finite(value) is None:
        raise field_error(field, "must be a number")
    if not (low < value < high or (inclusive_high and value == high)):
        top = f"at most {high}" if inclusive_high else f"below {high}"
        raise field_error(field, f"must be above {low} and {top}, got {value}")
    return float(value)


def plan_horizon(
    *,
    horizon: int | None,
    baseline_rate: float | None,
    baseline_sd: float | None,
    mde: float | None,
    alpha: float,
) -> tuple[int, dict]:
    """The units per arm planned up front: given, or computed from a baseline (a rate for 0/1
    outcomes, a standard deviation for numbers) and the minimum detectable effect (absolute)."""
    planned = [
        name for name, v in (("baseline_rate", baseline_rate), ("baseline_sd", baseline_sd)) if v is not None
    ]
    if horizon is not None:
        if planned or mde is not None:
            raise field_error("horizon", "give horizon, or baseline_rate or baseline_sd with mde — not both")
        if isinstance(horizon, bool) or not isinstance(horizon, int) or not 2 <= horizon <= MAX_HORIZON:
            raise field_error("horizon", f"must be a whole number of units per arm from 2 to {MAX_HORIZON}")
        return horizon, {"given": True}
    if not planned:
        raise field_error(
            "horizon",
            "is required: give horizon (units per arm), or baseline_rate (0/1 outcomes) or "
            "baseline_sd (numeric outcomes) with mde, to compute it",
        )
    if len(planned) > 1:
        raise field_error("baseline_sd", "give baseline_rate or baseline_sd, not both")
    if mde is None:
        raise field_error("mde", f"is required with {planned[0]}")
    if baseline_rate is not None:
        rate = _number("baseline_rate", baseline_rate, low=0, high=1)
        effect = _number("mde", mde, low=0, high=1 - rate)
        computed = stats.horizon_for_proportions(rate, effect, alpha)
        how = {"given": False, "baseline_rate": rate, "mde": effect, "alpha": alpha, "power": stats.POWER}
    else:
        sd = _number("baseline_sd", baseline_sd, low=0, high=math.inf)
        effect = _number("mde", mde, low=0, high=math.inf)
        computed = stats.horizon_for_means(sd, effect, alpha)
        how = {"given": False, "baseline_sd": sd, "mde": effect, "alpha": alpha, "power": stats.POWER}
    if computed > MAX_HORIZON:
        raise field_error("mde", f"is too small: it needs {computed} units per arm (at most {MAX_HORIZON})")
    return max(computed, 2), how


def _lock_recipe(recipe_id) -> None:
    """Starts and stops of one recipe's experiments serialise on its row (as its models'
    lifecycle moves do in models_registry.services)."""
    list(Recipe.objects.select_for_update(no_key=True).filter(pk=recipe_id).values_list("pk"))


def _check_models(recipe: Recipe, champion: MLModel, challenger: MLModel) -> None:
    if champion.recipe_id != recipe.id:
        raise field_error("champion_id", f"'{champion.id}' is a model of another recipe")
    if champion.status != ModelStatus.PRODUCTION or champion.serves_alongside:
        raise field_error(
            "champion_id",
            f"'{champion.id}' is not the recipe's production model (it is {champion.status}"
            f"{', serving alongside it' if champion.serves_alongside else ''})",
        )
    if challenger.pk == champion.pk:
        raise field_error("challenger_id", "must be another model than the champion")
    if challenger.recipe_id != recipe.id:
        raise field_error("challenger_id", f"'{challenger.id}' is a model of another recipe")
    if challenger.status == ModelStatus.ARCHIVED:
        raise field_error("challenger_id", f"'{challenger.id}' is archived")
    if not (challenger.artifacts_json or {}).get("model"):
        raise field_error("challenger_id", f"'{challenger.id}' has no trained artifact yet; train it first")


@transaction.atomic
def experiment_start(
    *,
    user,
    recipe: Recipe,
    champion: MLModel,
    challenger: MLModel,
    mode: str,
    unit_key: str,
    split: float | None = None,
    horizon: int | None = None,
    baseline_rate: float | None = None,
    baseline_sd: float | None = None,
    mde: float | None = None,
    alpha: float = 0.05,
    metric: str = "outcome",
    at: datetime | None = None,
) -> Experiment:
    """Start an A/B (`mode` "ab": a `split` share of units is served by the challenger) or
    shadow test (the challenger scores every request unseen) on the recipe's production model.
    The horizon (units per arm) is given or planned from a baseline and `mde`. `at` (a
    datetime) dates the start for seeded history (the demo), default now."""
    if mode not in ExperimentMode.values:
        raise field_error("mode", f"must be one of {', '.join(ExperimentMode.values)}")
    if split is None:
        if mode == ExperimentMode.AB:
            raise field_error(
                "split", "is required for an A/B test: the challenger's share of units, e.g. 0.1"
            )
        split = 0.5  # shadow: every unit sees the champion; stored, not used
    split = _number("split", split, low=0, high=1)
    if not isinstance(unit_key, str) or not UNIT_KEY.fullmatch(unit_key):
        raise field_error("unit_key", "must be a field name of 1-100 letters, digits, '_', '.' or '-'")
    if not isinstance(metric, str) or not metric.strip() or len(metric) > 100:
        raise field_error("metric", "must be a name of at most 100 characters")
    alpha = _number("alpha", alpha, low=0, high=0.5, inclusive_high=True)
    horizon, horizon_json = plan_horizon(
        horizon=horizon, baseline_rate=baseline_rate, baseline_sd=baseline_sd, mde=mde, alpha=alpha
    )
    _lock_recipe(recipe.pk)
    # Fresh rows under the lock: a promotion that just happened is seen.
    fresh = {m.pk: m for m in MLModel.objects.filter(pk__in=[champion.pk, challenger.pk])}
    champion, challenger = fresh.get(champion.pk, champion), fresh.get(challenger.pk, challenger)
    _check_models(recipe, champion, challenger)
    running = Experiment.objects.filter(recipe_id=recipe.pk, status=ExperimentStatus.RUNNING).first()
    if running is not None:
        raise Conflict(
            f"Recipe '{recipe.pk}' already has a running experiment ({running.pk}); stop it first.",
            [{"path": "/recipe_id", "message": f"experiment {running.pk} is running"}],
        )
    experiment = Experiment(
        id=new_id("exp"),
        recipe=recipe,
        champion=champion,
        challenger=challenger,
        mode=mode,
        split=split,
        unit_key=unit_key,
        metric=metric.strip(),
        horizon=horizon,
        horizon_json=horizon_json,
        alpha=alpha,
        started_at=at or timezone.now(),
        created_by=user,
    )
    try:
        with transaction.atomic():
            experiment.save(force_insert=True)
    except IntegrityError:
        # Only reachable if a start bypassed the lock above: a conflict, never a 500.
        raise Conflict(
            f"Recipe '{recipe.pk}' already has a running experiment; reload and try again.",
            [{"path": "/recipe_id", "message": "an experiment is running"}],
        ) from None
    audit.record(user, "experiment.start", experiment, changes=audit.created(experiment), at=at)
    return experiment


# --------------------------------------------------------------------------- stop


@transaction.atomic
def experiment_stop(*, experiment: Experiment, user, winner: str, at: datetime | None = None) -> dict:
    """Stop a running experiment with a decision. "challenger": it is promoted to production
    through models_registry.services.model_set_status (via staging when only registered; the
    champion is demoted to staging there, both audited). "champion"/"none": nothing else
    changes. `at` (a datetime) dates the stop, its promotion and their audit events for
    seeded history (the demo), default now. Returns {"experiment", "promoted": id | None,
    "replaced": [ids]}."""
    if winner not in Winner.values:
        raise field_error("winner", f"must be one of {', '.join(Winner.values)}")
    _lock_recipe(experiment.recipe_id)
    # Its row too: outcomes posted meanwhile wait (experiment_outcomes locks it), so the
    # statistics stored below are the final ones.
    experiment = (
        Experiment.objects.select_for_update(of=("self",))
        .select_related("recipe", "champion", "challenger")
        .get(pk=experiment.pk)
    )
    if not experiment.is_running:
        raise Conflict(
            f"Experiment '{experiment.pk}' was already stopped on {experiment.stopped_at:%Y-%m-%d %H:%M} "
            f"(winner: {experiment.winner}).",
            [{"path": "/winner", "message": "the experiment is not running"}],
        )
    before = audit.snapshot(experiment)
    # Computed before anything changes: the numbers the decision was made on.
    result = experiment_statistics(experiment)
    promoted, replaced = None, []
    if winner == Winner.CHALLENGER:
        challenger = experiment.challenger
        if challenger.status == ModelStatus.ARCHIVED:
            raise Conflict(
                f"The challenger '{challenger.pk}' is archived; it cannot be promoted.",
                [{"path": "/winner", "message": "the challenger is archived"}],
            )
        if challenger.status == ModelStatus.REGISTERED:
            model_set_status(model=challenger, user=user, status=ModelStatus.STAGING, at=at)
        moved = model_set_status(model=challenger, user=user, status=ModelStatus.PRODUCTION, at=at)
        promoted, replaced = challenger.pk, moved["replaced"]
    experiment.status = ExperimentStatus.STOPPED
    experiment.winner = winner
    experiment.stopped_at = at or timezone.now()
    experiment.stopped_by = user
    experiment.result_json = result
    experiment.save(update_fields=["status", "winner", "stopped_at", "stopped_by", "result_json"])
    audit.record(
        user,
        "experiment.stop",
        experiment,
        changes=audit.diff(before, experiment),
        detail={"winner": winner, "promoted": promoted, "replaced": replaced},
        at=at,
    )
    notify(
        "experiment.result",
        recipe=experiment.recipe,
        payload={
            "summary": f"Experiment {experiment.pk} stopped: winner {winner}",
            "experiment_id": experiment.pk,
            "mode": experiment.mode,
            "winner": winner,
            "promoted": promoted,
            "replaced": replaced,
        },
        at=at,
    )
    return {"experiment": experiment, "promoted": promoted, "replaced": replaced}
