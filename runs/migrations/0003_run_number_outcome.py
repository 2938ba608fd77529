"""Readable run names (a per-recipe number) and stored run outcomes, backfilled.

The number is added nullable, filled for existing rows (per recipe, oldest first), then made
required and unique per recipe. The backfill only updates the two new columns (no foreign
key changes), so PostgreSQL queues no deferred constraint checks before the ALTER.
"""

from django.db import migrations, models
from django.db.models import Q


def backfill(apps, schema_editor):
    # The outcome rule itself (runs.metrics.check_outcome) is plain Python with no Django
    # import: use it rather than a second copy that could drift.
    from runs.metrics import check_outcome

    Run = apps.get_model("runs", "Run")
    number: dict[str, int] = {}
    rows = Run.objects.order_by("recipe_id", "created_at", "id").values_list(
        "id", "recipe_id", "metric_checks_json"
    )
    for run_id, recipe_id, checks in rows.iterator(chunk_size=2000):
        number[recipe_id] = number.get(recipe_id, 0) + 1
        Run.objects.filter(pk=run_id).update(number=number[recipe_id], outcome=check_outcome(checks or {}))


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0002_alter_run_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="run",
            name="number",
            field=models.PositiveIntegerField(null=True),
        ),
        migrations.AddField(
            model_name="run",
            name="outcome",
            field=models.CharField(
                blank=True,
                choices=[("ok", "OK"), ("warning", "Warning"), ("critical", "Critical")],
                default="",
                max_length=16,
            ),
        ),
        migrations.RunPython(backfill, migrations.RunPython.noop, elidable=False),
        migrations.AlterField(
            model_name="run",
            name="number",
            field=models.PositiveIntegerField(),
        ),
        migrations.AddIndex(
            model_name="run",
            index=models.Index(fields=["outcome", "created_at"], name="ml_run_outcome_idx"),
        ),
        migrations.AddConstraint(
            model_name="run",
            constraint=models.CheckConstraint(
                condition=Q(outcome__in=["ok", "warning", "critical", ""]), name="ml_run_outcome_valid"
            ),
        ),
        migrations.AddConstraint(
            model_name="run",
            constraint=models.UniqueConstraint(
                fields=["recipe", "number"], name="ml_run_recipe_number_unique"
            ),
        ),
    ]
