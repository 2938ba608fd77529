# One production model per recipe (issue 12, defect 1): a partial unique index. Models the
# user deliberately kept in production next to another (keep_other_production) are marked
# `serves_alongside` and stay out of the index.

from django.db import migrations, models


def mark_extra_production_models(apps, schema_editor):
    """Before the index: in a recipe with several production models (kept on purpose, or left
    by the race this fixes — the data cannot tell which), the most recently promoted stays the
    recipe's production model and the others are marked as serving alongside it. Nothing
    leaves production, so no serving or monitoring changes under anyone's feet."""
    MLModel = apps.get_model("models_registry", "MLModel")
    recipes = (
        MLModel.objects.filter(status="production")
        .values("recipe_id")
        .annotate(n=models.Count("id"))
        .filter(n__gt=1)
        .values_list("recipe_id", flat=True)
    )
    for recipe_id in list(recipes):
        rows = list(
            MLModel.objects.filter(recipe_id=recipe_id, status="production").order_by(
                models.F("promoted_at").desc(nulls_last=True), "-created_at", "-id"
            )
        )
        MLModel.objects.filter(pk__in=[m.pk for m in rows[1:]]).update(serves_alongside=True)


class Migration(migrations.Migration):
    dependencies = [
        ("models_registry", "0003_alter_mlmodel_options"),
    ]

    operations = [
        migrations.AddField(
            model_name="mlmodel",
            name="serves_alongside",
            field=models.BooleanField(default=False),
        ),
        migrations.RunPython(mark_extra_production_models, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="mlmodel",
            constraint=models.UniqueConstraint(
                condition=models.Q(("serves_alongside", False), ("status", "production")),
                fields=("recipe",),
                name="ml_model_one_production_per_recipe",
            ),
        ),
        migrations.AddConstraint(
            model_name="mlmodel",
            constraint=models.CheckConstraint(
                condition=models.Q(("serves_alongside", False), ("status", "production"), _connector="OR"),
                name="ml_model_alongside_only_in_production",
            ),
        ),
    ]
