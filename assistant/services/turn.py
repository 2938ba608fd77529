"""One turn of the conversation: pick the handler for the message's intent (greeting,
question, reset, create, defaults, skip, show, or a description/edit), update the working
state (``Conversation.state_json``) and compose the answer.

A description or edit merges its slots into the state (``assistant.slots``), chooses the
starting recipe (``starting_recipe``) and rebuilds the proposal (``assistant.proposal``, always
valid). "create it" clones the parent into the draft through ``recipes.services.recipe_clone``
after the permission check: the only write outside the conversation itself, which the caller
(``assistant.services.chat_reply``) saves.
"""

from __future__ import annotations

import copy
import re

from mlworkspace.errors import DomainError
from recipes import access, catalog
from recipes import perms as recipe_perms
from recipes.lineage import diff as manifest_diff
from recipes.services import recipe_clone

from .. import knowledge, reply
from .. import proposal as proposals
from ..models import Conversation
from ..nlu import extract
from ..nlu.text import CleanMessage, plain
from ..reply import EMPTY_REPLY, GREETING, RECIPE_PAGE, REFUSAL
from ..slots import (
    answer_ambiguity,
    context_only,
    drop_superseded_overrides,
    resolve_bare_edits,
    revert_rejected,
)
from .backtest import start_backtest
from .starting_recipe import BASELINE_IDS, choose_base, client_for
from .understanding import Understanding, read


def _out_of_scope(text: str) -> bool:
    """A question about nothing the workspace knows and no business of the user's: no family,
    no workspace term, no "we/our", and nothing in the knowledge base."""
    question = text.rstrip().endswith("?") or extract.detect_intent(text, slot_count=0) == "question"
    if not question or extract.mentions_workspace_or_business(text):
        return False
    return knowledge.answer(text) is None


class Turn:
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

    def _pending_question(self, pending: str) -> str:
        if pending == "ambiguous" and self.state.get("ambiguous"):
            return reply.ambiguity_question(self.state["ambiguous"], self.state.get("slots", {}))
        return proposals.question(pending, self.state["family"], self.state.get("slots", {}))

    def _next_step_hint(self) -> str:
        if self.state.get("proposal"):
            pending = self.state.get("pending")
            if pending:
                return "Next question: " + self._pending_question(pending)
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
        # "here": the proposal's family, unless the question names one itself.
        family = None if extract.named_families(text) else self.state.get("family")
        found = knowledge.answer(text, family=family)
        if found is None:
            titles = ", ".join(e.title for e in knowledge.load()[:6])
            return (
                "I don't have an answer to that in my knowledge base. I can explain, for example: "
                f"{titles}; or draft a recipe from your description.\n" + self._next_step_hint()
            )
        answer, entries = found
        other = knowledge.entry_family(entries[0])
        if family and other and other != family:
            # "here" is this proposal's family, and the answer is about another one: say so.
            answer = (
                f"The {catalog.FAMILY_LABELS[family].lower()} family has no such term of its own; "
                f"in {catalog.FAMILY_LABELS[other].lower()} recipes: {answer}"
            )
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
        self.state.pop("ambiguous", None)
        body = self._recompute(turn_keys=set())
        return "OK, I keep the starting recipe's values for the open questions.\n" + body

    def _skip(self) -> str:
        pending = self.state.get("pending")
        if not self.state.get("proposal") or not pending:
            return "There is no open question to skip. " + self._next_step_hint()
        if pending == "ambiguous":
            self.state.pop("ambiguous", None)  # the reading as first understood stands
        else:
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
        lines.extend(reply.diff_lines(prop["diff"]))
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
        if family is None and ex.family is None and _out_of_scope(self.cleaned.text):
            # "what's the weather tomorrow?": a short honest answer, not a question about families.
            return reply.OUT_OF_SCOPE
        if family is None:
            family = ex.family
            started_new = family is not None
        new_slots = dict(ex.slots)
        if self.state.get("pending") == "ambiguous" and self.state.get("ambiguous"):
            # The answer to the follow-up question fills the slot it was about.
            manifest = (self.state.get("proposal") or {}).get("manifest") or {}
            base_cron = (manifest.get("deployment") or {}).get("schedule")
            answered = answer_ambiguity(self.state["ambiguous"], self.cleaned.text, base_cron=base_cron)
            if answered is not None:
                new_slots.update(answered)
                self.state.pop("ambiguous")
                if "retrain_schedule" in answered:
                    new_slots.pop("frequency", None)  # "monthly" was the schedule, not the periods
        if ambiguous := new_slots.pop("ambiguous", None):
            self.state["ambiguous"] = ambiguous
        if family is None:
            # Keep what we understood (industry, client) and the words, until the family is known.
            self.state["slots"] = extract.merge_slots(self.state.get("slots", {}), context_only(new_slots))
            self.state.setdefault("unparsed", []).append(self.cleaned.text[:1000])
            self.state["pending"] = "family"
            return reply.family_question(ex.family_options)
        self.state["family"] = family
        if started_new:
            # Read earlier messages again now that the family (and so the metric names) is known.
            earlier: dict = {}
            for old_text in self.state.pop("unparsed", []):
                earlier = extract.merge_slots(earlier, read(old_text, {"family": family}, pending="").slots)
            self.state["slots"] = extract.merge_slots(self.state.get("slots", {}), earlier)
            if not self.state.get("brief"):
                self.state["brief"] = plain(self.cleaned.text, max_len=300)
        resolve_bare_edits(family, new_slots, self.state)
        if not new_slots and not started_new:
            pending = self.state.get("pending")
            if pending and self.state.get("proposal"):
                return (
                    "I didn't catch that. "
                    + self._pending_question(pending)
                    + ' (Or say "skip" to keep the starting recipe\'s value.)'
                )
            if self.state.get("proposal"):
                return "I didn't find anything to change in that. " + self._next_step_hint()
        self._previous_slots = copy.deepcopy(self.state.get("slots", {}))
        drop_superseded_overrides(self.state.setdefault("slots", {}), new_slots)
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
        base = choose_base(self.user, family, slots)
        if base is None:
            self.state["proposal"] = None
            return (
                f"There is no {catalog.FAMILY_LABELS[family].lower()} recipe to start from yet (the baseline "
                f"{BASELINE_IDS[family]} is not loaded), so I can't propose a manifest. Ask an administrator to load "
                "the baseline recipes."
            )
        base_version = base.recipe.current_version
        base_manifest = base_version.manifest
        name = reply.proposal_name(family, slots, base.level)
        description = reply.description(
            name, base.recipe.name, base.recipe.id, base_version.version, self.state.get("brief", "")
        )
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
            revert_rejected(slots, getattr(self, "_previous_slots", {}), result.rejected_slots)
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
            revert_rejected(slots, {}, result.rejected_slots)
            result.rejected = rejected + [r for r in result.rejected if r not in rejected]
        missing = proposals.missing_slots(family, slots, skipped=self.state.get("skipped", []))
        questions = [proposals.question(k, family, slots) for k in missing]
        self.state["pending"] = missing[0] if missing else None
        if ambiguity := self.state.get("ambiguous"):
            # An ambiguous setting is asked about first: one question per turn, its answer fills it.
            questions.insert(0, reply.ambiguity_question(ambiguity, slots))
            self.state["pending"] = "ambiguous"
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
        if dropped := (label_slots or {}).get("drop_features"):
            shown.append("no longer asked for: " + ", ".join(f.replace("_", " ") for f in dropped))
        if shown:
            lines.append("What I understood:" if first else "Changes:")
            lines.extend(f"- {line}" for line in shown)
        lines.extend(result.rejected)
        said = reply.said_back(family, slots if first else (label_slots or {}), result.manifest)
        if said:
            lines.append("What I understood but can't put in the recipe:")
            lines.extend(f"- {line}" for line in said)
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
            done = f"This proposal was already created as draft recipe {rid}: {RECIPE_PAGE.format(id=rid)}"
            recipe = access.visible_recipes(self.user).filter(pk=rid).first()
            if self.ex.slots.get("backtest") and recipe is not None:
                done += "\n" + start_backtest(user=self.user, recipe=recipe)
            return done
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
            client, why = client_for(self.user, slots.get("client"), source)
            if client is None:
                return why
        try:
            recipe = recipe_clone(
                source=source,
                user=self.user,
                name=prop["name"],
                level=prop["level"],
                description=prop["manifest"]["metadata"].get("description", ""),
                tags=reply.tags(source.tags, slots),
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
        if self.ex.slots.get("backtest"):
            lines.append(start_backtest(user=self.user, recipe=recipe))
        if slots.get("client") and recipe.level == "industry":
            # The client recipe needed an industry parent: now propose the client recipe on top of it.
            slots["client_base"] = recipe.id
            self.state.pop("proposal_created", None)
            body = self._recompute(turn_keys=set())
            lines.append(f"Next, the {slots['client']} client recipe on top of it:")
            lines.append(body)
        return "\n".join(lines)
