# The chat's models move from recipes to assistant (issue 13). State only: the tables
# (ml_chat_conversation, ml_chat_message), their rows, indexes and constraints stay as they
# are; recipes 0009 removes the models from recipes' state once this has added them here.
# The content types follow (app_label recipes -> assistant), so the permissions on them,
# the groups holding those permissions and the admin's history keep pointing at them.

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models

MODELS = ("conversation", "chatmessage")


def _move_content_types(apps, schema_editor, source, target):
    ContentType = apps.get_model("contenttypes", "ContentType")
    db = schema_editor.connection.alias
    for model in MODELS:
        # A row already under the target (a stale one, created while the models were in both
        # states) is left for remove_stale_contenttypes, as Django does for a renamed model.
        if ContentType.objects.using(db).filter(app_label=target, model=model).exists():
            continue
        ContentType.objects.using(db).filter(app_label=source, model=model).update(app_label=target)
    ContentType.objects.clear_cache()


def content_types_to_assistant(apps, schema_editor):
    _move_content_types(apps, schema_editor, "recipes", "assistant")


def content_types_to_recipes(apps, schema_editor):
    _move_content_types(apps, schema_editor, "assistant", "recipes")


class Migration(migrations.Migration):
    initial = True

    dependencies = [
        ("contenttypes", "0002_remove_content_type_name"),
        ("recipes", "0008_clone_name_unique_per_parent"),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.SeparateDatabaseAndState(
            state_operations=[
                migrations.CreateModel(
                    name="Conversation",
                    fields=[
                        ("id", models.CharField(max_length=64, primary_key=True, serialize=False)),
                        ("title", models.CharField(blank=True, default="", max_length=200)),
                        ("state_json", models.JSONField(default=dict)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        ("updated_at", models.DateTimeField(auto_now=True)),
                        (
                            "created_recipe",
                            models.ForeignKey(
                                blank=True,
                                null=True,
                                on_delete=django.db.models.deletion.SET_NULL,
                                related_name="+",
                                to="recipes.recipe",
                            ),
                        ),
                        (
                            "user",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="+",
                                to=settings.AUTH_USER_MODEL,
                            ),
                        ),
                    ],
                    options={
                        "db_table": "ml_chat_conversation",
                        "ordering": ["-updated_at"],
                        "indexes": [models.Index(fields=["user", "updated_at"], name="ml_chat_conv_user_idx")],
                    },
                ),
                migrations.CreateModel(
                    name="ChatMessage",
                    fields=[
                        (
                            "id",
                            models.BigAutoField(
                                auto_created=True, primary_key=True, serialize=False, verbose_name="ID"
                            ),
                        ),
                        (
                            "role",
                            models.CharField(
                                choices=[("user", "User"), ("assistant", "Assistant")], max_length=16
                            ),
                        ),
                        ("content", models.TextField()),
                        ("proposal_json", models.JSONField(blank=True, null=True)),
                        ("sources_json", models.JSONField(blank=True, default=list)),
                        ("created_at", models.DateTimeField(auto_now_add=True)),
                        (
                            "conversation",
                            models.ForeignKey(
                                on_delete=django.db.models.deletion.CASCADE,
                                related_name="messages",
                                to="assistant.conversation",
                            ),
                        ),
                    ],
                    options={
                        "db_table": "ml_chat_message",
                        "ordering": ["conversation_id", "id"],
                        "constraints": [
                            models.CheckConstraint(
                                condition=models.Q(("role__in", ["user", "assistant"])),
                                name="ml_chat_message_role",
                            )
                        ],
                    },
                ),
            ],
            database_operations=[],
        ),
        migrations.RunPython(content_types_to_assistant, content_types_to_recipes),
    ]
