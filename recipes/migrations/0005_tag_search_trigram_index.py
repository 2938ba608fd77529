"""Library text search (`?search=`) also matches tags (`name__icontains` on ml_recipe_tag):
a trigram index on PostgreSQL keeps it an index lookup, like the recipe columns in 0003.
SQLite: nothing to do."""

from django.db import migrations

CREATE = [
    "CREATE EXTENSION IF NOT EXISTS pg_trgm",
    # The expression matches what Django's icontains compiles to: UPPER("col"::text) LIKE UPPER(%s).
    "CREATE INDEX IF NOT EXISTS ml_recipe_tag_name_trgm ON ml_recipe_tag USING gin ((UPPER(name::text)) gin_trgm_ops)",
]
DROP = ["DROP INDEX IF EXISTS ml_recipe_tag_name_trgm"]


def _run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("recipes", "0004_version_lineage_and_approval")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
