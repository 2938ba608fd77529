"""The recipe assistant's reply service: a stored, per-user conversation that drafts recipes.

Each turn reads the message (built-in rules in ``assistant.nlu.extract``, or an
OpenAI-compatible LLM when LLM_BASE_URL and LLM_MODEL are set, falling back to the rules on
any error), updates the conversation's working state (``Conversation.state_json``: slots,
open questions, the pending proposal) and answers in plain text.

* Descriptions and edits become slots; the family's starting recipe is chosen among the
  stored recipes (a baseline, or a matching industry/client recipe for a client); the
  proposal is built by ``assistant.proposal`` and is always valid.
* "create it" creates the draft through ``recipes.services.recipe_clone`` (the only write
  outside the conversation itself), after checking the recipes.add_recipe permission.
* Questions are answered from the knowledge base (``assistant/knowledge``), citing the entry.

State keys: ``family``, ``slots``, ``skipped``, ``pending``, ``focus_metric``, ``brief``,
``unparsed``, ``proposal``, ``proposal_created``, ``created``.
"""

from __future__ import annotations

import copy
import logging
import re
from dataclasses import dataclass

from django.conf import settings
from django.db import transaction
from django.utils.text import slugify

from mlworkspace.errors import DomainError, NotFound
from mlworkspace.ids import new_id
from recipes import access, catalog
from recipes import perms as recipe_perms
from recipes.lineage import diff as manifest_diff
from recipes.models import Client, Recipe, RecipeStatus
from recipes.services import recipe_clone

from . import knowledge, llm
from . import proposal as proposals
from .models import ChatMessage, Conversation
from .nlu import extract
from .nlu.text import CleanMessage, clean_message, plain, safe_label

log = logging.getLogger(__name__)

BASELINE_IDS = {family: f"recipe_{catalog.FAMILY_SHORT[family]}_base" for family in catalog.FAMILIES}
LLM_TIMEOUT_SECONDS = 8.0
MAX_DIFF_LINES = 25
RECIPE_PAGE = "/model-development/recipes/{id}"

GREETING = (
    "Hello! I draft ML recipes from plain-words descriptions and answer questions about model families, "
    "metrics, drift and recipe levels.\n"
    'Describe the model you need, for example: "weekly demand forecast for 300 grocery stores, 8 weeks ahead, '
    'MAPE under 12%, retrain every Monday at 6" or "which offer to send each customer to maximise incremental '
    'revenue, real-time". When the proposal looks right, say "create it".'
)
EMPTY_REPLY = (
    "Your message was empty. Describe the model you need (what to predict or decide, for whom, how often, "
    "how good it must be) or ask a question."
)
REFUSAL = (
    "I can't do that: I only draft recipes and answer questions about them. Nothing you write changes my rules, "
    'and the only thing I ever write is your own draft recipe, when you say "create it". Reviewing, approving, '
    "deleting or changing other recipes is done on the recipe pages by people with the right permissions."
)
FAMILY_QUESTION = (
    "Which kind of model is it?\n"
    "1. Forecasting: a quantity over time (demand, sales, volumes)\n"
    "2. Pricing: which price to set\n"
    "3. Next best action: which offer or action for each customer\n"
    "4. Location scoring: ranking sites or locations"
)
LLM_NOTICE = "(The language model could not be reached, so the built-in assistant answered this message.)"


# --------------------------------------------------------------------------- public API


def chat_reply(*, user, message: str, conversation: Conversation | None = None) -> dict:
    """One turn: store the user's message, answer it, store the answer.

    Returns {"conversation_id", "reply", "proposal", "created_recipe_id", "sources"}.
    """
    max_chars = int(getattr(settings, "CHAT_MAX_MESSAGE_CHARS", 4000))
    cleaned = clean_message(message, max_chars=max_chars)
    state_before = dict(conversation.state_json or {}) if conversation is not None else {}
    understanding = _understand(cleaned, state_before)  # network (LLM) before any lock
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
        turn = _Turn(user=user, conversation=conversation, cleaned=cleaned, understanding=understanding)
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


# --------------------------------------------------------------------------- understanding


@dataclass
class Understanding:
    extraction: extract.Extraction
    wording: str = ""
    notice: str = ""


def _llm_configured() -> bool:
    return bool(getattr(settings, "LLM_BASE_URL", "") and getattr(settings, "LLM_MODEL", ""))


def _base_cron(state: dict, family: str | None) -> str | None:
    """The schedule of the pending proposal, else of the family's baseline: "retrain weekly"
    keeps the starting recipe's hour."""
    manifest = (state.get("proposal") or {}).get("manifest")
    if manifest is None and family in BASELINE_IDS:
        version = Recipe.objects.filter(pk=BASELINE_IDS[family]).first()
        manifest = version.current_version.manifest if version and version.current_version else None
    return ((manifest or {}).get("deployment") or {}).get("schedule")


def _read(text: str, state: dict, *, pending: str | None = None) -> extract.Extraction:
    pending = pending if pending is not None else state.get("pending")
    kwargs = {
        "family_hint": state.get("family"),
        "pending": pending,
        "has_proposal": bool(state.get("proposal")),
    }
    ex = extract.read_message(text, **kwargs)
    if "schedule" in ex.slots:
        base_cron = _base_cron(state, ex.family or state.get("family"))
        if base_cron:
            ex = extract.read_message(text, base_cron=base_cron, **kwargs)
    return ex


def _understand(cleaned: CleanMessage, state: dict) -> Understanding:
    ex = _read(cleaned.text, state)
    if cleaned.empty or not _llm_configured():
        return Understanding(ex)
    context = (
        f"family={state.get('family')}; open question={state.get('pending')}; "
        f"has proposal={'yes' if state.get('proposal') else 'no'}"
    )
    try:
        out = llm.understand(
            cleaned.text,
            base_url=settings.LLM_BASE_URL,
            model=settings.LLM_MODEL,
            api_key=getattr(settings, "LLM_API_KEY", ""),
            context=context,
            timeout=float(getattr(settings, "LLM_TIMEOUT_SECONDS", LLM_TIMEOUT_SECONDS)),
        )
    except llm.LLMUnavailable as exc:
        log.warning("LLM unavailable, using the built-in assistant: %s", exc)
        return Understanding(ex, notice=LLM_NOTICE)
    # The LLM understands; its slots are merged over the rules' and checked like them.
    ex.intent = out["intent"] or ex.intent
    if out["family"]:
        ex.family = out["family"]
    ex.slots = extract.merge_slots(ex.slots, out["slots"]) | {
        k: v for k, v in ex.slots.items() if k in ("target_edit", "threshold_edit")
    }
    return Understanding(ex, wording=out["wording"])


# --------------------------------------------------------------------------- one turn


@dataclass
class Base:
    recipe: Recipe  # the starting recipe (the diff is against it)
    clone_source: Recipe  # the recipe that becomes the parent
    level: str
    note: str = ""


class _Turn:
    def __init__(
        self, *, user, conversation: Conversation, cleaned: CleanMessage, understanding: Understanding
    ):
        self.user = user
        self.conversation = conversation
        self.cleaned = cleaned
        self.u = understanding
        self.ex = understanding.extraction
        self.state: dict = copy.deepcopy(conversation.state_json or {})
        self.created_recipe_id: str | None = None
        self.sources: list[dict] = []
        self.lead: list[str] = []  # notes shown before the answer

    # -- dispatch
    def run(self) -> tuple[str, list[dict]]:
        self.lead.extend(n for n in (self.u.notice, *self.cleaned.notes) if n)
        if self.cleaned.empty:
            if self.cleaned.had_markup:
                return self._finish(
                    "Without the markup there was nothing left to read. " + self._next_step_hint()
                )
            return self._finish(EMPTY_REPLY)
        if self.cleaned.injection:
            return self._finish(REFUSAL + "\n" + self._next_step_hint())
        self.lead.extend(self.ex.notes)
        if self.u.wording:
            self.lead.append(self.u.wording)
        handler = {
            "greeting": self._greeting,
            "question": self._question,
            "reset": self._reset,
            "create": self._create,
            "defaults": self._defaults,
            "skip": self._skip,
            "show": self._show,
        }.get(self.ex.intent, self._describe)
        return self._finish(handler())

    def _finish(self, body: str) -> tuple[str, list[dict]]:
        text = "\n".join([*self.lead, body]) if self.lead else body
        return text.strip(), self.sources

    def _cite(self, entries: list[knowledge.Entry]) -> str:
        for e in entries:
            if e.id not in {s["id"] for s in self.sources}:
                self.sources.append(e.source())
        return "\n".join(
            f'Source: knowledge base entry "{e.id}" (version {e.version}): {e.title}.' for e in entries
        )

    def _next_step_hint(self) -> str:
        if self.state.get("proposal"):
            pending = self.state.get("pending")
            if pending:
                return "Next question: " + proposals.question(
                    pending, self.state["family"], self.state.get("slots", {})
                )
            return 'Say "create it" to create the draft recipe, or tell me what to change.'
        return (
            "Describe the model you need, or ask a question about families, metrics, drift or recipe levels."
        )

    # -- simple intents
    def _greeting(self) -> str:
        entry = knowledge.get("using-the-assistant")
        return GREETING + ("\n" + self._cite([entry]) if entry else "")

    def _question(self) -> str:
        text = self.cleaned.text
        family_q = re.search(
            r"\bwhich\b.{0,30}\b(?:family|families|model|type|kind)\b|\bwhat\s+(?:kind|type)\s+of\s+model\b",
            text,
            re.I,
        )
        if family_q:
            fam, _ = extract.classify_family(text)
            entry = knowledge.get("families-overview")
            if fam and entry:
                section = knowledge.relevant_text(entry, catalog.FAMILY_LABELS[fam])
                return (
                    f"{catalog.FAMILY_LABELS[fam]} fits this best. {section}\n"
                    "Describe it in a sentence or two (industry, how often, how good it must be) and I will draft the recipe.\n"
                    + self._cite([entry])
                )
        found = knowledge.answer(text)
        if found is None:
            titles = ", ".join(e.title for e in knowledge.load()[:6])
            return (
                "I don't have an answer to that in my knowledge base. I can explain, for example: "
                f"{titles}; or draft a recipe from your description.\n" + self._next_step_hint()
            )
        answer, entries = found
        return f"{answer}\n{self._cite(entries)}"

    def _reset(self) -> str:
        created = self.state.get("created", [])
        self.state = {"created": created} if created else {}
        return "OK, starting over: the pending proposal is cleared. Describe the model you need."

    def _defaults(self) -> str:
        if not self.state.get("proposal"):
            return "There is no proposal yet to fill with defaults. " + self._next_step_hint()
        family = self.state["family"]
        open_keys = proposals.missing_slots(
            family, self.state.get("slots", {}), skipped=self.state.get("skipped", [])
        )
        self.state["skipped"] = [*self.state.get("skipped", []), *open_keys]
        body = self._recompute(turn_keys=set())
        return "OK, I keep the starting recipe's values for the open questions.\n" + body

    def _skip(self) -> str:
        pending = self.state.get("pending")
        if not self.state.get("proposal") or not pending:
            return "There is no open question to skip. " + self._next_step_hint()
        self.state["skipped"] = [*self.state.get("skipped", []), pending]
        body = self._recompute(turn_keys=set())
        return "OK, I keep the starting recipe's value for that.\n" + body

    def _show(self) -> str:
        prop = self.state.get("proposal")
        if not prop:
            return "There is no proposal yet. " + self._next_step_hint()
        lines = [
            f'Proposal "{prop["name"]}" ({prop["level"]} level), compared with {prop["base_recipe_id"]}:'
        ]
        lines.extend(_diff_lines(prop["diff"]))
        lines.append("The manifest passes validation. " + self._next_step_hint())
        return "\n".join(lines)

    # -- describe / edit
    def _describe(self) -> str:
        ex = self.ex
        family = self.state.get("family")
        started_new = False
        if (
            ex.family
            and family
            and ex.family != family
            and ex.family_scores.get(ex.family, 0) >= 3
            and not ex.slots.get("overrides")
        ):
            # A different kind of model: a new proposal, keeping who it is for.
            keep = {k: v for k, v in self.state.get("slots", {}).items() if k in ("industry", "client")}
            self.state = {"created": self.state.get("created", []), "slots": keep}
            self.lead.append(
                f"This sounds like a {catalog.FAMILY_LABELS[ex.family].lower()} model rather than "
                f"{catalog.FAMILY_LABELS[family].lower()}, so I started a new proposal."
            )
            family = None
        if family is None:
            family = ex.family
            started_new = family is not None
        new_slots = dict(ex.slots)
        if family is None:
            # Keep what we understood (industry, client) and the words, until the family is known.
            self.state["slots"] = extract.merge_slots(self.state.get("slots", {}), _context_only(new_slots))
            self.state.setdefault("unparsed", []).append(self.cleaned.text[:1000])
            self.state["pending"] = "family"
            return "I couldn't tell which kind of model you need. " + FAMILY_QUESTION
        self.state["family"] = family
        if started_new:
            # Read earlier messages again now that the family (and so the metric names) is known.
            earlier: dict = {}
            for old_text in self.state.pop("unparsed", []):
                earlier = extract.merge_slots(earlier, _read(old_text, {"family": family}, pending="").slots)
            self.state["slots"] = extract.merge_slots(self.state.get("slots", {}), earlier)
            if not self.state.get("brief"):
                self.state["brief"] = plain(self.cleaned.text, max_len=300)
        _resolve_bare_edits(family, new_slots, self.state)
        if not new_slots and not started_new:
            pending = self.state.get("pending")
            if pending and self.state.get("proposal"):
                return (
                    "I didn't catch that. "
                    + proposals.question(pending, family, self.state.get("slots", {}))
                    + ' (Or say "skip" to keep the starting recipe\'s value.)'
                )
            if self.state.get("proposal"):
                return "I didn't find anything to change in that. " + self._next_step_hint()
        self._previous_slots = copy.deepcopy(self.state.get("slots", {}))
        _drop_superseded_overrides(self.state.setdefault("slots", {}), new_slots)
        self.state["slots"] = extract.merge_slots(self.state.get("slots", {}), new_slots)
        if "client" in new_slots or "industry" in new_slots:
            self.state["slots"].pop("client_base", None)
        self._turn_slots = new_slots
        turn_keys = set(new_slots) | {f"metric:{m}" for m in new_slots.get("metrics", {})}
        total = len(self.state["slots"].get("overrides") or [])
        added = len(new_slots.get("overrides") or [])
        turn_keys |= {f"overrides:{i}" for i in range(total - added, total)}
        if "drift_method" in new_slots or "drift_threshold" in new_slots:
            turn_keys.add("drift")
        return self._recompute(turn_keys=turn_keys, first=started_new)

    def _recompute(self, *, turn_keys: set[str], first: bool = False) -> str:
        family = self.state["family"]
        slots = self.state.setdefault("slots", {})
        base = _choose_base(self.user, family, slots)
        if base is None:
            self.state["proposal"] = None
            return (
                f"There is no {catalog.FAMILY_LABELS[family].lower()} recipe to start from yet (the baseline "
                f"{BASELINE_IDS[family]} is not loaded), so I can't propose a manifest. Ask an administrator to load "
                "the baseline recipes."
            )
        base_version = base.recipe.current_version
        base_manifest = base_version.manifest
        name = _proposal_name(family, slots, base.level)
        description = _description(name, base.recipe, base_version.version, self.state.get("brief", ""))
        label_slots = getattr(self, "_turn_slots", None)
        result = proposals.build(
            base_manifest,
            family=family,
            level=base.level,
            name=name,
            description=description,
            slots=slots,
            label_slots=label_slots,
        )
        if result.rejected_slots:
            # Go back to what those slots were before this message, and build again.
            rejected = result.rejected
            _revert_rejected(slots, getattr(self, "_previous_slots", {}), result.rejected_slots)
            for key, metric in result.rejected_slots:
                turn_keys = turn_keys - {key, f"metric:{metric}", f"overrides:{metric}"}
            result = proposals.build(
                base_manifest,
                family=family,
                level=base.level,
                name=name,
                description=description,
                slots=slots,
            )
            _revert_rejected(slots, {}, result.rejected_slots)
            result.rejected = rejected + [r for r in result.rejected if r not in rejected]
        missing = proposals.missing_slots(family, slots, skipped=self.state.get("skipped", []))
        questions = [proposals.question(k, family, slots) for k in missing]
        self.state["pending"] = missing[0] if missing else None
        previous = self.state.get("proposal")
        prop = {
            "family": family,
            "base_recipe_id": base.recipe.id,
            "level": base.level,
            "name": name,
            "parent_id": base.clone_source.id,
            "manifest": result.manifest,
            "diff": manifest_diff(base_manifest, result.manifest),
            "missing": questions,
            "valid": result.valid,
        }
        if not result.valid:
            # The starting recipe itself does not validate (an old version): never propose it.
            self.state["proposal"] = None
            return (
                f"The starting recipe {base.recipe.id} {base_version.version} does not pass validation "
                f"({proposals.plain_errors(result.errors)}), so I can't propose a manifest from it."
            )
        self.state["proposal"] = prop
        if previous and self.state.get("proposal_created") and previous.get("manifest") != prop["manifest"]:
            self.state.pop("proposal_created", None)

        lines: list[str] = []
        if first:
            lines.append(
                f"This is a {catalog.FAMILY_LABELS[family].lower()} problem. I started from {base.recipe.name} "
                f"({base.recipe.id}, version {base_version.version})."
            )
        if base.note:
            lines.append(base.note)
        lines.append(f'Proposed {base.level} recipe: "{name}" (parent: {base.clone_source.id}).')
        shown = [
            line
            for key, metric, line in result.applied
            if first
            or (key != "overrides" and key in turn_keys)
            or f"metric:{metric}" in turn_keys
            or f"overrides:{metric}" in turn_keys
        ]
        if "name" in turn_keys and not first:
            shown.append(f"name: {name}")
        for key, value in (("industry", slots.get("industry")), ("client", slots.get("client"))):
            if value and (first or key in turn_keys):
                shown.append(f"{key}: {value}")
        if (goal := slots.get("goal")) and (first or "goal" in turn_keys):
            shown.append(f"goal: maximise {goal.replace('_', ' ').replace('@k', '')} (measured by {goal})")
        if (scale := slots.get("scale")) and (first or "scale" in turn_keys):
            shown.append(f"scale: {scale['count']} {scale['unit']} (noted in the description)")
        if shown:
            lines.append("What I understood:" if first else "Changes:")
            lines.extend(f"- {line}" for line in shown)
        lines.extend(result.rejected)
        lines.append(
            f"The proposed manifest passes validation and differs from {base.recipe.id} in "
            f"{len(prop['diff'])} place{'s' if len(prop['diff']) != 1 else ''} (see the diff)."
        )
        if questions:
            more = f" ({len(questions) - 1} more after this)" if len(questions) > 1 else ""
            lines.append(f"Next question{more}: {questions[0]}")
            lines.append(
                '(Answer it, or say "create it" to create the draft with the starting recipe\'s values for what is '
                "still open.)"
            )
        else:
            lines.append('Say "create it" to create the draft recipe, or tell me what to change.')
        return "\n".join(lines)

    # -- create
    def _create(self) -> str:
        prop = self.state.get("proposal")
        if not prop:
            return "There is nothing to create yet. " + self._next_step_hint()
        # A client draft is written into a client: a write role there is enough (checked
        # with the client below); anything else needs the firm permission.
        client_draft = prop.get("level") == "client" and access.has_write_role_somewhere(self.user)
        if not client_draft and not self.user.has_perm(recipe_perms.ADD_RECIPE):
            return (
                "You don't have permission to create recipes (recipes.add_recipe), so I can't create this draft. "
                "Ask a workspace admin to add you to the Data scientists group; the proposal stays here."
            )
        if self.state.get("proposal_created"):
            rid = self.state["proposal_created"]
            self.created_recipe_id = rid
            return f"This proposal was already created as draft recipe {rid}: {RECIPE_PAGE.format(id=rid)}"
        missing = proposals.missing_slots(
            prop["family"], self.state.get("slots", {}), skipped=self.state.get("skipped", [])
        )
        kept = ""
        if missing:
            # "create it" is explicit: open questions keep the starting recipe's values, and we say which.
            self.state["skipped"] = [*self.state.get("skipped", []), *missing]
            prop["missing"] = []
            self.state["pending"] = None
            kept = (
                "The open questions keep the starting recipe's values ("
                + ", ".join(proposals.OPEN_LABELS.get(k, k) for k in missing)
                + "); change them in the recipe's manifest editor as a new version if needed."
            )
        source = access.visible_recipes(self.user).filter(pk=prop["parent_id"]).first()
        if source is None:
            return f'The parent recipe {prop["parent_id"]} no longer exists. Say "start over" to draft again.'
        slots = self.state.get("slots", {})
        client = None
        if prop["level"] == "client":
            client, why = _client_for(self.user, slots.get("client"), source)
            if client is None:
                return why
        try:
            recipe = recipe_clone(
                source=source,
                user=self.user,
                name=prop["name"],
                level=prop["level"],
                description=prop["manifest"]["metadata"].get("description", ""),
                tags=_tags(source, slots),
                manifest=prop["manifest"],
                client=client,
            )
        except DomainError as exc:
            detail = proposals.plain_errors(exc.errors) if exc.errors else exc.detail
            return f"I couldn't create the draft: {detail}"
        self.created_recipe_id = recipe.id
        self.conversation.created_recipe = recipe
        self.state["created"] = [*self.state.get("created", []), recipe.id]
        self.state["proposal_created"] = recipe.id
        lines = [
            f'Created the draft {recipe.level} recipe "{recipe.name}" ({recipe.id}), a clone of {source.id} whose first '
            f"version 1.0.0 is the proposed manifest. Open it at {RECIPE_PAGE.format(id=recipe.id)} to review it, "
            "run it and send it for approval."
        ]
        if kept:
            lines.append(kept)
        if slots.get("client") and recipe.level == "industry":
            # The client recipe needed an industry parent: now propose the client recipe on top of it.
            slots["client_base"] = recipe.id
            self.state.pop("proposal_created", None)
            body = self._recompute(turn_keys=set())
            lines.append(f"Next, the {slots['client']} client recipe on top of it:")
            lines.append(body)
        return "\n".join(lines)


# --------------------------------------------------------------------------- helpers


def _context_only(slots: dict) -> dict:
    return {k: v for k, v in slots.items() if k in ("industry", "client", "want_client", "scale", "name")}


def _resolve_bare_edits(family: str, slots: dict, state: dict) -> None:
    """'change the target to 10%' -> the metric in focus (last named, else the family's primary)."""
    named = list((slots.get("metrics") or {}).keys())
    if slots.get("goal") in catalog.METRICS.get(family, {}):
        state["focus_metric"] = slots["goal"]
    metric = named[-1] if named else state.get("focus_metric") or proposals.primary_metric(family)
    if metric not in catalog.METRICS.get(family, {}):
        metric = proposals.primary_metric(family)
    for key in ("target_edit", "threshold_edit"):
        edit = slots.pop(key, None)
        if not edit:
            continue
        value = edit["value"]
        if edit.get("pct") or (metric in extract.FRACTION_METRICS and 1 < abs(value) <= 100):
            value = value / 100
        field = "target" if key == "target_edit" else edit["field"]
        slots.setdefault("metrics", {}).setdefault(metric, {})[field] = round(value, 6)
    if slots.get("metrics"):
        state["focus_metric"] = list(slots["metrics"])[-1]


# Slot -> the last part of the manifest paths it writes: a later plain-words edit of the same
# setting replaces an earlier "set a.b.c to X" (overrides are applied after the slots).
_SLOT_PATH_KEYS = {
    "frequency": {"frequency"},
    "horizon_days": {"horizon", "horizon_days"},
    "grain": {"grain"},
    "labels": {"labels"},
    "min_history": {"min_history"},
    "deployment_mode": {"mode"},
    "schedule": {"schedule"},
    "drift_method": {"drift", "method"},
    "drift_threshold": {"drift", "threshold"},
    "freshness_hours": {"freshness", "max_age_hours"},
    "objective": {"objective"},
    "price_bounds": {"price_bounds", "min_change", "max_change"},
    "k": {"k"},
    "offer_cost": {"offer_cost"},
}


def _drop_superseded_overrides(slots: dict, new_slots: dict) -> None:
    overrides = slots.get("overrides")
    if not overrides:
        return
    touched: set[str] = set()
    for key in new_slots:
        touched |= _SLOT_PATH_KEYS.get(key, set())
    metrics = set(new_slots.get("metrics") or {})

    def superseded(override: dict) -> bool:
        path = [str(p) for p in override.get("path") or []]
        if not path:
            return False  # a pasted JSON fragment stays in force
        if path[-1] in touched and not (path[-1] in ("method", "threshold") and "drift" not in path):
            return True
        return "metrics" in path and any(m in path for m in metrics)

    slots["overrides"] = [o for o in overrides if not superseded(o)]


def _revert_rejected(slots: dict, previous: dict, rejected: list[tuple[str, str | None]]) -> None:
    """Put slots the validator refused back to their value before this message (or drop them),
    so a refused edit leaves the proposal as it was and is not retried every turn."""
    for key, metric in rejected:
        if key == "metrics" and metric:
            old = (previous.get("metrics") or {}).get(metric)
            metrics = slots.setdefault("metrics", {})
            if old is not None:
                metrics[metric] = copy.deepcopy(old)
            else:
                metrics.pop(metric, None)
        elif key == "overrides" and metric is not None:
            overrides = slots.get("overrides") or []
            if int(metric) < len(overrides):
                overrides[int(metric)] = None
        else:
            keys = ("drift_method", "drift_threshold") if key == "drift" else (key,)
            for k in keys:
                if k in previous:
                    slots[k] = copy.deepcopy(previous[k])
                else:
                    slots.pop(k, None)
    if "overrides" in slots:
        slots["overrides"] = [o for o in slots["overrides"] if o is not None]


def _recipe_text(recipe: Recipe) -> str:
    return " ".join([recipe.name, recipe.description, *recipe.tags]).lower()


def _mentions(text: str, terms: list[str]) -> bool:
    return any(re.search(rf"(?<![\w-]){re.escape(t.lower())}(?![\w-])", text) for t in terms)


def _best_match(candidates: list[Recipe], terms: list[str]) -> Recipe | None:
    """The candidate whose tags, name or description mention the terms (tags weigh most);
    approved first, then the most recently updated."""
    scored = []
    for r in candidates:
        s = 0.0
        tags = " ".join(r.tags).lower()
        if _mentions(tags, terms):
            s += 3
        if _mentions(r.name.lower(), terms):
            s += 2
        if _mentions(r.description.lower(), terms):
            s += 0.5
        if s:
            scored.append((s, r.status == RecipeStatus.APPROVED, r.updated_at, r))
    if not scored:
        return None
    scored.sort(key=lambda t: (t[0], t[1], t[2]), reverse=True)
    return scored[0][3]


def _industry_terms(industry: str) -> list[str]:
    synonyms = extract.INDUSTRIES.get(industry, [])
    return [industry, industry.replace(" ", "-"), *synonyms]


def _client_for(user, name: str | None, source: Recipe) -> tuple[Client | None, str]:
    """The client a client-level draft goes into: the one named in the conversation among
    those the user may write in (recipes.access), else the only one; otherwise why not."""
    if source.client_id is not None:
        return (source.client if access.can_write(user, source.client) else None), (
            "You need the data scientist or lead role in this client to create its recipes."
        )
    writable = [c for c in access.visible_clients(user) if access.can_write(user, c)]
    if not writable:
        return None, (
            "A client recipe belongs to a client workspace, and you have the data scientist or lead "
            "role in none. Ask a workspace admin to add you to the client's team."
        )
    wanted = slugify(name or "")
    named = [c for c in writable if wanted and (c.slug == wanted or slugify(c.name) == wanted)]
    if len(named) == 1:
        return named[0], ""
    if len(writable) == 1 and not wanted:
        return writable[0], ""
    return None, (
        "Which client workspace is this recipe for? Say “for client <name>” with one of: "
        + ", ".join(c.name for c in writable)
        + "."
    )


def _choose_base(user, family: str, slots: dict) -> Base | None:
    """The starting recipe: the family's baseline (industry level), or for a client a matching
    client recipe (its parent becomes the parent) or a matching industry recipe."""
    client, industry = slots.get("client"), slots.get("industry")
    levels = ["baseline"] + (["industry", "client"] if client or slots.get("client_base") else [])
    # for_list() defers the manifests: only the chosen recipe's current manifest is loaded.
    recipes = list(
        access.visible_recipes(user)
        .for_list()
        .filter(model_family=family, level__in=levels)
        .exclude(status=RecipeStatus.DEPRECATED)
    )
    recipes = [r for r in recipes if r.current_version is not None]
    baselines = [r for r in recipes if r.level == "baseline"]
    baseline = next(
        (r for r in baselines if r.id == BASELINE_IDS[family]), baselines[0] if baselines else None
    )
    if slots.get("client_base"):
        chained = next((r for r in recipes if r.id == slots["client_base"] and r.level == "industry"), None)
        if chained is not None:
            return Base(
                chained, chained, "client", f"Starting from the industry recipe {chained.id} created above."
            )
    if client:
        existing = _best_match([r for r in recipes if r.level == "client" and r.parent_id], [client])
        if existing is not None:
            return Base(
                existing,
                existing.parent,
                "client",
                f"Starting from the existing {client} client recipe {existing.id}; the new recipe is a sibling "
                f"under the same industry recipe {existing.parent_id}.",
            )
        if industry:
            parent = _best_match([r for r in recipes if r.level == "industry"], _industry_terms(industry))
            if parent is not None:
                return Base(
                    parent, parent, "client", f"Starting from the {industry} industry recipe {parent.id}."
                )
            if baseline is None:
                return None
            return Base(
                baseline,
                baseline,
                "industry",
                f"There is no {industry} {catalog.FAMILY_LABELS[family].lower()} industry recipe yet, and a client "
                "recipe must sit under one. So I propose the industry recipe first; once you create it, I will propose "
                f"the {client} client recipe on top of it.",
            )
    if baseline is None:
        return None
    return Base(baseline, baseline, "industry")


def _proposal_name(family: str, slots: dict, level: str) -> str:
    if slots.get("name"):
        return slots["name"]
    noun = extract.FAMILY_NOUNS[family]
    if level == "client" and slots.get("client"):
        return f"{slots['client']} {noun}"
    if slots.get("industry"):
        industry = slots["industry"]
        return f"{industry[:1].upper()}{industry[1:]} {noun}"
    return noun[:1].upper() + noun[1:]


def _description(name: str, base: Recipe, version: str, brief: str) -> str:
    text = f"{name}: drafted with the recipe assistant from {base.name} ({base.id} {version})."
    if brief:
        text += f" Brief: {brief}"
    return text


def _slug(value: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", value.lower()).strip("-")[:64]


def _tags(source: Recipe, slots: dict) -> list[str]:
    tags = [t for t in source.tags if t != "baseline"]
    for value in (slots.get("industry"), slots.get("client")):
        if value and (slug := _slug(safe_label(value))):
            tags.append(slug)
    tags.append("assistant")
    return list(dict.fromkeys(tags))[:20]


def _short(value) -> str:
    text = repr(value) if not isinstance(value, str) else f'"{value}"'
    return text if len(text) <= 80 else text[:77] + "..."


def _diff_lines(diff: list[dict]) -> list[str]:
    lines = []
    for d in diff[:MAX_DIFF_LINES]:
        if d["op"] == "change":
            lines.append(f"- {d['path']}: {_short(d['old'])} -> {_short(d['new'])}")
        elif d["op"] == "add":
            lines.append(f"- {d['path']}: added {_short(d['new'])}")
        else:
            lines.append(f"- {d['path']}: removed")
    if len(diff) > MAX_DIFF_LINES:
        lines.append(f"... and {len(diff) - MAX_DIFF_LINES} more")
    return lines
