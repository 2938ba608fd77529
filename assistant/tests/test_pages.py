"""The chat page ("Build with Chat"): the HTMX exchange, creating the proposed recipe, errors
in place, redirects without HTMX and private conversations."""

import pytest

from assistant.models import Conversation
from recipes.models import Recipe

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def test_chat_page_and_htmx_exchange(as_user, baselines):
    page = as_user.get("/model-development/chat")
    assert page.status_code == 200
    assert b'id="chat-form"' in page.content
    message = "Weekly demand forecast per store and product for a grocery chain <b>now</b>"
    response = as_user.post("/model-development/chat", {"message": message}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert "&lt;b&gt;now&lt;/b&gt;" in body and "<b>now</b>" not in body
    conversation = Conversation.objects.get()
    assert f'value="{conversation.pk}"' in body and 'hx-swap-oob="true"' in body
    assert response["HX-Push-Url"] == f"/model-development/chat?c={conversation.pk}"
    assert 'class="msg msg-assistant' in body
    history = as_user.get("/model-development/chat", {"c": conversation.pk})
    assert message.replace("<", "&lt;").replace(">", "&gt;") in history.content.decode()


def test_chat_proposal_then_create_it(as_user, baselines):
    first = as_user.post(
        "/model-development/chat",
        {"message": "Weekly demand forecast per store and product for a grocery chain"},
        **HTMX,
    )
    body = first.content.decode()
    assert 'class="proposal"' in body and "Create it" in body
    conversation = Conversation.objects.get()
    before = Recipe.objects.count()
    created = as_user.post(
        "/model-development/chat", {"message": "create it", "conversation_id": conversation.pk}, **HTMX
    )
    assert Recipe.objects.count() == before + 1
    recipe = Recipe.objects.order_by("-created_at").first()
    assert f'href="/model-development/recipes/{recipe.pk}"' in created.content.decode()
    assert "Open the new recipe" in created.content.decode()
    page = as_user.get("/model-development/chat", {"c": conversation.pk}).content.decode()
    assert "This conversation created" in page
    assert page.count(">Create it</button>") == 1  # only the newest proposal offers it


def test_chat_empty_message_is_an_error_in_place(as_user):
    response = as_user.post("/model-development/chat", {"message": "   "}, **HTMX)
    assert response.status_code == 400
    assert response["HX-Retarget"] == "#chat-form"
    assert b"This field is required" in response.content


def test_chat_without_htmx_redirects_to_the_conversation(as_user, baselines):
    response = as_user.post("/model-development/chat", {"message": "Hello"})
    assert response.status_code == 302
    conversation = Conversation.objects.get()
    assert response["Location"] == f"/model-development/chat?c={conversation.pk}"


def test_chat_conversations_are_private(client, user, lead, baselines):
    client.force_login(user)
    client.post("/model-development/chat", {"message": "Hello"})
    conversation = Conversation.objects.get()
    client.force_login(lead)
    assert client.get("/model-development/chat", {"c": conversation.pk}).status_code == 404
