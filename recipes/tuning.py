"""The training stage's ``tuning`` section: what a ``tune`` run searches, and how.

Plain Python (no Django import): the manifest validator (``recipes.manifest``) checks the
section here, the tune run (``runs.tuning``) reads it with ``config`` and writes the trials'
parameters into a manifest with ``apply_params`` — the same function "Save best as new
version" uses, so a saved version holds exactly what the best trial trained with.

    pipeline.stages[type=training].config.tuning:
      metric: rank_correlation      # a metric of the family; default: its primary metric
      direction: maximize           # minimize | maximize; default: the metric's better side
      n_trials: 30                  # 1..500 (default 20): finished trials the study aims for
      timeout: "30 minutes"         # minutes, hours, days or weeks; absent: no time limit
      seed: 0                       # the TPE sampler's seed (default 0)
      parallel: 2                   # 1..8 (default 1): trials run at once, each on a thread
      workers: 2                    # 1..8 (default 1): worker processes running trials at once
      space:                        # hyperparameters of the training stage, each one of
        num_leaves: {type: int, low: 8, high: 128}           # int (step optional)
        feature_fraction: {type: float, low: 0.5, high: 1.0} # float (step optional)
        learning_rate: {type: log, low: 0.01, high: 0.3}     # float on a log scale, low > 0
        objective: {type: categorical, choices: [regression, huber]}

Only hyperparameters the family's training code reads can be tuned (``TUNABLE``): a name the
model ignores would make every trial the same model.
"""

from __future__ import annotations

import copy
import difflib
import math
import re
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from . import catalog
from .retraining import parse_duration

PARAM_TYPES = ("int", "float", "log", "categorical")
DIRECTIONS = ("minimize", "maximize")
DEFAULT_N_TRIALS = 20
MAX_N_TRIALS = 500
TIMEOUT_EXAMPLE = "'30 minutes' or '2 hours' (minutes, hours, days or weeks)"
# "<n> minutes" on top of recipes.retraining.parse_duration (hours, days, weeks): a study is
# often budgeted in minutes.
_MINUTES_RE = re.compile(r"^\s*([0-9]{1,6})\s*minutes?\s*$", re.IGNORECASE)

Path_ = tuple[str | int, ...]


# --------------------------------------------------------------------------- what can be tuned


@dataclass(frozen=True)
class Hyper:
    """A hyperparameter the family's training code reads: its kind (int, float, bool or str),
    the values it accepts ([low, high], None = unbounded; ``open_low``: low itself excluded)
    and, for text, its allowed values (empty: any)."""

    kind: str
    low: float | None = None
    high: float | None = None
    open_low: bool = False
    values: tuple[str, ...] = ()


_POSITIVE = Hyper("float", 0, None, open_low=True)
_FRACTION = Hyper("float", 0, 1, open_low=True)
_NONNEGATIVE = Hyper("float", 0, None)
_LIGHTGBM = {
    "learning_rate": _POSITIVE,
    "num_leaves": Hyper("int", 2, 131072),
    "max_depth": Hyper("int", -1, None),
    "min_data_in_leaf": Hyper("int", 0, None),
    "feature_fraction": _FRACTION,
    "bagging_fraction": _FRACTION,
    "bagging_freq": Hyper("int", 0, None),
    "lambda_l1": _NONNEGATIVE,
    "lambda_l2": _NONNEGATIVE,
    "min_gain_to_split": _NONNEGATIVE,
    "objective": Hyper("str", values=("regression", "regression_l1", "huber", "fair", "poisson")),
}

# Family -> the hyperparameters its `fit` reads from the training stage's `hyperparameters`
# (runs/families/*.py; runs/tests/test_tuning_families.py checks this table against them).
TUNABLE: dict[str, dict[str, Hyper]] = {
    # LightGBM params go to lightgbm.train as they are; n_estimators is the number of rounds.
    "forecasting": {"n_estimators": Hyper("int", 1, 100_000), **_LIGHTGBM},
    # The same, but the rounds are num_boost_round (n_estimators is only an alias of it,
    # ignored when num_boost_round is set, as in the baseline).
    "location_scoring": {"num_boost_round": Hyper("int", 1, 100_000), **_LIGHTGBM},
    # Its own names (runs/families/next_best_action.py _HYPER_DEFAULTS); others are ignored.
    "next_best_action": {
        "n_estimators": Hyper("int", 1, 100_000),
        "learning_rate": _POSITIVE,
        "num_leaves": Hyper("int", 2, 131072),
        "min_child_samples": Hyper("int", 0, None),
        "reg_lambda": _NONNEGATIVE,
        "feature_fraction": _FRACTION,
        "bagging_fraction": _FRACTION,
        "max_depth": Hyper("int", -1, None),
    },
    # The log-log demand model (runs/families/pricing.py DEFAULT_HYPERPARAMETERS).
    "pricing": {
        "per_segment": Hyper("bool"),
        "fourier_order": Hyper("int", 0, 10),
        "trend": Hyper("bool"),
        "cov_type": Hyper("str", values=("HC1", "nonrobust")),
        "ci_level": Hyper("float", 0, 1, open_low=True),
        "min_segment_rows": Hyper("int", 1, None),
    },
}
# Names a family does not read, and the one it reads for the same thing.
SYNONYMS: dict[str, dict[str, str]] = {
    "location_scoring": {"n_estimators": "num_boost_round"},
    "next_best_action": {
        "min_data_in_leaf": "min_child_samples",
        "lambda_l2": "reg_lambda",
        "num_boost_round": "n_estimators",
    },
    "forecasting": {"num_boost_round": "n_estimators"},
}
# Forecasting's hyperparameters are LightGBM's: they change nothing unless LightGBM trains.
_LIGHTGBM_FAMILIES = ("forecasting",)
# Families that hand bagging_fraction to LightGBM as it is (next_best_action sets the
# frequency itself): without bagging_freq it changes nothing.
_BAGGING_NEEDS_FREQ = ("forecasting", "location_scoring")


# --------------------------------------------------------------------------- reading a valid section


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # int | float | log | categorical
    low: float | None = None
    high: float | None = None
    step: float | None = None
    choices: tuple = ()


@dataclass(frozen=True)
class TuningConfig:
    metric: str
    direction: str  # minimize | maximize
    n_trials: int
    timeout: timedelta | None
    seed: int
    space: tuple[Param, ...]
    parallel: int = 1  # trials at once (Optuna's n_jobs: threads sharing the study)
    workers: int = 1  # worker processes sharing the study: the tune run's own and workers - 1 assists


def training_stage(manifest: Any) -> tuple[int, dict] | None:
    """(index, stage) of the manifest's training stage, or None."""
    stages = ((manifest or {}).get("pipeline") or {}).get("stages") if isinstance(manifest, dict) else None
    for index, stage in enumerate(stages if isinstance(stages, list) else []):
        if isinstance(stage, dict) and stage.get("type") == "training":
            return index, stage
    return None


def section(manifest: Any) -> dict | None:
    """The training stage's tuning section (None when there is none)."""
    found = training_stage(manifest)
    config = found[1].get("config") if found else None
    tuning = config.get("tuning") if isinstance(config, dict) else None
    return tuning if isinstance(tuning, dict) else None


def default_direction(family: str | None, metric: str) -> str | None:
    """maximize for a higher-is-better metric of the family, minimize for a lower one."""
    better = catalog.metric_direction(family or "", metric)
    if better is None:
        return None
    return "maximize" if better == catalog.HIGHER else "minimize"


def parse_timeout(text: Any) -> timedelta:
    """'30 minutes' -> timedelta(minutes=30); hours, days and weeks as parse_duration reads
    them. ValueError naming the accepted forms otherwise (and for a zero timeout)."""
    minutes = _MINUTES_RE.match(text) if isinstance(text, str) else None
    if minutes:
        value = timedelta(minutes=int(minutes[1]))
    else:
        try:
            value = parse_duration(text)
        except ValueError:
            shown = repr(text) if isinstance(text, str) else type(text).__name__
            raise ValueError(f"must be like {TIMEOUT_EXAMPLE}, got {shown}") from None
    if value <= timedelta(0):
        raise ValueError(f"must be more than zero, like {TIMEOUT_EXAMPLE}")
    return value


def config(manifest: dict, family: str) -> TuningConfig | None:
    """The tuning section of a valid manifest with its defaults; None without one."""
    raw = section(manifest)
    if raw is None:
        return None
    metric = raw.get("metric") or catalog.PRIMARY_METRIC[family]
    timeout = raw.get("timeout")
    space = tuple(
        Param(
            name=name,
            type=spec["type"],
            low=spec.get("low"),
            high=spec.get("high"),
            step=spec.get("step"),
            choices=tuple(spec.get("choices") or ()),
        )
        for name, spec in raw["space"].items()
    )
    return TuningConfig(
        metric=metric,
        direction=raw.get("direction") or default_direction(family, metric) or "minimize",
        n_trials=int(raw.get("n_trials", DEFAULT_N_TRIALS)),
        timeout=parse_timeout(timeout) if timeout is not None else None,
        seed=int(raw.get("seed", 0)),
        space=space,
        parallel=int(raw.get("parallel", 1)),
        workers=int(raw.get("workers", 1)),
    )


def apply_params(manifest: dict, params: dict) -> dict:
    """A deep copy of ``manifest`` whose training stage's hyperparameters hold ``params``
    (the other hyperparameters kept). Raises ValueError without a training stage."""
    out = copy.deepcopy(manifest)
    found = training_stage(out)
    if found is None:
        raise ValueError("the manifest has no training stage")
    stage = found[1]
    if not isinstance(stage.get("config"), dict):
        stage["config"] = {}
    hyper = stage["config"].get("hyperparameters")
    stage["config"]["hyperparameters"] = {**(hyper if isinstance(hyper, dict) else {}), **params}
    return out


def current_values(manifest: dict, space: tuple[Param, ...]) -> dict:
    """The version's own values of the tuned hyperparameters that lie inside the space (the
    study's first trial: the baseline the search has to beat)."""
    found = training_stage(manifest)
    hyper = ((found[1].get("config") or {}).get("hyperparameters") or {}) if found else {}
    out = {}
    for p in space:
        value = hyper.get(p.name) if isinstance(hyper, dict) else None
        if value is None:
            continue
        if p.type == "categorical":
            if any(_same(value, c) for c in p.choices):
                out[p.name] = value
        elif _number(value) and p.low <= value <= p.high:
            if p.type == "int" and not float(value).is_integer():
                continue
            out[p.name] = int(value) if p.type == "int" else float(value)
    return out


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


# --------------------------------------------------------------------------- validation


def check(manifest: dict, family: str | None, clean) -> list[tuple[Path_, str]]:
    """Semantic problems of every stage's ``config.tuning`` (the schema checked its shape;
    ``clean(path)`` says whether the schema found nothing wrong there): [(path, message)]."""
    errors: list[tuple[Path_, str]] = []
    stages = (
        ((manifest.get("pipeline") or {}).get("stages"))
        if isinstance(manifest.get("pipeline"), dict)
        else None
    )
    if not isinstance(stages, list):
        return errors
    for index, stage in enumerate(stages):
        if not isinstance(stage, dict) or not isinstance(stage.get("config"), dict):
            continue
        tuning = stage["config"].get("tuning")
        base: Path_ = ("pipeline", "stages", index, "config", "tuning")
        if tuning is None:
            continue
        if stage.get("type") != "training":
            if stage.get("type") in catalog.STAGE_TYPES:
                errors.append(
                    (
                        base,
                        f"'tuning' belongs in the training stage's config, not in a '{stage['type']}' stage",
                    )
                )
            continue
        if isinstance(tuning, dict):
            errors.extend(_check_section(stage, tuning, family, base, clean))
    return errors


def _check_section(stage: dict, tuning: dict, family: str | None, base: Path_, clean) -> list:
    """Each field only where the schema found nothing wrong (its messages say it already)."""
    errors: list[tuple[Path_, str]] = []
    metric = tuning.get("metric")
    if family is not None and clean((*base, "metric")) and clean((*base, "direction")):
        known = catalog.METRICS.get(family, {})
        if isinstance(metric, str) and metric not in known:
            errors.append(
                (
                    (*base, "metric"),
                    f"'metric' {metric!r} is not a metric the {family} model reports; "
                    f"{_hint([metric], known)}",
                )
            )
        name = metric if isinstance(metric, str) else catalog.PRIMARY_METRIC[family]
        direction = tuning.get("direction")
        better = default_direction(family, name) if name in known else None
        if direction in DIRECTIONS and better is not None and direction != better:
            errors.append(
                (
                    (*base, "direction"),
                    f"'direction' {direction!r} would look for the worst {name}: {name} is "
                    f"{'higher' if better == 'maximize' else 'lower'}-is-better, so use {better!r} (or leave it out)",
                )
            )
    timeout = tuning.get("timeout")
    if isinstance(timeout, str) and clean((*base, "timeout")):
        try:
            parse_timeout(timeout)
        except ValueError as exc:
            errors.append(((*base, "timeout"), f"'timeout' {exc}"))
    space = tuning.get("space")
    if isinstance(space, dict):
        tunable = TUNABLE.get(family or "")
        for name, spec in space.items():
            if isinstance(spec, dict) and clean((*base, "space", name)):
                errors.extend(_check_param(name, spec, tunable, family, (*base, "space", name)))
        if family in _LIGHTGBM_FAMILIES and space:
            errors.extend(_check_uses_lightgbm(stage, family, base))
        if family in _BAGGING_NEEDS_FREQ and "bagging_fraction" in space and "bagging_freq" not in space:
            hyper = (stage.get("config") or {}).get("hyperparameters")
            freq = hyper.get("bagging_freq", 0) if isinstance(hyper, dict) else 0
            if not (_number(freq) and freq >= 1):
                errors.append(
                    (
                        (*base, "space", "bagging_fraction"),
                        "space 'bagging_fraction': LightGBM bags rows only with bagging_freq of 1 or more, "
                        "and the training stage has none: set hyperparameters.bagging_freq (or tune it too)",
                    )
                )
    return errors


def _check_uses_lightgbm(stage: dict, family: str, base: Path_) -> list:
    config = stage.get("config") or {}
    algorithm = config.get("algorithm", "auto")
    candidates = config.get("candidates")
    uses = algorithm == "lightgbm" or (
        algorithm == "auto" and (not isinstance(candidates, list) or "lightgbm" in candidates)
    )
    if uses:
        return []
    return [
        (
            (*base, "space"),
            f"the {family} hyperparameters tune LightGBM, but the training stage's algorithm is "
            f"{algorithm!r}{' without lightgbm among its candidates' if algorithm == 'auto' else ''}: "
            "every trial would train the same model",
        )
    ]


def _check_param(name: str, spec: dict, tunable: dict | None, family: str | None, path: Path_) -> list:
    kind = spec.get("type")
    label = f"space '{name}'"
    if tunable is not None and name not in tunable:
        synonym = SYNONYMS.get(family or "", {}).get(name)
        hint = f"the {family} model calls it '{synonym}'" if synonym else _hint([name], tunable)
        return [(path, f"{label}: '{name}' is not a hyperparameter the {family} model reads; {hint}")]
    hyper = (tunable or {}).get(name)
    errors: list[tuple[Path_, str]] = []
    misplaced = ("choices",) if kind != "categorical" else ("low", "high", "step")
    if kind == "log":
        misplaced = ("choices", "step")
    for field in misplaced:
        if field in spec:
            errors.append(((*path, field), f"{label}: '{field}' does not apply to type '{kind}'"))
    if kind == "categorical":
        return errors + _check_choices(label, spec.get("choices"), hyper, path)
    if hyper is not None and hyper.kind in ("bool", "str"):
        return errors + [
            (
                (*path, "type"),
                f"{label}: '{name}' takes {'true or false' if hyper.kind == 'bool' else 'text'}: "
                "use type 'categorical' with its choices",
            )
        ]
    if hyper is not None and hyper.kind == "int" and kind in ("float", "log"):
        errors.append(((*path, "type"), f"{label}: '{name}' takes whole numbers: use type 'int'"))
    low, high = spec.get("low"), spec.get("high")
    for field, value in (("low", low), ("high", high)):
        if value is None:
            errors.append(((*path, field), f"{label}: type '{kind}' needs '{field}'"))
        elif kind == "int" and _number(value) and not float(value).is_integer():
            errors.append(
                ((*path, field), f"{label}: '{field}' must be a whole number for type 'int', got {value}")
            )
    if not (_number(low) and _number(high)):
        return errors
    if low >= high:
        errors.append(((*path, "low"), f"{label}: 'low' ({low}) must be less than 'high' ({high})"))
        return errors
    if kind == "log" and low <= 0:
        return errors + [((*path, "low"), f"{label}: a log scale needs 'low' above 0, got {low}")]
    step = spec.get("step")
    if _number(step):
        if kind == "int" and not float(step).is_integer():
            errors.append(
                ((*path, "step"), f"{label}: 'step' must be a whole number for type 'int', got {step}")
            )
        elif step > high - low:
            errors.append(
                (
                    (*path, "step"),
                    f"{label}: 'step' ({step}) is larger than the range {low}..{high}: one value only",
                )
            )
    if hyper is not None:
        for field, value in (("low", low), ("high", high)):
            problem = _outside(hyper, value)
            if problem:
                errors.append(
                    ((*path, field), f"{label}: '{field}' {value} is out of range: '{name}' {problem}")
                )
    return errors


def _check_choices(label: str, choices: Any, hyper: Hyper | None, path: Path_) -> list:
    if not isinstance(choices, list) or not choices:
        return [((*path, "choices"), f"{label}: type 'categorical' needs a non-empty list 'choices'")]
    errors = []
    seen: list = []
    for i, value in enumerate(choices):
        if any(_same(value, s) for s in seen):
            errors.append(((*path, "choices", i), f"{label}: choice {value!r} is listed twice"))
            continue
        seen.append(value)
        problem = _choice_problem(hyper, value)
        if problem:
            errors.append(((*path, "choices", i), f"{label}: choice {value!r} {problem}"))
    return errors


def _choice_problem(hyper: Hyper | None, value: Any) -> str | None:
    if hyper is None:
        return None
    if hyper.kind == "bool":
        return None if isinstance(value, bool) else "must be true or false"
    if hyper.kind == "str":
        if not isinstance(value, str):
            return "must be text"
        if hyper.values and value not in hyper.values:
            return f"is not one of {', '.join(hyper.values)}"
        return None
    if not _number(value):
        return "must be a number"
    if hyper.kind == "int" and not float(value).is_integer():
        return "must be a whole number"
    return _outside(hyper, value)


def _outside(hyper: Hyper, value: float) -> str | None:
    """Why ``value`` is outside what the hyperparameter accepts, or None."""
    if hyper.low is not None and (value < hyper.low or (hyper.open_low and value == hyper.low)):
        return f"must be {'above' if hyper.open_low else 'at least'} {hyper.low:g}"
    if hyper.high is not None and value > hyper.high:
        return f"must be at most {hyper.high:g}"
    return None


def _hint(unknown: list[str], allowed) -> str:
    names = sorted(allowed)
    close = [c for u in unknown for c in difflib.get_close_matches(u, names, n=1, cutoff=0.6)]
    hint = f"did you mean {', '.join(repr(c) for c in close)}? " if close else ""
    return f"{hint}allowed: {', '.join(names)}"
