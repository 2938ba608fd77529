# A dataset's purpose: "scoring" marks it as its recipe's scoring input, the batch a
# batch-mode production model scores on schedule (issue 14 §2). Existing datasets were
# uploaded for training or checks (the field's default): none becomes scoring input.

from django.db import migrations, models


class Migration(migrations.Migration):
    dependencies = [
        ("runs", "0006_run_type_score"),
    ]

    operations = [
        migrations.AddField(
            model_name="dataset",
            name="purpose",
            field=models.CharField(
                choices=[("training", "Training"), ("scoring", "Scoring input")],
                default="training",
                max_length=16,
            ),
        ),
        migrations.AddConstraint(
            model_name="dataset",
            constraint=models.CheckConstraint(
                condition=models.Q(("purpose__in", ["training", "scoring"])),
                name="ml_dataset_purpose_valid",
            ),
        ),
    ]
