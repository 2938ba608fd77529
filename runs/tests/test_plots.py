"""Tests of runs/plots.py (no database): chart boxes, backtest small multiples, compare labels."""

from __future__ import annotations

import json
import re

from runs import plots

FOLDS = [
    {"demand_mape": 0.21, "calibration": 1.02, "elasticity": -1.4, "revenue_lift": 0.03, "rows": 900},
    {"demand_mape": 0.24, "calibration": 0.97, "elasticity": -1.6, "revenue_lift": 0.05, "rows": 900},
    {"demand_mape": 0.19, "calibration": 1.05, "elasticity": -1.5, "revenue_lift": 0.04, "rows": 900},
]


def curve(product: str, segment: str = "core") -> dict:
    return {
        "product_id": product,
        "segment": segment,
        "price": [1.0, 2.0, 3.0],
        "units": [30.0, 20.0, 12.0],
        "margin": [5.0, 9.0, 8.0],
        "chosen_price": 2.0,
    }


def payload(html: str) -> dict:
    match = re.fullmatch(
        r'<div class="plotly-figure" data-plotly-figure><div class="plotly-graph-div"></div>'
        r'<script type="application/json">(.*)</script></div>',
        html,
        re.S,
    )
    assert match, html[:200]
    return json.loads(match.group(1))


def test_figure_html_is_a_json_box_without_inline_script():
    fig = plots.run_figures("pricing", {"demand_curve": curve("P1</script><script>alert(1)//")})[0]
    html = plots.figure_html(fig)
    assert "Plotly.newPlot" not in html and "</script><script>" not in html  # data cannot close the tag
    spec = payload(html)
    assert spec["config"] == plots.CONFIG
    assert "P1</script><script>alert(1)//" in spec["figure"]["layout"]["title"]["text"]


def test_backtest_folds_are_small_multiples_with_one_axis_per_metric():
    (fig,) = plots.run_figures("pricing", {"folds": FOLDS})
    names = [t.name for t in fig.data]
    assert names == ["demand_mape", "calibration", "elasticity", "revenue_lift", "rows"]
    axes = [t.yaxis for t in fig.data]
    assert len(set(axes)) == len(names)  # each metric on its own y-axis
    assert [fig.layout[f"yaxis{'' if i == 1 else i}"].title.text for i in range(1, 6)] == names
    assert list(fig.data[2].x) == [1, 2, 3] and list(fig.data[2].y) == [-1.4, -1.6, -1.5]
    assert fig.layout.height == plots.FOLD_CHROME_HEIGHT + plots.FOLD_PANEL_HEIGHT * len(names)
    assert {a.text for a in fig.layout.annotations} >= set(names)  # panel titles


def test_backtest_with_one_metric_is_one_panel():
    (fig,) = plots.run_figures("pricing", {"folds": [{"elasticity": -1.5}, {"elasticity": -1.7}]})
    assert [t.name for t in fig.data] == ["elasticity"]
    assert fig.layout.yaxis.title.text == "elasticity"


def test_compare_names_the_product_of_each_demand_curve():
    different = plots.compare_figures(
        "pricing",
        [("#1", {"demand_curve": curve("P0003")}), ("#2", {"demand_curve": curve("P0017", "premium")})],
    )
    (fig,) = different
    assert [t.name for t in fig.data] == ["#1: product P0003 (core)", "#2: product P0017 (premium)"]
    assert "different product per run" in fig.layout.title.text
    (same,) = plots.compare_figures(
        "pricing", [("#1", {"demand_curve": curve("P0003")}), ("#2", {"demand_curve": curve("P0003")})]
    )
    assert [t.name for t in same.data] == ["#1", "#2"]
    assert same.layout.title.text == "Demand curves — product P0003 (core)"


def test_compare_skips_runs_without_a_curve():
    (fig,) = plots.compare_figures("pricing", [("#1", {"demand_curve": curve("P1")}), ("#2", {})])
    assert [t.name for t in fig.data] == ["#1"]
    assert plots.compare_figures("pricing", [("#1", {}), ("#2", None)]) == []
