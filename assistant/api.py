from django.shortcuts import get_object_or_404
from drf_spectacular.utils import extend_schema
from rest_framework.permissions import IsAuthenticated
from rest_framework.response import Response
from rest_framework.views import APIView

from . import selectors, services
from .models import Conversation
from .serializers import ChatConversationSerializer, ChatReplySerializer, ChatRequestSerializer


class ChatView(APIView):
    """Talk to the recipe assistant: `{"message": ..., "conversation_id": optional}`."""

    permission_classes = [IsAuthenticated]

    @extend_schema(request=ChatRequestSerializer, responses={200: ChatReplySerializer})
    def post(self, request):
        data = ChatRequestSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        conversation = None
        if conversation_id := data.validated_data.get("conversation_id"):
            conversation = get_object_or_404(
                Conversation.objects.visible_to(request.user), pk=conversation_id
            )
        return Response(
            services.chat_reply(
                user=request.user, message=data.validated_data["message"], conversation=conversation
            )
        )


class ChatConversationView(APIView):
    """A conversation's history (only your own)."""

    permission_classes = [IsAuthenticated]

    @extend_schema(responses={200: ChatConversationSerializer})
    def get(self, request, conversation_id):
        conversation = get_object_or_404(Conversation.objects.visible_to(request.user), pk=conversation_id)
        return Response(selectors.conversation_history(conversation))
