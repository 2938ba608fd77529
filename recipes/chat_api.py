from django.conf import settings
from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework import serializers
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from .models import Conversation
from .serializers import StrictSerializer


class ChatRequestSerializer(StrictSerializer):
    message = serializers.CharField(max_length=settings.CHAT_MAX_MESSAGE_CHARS, trim_whitespace=True)
    conversation_id = serializers.CharField(required=False, allow_null=True, allow_blank=True)


# Response shapes, for the OpenAPI schema only: the views return what recipes.chat builds.
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


class ChatView(APIView):
    """Talk to the recipe assistant: `{"message": ..., "conversation_id": optional}`."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=ChatRequestSerializer, responses={200: ChatReplySerializer})
    def post(self, request):
        from . import chat

        data = ChatRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = None
        if conversation_id := data.validated_data.get("conversation_id"):
            conversation = get_object_or_404(
                Conversation.objects.visible_to(request.user), pk=conversation_id
            )
        return Response(
            chat.chat_reply(
                user=request.user, message=data.validated_data["message"], conversation=conversation
            )
        )


class ChatConversationView(APIView):
    """A conversation's history (only your own)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: ChatConversationSerializer})
    def get(self, request, conversation_id):
        from . import chat

        conversation = get_object_or_404(Conversation.objects.visible_to(request.user), pk=conversation_id)
        return Response(chat.conversation_history(conversation))
