"""Plotly figures from chart query results, as plain figure dicts.

Plain dicts, not ``plotly.graph_objects``: validating graph objects costs ~20 ms per figure, more
than the queries behind them. Each result is small (at most ~2,000 points).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from ..config import Chart
from ..warehouse import QueryResult

PALETTE = ["#4C78A8", "#F58518", "#54A24B", "#E45756", "#72B7B2", "#EECA3B", "#B279A2", "#FF9DA6", "#9D755D",
           "#BAB0AC", "#1F77B4", "#FF7F0E", "#2CA02C", "#D62728", "#9467BD", "#8C564B", "#E377C2", "#7F7F7F",
           "#BCBD22", "#17BECF", "#393B79", "#637939", "#8C6D31", "#843C39", "#7B4173", "#3182BD"]
_AXIS = {"gridcolor": "#EBF0F8", "zerolinecolor": "#EBF0F8", "automargin": True}


def _layout(chart: Chart, **kw: Any) -> dict:
    # the title is drawn by the page above the figure (it wraps there), not inside it
    base = {"height": chart.height, "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
            "paper_bgcolor": "white", "plot_bgcolor": "white", "font": {"color": "#2a3f5f"},
            "xaxis": dict(_AXIS), "yaxis": dict(_AXIS), "colorway": PALETTE}
    for k, v in kw.items():
        base[k] = {**base[k], **v} if isinstance(v, dict) and isinstance(base.get(k), dict) else v
    return base


def _num(v: Any) -> float:
    return float(v) if v is not None else 0.0


def _x(v: Any) -> Any:
    return v.strftime("%Y-%m-%d %H:%M") if isinstance(v, datetime) else v


def empty(chart: Chart, message: str) -> dict:
    return {"data": [], "layout": _layout(chart, xaxis={"visible": False}, yaxis={"visible": False}, annotations=[
        {"text": message, "showarrow": False, "font": {"size": 14, "color": "#888"}, "xref": "paper",
         "yref": "paper", "x": 0.5, "y": 0.5}])}


def time_series(chart: Chart, res: QueryResult, grain_label: str, grain: int | None = None,
                window: tuple[datetime, datetime] | None = None, counts: bool = False,
                earlier: QueryResult | None = None, earlier_label: str | None = None) -> dict:
    """Lines or stacked areas. Counts fill every bucket of the range without rows with 0 (no events is zero, and
    a line must not interpolate traffic across a gap); other measures leave a gap there. ``earlier``: the same
    series over the comparison period, drawn onto this one as dashed lines (stacked apart, for areas)."""
    if not res.rows:
        return empty(chart, "no data in this range")
    buckets = sorted({r[0] for r in res.rows})
    if grain and window and isinstance(buckets[0], datetime):
        from ..timeutil import floor_time

        t, grid = floor_time(window[0], grain), []
        while t < window[1] and len(grid) < 20_000:
            grid.append(t)
            t += timedelta(seconds=grain)
        buckets = sorted(set(grid) | set(buckets))
    missing = 0.0 if counts else None
    xs = [_x(b) for b in buckets]
    data = []
    if chart.color:
        by: dict[Any, dict[datetime, float]] = {}
        for b, s, v in res.rows:
            by.setdefault(s, {})[b] = _num(v)
        # biggest series at the bottom of the stack
        order = sorted(by, key=lambda s: -sum(by[s].values()))
        for i, s in enumerate(order):
            t = {"type": "scatter", "x": xs, "y": [by[s].get(b, missing) for b in buckets], "name": str(s),
                 "mode": "lines", "connectgaps": False,
                 "line": {"width": 0.5 if chart.type == "area" else 2, "color": PALETTE[i % len(PALETTE)]}}
            if chart.type == "area":
                t["stackgroup"] = "one"
            data.append(t)
    else:
        got = {r[0]: _num(r[1]) for r in res.rows}
        t = {"type": "scatter", "x": xs, "y": [got.get(b, missing) for b in buckets], "mode": "lines",
             "connectgaps": False, "name": chart.measure}
        if chart.type == "area":
            t["fill"] = "tozeroy"
        data.append(t)
    if earlier is not None:
        data += _earlier(chart, earlier, buckets, missing, earlier_label or "earlier", [t["name"] for t in data])
    return {"data": data, "layout": _layout(chart, hovermode="x unified", legend={"font": {"size": 11}},
                                            xaxis={"title": {"text": f"UTC, per {grain_label}"}, "type": "date"})}


def _earlier(chart: Chart, res: QueryResult, buckets: list, missing: Any, label: str, names: list[str]) -> list[dict]:
    """Dashed traces of the comparison period, one per series in the current series' order and colours."""
    by: dict[Any, dict[Any, float]] = {}
    for r in res.rows:
        by.setdefault(r[1] if chart.color else chart.measure, {})[r[0]] = _num(r[-1])
    out = []
    for i, name in enumerate(names):
        key = name if not chart.color else next((s for s in by if str(s) == name), None)
        got = by.get(key, {})
        t = {"type": "scatter", "x": [_x(b) for b in buckets], "y": [got.get(b, missing) for b in buckets],
             "name": f"{name}, {label}", "mode": "lines", "connectgaps": False, "legendgroup": "earlier",
             "meta": "earlier", "line": {"dash": "dash", "width": 1.5, "color": PALETTE[i % len(PALETTE)]}}
        if chart.type == "area" and chart.color:
            t["stackgroup"] = "earlier"  # stacked like the areas, apart from them: its top is the earlier total
            t["fill"] = "none"
        out.append(t)
    return out


def note(fig: dict, text: str) -> None:
    """A small grey line in the chart's top right corner."""
    fig["layout"].setdefault("annotations", []).append(
        {"text": text, "showarrow": False, "xref": "paper", "yref": "paper", "x": 1, "y": 1.02, "xanchor": "right",
         "yanchor": "bottom", "font": {"size": 11, "color": "#999"}})


def share(chart: Chart, res: QueryResult) -> dict:
    if not res.rows:
        return empty(chart, "no data in this range")
    rows = res.rows[: chart.limit]
    rest = sum(_num(r[1]) for r in res.rows[chart.limit:])
    labels, values = [str(r[0]) for r in rows], [_num(r[1]) for r in rows]
    if rest:
        labels.append("other")
        values.append(rest)
    pie = {"type": "pie", "labels": labels, "values": values, "hole": 0.45 if chart.type == "donut" else 0,
           "textinfo": "percent", "sort": False, "marker": {"colors": PALETTE},
           "hovertemplate": "%{label}: %{value:,.0f} (%{percent})<extra></extra>"}
    return {"data": [pie], "layout": _layout(chart, legend={"font": {"size": 11}})}


def bar(chart: Chart, res: QueryResult) -> dict:
    if not res.rows:
        return empty(chart, "no data in this range")
    rows = res.rows[: chart.limit]
    return {"data": [{"type": "bar", "x": [str(r[0]) for r in rows], "y": [_num(r[1]) for r in rows],
                      "marker": {"color": PALETTE[0]}}], "layout": _layout(chart)}


def funnel_values(chart: Chart, res: QueryResult) -> list[tuple[str, float, float]]:
    """(stage, value, % of the first stage) in the declared order; a stage without data is 0."""
    got = {str(r[0]): _num(r[1]) for r in res.rows}
    stages = chart.stages or []
    first = got.get(stages[0], 0.0) if stages else 0.0
    return [(s, got.get(s, 0.0), (100.0 * got.get(s, 0.0) / first) if first else 0.0) for s in stages]


def funnel(chart: Chart, res: QueryResult) -> dict:
    vals = funnel_values(chart, res)
    if not any(v for _, v, _ in vals):
        return empty(chart, "no data in this range")
    trace = {"type": "bar", "x": [s for s, _, _ in vals], "y": [p for _, _, p in vals],
             "customdata": [v for _, v, _ in vals], "text": [f"{p:.1f}%" for _, _, p in vals],
             "textposition": "auto", "marker": {"color": PALETTE[: len(vals)]},
             "hovertemplate": "%{x}: %{customdata:,.1f} (%{y:.1f}% of the first stage)<extra></extra>"}
    return {"data": [trace], "layout": _layout(chart, yaxis={"title": {"text": f"% of {vals[0][0]}"},
                                                             "range": [0, 105]})}


def heatmap(chart: Chart, res: QueryResult) -> dict:
    if not res.rows:
        return empty(chart, "no data in this range")
    xs = sorted({str(r[0]) for r in res.rows})
    ys = sorted({str(r[1]) for r in res.rows})
    z = {(str(x), str(y)): _num(v) for x, y, v in res.rows}
    trace = {"type": "heatmap", "x": xs, "y": ys, "z": [[z.get((x, y)) for x in xs] for y in ys],
             "colorscale": "Blues", "reversescale": True, "hovertemplate": "%{x} × %{y}: %{z:,.0f}<extra></extra>"}
    return {"data": [trace], "layout": _layout(chart, xaxis={"tickangle": -45, "tickfont": {"size": 10}},
                                               yaxis={"tickfont": {"size": 10}})}


def _plain(x: float, sign: bool = False) -> str:
    """A number as a KPI's note writes it: thousands separated; 3 decimals below 10, 2 below 1,000 (a rate of 20.05
    is not 20), none above, trailing zeros dropped."""
    places = 3 if abs(x) < 10 else 2 if abs(x) < 1000 else 0
    text = f"{x:{'+' if sign else ''},.{places}f}"
    text = text.rstrip("0").rstrip(".") if places else text
    return text if text not in ("-0", "+0", "") else "0"


def kpi(chart: Chart, value: Any, previous: Any = None, label: str | None = None) -> dict:
    """The number; compared with ``previous`` (of the period ``label``): the change in percent, and above it the
    change itself and the earlier value."""
    v = _num(value)
    ind: dict[str, Any] = {"type": "indicator", "mode": "number", "value": v,
                           "number": {"valueformat": ",.3~f" if abs(v) < 10 else ",.0f"}}
    if previous is not None and value is not None:
        p = _num(previous)
        if p:
            ind.update(mode="number+delta", delta={"reference": p, "relative": True, "valueformat": "+.1%"})
        ind["title"] = {"text": f"{_plain(v - p, sign=True)} vs {label or 'earlier'} ({_plain(p)})",
                        "font": {"size": 12, "color": "#666"}}
        return {"data": [ind], "layout": _layout(chart, margin={"l": 10, "r": 10, "t": 34, "b": 6})}
    return {"data": [ind], "layout": _layout(chart, margin={"l": 10, "r": 10, "t": 10, "b": 10})}


def scatter(chart: Chart, res: QueryResult) -> dict:
    """One marker per value of the chart's dimension at (x, y); the value on hover."""
    rows = [r for r in res.rows if r[1] is not None and r[2] is not None]
    if not rows:
        return empty(chart, "no data in this range")
    trace = {"type": "scatter", "mode": "markers", "x": [_num(r[1]) for r in rows], "y": [_num(r[2]) for r in rows],
             "text": [str(r[0]) for r in rows], "marker": {"color": PALETTE[0], "size": 9, "opacity": 0.75},
             "hovertemplate": "%{text}: x %{x:,.4~f}, y %{y:,.4~f}<extra></extra>"}
    return {"data": [trace], "layout": _layout(chart, xaxis={"title": {"text": chart.x}},
                                               yaxis={"title": {"text": chart.y}})}


def table(chart: Chart, res: QueryResult) -> dict:
    cols = res.columns
    cells = [[_x(r[i]) for r in res.rows] for i in range(len(cols))]
    return {"data": [{"type": "table", "header": {"values": cols, "fill": {"color": "#EBF0F8"}},
                      "cells": {"values": cells}}], "layout": _layout(chart, margin={"l": 10, "r": 10, "t": 10, "b": 10})}
