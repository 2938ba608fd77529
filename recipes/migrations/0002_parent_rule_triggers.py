"""The parent rule in the database: a recipe's parent is exactly one level up and of the
same family. It spans two rows, so a CHECK constraint cannot express it; a trigger can."""

from django.db import migrations

RULE = (
    "NEW.parent_id IS NOT NULL AND NOT EXISTS ("
    "SELECT 1 FROM ml_recipe p WHERE p.id = NEW.parent_id AND p.model_family = NEW.model_family "
    "AND ((p.level = 'baseline' AND NEW.level = 'industry') OR (p.level = 'industry' AND NEW.level = 'client')))"
)
MESSAGE = "ml_recipe_parent_rule: the parent must be one level up and of the same family"

SQLITE = [
    f"CREATE TRIGGER ml_recipe_parent_rule_ins BEFORE INSERT ON ml_recipe WHEN {RULE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
    f"CREATE TRIGGER ml_recipe_parent_rule_upd BEFORE UPDATE OF parent_id, level, model_family ON ml_recipe "
    f"WHEN {RULE} BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
]
SQLITE_DROP = ["DROP TRIGGER IF EXISTS ml_recipe_parent_rule_ins;", "DROP TRIGGER IF EXISTS ml_recipe_parent_rule_upd;"]

POSTGRES = [
    f"""CREATE OR REPLACE FUNCTION ml_recipe_parent_rule() RETURNS trigger AS $$
    BEGIN
        IF {RULE} THEN
            RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'check_violation';
        END IF;
        RETURN NEW;
    END;
    $$ LANGUAGE plpgsql;""",
    "CREATE TRIGGER ml_recipe_parent_rule BEFORE INSERT OR UPDATE OF parent_id, level, model_family ON ml_recipe "
    "FOR EACH ROW EXECUTE FUNCTION ml_recipe_parent_rule();",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS ml_recipe_parent_rule ON ml_recipe;",
    "DROP FUNCTION IF EXISTS ml_recipe_parent_rule();",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("recipes", "0001_initial")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRES}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        )
    ]
