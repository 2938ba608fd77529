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


class ChatView(APIView):
    """Talk to the recipe assistant: `{"message": ..., "conversation_id": optional}`."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=ChatRequestSerializer, responses=None)
    def post(self, request):
        from . import chat

        data = ChatRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = None
        if conversation_id := data.validated_data.get("conversation_id"):
            conversation = get_object_or_404(Conversation, pk=conversation_id, user=request.user)
        return Response(
            chat.chat_reply(
                user=request.user, message=data.validated_data["message"], conversation=conversation
            )
        )


class ChatConversationView(APIView):
    """A conversation's history (only your own)."""

    permission_classes = [IsAuthenticated]

    def get(self, request, conversation_id):
        from . import chat

        conversation = get_object_or_404(Conversation, pk=conversation_id, user=request.user)
        return Response(chat.conversation_history(conversation))
