"""The Runs page (/runs/): run history, a coverage calendar per mart, and a backfill that shows its plan first.

Reads go through the warehouse's thread-safe cursors; the backfill runs in a background thread
under the project's write lock, like the scheduler's jobs.
"""

from __future__ import annotations

import secrets
import threading
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import dash
import flask
from dash import Input, Output, State, dcc, html

from ..ledger import RUNS
from ..timeutil import fmt, merge_intervals, parse_time

if TYPE_CHECKING:
    from ..workspace import Workspace

# coverage calendar states, in legend order
STATES = {"done": ("#54A24B", 0), "re-opened by lookback": ("#4C78A8", 1), "failed": ("#E45756", 2),
          "missing": ("#D8D8D8", 3), "running": ("#EECA3B", 4)}
CALENDAR_WINDOWS = 400  # most recent windows per mart shown
MAX_WINDOWS = 10_000  # per preview/backfill from this page


CELL = {"padding": "3px 8px", "borderBottom": "1px solid #eee", "fontSize": "13px", "textAlign": "left"}


def grid(cols: list[str], body: list[html.Tr]) -> html.Table:
    """A plain table of the Runs page: a header of ``cols`` over the ``body`` rows."""
    return html.Table([html.Thead(html.Tr([html.Th(c, style=CELL) for c in cols])), html.Tbody(body)],
                      style={"borderCollapse": "collapse"})


class RunsApp:
    def __init__(self, project: Workspace, server: flask.Flask):
        self.project = project
        self.wh = project.warehouse
        self.base = "/runs/"
        self.app = dash.Dash(name="eventmart_runs", server=server, url_base_pathname=self.base,
                             title="eventmart — runs", update_title=None, serve_locally=True)
        self.app.layout = self.layout
        self.backfill_thread: threading.Thread | None = None
        self.backfill_note = ""
        self.previews: dict[str, list] = {}  # preview token -> the plan it showed
        self._callbacks()

    def layout(self) -> html.Div:
        jobs = list(self.project.config.schedules)
        marts = list(self.project.config.marts)
        return html.Div([
            dcc.Interval(id="tick", interval=5000),
            html.H2("Runs", style={"margin": "12px 24px 4px"}),
            html.Div([
                dcc.Dropdown(id="job", options=jobs, placeholder="all jobs", style={"width": "240px"}),
                dcc.Checklist(id="failed", options=[{"label": " failed only", "value": "failed"}], value=[]),
            ], style={"display": "flex", "gap": "16px", "alignItems": "center", "margin": "0 24px"}),
            html.Div(id="runs", style={"margin": "8px 24px", "maxHeight": "520px", "overflow": "auto"}),
            html.Div(id="bad-files", style={"margin": "8px 24px"}),
            *([html.H3("Kafka lag", style={"margin": "16px 24px 4px"}),
               html.Div(id="lag", style={"margin": "8px 24px"})] if self.kafka_sources else []),
            html.H3("Coverage", style={"margin": "16px 24px 4px"}),
            dcc.Graph(id="calendar", config={"displaylogo": False}),
            html.H3("Backfill", style={"margin": "16px 24px 4px"}),
            html.Div([
                dcc.Dropdown(id="bf-mart", options=marts, multi=True, placeholder="all marts",
                             style={"width": "320px"}),
                dcc.Input(id="bf-start", placeholder="start (default: mart start)", style={"width": "200px"}),
                dcc.Input(id="bf-end", placeholder="end (default: last event)", style={"width": "200px"}),
                html.Button("Preview", id="bf-preview"),
                html.Button("Run backfill", id="bf-run", disabled=True),
            ], style={"display": "flex", "gap": "8px", "margin": "0 24px", "alignItems": "center"}),
            html.Pre(id="bf-plan", style={"margin": "8px 24px", "maxHeight": "300px", "overflow": "auto"}),
            dcc.Store(id="bf-token"),
        ], style={"fontFamily": "system-ui, sans-serif"})

    # --- data -----------------------------------------------------------------------------------
    def runs(self, job: str | None, failed: bool) -> list[dict[str, Any]]:
        if not self.wh.concurrent_table_exists(RUNS):
            return []
        where, params = ["1 = 1"], {}
        if job:
            where.append("(trigger = {{ t }} OR trigger = {{ tl }})")
            params.update(t=f"schedule:{job}", tl=f"schedule:{job}:lookback")
        if failed:
            where.append("status = 'failed'")
        res = self.wh.concurrent_fetch(
            "SELECT started_at, trigger, mart, window_start, window_end, status, rows, seconds, attempt, error "
            f"FROM {self.wh.q(RUNS)} WHERE {' AND '.join(where)} ORDER BY started_at DESC LIMIT 500", params)
        out = []
        for r in res.rows:
            d = dict(zip(res.columns, r, strict=True))
            d["job"] = (d.pop("trigger") or "").removeprefix("schedule:")
            d["retries"] = max((d.pop("attempt") or 1) - 1, 0)
            for k in ("started_at", "window_start", "window_end"):
                d[k] = fmt(d[k]) if isinstance(d[k], datetime) else d[k]
            d["seconds"] = round(float(d["seconds"] or 0), 3)
            out.append(d)
        return out

    @staticmethod
    def table(rows: list[dict[str, Any]]) -> html.Table:
        cols = ["started_at", "job", "mart", "window_start", "window_end", "status", "rows", "seconds", "retries",
                "error"]
        body = [html.Tr([html.Td("" if r.get(c) is None else str(r.get(c)), style=CELL) for c in cols],
                        className=f"run-{r.get('status')}",
                        style={"background": "#fdecea"} if r.get("status") == "failed" else {})
                for r in rows]
        return grid(cols, body)

    def coverage(self) -> dict[str, list[tuple[datetime, datetime, str]]]:
        """Per mart, its recent chunk windows and the state of each."""
        runner = self.project.runner
        out: dict[str, list[tuple[datetime, datetime, str]]] = {}
        rows = self.wh.concurrent_fetch(
            f"SELECT mart, window_start, window_end, status, trigger, started_at FROM {self.wh.q(RUNS)} "
            "ORDER BY started_at").rows if self.wh.concurrent_table_exists(RUNS) else []
        for mart, cfg in self.project.config.marts.items():
            mine = [r for r in rows if r[0] == mart]
            ok = merge_intervals([(r[1], r[2]) for r in mine if r[3] == "ok"])
            lo = min([r[1] for r in mine], default=None)
            hi = max([r[2] for r in mine], default=None)
            if cfg.from_:
                span = self.wh.concurrent_fetch(f"SELECT min(_time), max(_time) FROM {self.wh.q(cfg.from_)}").rows \
                    if self.wh.concurrent_table_exists(cfg.from_) else [(None, None)]
                a, b = span[0]
                if a is not None:
                    a, b = runner.floor(mart, a), runner.next_boundary(mart, runner.floor(mart, b))
                    lo, hi = (a if lo is None else min(lo, a)), (b if hi is None else max(hi, b))
            if lo is None:
                out[mart] = []
                continue
            windows = list(runner.windows(mart, lo, hi))[-CALENDAR_WINDOWS:]
            cells = []
            for s, e in windows:
                touching = [r for r in mine if r[1] < e and r[2] > s]
                latest = touching[-1] if touching else None
                if latest is not None and latest[3] == "running":
                    state = "running"
                elif any(a <= s and e <= b for a, b in ok):
                    last_ok = [r for r in touching if r[3] == "ok"][-1:]
                    state = "re-opened by lookback" if last_ok and (last_ok[0][4] or "").endswith(":lookback") \
                        else "done"
                elif any(r[3] == "failed" for r in touching):
                    state = "failed"
                else:
                    state = "missing"
                cells.append((s, e, state))
            out[mart] = cells
        return out

    def calendar_figure(self) -> dict:
        """Coverage: one bar per window, spanning it, on an axis fitted to the windows; over long spans (more than
        62 days) a calendar of days instead, each day coloured by its worst window."""
        cov = self.coverage()
        marts = list(cov)
        cells = [(m, s, e, st) for m, cs in cov.items() for s, e, st in cs]
        layout = {"height": 120 + 40 * max(len(cov), 1), "margin": {"l": 140, "r": 20, "t": 10, "b": 40},
                  "plot_bgcolor": "white", "legend": {"orientation": "h"},
                  "yaxis": {"type": "category", "categoryarray": marts[::-1], "categoryorder": "array"}}
        if not cells:
            return {"data": [], "layout": {**layout, "annotations": [{"text": "no windows yet", "showarrow": False,
                                                                      "xref": "paper", "yref": "paper"}]}}
        lo, hi = min(c[1] for c in cells), max(c[2] for c in cells)
        if hi - lo > timedelta(days=62):
            return self._calendar(cells, marts, layout)
        pad = (hi - lo) * 0.02
        data = []
        for state, (color, _) in STATES.items():
            mine = [c for c in cells if c[3] == state]
            data.append({"type": "bar", "orientation": "h", "name": state, "y": [c[0] for c in mine],
                         "base": [c[1].isoformat() for c in mine],
                         "x": [(c[2] - c[1]).total_seconds() * 1000 for c in mine],
                         "text": [f"{c[0]} [{fmt(c[1])}, {fmt(c[2])}): {state}" for c in mine],
                         "hoverinfo": "text", "textposition": "none", "marker": {"color": color,
                                                                                "line": {"color": "white", "width": 1}}})
        return {"data": data, "layout": {**layout, "barmode": "overlay",
                                         "xaxis": {"type": "date", "range": [(lo - pad).isoformat(),
                                                                             (hi + pad).isoformat()]}}}

    @staticmethod
    def _calendar(cells: list[tuple], marts: list[str], layout: dict) -> dict:
        worst = {s: i for i, s in enumerate(["done", "re-opened by lookback", "running", "missing", "failed"])}
        days: dict[tuple[str, Any], str] = {}
        for m, s, e, st in cells:
            d = s.date()
            while datetime.combine(d, datetime.min.time()) < e:
                cur = days.get((m, d))
                if cur is None or worst[st] > worst[cur]:
                    days[(m, d)] = st
                d += timedelta(days=1)
        order = list(worst)
        xs = sorted({d for _, d in days})
        z = [[order.index(days[(m, d)]) if (m, d) in days else None for d in xs] for m in marts]
        n = len(order)
        scale = []
        for i, st in enumerate(order):
            scale += [[i / n, STATES[st][0]], [(i + 1) / n, STATES[st][0]]]
        text = [[f"{m} {d}: {days.get((m, d), '')}" for d in xs] for m in marts]
        return {"data": [{"type": "heatmap", "x": [d.isoformat() for d in xs], "y": marts, "z": z, "zmin": -0.5,
                          "zmax": n - 0.5, "colorscale": scale, "text": text, "hoverinfo": "text", "xgap": 1,
                          "ygap": 2, "colorbar": {"tickvals": list(range(n)), "ticktext": order}}],
                "layout": {**layout, "xaxis": {"type": "date"}}}

    # --- backfill ----------------------------------------------------------------------------------
    def plan(self, marts: list[str] | None, start: str | None, end: str | None) -> list[tuple[str, datetime, datetime]]:
        plan = self.project.plan_backfill(marts or None, start=_time(start), end=_time(end))
        if len(plan) > MAX_WINDOWS:
            raise ValueError(f"{len(plan):,} window(s): narrow the range or run `eventmart backfill` in a terminal "
                             f"(this page runs at most {MAX_WINDOWS:,} at a time)")
        return plan

    def preview(self, marts: list[str] | None, start: str | None, end: str | None) -> tuple[str, str | None]:
        """The plan as text, and the token that lets exactly this plan run."""
        plan = self.plan(marts, start, end)
        if not plan:
            return "nothing to backfill: no gaps in that range", None
        token = secrets.token_urlsafe(16)
        self.previews[token] = plan
        while len(self.previews) > 20:
            self.previews.pop(next(iter(self.previews)))
        lines = [f"{m} [{fmt(s)}, {fmt(e)})" for m, s, e in plan]
        return f"{len(plan)} window(s) will run:\n" + "\n".join(lines[:500]) + \
            (f"\n… and {len(lines) - 500} more" if len(lines) > 500 else ""), token

    def run_backfill(self, token: str | None) -> str:
        """Run a previewed plan in the background, one window at a time: other commands get the project between
        windows instead of waiting for the whole backfill."""
        plan = self.previews.pop(token, None) if token else None
        if plan is None:
            return "preview the backfill first: only a previewed plan runs"
        if self.backfill_thread and self.backfill_thread.is_alive():
            return "a backfill is running already; watch the table above"

        def work() -> None:
            ok = failed = 0
            for mart, s, e in plan:
                r = self.project.run_window(mart, s, e)
                ok, failed = ok + (r.status == "ok"), failed + (r.status != "ok")
            self.backfill_note = f"backfill finished: {ok} ok, {failed} failed"

        self.backfill_thread = threading.Thread(target=work, daemon=True, name="eventmart-backfill")
        self.backfill_thread.start()
        return f"backfill of {len(plan)} window(s) started; the runs appear above as they finish"

    @property
    def kafka_sources(self) -> list[str]:
        return [n for n, s in self.project.config.sources.items() if s.kafka is not None]

    def lag_table(self) -> html.Table:
        """Per Kafka source and partition: loaded up to (the warehouse's next offset), the end, the lag."""
        from ..errors import UserError
        from ..sources.kafka import lag

        rows = []
        for name in self.kafka_sources:
            try:
                for part, nxt, end, n in lag(self.wh, name, self.project.config.sources[name], concurrent=True):
                    rows.append([name, part, "-" if nxt is None else f"{nxt:,}", f"{end:,}", f"{n:,}"])
            except UserError as e:
                rows.append([name, "-", "-", "-", str(e)])
        return grid(["source", "partition", "loaded up to (next offset)", "end", "lag"],
                    [html.Tr([html.Td(str(v), style=CELL) for v in r], className="lag-row") for r in rows])

    def bad_files_table(self) -> list:
        """Files the sources could not read at all (tried again when they change); nothing when there are none."""
        from ..sources.bad_files import listing

        cols, rows = listing(self.wh, concurrent=True)
        if not rows:
            return []
        body = [html.Tr([html.Td("" if v is None else fmt(v) if isinstance(v, datetime) else str(v), style=CELL)
                         for v in r], className="bad-file", style={"background": "#fdecea"}) for r in rows]
        return [html.H3("Files not read", style={"margin": "16px 0 4px"}),
                html.P("Each was passed by; the files beside it loaded. It is tried again when it changes.",
                       style={"fontSize": "13px", "margin": "0 0 4px"}), grid(cols, body)]

    def _callbacks(self) -> None:
        @self.app.callback(Output("runs", "children"), Output("calendar", "figure"), Output("bad-files", "children"),
                           Input("tick", "n_intervals"), Input("job", "value"), Input("failed", "value"))
        def refresh(_n, job, failed):
            return (self.table(self.runs(job, "failed" in (failed or []))), self.calendar_figure(),
                    self.bad_files_table())

        if self.kafka_sources:
            @self.app.callback(Output("lag", "children"), Input("tick", "n_intervals"))
            def refresh_lag(_n):
                return self.lag_table()

        @self.app.callback(Output("bf-plan", "children"), Output("bf-run", "disabled"), Output("bf-token", "data"),
                           Input("bf-preview", "n_clicks"), Input("bf-run", "n_clicks"),
                           State("bf-mart", "value"), State("bf-start", "value"), State("bf-end", "value"),
                           State("bf-token", "data"), prevent_initial_call=True)
        def backfill(_p, _r, marts, start, end, token):
            if dash.ctx.triggered_id == "bf-run":
                return self.run_backfill(token), True, None
            try:
                text, token = self.preview(marts, start, end)
            except Exception as e:  # a bad date, too many windows: say so, run nothing
                return f"cannot plan: {e}", True, None
            return text, token is None, token


def _time(text: str | None) -> datetime | None:
    return parse_time(text.strip(), "time") if text and text.strip() else None
