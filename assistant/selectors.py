"""Reads of the assistant: a conversation's history, as the API returns it and the chat page
shows it."""

from __future__ import annotations

from .models import Conversation


def conversation_history(conversation: Conversation) -> dict:
    return {
        "conversation_id": conversation.id,
        "title": conversation.title,
        "created_recipe_id": conversation.created_recipe_id,
        "messages": [
            {
                "role": m.role,
                "content": m.content,
                "proposal": m.proposal_json,
                "sources": m.sources_json,
                "created_at": m.created_at,
            }
            for m in conversation.messages.all()
        ],
    }
