# A dataset's status: large uploads are profiled by a worker task (issue 12, defect 5).
# Existing datasets were profiled at upload: they are ready (the field's default).

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0004_dataset_client"),
    ]

    operations = [
        migrations.AddField(
            model_name="dataset",
            name="status",
            field=models.CharField(
                choices=[("processing", "Processing"), ("ready", "Ready"), ("invalid", "Invalid")],
                default="ready",
                max_length=16,
            ),
        ),
        migrations.AddField(
            model_name="dataset",
            name="error",
            field=models.TextField(blank=True, default=""),
        ),
        migrations.AddConstraint(
            model_name="dataset",
            constraint=models.CheckConstraint(
                condition=models.Q(("status__in", ["processing", "ready", "invalid"])),
                name="ml_dataset_status_valid",
            ),
        ),
    ]
