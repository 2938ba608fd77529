"""The four baseline recipes: one manifest per family in <family>.json (source of truth for
fixtures/baseline_recipes.json, rebuilt with `manage.py build_baseline_fixtures`)."""

import json
from pathlib import Path

from recipes.catalog import FAMILIES, FAMILY_SHORT

HERE = Path(__file__).parent
NAMES = {
    "forecasting": "Forecasting Baseline v1",
    "pricing": "Pricing Optimization Baseline v1",
    "next_best_action": "Next Best Action Baseline v1",
    "location_scoring": "Location Scoring Baseline v1",
}
TAGS = {
    "forecasting": ["baseline", "demand", "time-series"],
    "pricing": ["baseline", "elasticity", "price-optimisation"],
    "next_best_action": ["baseline", "uplift", "recommendation"],
    "location_scoring": ["baseline", "site-selection", "gradient-boosting"],
}
# Synthetic examples are trained on this much generated data (seeded): small enough for the
# test suite to re-run and check the recorded metrics are really reached.
EXAMPLE_ROWS = {
    "forecasting": 30 * 730,
    "pricing": 20_000,
    "next_best_action": 20_000,
    "location_scoring": 20_000,
}
EXAMPLE_SEED = 42


def recipe_id(family: str) -> str:
    return f"recipe_{FAMILY_SHORT[family]}_base"


def version_id(family: str) -> str:
    return f"ver_{FAMILY_SHORT[family]}_base_v1"


def manifest(family: str) -> dict:
    return json.loads((HERE / f"{family}.json").read_text())


def families() -> tuple[str, ...]:
    return FAMILIES
