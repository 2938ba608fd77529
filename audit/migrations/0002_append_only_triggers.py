"""The audit trail is append-only in the database too: UPDATE (and, on PostgreSQL, DELETE)
of an audit row is refused whoever sends it, not only through the ORM.

SQLite gets no DELETE trigger: Django empties tables with a plain DELETE FROM (``manage.py
flush``, and between transactional tests), which a BEFORE DELETE trigger would abort.
PostgreSQL empties them with TRUNCATE, which row triggers do not see, so it gets both. On
SQLite deletes are refused by the model, its queryset and the pre_delete guard."""

from django.db import migrations

MESSAGE = "ml_audit_event is append-only"

SQLITE = [
    f"CREATE TRIGGER ml_audit_event_no_update BEFORE UPDATE ON ml_audit_event "
    f"BEGIN SELECT RAISE(ABORT, '{MESSAGE}'); END;",
]
SQLITE_DROP = ["DROP TRIGGER IF EXISTS ml_audit_event_no_update;"]

POSTGRES = [
    f"""CREATE OR REPLACE FUNCTION ml_audit_event_append_only() RETURNS trigger AS $$
    BEGIN
        RAISE EXCEPTION '{MESSAGE}' USING ERRCODE = 'insufficient_privilege';
    END;
    $$ LANGUAGE plpgsql;""",
    "CREATE TRIGGER ml_audit_event_append_only BEFORE UPDATE OR DELETE ON ml_audit_event "
    "FOR EACH ROW EXECUTE FUNCTION ml_audit_event_append_only();",
]
POSTGRES_DROP = [
    "DROP TRIGGER IF EXISTS ml_audit_event_append_only ON ml_audit_event;",
    "DROP FUNCTION IF EXISTS ml_audit_event_append_only();",
]


def _run(statements_by_vendor):
    def apply(apps, schema_editor):
        for statement in statements_by_vendor.get(schema_editor.connection.vendor, []):
            schema_editor.execute(statement)

    return apply


class Migration(migrations.Migration):
    dependencies = [("audit", "0001_audit_event")]

    operations = [
        migrations.RunPython(
            _run({"sqlite": SQLITE, "postgresql": POSTGRES}),
            _run({"sqlite": SQLITE_DROP, "postgresql": POSTGRES_DROP}),
        )
    ]
