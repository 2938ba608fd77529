"""Migration 0003 numbers existing runs per recipe (oldest first) and stores their outcome."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.slow]

BEFORE = [("runs", "0002_alter_run_options")]
AFTER = [("runs", "0003_run_number_outcome")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


def test_backfill_numbers_runs_per_recipe_and_stores_outcomes():
    call_command("loaddata", "baseline_recipes", verbosity=0)
    apps = migrate(BEFORE)
    try:
        Run = apps.get_model("runs", "Run")
        now = timezone.now()
        critical = {"MAPE": {"value": 0.9, "status": "critical"}, "RMSE": {"value": 1, "status": "pass"}}
        rows = [
            ("run_b", "recipe_forecasting_base", "ver_forecasting_base_v1", now, critical),
            ("run_a", "recipe_forecasting_base", "ver_forecasting_base_v1", now - timedelta(days=1), {}),
            ("run_c", "recipe_pricing_base", "ver_pricing_base_v1", now, {"elasticity": {"status": "pass"}}),
            ("run_d", "recipe_forecasting_base", "ver_forecasting_base_v1", now + timedelta(days=1), {}),
        ]
        for run_id, recipe_id, version_id, created, checks in rows:
            Run.objects.create(
                id=run_id, recipe_id=recipe_id, recipe_version_id=version_id, metric_checks_json=checks
            )
            Run.objects.filter(pk=run_id).update(created_at=created)  # auto_now_add ignores a value
        apps = migrate(AFTER)
        Run = apps.get_model("runs", "Run")
        got = {r.id: (r.number, r.outcome) for r in Run.objects.all()}
        assert got == {
            "run_a": (1, ""),
            "run_b": (2, "critical"),
            "run_d": (3, ""),
            "run_c": (1, "ok"),
        }
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
