"""The Why tab's chart builders (models_registry/explain_charts.py, pure): each view of the
explanations document becomes the figures it should, with captions; missing or malformed parts
give no chart rather than an error. ``document(family)`` builds a document of the contract's
shape (runs/explain), also used by the page tests."""

from __future__ import annotations

import ast
import copy
import math
from pathlib import Path

import plotly.graph_objects as go
import pytest

from models_registry import explain_charts as ec

FAMILIES = ["pricing", "next_best_action", "location_scoring", "forecasting"]
FEATURES = {
    "pricing": ["price", "promo", "regular_price", "unit_cost", "segment"],
    "next_best_action": ["tenure_months", "monthly_spend", "channel", "age", "region"],
    "location_scoring": ["population", "footfall", "competitors", "income", "parking"],
    "forecasting": ["price", "promo", "holiday", "temperature"],
}


def _family_view(family: str, features: list[str]) -> dict:
    if family == "pricing":
        prices = [2.0 + 0.25 * i for i in range(9)]
        segments = []
        for name, elasticity in (("grocery", -1.4), ("premium", -0.8)):
            units = [40.0 * (p / 3.0) ** elasticity for p in prices]
            segments.append(
                {
                    "segment": name,
                    "elasticity": elasticity,
                    "ci_low": elasticity - 0.2,
                    "ci_high": elasticity + 0.2,
                    "price": prices,
                    "units": units,
                    "units_low": [u * 0.9 for u in units],
                    "units_high": [u * 1.1 for u in units],
                }
            )
        multipliers = [0.8 + 0.05 * i for i in range(9)]
        return {
            "kind": "pricing",
            "segments": segments,
            "revenue_curve": {
                "multiplier": multipliers,
                "revenue": [1000 * m ** (1 - 1.2) for m in multipliers],
                "margin": [300 + 200 * m - 150 * m * m for m in multipliers],
                "recommended_multiplier": 0.95,
            },
            "elasticity_drivers": [
                {"feature": "segment", "effect": -0.6},
                {"feature": "promo", "effect": 0.2},
            ],
        }
    if family == "next_best_action":
        fraction = [i / 10 for i in range(11)]
        return {
            "kind": "next_best_action",
            "uplift_by_segment": [
                {"segment": "young", "predicted_uplift": 0.08, "observed_uplift": 0.07, "n": 400},
                {"segment": "senior", "predicted_uplift": 0.02, "observed_uplift": 0.03, "n": 300},
            ],
            "qini": {
                "fraction": fraction,
                "model": [math.sqrt(f) * 50 for f in fraction],
                "random": [f * 50 for f in fraction],
            },
            "choice_drivers": [{"feature": f, "mean_abs": 0.1 / (i + 1)} for i, f in enumerate(features)],
        }
    if family == "location_scoring":
        sites = [
            {
                "site_id": f"S{i:03d}",
                "output": 100.0 + 10 * i,
                "contributions": {
                    "population": 6.0 + i,
                    "footfall": 3.0,
                    "competitors": -2.0 + i,
                    "income": 1.0,
                    "parking": 0.0,
                },
            }
            for i in range(5)
        ]
        return {
            "kind": "location_scoring",
            "average_output": 92.0,
            "sites": sites,
            "comparables": {"S000": ["S001", "S002"], "S003": ["S004"]},
        }
    return {
        "kind": "forecasting",
        "components": None,
        "regressors": [{"feature": f, "mean_abs": 2.0 / (i + 1)} for i, f in enumerate(features)],
        "note": "This forecaster has no exact trend/seasonality decomposition: regressors are explained by their attributions.",
    }


def document(family: str = "pricing") -> dict:
    """An explanations document of the contract's shape for ``family``, its numbers made up
    for the charts (not a model's)."""
    features = FEATURES[family]
    n = len(features)
    grid = [float(i) for i in range(5)]
    return {
        "version": 1,
        "family": family,
        "model_algorithm": "lightgbm",
        "method": "tree_shap",
        "method_note": "TreeSHAP from LightGBM's pred_contrib: exact Shapley values of the tree ensemble.",
        "scale": "prediction",
        "output_label": "predicted units",
        "base_value": 12.5,
        "sample_rows": 500,
        "background_rows": 0,
        "seed": 0,
        "global": [
            {"feature": f, "importance": 1.0 / (i + 1), "ci_low": 0.8 / (i + 1), "ci_high": 1.2 / (i + 1)}
            for i, f in enumerate(features)
        ],
        "permutation": {"metric": "demand_mape", "direction": "lower", "baseline": 0.21, "repeats": 5},
        "attribution": {
            "mean_abs": [
                {
                    "feature": f,
                    "mean_abs": 3.0 / (i + 1),
                    "share": (1.0 / (i + 1)) / sum(1 / (j + 1) for j in range(n)),
                }
                for i, f in enumerate(features)
            ]
        },
        "dependence": {
            "features": [
                {
                    "feature": features[0],
                    "kind": "numeric",
                    "grid": grid,
                    "pd": [10 - g for g in grid],
                    "ice": [[10 - g + k for g in grid] for k in range(3)],
                },
                {
                    "feature": features[-1],
                    "kind": "categorical",
                    "grid": ["a", "b", "c"],
                    "pd": [1.0, 2.0, 1.5],
                    "ice": [[1.0, 2.0, 1.5]],
                },
            ],
            "interaction": {
                "features": [features[0], features[1]],
                "grid_a": grid,
                "grid_b": [0.0, 1.0],
                "pd": [[g, g + 1] for g in grid],
            },
        },
        "family_view": _family_view(family, features),
        "methods": ["shap", "permutation", "dependence"],
        "notes": ["Permutation importance is measured on the held-out sample."],
    }


def _keys(charts) -> list[str]:
    return [c.key for c in charts]


def test_the_module_is_pure():
    tree = ast.parse(Path(ec.__file__).read_text())
    modules = [n.module or "" for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)]
    modules += [a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names]
    assert not [m for m in modules if m.split(".")[0] in ("django", "rest_framework")]


def test_importance_bars_carry_the_interval_in_order():
    charts = ec.importance_charts(document())
    assert _keys(charts) == ["importance", "shares"]
    bar = charts[0].figure.data[0]
    # Horizontal bars drawn bottom-up: the most important feature is the last (top) bar.
    assert list(bar.y)[-1] == "price" and list(bar.x)[-1] == pytest.approx(1.0)
    assert list(bar.error_x.array)[-1] == pytest.approx(0.2)
    assert list(bar.error_x.arrayminus)[-1] == pytest.approx(0.2)
    assert "demand_mape" in charts[0].caption and "5 shuffles" in charts[0].caption
    shares = charts[1].figure.data[0]
    assert sum(shares.x) == pytest.approx(1.0)
    assert "TreeSHAP (exact)" in charts[1].figure.layout.title.text


def test_a_method_not_run_gives_no_chart():
    doc = document()
    doc["global"] = None
    doc["dependence"] = None
    assert _keys(ec.importance_charts(doc)) == ["shares"]
    assert ec.dependence_charts(doc) == []


def test_dependence_draws_pd_over_ice_and_the_interaction_heatmap():
    charts = ec.dependence_charts(document())
    assert _keys(charts) == ["pd-price", "pd-segment", "interaction"]
    numeric = charts[0].figure
    assert [t.name for t in numeric.data] == ["single rows (ICE)"] * 3 + ["average (partial dependence)"]
    assert list(numeric.data[-1].y) == [10, 9, 8, 7, 6]
    assert charts[1].figure.layout.xaxis.type == "category"
    heat = charts[2].figure.data[0]
    assert isinstance(heat, go.Heatmap)
    assert len(heat.z) == 5 and len(heat.z[0]) == 2  # rows along the first feature


def test_a_transposed_or_ragged_interaction_is_read_or_dropped():
    doc = document()
    inter = doc["dependence"]["interaction"]
    inter["pd"] = [list(col) for col in zip(*inter["pd"], strict=True)]  # 2 × 5
    heat = ec.dependence_charts(doc)[-1].figure.data[0]
    assert len(heat.z) == 5 and list(heat.z[4]) == [4.0, 5.0]
    inter["pd"] = [[1.0], [2.0, 3.0]]
    assert "interaction" not in _keys(ec.dependence_charts(doc))


@pytest.mark.parametrize(
    "family, keys",
    [
        ("pricing", ["pricing-demand", "pricing-revenue", "pricing-drivers"]),
        ("next_best_action", ["nba-uplift", "nba-qini", "nba-drivers"]),
        ("location_scoring", ["location-waterfall"]),
        ("forecasting", ["forecast-regressors"]),
    ],
)
def test_family_views(family, keys):
    charts = ec.family_charts(document(family))
    assert _keys(charts) == keys
    assert all(c.caption and c.figure.data for c in charts)


def test_pricing_view_marks_the_recommended_price_and_draws_bands():
    charts = {c.key: c for c in ec.family_charts(document("pricing"))}
    demand = charts["pricing-demand"].figure
    names = [t.name for t in demand.data if t.showlegend is not False]
    assert names == ["grocery (ε -1.40 [-1.60, -1.20])", "premium (ε -0.80 [-1.00, -0.60])"]
    assert sum(1 for t in demand.data if t.fill == "toself") == 2
    revenue = charts["pricing-revenue"].figure
    assert [s.x0 for s in revenue.layout.shapes] == [0.95]


def test_nba_qini_has_the_model_and_random():
    qini = {c.key: c for c in ec.family_charts(document("next_best_action"))}["nba-qini"].figure
    assert [t.name for t in qini.data] == ["model", "random"]
    assert qini.data[1].line.dash == "dash"


def test_location_waterfall_runs_from_the_average_site_to_the_picked_one():
    doc = document("location_scoring")
    assert ec.location_sites(doc) == ["S000", "S001", "S002", "S003", "S004"]
    fall = ec.family_charts(doc, site="S003")[0].figure.data[0]
    assert list(fall.x)[0] == "average site" and list(fall.x)[-1] == "site S003"
    assert list(fall.y)[0] == 92.0
    # 92 + (9 + 3 + 1 + 1 + 0) = 106 vs the site's 130: the gap is shown, not hidden.
    assert "not explained" in list(fall.x)
    picked = ec.location_site(doc, "S003")
    assert picked["comparables"] == [{"site_id": "S004", "output": 140.0}]
    # An unknown site falls back to the first one.
    assert ec.location_site(doc, "nope")["site_id"] == "S000"


def test_forecasting_components_are_drawn_when_present():
    doc = document("forecasting")
    doc["family_view"]["components"] = {
        "date": ["2026-01-05", "2026-01-12"],
        "trend": [10.0, 11.0],
        "seasonality": [1.0, -1.0],
    }
    charts = ec.family_charts(doc)
    assert _keys(charts) == ["forecast-components", "forecast-regressors"]
    assert [t.name for t in charts[0].figure.data] == ["trend", "seasonality"]


def test_forecasting_series_decomposition_follows_the_picked_series():
    doc = document("forecasting")
    assert ec.forecast_series(doc) == [] and _keys(ec.family_charts(doc)) == ["forecast-regressors"]
    dates = ["2026-01-05", "2026-01-06"]
    doc["family_view"]["decomposition"] = {
        "method": "shapley_groups",
        "base_value": 10.0,
        "series": [
            {
                "series": "big",
                "date": dates,
                "forecast": [13.0, 9.0],
                "trend": [2.0, -2.0],
                "seasonality": [1.0, 1.0],
                "holidays": [0.0, 0.0],
                "regressors": [0.0, 0.0],
            },
            {
                "series": "small",
                "date": dates,
                "forecast": [4.0, 5.0],
                "trend": [-6.0, -5.0],
                "seasonality": [0.0, 0.0],
                "holidays": [0.0, 0.0],
                "regressors": [0.0, 0.0],
            },
            {"series": None, "date": dates},  # malformed: skipped, not an error
        ],
    }
    assert ec.forecast_series(doc) == ["big", "small"]
    for picked, title, parts in (
        (None, "Series big", ["trend", "seasonality", "forecast"]),  # none picked: the first
        ("small", "Series small", ["trend", "forecast"]),  # an all-zero part is left out
        ("nope", "Series big", ["trend", "seasonality", "forecast"]),  # unknown: the first
    ):
        chart = ec.family_charts(doc, series=picked)[0]
        assert chart.key == "forecast-series-decomposition"
        assert chart.figure.layout.title.text.startswith(title)
        assert [t.name for t in chart.figure.data] == parts
        assert "base value (dotted)" in chart.caption
    # the forecast's interval, when the document has one, is a shaded band named by its level
    doc["family_view"]["decomposition"].update(interval_level=0.8)
    doc["family_view"]["decomposition"]["series"][0].update(lower=[11.0, 7.0], upper=[15.0, 11.0])
    chart = ec.family_charts(doc)[0]
    assert [t.name for t in chart.figure.data] == ["trend", "seasonality", None, "80% interval", "forecast"]
    assert list(chart.figure.data[3].y) == [11.0, 7.0] and list(chart.figure.data[2].y) == [15.0, 11.0]
    assert "interval (shaded)" in chart.caption
    # Prophet's components: no base value line, and the caption says they add up to its forecast
    doc["family_view"]["decomposition"].update(method="prophet_components", base_value=0.0)
    chart = ec.family_charts(doc)[0]
    assert "Prophet" in chart.caption and not chart.figure.layout.shapes
    doc["family_view"]["decomposition"]["series"] = []
    assert ec.forecast_series(doc) == [] and _keys(ec.family_charts(doc)) == ["forecast-regressors"]


def test_waterfall_adds_up_and_folds_the_tail():
    contributions = {f"f{i}": float(i - 6) for i in range(14)}
    output = 5.0 + sum(contributions.values())
    fig = ec.waterfall("t", 5.0, contributions, output, top=4)
    trace = fig.data[0]
    labels = list(trace.x)
    assert labels[0] == "base value" and labels[-1] == "prediction"
    assert labels[1:5] == ["f13", "f0", "f12", "f1"]  # largest |contribution| first
    assert labels[5] == "10 other features"
    assert "not explained" not in labels  # exact: base + contributions == output
    assert sum(trace.y[:-1]) == pytest.approx(output)
    assert ec.waterfall("t", None, contributions, output) is None
    assert ec.waterfall("t", 1.0, {}, 1.0) is None


def test_prediction_charts_for_a_pricing_row():
    item = {
        "method": "tree_shap",
        "scale": "prediction",
        "output": 9.5,
        "base_value": 12.5,
        "contributions": {"price": -4.0, "promo": 1.0},
        "reasons": ["price 12% above regular: −4.0 units"],
        "elasticity": -1.3,
        "demand_curve": {"price": [2.0, 2.5, 3.0], "units": [14.0, 11.0, 9.0]},
    }
    charts = ec.prediction_charts(item, document("pricing"))
    assert _keys(charts) == ["prediction-waterfall", "prediction-demand"]
    assert "predicted units 9.5" in charts[0].figure.layout.title.text
    assert "elasticity -1.30" in charts[1].figure.layout.title.text
    item.pop("demand_curve")
    assert _keys(ec.prediction_charts(item)) == ["prediction-waterfall"]


def test_comparison_groups_two_models_and_skips_one_without_explanations():
    other = copy.deepcopy(document())
    other["method"] = "exact_shapley"
    other["global"] = list(reversed(other["global"]))
    charts = ec.comparison_charts([("A", document()), ("B", other), ("C", None)])
    assert _keys(charts) == ["compare-global", "compare-attribution"]
    bars = charts[0].figure.data
    assert [b.name for b in bars] == ["A", "B"]
    assert list(bars[0].y) == list(bars[1].y)  # one axis of features for both
    assert [b.name for b in charts[1].figure.data] == ["A (TreeSHAP (exact))", "B (exact Shapley values)"]
    assert ec.comparison_charts([("A", None)]) == []


@pytest.mark.parametrize(
    "garbage",
    [
        None,
        {},
        {"global": "x", "dependence": [1], "family_view": 3},
        {"family_view": {"kind": "pricing", "segments": [{"price": "x"}]}},
    ],
)
def test_malformed_documents_give_no_chart(garbage):
    assert ec.why_charts(garbage) == {"importance": [], "dependence": [], "family": []}


@pytest.mark.parametrize("family", FAMILIES)
def test_every_figure_serialises(family):
    for charts in ec.why_charts(document(family)).values():
        for chart in charts:
            assert chart.figure.to_json()


def test_waterfall_zooms_on_a_running_total_far_from_zero():
    near = ec.waterfall("t", 100.0, {"a": 2.0, "b": -1.0}, 101.0).layout.yaxis.range
    assert near is not None and 99 < near[0] < 100 and 102 < near[1] < 103
    assert ec.waterfall("t", 0.5, {"a": 2.0, "b": -1.0}, 1.5).layout.yaxis.range is None
