# Written by hand: a PostgreSQL storage parameter, no model change.

from django.db import migrations


def fillfactor(value: int):
    def apply(apps, schema_editor):
        # PostgreSQL only (SQLite has no such setting). Half of every page of the exposures is
        # left free, so that a shadow request updating all its units' latest predictions at
        # once finds room for every new row version on the row's own page: all its updates are
        # HOT (no index entries written). At 70, only ~40-80 % of the updates of a repeated
        # 50,000-unit request were HOT (the rest wrote both indexes): twice the WAL (15.5 MB
        # instead of 7 MB) and 0.33-0.58 s instead of 0.23-0.37 s for the statement (EXPLAIN
        # ANALYZE, PostgreSQL 15, bench/README.md §7). Only pages written from now on are
        # affected.
        if schema_editor.connection.vendor == "postgresql":
            schema_editor.execute(f"ALTER TABLE ml_experiment_exposure SET (fillfactor = {value})")

    return apply


class Migration(migrations.Migration):
    dependencies = [
        ("experiments", "0001_initial"),
    ]

    operations = [
        migrations.RunPython(fillfactor(50), fillfactor(70)),
    ]
