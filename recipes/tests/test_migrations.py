"""Migration 0004 records, for versions written before lineage existed, the parent version
they derive from."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("recipes", "0003_search_trigram_indexes")]
AFTER = [("recipes", "0004_version_lineage_and_approval")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_backfill_of_base_versions():
    old = migrate(BEFORE)
    try:
        Recipe = old.get_model("recipes", "Recipe")
        Version = old.get_model("recipes", "RecipeVersion")
        manifest = {"metadata": {}}
        base = Recipe.objects.create(id="r_base", name="b", model_family="pricing", level="baseline")
        for number in ("1.0.0", "1.1.0", "2.0.0"):
            Version.objects.create(id=f"v_base_{number}", recipe=base, version=number, manifest=manifest)
        # Cloned when 1.1.0 was current, as its changelog says.
        named = Recipe.objects.create(
            id="r_named", name="n", model_family="pricing", level="industry", parent=base
        )
        Version.objects.create(
            id="v_named_1",
            recipe=named,
            version="1.0.0",
            manifest=manifest,
            changelog="Cloned from r_base 1.1.0",
        )
        Version.objects.create(id="v_named_2", recipe=named, version="1.1.0", manifest=manifest)
        # Created through the API with a parent: no changelog; the newest parent version then.
        plain = Recipe.objects.create(
            id="r_plain", name="p", model_family="pricing", level="industry", parent=base
        )
        Version.objects.create(id="v_plain_1", recipe=plain, version="1.0.0", manifest=manifest)

        new = migrate(AFTER)
        Version = new.get_model("recipes", "RecipeVersion")
        bases = dict(Version.objects.values_list("id", "base_version_id"))
        assert bases["v_named_1"] == bases["v_named_2"] == "v_base_1.1.0"
        assert bases["v_plain_1"] == "v_base_2.0.0"
        assert bases["v_base_1.0.0"] is None
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
