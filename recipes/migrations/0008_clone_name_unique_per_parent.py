# Clone names unique per parent (issue 12, defect 9): the same name, ignoring case, under one
# parent in one workspace (the firm, or one client) was accepted any number of times.

import django.db.models.functions.comparison
import django.db.models.functions.text
from django.db import migrations, models
from django.db.models.functions import Coalesce, Lower

NAME_MAX = 200  # Recipe.name max_length


def rename_duplicates(apps, schema_editor):
    """Before the index: among siblings sharing a name (as the index compares it: the
    database's LOWER), the oldest keeps it and each later one gets " (2)", " (3)", … — the
    first number no sibling already uses."""
    Recipe = apps.get_model("recipes", "Recipe")
    rows = list(
        Recipe.objects.filter(parent__isnull=False)
        .annotate(lname=Lower("name"), workspace=Coalesce("client", models.Value("")))
        .order_by("created_at", "id")
        .values_list("id", "name", "parent_id", "workspace", "lname")
    )
    taken = set()  # (parent, workspace, lower name) kept by the oldest recipe using it
    duplicates = []
    for pk, name, parent_id, workspace, lname in rows:
        key = (parent_id, workspace, lname)
        if key in taken:
            duplicates.append((pk, name, parent_id, workspace, lname))
        else:
            taken.add(key)
    for pk, name, parent_id, workspace, lname in duplicates:
        n = 2
        while True:
            suffix = f" ({n})"
            keep = NAME_MAX - len(suffix)
            candidate, lowered = name[:keep] + suffix, lname[:keep] + suffix
            if (parent_id, workspace, lowered) not in taken:
                break
            n += 1
        taken.add((parent_id, workspace, lowered))
        Recipe.objects.filter(pk=pk).update(name=candidate)


class Migration(migrations.Migration):
    dependencies = [
        ("recipes", "0007_client_workspaces_check"),
    ]

    operations = [
        migrations.RunPython(rename_duplicates, migrations.RunPython.noop),
        migrations.AddConstraint(
            model_name="recipe",
            constraint=models.UniqueConstraint(
                models.F("parent"),
                django.db.models.functions.comparison.Coalesce("client", models.Value("")),
                django.db.models.functions.text.Lower("name"),
                name="clone_name_unique_per_parent",
            ),
        ),
    ]
