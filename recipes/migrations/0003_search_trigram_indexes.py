"""Library text search (`?search=`: icontains on name, description and id) with trigram
indexes on PostgreSQL, so it stays an index lookup with many recipes. pg_trgm is a trusted
extension (PostgreSQL >= 13): the database owner may create it. SQLite: nothing to do."""

from django.db import migrations

COLUMNS = ("name", "description", "id")
CREATE = ["CREATE EXTENSION IF NOT EXISTS pg_trgm"] + [
    # The expression matches what Django's icontains compiles to: UPPER("col"::text) LIKE UPPER(%s).
    f"CREATE INDEX IF NOT EXISTS ml_recipe_{col}_trgm ON ml_recipe USING gin ((UPPER({col}::text)) gin_trgm_ops)"
    for col in COLUMNS
]
DROP = [f"DROP INDEX IF EXISTS ml_recipe_{col}_trgm" for col in COLUMNS]


def _run(statements):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor == "postgresql":
            for statement in statements:
                schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("recipes", "0002_parent_rule_triggers")]

    operations = [migrations.RunPython(_run(CREATE), _run(DROP))]
