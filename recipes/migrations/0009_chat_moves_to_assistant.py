# The chat's models now live in the assistant app (assistant 0001 added them to its state
# and moved their content types). State only: the tables and their rows stay as they are.

from django.db import migrations


class Migration(migrations.Migration):
    dependencies = [
        ("recipes", "0008_clone_name_unique_per_parent"),
        ("assistant", "0001_initial"),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.DeleteModel(name="ChatMessage"),
                migrations.DeleteModel(name="Conversation"),
            ],
            database_operations=[],
        ),
    ]
