"""The recipe assistant (placeholder until the chat issue lands: answers with guidance)."""

from mlworkspace.ids import new_id

from .models import ChatMessage, Conversation

GUIDANCE = (
    "I can help you choose a model family and start a recipe. Describe the business problem "
    "(what to predict or decide, for whom, how often); or clone a baseline recipe from the library."
)


def chat_reply(*, user, message: str, conversation: Conversation | None = None) -> dict:
    if conversation is None:
        conversation = Conversation.objects.create(id=new_id("conv"), user=user, title=message[:80])
    ChatMessage.objects.create(conversation=conversation, role="user", content=message)
    ChatMessage.objects.create(conversation=conversation, role="assistant", content=GUIDANCE)
    return {
        "conversation_id": conversation.id,
        "reply": GUIDANCE,
        "proposal": None,
        "created_recipe_id": None,
        "sources": [],
    }


def conversation_history(conversation: Conversation) -> dict:
    return {
        "conversation_id": conversation.id,
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
