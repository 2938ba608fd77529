"""Tests of monitoring/charts.py (no Django)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import plotly.graph_objects as go
import pytest

from monitoring import charts

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def snap(day, mape=None, drift=None, freshness=None, iso=False, metric="MAPE"):
    at = T0 + timedelta(days=day)
    return {
        "captured_at": at.isoformat() if iso else at,
        "performance": {} if mape is None else {metric: mape},
        "drift": drift or {},
        "freshness": freshness or {},
        "alerts": {},
    }


def report(psi_price, psi_region, drifted=(), pred=None):
    features = {
        "price": {
            "kind": "numeric",
            "psi": psi_price,
            "n_ref": 10,
            "n_cur": 10,
            "drifted": "price" in drifted,
        },
        "region": {"kind": "categorical", "psi": psi_region, "n_ref": 10, "n_cur": 10, "drifted": False},
    }
    out = {"method": "PSI", "threshold": 0.2, "features": features, "max_psi": max(psi_price, psi_region)}
    if pred is not None:
        out["prediction"] = {"kind": "numeric", "psi": pred, "n_ref": 10, "n_cur": 10, "drifted": False}
    return out


def is_no_data(fig):
    return any(a.text == charts.NO_DATA for a in fig.layout.annotations)


def serialises(fig):
    assert isinstance(fig, go.Figure)
    data = json.loads(fig.to_json())
    assert "data" in data and "layout" in data
    html = fig.to_html(include_plotlyjs=False, full_html=False)
    assert "<div" in html and "plotly.min.js" not in html


@pytest.mark.parametrize(
    "fig",
    [
        lambda: charts.metric_over_time([], "MAPE"),
        lambda: charts.metric_over_time(None, "MAPE"),
        lambda: charts.metric_over_time([snap(0, drift=report(0.1, 0.1))], "MAPE"),  # metric absent
        lambda: charts.drift_heatmap([]),
        lambda: charts.drift_heatmap([snap(0, mape=0.1), {"captured_at": "garbage"}, "junk"]),
        lambda: charts.freshness_chart([]),
        lambda: charts.freshness_chart([snap(0, freshness={"max_age_hours": 24})]),
        lambda: charts.alert_timeline([]),
        lambda: charts.alert_timeline([{"name": "x", "fired_at": None}]),
    ],
)
def test_empty_input_gives_no_data_figure(fig):
    fig = fig()
    assert is_no_data(fig)
    assert len(fig.data) == 0
    serialises(fig)


def test_metric_over_time_lower_is_better():
    snaps = [snap(2, 0.16), snap(0, 0.10, iso=True), snap(1, 0.12)]
    fig = charts.metric_over_time(
        snaps, "MAPE", {"target": 0.1, "threshold_warning": 0.15, "threshold_critical": 0.2}, "lower"
    )
    assert [t.name for t in fig.data] == ["MAPE", "target"]
    line = fig.data[0]
    assert list(line.y) == [0.10, 0.12, 0.16]  # sorted by captured_at
    assert list(fig.data[1].y) == [0.1, 0.1]
    bands = {s.name: (s.y0, s.y1) for s in fig.layout.shapes}
    top = fig.layout.yaxis.range[1]
    assert bands == {"warning": (0.15, 0.2), "critical": (0.2, top)}
    assert top > 0.2
    serialises(fig)


def test_metric_over_time_higher_is_better_and_partial_thresholds():
    snaps = [snap(0, {"value": 0.4}, metric="precision@k"), snap(1, 0.3, metric="precision@k")]
    fig = charts.metric_over_time(
        snaps, "precision@k", {"target": 0.5, "threshold_warning": 0.35, "threshold_critical": 0.25}, "higher"
    )
    bottom = fig.layout.yaxis.range[0]
    bands = {s.name: (s.y0, s.y1) for s in fig.layout.shapes}
    assert bands == {"warning": (0.25, 0.35), "critical": (bottom, 0.25)}
    only_warning = charts.metric_over_time(snaps, "precision@k", {"threshold_warning": 0.35}, "higher")
    assert [s.name for s in only_warning.layout.shapes] == ["warning"]
    assert [t.name for t in only_warning.data] == ["precision@k"]  # no target line
    bare = charts.metric_over_time(snaps, "precision@k")
    assert len(bare.layout.shapes) == 0
    serialises(fig)


def test_drift_heatmap():
    snaps = [
        snap(0, drift=report(0.05, 0.01, pred=0.02)),
        snap(1, drift=report(0.31, 0.02, drifted=("price",), pred=0.1)),
        snap(2, drift={"PSI": 0.08}),  # the spec's short form
    ]
    fig = charts.drift_heatmap(snaps)
    heat = fig.data[0]
    assert heat.type == "heatmap"
    assert list(heat.y) == ["price", "region", "prediction", "(overall)"]
    assert len(heat.x) == 3
    z = [list(row) for row in heat.z]
    assert z[0] == [0.05, 0.31, None]
    assert z[3] == [None, None, 0.08]
    drifted = fig.data[1]
    assert drifted.name == "drifted" and list(drifted.y) == ["price"]
    serialises(fig)


def test_drift_heatmap_ks():
    ks = {
        "method": "KS",
        "threshold": 0.1,
        "features": {
            "price": {"kind": "numeric", "ks": 0.2, "p_value": 0.0, "n_ref": 5, "n_cur": 5, "drifted": True},
            "region": {"kind": "categorical", "psi": 0.01, "n_ref": 5, "n_cur": 5, "drifted": False},
        },
    }
    fig = charts.drift_heatmap([snap(0, drift=ks)], metric="ks")
    assert list(fig.data[0].y) == ["price"]
    assert "KS" in fig.layout.title.text
    auto = charts.drift_heatmap([snap(0, drift={**ks, "features": {"price": ks["features"]["price"]}})])
    assert "KS" in auto.layout.title.text


def test_freshness_chart():
    snaps = [
        snap(0, freshness={"max_age_hours": 48, "features": {"sales": {"age_hours": 3.0, "stale": False}}}),
        snap(
            1,
            freshness={
                "max_age_hours": 48,
                "features": {
                    "sales": {"age_hours": 50.0, "stale": True},
                    "stock": {"newest": (T0 + timedelta(hours=12)).isoformat()},
                },
            },
        ),
        snap(2, freshness={"last_update": (T0 + timedelta(days=2) - timedelta(hours=5)).isoformat()}),
    ]
    fig = charts.freshness_chart(snaps)
    names = [t.name for t in fig.data]
    assert names == ["sales", "stock", "data", "max age"]
    assert list(fig.data[0].y) == [3.0, 50.0]
    assert list(fig.data[1].y) == [pytest.approx(12.0)]  # captured_at - newest
    assert list(fig.data[2].y) == [pytest.approx(5.0)]
    assert list(fig.data[3].y) == [48, 48]
    serialises(fig)


def test_alert_timeline():
    events = [
        {"name": "mape_high", "severity": "critical", "fired_at": T0, "resolved_at": T0 + timedelta(hours=5)},
        {
            "name": "drift",
            "severity": "warning",
            "fired_at": (T0 + timedelta(days=1)).isoformat(),
            "resolved_at": None,
        },
        {
            "name": "mape_high",
            "severity": "critical",
            "fired_at": T0 + timedelta(days=2),
            "resolved_at": None,
        },
        "junk",
    ]
    now = T0 + timedelta(days=3)
    fig = charts.alert_timeline(events, now=now)
    assert [t.name for t in fig.data] == ["critical", "warning"]
    crit, warn = fig.data
    assert all(t.type == "bar" and t.orientation == "h" for t in fig.data)
    assert list(crit.y) == ["mape_high", "mape_high"]
    assert list(crit.x) == [5 * 3600 * 1000.0, 24 * 3600 * 1000.0]  # ongoing -> until now
    assert crit.customdata[1][1] == "ongoing"
    assert list(warn.x) == [2 * 24 * 3600 * 1000.0]
    assert fig.layout.xaxis.type == "date"
    serialises(fig)


# ---------------------------------------------------------------------------- time axes


def _axis_span(fig) -> timedelta:
    lo, hi = (charts.parse_time(v) for v in fig.layout.xaxis.range)
    return hi - lo


def test_one_point_gets_a_day_wide_axis_not_sub_second_ticks():
    fig = charts.metric_over_time([snap(0, 0.2)], "MAPE", {"target": 0.25})
    assert _axis_span(fig) == charts.SINGLE_POINT_SPAN
    lo, hi = (charts.parse_time(v) for v in fig.layout.xaxis.range)
    assert lo < T0 < hi  # the point is in view, in the middle
    assert min(fig.data[1].x) <= lo and max(fig.data[1].x) >= hi  # the target spans the axis
    fresh = charts.freshness_chart([snap(0, freshness={"features": {"sales": {"age_hours": 2.0}}})])
    assert _axis_span(fresh) == charts.SINGLE_POINT_SPAN
    alert = charts.alert_timeline([{"name": "x", "severity": "warning", "fired_at": T0}], now=T0)
    assert _axis_span(alert) >= charts.MIN_TIME_SPAN


def test_checks_seconds_apart_get_at_least_an_hour_and_long_histories_keep_plotly_s_range():
    close = [snap(0, 0.2), {**snap(0, 0.3), "captured_at": T0 + timedelta(seconds=20)}]
    fig = charts.metric_over_time(close, "MAPE")
    assert _axis_span(fig) == charts.MIN_TIME_SPAN
    lo, hi = (charts.parse_time(v) for v in fig.layout.xaxis.range)
    assert lo < T0 and hi > T0 + timedelta(seconds=20)
    spread = charts.metric_over_time([snap(0, 0.2), snap(3, 0.3)], "MAPE")
    assert spread.layout.xaxis.range is None


def test_drift_heatmap_labels_each_check_so_a_single_check_is_a_visible_column():
    single = charts.drift_heatmap([snap(0, drift=report(0.05, 0.01))])
    assert single.layout.xaxis.type == "category"
    assert list(single.data[0].x) == ["2026-01-01 00:00"]
    same_minute = [
        snap(0, drift=report(0.05, 0.01)),
        {**snap(0, drift=report(0.3, 0.01, drifted=("price",))), "captured_at": T0 + timedelta(seconds=30)},
    ]
    fig = charts.drift_heatmap(same_minute)
    assert list(fig.data[0].x) == ["2026-01-01 00:00", "2026-01-01 00:00:30"]
    assert list(fig.data[1].x) == ["2026-01-01 00:00:30"]  # the drifted mark is on its column


def test_is_empty():
    assert charts.is_empty(charts.alert_timeline([]))
    assert not charts.is_empty(charts.metric_over_time([snap(0, 0.2)], "MAPE"))
