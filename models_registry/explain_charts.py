"""Plotly figures of a model's explanations (the "Why" tab, "Explain this prediction" and the
comparison page), built from the explanations document (``explanations.json``, the shape of
the explainability contract: ``runs/explain/``) and from one ``explain_rows`` item.

Plain Python (plotly only, no Django import), like ``runs/plots.py`` and
``monitoring/charts.py``: each builder returns ``Chart``s — a figure with a one-line caption
saying how to read it — and the views render them with ``runs.plots.figure_html`` (no inline
script; ``static/js/charts.js`` draws them, after an htmx swap too). Missing or malformed data
gives no chart rather than an error: the tab then shows fewer charts, or its empty state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import plotly.graph_objects as go

# The run page's readers of stored JSON (a value of the wrong type reads as empty / None).
from runs.plots import PALETTE, _list, _map, _num

# The house style of runs/plots.py and monitoring/charts.py.
_LAYOUT = {
    "template": "plotly_white",
    "height": 340,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 60},
    "legend": {"orientation": "h", "y": -0.3},
}
UP, DOWN, TOTAL, MUTED = "#16a34a", "#dc2626", "#2563eb", "#9ca3af"
WATERFALL_TOP = 10  # features drawn one by one in a waterfall; the rest fold into one bar
IMPORTANCE_TOP = 15  # features in an importance chart
DEPENDENCE_TOP = 4  # features with a PD + ICE chart
ICE_LINES = 30
COMPARE_TOP = 12
METHOD_LABELS = {
    "tree_shap": "TreeSHAP (exact)",
    "exact_shapley": "exact Shapley values",
    "sampled_shapley": "sampled Shapley values (approximate)",
    "kernel_shap": "Kernel SHAP (approximate)",
    "decomposition": "model decomposition (exact)",
    "shapley_groups": "exact Shapley values summed by kind of feature",
    "prophet_components": "Prophet's own components (exact)",
}


@dataclass(frozen=True)
class Chart:
    """One figure of a view and how to read it (the line shown under it)."""

    key: str
    figure: go.Figure
    caption: str
    wide: bool = False


# ----------------------------------------------------------------------------- helpers


def _nums(values: Any) -> list[float | None]:
    return [_num(v) for v in _list(values)]


def _figure(title: str, x_label: str = "", y_label: str = "", **layout) -> go.Figure:
    fig = go.Figure()
    fig.update_layout(**{**_LAYOUT, **layout}, title={"text": title})
    if x_label:
        fig.update_xaxes(title={"text": x_label})
    if y_label:
        fig.update_yaxes(title={"text": y_label})
    return fig


def _fmt(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "—"
    return f"{value:+.3g}" if sign else f"{value:.3g}"


def method_label(method: Any) -> str:
    """ "tree_shap" -> "TreeSHAP (exact)"; an unknown method name as it is."""
    return METHOD_LABELS.get(str(method), str(method or "unknown method").replace("_", " "))


def output_label(document: Mapping) -> str:
    """What the model's output is called on the document's scale: "predicted units", or the
    scale itself (log1p(annual_sales)) when contributions are not on the prediction's scale."""
    scale = str(document.get("scale") or "prediction")
    label = str(document.get("output_label") or "prediction")
    return label if scale == "prediction" else scale


def _feature_rows(rows: Any, value_key: str) -> list[Mapping]:
    return [
        r
        for r in map(_map, _list(rows))
        if r.get("feature") is not None and _num(r.get(value_key)) is not None
    ]


# ----------------------------------------------------------------------------- global importance


def importance_charts(document: Mapping) -> list[Chart]:
    """Permutation importance with its interval (every model), next to the mean |SHAP| shares
    (the per-prediction method's attribution)."""
    charts = []
    rows = _feature_rows(document.get("global"), "importance")[:IMPORTANCE_TOP]
    if rows:
        perm = _map(document.get("permutation"))
        metric = str(perm.get("metric") or "the metric")
        repeats = perm.get("repeats")
        imp = [_num(r["importance"]) for r in rows]
        lows = [_num(r.get("ci_low")) for r in rows]
        highs = [_num(r.get("ci_high")) for r in rows]
        error = None
        if all(v is not None for v in lows + highs):
            error = {
                "type": "data",
                "symmetric": False,
                "array": [max(h - v, 0.0) for h, v in zip(highs, imp, strict=True)],
                "arrayminus": [max(v - lo, 0.0) for lo, v in zip(lows, imp, strict=True)],
            }
        fig = _figure(
            f"Permutation importance ({metric})",
            f"{metric} worse when shuffled",
            "",
            height=max(300, 60 + 26 * len(rows)),
            margin={"l": 140, "r": 20, "t": 50, "b": 50},
        )
        fig.add_trace(
            go.Bar(
                x=imp[::-1],
                y=[str(r["feature"]) for r in rows][::-1],
                orientation="h",
                error_x={**error, "array": error["array"][::-1], "arrayminus": error["arrayminus"][::-1]}
                if error
                else None,
                marker={"color": PALETTE[0]},
                name="importance",
                hovertemplate="%{y}: %{x:.4g}<extra></extra>",
            )
        )
        fig.add_vline(x=0, line={"color": MUTED, "width": 1})
        times = f"{repeats} shuffles" if isinstance(repeats, int) else "repeated shuffles"
        charts.append(
            Chart(
                "importance",
                fig,
                f"How much {metric} gets worse when one feature's values are shuffled ({times}; whiskers: "
                "the interval). Longer bar: the model relies on it more; an interval reaching 0: it may not matter.",
            )
        )
    shares = _feature_rows(_map(document.get("attribution")).get("mean_abs"), "share")[:IMPORTANCE_TOP]
    if shares:
        fig = _figure(
            f"Mean |contribution| share ({method_label(document.get('method'))})",
            "share of the total",
            "",
            height=max(300, 60 + 26 * len(shares)),
            margin={"l": 140, "r": 20, "t": 50, "b": 50},
        )
        fig.update_xaxes(tickformat=".0%")
        fig.add_trace(
            go.Bar(
                x=[_num(r["share"]) for r in shares][::-1],
                y=[str(r["feature"]) for r in shares][::-1],
                orientation="h",
                marker={"color": PALETTE[1]},
                name="share",
                customdata=[_num(r.get("mean_abs")) for r in shares][::-1],
                hovertemplate="%{y}: %{x:.1%} (mean |contribution| %{customdata:.4g})<extra></extra>",
            )
        )
        charts.append(
            Chart(
                "shares",
                fig,
                f"Each feature's share of the average absolute contribution to the {output_label(document)} "
                "over the explained sample: the shares add up to 100 %; sign ignored.",
            )
        )
    return charts


# ----------------------------------------------------------------------------- dependence


def dependence_charts(document: Mapping, *, limit: int = DEPENDENCE_TOP) -> list[Chart]:
    """Partial dependence (thick) with ICE lines (thin) for the top features, then the 2-D
    partial dependence of the one interaction."""
    dependence = _map(document.get("dependence"))
    y_label = output_label(document)
    charts = []
    for entry in map(_map, _list(dependence.get("features"))[:limit]):
        grid = _list(entry.get("grid"))
        pd_line = _nums(entry.get("pd"))
        if not grid or len(pd_line) != len(grid):
            continue
        feature = str(entry.get("feature"))
        categorical = entry.get("kind") == "categorical"
        fig = _figure(f"How {feature} moves the prediction", feature, y_label)
        if categorical:
            fig.update_xaxes(type="category")
        x = [str(g) for g in grid] if categorical else grid
        for i, line in enumerate(_list(entry.get("ice"))[:ICE_LINES]):
            values = _nums(line)
            if len(values) != len(grid):
                continue
            fig.add_trace(
                go.Scatter(
                    x=x,
                    y=values,
                    mode="lines",
                    line={"color": "rgba(107, 114, 128, 0.25)", "width": 1},
                    name="single rows (ICE)",
                    legendgroup="ice",
                    showlegend=i == 0,
                    hoverinfo="skip",
                )
            )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=pd_line,
                mode="lines+markers" if categorical else "lines",
                line={"color": PALETTE[0], "width": 3},
                name="average (partial dependence)",
                hovertemplate=f"{feature} = %{{x}}<br>average %{{y:.4g}}<extra></extra>",
            )
        )
        charts.append(
            Chart(
                f"pd-{feature}",
                fig,
                f"Thick line: the average {y_label} as {feature} changes and every other feature keeps each "
                "row's value; thin lines: single rows. Lines that cross or bend differently mean "
                f"{feature} interacts with other features.",
            )
        )
    interaction = _map(dependence.get("interaction"))
    chart = _interaction_chart(interaction, y_label)
    if chart:
        charts.append(chart)
    return charts


def _interaction_chart(interaction: Mapping, y_label: str) -> Chart | None:
    names = _list(interaction.get("features"))
    grid_a, grid_b = _list(interaction.get("grid_a")), _list(interaction.get("grid_b"))
    z = [_nums(row) for row in _list(interaction.get("pd"))]
    if len(names) != 2 or not grid_a or not grid_b or not z:
        return None
    # pd[i][j]: the average at grid_a[i], grid_b[j] (rows along a); a transposed table is read as such.
    if len(z) == len(grid_b) and all(len(row) == len(grid_a) for row in z) and len(grid_a) != len(grid_b):
        z = [list(col) for col in zip(*z, strict=True)]
    if len(z) != len(grid_a) or any(len(row) != len(grid_b) for row in z):
        return None
    a, b = (str(n) for n in names)
    fig = _figure(f"{a} × {b}: average prediction", b, a)
    fig.add_trace(
        go.Heatmap(
            x=[str(v) if isinstance(v, str) else v for v in grid_b],
            y=[str(v) if isinstance(v, str) else v for v in grid_a],
            z=z,
            colorscale="Viridis",
            colorbar={"title": {"text": y_label}},
            hovertemplate=f"{a} = %{{y}}<br>{b} = %{{x}}<br>average %{{z:.4g}}<extra></extra>",
        )
    )
    return Chart(
        "interaction",
        fig,
        f"The average {y_label} over a grid of {a} and {b}: if the colour changes along one axis the same "
        "way at every value of the other, they act separately; otherwise they interact.",
    )


# ----------------------------------------------------------------------------- waterfalls


def waterfall(
    title: str,
    base: float,
    contributions: Mapping[str, Any],
    output: float | None,
    *,
    base_label: str = "base value",
    output_label_text: str = "prediction",
    top: int = WATERFALL_TOP,
) -> go.Figure | None:
    """From ``base`` through each feature's contribution (largest first; beyond ``top`` one
    "other features" bar) to ``output``. When base + contributions misses the output (an
    approximate method) the gap is drawn as its own bar, "not explained", not hidden."""
    items = [(str(k), v) for k, value in _map(contributions).items() if (v := _num(value)) is not None]
    if _num(base) is None or not items:
        return None
    items.sort(key=lambda kv: -abs(kv[1]))
    shown, rest = items[:top], items[top:]
    labels = [base_label] + [name for name, _ in shown]
    values = [float(base)] + [v for _, v in shown]
    if rest:
        labels.append(f"{len(rest)} other features")
        values.append(sum(v for _, v in rest))
    total = float(base) + sum(v for _, v in items)
    gap = (output - total) if _num(output) is not None else 0.0
    if abs(gap) > 1e-6 * max(1.0, abs(total)):
        labels.append("not explained")
        values.append(gap)
    labels.append(output_label_text)
    values.append(0.0)
    measures = ["absolute"] + ["relative"] * (len(values) - 2) + ["total"]
    text = [_fmt(values[0])] + [_fmt(v, sign=True) for v in values[1:-1]] + [_fmt(total + gap)]
    fig = _figure(title, "", "", height=360, margin={"l": 60, "r": 20, "t": 50, "b": 110})
    fig.add_trace(
        go.Waterfall(
            x=labels,
            y=values,
            measure=measures,
            text=text,
            textposition="outside",
            increasing={"marker": {"color": UP}},
            decreasing={"marker": {"color": DOWN}},
            totals={"marker": {"color": TOTAL}},
            connector={"line": {"color": MUTED, "width": 1}},
            hovertemplate="%{x}: %{text}<extra></extra>",
            name="",
        )
    )
    fig.update_xaxes(tickangle=-30)
    fig.update_layout(showlegend=False)
    # Bars far from 0 (a log scale's 4.4 ± 0.9): zoom on the running total, or every
    # contribution is a sliver on top of a tall base bar.
    running = [float(base)]
    for v in values[1:-1]:
        running.append(running[-1] + v)
    lo, hi = min(running), max(running)
    if lo > 0 and hi - lo < 0.5 * hi:
        pad = 0.25 * (hi - lo) or 0.05 * hi
        fig.update_yaxes(range=[max(0.0, lo - pad), hi + pad])
    return fig


def prediction_charts(item: Mapping, document: Mapping | None = None) -> list[Chart]:
    """One explained prediction (an ``explain_rows`` item): its waterfall from the base value
    to the output; for pricing, the local demand curve with its elasticity."""
    item = _map(item)
    scale = str(item.get("scale") or _map(document).get("scale") or "prediction")
    label = str(_map(document).get("output_label") or "prediction") if scale == "prediction" else scale
    charts = []
    fig = waterfall(
        f"Why this prediction: {label} {_fmt(_num(item.get('output')))}",
        _num(item.get("base_value")),
        _map(item.get("contributions")),
        _num(item.get("output")),
        output_label_text=label,
    )
    if fig is not None:
        charts.append(
            Chart(
                "prediction-waterfall",
                fig,
                f"Starts at the base value (the average {label} of the explained sample); each bar is one "
                "feature's push up (green) or down (red) for this row, ending at its output.",
                wide=True,
            )
        )
    curve = _map(item.get("demand_curve"))
    prices, units = _nums(curve.get("price")), _nums(curve.get("units"))
    if prices and len(prices) == len(units):
        elasticity = _num(item.get("elasticity"))
        title = "Demand around this price"
        if elasticity is not None:
            title += f" (elasticity {elasticity:.2f})"
        fig = _figure(title, "price", str(_map(document).get("output_label") or "units"))
        fig.add_trace(go.Scatter(x=prices, y=units, mode="lines", name="units", line={"color": PALETTE[0]}))
        charts.append(
            Chart(
                "prediction-demand",
                fig,
                "Predicted units if only this row's price changed. Elasticity: the % change in units for a "
                "1 % price change (−2 means 1 % dearer sells about 2 % less).",
            )
        )
    return charts


# ----------------------------------------------------------------------------- family views


def _pricing(view: Mapping, document: Mapping) -> list[Chart]:
    charts = []
    segments = [s for s in map(_map, _list(view.get("segments"))) if _list(s.get("price"))]
    if segments:
        fig = _figure("Demand curve by segment", "price", str(document.get("output_label") or "units"))
        for i, seg in enumerate(segments):
            color = PALETTE[i % len(PALETTE)]
            prices, units = _list(seg.get("price")), _nums(seg.get("units"))
            low, high = _nums(seg.get("units_low")), _nums(seg.get("units_high"))
            name = str(seg.get("segment"))
            elasticity = _num(seg.get("elasticity"))
            if elasticity is not None:
                name += f" (ε {elasticity:.2f}"
                lo, hi = _num(seg.get("ci_low")), _num(seg.get("ci_high"))
                name += f" [{lo:.2f}, {hi:.2f}])" if lo is not None and hi is not None else ")"
            if len(low) == len(prices) and len(high) == len(prices):
                fig.add_trace(
                    go.Scatter(
                        x=prices + prices[::-1],
                        y=high + low[::-1],
                        fill="toself",
                        fillcolor=_rgba(color, 0.12),
                        line={"width": 0},
                        hoverinfo="skip",
                        showlegend=False,
                        legendgroup=name,
                    )
                )
            fig.add_trace(
                go.Scatter(
                    x=prices, y=units, mode="lines", name=name, line={"color": color}, legendgroup=name
                )
            )
        charts.append(
            Chart(
                "pricing-demand",
                fig,
                "Predicted units as the price moves, one line per segment, shaded: the interval. A steeper "
                "line is a more price-sensitive segment; ε in the legend is its elasticity with its interval.",
                wide=True,
            )
        )
    curve = _map(view.get("revenue_curve"))
    multiplier = _list(curve.get("multiplier"))
    if multiplier:
        fig = _figure("Revenue and margin vs price", "price × (1 = today's prices)", "")
        for key, color in (("revenue", PALETTE[0]), ("margin", PALETTE[3])):
            values = _nums(curve.get(key))
            if len(values) == len(multiplier):
                fig.add_trace(
                    go.Scatter(x=multiplier, y=values, mode="lines", name=key, line={"color": color})
                )
        recommended = _num(curve.get("recommended_multiplier"))
        if recommended is not None:
            fig.add_vline(
                x=recommended,
                line={"color": UP, "dash": "dash"},
                annotation_text=f"recommended ×{recommended:.2f}",
                annotation_position="top",
            )
        if fig.data:
            charts.append(
                Chart(
                    "pricing-revenue",
                    fig,
                    "Total revenue and margin if every price were multiplied by the factor on the x-axis; the "
                    "dashed line is the recommended price change (the optimiser's objective at its best).",
                )
            )
    drivers = _feature_rows(view.get("elasticity_drivers"), "effect")
    if drivers:
        fig = _figure(
            "What moves elasticity",
            "effect on elasticity",
            "",
            margin={"l": 140, "r": 20, "t": 50, "b": 50},
        )
        fig.add_trace(
            go.Bar(
                x=[_num(r["effect"]) for r in drivers][::-1],
                y=[str(r["feature"]) for r in drivers][::-1],
                orientation="h",
                marker={"color": PALETTE[4]},
                name="effect",
            )
        )
        charts.append(
            Chart(
                "pricing-drivers",
                fig,
                "How much each feature changes the price elasticity (how price-sensitive demand is); a feature "
                "not listed leaves it unchanged. The notes above say how the effect is measured for this model.",
            )
        )
    return charts


def _rgba(hex_color: str, alpha: float) -> str:
    h = hex_color.lstrip("#")
    return f"rgba({int(h[0:2], 16)}, {int(h[2:4], 16)}, {int(h[4:6], 16)}, {alpha})"


def _nba(view: Mapping, document: Mapping) -> list[Chart]:
    charts = []
    segments = [s for s in map(_map, _list(view.get("uplift_by_segment"))) if s.get("segment") is not None]
    if segments:
        fig = _figure("Uplift by segment: predicted vs observed", "segment", "uplift")
        names = [str(s["segment"]) for s in segments]
        fig.add_trace(
            go.Bar(
                x=names,
                y=[_num(s.get("predicted_uplift")) for s in segments],
                name="predicted",
                marker={"color": PALETTE[0]},
            )
        )
        fig.add_trace(
            go.Bar(
                x=names,
                y=[_num(s.get("observed_uplift")) for s in segments],
                name="observed",
                marker={"color": PALETTE[2]},
                customdata=[s.get("n") for s in segments],
                hovertemplate="%{x}: %{y:.4g} (n = %{customdata})<extra>observed</extra>",
            )
        )
        fig.update_layout(barmode="group")
        charts.append(
            Chart(
                "nba-uplift",
                fig,
                "Per segment, the uplift the model predicts (treated minus untreated response) next to the uplift "
                "observed in the held-out data: close pairs mean the model's uplift can be trusted there.",
            )
        )
    qini = _map(view.get("qini"))
    fraction = _list(qini.get("fraction"))
    if fraction:
        fig = _figure(
            "Qini curve: model vs random", "fraction of customers targeted", "incremental responses"
        )
        for key, color, dash in (("model", PALETTE[0], None), ("random", MUTED, "dash")):
            values = _nums(qini.get(key))
            if len(values) == len(fraction):
                fig.add_trace(
                    go.Scatter(
                        x=fraction, y=values, mode="lines", name=key, line={"color": color, "dash": dash}
                    )
                )
        if fig.data:
            charts.append(
                Chart(
                    "nba-qini",
                    fig,
                    "Extra responses gained by treating customers in the model's order (highest uplift first) vs "
                    "in random order: the more the model's curve rises above the dashed line, the better it targets.",
                )
            )
    drivers = _feature_rows(view.get("choice_drivers"), "mean_abs")
    if drivers:
        charts.append(
            _driver_bars(
                "nba-drivers",
                "What drives the choice of offer",
                drivers,
                "How strongly each customer feature moves the model's choice between offers (mean absolute "
                "contribution): the top ones decide who gets which offer.",
            )
        )
    return charts


def _driver_bars(key: str, title: str, rows: list[Mapping], caption: str) -> Chart:
    fig = _figure(title, "mean |contribution|", "", margin={"l": 140, "r": 20, "t": 50, "b": 50})
    fig.add_trace(
        go.Bar(
            x=[_num(r["mean_abs"]) for r in rows][::-1],
            y=[str(r["feature"]) for r in rows][::-1],
            orientation="h",
            marker={"color": PALETTE[4]},
            name="mean |contribution|",
        )
    )
    return Chart(key, fig, caption)


def location_sites(document: Mapping) -> list[str]:
    """The sample sites of a location model's document (the site picker's choices)."""
    view = _map(document.get("family_view"))
    return [str(s["site_id"]) for s in map(_map, _list(view.get("sites"))) if s.get("site_id") is not None]


def location_site(document: Mapping, site_id: str | None) -> dict | None:
    """The picked site (the first one when ``site_id`` is none of them): ``{site_id, output,
    contributions, comparables: [{site_id, output}]}``."""
    view = _map(document.get("family_view"))
    sites = [s for s in map(_map, _list(view.get("sites"))) if s.get("site_id") is not None]
    if not sites:
        return None
    site = next((s for s in sites if str(s["site_id"]) == str(site_id)), sites[0])
    outputs = {str(s["site_id"]): _num(s.get("output")) for s in sites}
    comparables = _list(_map(view.get("comparables")).get(str(site["site_id"])))
    return {
        "site_id": str(site["site_id"]),
        "output": _num(site.get("output")),
        "contributions": dict(_map(site.get("contributions"))),
        "comparables": [{"site_id": str(c), "output": outputs.get(str(c))} for c in comparables],
    }


def _location(view: Mapping, document: Mapping, *, site: str | None = None) -> list[Chart]:
    charts = []
    picked = location_site(document, site)
    average = _num(view.get("average_output"))
    label = output_label(document)
    if picked and average is not None:
        fig = waterfall(
            f"Site {picked['site_id']} against the average site",
            average,
            picked["contributions"],
            picked["output"],
            base_label="average site",
            output_label_text=f"site {picked['site_id']}",
        )
        if fig is not None:
            charts.append(
                Chart(
                    "location-waterfall",
                    fig,
                    f"Starts at the average site's {label}; each bar is one feature pushing this site's score up "
                    "(green) or down (red), ending at its own score.",
                    wide=True,
                )
            )
    return charts


def forecast_series(document: Mapping) -> list[str]:
    """The series of a forecaster's per-series decomposition (the series picker's choices),
    largest first."""
    decomposition = _map(_map(document.get("family_view")).get("decomposition"))
    return [
        str(s["series"]) for s in map(_map, _list(decomposition.get("series"))) if s.get("series") is not None
    ]


DECOMPOSITION_PARTS = ("trend", "seasonality", "holidays", "regressors")


def _series_decomposition(view: Mapping, document: Mapping, series: str | None) -> Chart | None:
    """The picked series' decomposition (the first when ``series`` is none of them): its parts
    stacked as bars and its forecast as a line."""
    decomposition = _map(view.get("decomposition"))
    entries = [s for s in map(_map, _list(decomposition.get("series"))) if s.get("series") is not None]
    if not entries:
        return None
    entry = next((s for s in entries if str(s["series"]) == str(series)), entries[0])
    x = _list(entry.get("date"))
    base = _num(decomposition.get("base_value")) or 0.0
    method = str(decomposition.get("method") or "")
    fig = _figure(
        f"Series {entry['series']}: forecast decomposition",
        "date",
        output_label(document),
        barmode="relative",
    )
    for i, name in enumerate(DECOMPOSITION_PARTS):
        values = _nums(entry.get(name))
        if len(values) == len(x) and any(v for v in values):
            fig.add_trace(go.Bar(x=x, y=values, name=name, marker={"color": PALETTE[i % len(PALETTE)]}))
    lower, upper = _nums(entry.get("lower")), _nums(entry.get("upper"))
    if len(lower) == len(upper) == len(x) and x:
        level = _num(decomposition.get("interval_level"))
        fig.add_trace(
            go.Scatter(x=x, y=upper, mode="lines", line={"width": 0}, showlegend=False, hoverinfo="skip")
        )
        fig.add_trace(
            go.Scatter(
                x=x,
                y=lower,
                mode="lines",
                line={"width": 0},
                fill="tonexty",
                fillcolor="rgba(37, 99, 235, 0.12)",
                name=f"{level:.0%} interval" if level else "interval",
            )
        )
    forecast = _nums(entry.get("forecast"))
    if len(forecast) == len(x):
        fig.add_trace(go.Scatter(x=x, y=forecast, mode="lines", name="forecast", line={"color": TOTAL}))
    if base:
        fig.add_hline(y=base, line_dash="dot", line_color=MUTED, annotation_text="base value")
    how = (
        "Prophet's own components: they add up to its forecast."
        if method == "prophet_components"
        else "Exact Shapley contributions summed by kind of feature: the base value (dotted) plus the bars is "
        "the forecast."
    )
    return Chart(
        "forecast-series-decomposition",
        fig,
        f"What makes up this series' forecast, period by period: trend, seasonality, holidays and "
        f"regressors, and the forecast's interval (shaded). {how}",
        wide=True,
    )


def _forecasting(view: Mapping, document: Mapping, *, series: str | None = None) -> list[Chart]:
    charts = []
    picked = _series_decomposition(view, document, series)
    if picked is not None:
        charts.append(picked)
    components = _map(view.get("components"))
    x = _list(components.get("date") or components.get("ds"))
    if x:
        fig = _figure("Forecast decomposition", "date", output_label(document))
        shown = [
            (name, values)
            for name, raw in components.items()
            if name not in ("date", "ds") and len(values := _nums(raw)) == len(x)
        ]
        for i, (name, values) in enumerate(shown):
            fig.add_trace(
                go.Scatter(
                    x=x, y=values, mode="lines", name=str(name), line={"color": PALETTE[i % len(PALETTE)]}
                )
            )
        if shown:
            charts.append(
                Chart(
                    "forecast-components",
                    fig,
                    "The forecast split into its parts (trend, seasonality, holidays, regressors): they add up to the "
                    "forecast; a part far from 0 moves the forecast that much.",
                    wide=True,
                )
            )
    regressors = _feature_rows(view.get("regressors"), "mean_abs")
    if regressors:
        charts.append(
            _driver_bars(
                "forecast-regressors",
                "Which regressors matter",
                regressors,
                "The average absolute effect of each regressor (price, promotion, holidays…) on the forecast: the "
                "longer the bar, the more the forecast moves with it.",
            )
        )
    return charts


def family_charts(document: Mapping, *, site: str | None = None, series: str | None = None) -> list[Chart]:
    """The family's own views (its ``family_view``); ``site`` picks a location model's site,
    ``series`` a forecaster's series."""
    view = _map(document.get("family_view"))
    kind = view.get("kind") or document.get("family")
    if kind == "pricing":
        return _pricing(view, document)
    if kind == "next_best_action":
        return _nba(view, document)
    if kind == "location_scoring":
        return _location(view, document, site=site)
    if kind == "forecasting":
        return _forecasting(view, document, series=series)
    return []


def why_charts(
    document: Mapping, *, site: str | None = None, series: str | None = None
) -> dict[str, list[Chart]]:
    """Every chart of the Why tab, by section."""
    document = _map(document)
    return {
        "importance": importance_charts(document),
        "dependence": dependence_charts(document),
        "family": family_charts(document, site=site, series=series),
    }


# ----------------------------------------------------------------------------- comparison


def comparison_charts(models: list[tuple[str, Mapping | None]]) -> list[Chart]:
    """The global importance of several models side by side: one grouped bar chart of the
    permutation importance (the same metric when they are of one recipe) and one of the
    mean |contribution| shares, over the union of their top features. A model without
    explanations has no bars (the page names it)."""
    models = [(label, _map(doc)) for label, doc in models]
    charts = []
    for key, value, title, axis, caption in (
        (
            "global",
            "importance",
            "Permutation importance",
            "metric worse when shuffled",
            "Each model's permutation importance for the same features (whiskers: the interval): features "
            "whose bars differ a lot are where the models disagree about what matters.",
        ),
        (
            "attribution",
            "share",
            "Mean |contribution| share",
            "share of the total",
            "Each model's share of the average absolute contribution per feature (its own attribution "
            "method, named in the legend); shares add up to 100 % per model.",
        ),
    ):
        per_model = []
        for label, doc in models:
            rows = doc.get(key)
            rows = _map(rows).get("mean_abs") if key == "attribution" else rows
            per_model.append((label, doc, {str(r["feature"]): r for r in _feature_rows(rows, value)}))
        features = list(dict.fromkeys(f for _, _, rows in per_model for f in list(rows)[:COMPARE_TOP]))
        if not features:
            continue
        fig = _figure(
            title,
            axis,
            "",
            height=max(320, 80 + 22 * len(features) * max(1, len(per_model))),
            margin={"l": 140, "r": 20, "t": 50, "b": 60},
        )
        if key == "attribution":
            fig.update_xaxes(tickformat=".0%")
        for i, (label, doc, rows) in enumerate(per_model):
            if not rows:
                continue
            values = [_num(rows[f][value]) if f in rows else None for f in features]
            error = None
            if key == "global":
                lows = [_num(rows[f].get("ci_low")) if f in rows else None for f in features]
                highs = [_num(rows[f].get("ci_high")) if f in rows else None for f in features]
                error = {
                    "type": "data",
                    "symmetric": False,
                    "array": [
                        max(h - v, 0.0) if h is not None and v is not None else 0.0
                        for h, v in zip(highs, values, strict=True)
                    ][::-1],
                    "arrayminus": [
                        max(v - lo, 0.0) if lo is not None and v is not None else 0.0
                        for lo, v in zip(lows, values, strict=True)
                    ][::-1],
                }
            name = label if key == "global" else f"{label} ({method_label(doc.get('method'))})"
            fig.add_trace(
                go.Bar(
                    x=values[::-1],
                    y=features[::-1],
                    orientation="h",
                    name=name,
                    error_x=error,
                    marker={"color": PALETTE[i % len(PALETTE)]},
                )
            )
        if fig.data:
            fig.update_layout(barmode="group")
            charts.append(Chart(f"compare-{key}", fig, caption))
    return charts
