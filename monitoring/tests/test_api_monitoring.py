from datetime import UTC, datetime, timedelta

import pytest
from rest_framework.test import APIClient

from monitoring.models import Alert, MonitorSnapshot
from monitoring.services import snapshot_record
from runs.tests.factories import register, trained_model

API = "/api/ml-development"
pytestmark = pytest.mark.django_db


def post(client, model_id, **body):
    return client.post(f"{API}/models/{model_id}/monitoring", body, format="json")


def test_post_snapshot_spec_example_and_read_series(api_client, baselines, user):
    model = register(user)
    r = post(
        api_client,
        model.id,
        performance_metrics_json={"MAPE": 0.15},
        drift_metrics_json={"PSI": 0.08},
        data_freshness_json={"last_update": "2024-01-15T10:00:00Z"},
        alerts_json={},
    )
    assert r.status_code == 201, r.json()
    assert r.json()["id"].startswith("snap_")
    series = api_client.get(f"{API}/models/{model.id}/monitoring").json()
    assert series["count"] == 1
    assert series["snapshots"][0]["performance_metrics_json"] == {"MAPE": 0.15}


def test_series_is_time_ordered_and_filtered(api_client, baselines, user):
    model = register(user)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    for day in (3, 1, 2):
        post(
            api_client,
            model.id,
            captured_at=(base + timedelta(days=day)).isoformat(),
            performance_metrics_json={"demand_mape": day / 10},
        )
    body = api_client.get(f"{API}/models/{model.id}/monitoring").json()
    assert [s["performance_metrics_json"]["demand_mape"] for s in body["snapshots"]] == [0.1, 0.2, 0.3]
    since = (base + timedelta(days=2)).isoformat().replace("+00:00", "Z")
    body = api_client.get(f"{API}/models/{model.id}/monitoring", {"since": since}).json()
    assert body["count"] == 2
    assert api_client.get(f"{API}/models/{model.id}/monitoring?since=yesterday").status_code == 400


@pytest.mark.parametrize(
    "body, path",
    [
        ({"performance_metrics_json": {"MAPE": "bad"}}, "/performance_metrics_json"),
        ({"drift_metrics_json": [1]}, "/drift_metrics_json"),
        ({"captured_at": "soon"}, "/captured_at"),
        ({"extra": 1}, "/extra"),
    ],
)
def test_post_bad_snapshot(api_client, baselines, user, body, path):
    model = register(user)
    r = post(api_client, model.id, **body)
    assert r.status_code == 400
    assert path in {e["path"] for e in r.json()["errors"]}
    assert MonitorSnapshot.objects.count() == 0


def test_unknown_model_404_and_permissions(api_client, viewer_client, baselines, user):
    assert api_client.get(f"{API}/models/model_nope/monitoring").status_code == 404
    model = register(user)
    assert viewer_client.get(f"{API}/models/{model.id}/monitoring").status_code == 200
    assert post(viewer_client, model.id, performance_metrics_json={}).status_code == 403


def test_external_snapshots_open_and_resolve_alerts(api_client, baselines, user):
    """The pricing baseline alerts when demand_mape passes its critical threshold."""
    model = register(user)
    rules = model.recipe_version.manifest["monitoring"]["alerts"]
    name = next(
        n for n, a in rules.items() if "demand_mape" in a["condition"] or "calibration" in a["condition"]
    )
    metric = "demand_mape" if "demand_mape" in rules[name]["condition"] else "calibration"
    base = datetime(2026, 2, 1, tzinfo=UTC)
    for day, value in enumerate([0.01, 5.0, 6.0, 0.01]):
        post(
            api_client,
            model.id,
            captured_at=(base + timedelta(days=day)).isoformat(),
            performance_metrics_json={metric: value},
        )
    alerts = Alert.objects.filter(model=model, name=name)
    assert alerts.count() == 1
    alert = alerts.get()
    assert alert.state == "resolved"
    assert alert.fired_at == base + timedelta(days=1)
    assert alert.resolved_at == base + timedelta(days=3)


def test_series_query_count_constant(api_client, baselines, user, django_assert_max_num_queries):
    model = register(user)
    for i in range(30):
        post(api_client, model.id, performance_metrics_json={"demand_mape": i / 100})
    with django_assert_max_num_queries(6):
        assert api_client.get(f"{API}/models/{model.id}/monitoring").json()["count"] == 30


def test_check_on_drifted_synthetic_batch(api_client, baselines, user):
    """Site rows are i.i.d.: a fresh batch from the generator does not drift, a shifted one does."""
    model = trained_model(user, recipe_id="recipe_location_base", rows=5000)
    ok = api_client.post(
        f"{API}/models/{model.id}/monitoring/check", {"synthetic": {"rows": 4000, "seed": 11}}, format="json"
    )
    assert ok.status_code == 201, ok.json()
    drift = ok.json()["drift_metrics_json"]
    assert drift["drifted_count"] == 0, drift
    assert ok.json()["performance_metrics_json"]["rank_correlation"] > 0.8
    assert not any(a.get("firing") for a in ok.json()["alerts_json"].values())
    bad = api_client.post(
        f"{API}/models/{model.id}/monitoring/check",
        {"synthetic": {"rows": 4000, "seed": 12, "shift": {"median_income": 1.5}}},
        format="json",
    )
    assert bad.status_code == 201
    body = bad.json()
    features = body["drift_metrics_json"]["features"]
    assert features["median_income"]["drifted"] is True
    assert features["population_3km"]["drifted"] is False
    assert features["median_income"]["n_cur"] == 4000
    assert features["median_income"]["n_ref"] > 0
    assert any(a.get("firing") for a in body["alerts_json"].values())
    assert Alert.objects.filter(model=model, state="firing").exists()
    # The data goes back to normal: the alert resolves; the series shows the whole episode.
    again = api_client.post(
        f"{API}/models/{model.id}/monitoring/check", {"synthetic": {"rows": 4000, "seed": 13}}, format="json"
    )
    assert again.json()["drift_metrics_json"]["drifted_count"] == 0
    assert not Alert.objects.filter(model=model, state="firing").exists()
    series = api_client.get(f"{API}/models/{model.id}/monitoring").json()
    assert [s["drift_metrics_json"]["drifted_count"] > 0 for s in series["snapshots"]] == [False, True, False]
    episode = next(a for a in series["alerts"] if a["name"] == "feature_drift" or "drift" in a["condition"])
    assert episode["state"] == "resolved" and episode["resolved_at"] is not None


@pytest.mark.parametrize(
    "body, path",
    [
        ({}, "/dataset_id"),
        ({"dataset_id": "ds_nope"}, "/dataset_id"),
        ({"synthetic": {"rows": 1}}, "/synthetic/rows"),
        ({"synthetic": {"rows": 500, "shift": {"nope": 1}}}, "/synthetic/shift"),
        ({"synthetic": {"concept": "nope"}}, "/synthetic/concept"),
        ({"synthetic": {"start": "1990-01-01"}}, "/synthetic/start"),
        ({"synthetic": {"start": "soon"}}, "/synthetic/start"),
        ({"synthetic": {"periods": 0}}, "/synthetic/periods"),
    ],
)
def test_check_bad_input(api_client, baselines, user, body, path):
    model = trained_model(user, rows=3000)
    r = api_client.post(f"{API}/models/{model.id}/monitoring/check", body, format="json")
    assert r.status_code == 400, r.json()
    assert path in {e["path"] for e in r.json()["errors"]}


def test_check_without_artifact_is_409(api_client, baselines, user):
    model = register(user)
    r = api_client.post(
        f"{API}/models/{model.id}/monitoring/check", {"synthetic": {"rows": 500}}, format="json"
    )
    assert r.status_code == 409


def test_check_of_a_forecaster_on_past_data_still_reports_feature_drift(api_client, baselines, user):
    """A forecaster cannot score periods inside its own history (a window asked for inside
    its training dates): the snapshot keeps feature drift and freshness and says why there
    is no performance."""
    model = trained_model(user, recipe_id="recipe_forecasting_base", rows=4 * 1095)
    r = api_client.post(
        f"{API}/models/{model.id}/monitoring/check",
        {"synthetic": {"rows": 4 * 60, "start": "2023-03-01"}},
        format="json",
    )
    assert r.status_code == 201, r.json()
    body = r.json()
    assert body["performance_metrics_json"] == {}
    assert "cannot score" in body["drift_metrics_json"]["prediction"]["error"]
    assert body["drift_metrics_json"]["features"]
    assert body["data_freshness_json"]["features"]


def test_default_check_of_a_forecaster_scores_the_window_after_its_training_data(api_client, baselines, user):
    model = trained_model(user, recipe_id="recipe_forecasting_base", rows=4 * 1095)
    r = api_client.post(f"{API}/models/{model.id}/monitoring/check", {"synthetic": {}}, format="json")
    assert r.status_code == 201, r.json()
    body = r.json()
    batch = body["data_freshness_json"]["batch"]
    assert batch["seed"] == 1 and batch["world"] == {"series": 4}
    assert batch["window"]["start"] == "2025-01-02"  # the day after the 1095 training days
    assert body["performance_metrics_json"]["MAPE"] > 0
    assert "cannot score" not in str(body["drift_metrics_json"].get("prediction"))


def test_every_monitoring_endpoint_is_404_for_an_outsider_of_a_client_private_model(client_private_model):
    """One scoping rule for all of them: a client's model does not exist for a signed-in user
    outside that client (who holds every firm permission, so nothing else stops them)."""
    model = client_private_model.model
    snapshot_record(model=model, performance={"demand_mape": 0.5})
    before = (MonitorSnapshot.objects.count(), Alert.objects.count())
    endpoints = {
        "series": lambda api: api.get(f"{API}/models/{model.id}/monitoring"),
        "post snapshot": lambda api: post(api, model.id, performance_metrics_json={"demand_mape": 0.9}),
        "check": lambda api: api.post(
            f"{API}/models/{model.id}/monitoring/check", {"synthetic": {"rows": 500}}, format="json"
        ),
    }
    outsider, insider = APIClient(), APIClient()
    outsider.force_authenticate(client_private_model.outsider)  # a firm data scientist, not a member
    insider.force_authenticate(client_private_model.member)
    for name, call in endpoints.items():
        response = call(outsider)
        assert response.status_code == 404, (name, response.status_code)
        assert "demand_mape" not in response.content.decode(), name
    assert (MonitorSnapshot.objects.count(), Alert.objects.count()) == before
    # The member reaches each of them (the check answers 409: the model is not trained).
    assert [call(insider).status_code for call in endpoints.values()] == [200, 201, 409]
