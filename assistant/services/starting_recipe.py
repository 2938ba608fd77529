"""Where a draft starts and where it goes: the starting recipe (and the parent the draft is
cloned from) for a family and the conversation's slots, and the client a client-level draft
goes into. Reads only, through ``recipes.access`` (what the user may see and write in).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from django.utils.text import slugify

from recipes import access, catalog
from recipes.models import Client, Recipe, RecipeStatus

from ..nlu import extract

BASELINE_IDS = {family: f"recipe_{catalog.FAMILY_SHORT[family]}_base" for family in catalog.FAMILIES}


@dataclass
class Base:
    recipe: Recipe  # the starting recipe (the diff is against it)
    clone_source: Recipe  # the recipe that becomes the parent
    level: str
    note: str = ""


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


def client_for(user, name: str | None, source: Recipe) -> tuple[Client | None, str]:
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


def choose_base(user, family: str, slots: dict) -> Base | None:
    """The starting recipe: the family's baseline (industry level), or for a client a matching
    client recipe (its parent becomes the parent) or a matching industry recipe."""
    client, industry = slots.get("client"), slots.get("industry")
    levels = ["baseline"] + (["industry", "client"] if client or slots.get("client_base") else [])
    if slots.get("start_from") == "industry" and "industry" not in levels:
        levels.append("industry")
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
    if slots.get("start_from") == "industry" and industry and not client:
        # "use the grocery industry recipe instead": start from it; the draft is its sibling.
        existing = _best_match(
            [r for r in recipes if r.level == "industry" and r.parent_id], _industry_terms(industry)
        )
        if existing is not None:
            return Base(
                existing,
                existing.parent,
                "industry",
                f"Starting from the {industry} industry recipe {existing.id}; the new recipe is a sibling under "
                f"{existing.parent_id}.",
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
