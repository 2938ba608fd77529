"""The model-family classifier: calibrated probabilities from the words of a message.

Pure Python and numpy (no Django, no scikit-learn at inference). The weights live in
``family_model.json`` beside this module, written by ``manage.py train_family_classifier`` from
the labelled corpus in ``assistant/corpus/`` (scikit-learn at training time only, no pickle):

* features: TF-IDF blocks (word 1–2-grams and character 3–5-grams within words), each
  L2-normalised, built by :func:`terms` exactly as the training pipeline builds them;
* a linear model: one row of coefficients and one intercept per family, and one for
  ``unclear``: messages that do not say which kind of model they need ("help me with a model",
  "fraud detection"), learned from ``assistant/corpus/unclear.jsonl``;
* calibration and the rules: ``logits / temperature + rule_weight * rule_scores`` then softmax,
  where ``rule_scores`` are the cue scores of ``extract.family_scores`` (the caller passes them,
  so this module does not import the rules); temperature and rule weight were fitted on
  cross-validated predictions of the training corpus;
* ``threshold``: below it the assistant asks which family instead of guessing.

The model is read once, on first use, and kept for the process (:func:`load`).
"""

from __future__ import annotations

import json
import math
import re
import threading
import unicodedata
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MODEL_PATH = Path(__file__).with_name("family_model.json")
FORMAT = "family-classifier/1"
UNCLEAR = "unclear"  # the class of messages that name no family

EVIDENCE_MIN = 0.05  # logit units: a word below this is not offered as a reason
_TOKEN_RE = re.compile(r"[a-z0-9]+|%")
_DIGITS_RE = re.compile(r"\d+")
# Words never offered as the reason for a family (they carry no meaning of their own).
_STOPWORDS = frozenset(
    "a an and are as at be by can could do does for from have how i in is it its me my of on or our "
    "per please so that the their them there these they this to us want we what when where which who "
    "will with would you your need needs should each every all any some next "
    "model models something help build want like use using make data business company threshold".split()
)


# --------------------------------------------------------------------------- features


def normalise(text: str) -> str:
    """Lower case, compatibility-normalised, curly quotes straightened, digits as one shape."""
    text = unicodedata.normalize("NFKC", text or "").lower().replace("’", "'")
    return _DIGITS_RE.sub("0", text)


def tokens(text: str) -> list[str]:
    return _TOKEN_RE.findall(normalise(text))


def word_terms(text: str, ngram: tuple[int, int] = (1, 2)) -> list[str]:
    toks = tokens(text)
    out: list[str] = []
    for n in range(ngram[0], ngram[1] + 1):
        out.extend(" ".join(toks[i : i + n]) for i in range(len(toks) - n + 1))
    return out


def char_terms(text: str, ngram: tuple[int, int] = (3, 5)) -> list[str]:
    """Character n-grams inside each word, padded with a space each side ("char_wb")."""
    out: list[str] = []
    for tok in tokens(text):
        w = f" {tok} "
        for n in range(ngram[0], ngram[1] + 1):
            out.extend(w[i : i + n] for i in range(len(w) - n + 1))
    return out


ANALYZERS = {"word": word_terms, "char_wb": char_terms}


def terms(text: str, analyzer: str, ngram: tuple[int, int]) -> list[str]:
    """The terms one block counts (the training pipeline passes this same function to scikit-learn)."""
    return ANALYZERS[analyzer](text, tuple(ngram))


# --------------------------------------------------------------------------- the model


@dataclass(frozen=True)
class Block:
    analyzer: str
    ngram: tuple[int, int]
    sublinear_tf: bool
    vocabulary: dict[str, int]  # term -> column, within the whole feature vector
    idf: np.ndarray  # by column offset within this block

    def vector(self, text: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
        """(columns, TF-IDF values L2-normalised within the block, the terms) of ``text``."""
        counts = Counter(t for t in terms(text, self.analyzer, self.ngram) if t in self.vocabulary)
        if not counts:
            return np.zeros(0, dtype=np.int64), np.zeros(0), []
        found = sorted(counts, key=self.vocabulary.__getitem__)
        cols = np.array([self.vocabulary[t] for t in found], dtype=np.int64)
        tf = np.array([counts[t] for t in found], dtype=float)
        if self.sublinear_tf:
            tf = 1.0 + np.log(tf)
        start = min(self.vocabulary.values())
        values = tf * self.idf[cols - start]
        norm = math.sqrt(float(values @ values))
        return cols, (values / norm if norm else values), found


@dataclass(frozen=True)
class Prediction:
    probs: dict[str, float]  # family -> calibrated probability (with ``unclear``, they sum to 1)
    unclear: float  # the probability that the message does not say which family
    ranked: list[str]  # families, likeliest first
    evidence: dict[str, list[str]]  # family -> the message's words that point to it, strongest first

    @property
    def best(self) -> str:
        return self.ranked[0]

    @property
    def confidence(self) -> float:
        return self.probs[self.ranked[0]]


@dataclass(frozen=True)
class Model:
    classes: tuple[str, ...]
    blocks: tuple[Block, ...]
    coef: np.ndarray  # (classes, features)
    intercept: np.ndarray  # (classes,)
    temperature: float
    rule_weight: float
    threshold: float
    meta: dict

    @classmethod
    def from_json(cls, data: dict) -> Model:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} model: {data.get('format')!r}")
        blocks, offset = [], 0
        for b in data["blocks"]:
            vocab = {term: offset + i for i, term in enumerate(b["vocabulary"])}
            blocks.append(
                Block(
                    analyzer=b["analyzer"],
                    ngram=tuple(b["ngram"]),
                    sublinear_tf=bool(b["sublinear_tf"]),
                    vocabulary=vocab,
                    idf=np.asarray(b["idf"], dtype=float),
                )
            )
            offset += len(b["vocabulary"])
        coef = np.asarray(data["coef"], dtype=float)
        if coef.shape != (len(data["classes"]), offset):
            raise ValueError(f"coef has shape {coef.shape}, expected {(len(data['classes']), offset)}")
        return cls(
            classes=tuple(data["classes"]),
            blocks=tuple(blocks),
            coef=coef,
            intercept=np.asarray(data["intercept"], dtype=float),
            temperature=float(data["temperature"]),
            rule_weight=float(data["rule_weight"]),
            threshold=float(data["threshold"]),
            meta=dict(data.get("meta") or {}),
        )

    def _features(self, text: str) -> tuple[np.ndarray, np.ndarray, list[tuple[str, str]]]:
        """(columns, values, (analyzer, term) of each column) of ``text``."""
        parts = [b.vector(text) for b in self.blocks]
        cols = np.concatenate([p[0] for p in parts])
        vals = np.concatenate([p[1] for p in parts])
        found = [(b.analyzer, t) for b, p in zip(self.blocks, parts, strict=True) for t in p[2]]
        return cols, vals, found

    def logits(self, text: str) -> np.ndarray:
        """The linear model's raw scores (before calibration and rules), one per class."""
        cols, vals, _ = self._features(text)
        return self.coef[:, cols] @ vals + self.intercept

    def combine(self, logits: np.ndarray, rule_scores: dict[str, float] | None) -> np.ndarray:
        """Calibrated probabilities from raw logits and the rules' cue scores."""
        z = np.asarray(logits, dtype=float) / self.temperature
        if rule_scores:
            z = z + self.rule_weight * np.array([float(rule_scores.get(c, 0.0)) for c in self.classes])
        z = z - z.max()
        e = np.exp(z)
        return e / e.sum()

    @property
    def families(self) -> tuple[str, ...]:
        return tuple(c for c in self.classes if c != UNCLEAR)

    def predict(self, text: str, rule_scores: dict[str, float] | None = None) -> Prediction:
        cols, vals, found = self._features(text)
        probs = self.combine(self.coef[:, cols] @ vals + self.intercept, rule_scores)
        by_class = {c: float(p) for c, p in zip(self.classes, probs, strict=True)}
        families = self.families
        toks = sorted(set(tokens(text)))
        return Prediction(
            probs={c: by_class[c] for c in families},
            unclear=by_class.get(UNCLEAR, 0.0),
            ranked=sorted(families, key=lambda c: (-by_class[c], families.index(c))),
            evidence={
                c: self._evidence(self.classes.index(c), cols, vals, found, toks) if len(cols) else []
                for c in families
            },
        )

    def _evidence(
        self, k: int, cols: np.ndarray, vals: np.ndarray, found: list[tuple[str, str]], toks: list[str]
    ) -> list[str]:
        """The message's words that push class ``k`` up against the others, strongest first: each
        feature's contribution (value x (its coefficient - the mean over classes)) / temperature,
        credited to the words it is made of (a character n-gram to the words it occurs in)."""
        contrib = (self.coef[k, cols] - self.coef[:, cols].mean(axis=0)) * vals / self.temperature
        padded = {t: f" {t} " for t in toks}
        per_word: dict[str, float] = {}
        for (analyzer, term), c in zip(found, contrib, strict=True):
            words = term.split(" ") if analyzer == "word" else [t for t, p in padded.items() if term in p]
            for w in words:
                per_word[w] = per_word.get(w, 0.0) + float(c) / len(words)
        shown = [
            w
            for w, score in per_word.items()
            if score >= EVIDENCE_MIN and len(w) > 2 and w.isalpha() and w not in _STOPWORDS
        ]
        return sorted(shown, key=lambda w: (-per_word[w], w))[:3]


# --------------------------------------------------------------------------- loading

_LOCK = threading.Lock()
_MODEL: Model | None = None


def load(path: Path | None = None) -> Model:
    """The model in ``family_model.json``, read on first use and kept (a given ``path`` is read
    fresh and not cached: the training command checks the file it wrote)."""
    global _MODEL
    if path is not None:
        return Model.from_json(json.loads(Path(path).read_text()))
    if _MODEL is None:
        with _LOCK:
            if _MODEL is None:
                _MODEL = Model.from_json(json.loads(MODEL_PATH.read_text()))
    return _MODEL


def available() -> bool:
    return MODEL_PATH.exists()
