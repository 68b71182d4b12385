"""The dashboards: one Dash app per dashboard of the project file, mounted on the server's Flask app
(server/web.py).

State lives in the URL (``/d/<dashboard>/?from=…&to=…&item_topic=…``): a link restores the view.
Every interaction sends one state to the server, which answers all charts from the warehouse
(filters pushed down, results cached per data version, charts queried in parallel).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import dash
import flask
from dash import Input, Output, dcc, html

from .. import values
from ..config import Dashboard, locate
from ..timeutil import COMPARISONS, grain_label, parse_last, parse_time
from ..warehouse import QueryResult
from . import figures
from .explore import change
from .query import DashboardQueries, EmptyRange, State

if TYPE_CHECKING:
    from ..workspace import Workspace

CLICKABLE = ("pie", "donut", "bar", "heatmap", "scatter")
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#222}
.em-head{padding:14px 24px 6px}.em-head h1{font-size:22px;margin:0 0 4px}.em-head p{margin:0;color:#555}
.em-fresh{color:#666;font-size:13px;margin-top:6px}
.em-filters{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-end;padding:10px 24px;background:#fff;
 border-top:1px solid #e3e3e3;border-bottom:1px solid #e3e3e3;position:sticky;top:0;z-index:10}
.em-filter{display:flex;flex-direction:column;font-size:12px;color:#555;min-width:170px}
.em-filter input{padding:6px;border:1px solid #ccc;border-radius:4px;font-size:13px;width:150px}
.em-dd{min-width:220px;max-width:420px}
.em-row{display:flex;flex-wrap:wrap;gap:12px;padding:12px 24px 0}
.em-card{background:#fff;border-radius:6px;box-shadow:0 1px 2px rgba(0,0,0,.08);min-width:300px;position:relative}
.em-card.em-kpi{min-width:150px}
.em-card-head{display:flex;justify-content:space-between;align-items:baseline;gap:8px;padding:8px 12px 0}
.em-title{font-size:15px;font-weight:600;color:#2a3f5f;overflow-wrap:anywhere}
.em-approx{font-weight:400;color:#8a6d3b;font-size:12px}
.em-csv{font-size:12px;color:#4C78A8;white-space:nowrap}
button.em-reset{padding:7px 14px;border:1px solid #bbb;background:#fafafa;border-radius:4px;cursor:pointer}
"""


def _fmt(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t else ""


def _parse(text: str | None) -> datetime | None:
    if not text or not text.strip():
        return None
    try:
        return parse_time(text.strip(), "time")
    except Exception:
        return None


class DashboardApp:
    """One dashboard: its queries, its Dash app and its CSV route."""

    def __init__(self, name: str, dash_cfg: Dashboard, project: Workspace, server: flask.Flask,
                 pool: ThreadPoolExecutor):
        self.name, self.cfg, self.project, self.pool = name, dash_cfg, project, pool
        self.q = DashboardQueries(name, dash_cfg, project.config, project.warehouse,
                                  lambda key: locate(project.dir, key))
        self.q.check()
        # whether the viewer may follow links to the explore page (the server says no inside an embed link)
        self.explore_links: Callable[[], bool] = lambda: True
        self.dims = self.q.filter_dims
        self.charts = list(dash_cfg.charts)
        self.base = f"/d/{name}/"
        self.app = dash.Dash(name=f"eventmart_{name}", server=server, url_base_pathname=self.base,
                             title=dash_cfg.title, update_title=None, serve_locally=True)
        self.app.index_string = self.app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
        self.app.layout = self.layout
        self._callbacks()
        server.add_url_rule(f"{self.base}csv/<chart>", f"csv_{name}", self.csv)

    # --- layout ---------------------------------------------------------------------------------
    def layout(self) -> html.Div:
        filters: list[Any] = []
        span = self.q.span()  # the empty inputs show the range "all" means
        for f in self.cfg.filters:
            if f.dimension == "time":
                for i, label, hint in (("from", "from (UTC)", span and span[0]), ("to", "to (UTC)", span and span[1])):
                    filters.append(html.Label([f"{f.label or 'time'} {label}", dcc.Input(
                        id=f"f-{i}", type="text", placeholder=_fmt(hint) or "YYYY-MM-DD HH:MM", debounce=True)],
                        className="em-filter"))
            else:
                k = self.dims.index(f.dimension)
                filters.append(html.Label([f.label or f.dimension, dcc.Dropdown(
                    id=f"f-{k}", options=self.q.values(f.dimension), multi=True, placeholder="all",
                    className="em-dd")], className="em-filter"))
        filters.append(html.Label(["compare with", dcc.Dropdown(
            id="f-compare", options=[{"label": "nothing", "value": "none"}] + [
                {"label": label, "value": k} for k, label in COMPARISONS.items()],
            value=self.cfg.compare, clearable=False, className="em-dd")], className="em-filter"))
        filters.append(html.Button("Reset", id="reset", className="em-reset"))
        links = self.explore_links()
        rows = []
        for row in self.cfg.rows():
            cells = []
            for chart, size in row:
                i = self.charts.index(chart)
                c = self.cfg.charts[chart]
                # the title and the CSV link sit above the chart: nothing covers Plotly's own buttons, and a long
                # title wraps instead of running into its neighbour on a narrow screen
                title = c.title or chart
                if self.q.layer.approximate(self.q.metrics[chart]):  # an estimate is labelled as one
                    title = html.Span([title, html.Span(" ≈ approximate", className="em-approx",
                                                        title="an approximate distinct count (a sketch)")])
                cells.append(html.Div([
                    html.Div([html.Span(title, className="em-title"), html.Span([
                        html.Span([html.A("events", id=f"ev-{i}", className="em-csv",
                                          href=self.explore_href(chart, State()),
                                          title="the raw events behind this chart, on the explore page"), " · "],
                                  style=None if links else {"display": "none"}),
                        html.A("CSV", id=f"csv-{i}", className="em-csv", href=f"{self.base}csv/{chart}",
                               download=f"{chart}.csv")])], className="em-card-head"),
                    dcc.Graph(id=f"c-{i}", config={"displaylogo": False, "responsive": True},
                              style={"height": f"{c.height}px"}),
                ], className="em-card em-kpi" if c.type == "kpi" else "em-card", style={"flex": f"{size} 1 0"}))
            rows.append(html.Div(cells, className="em-row"))
        return html.Div([
            dcc.Location(id="url", refresh=False),
            dcc.Location(id="go", refresh=True),  # a time series' point clicked: its events on the explore page
            dcc.Store(id="state"),
            dcc.Interval(id="tick", interval=max(self.cfg.refresh, 1) * 1000, disabled=self.cfg.refresh == 0),
            html.Div([html.H1(self.cfg.title), html.P(self.cfg.description),
                      html.Div(id="fresh", className="em-fresh")], className="em-head"),
            html.Div(filters, className="em-filters"),
            *rows,
            html.Div(style={"height": "24px"}),
        ])

    # --- callbacks ------------------------------------------------------------------------------
    def _has_time(self) -> bool:
        return any(f.dimension == "time" for f in self.cfg.filters)

    def _callbacks(self) -> None:
        time_ids = ["f-from", "f-to"] if self._has_time() else []
        dim_ids = [f"f-{k}" for k in range(len(self.dims))]
        click_ids = [f"c-{i}" for i, c in enumerate(self.charts) if self.cfg.charts[c].type in CLICKABLE]
        n_t, n_d = len(time_ids), len(dim_ids)

        @self.app.callback(
            [Output(i, "value") for i in time_ids + dim_ids + ["f-compare"]]
            + [Output("url", "search"), Output("state", "data")] + [Output(i, "clickData") for i in click_ids],
            [Input("url", "search")] + [Input(i, "value") for i in time_ids + dim_ids + ["f-compare"]]
            + [Input(i, "clickData") for i in click_ids] + [Input("reset", "n_clicks")],
        )
        def sync(search, *args):
            values, compare = args[: n_t + n_d], args[n_t + n_d]
            clicks = args[n_t + n_d + 1: n_t + n_d + 1 + len(click_ids)]
            trig = dash.ctx.triggered_id
            if trig is None or trig == "url":
                st = State.from_query(search, self.dims)
                if not (search or "").strip("?"):
                    st = self.default_state()
            elif trig == "reset":
                st = self.default_state()
            else:
                st = State(start=_parse(values[0]) if n_t else None, end=_parse(values[1]) if n_t else None,
                           filters={d: list(v) for d, v in zip(self.dims, values[n_t:], strict=True) if v},
                           compare=compare if compare != self.cfg.compare else None)
                if trig in click_ids:
                    self.apply_click(st, trig, clicks[click_ids.index(trig)])
            out = ([_fmt(st.start), _fmt(st.end)] if n_t else []) + [st.filters.get(d, []) for d in self.dims] + [
                st.compare or self.cfg.compare]
            return out + [st.to_query(), self.state_data(st)] + [None] * len(click_ids)

        @self.app.callback(
            [Output(f"c-{i}", "figure") for i in range(len(self.charts))]
            + [Output(f"csv-{i}", "href") for i in range(len(self.charts))]
            + [Output(f"ev-{i}", "href") for i in range(len(self.charts))] + [Output("fresh", "children")],
            [Input("state", "data"), Input("tick", "n_intervals")],
        )
        def render(data, _tick):
            if data is None:
                raise dash.exceptions.PreventUpdate
            st = self.state_from_data(data)
            version = self.q.version()
            figs = self.figures(st, version)
            hrefs = [f"{self.base}csv/{c}{st.to_query()}" for c in self.charts] + [
                self.explore_href(c, st) for c in self.charts]
            fresh = self.q.fresh_until(version)
            line = f"data up to {fresh:%Y-%m-%d %H:%M:%S} UTC (the last event the marts hold)" if fresh \
                else "no mart has been run yet: eventmart backfill"
            return figs + hrefs + [line]

        series = [i for i, c in enumerate(self.charts) if self.cfg.charts[c].type in ("area", "line")]
        if series:
            @self.app.callback(Output("go", "href"), [Input(f"c-{i}", "clickData") for i in series],
                               [dash.State("state", "data")], prevent_initial_call=True)
            def drill(*args):
                trig = dash.ctx.triggered_id
                click, data = args[series.index(int(trig.split("-")[1]))], args[-1]
                if not click or not click.get("points") or data is None or not self.explore_links():
                    raise dash.exceptions.PreventUpdate
                return self.point_href(self.charts[int(trig.split("-")[1])], self.state_from_data(data),
                                       click["points"][0])

    def explore_href(self, chart: str, st: State, window: tuple[datetime, datetime] | None = None,
                     pinned: dict[str, str] | None = None) -> str:
        """The explore page on the chart's mart with the dashboard's range and filters (and the drilled bucket)."""
        import urllib.parse

        c = self.cfg.charts[chart]
        shape = self.q.layer.shape(c.mart)
        pairs = [("mart", c.mart)]
        if c.measure in shape.rollups:
            pairs.append(("measure", c.measure))
        if st.start:
            pairs.append(("from", _fmt(st.start)))
        if st.end:
            pairs.append(("to", _fmt(st.end)))
        how = self.q.comparing(st)
        if how:
            pairs.append(("compare", how))
        if window:
            pairs += [("drill_from", _fmt(window[0])), ("drill_to", _fmt(window[1]))]
        for d, vs in sorted({**st.filters, **{k: [v] for k, v in (pinned or {}).items()}}.items()):
            if d in shape.dimensions:
                pairs += [(d, v) for v in vs]
        return "/explore/?" + urllib.parse.urlencode(pairs)

    def point_href(self, chart: str, st: State, point: dict) -> str:
        """A time series' point: the events of its bucket (and of its series' value)."""
        t = _parse(str(point.get("x", ""))[:16])
        window = self.q.window(st)
        if t is None or window is None:
            raise dash.exceptions.PreventUpdate
        cq = self.q.chart_query(chart, st, window)
        c = self.cfg.charts[chart]
        g = cq.grain or 60
        pinned = {}
        if point.get("curveNumber") is not None:
            trace = self.figure(chart, st, window, self.q.version())["data"][point["curveNumber"]]
            how = self.q.comparing(st)
            name = str(trace.get("name", ""))
            if trace.get("meta") == "earlier" and how:  # a dashed point: the events of the earlier bucket it shows
                from ..timeutil import comparison_span, earlier

                t = earlier(t, how, comparison_span(window, g))
                name = name.removesuffix(f", {COMPARISONS[how]}")
            if c.color:
                pinned[c.color] = name
        return self.explore_href(chart, st, (t, t + timedelta(seconds=g)), pinned)

    def apply_click(self, st: State, chart_id: str, click: dict | None) -> None:
        """Clicking a slice, bar or cell filters the dashboard by its value(s)."""
        if not click or not click.get("points"):
            return
        c = self.cfg.charts[self.charts[int(chart_id.split("-")[1])]]
        p = click["points"][0]
        picks = {"pie": [(c.dimension, p.get("label"))], "donut": [(c.dimension, p.get("label"))],
                 "bar": [(c.dimension, p.get("x"))], "heatmap": [(c.x, p.get("x")), (c.y, p.get("y"))],
                 "scatter": [(c.dimension, p.get("text"))]}.get(c.type, [])
        for dim, value in picks:
            if dim in self.dims and value is not None and value != "other":
                st.filters[dim] = [str(value)]

    def default_state(self) -> State:
        st = State()
        for f in self.cfg.filters:
            if f.dimension == "time" and isinstance(f.default, str) and f.default.startswith("last "):
                span = self.q.span()
                if span:
                    st.start = span[1] - timedelta(seconds=parse_last(f.default))
            elif f.dimension != "time" and f.default:
                st.filters[f.dimension] = [f.default] if isinstance(f.default, str) else list(f.default)
        return st

    @staticmethod
    def state_data(st: State) -> dict:
        return {"start": _fmt(st.start), "end": _fmt(st.end), "filters": st.filters, "compare": st.compare}

    @staticmethod
    def state_from_data(d: dict) -> State:
        return State(_parse(d.get("start")), _parse(d.get("end")), dict(d.get("filters") or {}), d.get("compare"))

    # --- figures --------------------------------------------------------------------------------
    def figures(self, st: State, version: tuple | None = None) -> list[Any]:
        version = version or self.q.version()
        try:
            window = self.q.window(st, version)
        except EmptyRange as e:
            return [figures.empty(self.cfg.charts[c], str(e)) for c in self.charts]
        if window is None:
            return [figures.empty(self.cfg.charts[c], "no data yet: run the marts") for c in self.charts]
        return list(self.pool.map(lambda c: self.figure(c, st, window, version), self.charts))

    def figure(self, name: str, st: State, window: tuple[datetime, datetime], version: tuple) -> Any:
        chart = self.cfg.charts[name]
        cq, res = self.q.run(name, st, window, version)
        how = self.q.comparing(st)
        earlier = self.q.compared(name, st, window, cq.grain, version)
        if chart.type in ("area", "line"):
            fig = figures.time_series(chart, res, grain_label(cq.grain or 60), cq.grain,
                                      window, self.q.metrics[name].counts, earlier, how and COMPARISONS[how])
        elif chart.type in ("pie", "donut"):
            fig = figures.share(chart, res)
        elif chart.type == "bar":
            fig = figures.bar(chart, res)
        elif chart.type == "funnel":
            fig = figures.funnel(chart, res)
        elif chart.type == "heatmap":
            fig = figures.heatmap(chart, res)
        elif chart.type == "scatter":
            fig = figures.scatter(chart, res)
        elif chart.type == "kpi":
            fig = figures.kpi(chart, res.rows[0][0] if res.rows else None,
                              earlier.rows[0][0] if earlier and earlier.rows else None, how and COMPARISONS[how])
        else:
            fig = figures.table(chart, res)
        if cq.ignored:  # a SQL mart without that dimension: say so rather than pretend
            figures.note(fig, f"not filtered by {', '.join(cq.ignored)}")
        return fig

    # --- CSV and the read API -------------------------------------------------------------------
    def result(self, chart: str, st: State, window: tuple[datetime, datetime],
               grain: int | None = None) -> QueryResult:
        """A chart's rows as its CSV and the read API give them (a time series at ``grain``, when given): with a
        comparison, a KPI gains the earlier value, the change and the change in percent, and a series each
        bucket's earlier value."""
        version = self.q.version()
        cq, res = self.q.run(chart, st, window, version, grain)
        earlier = self.q.compared(chart, st, window, cq.grain, version)
        if earlier is None:
            return res
        if cq.grain is None:  # a KPI
            cur = res.rows[0][0] if res.rows else None
            prev = earlier.rows[0][0] if earlier.rows else None
            return QueryResult([*res.columns, "compare_value", "change", "change_pct"], [(cur, prev, *change(cur, prev))])
        keys = len(res.columns) - 1  # bucket (and series)
        prev_by = {tuple(r[:keys]): r[keys] for r in earlier.rows}
        return QueryResult([*res.columns, "compare_value"], [(*r, prev_by.get(tuple(r[:keys]))) for r in res.rows])

    # --- CSV ------------------------------------------------------------------------------------
    def csv(self, chart: str) -> flask.Response:
        if chart not in self.cfg.charts:
            flask.abort(404)
        st = State.from_query(flask.request.query_string.decode(), self.dims)
        try:
            window = self.q.window(st)
        except EmptyRange:
            window = None
        out = io.StringIO()
        w = csv.writer(out)
        if window is not None:
            res = self.result(chart, st, window)
            w.writerow(res.columns)
            w.writerows([_fmt(v) if isinstance(v, datetime) else values.text(v) for v in r] for r in res.rows)
        return flask.Response(out.getvalue(), mimetype="text/csv",
                              headers={"Content-Disposition": f'attachment; filename="{chart}.csv"'})


__all__ = ["DashboardApp"]
