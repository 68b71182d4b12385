"""The Alerts page (/alerts/): each rule's state, the alert history, and a rule replayed over recent data
(the same backtest as `eventmart alerts backtest`: series, bounds, anomalous buckets, incidents)."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import dash
import flask
from dash import Input, Output, dcc, html

from ..timeutil import fmt
from .store import EVENTS, STATE

if TYPE_CHECKING:
    from ..workspace import Workspace

def _now() -> datetime:
    from ..timeutil import utcnow

    return utcnow()


CELL = {"padding": "3px 8px", "borderBottom": "1px solid #eee", "fontSize": "13px", "textAlign": "left"}


def _table(cols: list[str], rows: list[tuple], row_class=None) -> html.Table:
    def cell(v: Any) -> Any:
        if isinstance(v, html.A):
            return v
        return fmt(v) if isinstance(v, datetime) else ("" if v is None else (f"{v:,.4g}" if isinstance(v, float) else str(v)))

    return html.Table([html.Thead(html.Tr([html.Th(c, style=CELL) for c in cols])),
                       html.Tbody([html.Tr([html.Td(cell(v), style=CELL) for v in r],
                                           className=row_class(r) if row_class else None) for r in rows])],
                      style={"borderCollapse": "collapse"})


class AlertsApp:
    def __init__(self, project: Workspace, server: flask.Flask):
        self.project = project
        self.wh = project.warehouse
        self.app = dash.Dash(name="eventmart_alerts", server=server, url_base_pathname="/alerts/",
                             title="eventmart — alerts", update_title=None, serve_locally=True)
        self.app.layout = self.layout
        self._callbacks()

    def layout(self) -> html.Div:
        rules = list(self.project.config.alerts)
        return html.Div([
            dcc.Interval(id="tick", interval=15_000),
            html.H2("Alerts", style={"margin": "12px 24px 4px"}),
            html.Div(id="state", style={"margin": "0 24px"}),
            html.H3("Silences", style={"margin": "16px 24px 4px"}),
            html.Div(id="silences", style={"margin": "0 24px"}),
            html.H3("Replay a rule", style={"margin": "16px 24px 4px"}),
            html.Div([dcc.Dropdown(id="rule", options=rules, value=rules[0] if rules else None, clearable=False,
                                   style={"width": "260px"}),
                      dcc.Dropdown(id="days", options=[{"label": f"last {d} day(s)", "value": d} for d in (1, 3, 7, 30)],
                                   value=3, clearable=False, style={"width": "160px"})],
                     style={"display": "flex", "gap": "8px", "margin": "0 24px"}),
            html.Div(id="replay-summary", style={"margin": "6px 24px"}),
            dcc.Graph(id="replay", config={"displaylogo": False}),
            html.H3("History", style={"margin": "16px 24px 4px"}),
            html.Div(id="history", style={"margin": "0 24px", "maxHeight": "480px", "overflow": "auto"}),
        ], style={"fontFamily": "system-ui, sans-serif"})

    def state_rows(self) -> list[tuple]:
        if not self.wh.concurrent_table_exists(STATE):
            return []
        return self.wh.concurrent_fetch(f"SELECT rule, series, state, since, consecutive, last_bucket, value, lower, "
                                        f"upper FROM {STATE} ORDER BY state DESC, rule, series").rows

    def silence_rows(self) -> list[tuple]:
        from .store import SILENCES

        if not self.wh.concurrent_table_exists(SILENCES):
            return []
        return self.wh.concurrent_fetch(f"SELECT rule, max(silenced_until), min(created_at) FROM {SILENCES} "
                                        "WHERE silenced_until > {{ t }} GROUP BY rule ORDER BY 2, 1",
                                        {"t": _now()}).rows

    def history_rows(self) -> list[tuple]:
        if not self.wh.concurrent_table_exists(EVENTS):
            return []
        return self.wh.concurrent_fetch(f"SELECT sent_at, rule, series, event, bucket, value, lower, upper, channel, "
                                        f"status, detail FROM {EVENTS} ORDER BY sent_at DESC LIMIT 200").rows

    def explore(self, row: tuple) -> Any:
        """A link from a history row to the explore page, the incident drawn as a band."""
        from .messages import explore_link

        rule = self.project.config.alerts.get(row[1])
        if rule is None or row[3] == "late":
            return ""
        since = self.incident_start(row[1], row[2], row[4]) if row[3] != "fired" else row[4]
        link = explore_link(self.project, rule, row[2], since, row[4], base="")
        return html.A("explore", href=link, className="explore") if link else ""

    def incident_start(self, rule: str, series: str, t: datetime) -> datetime | None:
        """When the incident a reminder or a recovery at ``t`` belongs to began: the last firing before it."""
        rows = self.wh.concurrent_fetch(
            f"SELECT max(bucket) FROM {EVENTS} WHERE rule = {{{{ r }}}} AND series = {{{{ s }}}} AND event = 'fired' "
            "AND bucket <= {{ t }}", {"r": rule, "s": series, "t": t}).rows
        return rows[0][0] if rows else None

    def replay(self, rule: str, days: int) -> tuple[dict, str]:
        """The backtest of ``rule`` over its last ``days`` of data, as a figure and a one-line summary."""
        from ..timeutil import floor_time
        from .judge import backtest, freshness_end
        from .series import rule_grain

        spec = self.project.config.alerts[rule]
        with self.project.lock:
            g = rule_grain(self.project, spec)
            end = freshness_end(self.project, spec, floor_time(_now(), g))
            if end <= datetime.min:
                return {"data": [], "layout": {"height": 120}}, "the rule's mart has not been run yet"
            v, incs = backtest(self.project, rule, end - timedelta(days=days), end)
        keys = v.series.keys
        if not keys:
            return {"data": [], "layout": {"height": 120}}, "no data in that range"
        j = max(range(len(keys)), key=lambda j: int(v.anomalous[:, j].sum()))
        xs = [fmt(t) for t in v.series.times]
        val, lo, hi, an = v.series.values[:, j], v.lower[:, j], v.upper[:, j], v.anomalous[:, j]

        def clean(a):
            return [None if x != x else float(x) for x in a]

        data = [
            {"type": "scatter", "x": xs, "y": clean(lo), "mode": "lines", "line": {"width": 0}, "showlegend": False,
             "hoverinfo": "skip"},
            {"type": "scatter", "x": xs, "y": clean(hi), "mode": "lines", "line": {"width": 0}, "fill": "tonexty",
             "fillcolor": "rgba(76,120,168,0.18)", "name": "expected"},
            {"type": "scatter", "x": xs, "y": clean(val), "mode": "lines", "line": {"color": "#2a3f5f"}, "name": keys[j]},
            {"type": "scatter", "x": [x for x, a in zip(xs, an, strict=True) if a],
             "y": [float(y) for y, a in zip(val, an, strict=True) if a], "mode": "markers",
             "marker": {"color": "#E45756", "size": 7}, "name": "anomalous"},
        ]
        shapes = [{"type": "rect", "xref": "x", "yref": "paper", "x0": fmt(i.start), "x1": fmt(i.end or v.series.times[-1]),
                   "y0": 0, "y1": 1, "fillcolor": "rgba(228,87,86,0.12)", "line": {"width": 0}}
                  for i in incs if i.series == keys[j]]
        fig = {"data": data, "layout": {"height": 380, "margin": {"l": 50, "r": 20, "t": 30, "b": 40},
                                        "plot_bgcolor": "white", "title": {"text": f"{rule} — {keys[j]}", "x": 0.01},
                                        "shapes": shapes, "xaxis": {"type": "date"}}}
        summary = (f"{len(incs)} incident(s) over {len(keys)} series in the last {days} day(s) "
                   f"({int(v.anomalous.sum())} anomalous of {v.anomalous.size:,} buckets); shown: {keys[j]}")
        return fig, summary

    def _callbacks(self) -> None:
        @self.app.callback(Output("state", "children"), Output("history", "children"), Output("silences", "children"),
                           Input("tick", "n_intervals"))
        def refresh(_n):
            state = _table(["rule", "series", "state", "since", "in a row", "last bucket", "value", "lower", "upper"],
                           self.state_rows(), lambda r: f"alert-{str(r[2]).lower()}")
            hist = _table(["at", "rule", "series", "event", "bucket", "value", "lower", "upper", "channel", "status",
                           "detail", ""], [(*r, self.explore(r)) for r in self.history_rows()],
                          lambda r: f"event-{r[3]}")
            quiet = self.silence_rows()
            silences = _table(["rule", "silenced until (UTC)", "set at"], quiet, lambda r: "silence") if quiet else \
                html.P("No rule is silenced (eventmart alerts silence RULE --for 2h).", style={"color": "#666"})
            return state, hist, silences

        @self.app.callback(Output("replay", "figure"), Output("replay-summary", "children"),
                           Input("rule", "value"), Input("days", "value"))
        def replay(rule, days):
            if not rule:
                raise dash.exceptions.PreventUpdate
            return self.replay(rule, int(days))
