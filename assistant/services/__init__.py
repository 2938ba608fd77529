"""The recipe assistant's reply service: a stored, per-user conversation that drafts recipes.

``chat_reply`` (below) is the one entry point the chat page and API call: it stores the user's
message, runs one turn and stores the answer and the conversation's working state
(``Conversation.state_json``: slots, open questions, the pending proposal), in one transaction.

* ``understanding``    reads the message: built-in rules (``assistant.nlu.extract``), or an
  OpenAI-compatible LLM when LLM_BASE_URL and LLM_MODEL are set, falling back to the rules on
  any error.
* ``turn``             answers it: descriptions and edits become slots (``assistant.slots``),
  the proposal is built by ``assistant.proposal`` and is always valid; questions are answered
  from the knowledge base (``assistant/knowledge``), citing the entry; "create it" creates the
  draft through ``recipes.services.recipe_clone`` (the only write outside the conversation
  itself), after checking the recipes.add_recipe permission.
* ``starting_recipe``  the family's starting recipe among the stored recipes (a baseline, or a
  matching industry/client recipe for a client) and the client a client draft goes into.

The wording lives in ``assistant.reply`` (pure).

State keys: ``family``, ``slots``, ``skipped``, ``pending``, ``focus_metric``, ``brief``,
``unparsed``, ``proposal``, ``proposal_created``, ``created``.
"""

from __future__ import annotations

from django.conf import settings
from django.db import transaction

from mlworkspace.errors import NotFound
from mlworkspace.ids import new_id

from ..models import ChatMessage, Conversation
from ..nlu.text import clean_message, plain
from .turn import Turn
from .understanding import understand


def chat_reply(*, user, message: str, conversation: Conversation | None = None) -> dict:
    """One turn: store the user's message, answer it, store the answer.

    Returns {"conversation_id", "reply", "proposal", "created_recipe_id", "sources"}.
    """
    max_chars = int(getattr(settings, "CHAT_MAX_MESSAGE_CHARS", 4000))
    cleaned = clean_message(message, max_chars=max_chars)
    state_before = dict(conversation.state_json or {}) if conversation is not None else {}
    understanding = understand(cleaned, state_before)  # network (LLM) before any lock
    with transaction.atomic():
        if conversation is None:
            title = plain(cleaned.text, max_len=80) or "New conversation"
            conversation = Conversation.objects.create(id=new_id("conv"), user=user, title=title)
        else:
            # Two tabs posting to one conversation: one turn at a time. Only the user's own.
            conversation = (
                Conversation.objects.select_for_update().filter(pk=conversation.pk, user=user).first()
            )
            if conversation is None:
                raise NotFound("No such conversation.")
        ChatMessage.objects.create(
            conversation=conversation, role="user", content=(message or "")[:max_chars]
        )
        turn = Turn(user=user, conversation=conversation, cleaned=cleaned, understanding=understanding)
        reply, sources = turn.run()
        state = turn.state
        proposal = state.get("proposal")
        ChatMessage.objects.create(
            conversation=conversation,
            role="assistant",
            content=reply,
            proposal_json=proposal,
            sources_json=sources,
        )
        conversation.state_json = state
        conversation.save(update_fields=["state_json", "created_recipe", "updated_at"])
    return {
        "conversation_id": conversation.id,
        "reply": reply,
        "proposal": proposal,
        "created_recipe_id": turn.created_recipe_id,
        "sources": sources,
    }
