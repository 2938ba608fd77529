"""The workspace's fixed vocabulary: families, levels, stage types and the metric catalog.

Plain Python (no Django import) so the manifest validator, the alert-condition language,
the model families and the chat assistant all read the same definitions. This is the one
list of families: ``recipes.models.Family`` (the model field's choices) is built from it.
"""

from __future__ import annotations

# The model families: key -> label, in the order lists and forms show them.
FAMILY_LABELS = {
    "forecasting": "Forecasting",
    "pricing": "Pricing",
    "next_best_action": "Next best action",
    "location_scoring": "Location scoring",
}
FAMILIES = tuple(FAMILY_LABELS)
# Short names used in the baseline ids: recipe_<short>_base, ver_<short>_base_v1.
FAMILY_SHORT = {
    "forecasting": "forecasting",
    "pricing": "pricing",
    "next_best_action": "nba",
    "location_scoring": "location",
}

LEVELS = ("baseline", "industry", "client")
# A recipe's parent is exactly one level up.
PARENT_LEVEL = {"industry": "baseline", "client": "industry"}
CHILD_LEVEL = {"baseline": "industry", "industry": "client"}

# "explain" computes a train run's explanations (recipes.explain_config, runs.explain).
STAGE_TYPES = ("quality", "feature_prep", "training", "evaluation", "deployment", "explain")
DEPLOYMENT_MODES = ("batch", "realtime")
DRIFT_METHODS = ("PSI", "KS")
ALERT_SEVERITIES = ("warning", "critical")

LOWER = "lower"  # lower is better (errors)
HIGHER = "higher"  # higher is better (lifts, correlations)

# The metric that stands for a family: the one a "target" means when none is named (the
# assistant) and the one a runs list shows.
PRIMARY_METRIC = {
    "forecasting": "MAPE",
    "pricing": "margin_impact",
    "next_best_action": "uplift@k",
    "location_scoring": "rank_correlation",
}

# Metric name -> (direction, one-line meaning). Definitions live in runs/metrics/.
METRICS: dict[str, dict[str, tuple[str, str]]] = {
    "forecasting": {
        "MAPE": (LOWER, "Mean absolute percentage error over non-zero actuals (fraction, 0.12 = 12%)."),
        "RMSE": (LOWER, "Root mean squared error, in units of the target."),
        "MAE": (LOWER, "Mean absolute error, in units of the target."),
        "WAPE": (LOWER, "Weighted absolute percentage error: sum|error| / sum|actual|."),
        "coverage": (HIGHER, "Share of actuals inside the model's prediction interval."),
    },
    "pricing": {
        "elasticity": (
            LOWER,
            "Estimated own-price elasticity of demand. Lower (more negative) is treated as "
            "better: an estimate near or above zero means no usable price response.",
        ),
        "revenue_lift": (
            HIGHER,
            "Relative revenue gain of the optimised prices over current prices (fraction).",
        ),
        "margin_impact": (
            HIGHER,
            "Relative margin gain of the optimised prices over current prices (fraction).",
        ),
        "calibration": (
            LOWER,
            "Absolute calibration error: |sum(predicted) / sum(actual) - 1| on the holdout.",
        ),
        "demand_mape": (LOWER, "MAPE of the demand model on the holdout."),
    },
    "next_best_action": {
        "uplift": (
            HIGHER,
            "Average treatment effect in the top-k% targeted by the model minus overall effect.",
        ),
        "uplift@k": (HIGHER, "Observed uplift (treated minus control response rate) in the model's top k%."),
        "precision@k": (HIGHER, "Response rate among treated customers in the model's top k%."),
        "qini_coefficient": (HIGHER, "Area between the model's Qini curve and the random line, normalised."),
        "auuc": (HIGHER, "Area under the uplift curve (normalised by population)."),
        "incremental_revenue": (HIGHER, "Estimated incremental revenue from treating the model's top k%."),
    },
    "location_scoring": {
        "rank_correlation": (
            HIGHER,
            "Spearman rank correlation between predicted and actual site performance.",
        ),
        "calibration": (LOWER, "Absolute calibration error: |mean(predicted) / mean(actual) - 1|."),
        "hit_rate@k": (HIGHER, "Share of the actual top-k% sites found in the predicted top-k%."),
        "lift": (HIGHER, "Mean actual performance of the predicted top-k% over the overall mean."),
        "RMSE": (LOWER, "Root mean squared error, in units of the target."),
    },
}


def metric_direction(family: str, name: str, explicit: str | None = None) -> str | None:
    """Direction of a metric for a family; an explicit direction wins; None if unknown."""
    if explicit in (LOWER, HIGHER):
        return explicit
    entry = METRICS.get(family, {}).get(name)
    return entry[0] if entry else None


def metric_status(value: float, direction: str, warning: float | None, critical: float | None) -> str:
    """pass | warning | critical for a metric value against its thresholds.

    For lower-is-better metrics a value above the critical threshold is critical and above
    the warning threshold is a warning; mirrored for higher-is-better metrics.
    """
    worse = (lambda v, t: v > t) if direction == LOWER else (lambda v, t: v < t)
    if critical is not None and worse(value, critical):
        return "critical"
    if warning is not None and worse(value, warning):
        return "warning"
    return "pass"


def meets_target(value: float, direction: str, target: float | None) -> bool | None:
    if target is None:
        return None
    return value <= target if direction == LOWER else value >= target
