"""Plotly figures for the model monitoring dashboards.

Plain Python (plotly only, no Django import). Every builder returns a
``plotly.graph_objects.Figure``; the page renders it with
``fig.to_html(include_plotlyjs=False, full_html=False)``. Empty or unusable input gives a
figure with a "No data yet" annotation instead of raising.

Inputs are lists of snapshot dicts, oldest or newest first (they are sorted here)::

    {"captured_at": datetime | iso str,
     "performance": {"MAPE": 0.14, ...},
     "drift": {... monitoring.drift.drift_report shape, or {"PSI": 0.08} ...},
     "freshness": {"max_age_hours": 48,
                   "features": {"sales": {"newest": iso, "age_hours": 3.2, "stale": false}}},
     "alerts": {...}}
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import plotly.graph_objects as go

from recipes.catalog import metric_direction

from .rules import parse_time

__all__ = [
    "alert_timeline",
    "drift_heatmap",
    "empty_figure",
    "freshness_chart",
    "is_empty",
    "metric_over_time",
    "model_dashboard",
    "time_axis",
]

NO_DATA = "No data yet"
MAX_METRIC_CHARTS = 6
SINGLE_POINT_SPAN = timedelta(days=1)
MIN_TIME_SPAN = timedelta(hours=1)
COLORS = {
    "metric": "#2563eb",
    "target": "#16a34a",
    "warning": "#f59e0b",
    "critical": "#dc2626",
    "max_age": "#dc2626",
}
SEVERITY_COLORS = {"warning": COLORS["warning"], "critical": COLORS["critical"]}
_BASE_LAYOUT = {
    "template": "plotly_white",
    "height": 320,
    "margin": {"l": 60, "r": 20, "t": 50, "b": 40},
    "legend": {"orientation": "h", "y": -0.2},
}


# ---------------------------------------------------------------------------- helpers


def _num(value: Any) -> float | None:
    if isinstance(value, Mapping):
        value = value.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    return float(value) if math.isfinite(value) else None


def _mapping(value: Any) -> Mapping[str, Any]:
    return value if isinstance(value, Mapping) else {}


def _snapshots(snapshots: Iterable[Any] | None) -> list[tuple[datetime, Mapping[str, Any]]]:
    out = []
    for snap in snapshots or ():
        if isinstance(snap, Mapping) and (at := parse_time(snap.get("captured_at"))) is not None:
            out.append((at, snap))
    out.sort(key=lambda item: item[0])
    return out


def empty_figure(title: str = "", message: str = NO_DATA) -> go.Figure:
    """A blank figure carrying ``message`` in the middle."""
    fig = go.Figure()
    fig.update_layout(**_BASE_LAYOUT, title={"text": title})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    fig.add_annotation(
        text=message,
        xref="paper",
        yref="paper",
        x=0.5,
        y=0.5,
        showarrow=False,
        font={"size": 16, "color": "#6b7280"},
    )
    return fig


def time_axis(fig: go.Figure, times: Iterable[datetime]) -> go.Figure:
    """Keep a date axis readable when its points are (nearly) simultaneous.

    Plotly zooms a single point — or two checks a few seconds apart — down to sub-second
    ticks ("00:00:00.5"). One point gets a day around it; a span shorter than an hour is
    widened to an hour, centred on the points."""
    times = sorted(times)
    if not times:
        return fig
    span = times[-1] - times[0]
    if span >= MIN_TIME_SPAN:
        return fig
    wanted = SINGLE_POINT_SPAN if span.total_seconds() == 0 else MIN_TIME_SPAN
    middle = times[0] + span / 2
    fig.update_xaxes(type="date", range=[middle - wanted / 2, middle + wanted / 2])
    return fig


def _time_labels(times: list[datetime]) -> dict[datetime, str]:
    """Distinct readable labels of sorted times: to the minute, with seconds (then a
    counter) only where two checks share a minute."""
    labels: dict[datetime, str] = {}
    used: set[str] = set()
    for at in times:
        label = at.strftime("%Y-%m-%d %H:%M")
        if label in used:
            label = at.strftime("%Y-%m-%d %H:%M:%S")
        base, n = label, 2
        while label in used:
            label, n = f"{base} #{n}", n + 1
        used.add(label)
        labels[at] = label
    return labels


def is_empty(fig: go.Figure) -> bool:
    """True for a figure with nothing drawn (``empty_figure``'s placeholder)."""
    return not fig.data


# ---------------------------------------------------------------------------- performance


def metric_over_time(
    snapshots: Iterable[Mapping[str, Any]] | None,
    metric: str,
    thresholds: Mapping[str, Any] | None = None,
    direction: str = "lower",
) -> go.Figure:
    """A metric's value per snapshot, with its target line and warning/critical bands.

    ``thresholds`` is the manifest's ``{"target", "threshold_warning", "threshold_critical"}``;
    ``direction`` ``"lower"`` (lower is better: the bands lie above the thresholds) or
    ``"higher"`` (the bands lie below them). Traces: the metric (named after it) and
    ``"target"``; bands are layout shapes named ``"warning"`` and ``"critical"``.
    """
    title = f"{metric} over time"
    points = [
        (at, v)
        for at, snap in _snapshots(snapshots)
        if (v := _num(_mapping(snap.get("performance")).get(metric))) is not None
    ]
    if not points:
        return empty_figure(title)
    xs = [at for at, _ in points]
    ys = [v for _, v in points]
    thresholds = _mapping(thresholds)
    target = _num(thresholds.get("target"))
    warning = _num(thresholds.get("threshold_warning"))
    critical = _num(thresholds.get("threshold_critical"))

    levels = [v for v in (*ys, target, warning, critical) if v is not None]
    lo, hi = min(levels), max(levels)
    pad = (hi - lo) * 0.15 or abs(hi) * 0.15 or 1.0
    bottom, top = lo - pad, hi + pad

    fig = go.Figure()
    fig.update_layout(**_BASE_LAYOUT, title={"text": title})
    both = warning is not None and critical is not None
    if direction == "higher":  # bad values are low: bands below the thresholds
        bands = {
            "warning": (critical if both and critical < warning else bottom, warning),
            "critical": (bottom, critical),
        }
    else:  # bad values are high: bands above the thresholds
        bands = {
            "warning": (warning, critical if both and critical > warning else top),
            "critical": (critical, top),
        }
    for name, (y0, y1) in bands.items():
        if y0 is None or y1 is None or y1 <= y0:
            continue
        fig.add_hrect(
            y0=y0,
            y1=y1,
            name=name,
            fillcolor=COLORS[name],
            opacity=0.12 if name == "warning" else 0.18,
            line_width=0,
            layer="below",
        )
    fig.add_trace(
        go.Scatter(
            x=xs,
            y=ys,
            mode="lines+markers",
            name=metric,
            line={"color": COLORS["metric"]},
            hovertemplate="%{x|%Y-%m-%d %H:%M}<br>" + metric + " = %{y:.4g}<extra></extra>",
        )
    )
    if target is not None:
        fig.add_trace(
            go.Scatter(
                x=[xs[0], xs[-1]]
                if xs[0] != xs[-1]
                else [xs[0] - SINGLE_POINT_SPAN, xs[0] + SINGLE_POINT_SPAN],
                y=[target, target],
                mode="lines",
                name="target",
                line={"color": COLORS["target"], "dash": "dash"},
                hovertemplate=f"target = {target:.4g}<extra></extra>",
            )
        )
    fig.update_yaxes(range=[bottom, top], title={"text": metric})
    return time_axis(fig, xs)


# ---------------------------------------------------------------------------- drift


def drift_heatmap(snapshots: Iterable[Mapping[str, Any]] | None, metric: str | None = None) -> go.Figure:
    """Feature x time heatmap of PSI (or of the KS statistic).

    ``metric`` is ``"psi"``, ``"ks"`` or ``None`` (PSI when any snapshot has feature PSI
    values, else KS). The prediction is the row ``"prediction"``; a snapshot in the spec's
    short form (``{"PSI": 0.08}``) contributes to the row ``"(overall)"``. Cells flagged as
    drifted are marked by the ``"drifted"`` scatter trace.
    """
    snaps = _snapshots(snapshots)
    rows: list[tuple[datetime, str, Mapping[str, Any]]] = []
    for at, snap in snaps:
        report = _mapping(snap.get("drift"))
        for feature, entry in _mapping(report.get("features")).items():
            rows.append((at, str(feature), _mapping(entry)))
        if "prediction" in report:
            rows.append((at, "prediction", _mapping(report["prediction"])))
        if not report.get("features"):
            for key, stat in (("PSI", "psi"), ("psi", "psi"), ("KS", "ks"), ("ks", "ks")):
                if _num(report.get(key)) is not None:
                    rows.append((at, "(overall)", {stat: report[key]}))
    if metric is None:
        metric = "psi" if any(_num(e.get("psi")) is not None for _, _, e in rows) else "ks"
    label = "PSI" if metric == "psi" else "KS statistic"
    title = f"Drift ({label}) by feature"
    cells = [
        (at, f, v, e.get("drifted") is True) for at, f, e in rows if (v := _num(e.get(metric))) is not None
    ]
    if not cells:
        return empty_figure(title)
    times = sorted({at for at, *_ in cells})
    features = list(dict.fromkeys(f for _, f, _, _ in cells))
    t_index = {at: i for i, at in enumerate(times)}
    f_index = {f: i for i, f in enumerate(features)}
    z: list[list[float | None]] = [[None] * len(times) for _ in features]
    for at, f, v, _ in cells:
        z[f_index[f]][t_index[at]] = v
    thresholds = [
        v for _, snap in snaps if (v := _num(_mapping(snap.get("drift")).get("threshold"))) is not None
    ]
    zmax = max(max(v for _, _, v, _ in cells), 2 * thresholds[-1] if thresholds else 0.0) or 1.0

    # One column per check, labelled with its time: a date axis would give a lone check a
    # one-millisecond-wide cell (and sub-second ticks).
    labels = _time_labels(times)
    fig = go.Figure()
    fig.update_layout(**_BASE_LAYOUT, title={"text": title})
    fig.update_layout(height=max(260, 60 + 28 * len(features)))
    fig.add_trace(
        go.Heatmap(
            x=[labels[at] for at in times],
            y=features,
            z=z,
            zmin=0.0,
            zmax=zmax,
            name=label,
            colorscale=[[0.0, "#f0fdf4"], [0.5, "#fde68a"], [1.0, "#b91c1c"]],
            colorbar={"title": {"text": label}},
            hoverongaps=False,
            hovertemplate="%{y}<br>%{x}<br>" + label + " = %{z:.4g}<extra></extra>",
        )
    )
    flagged = [(at, f) for at, f, _, drifted in cells if drifted]
    if flagged:
        fig.add_trace(
            go.Scatter(
                x=[labels[at] for at, _ in flagged],
                y=[f for _, f in flagged],
                mode="markers",
                name="drifted",
                marker={"symbol": "x", "size": 9, "color": "#111827"},
                hovertemplate="%{y} drifted<extra></extra>",
            )
        )
    fig.update_yaxes(autorange="reversed", type="category")
    fig.update_xaxes(type="category", title={"text": "check"})
    return fig


# ---------------------------------------------------------------------------- freshness


def freshness_chart(snapshots: Iterable[Mapping[str, Any]] | None) -> go.Figure:
    """Age in hours of each feature's newest data per snapshot, with the max-age limit.

    One line per feature (``freshness.features.<f>.age_hours``; when only ``newest`` is
    there the age is taken at the snapshot's ``captured_at``; the spec's
    ``{"last_update": iso}`` gives the line ``"data"``), plus a dashed ``"max age"`` line
    from ``freshness.max_age_hours``.
    """
    title = "Data freshness (hours since newest data)"
    series: dict[str, list[tuple[datetime, float]]] = {}
    limits: list[tuple[datetime, float]] = []
    for at, snap in _snapshots(snapshots):
        fresh = _mapping(snap.get("freshness"))
        features = dict(_mapping(fresh.get("features")))
        if not features and "last_update" in fresh:
            features["data"] = {"newest": fresh["last_update"]}
        for feature, entry in features.items():
            entry = _mapping(entry)
            age = _num(entry.get("age_hours"))
            if age is None and (newest := parse_time(entry.get("newest"))) is not None:
                age = (at - newest).total_seconds() / 3600.0
            if age is not None:
                series.setdefault(str(feature), []).append((at, age))
        if (limit := _num(fresh.get("max_age_hours"))) is not None:
            limits.append((at, limit))
    if not series:
        return empty_figure(title)
    fig = go.Figure()
    fig.update_layout(**_BASE_LAYOUT, title={"text": title})
    for feature, points in series.items():
        fig.add_trace(
            go.Scatter(
                x=[at for at, _ in points],
                y=[age for _, age in points],
                mode="lines+markers",
                name=feature,
                hovertemplate=feature + "<br>%{x|%Y-%m-%d %H:%M}<br>%{y:.1f} h<extra></extra>",
            )
        )
    if limits:
        all_times = sorted({at for points in series.values() for at, _ in points} | {at for at, _ in limits})
        if len(limits) == 1:  # one limit: draw it across the whole chart
            limits = [(all_times[0], limits[0][1]), (all_times[-1], limits[0][1])]
        fig.add_trace(
            go.Scatter(
                x=[at for at, _ in limits],
                y=[v for _, v in limits],
                mode="lines",
                name="max age",
                line={"color": COLORS["max_age"], "dash": "dash", "shape": "hv"},
                hovertemplate="max age %{y:.0f} h<extra></extra>",
            )
        )
    fig.update_yaxes(title={"text": "hours"}, rangemode="tozero")
    return time_axis(fig, [at for points in series.values() for at, _ in points])


# ---------------------------------------------------------------------------- alerts


def alert_timeline(
    alert_events: Iterable[Mapping[str, Any]] | None, now: datetime | None = None
) -> go.Figure:
    """Gantt-like timeline: one horizontal bar per alert firing, from ``fired_at`` to
    ``resolved_at`` (or ``now`` while still firing), one trace per severity."""
    title = "Alerts"
    now = parse_time(now) if now is not None else datetime.now(UTC)
    bars: dict[str, list[tuple[str, datetime, datetime, bool]]] = {}
    for event in alert_events or ():
        if not isinstance(event, Mapping):
            continue
        start = parse_time(event.get("fired_at"))
        if start is None:
            continue
        end = parse_time(event.get("resolved_at"))
        ongoing = end is None
        end = max(end or now, start)
        severity = str(event.get("severity") or "warning")
        bars.setdefault(severity, []).append((str(event.get("name") or "alert"), start, end, ongoing))
    if not bars:
        return empty_figure(title)
    fig = go.Figure()
    fig.update_layout(**_BASE_LAYOUT, title={"text": title}, barmode="overlay")
    names = []
    for severity in sorted(bars, key=lambda s: (s != "critical", s)):
        items = bars[severity]
        names.extend(name for name, *_ in items)
        fig.add_trace(
            go.Bar(
                orientation="h",
                name=severity,
                y=[name for name, *_ in items],
                base=[start.isoformat() for _, start, _, _ in items],
                x=[max((end - start).total_seconds() * 1000.0, 60_000.0) for _, start, end, _ in items],
                marker={"color": SEVERITY_COLORS.get(severity, "#6b7280")},
                customdata=[
                    [start.isoformat(), "ongoing" if ongoing else end.isoformat()]
                    for _, start, end, ongoing in items
                ],
                hovertemplate="%{y}<br>fired %{customdata[0]}<br>resolved %{customdata[1]}<extra>"
                + severity
                + "</extra>",
            )
        )
    fig.update_xaxes(type="date")
    fig.update_yaxes(type="category", categoryorder="array", categoryarray=list(dict.fromkeys(names))[::-1])
    fig.update_layout(height=max(220, 80 + 30 * len(set(names))))
    ends = [moment for items in bars.values() for _, start, end, _ in items for moment in (start, end)]
    return time_axis(fig, ends)


# ---------------------------------------------------------------------------- a model's page


def model_dashboard(
    snapshots: Iterable[Mapping[str, Any]] | None,
    alert_events: Iterable[Mapping[str, Any]] | None,
    *,
    manifest: Mapping[str, Any],
    family: str,
    now: datetime | None = None,
) -> list[tuple[go.Figure, bool]]:
    """The model page's charts, in order, each with whether it spans the page (``wide``):
    one per monitored metric (the manifest's ``monitoring.metrics``, else every evaluation
    metric; at most MAX_METRIC_CHARTS) against its thresholds, then the drift heatmap (wide),
    freshness and the alert timeline."""
    snapshots = list(snapshots or ())
    defined = _mapping(_mapping(manifest.get("evaluation")).get("metrics"))
    wanted = _mapping(manifest.get("monitoring")).get("metrics") or list(defined)
    figures = []
    for name in wanted[:MAX_METRIC_CHARTS]:
        spec = defined.get(name) if isinstance(defined.get(name), Mapping) else {}
        direction = metric_direction(family, name, spec.get("direction")) or "lower"
        figures.append((metric_over_time(snapshots, name, thresholds=spec, direction=direction), False))
    return [
        *figures,
        (drift_heatmap(snapshots), True),
        (freshness_chart(snapshots), False),
        (alert_timeline(alert_events, now=now), False),
    ]
