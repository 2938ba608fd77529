"""The model page's Monitoring tab (models_registry owns the page): dashboards, alerts and
the Run check form and its POST."""

from datetime import UTC, date, datetime, timedelta

import pytest
from django import forms

from models_registry import views
from models_registry.models import MLModel
from monitoring.forms import CheckForm
from monitoring.models import Alert, MonitorSnapshot
from monitoring.services import snapshot_record
from runs.services import run_start
from runs.tests.factories import register, trained_model

pytestmark = pytest.mark.django_db

HTMX = {"HTTP_HX_REQUEST": "true"}


def model_url(model_id: str, suffix: str = "") -> str:
    return f"/model-development/models/{model_id}{suffix}"


def production(user, name: str, recipe_id: str = "recipe_pricing_base") -> MLModel:
    """A production model for these tests (the lifecycle itself is tested elsewhere)."""
    model = register(user, recipe_id=recipe_id, name=name)
    # One main production model per recipe (a database constraint); more serve alongside it.
    alongside = MLModel.objects.filter(recipe_id=recipe_id, status="production").exists()
    MLModel.objects.filter(pk=model.pk).update(status="production", serves_alongside=alongside)
    model.refresh_from_db()
    return model


# --------------------------------------------------------------------------- model dashboards


def test_model_monitoring_tab_draws_charts_and_alerts(as_user, baselines, user):
    model = production(user, "Pricing weekly")
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for day, mape in enumerate([0.2, 0.3, 0.45]):
        snapshot_record(
            model=model,
            performance={"demand_mape": mape},
            drift={"features": {"price": {"psi": 0.05 * day, "drifted": day == 2}}, "max_psi": 0.1 * day},
            freshness={"max_age_hours": 192, "features": {"units": {"age_hours": 3.0 * day, "stale": False}}},
            captured_at=base + timedelta(days=day),
            source="check",
        )
    response = as_user.get(model_url(model.pk), {"tab": "monitoring"}, **HTMX)
    assert response.status_code == 200
    body = response.content.decode()
    assert "<html" not in body
    assert body.count("plotly-graph-div") >= 4  # metrics, drift, freshness, alerts
    assert "demand_mape over time" in body and "Drift (PSI) by feature" in body
    assert "demand_error_high" in body  # the firing alert
    assert "health-critical" in body


def test_run_check_needs_a_trained_model(as_user, baselines, user):
    model = register(user)
    page = as_user.get(model_url(model.pk), {"tab": "monitoring"}).content.decode()
    assert "train the model first" in page
    response = as_user.post(
        model_url(model.pk, "/check"), {"source": "synthetic", "rows": "500", "seed": "1"}
    )
    assert response.status_code == 400
    assert "no trained artifact" in response.content.decode()
    assert not MonitorSnapshot.objects.exists()


def test_run_check_needs_permission(client, viewer, baselines, user):
    model = register(user)
    client.force_login(viewer)
    response = client.post(model_url(model.pk, "/check"), {"source": "synthetic", "rows": "500"})
    assert response.status_code == 403
    assert "monitoring.add_monitorsnapshot" in response.content.decode()


def test_run_check_on_a_drifted_batch_alerts(as_user, baselines, user):
    model = trained_model(user, recipe_id="recipe_location_base", rows=3000)
    form_errors = as_user.post(model_url(model.pk, "/check"), {"source": "dataset"})
    assert form_errors.status_code == 400
    assert "Pick an uploaded dataset" in form_errors.content.decode()
    response = as_user.post(
        model_url(model.pk, "/check"),
        {
            "source": "synthetic",
            "rows": "4000",
            "seed": "12",
            "shift_feature": "median_income",
            "shift_k": "1.5",
        },
    )
    assert response.status_code == 302
    assert response["Location"] == model_url(model.pk) + "?tab=monitoring"
    snapshot = MonitorSnapshot.objects.get(model=model)
    assert snapshot.row_count == 4000
    assert snapshot.drift_metrics_json["features"]["median_income"]["drifted"] is True
    assert Alert.objects.filter(model=model, name="feature_drift", state="firing").exists()
    page = as_user.get(response["Location"]).content.decode()
    assert "alerts firing" in page and "feature_drift" in page


# --------------------------------------------------------------------------- empty state and charts


def checkable(user) -> MLModel:
    """A model the page treats as trained (these tests only render the page; the check
    itself is tested with a real artifact above)."""
    model = register(user)
    run = run_start(user=user, recipe=model.recipe, model=model, params={})
    MLModel.objects.filter(pk=model.pk).update(training_run=run, artifacts_json={"model": ["model.json"]})
    model.refresh_from_db()
    return model


def test_never_checked_model_shows_run_check_instead_of_empty_charts(as_user, baselines, user):
    model = checkable(user)
    body = as_user.get(model_url(model.pk), {"tab": "monitoring"}, **HTMX).content.decode()
    assert "No checks yet" in body and 'id="check-form"' in body
    # No chart box (so plotly.js is not even fetched) and no "No data yet" placeholder.
    assert "data-plotly-figure" not in body and "No data yet" not in body
    assert 'id="active-alerts"' not in body  # nothing can have fired before a first check


def test_run_check_comes_before_the_charts_and_empty_charts_are_named(as_user, baselines, user):
    model = checkable(user)
    snapshot_record(
        model=model,
        performance={"demand_mape": 0.2},
        captured_at=datetime(2026, 1, 1, tzinfo=UTC),
        source="check",
    )
    response = as_user.get(model_url(model.pk), {"tab": "monitoring"}, **HTMX)
    body = response.content.decode()
    assert "No checks yet" not in body and "<h2>Run check</h2>" in body
    assert body.index('id="check-form"') < body.index("data-plotly-figure")
    assert "demand_mape over time" in body
    # No drift, freshness or alert data in this snapshot: those charts are named, not drawn.
    empty = response.context["empty_charts"]
    assert "Alerts" in empty and any(t.startswith("Drift") for t in empty)
    assert "Drift (PSI) by feature" not in "".join(c["html"] for c in response.context["charts"])
    assert 'id="empty-charts"' in body


def test_check_form_renders_fields_the_template_does_not_name(as_user, baselines, user, monkeypatch):
    class Grown(CheckForm):
        window_start = forms.DateField(required=False, label="Window starts")

    monkeypatch.setattr(views, "CheckForm", Grown)
    model = checkable(user)
    body = as_user.get(model_url(model.pk), {"tab": "monitoring"}, **HTMX).content.decode()
    assert 'name="window_start"' in body and "Window starts" in body
    assert body.count('name="rows"') == 1  # the named fields are not rendered twice


def test_check_form_says_which_world_and_window_and_offers_concept_drift(as_user, baselines, user):
    model = checkable(user)  # trained (on paper) on the default synthetic batch: seed 0
    response = as_user.get(model_url(model.pk), {"tab": "monitoring"}, **HTMX)
    body = response.content.decode()
    form = response.context["check_form"]
    assert form.fields["seed"].initial == 0
    assert "Seed 0 is the world the model was trained in (97 products × 10 stores)" in body
    # 104 training weeks from 2022-01-03: the next window starts 2024-01-01
    assert "the next window after the model&#x27;s training data: 5 weeks 2024-01-01 – 2024-02-04" in body
    assert 'name="concept"' in body and 'value="less_price_sensitive"' in body
    assert 'name="start"' in body


def test_check_form_continues_after_the_last_batch_and_injects_concept_drift(as_user, baselines, user):
    model = trained_model(user, rows=3000)
    response = as_user.post(
        model_url(model.pk, "/check"),
        {"source": "synthetic", "rows": "2000", "seed": "1", "concept": "less_price_sensitive"},
    )
    assert response.status_code == 302
    snapshot = MonitorSnapshot.objects.get(model=model)
    batch = snapshot.data_freshness_json["batch"]
    assert batch["concept"] == "less_price_sensitive" and batch["seed"] == 1
    assert snapshot.drift_metrics_json["drifted_count"] == 0
    assert snapshot.alerts_json["demand_error_high"]["firing"] is True  # performance decays
    page = as_user.get(model_url(model.pk), {"tab": "monitoring"}, **HTMX).content.decode()
    following = (date.fromisoformat(batch["window"]["end"]) + timedelta(days=1)).isoformat()
    assert f"the next window after the last batch checked: 125 weeks {following}" in page
    bad = as_user.post(model_url(model.pk, "/check"), {"source": "synthetic", "start": "1990-01-01"})
    assert bad.status_code == 400
    assert "when the world begins" in bad.content.decode()


def test_a_failed_check_re_renders_the_page_the_monitoring_tab_shows(as_user, baselines, user):
    """One context builder for the page: the Run check's error page is the Monitoring tab
    with the posted form, header included (lifecycle moves, "keep … in production too")."""
    current = production(user, "Current champion")
    model = checkable(user)
    MLModel.objects.filter(pk=model.pk).update(status="staging")
    snapshot_record(model=model, performance={"demand_mape": 0.5}, source="check")
    shown = as_user.get(model_url(model.pk), {"tab": "monitoring"})
    failed = as_user.post(model_url(model.pk, "/check"), {"source": "dataset"})
    assert (shown.status_code, failed.status_code) == (200, 400)
    assert "Pick an uploaded dataset" in failed.content.decode()
    assert "keep “Current champion” in production too" in failed.content.decode()
    assert failed.context["other_production"] == [current]
    for key in (
        "nav",
        "tab",
        "tabs",
        "moves",
        "other_production",
        "can_change",
        "can_run",
        "open_alerts",
        "health",
        "snapshot_count",
        "latest",
        "latest_rows",
        "drifted",
        "active_alerts",
        "resolved_alerts",
        "empty_charts",
        "can_check",
        "has_artifact",
    ):
        assert failed.context[key] == shown.context[key], key
    assert len(failed.context["charts"]) == len(shown.context["charts"]) > 0
    assert failed.context["check_form"].errors and not shown.context["check_form"].is_bound
