"""A model's health from its latest snapshot (monitoring.health: pure, no database)."""

from types import SimpleNamespace

from monitoring.health import firing_rules, snapshot_health


def _snapshot(alerts=None, performance=None):
    # Any object with the two fields will do: health.py is pure.
    return SimpleNamespace(alerts_json=alerts or {}, performance_metrics_json=performance or {})


PRICING_MANIFEST = {
    "evaluation": {
        "metrics": {"demand_mape": {"target": 0.25, "threshold_warning": 0.3, "threshold_critical": 0.4}}
    }
}


def test_health_from_alerts_and_metric_checks():
    assert snapshot_health(None, {}, "pricing")["status"] == "unknown"
    assert (
        snapshot_health(_snapshot(performance={"demand_mape": 0.2}), PRICING_MANIFEST, "pricing")["status"]
        == "ok"
    )
    warning = snapshot_health(_snapshot(performance={"demand_mape": 0.35}), PRICING_MANIFEST, "pricing")
    assert warning["status"] == "warning" and "demand_mape" in warning["reasons"][0]
    critical = snapshot_health(
        _snapshot(
            alerts={"margin_loss": {"firing": True, "severity": "critical"}, "x": {"firing": None}},
            performance={"demand_mape": 0.35},
        ),
        PRICING_MANIFEST,
        "pricing",
    )
    assert critical["status"] == "critical"
    assert any("margin_loss" in r for r in critical["reasons"])
    external = snapshot_health(
        _snapshot(alerts={"external": {"pager": {"severity": "warning"}}}), {}, "pricing"
    )
    assert external["status"] == "warning"


def test_firing_rules_are_the_rules_whose_condition_is_true():
    alerts = {
        "margin_loss": {"firing": True, "severity": "critical"},
        "no_severity": {"firing": True},
        "quiet": {"firing": False, "severity": "critical"},
        "unknown": {"firing": None},
        "external": {"pager": {"severity": "critical"}},
    }
    assert firing_rules(alerts) == [("margin_loss", "critical"), ("no_severity", "warning")]
    assert firing_rules(None) == [] and firing_rules({}) == []
