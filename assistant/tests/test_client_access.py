"""Client workspaces and the chat: conversations follow their user's membership, and a client
draft goes only into a client the user may write in (the access matrix and its `world` are
recipes/tests/test_client_access.py's)."""

from __future__ import annotations

from assistant.models import Conversation
from assistant.services.starting_recipe import client_for
from recipes import client_services
from recipes.tests.test_client_access import API, api_as, world  # noqa: F401 (world: a fixture)


def test_conversations_about_a_client_recipe_follow_membership(world):  # noqa: F811
    member = world["users"]["data_scientist"]
    conversation = Conversation.objects.create(
        id="conv_test", user=member, title="t", created_recipe=world["objects"]["own"]["recipe"]
    )
    api = api_as(world, "data_scientist")
    assert api.get(f"{API}/chat/{conversation.pk}").status_code == 200

    client_services.membership_remove(user=None, client=world["clients"]["own"], member=member)
    api = api_as(world, "data_scientist")
    assert api.get(f"{API}/chat/{conversation.pk}").status_code == 404
    assert not Conversation.objects.visible_to(member).exists()


def test_chat_puts_a_client_draft_in_a_client_the_user_may_write_in(world):  # noqa: F811
    ds, viewer = world["users"]["data_scientist"], world["users"]["viewer"]
    industry = world["industry"]
    own = world["clients"]["own"]
    assert client_for(ds, "Client A", industry)[0] == own
    assert client_for(ds, None, industry)[0] == own  # the only one they write in
    found, why = client_for(ds, "Client B", industry)  # not theirs: asked which, B not offered
    assert found is None and "Client A" in why and "Client B" not in why
    found, why = client_for(viewer, "Client A", industry)
    assert found is None and "role in none" in why
