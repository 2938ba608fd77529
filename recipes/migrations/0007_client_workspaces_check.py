"""The client rule in the database: exactly the client-level recipes belong to a client.

On SQLite, adding a CHECK constraint rebuilds the ml_recipe table, which drops its
triggers: the parent-rule triggers of migration 0002 are created again (same SQL)."""

from django.conf import settings
from django.db import migrations, models

RULE = (
    "NEW.parent_id IS NOT NULL AND NOT EXISTS ("
    "SELECT 1 FROM ml_recipe p WHERE p.id = NEW.parent_id AND p.model_family = NEW.model_family "
    "AND ((p.level = 'baseline' AND NEW.level = 'industry') OR (p.level = 'industry' AND NEW.level = 'client')))"
)
MESSAGE = "ml_recipe_parent_rule: the parent must be one level up and of the same family"
SQLITE_TRIGGERS = [
    "DROP TRIGGER IF EXISTS ml_recipe_parent_rule_ins;",
    "DROP TRIGGER IF EXISTS ml_recipe_parent_rule_upd;",
    f"CREATE TRIGGER ml_recipe_parent_rule_ins BEFORE INSERT ON ml_recipe WHEN {RULE} "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
    f"CREATE TRIGGER ml_recipe_parent_rule_upd BEFORE UPDATE OF parent_id, level, model_family ON ml_recipe "
    f"WHEN {RULE} BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
]


def restore_sqlite_triggers(apps, schema_editor):
    if schema_editor.connection.vendor == "sqlite":
        for statement in SQLITE_TRIGGERS:
            schema_editor.execute(statement)


class Migration(migrations.Migration):
    dependencies = [
        ("recipes", "0006_client_workspaces"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.AddConstraint(
            model_name="recipe",
            constraint=models.CheckConstraint(
                condition=models.Q(
                    models.Q(("client__isnull", False), ("level", "client")),
                    models.Q(models.Q(("level", "client"), _negated=True), ("client__isnull", True)),
                    _connector="OR",
                ),
                name="ml_recipe_client_by_level",
            ),
        ),
        migrations.RunPython(restore_sqlite_triggers, restore_sqlite_triggers),
    ]
