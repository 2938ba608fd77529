"""assistant 0001 / recipes 0009 move the chat's models from recipes to assistant in the
migration state only: a conversation written before the move is read, as it was, through
assistant.models after it, and the content types (so the permissions on them and the groups
holding those) follow the models."""

import pytest
from django.contrib.auth.models import Group, Permission
from django.contrib.contenttypes.models import ContentType
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from assistant.models import ChatMessage, Conversation

BEFORE = [("recipes", "0008_clone_name_unique_per_parent"), ("assistant", None)]
AFTER = [("recipes", "0009_chat_moves_to_assistant")]


def migrate(targets):
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(targets)
    return executor.loader.project_state([t for t in targets if t[1] is not None]).apps


@pytest.mark.django_db(transaction=True)
def test_a_conversation_written_before_the_move_is_read_through_assistant_after_it():
    old = migrate(BEFORE)
    try:
        assert "ml_chat_conversation" in connection.introspection.table_names()
        User = old.get_model("auth", "User")
        Recipe = old.get_model("recipes", "Recipe")
        OldConversation = old.get_model("recipes", "Conversation")
        OldMessage = old.get_model("recipes", "ChatMessage")

        user = User.objects.create(username="before-the-move")
        recipe = Recipe.objects.create(id="r_base", name="b", model_family="pricing", level="baseline")
        conversation = OldConversation.objects.create(
            id="conv_old",
            user=user,
            title="Weekly demand",
            state_json={"family": "forecasting", "slots": {"horizon_days": 56}},
            created_recipe=recipe,
        )
        OldMessage.objects.create(conversation=conversation, role="user", content="Weekly demand forecast")
        OldMessage.objects.create(
            conversation=conversation,
            role="assistant",
            content="This is a forecasting problem.",
            proposal_json={"family": "forecasting"},
            sources_json=[{"id": "families-overview"}],
        )
        # (contenttypes and auth are not the migrations' business: their current models serve.)
        content_type, _ = ContentType.objects.get_or_create(app_label="recipes", model="conversation")
        permission, _ = Permission.objects.get_or_create(
            content_type=content_type,
            codename="view_conversation",
            defaults={"name": "Can view conversation"},
        )
        group = Group.objects.create(name="Conversation readers")
        group.permissions.add(permission)

        migrate(AFTER)
        ContentType.objects.clear_cache()

        moved = Conversation.objects.get(pk="conv_old")
        assert moved.user_id == user.pk
        assert moved.title == "Weekly demand"
        assert moved.state_json == {"family": "forecasting", "slots": {"horizon_days": 56}}
        assert moved.created_recipe_id == "r_base"
        messages = list(moved.messages.all())
        assert [(m.role, m.content) for m in messages] == [
            ("user", "Weekly demand forecast"),
            ("assistant", "This is a forecasting problem."),
        ]
        assert messages[1].proposal_json == {"family": "forecasting"}
        assert messages[1].sources_json == [{"id": "families-overview"}]
        assert ChatMessage.objects.count() == 2
        # The same content type row, now the assistant's: its permission and group follow.
        content_type.refresh_from_db()
        assert (content_type.app_label, content_type.model) == ("assistant", "conversation")
        assert not ContentType.objects.filter(app_label="recipes", model="conversation").exists()
        assert (
            Group.objects.get(pk=group.pk)
            .permissions.filter(content_type__app_label="assistant", codename="view_conversation")
            .exists()
        )
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes())
