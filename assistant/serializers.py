from django.conf import settings
from rest_framework import serializers

from recipes.serializers import StrictSerializer


class ChatRequestSerializer(StrictSerializer):
    message = serializers.CharField(max_length=settings.CHAT_MAX_MESSAGE_CHARS, trim_whitespace=True)
    conversation_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)


# Response shapes, for the OpenAPI schema only: the views return what assistant.services
# (a reply) and assistant.selectors (a history) build.
class ChatReplySerializer(serializers.Serializer):
    conversation_id = serializers.CharField()
    reply = serializers.CharField(help_text="The assistant's answer (plain text).")
    proposal = serializers.JSONField(
        allow_null=True, help_text="The proposed recipe (manifest, diff, missing answers), if any."
    )
    created_recipe_id = serializers.CharField(allow_null=True)
    sources = serializers.ListField(child=serializers.DictField(), help_text="What the answer drew on.")


class ChatHistoryMessageSerializer(serializers.Serializer):
    role = serializers.CharField(help_text="user or assistant")
    content = serializers.CharField()
    proposal = serializers.JSONField(allow_null=True)
    sources = serializers.JSONField(allow_null=True)
    created_at = serializers.DateTimeField()


class ChatConversationSerializer(serializers.Serializer):
    conversation_id = serializers.CharField()
    title = serializers.CharField()
    created_recipe_id = serializers.CharField(allow_null=True)
    messages = ChatHistoryMessageSerializer(many=True)
