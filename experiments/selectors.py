"""Reads of experiments: the statistics (aggregated by the database, analysed by the pure
experiments.stats) and what the model page shows of a model's experiments."""

from __future__ import annotations

from django.db.models import Avg, Case, Count, F, FloatField, OuterRef, Q, Subquery, Sum, Value, When
from django.db.models.functions import Abs

from models_registry import perms as model_perms
from models_registry.models import MLModel, ModelStatus
from recipes import access

from . import stats
from .models import Arm, Experiment, ExperimentMode, ExperimentStatus, Exposure, Outcome

PAST_SHOWN = 20
CANDIDATES_SHOWN = 50


def _moments(queryset, expressions: dict, *, group: str | None = None, extra: dict | None = None) -> dict:
    """{group value: {name: ArmSample}} of each expression over the rows (group None: one
    group, keyed None): the count of its non-null values, their mean and sample variance, plus
    the `extra` aggregates under their names. Two queries: the means, then the squared
    deviations from them — numerically stable (unlike E[x²] − E[x]²) and portable (Django's
    VAR_SAMP on SQLite is a Python aggregate that fails on NULLs and on fewer than 2 values)."""
    first = {}
    for name, expression in expressions.items():
        first[f"{name}__n"] = Count(expression)
        first[f"{name}__mean"] = Avg(expression)
    first.update(extra or {})
    if group is None:
        means = {None: queryset.aggregate(**first)}
    else:
        means = {row[group]: row for row in queryset.values(group).annotate(**first).order_by()}
    squares = {}
    for name, expression in expressions.items():
        if group is None:
            centre = Value(means[None][f"{name}__mean"] or 0.0, output_field=FloatField())
        else:
            centre = Case(
                *(
                    When(**{group: key}, then=Value(row[f"{name}__mean"] or 0.0))
                    for key, row in means.items()
                ),
                default=Value(0.0),
                output_field=FloatField(),
            )
        squares[f"{name}__ss"] = Sum((expression - centre) * (expression - centre), output_field=FloatField())
    if group is None:
        deviations = {None: queryset.aggregate(**squares)}
    else:
        deviations = {row[group]: row for row in queryset.values(group).annotate(**squares).order_by()}
    out = {}
    for key, row in means.items():
        samples = {name: row[name] for name in (extra or {})}
        for name in expressions:
            n, mean = row[f"{name}__n"] or 0, row[f"{name}__mean"]
            ss = (deviations.get(key) or {}).get(f"{name}__ss")
            variance = max(ss, 0.0) / (n - 1) if n >= 2 and ss is not None else None
            samples[name] = stats.ArmSample(int(n), mean if n else None, variance)
        out[key] = samples
    return out


def units_per_arm(experiment: Experiment) -> dict[str, int]:
    counts = dict.fromkeys(Arm.values, 0)
    rows = Exposure.objects.filter(experiment_id=experiment.pk).values("arm").annotate(n=Count("unit"))
    counts.update({row["arm"]: row["n"] for row in rows.order_by()})
    return counts


def _ab_analysis(experiment: Experiment, units: dict[str, int]) -> tuple[dict, dict]:
    by_arm = _moments(
        Outcome.objects.filter(experiment_id=experiment.pk),
        {"value": F("value")},
        group="arm",
        # Outcomes other than 0 and 1: any one makes the metric a mean, not a proportion.
        extra={"other": Count("id", filter=~Q(value__in=[0.0, 1.0]))},
    )
    empty = {"value": stats.ArmSample(0), "other": 0}
    total = sum(row["value"].n for row in by_arm.values())
    binary = total > 0 and not any(row["other"] for row in by_arm.values())
    analysis = stats.analyse(
        by_arm.get(Arm.CHAMPION, empty)["value"],
        by_arm.get(Arm.CHALLENGER, empty)["value"],
        binary=binary,
        alpha=experiment.alpha,
        horizon=experiment.horizon,
    )
    for arm, row in analysis["arms"].items():
        row["units"] = units.get(arm, 0)
    return analysis, {"n": total, "binary": binary}


def _shadow_analysis(experiment: Experiment) -> tuple[dict, dict]:
    exposures = Exposure.objects.filter(experiment_id=experiment.pk, champion_prediction__isnull=False)
    answers = _moments(
        exposures,
        # Null where the challenger could not score the unit (left out of the count).
        {"gap": F("challenger_prediction") - F("champion_prediction")},
        extra={
            "scored": Count("unit"),
            "failed": Count("unit", filter=Q(challenger_prediction__isnull=True)),
            "mean_abs": Avg(Abs(F("challenger_prediction") - F("champion_prediction"))),
        },
    )[None]
    # Each outcome with its unit's latest answers of both models (the unique (experiment,
    # unit) index of exposures finds them).
    exposure = Exposure.objects.filter(experiment_id=OuterRef("experiment_id"), unit=OuterRef("unit"))
    outcomes = Outcome.objects.filter(experiment_id=experiment.pk)
    total = outcomes.count()
    answered = (
        outcomes.annotate(
            champion_answer=Subquery(exposure.values("champion_prediction")[:1]),
            challenger_answer=Subquery(exposure.values("challenger_prediction")[:1]),
        )
        .filter(champion_answer__isnull=False, challenger_answer__isnull=False)
        .annotate(
            champion_error=Abs(F("champion_answer") - F("value")),
            challenger_error=Abs(F("challenger_answer") - F("value")),
        )
    )
    errors = _moments(
        answered,
        {
            "champion": F("champion_error"),
            "challenger": F("challenger_error"),
            "difference": F("challenger_error") - F("champion_error"),
        },
    )[None]
    analysis = stats.shadow_analysis(
        answers["gap"],
        errors["champion"],
        errors["challenger"],
        errors["difference"],
        horizon=experiment.horizon,
        alpha=experiment.alpha,
    )
    analysis["scored"] = answers["scored"]
    analysis["challenger_failed"] = answers["failed"]
    analysis["agreement"]["mean_abs"] = answers["mean_abs"]
    return analysis, {"n": total, "binary": None}


def experiment_statistics(experiment: Experiment) -> dict:
    """Units per arm and the analysis (experiments.stats) of the stored exposures and
    outcomes, aggregated by the database (a fixed number of queries, whatever the traffic).

    A/B: the outcomes of the two arms (per-arm n, mean and interval, the difference, the
    test, final or interim against the horizon, the minimum detectable effect). Shadow: how
    the challenger's answers differ from the champion's for the same units and, once outcomes
    arrive, which model's answers are closer to them (a paired test)."""
    units = units_per_arm(experiment)
    if experiment.mode == ExperimentMode.SHADOW:
        analysis, outcomes = _shadow_analysis(experiment)
    else:
        analysis, outcomes = _ab_analysis(experiment, units)
    return {
        "mode": experiment.mode,
        "metric": experiment.metric,
        "horizon": experiment.horizon,
        "units": units,
        "outcomes": outcomes,
        "analysis": analysis,
    }


def experiments_for_list(user):
    return Experiment.objects.visible_to(user).select_related(
        "recipe", "champion", "challenger", "created_by"
    )


def model_experiments(model: MLModel, user=None) -> dict:
    """What the model page shows of `model`'s experiments (templates/experiments/
    _model_experiments.html renders it): the running one and the past ones where it is
    champion or challenger, with units per arm of the running ones, and whether (and with
    which challengers) an experiment can be started on it. `user`: when given, `can_start`
    also needs that user's write access (the start page checks it anyway)."""
    experiments = list(
        Experiment.objects.filter(Q(champion_id=model.pk) | Q(challenger_id=model.pk))
        .select_related("champion", "challenger")
        .order_by("-started_at", "-id")[: PAST_SHOWN + 1]
    )
    running = [e for e in experiments if e.is_running]
    past = [e for e in experiments if not e.is_running][:PAST_SHOWN]
    if running:
        counts = (
            Exposure.objects.filter(experiment_id__in=[e.pk for e in running])
            .values("experiment_id", "arm")
            .annotate(n=Count("unit"))
            .order_by()
        )
        units = {}
        for row in counts:
            units.setdefault(row["experiment_id"], dict.fromkeys(Arm.values, 0))[row["arm"]] = row["n"]
        for experiment in running:
            experiment.units = units.get(experiment.pk, dict.fromkeys(Arm.values, 0))
    recipe_running = running[0] if running else None
    if recipe_running is None:
        recipe_running = (
            Experiment.objects.filter(recipe_id=model.recipe_id, status=ExperimentStatus.RUNNING)
            .only("id", "mode", "champion_id", "challenger_id")
            .first()
        )
    is_champion = model.status == ModelStatus.PRODUCTION and not model.serves_alongside
    candidates = []
    if is_champion and recipe_running is None:
        # Trained: the rule of experiments.services (a recorded model artifact).
        others = (
            MLModel.objects.filter(recipe_id=model.recipe_id, artifacts_json__has_key="model")
            .exclude(pk=model.pk)
            .exclude(status=ModelStatus.ARCHIVED)
            .only("id", "name", "status", "challenger_of_id", "created_at", "artifacts_json")
            .order_by("-created_at", "-id")[:CANDIDATES_SHOWN]
        )
        candidates = [m for m in others if m.artifacts_json.get("model")]
    if not is_champion:
        why_not = "Experiments start on the recipe's production model (the champion)."
    elif recipe_running is not None:
        why_not = f"Experiment {recipe_running.pk} is running on this recipe; stop it first."
    elif not candidates:
        why_not = (
            "No other trained model of this recipe to test against: train or retrain a challenger first."
        )
    else:
        why_not = ""
    may_write = user is None or (
        access.can_write(user, model)
        and (access.is_client_object(model) or user.has_perm(model_perms.CHANGE_MODEL))
    )
    return {
        "model": model,
        "running": running,
        "past": past,
        "recipe_running": recipe_running,
        "candidates": candidates,
        "can_start": not why_not and may_write,
        "why_not": why_not,
        "modes": ExperimentMode.choices,
    }
