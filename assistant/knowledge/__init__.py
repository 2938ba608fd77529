"""The assistant's knowledge base: the versioned Markdown entries in this folder, and their loader.

Each entry has a front-matter header (id, title, version, keywords) and a body whose first
paragraph answers on its own, followed by ``## Section`` blocks. ``search`` ranks entries by
keyword phrases, title and body words; ``answer`` returns the best entry's relevant text
(the section whose heading the question names, e.g. a metric, or the opening paragraph) and
the entry to cite.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from pathlib import Path

KNOWLEDGE_DIR = Path(__file__).resolve().parent
REQUIRED_FIELDS = ("id", "title", "version", "keywords")
_SEMVER = re.compile(r"^\d+\.\d+\.\d+$")
_STOP = set(
    "a an the is are was be to of in on for and or with what which when why how do does should can could i we "
    "you my our it this that there their me use using vs versus about tell explain mean means meaning difference "
    "between good bad best model models recipe recipes".split()
)


class KnowledgeError(ValueError):
    pass


@dataclass(frozen=True)
class Entry:
    id: str
    title: str
    version: str
    keywords: tuple[str, ...]
    body: str
    path: str
    sections: tuple[tuple[str, str], ...] = field(default=())  # (heading, text)

    @property
    def intro(self) -> str:
        return self.body.split("\n## ", 1)[0].strip()

    def source(self) -> dict:
        return {"id": self.id, "title": self.title, "version": self.version, "path": self.path}


def parse_entry(text: str, *, path: str) -> Entry:
    """One entry file -> Entry; KnowledgeError when the header is missing or incomplete."""
    m = re.match(r"^---\n(.*?)\n---\n(.*)$", text, re.S)
    if not m:
        raise KnowledgeError(f"{path}: missing the front-matter header between '---' lines")
    header: dict[str, str] = {}
    for line in m.group(1).splitlines():
        if ":" in line:
            key, value = line.split(":", 1)
            header[key.strip()] = value.split("#", 1)[0].strip() if key.strip() != "title" else value.strip()
    missing = [f for f in REQUIRED_FIELDS if not header.get(f)]
    if missing:
        raise KnowledgeError(f"{path}: front matter lacks {', '.join(missing)}")
    if not _SEMVER.match(header["version"]):
        raise KnowledgeError(f"{path}: version {header['version']!r} is not MAJOR.MINOR.PATCH")
    body = m.group(2).strip()
    sections = tuple(
        (s.split("\n", 1)[0].strip(), s.split("\n", 1)[1].strip() if "\n" in s else "")
        for s in re.split(r"\n## ", "\n" + body)[1:]
    )
    keywords = tuple(k.strip().lower() for k in header["keywords"].split(",") if k.strip())
    return Entry(
        id=header["id"],
        title=header["title"],
        version=header["version"],
        keywords=keywords,
        body=body,
        path=path,
        sections=sections,
    )


@functools.cache
def load(directory: str | None = None) -> tuple[Entry, ...]:
    """Every entry (README.md excluded), sorted by id; ids must be unique."""
    base = Path(directory) if directory else KNOWLEDGE_DIR
    entries = []
    for p in sorted(base.glob("*.md")):
        if p.name.lower() == "readme.md":
            continue
        entries.append(parse_entry(p.read_text(encoding="utf-8"), path=f"assistant/knowledge/{p.name}"))
    ids = [e.id for e in entries]
    dupes = {i for i in ids if ids.count(i) > 1}
    if dupes:
        raise KnowledgeError(f"duplicate knowledge base ids: {', '.join(sorted(dupes))}")
    return tuple(sorted(entries, key=lambda e: e.id))


def _words(text: str) -> list[str]:
    out = []
    for w in re.findall(r"[a-z0-9@_]+", text.lower()):
        if w in _STOP or len(w) < 2:
            continue
        out.append(w[:-1] if len(w) > 3 and w.endswith("s") and not w.endswith("ss") else w)
    return out


def _contains(text: str, phrase: str) -> bool:
    return re.search(rf"(?<![\w@]){re.escape(phrase)}(?![\w@])", text) is not None


def score(entry: Entry, query: str) -> float:
    q = query.lower()
    qwords = set(_words(q))
    s = 0.0
    for kw in entry.keywords:
        if _contains(q, kw):
            s += 3.0 + 0.5 * kw.count(" ")  # longer phrases are more specific
    s += 1.5 * len(qwords & set(_words(entry.title)))
    body_words = set(_words(entry.body))
    s += 0.3 * len(qwords & body_words)
    for heading, _ in entry.sections:
        if _names_section(q, heading):
            s += 2.0
    return s


def search(query: str, *, limit: int = 3, minimum: float = 3.0) -> list[tuple[Entry, float]]:
    ranked = sorted(((e, score(e, query)) for e in load()), key=lambda t: (-t[1], t[0].id))
    return [(e, s) for e, s in ranked[:limit] if s >= minimum]


def get(entry_id: str) -> Entry | None:
    return next((e for e in load() if e.id == entry_id), None)


def _strip_md(text: str) -> str:
    text = re.sub(r"`([^`]*)`", r"\1", text)
    text = re.sub(r"\*\*([^*]*)\*\*", r"\1", text)
    return text.strip()


def _heading_aliases(heading: str) -> set[str]:
    """'hit_rate@k' -> {'hit_rate@k', 'hit rate@k', 'hit rate', 'hit_rate'}; 'qini_coefficient' -> + 'qini'."""
    h = heading.lower()
    out = {h, h.replace("_", " ")}
    out |= {a.replace("@k", "").strip() for a in list(out)}
    first = h.replace("@k", "").split("_")[0]
    if "_" in h and len(first) >= 4:
        out.add(first)
    return {a for a in out if a}


def _names_section(query: str, heading: str) -> bool:
    return any(_contains(query, a) for a in _heading_aliases(heading))


def relevant_text(entry: Entry, query: str, *, max_chars: int = 1400) -> str:
    """The sections the question names (a metric, PSI, KS...), else the opening paragraph."""
    q = query.lower()
    named = [(h, t) for h, t in entry.sections if _names_section(q, h)]
    if named and len(named) < len(entry.sections):
        parts = [f"{h}: {t}" for h, t in named]
        if len(named) > 1:  # "PSI vs KS": the opening paragraph holds the comparison
            parts.insert(0, entry.intro)
        text = "\n\n".join(parts)
    else:
        text = entry.intro
    text = _strip_md(text)
    if len(text) > max_chars:
        text = text[: max_chars - 3].rsplit(" ", 1)[0] + "..."
    return text


FAMILY_SLUGS = ("forecasting", "pricing", "next-best-action", "location-scoring")
# How much an entry about the conversation's family gains ("what does calibration mean here?"
# while drafting a pricing recipe: the pricing metric, not location scoring's).
FAMILY_BOOST = 2.0


def entry_family(entry: Entry) -> str | None:
    """The family an entry is about ("metrics-pricing" -> "pricing"), None for general ones."""
    return next((slug.replace("-", "_") for slug in FAMILY_SLUGS if entry.id.endswith(f"-{slug}")), None)


def answer(query: str, *, family: str | None = None) -> tuple[str, list[Entry]] | None:
    """(plain text answer, entries cited) for a guidance question, or None when nothing fits.
    ``family``: the family of the conversation's proposal; among the entries that answer, one
    about that family ranks first."""
    hits = search(query, limit=len(load()))
    if not hits:
        return None
    if family:
        hits.sort(key=lambda t: (-(t[1] + (FAMILY_BOOST if entry_family(t[0]) == family else 0)), t[0].id))
    best, _ = hits[0]
    return relevant_text(best, query), [best]
