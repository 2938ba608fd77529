"""The monitoring series is read from the cursor in chunks and spliced as text as each chunk
arrives (monitoring.api.series_json, bench/README.md §1): the response must be exactly the
series the stored snapshots make, across chunk boundaries, at a fixed number of queries."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from monitoring import api as monitoring_api
from monitoring.models import MonitorSnapshot
from runs.tests.factories import register

API = "/api/ml-development"
T0 = datetime(2026, 2, 1, 8, 0, 0, 250000, tzinfo=UTC)
pytestmark = pytest.mark.django_db


def snapshots(model, n: int, *, start: int = 0) -> list[MonitorSnapshot]:
    """`n` snapshots a minute apart, every column varied: nested drift documents, an empty
    document, a null and a numeric row_count, two sources."""
    return MonitorSnapshot.objects.bulk_create(
        MonitorSnapshot(
            id=f"snap_series_{i:04d}",
            model=model,
            captured_at=T0 + timedelta(minutes=i),
            performance_metrics_json={"MAPE": i / 100, "bias": -i, "note": 'say "hi"'},
            drift_metrics_json={
                "method": "PSI",
                "features": {"price": {"psi": i / 1000, "drifted": i % 2 == 0}},
            },
            data_freshness_json={} if i % 3 else {"lag_hours": i},
            alerts_json={"rows": [i, None]},
            source="scheduled" if i % 2 else "external",
            row_count=None if i % 4 == 0 else 1000 + i,
        )
        for i in range(start, start + n)
    )


def expected(rows: list[MonitorSnapshot]) -> list[dict]:
    """The series' points as the ORM reads the stored rows, oldest first."""
    return [
        {
            "id": s.id,
            "captured_at": s.captured_at.strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "source": s.source,
            "row_count": s.row_count,
            "performance_metrics_json": s.performance_metrics_json,
            "drift_metrics_json": s.drift_metrics_json,
            "data_freshness_json": s.data_freshness_json,
            "alerts_json": s.alerts_json,
        }
        for s in sorted(rows, key=lambda s: (s.captured_at, s.id))
    ]


@pytest.fixture
def small_chunks(monkeypatch):
    """Chunks of 7 rows, so a few dozen snapshots cross several chunk boundaries."""
    monkeypatch.setattr(monitoring_api, "SERIES_CHUNK", 7)


def test_the_series_across_chunks_is_every_snapshot_oldest_first(api_client, baselines, user, small_chunks):
    model = register(user)
    rows = snapshots(model, 30)
    snapshots(register(user, name="Another model"), 5, start=100)  # not this model's
    body = api_client.get(f"{API}/models/{model.id}/monitoring").json()
    assert body["model_id"] == model.id and body["count"] == 30
    assert body["snapshots"] == expected(rows)
    assert body["alerts"] == []


def test_a_limit_keeps_the_newest_points_across_chunks(api_client, baselines, user, small_chunks):
    model = register(user)
    rows = snapshots(model, 30)
    body = api_client.get(f"{API}/models/{model.id}/monitoring?limit=16").json()
    assert body["count"] == 16
    assert body["snapshots"] == expected(rows)[-16:]


def test_an_id_that_needs_escaping_is_escaped(api_client, baselines, user):
    model = register(user)
    MonitorSnapshot.objects.create(id='snap_"odd"\\id_é', model=model, captured_at=T0, source="external")
    content = api_client.get(f"{API}/models/{model.id}/monitoring").content
    assert [s["id"] for s in json.loads(content)["snapshots"]] == ['snap_"odd"\\id_é']
    assert json.dumps('snap_"odd"\\id_é').encode() in content  # quoted exactly as json.dumps quotes


def test_the_series_costs_the_same_queries_for_many_points(
    api_client, baselines, user, small_chunks, django_assert_max_num_queries
):
    model = register(user)
    snapshots(model, 3)
    # the model, the alerts and the series (the client is force-authenticated: no session)
    with django_assert_max_num_queries(3):
        api_client.get(f"{API}/models/{model.id}/monitoring")
    snapshots(model, 60, start=3)
    with django_assert_max_num_queries(3):
        assert api_client.get(f"{API}/models/{model.id}/monitoring").json()["count"] == 63
