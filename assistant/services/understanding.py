"""Understanding one message: the built-in rules (``assistant.nlu.extract``), or an
OpenAI-compatible LLM when LLM_BASE_URL and LLM_MODEL are set, falling back to the rules on
any error (and saying so). Reads only; the LLM is called before the turn takes any lock.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from django.conf import settings

from recipes.models import Recipe

from .. import llm
from ..nlu import extract
from ..nlu.text import CleanMessage
from ..reply import LLM_NOTICE
from .starting_recipe import BASELINE_IDS

log = logging.getLogger(__name__)

LLM_TIMEOUT_SECONDS = 8.0


@dataclass
class Understanding:
    extraction: extract.Extraction
    wording: str = ""
    notice: str = ""


def _llm_configured() -> bool:
    return bool(getattr(settings, "LLM_BASE_URL", "") and getattr(settings, "LLM_MODEL", ""))


def _base_cron(state: dict, family: str | None, *, retrain: bool = False) -> str | None:
    """The schedule of the pending proposal, else of the family's baseline: "retrain weekly"
    keeps the starting recipe's hour (its retraining schedule's when it has one, else its
    scoring schedule's)."""
    manifest = (state.get("proposal") or {}).get("manifest")
    if manifest is None and family in BASELINE_IDS:
        version = Recipe.objects.filter(pk=BASELINE_IDS[family]).first()
        manifest = version.current_version.manifest if version and version.current_version else None
    retraining = ((manifest or {}).get("retraining") or {}).get("triggers") or {}
    if retrain and isinstance(retraining, dict) and retraining.get("schedule"):
        return retraining["schedule"]
    return ((manifest or {}).get("deployment") or {}).get("schedule")


def read(text: str, state: dict, *, pending: str | None = None) -> extract.Extraction:
    pending = pending if pending is not None else state.get("pending")
    kwargs = {
        "family_hint": state.get("family"),
        "pending": pending,
        "has_proposal": bool(state.get("proposal")),
    }
    ex = extract.read_message(text, **kwargs)
    if "schedule" in ex.slots or "retrain_schedule" in ex.slots:
        base_cron = _base_cron(
            state, ex.family or state.get("family"), retrain="retrain_schedule" in ex.slots
        )
        if base_cron:
            ex = extract.read_message(text, base_cron=base_cron, **kwargs)
    return ex


def understand(cleaned: CleanMessage, state: dict) -> Understanding:
    ex = read(cleaned.text, state)
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
