"""Attribution drift in monitoring (issue #17 §4): a check of a model whose train run explained
it compares which features drive its outputs on the batch with the training explanation, stores
``explain.rank_change`` and ``explain.<feature>.share`` with the snapshot's drift, and alert
rules can use them; a model without explanations gets nothing, and a batch that cannot be
explained keeps the rest of its check."""

from __future__ import annotations

import copy
import io
import logging

import numpy as np
import pandas as pd
import pytest
from django.conf import settings as django_settings
from django.core.files.uploadedfile import SimpleUploadedFile
from django.template.loader import render_to_string

from monitoring import attribution, rules
from monitoring.models import Alert, AlertState
from monitoring.selectors import model_attribution_drift
from monitoring.services import checks, model_check
from recipes.models import Recipe
from recipes.services import version_approve, version_create
from runs import artifacts
from runs import explain as explain_lib
from runs.data import model_input
from runs.families import get_family
from runs.services import dataset_create
from runs.tests.factories import trained_model

LOCATION = "recipe_location_base"  # LightGBM: exact TreeSHAP

# ---------------------------------------------------------------------------- pure helpers

ENTRY = {
    "method": "tree_shap",
    "rows": 200,
    "rank_change": 0.5,
    "features": {
        "price": {"share": 0.25, "reference_share": 0.5, "rank": 2, "reference_rank": 1},
        "promo": {"share": 0.75, "reference_share": 0.5, "rank": 1, "reference_rank": 2},
        "odd": {"share": None},
    },
}


def test_snapshot_context_reads_the_explain_entry_as_alert_names():
    ctx = rules.snapshot_context(None, {"max_psi": 0.1, "explain": ENTRY}, None)
    assert ctx["explain.rank_change"] == 0.5
    assert ctx["explain.price.share"] == 0.25 and ctx["explain.promo.share"] == 0.75
    assert "explain.odd.share" not in ctx  # unknown, as any missing value
    assert ctx["drift.max_psi"] == 0.1
    # a batch that could not be explained gives no explain.* name
    ctx = rules.snapshot_context(None, {"explain": {"error": "boom"}}, None)
    assert not [name for name in ctx if name.startswith("explain.")]


def test_reference_means_come_from_the_documents_attribution():
    document = {
        "attribution": {
            "mean_abs": [
                {"feature": "price", "mean_abs": 2.0, "share": 0.8},
                {"feature": "promo", "mean_abs": 0.5, "share": 0.2},
                {"feature": "bad", "mean_abs": float("nan")},
            ]
        }
    }
    assert attribution.reference_means(document) == {"price": 2.0, "promo": 0.5}
    for without in (None, {}, {"attribution": None}, {"attribution": {"mean_abs": []}}):
        assert attribution.reference_means(without) is None


def test_the_sample_is_bounded_by_the_cap_and_the_documents_sample_and_seeded():
    frame = pd.DataFrame({"x": np.arange(2_000)})
    document = {"sample_rows": 300, "seed": 4}
    first = attribution.sample_rows(frame, document)
    assert len(first) == 300 and first["x"].is_monotonic_increasing
    assert first.equals(attribution.sample_rows(frame, document))  # seeded: the same rows
    assert not first.equals(attribution.sample_rows(frame, {**document, "seed": 5}))
    assert len(attribution.sample_rows(frame, {"sample_rows": 5_000})) == attribution.CHECK_EXPLAIN_ROWS
    small = frame.head(40)
    assert attribution.sample_rows(small, document) is small


def test_drift_entry_keeps_shares_and_ranks_and_the_table_shows_them():
    reference = {"price": 3.0, "promo": 1.0}
    current = {"price": 1.0, "promo": 2.0, "new": 0.5}
    metrics = {"explain.rank_change": 1.0, "explain.price.share": 0.25, "explain.promo.share": 0.5}
    entry = attribution.drift_entry(
        reference, current, metrics, document={"method": "tree_shap", "sample_rows": 500}, rows=120
    )
    assert entry["rank_change"] == 1.0 and entry["rows"] == 120 and entry["method"] == "tree_shap"
    assert list(entry["features"]) == ["price", "promo", "new"]
    price = entry["features"]["price"]
    assert price["share"] == 0.25 and price["reference_share"] == 0.75
    assert (price["reference_rank"], price["rank"]) == (1, 2)
    table = attribution.table(entry)
    assert [row["feature"] for row in table] == ["price", "promo", "new"]
    assert table[0]["change"] == pytest.approx(-0.5) and table[0]["moved"] == "down"
    assert (table[0]["reference_percent"], table[0]["percent"], table[0]["change_points"]) == (
        75.0,
        25.0,
        -50.0,
    )
    assert table[1]["moved"] == "up" and table[1]["steps"] == 1
    assert table[2]["reference_share"] is None and table[2]["moved"] is None
    assert attribution.table(None) == [] and attribution.table({"error": "x"}) == []


def test_chunked_means_is_the_mean_over_the_rows_explained_within_the_budget():
    rows = pd.DataFrame({"x": np.arange(100, dtype=float)})
    sizes: list[int] = []

    def means_of(part):
        sizes.append(len(part))
        return {"x": float(part["x"].mean()), "one": 1.0}

    means, explained = attribution.chunked_means(means_of, rows, budget_seconds=60, first=10)
    assert sizes == [10, 20, 40, 30] and explained == 100
    assert means == pytest.approx({"x": rows["x"].mean(), "one": 1.0})
    # a clock that moves one second per call: with two seconds, two chunks
    ticks = iter(range(100))
    sizes.clear()
    means, explained = attribution.chunked_means(
        means_of, rows, budget_seconds=2, first=10, clock=lambda: float(next(ticks))
    )
    assert sizes == [10, 20] and explained == 30
    assert means["x"] == pytest.approx(rows["x"].head(30).mean())
    # a chunk without any usable row (the explainer returns nothing) counts none
    means, explained = attribution.chunked_means(
        lambda part: {} if part["x"].iloc[0] == 0 else means_of(part), rows, budget_seconds=60, first=10
    )
    assert explained == 90 and means["x"] == pytest.approx(rows["x"].iloc[10:].mean())
    assert attribution.chunked_means(lambda part: {}, rows) == ({}, 0)


# ---------------------------------------------------------------------------- checks


def _fake_explainer(monkeypatch, calls: list):
    """runs.explain's two functions replaced by ones that record what the check passed."""
    features = ["population_3km", "foot_traffic", "region"]

    def means(family, model, rows, background):
        calls.append(rows)
        return {f: float(i + 1) for i, f in enumerate(features)}

    def drift(reference, current):
        total = sum(current.values())
        return {"explain.rank_change": 2.0, **{f"explain.{f}.share": v / total for f, v in current.items()}}

    monkeypatch.setattr(explain_lib, "attribution_means", means, raising=False)
    monkeypatch.setattr(explain_lib, "attribution_drift", drift, raising=False)
    document = {
        "method": "tree_shap",
        "sample_rows": 150,
        "seed": 3,
        "attribution": {"mean_abs": [{"feature": f, "mean_abs": 3.0 - i} for i, f in enumerate(features)]},
    }
    monkeypatch.setattr(checks, "model_explanations", lambda model: document)
    monkeypatch.setattr(artifacts, "explanation_background", lambda model: None)
    return features


@pytest.mark.django_db
def test_a_check_stores_the_explainers_attribution_drift_on_a_bounded_sample(baselines, user, monkeypatch):
    model = trained_model(user, recipe_id=LOCATION, rows=1500)
    calls: list = []
    features = _fake_explainer(monkeypatch, calls)
    snapshot = model_check(model=model, synthetic={"rows": 1000})
    _fitted, schema = artifacts.load_model(model)
    # at most the document's sample_rows, in chunks, as the model takes them (its input columns)
    assert [len(rows) for rows in calls] == [10, 20, 40, 80]
    assert all(list(rows.columns) == [c["name"] for c in schema["input_columns"]] for rows in calls)
    entry = snapshot.drift_metrics_json["explain"]
    assert entry["rank_change"] == 2.0 and entry["rows"] == entry["sample_rows"] == 150
    assert set(entry["features"]) == set(features)
    # the feature drift of the check is still there, and the alert names resolve
    assert snapshot.drift_metrics_json["features"]
    ctx = rules.snapshot_context(None, snapshot.drift_metrics_json, None)
    assert ctx["explain.rank_change"] == 2.0
    assert ctx["explain.region.share"] == pytest.approx(0.5)
    # out of time for explanations after the first chunk: the snapshot and the page say so
    monkeypatch.setattr(django_settings, "CHECK_EXPLAIN_SECONDS", 0.0)
    monkeypatch.setattr(django_settings, "CHECK_EXPLAIN_FIRST_ROWS", attribution.FIRST_CHUNK_ROWS)
    snapshot = model_check(model=model, synthetic={"rows": 1000})
    entry = snapshot.drift_metrics_json["explain"]
    assert (entry["rows"], entry["sample_rows"]) == (10, 150)
    html = render_to_string(
        "monitoring/_attribution_drift.html", {"attribution": model_attribution_drift(model)}
    )
    assert "10 rows explained of 150 sampled" in html
    # a caller that does not need it (many checks in a row) skips it
    calls.clear()
    snapshot = model_check(model=model, synthetic={"rows": 1000}, with_attribution=False)
    assert calls == [] and "explain" not in snapshot.drift_metrics_json


@pytest.mark.django_db
def test_a_batch_that_cannot_be_explained_keeps_the_rest_of_its_check(baselines, user, monkeypatch, caplog):
    model = trained_model(user, recipe_id=LOCATION, rows=1500)
    _fake_explainer(monkeypatch, [])

    def fails(family, model, rows, background):
        raise ValueError("cannot explain these rows")

    monkeypatch.setattr(explain_lib, "attribution_means", fails, raising=False)
    with caplog.at_level(logging.WARNING, logger="monitoring.services.checks"):
        snapshot = model_check(model=model, synthetic={"rows": 1000})
    assert "cannot explain these rows" in caplog.text
    drift = snapshot.drift_metrics_json
    assert drift["features"] and drift["prediction"]["psi"] is not None  # the check went on
    assert "cannot explain these rows" in drift["explain"]["error"]
    ctx = rules.snapshot_context(None, drift, None)
    assert not [name for name in ctx if name.startswith("explain.")]
    card = model_attribution_drift(model)
    assert card["latest"] == drift["explain"] and card["rows"] == []
    html = render_to_string("monitoring/_attribution_drift.html", {"attribution": card})
    assert 'id="attribution-error"' in html and "cannot explain these rows" in html


@pytest.mark.django_db
def test_a_streamed_dataset_explains_only_rows_of_its_sample(baselines, user, monkeypatch, settings):
    settings.CHECK_STREAM_ROWS = 1_000
    settings.CHECK_CHUNK_ROWS = 300
    settings.CHECK_SAMPLE_ROWS = 400
    model = trained_model(user, recipe_id=LOCATION, rows=1500)
    calls: list = []
    _fake_explainer(monkeypatch, calls)
    monkeypatch.setattr(attribution, "CHECK_EXPLAIN_ROWS", 10_000)  # the stream's sample bounds it
    frame = get_family("location_scoring").generate(2_500, 5)
    dataset = _upload(model, user, frame)
    snapshot = model_check(model=model, dataset_id=dataset.pk)
    assert snapshot.data_freshness_json["batch"]["streamed"] is True
    rows = pd.concat(calls)
    assert len(rows) == 150  # the document's sample_rows, drawn from the first 400 rows
    first = model_input(frame.head(400), artifacts.load_model(model)[1])
    assert rows["population_3km"].isin(first["population_3km"]).all()


def _upload(model, user, frame: pd.DataFrame):
    buffer = io.BytesIO()
    frame.to_parquet(buffer, index=False)
    dataset = dataset_create(
        user=user, upload=SimpleUploadedFile("sites.parquet", buffer.getvalue()), recipe=model.recipe
    )
    assert dataset.status == "ready", dataset.validation_json
    return dataset


@pytest.fixture(autouse=True)
def _real_explanation_sizes(settings):
    """This file tests the sizes themselves: the production defaults, not the suite's small ones."""
    settings.EXPLAIN_CAPS = {}
    settings.CHECK_EXPLAIN_FIRST_ROWS = attribution.FIRST_CHUNK_ROWS
    settings.CHECK_EXPLAIN_SECONDS = attribution.CHECK_EXPLAIN_SECONDS


@pytest.fixture
def no_time_budget(monkeypatch):
    """Every sampled row explained, however busy the machine (the budget is tested above)."""
    monkeypatch.setattr(django_settings, "CHECK_EXPLAIN_SECONDS", 600.0)
    monkeypatch.setattr(django_settings, "CHECK_EXPLAIN_FIRST_ROWS", attribution.FIRST_CHUNK_ROWS)


def location_version(lead, *, explain: bool = True, alerts: dict | None = None) -> None:
    """The location baseline's current version, with (or without) an explain stage and with
    `alerts` added to its monitoring, approved (a new version only when that changes it)."""
    recipe = Recipe.objects.get(pk=LOCATION)
    manifest = copy.deepcopy(recipe.current_version.manifest)
    stages = [st for st in manifest["pipeline"]["stages"] if st.get("type") != "explain"]
    if explain:
        stages.append({"name": "explain", "type": "explain", "config": {}})
    manifest["pipeline"]["stages"] = stages
    manifest["monitoring"]["alerts"].update(alerts or {})
    if manifest != recipe.current_version.manifest:
        version = version_create(recipe=recipe, user=lead, manifest=manifest, bump="minor", changelog="test")
        version_approve(version=version, user=lead, override_reason="test set-up")


def shares(snapshot) -> dict[str, float]:
    return {f: e["share"] for f, e in snapshot.drift_metrics_json["explain"]["features"].items()}


@pytest.mark.django_db
def test_a_real_model_checked_on_its_world_has_attribution_drift(
    baselines, user, lead, django_assert_num_queries, no_time_budget
):
    location_version(lead)
    model = trained_model(user, recipe_id=LOCATION, rows=3000)
    document = checks.model_explanations(model)
    assert document["method"] == "tree_shap"  # exact
    reference = attribution.reference_means(document)
    snapshot = model_check(model=model, synthetic={"rows": 1500})
    entry = snapshot.drift_metrics_json["explain"]
    assert "error" not in entry, entry
    assert entry["rows"] == min(attribution.CHECK_EXPLAIN_ROWS, document["sample_rows"])
    assert set(entry["features"]) == set(reference)
    assert sum(shares(snapshot).values()) == pytest.approx(1.0)
    assert entry["rank_change"] >= 0
    ctx = rules.snapshot_context(None, snapshot.drift_metrics_json, None)
    assert ctx["explain.rank_change"] == entry["rank_change"]
    assert {f"explain.{f}.share" for f in reference} <= set(ctx)
    # the model page's card: one query, the training and current share of every feature
    with django_assert_num_queries(1):
        card = model_attribution_drift(model)
    assert card["has_explanations"] and card["latest"] == entry
    assert [row["feature"] for row in card["rows"]] == list(reference)  # the training ranking
    html = render_to_string("monitoring/_attribution_drift.html", {"attribution": card})
    assert 'id="attribution-table"' in html
    for feature in reference:
        assert f'data-feature="{feature}"' in html


@pytest.mark.django_db
def test_a_feature_whose_inputs_move_changes_its_share_and_the_ranking(baselines, user, lead, no_time_budget):
    location_version(lead)
    model = trained_model(user, recipe_id=LOCATION, rows=3000)
    reference = attribution.reference_means(checks.model_explanations(model))
    plain = model_check(model=model, synthetic={"rows": 1500, "start": 0, "seed": 1})
    # foot traffic three training standard deviations higher: the model's output now
    # depends on it far more than in training
    moved = model_check(
        model=model, synthetic={"rows": 1500, "start": 0, "seed": 1, "shift": {"foot_traffic": 3}}
    )
    before, after = shares(plain), shares(moved)
    assert after["foot_traffic"] > 1.5 * before["foot_traffic"]
    assert moved.drift_metrics_json["explain"]["features"]["foot_traffic"]["rank"] == 1
    assert attribution.ranks(reference)["foot_traffic"] > 1
    assert (
        moved.drift_metrics_json["explain"]["rank_change"]
        > plain.drift_metrics_json["explain"]["rank_change"]
    )
    # A change of the ground truth the inputs do not show (a competitor opens next to half
    # of the sites) leaves a fixed model's attributions where they were: attribution drift
    # is not concept drift (the performance on labelled outcomes shows that).
    concept = model_check(
        model=model, synthetic={"rows": 1500, "start": 0, "seed": 1, "concept": "competitor_opens"}
    )
    assert shares(concept) == pytest.approx(before)


@pytest.mark.django_db
def test_an_alert_rule_on_rank_change_fires_when_the_ranking_moves(baselines, user, lead, no_time_budget):
    location_version(
        lead,
        alerts={"attribution_moved": {"condition": "explain.rank_change > 1", "severity": "warning"}},
    )
    model = trained_model(user, recipe_id=LOCATION, rows=3000)
    document = checks.model_explanations(model)
    top = document["attribution"]["mean_abs"][0]["feature"]
    frame = get_family("location_scoring").generate(1500, 11)
    plain = model_check(model=model, dataset_id=_upload(model, user, frame).pk)
    assert plain.alerts_json["attribution_moved"]["firing"] is False
    assert not Alert.objects.filter(model=model, name="attribution_moved").exists()
    # the model's main driver held at its median: it no longer explains the differences
    held = frame.assign(**{top: frame[top].median()})
    snapshot = model_check(model=model, dataset_id=_upload(model, user, held).pk)
    result = snapshot.alerts_json["attribution_moved"]
    assert result["firing"] is True
    assert (
        result["values"]["explain.rank_change"] == snapshot.drift_metrics_json["explain"]["rank_change"] > 1
    )
    assert shares(snapshot)[top] < shares(plain)[top] / 2
    alert = Alert.objects.get(model=model, name="attribution_moved")
    assert alert.state == AlertState.FIRING
    # the same data as before: the ranking is back, the alert resolves
    model_check(model=model, dataset_id=_upload(model, user, frame).pk)
    alert.refresh_from_db()
    assert alert.state == AlertState.RESOLVED


@pytest.mark.django_db
def test_a_model_without_explanations_gets_no_attribution_drift_and_no_error(
    baselines, user, lead, monkeypatch
):
    location_version(lead, explain=False)
    model = trained_model(user, recipe_id=LOCATION, rows=1500)
    assert checks.model_explanations(model) is None

    def never(*args, **kwargs):
        raise AssertionError("a model without explanations is not explained")

    monkeypatch.setattr(explain_lib, "attribution_means", never)
    snapshot = model_check(model=model, synthetic={"rows": 800})
    assert "explain" not in snapshot.drift_metrics_json
    assert snapshot.drift_metrics_json["features"]
    card = model_attribution_drift(model)
    assert not card["has_explanations"] and card["latest"] is None and card["rows"] == []
    html = render_to_string("monitoring/_attribution_drift.html", {"attribution": card})
    assert "has no explanation" in html and "attribution-table" not in html
