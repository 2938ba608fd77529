"""Plotly figures of a run's family plot data (``Run.plots_json``) for the run and compare pages.

Plain Python (plotly only, no Django import). The data shapes are the ones each family's
``evaluate()`` returns (see the module docstrings in ``runs/families/``):

* forecasting — ``total``/``series`` lines ``{date, actual, forecast, lower, upper}`` and the
  ``candidates`` the auto-selection scored;
* pricing — ``demand_curve`` (price grid, units, revenue, margin, current and chosen price,
  bounds) and ``segment_elasticity`` (estimates with confidence intervals);
* next_best_action — ``qini_curve`` and ``uplift_by_decile`` (``{type, title, x_label,
  y_label, x, series}``);
* location_scoring — ``rank_scatter`` ``{x, y, x_label, y_label}`` and ``decile_lift``;
* backtest runs — ``folds``: one metrics dict per fold;
* any run's metric history (``curve_figures``, ``compare_curve_figures``): training curves,
  fold metrics, what an MLflow script logged step by step.

Unknown or malformed data gives no figure rather than an error: the page then simply
shows fewer charts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import plotly.graph_objects as go
from plotly.subplots import make_subplots

from . import history

PALETTE = ["#2563eb", "#db2777", "#16a34a", "#ea580c", "#7c3aed", "#0891b2", "#ca8a04", "#4b5563"]
_LAYOUT = {
    "template": "plotly_white",
    "height": 340,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
    "legend": {"orientation": "h", "y": -0.3},
}
CONFIG = {"responsive": True, "displaylogo": False}
FOLD_PANEL_HEIGHT = 150
FOLD_CHROME_HEIGHT = 120  # title, top margin and the fold axis below the last panel


# What json_script escapes: the JSON can then sit inside <script> whatever its strings hold.
_JSON_SCRIPT_ESCAPES = {ord(">"): "\\u003E", ord("<"): "\\u003C", ord("&"): "\\u0026"}


def figure_html(fig: go.Figure) -> str:
    """The figure as a chart box: an empty plot <div> and the figure as JSON in a
    non-executed ``<script type="application/json">``. static/js/charts.js draws every box
    (loading plotly.js first, only on pages that have one); there is no inline script, so
    the page works under a Content-Security-Policy without 'unsafe-inline'."""
    payload = '{"figure": ' + fig.to_json() + ', "config": ' + json.dumps(CONFIG) + "}"
    return (
        '<div class="plotly-figure" data-plotly-figure>'
        '<div class="plotly-graph-div"></div>'
        f'<script type="application/json">{payload.translate(_JSON_SCRIPT_ESCAPES)}</script>'
        "</div>"
    )


def _map(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list:
    return value if isinstance(value, list) else []


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _figure(title: str, x_label: str = "", y_label: str = "") -> go.Figure:
    fig = go.Figure()
    fig.update_layout(**_LAYOUT, title={"text": title})
    if x_label:
        fig.update_xaxes(title={"text": x_label})
    if y_label:
        fig.update_yaxes(title={"text": y_label})
    return fig


# ----------------------------------------------------------------------------- forecasting


def _forecast_line(fig: go.Figure, line: Mapping, *, name: str, color: str, band: bool, actual: bool) -> bool:
    dates = _list(line.get("date"))
    if not dates:
        return False
    if band and _list(line.get("upper")) and _list(line.get("lower")):
        fig.add_trace(
            go.Scatter(
                x=dates, y=line["upper"], mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip"
            )
        )
        fig.add_trace(
            go.Scatter(
                x=dates,
                y=line["lower"],
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(37, 99, 235, 0.15)",
                name="interval",
                hoverinfo="skip",
            )
        )
    if actual and _list(line.get("actual")):
        fig.add_trace(
            go.Scatter(x=dates, y=line["actual"], mode="lines", name="actual", line={"color": "#111827"})
        )
    if _list(line.get("forecast")):
        fig.add_trace(go.Scatter(x=dates, y=line["forecast"], mode="lines", name=name, line={"color": color}))
    return True


def _forecasting(plots: Mapping) -> list[go.Figure]:
    figures = []
    total = _map(plots.get("total"))
    if total:
        fig = _figure("Forecast vs actual (all series)", "date", "units")
        if _forecast_line(fig, total, name="forecast", color=PALETTE[0], band=True, actual=True):
            figures.append(fig)
    for series in _list(plots.get("series"))[:1]:
        series = _map(series)
        fig = _figure(f"Forecast vs actual — series {series.get('series_id', '')}", "date", "units")
        if _forecast_line(fig, series, name="forecast", color=PALETTE[0], band=True, actual=True):
            figures.append(fig)
    candidates = [_map(c) for c in _list(plots.get("candidates"))]
    scored = [c for c in candidates if _num(c.get("validation_mape")) is not None]
    if scored:
        fig = _figure("Candidate algorithms (validation MAPE, lower is better)", "", "MAPE")
        fig.add_trace(
            go.Bar(
                x=[str(c.get("name")) for c in scored],
                y=[c["validation_mape"] for c in scored],
                marker={"color": [PALETTE[2] if c.get("selected") else "#9ca3af" for c in scored]},
                name="validation MAPE",
            )
        )
        figures.append(fig)
    return figures


# ----------------------------------------------------------------------------- pricing


def _pricing(plots: Mapping) -> list[go.Figure]:
    figures = []
    curve = _map(plots.get("demand_curve"))
    prices = _list(curve.get("price"))
    if prices:
        fig = _figure(
            f"Demand curve — product {curve.get('product_id', '')} ({curve.get('segment', '')})",
            "price",
            "units per store-week",
        )
        bounds = _list(curve.get("bounds"))
        if len(bounds) == 2 and all(_num(b) is not None for b in bounds):
            fig.add_vrect(
                x0=bounds[0], x1=bounds[1], fillcolor="#2563eb", opacity=0.07, line_width=0, layer="below"
            )
        fig.add_trace(
            go.Scatter(
                x=prices, y=_list(curve.get("units")), mode="lines", name="units", line={"color": PALETTE[0]}
            )
        )
        objective = str(curve.get("objective") or "margin")
        if _list(curve.get(objective)):
            fig.add_trace(
                go.Scatter(
                    x=prices,
                    y=curve[objective],
                    mode="lines",
                    name=objective,
                    yaxis="y2",
                    line={"color": PALETTE[3], "dash": "dot"},
                )
            )
            fig.update_layout(
                yaxis2={"title": {"text": objective}, "overlaying": "y", "side": "right", "showgrid": False}
            )
        for key, label, color, side in (
            ("current_price", "current", "#6b7280", "top left"),
            ("chosen_price", "chosen", PALETTE[2], "top right"),
        ):
            value = _num(curve.get(key))
            if value is not None:
                fig.add_vline(
                    x=value,
                    line={"color": color, "dash": "dash"},
                    annotation_text=label,
                    annotation_position=side,
                )
        figures.append(fig)
    seg = _map(plots.get("segment_elasticity"))
    names = _list(seg.get("segment"))
    estimates = _list(seg.get("estimate"))
    if names and len(estimates) == len(names):
        lows, highs = _list(seg.get("ci_low")), _list(seg.get("ci_high"))
        error = None
        if len(lows) == len(names) and len(highs) == len(names):
            error = {
                "type": "data",
                "symmetric": False,
                "array": [(h or 0) - (e or 0) for h, e in zip(highs, estimates, strict=True)],
                "arrayminus": [(e or 0) - (lo or 0) for lo, e in zip(lows, estimates, strict=True)],
            }
        fig = _figure("Own-price elasticity by segment (with confidence interval)", "segment", "elasticity")
        fig.add_trace(
            go.Bar(x=names, y=estimates, error_y=error, marker={"color": PALETTE[0]}, name="elasticity")
        )
        figures.append(fig)
    return figures


def _product(curve: Mapping) -> str:
    """ "product P0003 (premium)" — which product (and segment) a demand curve is of."""
    text = f"product {curve.get('product_id') or '?'}"
    return f"{text} ({curve['segment']})" if curve.get("segment") else text


# ----------------------------------------------------------------------------- NBA and generic charts


def _generic(chart: Mapping, *, key: str) -> go.Figure | None:
    x = _list(chart.get("x"))
    series = _map(chart.get("series"))
    if not x or not series:
        return None
    fig = _figure(
        str(chart.get("title") or key), str(chart.get("x_label") or ""), str(chart.get("y_label") or "")
    )
    bar = chart.get("type") == "bar"
    for i, (name, values) in enumerate(series.items()):
        values = _list(values)
        color = "#9ca3af" if name == "random" else PALETTE[i % len(PALETTE)]
        if bar and name != "random":
            fig.add_trace(go.Bar(x=x, y=values, name=str(name), marker={"color": color}))
        else:
            dash = "dash" if name == "random" else None
            fig.add_trace(
                go.Scatter(x=x, y=values, mode="lines", name=str(name), line={"color": color, "dash": dash})
            )
    if bar:
        fig.update_layout(barmode="group")
    return fig


def _nba(plots: Mapping) -> list[go.Figure]:
    return [f for key in ("qini_curve", "uplift_by_decile") if (f := _generic(_map(plots.get(key)), key=key))]


# ----------------------------------------------------------------------------- location scoring


def _location(plots: Mapping) -> list[go.Figure]:
    figures = []
    scatter = _map(plots.get("rank_scatter"))
    if _list(scatter.get("x")):
        fig = _figure(
            "Predicted vs actual rank of test sites",
            str(scatter.get("x_label") or "predicted percentile rank"),
            str(scatter.get("y_label") or "actual percentile rank"),
        )
        fig.add_trace(
            go.Scatter(
                x=scatter["x"],
                y=_list(scatter.get("y")),
                mode="markers",
                name="sites",
                marker={"size": 5, "opacity": 0.6, "color": PALETTE[0]},
            )
        )
        fig.add_trace(
            go.Scatter(
                x=[0, 1],
                y=[0, 1],
                mode="lines",
                name="perfect ranking",
                line={"color": "#9ca3af", "dash": "dash"},
            )
        )
        figures.append(fig)
    lift = _map(plots.get("decile_lift"))
    if _list(lift.get("lift")):
        fig = _figure(
            "Lift by predicted decile", str(lift.get("x_label") or "predicted decile (1 = top 10%)"), "lift"
        )
        fig.add_trace(
            go.Bar(x=_list(lift.get("decile")), y=lift["lift"], name="lift", marker={"color": PALETTE[0]})
        )
        fig.add_hline(y=1.0, line={"color": "#9ca3af", "dash": "dash"})
        figures.append(fig)
    return figures


# ----------------------------------------------------------------------------- backtest


def _folds(folds: list) -> list[go.Figure]:
    """Small multiples: one panel per metric, each with its own y-axis (MAPE near 0.2 and
    an elasticity near -1.5 on one axis would leave all but one line flat)."""
    folds = [_map(f) for f in folds]
    names = list(dict.fromkeys(k for f in folds for k, v in f.items() if _num(v) is not None))
    if not names:
        return []
    x = list(range(1, len(folds) + 1))
    fig = make_subplots(
        rows=len(names), cols=1, shared_xaxes=True, subplot_titles=names, vertical_spacing=0.28 / len(names)
    )
    fig.update_layout(
        **{
            **_LAYOUT,
            "height": FOLD_CHROME_HEIGHT + FOLD_PANEL_HEIGHT * len(names),
            # Room for the title above the first panel's own title.
            "margin": {**_LAYOUT["margin"], "t": 90},
        },
        title={"text": "Backtest: metrics by fold"},
        showlegend=False,
    )
    for i, name in enumerate(names, start=1):
        fig.add_trace(
            go.Scatter(
                x=x,
                y=[_num(f.get(name)) for f in folds],
                mode="lines+markers",
                name=name,
                line={"color": PALETTE[(i - 1) % len(PALETTE)]},
                hovertemplate="fold %{x}<br>" + name + " = %{y:.4g}<extra></extra>",
            ),
            row=i,
            col=1,
        )
        fig.update_yaxes(title={"text": name}, row=i, col=1)
    fig.update_xaxes(dtick=1)
    fig.update_xaxes(title={"text": "fold"}, row=len(names), col=1)
    return [fig]


# ----------------------------------------------------------------------------- metric history
# Series are {key: [(step, value), ...]} in step order, already downsampled for a plot
# (runs.history.downsample); value None is a gap (NaN or ±inf).

MAX_CURVE_CHARTS = 12  # charts per page at most; every key's full history is a download
MARKERS_UP_TO = 30  # points per line drawn with markers (folds, short curves)


def _axis_name(keys: list[str]) -> str:
    if all(k.startswith("fold.") for k in keys):
        return "fold"
    if all(k.startswith(("train.", "valid.")) for k in keys):
        return "boosting iteration"
    return "step"


def _line(fig: go.Figure, points: list, *, name: str, color: str, dash: str | None = None) -> None:
    fig.add_trace(
        go.Scatter(
            x=[p[0] for p in points],
            y=[p[1] for p in points],
            mode="lines+markers" if len(points) <= MARKERS_UP_TO else "lines",
            name=name,
            line={"color": color, **({"dash": dash} if dash else {})},
            connectgaps=False,
            hovertemplate="step %{x}<br>" + name + " = %{y:.5g}<extra></extra>",
        )
    )


def curve_figures(series: Mapping[str, list]) -> list[go.Figure]:
    """A run's metric histories: one chart per group of keys (runs.history.curve_groups: a
    loss on the training and on the validation data together), one line per key; keys with
    fewer than two points (a final metric) are not curves. At most MAX_CURVE_CHARTS."""
    keys = [k for k, points in series.items() if len(_list(points)) >= 2]
    figures = []
    for group, members in list(history.curve_groups(keys).items())[:MAX_CURVE_CHARTS]:
        title = (
            group
            if members == [group]
            else f"{group} on " + " and ".join(k.split(".", 1)[0] for k in members)
        )
        fig = _figure(title, _axis_name(members), group.rsplit(".", 1)[-1])
        for i, key in enumerate(members):
            _line(fig, series[key], name=key, color=PALETTE[i % len(PALETTE)])
        figures.append(fig)
    return figures


def compare_curve_figures(runs: list[tuple[str, Mapping[str, list]]]) -> list[go.Figure]:
    """The same key's history of each compared run on one chart (a line per run, its colour
    the same on every chart), for every key that is a curve (two or more points) in any of
    them. At most MAX_CURVE_CHARTS."""
    colors = {label: PALETTE[i % len(PALETTE)] for i, (label, _) in enumerate(runs)}
    keys = list(
        dict.fromkeys(k for _, series in runs for k, points in series.items() if len(_list(points)) >= 2)
    )
    figures = []
    for key in keys[:MAX_CURVE_CHARTS]:
        fig = _figure(key, _axis_name([key]), key.rsplit(".", 1)[-1])
        for label, series in runs:
            if _list(series.get(key)):
                _line(fig, series[key], name=label, color=colors[label])
        figures.append(fig)
    return figures


BUILDERS = {
    "forecasting": _forecasting,
    "pricing": _pricing,
    "next_best_action": _nba,
    "location_scoring": _location,
}


def run_figures(family: str, plots: Any) -> list[go.Figure]:
    """The charts of one run."""
    plots = _map(plots)
    if _list(plots.get("folds")):
        return _folds(plots["folds"])
    builder = BUILDERS.get(family)
    return builder(plots) if builder else []


# ----------------------------------------------------------------------------- compare


def compare_figures(family: str, runs: list[tuple[str, Any]]) -> list[go.Figure]:
    """Overlaid charts of several runs of one recipe: [(label, plots_json)] in display order."""
    runs = [(label, _map(plots)) for label, plots in runs]
    figures: list[go.Figure] = []
    colors = {label: PALETTE[i % len(PALETTE)] for i, (label, _) in enumerate(runs)}
    if family == "forecasting":
        fig = _figure("Forecast vs actual (all series)", "date", "units")
        shown_actual = False
        for label, plots in runs:
            total = _map(plots.get("total"))
            if _forecast_line(
                fig, total, name=label, color=colors[label], band=False, actual=not shown_actual
            ):
                shown_actual = True
        if fig.data:
            figures.append(fig)
    elif family == "pricing":
        # Each run draws the curve of one product of its own data: say which, and say so
        # when the runs' products differ (the curves then describe different products).
        curves = [(label, _map(plots.get("demand_curve"))) for label, plots in runs]
        curves = [(label, curve) for label, curve in curves if _list(curve.get("price"))]
        products = {_product(curve) for _, curve in curves}
        title = "Demand curves"
        if len(products) == 1:
            title += f" — {next(iter(products))}"
        elif products:
            title += " — a different product per run (not the same curve)"
        fig = _figure(title, "price", "units per store-week")
        for label, curve in curves:
            fig.add_trace(
                go.Scatter(
                    x=curve["price"],
                    y=_list(curve.get("units")),
                    mode="lines",
                    name=label if len(products) == 1 else f"{label}: {_product(curve)}",
                    line={"color": colors[label]},
                )
            )
            chosen = _num(curve.get("chosen_price"))
            if chosen is not None:
                fig.add_vline(x=chosen, line={"color": colors[label], "dash": "dot"})
        if fig.data:
            figures.append(fig)
    elif family == "next_best_action":
        for key, title in (("qini_curve", "Qini curves"), ("uplift_by_decile", "Observed uplift by decile")):
            first = next((_map(p.get(key)) for _, p in runs if _map(p.get(key))), {})
            fig = _figure(title, str(first.get("x_label") or ""), str(first.get("y_label") or ""))
            for label, plots in runs:
                chart = _map(plots.get(key))
                main = "model" if key == "qini_curve" else "observed"
                values = _list(_map(chart.get("series")).get(main))
                if not values:
                    continue
                if key == "qini_curve":
                    fig.add_trace(
                        go.Scatter(
                            x=_list(chart.get("x")),
                            y=values,
                            mode="lines",
                            name=label,
                            line={"color": colors[label]},
                        )
                    )
                else:
                    fig.add_trace(
                        go.Bar(x=_list(chart.get("x")), y=values, name=label, marker={"color": colors[label]})
                    )
            if fig.data:
                fig.update_layout(barmode="group")
                figures.append(fig)
    elif family == "location_scoring":
        fig = _figure("Lift by predicted decile", "predicted decile (1 = top 10%)", "lift")
        for label, plots in runs:
            lift = _map(plots.get("decile_lift"))
            if _list(lift.get("lift")):
                fig.add_trace(
                    go.Bar(
                        x=_list(lift.get("decile")),
                        y=lift["lift"],
                        name=label,
                        marker={"color": colors[label]},
                    )
                )
        if fig.data:
            fig.update_layout(barmode="group")
            figures.append(fig)
    return figures
