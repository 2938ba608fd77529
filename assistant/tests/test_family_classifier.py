"""The model-family classifier (issue #18 §1): the corpus, the JSON weights read without
scikit-learn, the held-out accuracy, and the assistant asking when it is unsure."""

import json
import re

import numpy as np
import pytest

from assistant.management.commands import train_family_classifier as training
from assistant.models import Conversation
from assistant.nlu import classifier, extract
from assistant.services import chat_reply
from recipes import catalog

ISSUE_EXAMPLES = [
    (
        "weekly demand per warehouse and SKU for the next quarter, retrain every Sunday night",
        "forecasting",
    ),
    (
        "where should the franchise open its next 10 gyms? score postcodes by expected membership",
        "location_scoring",
    ),
    ("How sensitive are our hotel room bookings to the nightly rate?", "pricing"),
]
# What `manage.py train_family_classifier` measured and the README reports: the held-out quarter
# must never score below it (168 of 171 descriptions; the target is 95%).
HELDOUT_RIGHT = 170
HELDOUT_TARGET = 0.95


@pytest.fixture(scope="module")
def model():
    return classifier.load()


@pytest.fixture(scope="module")
def heldout():
    return training.read_corpus("heldout")


# --------------------------------------------------------------------------- the corpus


def test_corpus_is_large_balanced_and_split_without_overlap():
    train, held = training._read("train"), training._read("heldout")
    rows = train + held
    assert len(rows) >= 600
    counts = {f: sum(r["family"] == f for r in rows) for f in catalog.FAMILIES}
    assert min(counts.values()) >= 0.2 * len(rows), counts  # roughly balanced over the four
    assert 0.23 <= len(held) / len(rows) <= 0.27  # the held-out quarter
    assert not {r["text"].lower() for r in train} & {r["text"].lower() for r in held}
    assert len({r["text"].lower() for r in rows}) == len(rows)  # each one different
    assert all(isinstance(r["settings"], dict) for r in rows)
    train_texts = {r["text"] for r in train}
    assert all(text in train_texts for text, _ in ISSUE_EXAMPLES)  # never held out
    unclear = training._read("unclear")
    assert all(r["family"] is None and r["split"] in ("train", "heldout") for r in unclear)
    assert not {r["text"].lower() for r in unclear} & {r["text"].lower() for r in rows}


def test_corpus_settings_use_the_documented_keys():
    keys = {
        "horizon_days",
        "frequency",
        "grain",
        "metrics",
        "schedule",
        "features",
        "constraints",
        "deployment_mode",
    }
    rows = training._read("train") + training._read("heldout")
    assert all(set(r["settings"]) <= keys for r in rows)
    first = next(r for r in rows if r["text"] == ISSUE_EXAMPLES[0][0])
    assert first["settings"] == {
        "horizon_days": 91,
        "frequency": "W",
        "grain": ["warehouse", "sku"],
        "schedule": "every Sunday night",
    }


# --------------------------------------------------------------------------- the weights


def test_json_has_the_documented_shape_and_no_pickle(model):
    data = json.loads(classifier.MODEL_PATH.read_text())
    assert data["format"] == classifier.FORMAT
    assert data["classes"] == [*catalog.FAMILIES, classifier.UNCLEAR]
    assert [b["analyzer"] for b in data["blocks"]] == ["word", "char_wb"]
    for block in data["blocks"]:
        assert len(block["vocabulary"]) == len(block["idf"]) > 1000
    assert 0 < model.threshold < 1 and model.temperature > 0
    assert model.coef.shape == (5, sum(len(b["vocabulary"]) for b in data["blocks"]))


def test_json_model_predicts_what_the_training_pipeline_predicts():
    """fit -> JSON -> pure-numpy inference gives scikit-learn's probabilities (a small model, to
    stay fast; the committed one is built by the same functions, and `--check` compares it)."""
    rows = training.read_corpus("train")
    subset = [r for i, r in enumerate(rows) if i % 6 == 0]
    texts, y = [r["text"] for r in subset], training.labels(subset)
    assert set(y) == set(range(5))
    fitted = training.fit(texts, y)
    data = training.to_json(fitted, temperature=0.55, rule_weight=0.6, threshold=0.5, meta={})
    small = classifier.Model.from_json(json.loads(training.dumps(data)))
    probe = [
        "weekly demand per warehouse and SKU for the next quarter",
        "which discount to offer whom",
        "Pricng modle for shoes, +/- 5%",  # typos and symbols
        "help me with a model",
        "",
    ]
    expected = training.combined(fitted.logits(probe), training.rule_matrix(probe), 0.55, 0.6)
    got = training.predict_all(small, probe)
    assert np.allclose(got, expected, atol=1e-4)
    assert np.allclose(got.sum(axis=1), 1)


def test_model_is_loaded_once_and_kept():
    assert classifier.load() is classifier.load()


def test_heldout_accuracy_never_falls_below_what_was_reported(model, heldout):
    scores = training.evaluate(model, heldout)
    right = round(scores.accuracy * scores.n)
    assert scores.n == 171
    assert right >= HELDOUT_RIGHT, f"held-out: {right}/{scores.n}"
    assert scores.accuracy >= HELDOUT_TARGET
    assert all(acc >= 0.9 for acc in scores.per_family.values()), scores.per_family


def test_a_third_authors_descriptions_reach_the_target(model):
    """Written by another author who saw neither the code nor the corpus; never tuned on
    (measured once, stop 28: 195 of 197 descriptions, 99.0%)."""
    scores = training.evaluate(model, training.read_corpus(training.THIRD_AUTHOR))
    assert scores.n == 197
    assert round(scores.accuracy * scores.n) >= 195
    assert scores.accuracy >= HELDOUT_TARGET
    assert scores.unclear_asked >= 0.85


def test_probabilities_are_calibrated_on_the_heldout_quarter(model, heldout):
    scores = training.evaluate(model, heldout)
    assert scores.ece < 0.05  # confidence matches accuracy within 5 points
    # What it answers without asking is at least as sure, give or take one description.
    assert scores.answered_accuracy >= scores.accuracy - 1 / scores.n


def test_prediction_names_the_words_behind_each_family(model):
    text = "How sensitive are our hotel room bookings to the nightly rate?"
    p = model.predict(text, extract.family_scores(text))
    assert p.best == "pricing" and p.confidence >= model.threshold
    assert set(p.evidence["pricing"]) & {"sensitive", "rate", "nightly"}
    assert abs(sum(p.probs.values()) + p.unclear - 1) < 1e-9


def test_rules_alone_are_used_when_the_weights_are_missing(monkeypatch):
    monkeypatch.setattr(classifier, "available", lambda: False)
    reading = extract.read_family("weekly demand forecast for grocery, 8 weeks ahead")
    assert reading.family == "forecasting" and reading.probs == {}
    assert extract.read_family("something for our business").family is None


# --------------------------------------------------------------------------- the understanding path


@pytest.mark.parametrize("text, family", ISSUE_EXAMPLES)
def test_issue_examples_are_understood(text, family):
    ex = extract.read_message(text)
    assert ex.intent == "describe"
    assert ex.family == family


@pytest.mark.parametrize(
    "question",
    [
        "What is uplift modelling?",
        "how does location scoring work?",
        "What does MAPE mean?",
        "what is a forecast horizon?",
    ],
)
def test_concept_questions_stay_questions(question):
    assert extract.read_message(question).intent == "question"


def test_a_question_about_the_users_business_is_a_description():
    ex = extract.read_message("How many tickets will we sell each week at our cinemas?")
    assert ex.intent == "describe" and ex.family == "forecasting"


def test_a_follow_up_edit_is_read_with_the_conversations_family():
    # "revenue" alone reads as pricing, but in a next-best-action conversation it edits that proposal.
    assert extract.read_message("revenue").family == "pricing"
    assert extract.read_message("revenue", family_hint="next_best_action").family is None


@pytest.mark.parametrize(
    "answer, family",
    [
        ("2", "pricing"),
        ("option 4", "location_scoring"),
        ("the forecasting one", "forecasting"),
        ("offers", "next_best_action"),
    ],
)
def test_answer_to_which_family(answer, family):
    assert extract.read_message(answer, pending="family").family == family


def test_family_choice_reads_a_number_or_exactly_one_name():
    assert extract.family_choice("3") == "next_best_action"
    assert extract.family_choice("the site one") == "location_scoring"
    assert extract.family_choice("price") == "pricing"
    assert extract.family_choice("forecasting or pricing") is None  # two names: not a choice
    assert extract.family_choice("5") is None


@pytest.fixture
def builtin(settings):
    settings.LLM_BASE_URL = ""
    settings.LLM_MODEL = ""


@pytest.mark.django_db
@pytest.mark.parametrize("text, family", ISSUE_EXAMPLES)
def test_issue_examples_get_a_proposal_of_their_family(user, baselines, builtin, text, family):
    out = chat_reply(user=user, message=text)
    assert out["proposal"] is not None, out["reply"]
    assert out["proposal"]["family"] == family
    assert out["proposal"]["valid"] is True


@pytest.mark.django_db
def test_vague_message_asks_which_family_offering_two_with_a_reason_each(user, baselines, builtin):
    out = chat_reply(user=user, message="help me with a model")
    reply = out["reply"]
    assert out["proposal"] is None
    assert "Which kind of model is it?" in reply
    options = [line for line in reply.splitlines() if re.match(r"^[1-4]\. ", line)]
    assert len(options) == 2, reply
    assert all(":" in line and line.endswith(".") for line in options)  # a one-line reason each
    offered = [catalog.FAMILIES[int(line[0]) - 1] for line in options]
    others = [str(catalog.FAMILIES.index(f) + 1) for f in catalog.FAMILIES if f not in offered]
    assert all(f"{n} for" in reply for n in others)  # the other two stay reachable

    conversation = Conversation.objects.get(pk=out["conversation_id"])
    assert conversation.state_json["pending"] == "family"
    out = chat_reply(user=user, message=options[1][0], conversation=conversation)
    assert out["proposal"]["family"] == offered[1]


@pytest.mark.django_db
def test_ambiguous_description_names_the_words_behind_each_option(user, baselines, builtin):
    text = "something for our shops next year"
    reading = extract.read_family(text)
    assert reading.family is None  # unsure: the assistant asks
    assert [f for f, _ in reading.options] == ["forecasting", "location_scoring"]
    out = chat_reply(user=user, message=text)
    assert out["proposal"] is None
    lines = out["reply"].splitlines()
    # Each option quotes the user's own words that point to it.
    assert any(line.startswith("1. Forecasting: ") and '"year"' in line for line in lines), out["reply"]
    assert any(line.startswith("4. Location scoring: ") and '"shops"' in line for line in lines)
