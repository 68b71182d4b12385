"""Dashboard queries: filter state, chart SQL with pushed-down filters, grain choice, a versioned cache.

Every chart reads one mart. Its measure is a mart column (re-aggregated as its mart measure implies)
or an aggregate expression over mart columns, checked by sqlglot like mart measures are. Filter values
are always bound parameters: a topic named ``x' OR '1'='1`` is just a topic.
"""

from __future__ import annotations

import threading
import urllib.parse
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..config import Chart, Dashboard, ProjectConfig
from ..errors import ProjectError
from ..ledger import RUNS
from ..measures import MeasureLayer, Metric, Query
from ..timeutil import COMPARISONS, comparison, comparison_span, floor_time, later, parse_time
from ..warehouse import QueryResult, Warehouse

MAX_POINTS = 2000
MAX_FILTER_VALUES = 1000  # per dimension in a URL: more is a crafted request, not a selection


class EmptyRange(Exception):
    """The requested time range holds no data (or ends before it starts); the message says why."""
# grains a chart may be drawn at, coarsest last; a mart's own grain is always a candidate
GRAINS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)


# --- filter state (what the URL holds) ------------------------------------------------------


@dataclass
class State:
    start: datetime | None = None  # None: from the data's first bucket
    end: datetime | None = None  # None: to the data's last bucket
    filters: dict[str, list[str]] = field(default_factory=dict)
    compare: str | None = None  # one of COMPARISONS, "none", or None: the dashboard's default

    def to_query(self) -> str:
        pairs: list[tuple[str, str]] = []
        if self.start:
            pairs.append(("from", self.start.strftime("%Y-%m-%dT%H:%M")))
        if self.end:
            pairs.append(("to", self.end.strftime("%Y-%m-%dT%H:%M")))
        if self.compare:
            pairs.append(("compare", self.compare))
        for dim, values in sorted(self.filters.items()):
            pairs.extend((dim, v) for v in values)
        return ("?" + urllib.parse.urlencode(pairs)) if pairs else ""

    @classmethod
    def from_query(cls, search: str | None, dims: list[str]) -> State:
        """Parse ``?from=…&to=…&dim=v&dim=w``; unknown keys and unreadable times are ignored."""
        qs = urllib.parse.parse_qs((search or "").lstrip("?"), keep_blank_values=False)
        st = cls()
        for key, attr in (("from", "start"), ("to", "end")):
            if qs.get(key):
                try:
                    setattr(st, attr, parse_time(qs[key][0], key))
                except Exception:  # a hand-edited URL: fall back to the default range
                    pass
        st.filters = {d: qs[d][:MAX_FILTER_VALUES] for d in dims if qs.get(d)}
        if qs.get("compare") and (qs["compare"][0] in COMPARISONS or qs["compare"][0] == "none"):
            st.compare = qs["compare"][0]
        return st


# --- measures ------------------------------------------------------------------------------------------


def mart_columns(cfg: ProjectConfig, wh: Warehouse, mart: str) -> list[str]:
    return MeasureLayer(cfg, wh).shape(mart).columns


def chart_measure(chart: Chart, shape_columns: list[str]) -> str:
    """The chart's measure expression: a measure by name, `agg: avg` applied to it, or an expression."""
    text = chart.measure.strip()
    if chart.agg and text in shape_columns:
        return f"{chart.agg}({text})"
    return text


# --- chart queries -----------------------------------------------------------------------------


@dataclass
class ChartQuery:
    sql: str
    params: dict[str, Any]
    grain: int | None = None  # seconds per time bucket, for time series
    ignored: list[str] = field(default_factory=list)  # filters the chart's mart cannot apply


def choose_grain(start: datetime, end: datetime, mart_grain: int, series: int, max_grain: int | None = None,
                 min_grain: int | None = None) -> int:
    """The finest grain (a multiple of the mart's, at least ``min_grain``, at most ``max_grain``) that keeps buckets ×
    series under MAX_POINTS."""
    span = max((end - start).total_seconds(), 1)
    candidates = [mart_grain] + [g for g in GRAINS if g > mart_grain and g % mart_grain == 0
                                 and (max_grain is None or g <= max_grain)]
    if min_grain:
        candidates = [g for g in candidates if g >= min_grain] or candidates[-1:]
    for g in candidates:
        if span / g * max(series, 1) <= MAX_POINTS:
            return g
    return candidates[-1]


def data_version(wh: Warehouse, marts: list[str] | None = None) -> tuple:
    """Changes whenever what a chart or an explore view of ``marts`` (None: any) may show changes: a mart run (the
    ledger) or a load or undo (the ingest log: distinct counts may be answered from the raw events)."""
    from ..rawtables import INGESTS

    runs: tuple = (0, None, None)
    if wh.concurrent_table_exists(RUNS):
        which = f" AND {wh.in_list_sql('mart', 'marts')}" if marts is not None else ""
        runs = tuple(wh.concurrent_fetch(f"SELECT count(*), max(seq), max(window_end) FROM {wh.q(RUNS)} "
                                         f"WHERE status = 'ok'{which}", {} if marts is None else {"marts": marts})
                     .rows[0])
    loads: tuple = ()
    if wh.concurrent_table_exists(INGESTS):
        loads = tuple(wh.concurrent_fetch(
            f"SELECT max(id), count(*) FILTER (WHERE status = 'undone') FROM {wh.q(INGESTS)}").rows[0])
    return runs + loads


class DashboardQueries:
    """Builds and runs one dashboard's queries against the warehouse, cached per data version."""

    def __init__(self, name: str, dash: Dashboard, cfg: ProjectConfig, wh: Warehouse,
                 locate: Callable[[str], str] = str):
        self.name, self.dash, self.cfg, self.wh, self.locate = name, dash, cfg, wh, locate
        self.layer = MeasureLayer(cfg, wh)
        self.columns = {c.mart: self.layer.shape(c.mart).columns for c in dash.charts.values()}
        self.metrics: dict[str, Metric] = {
            n: self.layer.metric(c.mart, c.x if c.type == "scatter" else chart_measure(c, self.columns[c.mart]),
                                 locate(f"dashboards.{name}.charts.{n}.{'x' if c.type == 'scatter' else 'measure'}"))
            for n, c in dash.charts.items()
        }
        # more measures of a chart: a scatter's y, a table's extra columns
        self.extra: dict[str, dict[str, Metric]] = {}
        for n, c in dash.charts.items():
            more = {"y": c.y} if c.type == "scatter" else dict(c.measures or {})
            self.extra[n] = {k: self.layer.metric(c.mart, text, locate(
                f"dashboards.{name}.charts.{n}.{'y' if c.type == 'scatter' else 'measures.' + k}"))
                for k, text in more.items()}
        self.cache = Cache()

    @property
    def filter_dims(self) -> list[str]:
        return [f.dimension for f in self.dash.filters if f.dimension != "time"]

    def exists(self, table: str, version: tuple | None = None) -> bool:
        """Thread-safe: dashboards query from a pool, never on the warehouse's own connection."""
        if version is None:
            return self.wh.concurrent_table_exists(table)
        return bool(self._fetch(self.wh.table_exists_sql, {"t": table}, version).rows[0][0])

    # data version: any ledger change (a mart run) makes every cached result stale
    def version(self) -> tuple:
        return data_version(self.wh, sorted({c.mart for c in self.dash.charts.values()}))

    def fresh_until(self, version: tuple | None = None) -> datetime | None:
        """The last event the dashboard's marts cover: the newest loaded event inside their run windows."""
        version = version or self.version()
        best = None
        for mart in sorted({c.mart for c in self.dash.charts.values()}):
            m = self.cfg.marts[mart]
            src = m.from_
            end = self._fetch(f"SELECT max(window_end) FROM {self.wh.q(RUNS)} WHERE mart = {{{{ m }}}} "
                              "AND status = 'ok'", {"m": mart}, version).rows[0][0] if self.exists(RUNS, version) \
                else None
            if end is None:
                continue
            last = end
            if src and self.exists(src, version):
                last = self._fetch(f"SELECT max(_time) FROM {self.wh.q(src)} WHERE _time < {{{{ e }}}}", {"e": end},
                                   version).rows[0][0] or end
            best = last if best is None else max(best, last)
        return best

    def _fetch(self, sql: str, params: dict[str, Any], version: tuple | None = None) -> QueryResult:
        """A cached query; one interaction reads the version once and passes it to all its queries."""
        key = (sql, tuple(sorted((k, tuple(v) if isinstance(v, list) else v) for k, v in params.items())))
        return self.cache.get(key, version or self.version(), lambda: self.wh.concurrent_fetch(sql, params))

    def span(self, version: tuple | None = None) -> tuple[datetime, datetime] | None:
        """First bucket to the end of the last bucket over the dashboard's marts."""
        version = version or self.version()
        lo = hi = None
        for mart in sorted({c.mart for c in self.dash.charts.values()}):
            m = self.cfg.marts[mart]
            if not self.exists(mart, version):
                continue
            tc = self.wh.q(m.time_column)
            a, b = self._fetch(f"SELECT min({tc}), max({tc}) FROM {self.wh.q(mart)}", {}, version).rows[0]
            if a is None:
                continue
            b = b + timedelta(seconds=m.grain_seconds)
            lo, hi = (a if lo is None else min(lo, a)), (b if hi is None else max(hi, b))
        return (lo, hi) if lo is not None else None

    def window(self, st: State, version: tuple | None = None) -> tuple[datetime, datetime] | None:
        """The chart range: the state's, within the data (None: no data at all). A range that ends before it
        starts, or misses the data, raises :class:`EmptyRange` with a message for the page."""
        span = self.span(version)
        if span is None:
            return None
        if st.start and st.end and st.start >= st.end:
            raise EmptyRange(f"'from' {st.start:%Y-%m-%d %H:%M} is not before 'to' {st.end:%Y-%m-%d %H:%M}")
        start, end = max(st.start or span[0], span[0]), min(st.end or span[1], span[1])
        if start >= end:
            raise EmptyRange(f"no data in this range: the data runs from {span[0]:%Y-%m-%d %H:%M} to "
                             f"{span[1]:%Y-%m-%d %H:%M} UTC")
        return start, end

    def values(self, dim: str, version: tuple | None = None) -> list[str]:
        """Distinct values of a dimension over the dashboard's marts that have it, for filter options."""
        version = version or self.version()
        out: set[str] = set()
        for mart in {c.mart for c in self.dash.charts.values()}:
            if dim in self.columns[mart] and self.exists(mart, version):
                rows = self._fetch(f"SELECT DISTINCT {self.wh.text_sql(self.wh.q(dim))} FROM {self.wh.q(mart)}", {},
                                   version).rows
                out.update(r[0] for r in rows if r[0] is not None)
        return sorted(out)

    def group(self, chart: Chart) -> list[str]:
        """The dimensions a chart groups by."""
        if chart.type in ("area", "line"):
            return [chart.color] if chart.color else []
        if chart.type in ("pie", "donut", "bar", "funnel", "scatter"):
            return [chart.dimension]
        if chart.type == "heatmap":
            return [chart.x, chart.y] if chart.x != chart.y else [chart.x]
        if chart.type == "table":
            return list(chart.columns or [])
        return []

    def series_grains(self, name: str) -> dict[str, int]:
        """The grains a time series chart may be asked for (the read API's `grain`): its mart's and coarser ones
        it divides, no finer than the chart's own `grain`, and for a SQL mart's distinct counts only its own."""
        from .explore import GRAINS

        c = self.dash.charts[name]
        g = self.cfg.marts[c.mart].grain_seconds
        top = self.layer.max_grain(c.mart, [self.metrics[name]])
        return {n: s for n, s in GRAINS.items() if s >= max(g, c.grain_seconds or 0) and s % g == 0
                and (top is None or s <= top)} if c.type in ("area", "line") else {}

    def comparing(self, st: State) -> str | None:
        """The comparison period the state asks for (the dashboard's default unless it says), None for none."""
        how = st.compare or self.dash.compare
        return how if how in COMPARISONS else None

    def compared(self, name: str, st: State, window: tuple[datetime, datetime], grain: int | None,
                 version: tuple | None = None) -> QueryResult | None:
        """A KPI's or a time series' result over the comparison period at the current result's grain, its buckets
        moved onto the current period (None: nothing compared, or not a KPI or a series)."""
        how = self.comparing(st)
        if how is None or self.dash.charts[name].type not in ("kpi", "area", "line"):
            return None
        version = version or self.version()
        cq = self.chart_query(name, st, comparison(window, how, grain), version, grain)
        res = self._fetch(cq.sql, cq.params, version)
        if cq.grain is None:
            return res
        span = comparison_span(window, grain)
        # onto the current buckets (a month earlier moves weekly buckets off their Mondays: back onto them)
        return QueryResult(res.columns, [(floor_time(later(r[0], how, span), cq.grain), *r[1:]) for r in res.rows])

    def chart_query(self, name: str, st: State, window: tuple[datetime, datetime],
                    version: tuple | None = None, grain: int | None = None) -> ChartQuery:
        chart = self.dash.charts[name]
        m = self.cfg.marts[chart.mart]
        metric = self.metrics[name]
        start, end = window
        filters = {d: list(v) for d, v in st.filters.items() if v}
        q = Query(chart.mart, {"value": metric, **self.extra[name]}, start, end, group=self.group(chart),
                  filters=filters)
        if chart.type in ("area", "line"):
            series = 1
            if chart.color:
                series = len(st.filters.get(chart.color) or self.values(chart.color, version)) or 1
            g = grain or choose_grain(start, end, m.grain_seconds, series,
                                      self.layer.max_grain(chart.mart, [metric]), chart.grain_seconds)
            q.grain, q.start = g, floor_time(start, g)
            sql, params, _, ignored = self.layer.sql(q)
            cols = "bucket" + (f", {self.wh.q(chart.color)} AS series" if chart.color else "")
            order = "1, 2" if chart.color else "1"
            return ChartQuery(f"SELECT {cols}, value FROM ({sql}) c ORDER BY {order}", params, g, ignored)
        if chart.type == "kpi":
            sql, params, _, ignored = self.layer.sql(q)
            return ChartQuery(sql, params, None, ignored)
        if chart.type == "funnel":
            # the funnel's own dimension is not filtered by the dashboard: its stages are the point
            q.filters[chart.dimension] = list(chart.stages or [])
        sql, params, _, ignored = self.layer.sql(q)
        dq = self.wh.q
        if chart.type in ("pie", "donut", "bar"):
            return ChartQuery(f"SELECT {dq(chart.dimension)} AS category, value FROM ({sql}) c "
                              "ORDER BY 2 DESC NULLS LAST, 1", params, None, ignored)
        if chart.type == "funnel":
            return ChartQuery(f"SELECT {dq(chart.dimension)} AS stage, value FROM ({sql}) c", params, None, ignored)
        if chart.type == "heatmap":
            return ChartQuery(f"SELECT {dq(chart.x)} AS x, {dq(chart.y)} AS y, value FROM ({sql}) c ORDER BY 1, 2",
                              params, None, ignored)
        if chart.type == "scatter":
            return ChartQuery(f"SELECT {dq(chart.dimension)} AS point, value AS x, y FROM ({sql}) c ORDER BY 1",
                              params, None, ignored)
        cols = ", ".join(dq(c) for c in chart.columns or [])
        label = dq(chart.measure if chart.measure in self.columns[chart.mart] else "value")
        extra = "".join(f", {dq(k)}" for k in self.extra[name])
        return ChartQuery(f"SELECT {cols}, value AS {label}{extra} FROM ({sql}) c ORDER BY {len(chart.columns or []) + 1} "
                          f"DESC NULLS LAST LIMIT {int(chart.limit)}", params, None, ignored)

    def run(self, name: str, st: State, window: tuple[datetime, datetime],
            version: tuple | None = None, grain: int | None = None) -> tuple[ChartQuery, QueryResult]:
        version = version or self.version()
        cq = self.chart_query(name, st, window, version, grain)
        return cq, self._fetch(cq.sql, cq.params, version)

    # --- start-up checks ----------------------------------------------------------------------------
    def check(self) -> None:
        """Refuse a dashboard that cannot be drawn, naming dashboard, chart and key (at start, not on click)."""
        locate = self.locate
        known_dims = set().union(*self.columns.values()) if self.columns else set()
        for f in self.dash.filters:
            if f.dimension != "time" and f.dimension not in known_dims:
                raise ProjectError(f"{locate(f'dashboards.{self.name}.filters')}: '{f.dimension}' is not a column "
                                   "of any mart on this dashboard")
        for n, c in self.dash.charts.items():
            cols = self.columns[c.mart]
            for key in ("color", "dimension") + (("x", "y") if c.type == "heatmap" else ()):
                v = getattr(c, key)
                if v and v not in cols:
                    raise ProjectError(f"{locate(f'dashboards.{self.name}.charts.{n}.{key}')}: '{v}' is not a column "
                                       f"of mart {c.mart} ({', '.join(cols)})")
            for v in c.columns or []:
                if v not in cols:
                    raise ProjectError(f"{locate(f'dashboards.{self.name}.charts.{n}.columns')}: '{v}' is not a "
                                       f"column of mart {c.mart} ({', '.join(cols)})")
            dims = self.layer.shape(c.mart).dimensions
            for key in ("color", "dimension", "columns") + (("x", "y") if c.type == "heatmap" else ()):
                v = getattr(c, key)
                for d in ([v] if isinstance(v, str) else v or []):
                    if d not in dims:
                        raise ProjectError(f"{locate(f'dashboards.{self.name}.charts.{n}.{key}')}: '{d}' is a measure "
                                           f"of mart {c.mart}, not a dimension to group by "
                                           f"({', '.join(dims) or 'none'})")
            grain = c.type in ("area", "line") and self.layer.shape(c.mart).grain or None
            self.layer.check(c.mart, [self.metrics[n], *self.extra[n].values()], grain, self.group(c),
                             locate(f"dashboards.{self.name}.charts.{n}.measure"))
            if c.type == "funnel" and self.exists(c.mart):
                have = set(self.values_in(c.mart, c.dimension))
                if have:
                    missing = [s for s in c.stages or [] if s not in have]
                    if missing:
                        raise ProjectError(
                            f"{locate(f'dashboards.{self.name}.charts.{n}.stages')}: stage(s) {', '.join(missing)} "
                            f"never occur in {c.mart}.{c.dimension} (values: {', '.join(sorted(have)[:10])})")

    def values_in(self, mart: str, dim: str) -> list[str]:
        rows = self.wh.concurrent_fetch(f"SELECT DISTINCT {self.wh.text_sql(self.wh.q(dim))} FROM {self.wh.q(mart)}").rows
        return [r[0] for r in rows if r[0] is not None]


class Cache:
    """Results keyed by (query, data version); old versions fall out as new ones come in."""

    def __init__(self, size: int = 4096):
        self.size, self._d, self._lock = size, OrderedDict(), threading.Lock()
        self.hits = self.misses = 0

    def get(self, key: tuple, version: tuple, compute) -> Any:
        k = (key, version)
        with self._lock:
            if k in self._d:
                self._d.move_to_end(k)
                self.hits += 1
                return self._d[k]
        value = compute()
        with self._lock:
            self.misses += 1
            if len(getattr(value, "rows", ())) > 50_000:  # a big answer is not worth its memory here
                return value
            self._d[k] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value
