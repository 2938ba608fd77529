"""Tests of monitoring/rules.py: a snapshot's names and the alerts that fire (no Django).
The condition language itself is tested in recipes/tests/test_alert_rules.py."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from monitoring import rules

ALERTS = {
    "mape_high": {"condition": "MAPE > 0.15", "severity": "critical"},
    "drift": {"condition": "drift.max_psi > 0.2 or drift.price.drifted", "severity": "warning"},
    "stale": {"condition": "freshness.max_age_hours > 48", "severity": "warning"},
}


# ---------------------------------------------------------------------------- snapshots


DRIFT_REPORT = {
    "method": "PSI",
    "threshold": 0.2,
    "features": {
        "price": {"kind": "numeric", "psi": 0.31, "n_ref": 100, "n_cur": 50, "drifted": True},
        "promo": {"kind": "categorical", "psi": 0.01, "n_ref": 100, "n_cur": 50, "drifted": False},
        "gone": {
            "kind": "numeric",
            "psi": None,
            "n_ref": 100,
            "n_cur": 0,
            "drifted": False,
            "error": "missing column",
        },
    },
    "prediction": {"kind": "numeric", "psi": 0.05, "n_ref": 100, "n_cur": 50, "drifted": False},
    "max_psi": 0.31,
    "max_ks": None,
    "drifted_features": ["price"],
    "drifted_count": 1,
}


def test_snapshot_context_mapping():
    ctx = rules.snapshot_context(
        {"MAPE": 0.14, "RMSE": 3, "note": "x", "bad": float("nan"), "obj": {"value": 0.5}},
        DRIFT_REPORT,
        {
            "max_age_hours": 48,
            "features": {
                "sales": {"newest": "2026-01-01T00:00:00Z", "age_hours": 3.2, "stale": False},
                "stock": {"newest": "2025-12-20T00:00:00Z", "age_hours": 60.0, "stale": True},
            },
        },
    )
    assert ctx == {
        "MAPE": 0.14,
        "RMSE": 3.0,
        "obj": 0.5,
        "drift.price.psi": 0.31,
        "drift.price.drifted": True,
        "drift.promo.psi": 0.01,
        "drift.promo.drifted": False,
        "drift.gone.drifted": False,
        "drift.prediction.psi": 0.05,
        "drift.prediction.drifted": False,
        "drift.max_psi": 0.31,
        "drift.drifted_count": 1.0,
        "freshness.sales.age_hours": 3.2,
        "freshness.sales.stale": False,
        "freshness.stock.age_hours": 60.0,
        "freshness.stock.stale": True,
        "freshness.max_age_hours": 60.0,
    }
    assert all(type(v) in (float, bool) for v in ctx.values())


def test_snapshot_context_ks_report_and_spec_short_forms():
    ks = {
        "method": "KS",
        "features": {"price": {"kind": "numeric", "ks": 0.12, "p_value": 1e-9, "drifted": True}},
        "max_psi": None,
        "max_ks": 0.12,
        "drifted_count": 1,
    }
    ctx = rules.snapshot_context(None, ks, None)
    assert ctx["drift.price.ks"] == 0.12 and ctx["drift.price.p_value"] == 1e-9
    assert ctx["drift.max_ks"] == 0.12 and "drift.max_psi" not in ctx
    # the spec's examples: {"PSI": 0.08} and {"last_update": iso}
    now = datetime(2024, 1, 15, 16, 0, tzinfo=UTC)
    ctx = rules.snapshot_context(
        {"MAPE": 0.15}, {"PSI": 0.08}, {"last_update": "2024-01-15T10:00:00Z"}, now=now
    )
    assert ctx == {"MAPE": 0.15, "drift.max_psi": 0.08, "freshness.max_age_hours": 6.0}
    # ages and stale flags computed from "newest" when a clock is given
    ctx = rules.snapshot_context(
        None,
        None,
        {"max_age_hours": 4, "features": {"sales": {"newest": "2024-01-15T10:00:00+00:00"}}},
        now=now,
    )
    assert ctx == {
        "freshness.sales.age_hours": 6.0,
        "freshness.sales.stale": True,
        "freshness.max_age_hours": 6.0,
    }
    assert rules.snapshot_context(None, None, None) == {}
    assert rules.snapshot_context("x", ["y"], 3) == {}


def test_evaluate_alerts():
    ctx = rules.snapshot_context({"MAPE": 0.2}, DRIFT_REPORT, {"features": {"sales": {"age_hours": 3}}})
    alerts = dict(ALERTS)
    alerts["unknown"] = {"condition": "RMSE > 10", "severity": "warning"}
    alerts["broken"] = {"condition": "MAPE >>", "severity": "critical"}
    alerts["misused"] = {"condition": "MAPE", "severity": "critical"}
    alerts["junk"] = None
    result = rules.evaluate_alerts(alerts, ctx)
    assert result["mape_high"] == {
        "firing": True,
        "severity": "critical",
        "condition": "MAPE > 0.15",
        "values": {"MAPE": 0.2},
    }
    assert result["drift"]["firing"] is True
    assert result["drift"]["values"] == {"drift.max_psi": 0.31, "drift.price.drifted": True}
    assert result["stale"]["firing"] is False
    assert result["unknown"]["firing"] is None and result["unknown"]["values"] == {"RMSE": None}
    assert result["broken"]["firing"] is None and "column" in result["broken"]["error"]
    assert result["misused"]["firing"] is None and "error" in result["misused"]
    assert result["junk"]["firing"] is None and "error" in result["junk"]
    json.dumps(result, allow_nan=False)
    assert rules.evaluate_alerts(None, ctx) == {}
