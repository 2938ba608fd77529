"""The ``explain`` stage's settings: what is allowed, checked when a manifest is validated
(``recipes.manifest`` calls ``problems`` for the stage), and resolved with the same rules when
a train run reaches the stage (``runs.pipeline`` passes ``resolve(config)`` to
``runs.explain.explain_model``), so a version that validated never fails at run time on one
of these settings.

Plain Python (no Django import), like ``recipes.forecasting_config``.

    pipeline.stages[type=explain].config:      (every key optional; {} takes the defaults)
      sample_size: 500          # held-out rows explained, 50..20000
      background_size: 16       # background rows kept for later explanations, 1..256
      repeats: 5                # permutation repeats (the confidence interval), 1..50
      top_features: 5           # features given dependence curves, 1..20
      ice_rows: 30              # individual (ICE) curves per feature, 0..200
      grid_points: 20           # points of a dependence grid, 3..100
      decomposition_series: 20  # forecasting: series given a decomposition (the largest), 1..200
      methods: [shap, permutation, dependence]   # which explanations, a non-empty subset
      metric: null              # permutation importance's metric (a metric of the family);
                                # null: the family's default (default_metric)
      interaction: true         # a 2-D dependence of the top two features
      seed: 0                   # the sample, permutations and ICE rows, an integer >= 0
"""

from __future__ import annotations

import copy
import difflib
from typing import Any

from . import catalog

METHODS = ("shap", "permutation", "dependence")

DEFAULTS: dict[str, Any] = {
    "sample_size": 500,
    "background_size": 16,
    "repeats": 5,
    "top_features": 5,
    "ice_rows": 30,
    "grid_points": 20,
    "decomposition_series": 20,
    "methods": list(METHODS),
    "metric": None,
    "interaction": True,
    "seed": 0,
}

# Whole-number settings: key -> (lowest, highest, what it counts).
RANGES: dict[str, tuple[int, int, str]] = {
    "sample_size": (50, 20_000, "held-out rows to explain"),
    "background_size": (1, 256, "background rows"),
    "repeats": (1, 50, "permutation repeats"),
    "top_features": (1, 20, "features with dependence curves"),
    "ice_rows": (0, 200, "ICE curves per feature"),
    "grid_points": (3, 100, "grid points"),
    "decomposition_series": (1, 200, "forecast series to decompose"),
}

# The pricing family's primary metric (margin_impact) scores the price recommendation, not
# the demand model whose features are explained: permutation importance uses the demand error.
_DEFAULT_METRIC = {**catalog.PRIMARY_METRIC, "pricing": "demand_mape"}

PathSuffix = tuple[str | int, ...]


def default_metric(family: str | None) -> str | None:
    """The metric permutation importance uses when the config names none."""
    return _DEFAULT_METRIC.get(family) if family else None


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def resolve(config: Any, family: str | None = None, caps: dict | None = None) -> dict:
    """The config with every default filled in (a new dict; the input is untouched).

    ``methods`` keeps METHODS' order without repeats; with ``family`` given, a null
    ``metric`` becomes the family's default (``default_metric``). ``caps`` (the deployment's
    EXPLAIN_CAPS) lower the sizes in RANGES to at most their value, never below the range's
    minimum. Call it on a config that passed ``problems``: it does not check again."""
    out = copy.deepcopy(DEFAULTS)
    if isinstance(config, dict):
        out.update({k: copy.deepcopy(v) for k, v in config.items() if k in DEFAULTS})
    if isinstance(out["methods"], list):
        out["methods"] = [m for m in METHODS if m in out["methods"]]
    if out["metric"] is None and family is not None:
        out["metric"] = default_metric(family)
    for key, cap in (caps or {}).items():
        if key in RANGES and isinstance(out.get(key), int):
            out[key] = max(RANGES[key][0], min(out[key], int(cap)))
    return out


def problems(config: Any, family: str | None) -> list[tuple[PathSuffix, str]]:
    """Every problem of an explain stage's config: [(path under the config, message)].

    ``family`` None (unknown) checks ``metric`` against every family's metrics."""
    if not isinstance(config, dict):
        return [((), f"the explain stage's 'config' must be an object, got {type(config).__name__}")]
    errors: list[tuple[PathSuffix, str]] = []
    for key in config:
        if key not in DEFAULTS:
            hint = difflib.get_close_matches(str(key), list(DEFAULTS), n=1, cutoff=0.6)
            tail = f"; did you mean '{hint[0]}'?" if hint else f" (allowed: {', '.join(DEFAULTS)})"
            errors.append(((key,), f"unknown field '{key}' in the explain stage's config{tail}"))
    for key, (low, high, what) in RANGES.items():
        if key in config:
            value = config[key]
            if not (_whole(value) and low <= value <= high):
                errors.append(
                    ((key,), f"'{key}' must be a whole number of {what} from {low} to {high}, got {value!r}")
                )
    if "methods" in config:
        errors.extend(_methods(config["methods"]))
    if "metric" in config:
        errors.extend(_metric(config["metric"], family))
    if "interaction" in config and not isinstance(config["interaction"], bool):
        errors.append(
            (("interaction",), f"'interaction' must be true or false, got {config['interaction']!r}")
        )
    if "seed" in config and not (_whole(config["seed"]) and config["seed"] >= 0):
        errors.append((("seed",), f"'seed' must be a whole number, at least 0, got {config['seed']!r}"))
    return errors


# A score run's contributions (its deployment stage's config: "explain": true, and
# "explain_rows", how many of the batch's first rows get them): runs.explain.batch.
SCORE_EXPLAIN_ROWS = 1_000
SCORE_EXPLAIN_MAX_ROWS = 100_000


def asks_for_contributions(config: Any) -> bool:
    """Whether a deployment stage's config asks a score run for contribution columns."""
    return isinstance(config, dict) and config.get("explain") is True


def manifest_asks_for_contributions(manifest: dict) -> bool:
    """Whether any deployment stage of ``manifest`` asks for contribution columns (the worker
    then fetches the model's explanation background for the score run)."""
    stages = (manifest.get("pipeline") or {}).get("stages") or []
    return any(
        isinstance(s, dict) and s.get("type") == "deployment" and asks_for_contributions(s.get("config"))
        for s in stages
    )


def scoring_problems(config: Any) -> list[tuple[PathSuffix, str]]:
    """The problems of a deployment stage config's ``explain`` / ``explain_rows`` (other keys
    are the stage's own): [(path under the config, message)]."""
    if not isinstance(config, dict):
        return []
    errors: list[tuple[PathSuffix, str]] = []
    if "explain" in config and not isinstance(config["explain"], bool):
        errors.append((("explain",), f"'explain' must be true or false, got {config['explain']!r}"))
    if "explain_rows" in config:
        value = config["explain_rows"]
        if not (_whole(value) and 1 <= value <= SCORE_EXPLAIN_MAX_ROWS):
            errors.append(
                (
                    ("explain_rows",),
                    f"'explain_rows' must be a whole number of rows from 1 to {SCORE_EXPLAIN_MAX_ROWS}, "
                    f"got {value!r}",
                )
            )
        elif config.get("explain") is not True:
            errors.append((("explain_rows",), "'explain_rows' needs 'explain': true"))
    return errors


def _methods(methods: Any) -> list[tuple[PathSuffix, str]]:
    allowed = ", ".join(METHODS)
    if not isinstance(methods, list) or not methods:
        return [(("methods",), f"'methods' must be a non-empty list of {allowed}, got {methods!r}")]
    errors: list[tuple[PathSuffix, str]] = []
    seen: set = set()
    for index, method in enumerate(methods):
        if not isinstance(method, str) or method not in METHODS:
            errors.append((("methods", index), f"'{method}' is not an explanation method ({allowed})"))
        elif method in seen:
            errors.append((("methods", index), f"'{method}' is listed more than once in 'methods'"))
        else:
            seen.add(method)
    return errors


def _metric(metric: Any, family: str | None) -> list[tuple[PathSuffix, str]]:
    if metric is None:
        return []
    if family in catalog.METRICS:
        known = list(catalog.METRICS[family])
        whose = f"a {family} metric"
    else:
        known = list(dict.fromkeys(name for metrics in catalog.METRICS.values() for name in metrics))
        whose = "a known metric"
    if isinstance(metric, str) and metric in known:
        return []
    return [
        (
            ("metric",),
            f"'metric' must be {whose} ({', '.join(known)}) or null for the family's default, got {metric!r}",
        )
    ]
