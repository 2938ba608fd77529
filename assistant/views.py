"""The chat page ("Build with Chat"): describe the model, get a proposed manifest, say "create it"."""

from __future__ import annotations

import json
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import get_object_or_404, redirect, render
from django.urls import reverse
from django.views.decorators.http import require_http_methods
from django_htmx.http import push_url, reswap, retarget

from mlworkspace.errors import DomainError
from mlworkspace.views import is_fragment, json_value, manifest_text
from recipes import access, catalog

from . import selectors, services
from .forms import ChatForm
from .models import Conversation


def _text(item: Any) -> str:
    if isinstance(item, str):
        return item
    if isinstance(item, dict):
        for key in ("question", "message", "text", "field", "path"):
            if isinstance(item.get(key), str):
                return item[key]
    return json.dumps(item, ensure_ascii=False)


def _proposal_view(proposal: Any) -> dict | None:
    """The assistant's proposal, shaped for the template (defensive: the assistant evolves)."""
    if not isinstance(proposal, dict):
        return None
    manifest = proposal.get("manifest")
    diff = [
        {
            "path": d.get("path", ""),
            "op": d.get("op", ""),
            "old": json_value(d.get("old")),
            "new": json_value(d.get("new")),
        }
        for d in proposal.get("diff") or []
        if isinstance(d, dict)
    ]
    return {
        "family": proposal.get("family"),
        "family_label": catalog.FAMILY_LABELS.get(proposal.get("family") or "", proposal.get("family")),
        "level": proposal.get("level"),
        "base_recipe_id": proposal.get("base_recipe_id"),
        "name": proposal.get("name"),
        "valid": proposal.get("valid"),
        "manifest_text": manifest_text(manifest) if manifest is not None else "",
        "diff": diff,
        "missing": [_text(m) for m in proposal.get("missing") or []],
    }


def _sources_view(sources: Any) -> list[dict]:
    out = []
    for source in sources or []:
        if isinstance(source, dict):
            title = source.get("title") or source.get("name") or source.get("id") or source.get("path") or ""
            url = source.get("url") or ""
            out.append(
                {"title": str(title), "url": url if isinstance(url, str) and url.startswith("/") else ""}
            )
        else:
            out.append({"title": str(source), "url": ""})
    return out


def _message_view(role: str, content: str, proposal=None, sources=None, created_recipe_id=None) -> dict:
    return {
        "role": role,
        "content": content,
        "proposal": _proposal_view(proposal),
        "sources": _sources_view(sources),
        "created_recipe_id": created_recipe_id,
    }


@login_required
@require_http_methods(["GET", "POST"])
def chat(request: HttpRequest) -> HttpResponse:
    """Build with Chat: describe the model, get a proposed manifest, say "create it"."""
    conversation = None
    conversation_id = request.POST.get("conversation_id") or request.GET.get("c")
    if conversation_id:
        conversation = get_object_or_404(Conversation.objects.visible_to(request.user), pk=conversation_id)
    form = ChatForm(request.POST or None, initial={"conversation_id": conversation_id or ""})

    if request.method == "POST":
        if form.is_valid():
            message = form.cleaned_data["message"]
            try:
                result = services.chat_reply(user=request.user, message=message, conversation=conversation)
            except DomainError as exc:
                reply = _message_view("assistant", f"That did not work: {exc.detail}")
                reply["error"] = True
                new_id = conversation.pk if conversation else ""
            else:
                reply = _message_view(
                    "assistant",
                    result.get("reply") or "",
                    result.get("proposal"),
                    result.get("sources"),
                    result.get("created_recipe_id"),
                )
                new_id = result.get("conversation_id") or ""
            url = reverse("pages:chat") + (f"?c={new_id}" if new_id else "")
            if not is_fragment(request):
                return redirect(url)
            context = {"exchange": [_message_view("user", message), reply], "conversation_id": new_id}
            response = render(request, "assistant/chat.html#exchange", context)
            return push_url(response, url) if new_id else response
        if is_fragment(request):
            # The form answers in place of the chat log it normally appends to.
            response = render(request, "assistant/chat.html#form", {"form": form}, status=400)
            return reswap(retarget(response, "#chat-form"), "outerHTML")
    history: list[dict] = []
    if conversation is not None:
        for m in selectors.conversation_history(conversation)["messages"]:
            history.append(_message_view(m["role"], m["content"], m.get("proposal"), m.get("sources")))
        # Only the newest proposal can still be created; older ones were superseded.
        with_proposal = [m for m in history if m["proposal"]]
        for m in with_proposal[:-1]:
            m["superseded"] = True
    context = {
        "nav": "chat",
        "form": form,
        "conversation": conversation,
        "conversation_id": conversation.pk if conversation is not None else "",
        "created_recipe": (
            access.visible_recipes(request.user).filter(pk=conversation.created_recipe_id).first()
            if conversation is not None and conversation.created_recipe_id
            else None
        ),
        "history": history,
        "conversations": Conversation.objects.visible_to(request.user).only("id", "title", "updated_at")[:20],
    }
    return render(request, "assistant/chat.html", context, status=400 if form.errors else 200)
