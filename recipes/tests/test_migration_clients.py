"""Migration 0006 gives every existing client-level recipe a client named after it (slugs
unique), 0007 then holds the rule in the database; runs 0004 gives their datasets that client."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

BEFORE = [("recipes", "0005_tag_search_trigram_index"), ("runs", "0003_run_number_outcome")]
AFTER = [("recipes", "0007_client_workspaces_check"), ("runs", "0004_dataset_client")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state(targets).apps


@pytest.mark.django_db(transaction=True)
def test_existing_client_recipes_get_a_client_named_after_them():
    old = migrate(BEFORE)
    try:
        Recipe = old.get_model("recipes", "Recipe")
        Dataset = old.get_model("runs", "Dataset")
        base = Recipe.objects.create(id="r_base", name="b", model_family="pricing", level="baseline")
        industry = Recipe.objects.create(
            id="r_ind", name="Grocery", model_family="pricing", level="industry", parent=base
        )
        # Two clients with the same name: two clients, two slugs.
        for rid in ("r_c1", "r_c2"):
            Recipe.objects.create(
                id=rid, name="FreshMart Stores", model_family="pricing", level="client", parent=industry
            )
        Recipe.objects.create(
            id="r_c3", name="VoltMart", model_family="pricing", level="client", parent=industry
        )
        Dataset.objects.create(
            id="ds_1", name="d", file="datasets/x.csv", format="csv", sha256="0", recipe_id="r_c3"
        )
        Dataset.objects.create(id="ds_2", name="d", file="datasets/y.csv", format="csv", sha256="0")

        new = migrate(AFTER)
        Recipe = new.get_model("recipes", "Recipe")
        Client = new.get_model("recipes", "Client")
        Dataset = new.get_model("runs", "Dataset")
        clients = {r.id: r.client for r in Recipe.objects.select_related("client").filter(level="client")}
        assert {c.name for c in clients.values()} == {"FreshMart Stores", "VoltMart"}
        assert clients["r_c1"].pk != clients["r_c2"].pk
        assert {clients["r_c1"].slug, clients["r_c2"].slug} == {"freshmart-stores", "freshmart-stores-2"}
        assert all(c.pk.startswith("client_") for c in clients.values())
        assert Client.objects.count() == 3
        assert Recipe.objects.get(pk="r_ind").client_id is None
        assert Dataset.objects.get(pk="ds_1").client_id == clients["r_c3"].pk
        assert Dataset.objects.get(pk="ds_2").client_id is None
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
