"""The explore page (``/explore/?mart=…``): any mart, no configuration. A total with its change, the measure over
time at a chosen grain (the comparison period dashed), a leaderboard per dimension (share of total, change;
search; click a row to filter by it), a pivot, and the raw events behind what is selected (click a point of the
series for its bucket's). The whole view is in the URL; every table has its CSV.
"""

from __future__ import annotations

import csv
import io
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import dash
import flask
from dash import ALL, Input, Output, State, ctx, dcc, html

from .. import values
from ..errors import ProjectError
from ..timeutil import COMPARISONS, grain_label, parse_time
from ..warehouse import QueryResult
from . import figures
from .explore import Explorer, change
from .query import MAX_FILTER_VALUES, Cache, data_version

if TYPE_CHECKING:
    from ..workspace import Workspace

BASE = "/explore/"
PAGE = 50  # events per drill page
SORTS = {"value": "the measure", "delta": "the change", "pct": "the change in %", "name": "name"}
CSS = """
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;background:#f4f5f7;color:#222}
.x-bar{display:flex;flex-wrap:wrap;gap:10px;align-items:flex-end;padding:10px 24px;background:#fff;
 border-bottom:1px solid #e3e3e3;position:sticky;top:0;z-index:10}
.x-bar label{display:flex;flex-direction:column;font-size:12px;color:#555}
.x-bar input{padding:6px;border:1px solid #ccc;border-radius:4px;width:140px}
.x-dd{min-width:170px}
.x-main{padding:12px 24px}.x-card{background:#fff;border-radius:6px;box-shadow:0 1px 2px rgba(0,0,0,.08);
 padding:10px 12px;margin-bottom:12px}
.x-total{font-size:30px;font-weight:600}.x-change{font-size:14px;color:#555;margin-left:10px}
.x-boards{display:flex;flex-wrap:wrap;gap:12px}.x-board{background:#fff;border-radius:6px;padding:8px;
 box-shadow:0 1px 2px rgba(0,0,0,.08);width:380px}
.x-board h4{margin:2px 0 6px;display:flex;justify-content:space-between}.x-board input{width:95%;padding:4px;
 margin-bottom:6px;border:1px solid #ccc;border-radius:4px}
.x-chips span{display:inline-block;background:#e8eef7;border-radius:10px;padding:2px 10px;margin:0 6px 4px 0;
 font-size:12px}
a.x-csv{font-size:12px;color:#4C78A8;font-weight:400}
.x-table{border-collapse:collapse;font-size:13px;width:100%}.x-table th{text-align:left;color:#555;font-weight:600;
 border-bottom:1px solid #ddd;padding:3px 6px}.x-table td{padding:3px 6px;border-bottom:1px solid #f0f0f0;
 white-space:nowrap;max-width:260px;overflow:hidden;text-overflow:ellipsis}
.x-table td[data-col=measure],.x-table td[data-col=share],.x-table td[data-col=change]{text-align:right}
.x-clickable tbody tr{cursor:pointer}.x-clickable tbody tr:hover{background:#f0f4fa}
tr.x-on{background:#dbe7f6;font-weight:600}
"""


def _fmt(t: datetime | None) -> str:
    return t.strftime("%Y-%m-%d %H:%M") if t else ""


def _time(text: Any) -> datetime | None:
    try:
        return parse_time(str(text).strip(), "time") if text and str(text).strip() else None
    except Exception:  # a hand-edited URL: the default range
        return None


def _pct(v: float | None) -> str:
    return "" if v is None else f"{v:+.1f}%"


class ExploreApp:
    """One Dash app for every mart: the state (``mart``, range, measure, grain, comparison, filters, the drilled
    bucket, pivot axes) lives in the URL's query string."""

    def __init__(self, project: Workspace, server: flask.Flask, pool: ThreadPoolExecutor):
        self.project, self.pool = project, pool
        self.cfg = project.config
        self._ex: dict[str, Explorer] = {}
        self.cache = Cache(512)
        self._version_at: tuple[float, tuple] = (float("-inf"), ())
        self.app = dash.Dash(name="eventmart_explore", server=server, url_base_pathname=BASE,
                             title=f"{self.cfg.name} — explore", update_title=None, serve_locally=True)
        self.app.index_string = self.app.index_string.replace("{%css%}", "{%css%}<style>" + CSS + "</style>")
        self.app.layout = self.layout
        self._callbacks()
        server.add_url_rule(f"{BASE}csv/<kind>", "explore_csv", self.csv)

    # --- the state -------------------------------------------------------------------------------
    def explorer(self, mart: str) -> Explorer:
        if mart not in self._ex:
            wh = self.project.warehouse
            version = self._version

            def fetch(sql: str, params: dict) -> Any:
                key = (sql, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())))
                return self.cache.get(key, version(), lambda: wh.concurrent_fetch(sql, params))

            ex = Explorer(self.cfg, wh, mart, fetch)
            if not ex.measures:  # a SQL mart not built yet: its columns are known once it is
                return ex
            self._ex[mart] = ex
        return self._ex[mart]

    def _version(self) -> tuple:
        """What a cached answer depends on: the run ledger and the ingest log (as the dashboards' cache). Read at
        most every half second: one view asks it for each of its ~15 queries."""
        import time

        now = time.monotonic()
        if now - self._version_at[0] > 0.5:
            self._version_at = (now, data_version(self.project.warehouse))
        return self._version_at[1]

    def state(self, search: str | None) -> dict:
        """The view a query string asks for, every value checked against the mart (unknown ones dropped)."""
        import urllib.parse

        qs = urllib.parse.parse_qs((search or "").lstrip("?"))
        one = {k: v[0] for k, v in qs.items() if v}
        marts = list(self.cfg.marts)
        mart = one.get("mart") if one.get("mart") in marts else marts[0]
        ex = self.explorer(mart)
        st: dict[str, Any] = {"mart": mart, "from": _fmt(_time(one.get("from"))), "to": _fmt(_time(one.get("to"))),
                              # no measure at all (a SQL mart not built yet): each part says so
                              "measure": one.get("measure") if one.get("measure") in ex.measures else
                              (ex.measures or [""])[0],
                              "grain": one.get("grain") if one.get("grain") in ex.grains else None,
                              "compare": one.get("compare") if one.get("compare") in COMPARISONS else None,
                              "filters": {d: qs[d][:MAX_FILTER_VALUES] for d in ex.dimensions if qs.get(d)},
                              "rows": one.get("rows") if one.get("rows") in ex.dimensions else None,
                              "cols": one.get("cols") if one.get("cols") in [*ex.dimensions, "time"] else "time",
                              "drill": [one["drill_from"], one["drill_to"]] if _time(one.get("drill_from"))
                              and _time(one.get("drill_to")) else None,
                              "band": [one["band_from"], one["band_to"]] if _time(one.get("band_from"))
                              and _time(one.get("band_to")) else None,
                              "page": max(0, int(one["page"])) if one.get("page", "").isdigit() else 0,
                              "sort": one.get("sort") if one.get("sort") in SORTS else "value",
                              "find": {d[5:]: v for d, v in one.items() if d.startswith("find_")
                                       and d[5:] in ex.dimensions}}
        if st["grain"] is None:
            st["grain"] = next(iter(ex.grains))
        return st

    @staticmethod
    def search(st: dict) -> str:
        import urllib.parse

        pairs = [("mart", st["mart"])]
        for k in ("from", "to", "measure", "grain", "compare", "rows"):
            if st.get(k):
                pairs.append((k, st[k]))
        if st.get("sort", "value") != "value":
            pairs.append(("sort", st["sort"]))
        pairs += [(f"find_{d}", v) for d, v in sorted(st.get("find", {}).items())]
        if st.get("cols") and st["cols"] != "time":
            pairs.append(("cols", st["cols"]))
        for k in ("drill", "band"):
            if st.get(k):
                pairs += [(f"{k}_from", st[k][0]), (f"{k}_to", st[k][1])]
        if st.get("page"):
            pairs.append(("page", str(st["page"])))
        for d, vs in sorted(st["filters"].items()):
            pairs += [(d, v) for v in vs]
        return "?" + urllib.parse.urlencode(pairs)

    def window(self, st: dict) -> tuple[datetime, datetime] | None:
        ex = self.explorer(st["mart"])
        span = ex.span()
        start, end = _time(st["from"]), _time(st["to"])
        if span is None and (start is None or end is None):
            return None
        start, end = start or span[0], end or span[1]
        return (start, end) if start < end else None

    # --- layout ------------------------------------------------------------------------------------
    def layout(self) -> html.Div:
        def dd(id_: str, label: str, **kw: Any) -> html.Label:
            return html.Label([label, dcc.Dropdown(id=id_, className="x-dd", **kw)])

        return html.Div([
            dcc.Location(id="url", refresh=False),
            dcc.Store(id="state"),
            html.Div([
                dd("x-mart", "mart", options=list(self.cfg.marts), clearable=False),
                html.Label(["from (UTC)", dcc.Input(id="x-from", type="text", debounce=True, style={"width": "150px"},
                                                   placeholder="YYYY-MM-DD HH:MM")]),
                html.Label(["to (UTC)", dcc.Input(id="x-to", type="text", debounce=True, style={"width": "150px"},
                                                 placeholder="YYYY-MM-DD HH:MM")]),
                dd("x-measure", "measure", clearable=False),
                dd("x-grain", "grain", clearable=False),
                dd("x-compare", "compare with", options=[{"label": "nothing", "value": "none"}] + [
                    {"label": v, "value": k} for k, v in COMPARISONS.items()], clearable=False),
                dd("x-sort", "rank by", options=[{"label": label, "value": k} for k, label in SORTS.items()],
                   clearable=False),
                html.Button("Clear filters", id="x-clear"),
            ], className="x-bar"),
            html.Div([
                html.Div(id="x-chips", className="x-chips"),
                html.Div([html.Span(id="x-total", className="x-total"), html.Span(id="x-change", className="x-change"),
                          html.Div(id="x-note", style={"color": "#8a6d3b", "fontSize": "13px"})], className="x-card"),
                html.Div([html.A("CSV", id="x-series-csv", className="x-csv"),
                          dcc.Graph(id="x-series", config={"displaylogo": False}, style={"height": "340px"})],
                         className="x-card"),
                html.Div(id="x-boards", className="x-boards"),
                html.Div([html.H4(["Pivot ", html.A("CSV", id="x-pivot-csv", className="x-csv")]),
                          html.Div([dd("x-rows", "rows"), dd("x-cols", "columns", clearable=False)],
                                   style={"display": "flex", "gap": "10px"}),
                          html.Div(id="x-pivot", style={"overflowX": "auto"})], className="x-card"),
                html.Div([html.H4(["Events ", html.Span(id="x-drill-what", style={"fontWeight": 400}),
                                   html.A(" CSV", id="x-events-csv", className="x-csv")]),
                          html.Div([html.Button("◀ previous page", id="x-prev"), html.Span(id="x-page"),
                                    html.Button("next page ▶", id="x-next")], style={"display": "flex", "gap": "8px"}),
                          html.Div(id="x-events", style={"overflowX": "auto"})], className="x-card"),
            ], className="x-main"),
        ])

    # --- callbacks -----------------------------------------------------------------------------
    def _callbacks(self) -> None:
        controls = ["x-mart", "x-from", "x-to", "x-measure", "x-grain", "x-compare", "x-rows", "x-cols", "x-sort"]

        @self.app.callback(
            [Output(c, "value") for c in controls] + [Output("x-measure", "options"), Output("x-grain", "options"),
                                                      Output("x-rows", "options"), Output("x-cols", "options"),
                                                      Output("url", "search"), Output("state", "data")],
            [Input("url", "search")] + [Input(c, "value") for c in controls]
            + [Input({"type": "row", "dim": ALL, "value": ALL}, "n_clicks"), Input({"type": "find", "dim": ALL}, "value"),
               Input("x-series", "clickData"),
               Input("x-clear", "n_clicks"), Input("x-prev", "n_clicks"), Input("x-next", "n_clicks")],
            [State({"type": "find", "dim": ALL}, "id"), State("state", "data")],
        )
        def sync(search, mart, start, end, measure, grain, compare, rows, cols, sort, _rows, finds, click, _c, _p,
                 _n, find_ids, old):
            trig = ctx.triggered_id
            if trig is None or trig == "url" or old is None:
                st = self.state(search)
            else:
                st = dict(old)
                if trig == "x-mart" and mart != st["mart"]:
                    st = self.state(f"?mart={mart}")
                elif trig in controls:
                    key = {"x-from": "from", "x-to": "to", "x-measure": "measure", "x-grain": "grain",
                           "x-compare": "compare", "x-rows": "rows", "x-cols": "cols", "x-sort": "sort"}[trig]
                    value = {"x-from": start, "x-to": end, "x-measure": measure, "x-grain": grain,
                             "x-compare": compare, "x-rows": rows, "x-cols": cols, "x-sort": sort}[trig]
                    st[key] = (value if value != "none" else None) if key != "from" and key != "to" else \
                        _fmt(_time(value))
                    st = self.state(self.search(st))  # checked again
                elif trig == "x-clear":
                    st.update(filters={}, drill=None, page=0)
                elif trig in ("x-prev", "x-next"):
                    st["page"] = max(0, st.get("page", 0) + (1 if trig == "x-next" else -1))
                elif trig == "x-series" and click and click.get("points"):
                    self.drill_point(st, click["points"][0])
                elif isinstance(trig, dict) and trig.get("type") == "find":
                    text = finds[find_ids.index(trig)] or ""
                    st["find"] = {**{k: v for k, v in st.get("find", {}).items() if k != trig["dim"]},
                                  **({trig["dim"]: text} if text.strip() else {})}
                    st = self.state(self.search(st))
                elif isinstance(trig, dict) and trig.get("type") == "row" and ctx.triggered[0].get("value"):
                    self.toggle(st, trig["dim"], trig["value"])  # a row drawn anew has no clicks: not this
            if old is not None and st == old:  # an echo (the URL or the controls set from the state): no loop
                raise dash.exceptions.PreventUpdate
            ex = self.explorer(st["mart"])
            out = [st["mart"], st["from"], st["to"], st["measure"], st["grain"], st["compare"] or "none",
                   st["rows"], st["cols"], st["sort"]]
            return out + [ex.measures, list(ex.grains), ex.dimensions, ["time", *ex.dimensions], self.search(st), st]

        @self.app.callback(
            [Output("x-total", "children"), Output("x-change", "children"), Output("x-note", "children"),
             Output("x-series", "figure"), Output("x-boards", "children"), Output("x-pivot", "children"),
             Output("x-events", "children"), Output("x-drill-what", "children"), Output("x-page", "children"),
             Output("x-chips", "children"), Output("x-series-csv", "href"), Output("x-pivot-csv", "href"),
             Output("x-events-csv", "href")],
            [Input("state", "data")],
        )
        def render(st):
            if st is None:
                raise dash.exceptions.PreventUpdate
            q = self.search(st)
            hrefs = [f"{BASE}csv/{k}{q}" for k in ("series", "pivot", "events")]
            window = self.window(st)
            if window is None:
                empty = figures.empty(_CHART, "no data: run the mart (eventmart backfill), or widen the range")
                return ["–", "", "", empty, [], "", "", "", "", self.chips(st), *hrefs]
            notes: list[str] = []

            def part(f: Any, fallback: Any) -> Any:
                try:
                    return f(st, window)
                except ProjectError as e:  # a SQL mart that cannot answer this view: say why, draw the rest
                    notes.append(str(e))
                    return fallback(str(e))

            (total, change), fig, boards, pivot, (events, what, page) = self.pool.map(lambda fb: part(*fb), (
                (self.total, lambda m: ("–", "")), (self.series_figure, lambda m: figures.empty(_CHART, m)),
                (self.boards, lambda m: []), (self.pivot_table, lambda m: html.Div(m, style={"color": "#888"})),
                (self.events_table, lambda m: (html.Div(m), "", ""))))
            note = "; ".join(dict.fromkeys(notes))
            return [total, change, note, fig, boards, pivot, events, what, page, self.chips(st), *hrefs]

    def toggle(self, st: dict, dim: str, value: Any) -> None:
        """A leaderboard row clicked: filter by its value, or stop filtering by it."""
        chosen = list(st["filters"].get(dim, []))
        v = str(value)
        chosen = [x for x in chosen if x != v] if v in chosen else [*chosen, v]
        st["filters"] = {**st["filters"], dim: chosen} if chosen else {k: x for k, x in st["filters"].items()
                                                                       if k != dim}
        st["page"] = 0

    def drill_point(self, st: dict, point: dict) -> None:
        """A point of the series clicked: the events of its bucket."""
        t = _time(point.get("x"))
        if t is None:
            return
        g = self.explorer(st["mart"]).grain(st["grain"])
        st["drill"], st["page"] = [_fmt(t), _fmt(t + timedelta(seconds=g))], 0

    def chips(self, st: dict) -> list:
        chips = [html.Span(f"{d}: {', '.join(vs)}") for d, vs in sorted(st["filters"].items())]
        if st.get("drill"):
            chips.append(html.Span(f"events of {st['drill'][0]} – {st['drill'][1]}"))
        return chips

    # --- the parts of the page ---------------------------------------------------------------------
    def total(self, st: dict, window: tuple[datetime, datetime]) -> tuple[str, str]:
        ex = self.explorer(st["mart"])
        v = ex.total(st["measure"], window, st["filters"])
        text = f"{st['measure']}: {_number(v) or '–'}"
        if not st["compare"]:
            return text, ""
        from ..timeutil import comparison

        p = ex.total(st["measure"], comparison(window, st["compare"]), st["filters"])
        if v is None or p is None:
            return text, f"nothing to compare with in {COMPARISONS[st['compare']]}"
        d, pct = change(v, p)
        return text, (f"{'+' if d >= 0 else '-'}{_number(abs(d))} ({_pct(pct) or 'new'})"
                      f" vs {COMPARISONS[st['compare']]} ({_number(p)})")

    def series_figure(self, st: dict, window: tuple[datetime, datetime]) -> dict:
        ex = self.explorer(st["mart"])
        g = ex.grain(st["grain"])
        res = ex.series(st["measure"], window, g, st["filters"])
        earlier = ex.compared_series(st["measure"], window, g, st["compare"], st["filters"]) if st["compare"] else None
        chart = _CHART.model_copy(update={"measure": st["measure"]})
        counts = ex.metric(st["measure"]).counts
        fig = figures.time_series(chart, res, grain_label(g), g, window, counts, earlier,
                                  COMPARISONS.get(st["compare"] or ""))
        shapes = []
        for span, colour in ((st.get("band"), "rgba(228,87,86,0.15)"), (st.get("drill"), "rgba(76,120,168,0.15)")):
            if span:
                shapes.append({"type": "rect", "xref": "x", "yref": "paper", "x0": span[0], "x1": span[1], "y0": 0,
                               "y1": 1, "fillcolor": colour, "line": {"width": 0}})
        fig["layout"]["shapes"] = shapes
        return fig

    def boards(self, st: dict, window: tuple[datetime, datetime]) -> list:
        ex = self.explorer(st["mart"])
        out = []
        for dim in ex.dimensions:
            try:
                b = ex.leaderboard(dim, st["measure"], window, st["filters"], st["compare"], st["find"].get(dim),
                                   st["sort"] if st["compare"] or st["sort"] in ("value", "name") else "value",
                                   limit=10)
            except ProjectError as e:  # this measure cannot be ranked by this dimension (a SQL mart): say so
                out.append(html.Div([html.H4(dim), html.Div(str(e), style={"color": "#888", "fontSize": 12})],
                                    className="x-board"))
                continue
            chosen = set(st["filters"].get(dim, []))
            head = [dim, st["measure"], "% of total"] + (["change"] if st["compare"] else [])
            rows = []
            for r in b.rows:
                text = "" if r.value is None else values.text(r.value)
                cells = [("value", text), ("measure", _number(r.current)),
                         ("share", "" if r.share is None else f"{r.share:.1f}")]
                if st["compare"]:
                    cells.append(("change", _pct(r.pct)))
                # a NULL value cannot be filtered by (an IN list never matches it): its row is not clickable
                rows.append(html.Tr([html.Td(v, **{"data-col": k}) for k, v in cells],
                                    id={"type": "row", "dim": dim, "value": text} if r.value is not None else None,
                                    n_clicks=0, className="x-on" if text in chosen else None))
            table = html.Table([html.Thead(html.Tr([html.Th(h) for h in head])), html.Tbody(rows)],
                               className="x-table x-clickable")
            more = f" · {b.count:,} values" + (" (the biggest 10,000 ranked)" if b.truncated else "")
            find = dcc.Input(id={"type": "find", "dim": dim}, type="search", debounce=True, value=st["find"].get(dim),
                             placeholder=f"search {dim}")
            out.append(html.Div([html.H4([dim, html.Span(more, style={"fontWeight": 400, "fontSize": 12})]), find, table,
                                 html.A("CSV", className="x-csv", href=f"{BASE}csv/board-{dim}{self.search(st)}")],
                                className="x-board"))
        return out

    def pivot_table(self, st: dict, window: tuple[datetime, datetime]) -> Any:
        ex = self.explorer(st["mart"])
        if not st.get("rows"):
            return html.Div("choose the rows' dimension", style={"color": "#888"})
        res = ex.pivot(st["measure"], st["rows"], st["cols"], window, ex.grain(st["grain"]), st["filters"]).table()
        return self._table("pivot", res)

    def events_table(self, st: dict, window: tuple[datetime, datetime]) -> tuple[Any, str, str]:
        ex = self.explorer(st["mart"])
        w = (_time(st["drill"][0]), _time(st["drill"][1])) if st.get("drill") else window
        try:
            d = ex.drill(w, st["filters"], PAGE, st.get("page", 0) * PAGE)
        except ProjectError as e:
            return html.Div(str(e), style={"color": "#888"}), "", ""
        what = f"behind {_fmt(w[0])} – {_fmt(w[1])}" + (f", filtered by {', '.join(sorted(st['filters']))}"
                                                       if st["filters"] else "")
        first = d.offset + 1 if d.rows else 0
        return (self._table("events", QueryResult(d.columns, d.rows)), what,
                f"{first:,}–{d.offset + len(d.rows):,} of {d.total:,}")

    @staticmethod
    def _table(id_: str, res: Any) -> html.Table:
        return html.Table([html.Thead(html.Tr([html.Th(c) for c in res.columns])),
                           html.Tbody([html.Tr([html.Td(_cell(v), **{"data-col": str(i)}) for i, v in enumerate(r)])
                                       for r in res.rows])], id=f"x-{id_}-table", className="x-table")

    # --- CSV ----------------------------------------------------------------------------------------
    def csv(self, kind: str) -> flask.Response:
        st = self.state(flask.request.query_string.decode())
        window = self.window(st)
        ex = self.explorer(st["mart"])
        res = QueryResult([], [])
        if window is not None:
            if kind == "series":
                g = ex.grain(st["grain"])
                res = ex.series(st["measure"], window, g, st["filters"])
                if st["compare"]:
                    prev = {r[0]: r[1] for r in ex.compared_series(st["measure"], window, g, st["compare"],
                                                                   st["filters"]).rows}
                    res = QueryResult([*res.columns, "compare_value"], [(*r, prev.get(r[0])) for r in res.rows])
            elif kind == "pivot" and st.get("rows"):
                res = ex.pivot(st["measure"], st["rows"], st["cols"], window, ex.grain(st["grain"]),
                               st["filters"]).table()
            elif kind == "events":
                w = (_time(st["drill"][0]), _time(st["drill"][1])) if st.get("drill") else window
                d = ex.drill(w, st["filters"], 1000, st.get("page", 0) * PAGE)
                res = QueryResult(d.columns, d.rows)
            elif kind.startswith("board-") and kind[6:] in ex.dimensions:
                b = ex.leaderboard(kind[6:], st["measure"], window, st["filters"], st["compare"],
                                   st["find"].get(kind[6:]), st["sort"] if st["compare"] else "value", limit=10_000)
                res = b.table()
            else:
                flask.abort(404)
        out = io.StringIO()
        w = csv.writer(out)
        w.writerow(res.columns)
        w.writerows([_fmt(v) if isinstance(v, datetime) else values.text(v) for v in r] for r in res.rows)
        return flask.Response(out.getvalue(), mimetype="text/csv",
                              headers={"Content-Disposition": f'attachment; filename="{st["mart"]}-{kind}.csv"'})


def _cell(v: Any) -> str:
    if isinstance(v, datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return "" if v is None else values.text(v)


def _number(v: Any) -> str:
    """A leaderboard's figure: whole numbers with separators, others to 6 significant digits."""
    if v is None:
        return ""
    f = float(v)
    return f"{int(f):,}" if f == int(f) and abs(f) < 1e15 else f"{f:,.6g}"


def _chart():
    from ..config import Chart

    return Chart(type="line", mart="_", measure="value", height=320)


_CHART = _chart()

__all__ = ["BASE", "ExploreApp"]
