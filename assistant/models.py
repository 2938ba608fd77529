from django.conf import settings
from django.db import models
from django.db.models import Q

from mlworkspace.fields import JSONField
from recipes.access import client_scope


class ConversationQuerySet(models.QuerySet):
    def visible_to(self, user):
        """Its user's own conversations, less those about a client recipe of a client the
        user no longer belongs to (recipes.access)."""
        if not user.is_authenticated:
            return self.none()
        return self.filter(client_scope(user, "created_recipe__client"), user=user)


class Conversation(models.Model):
    """A chat with the recipe assistant; private to its user."""

    id = models.CharField(primary_key=True, max_length=64)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    title = models.CharField(max_length=200, blank=True, default="")
    # The assistant's working state: the pending proposal and what it still needs to ask.
    state_json = JSONField(default=dict)
    created_recipe = models.ForeignKey(
        "recipes.Recipe", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    objects = ConversationQuerySet.as_manager()

    class Meta:
        db_table = "ml_chat_conversation"
        ordering = ["-updated_at"]
        # "My conversations", newest first.
        indexes = [models.Index(fields=["user", "updated_at"], name="ml_chat_conv_user_idx")]

    def __str__(self):
        return self.title or self.id


class ChatMessage(models.Model):
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="messages")
    role = models.CharField(max_length=16, choices=[("user", "User"), ("assistant", "Assistant")])
    content = models.TextField()
    proposal_json = JSONField(null=True, blank=True)
    sources_json = JSONField(default=list, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        db_table = "ml_chat_message"
        ordering = ["conversation_id", "id"]
        constraints = [
            models.CheckConstraint(condition=Q(role__in=["user", "assistant"]), name="ml_chat_message_role")
        ]

    def __str__(self):
        return f"{self.role}: {self.content[:40]}"
