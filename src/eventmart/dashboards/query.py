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

import sqlglot
from sqlglot import exp

from ..config import Chart, Dashboard, Mart, ProjectConfig
from ..errors import ProjectError
from ..ledger import RUNS
from ..timeutil import floor_time, parse_time
from ..warehouse import QueryResult, Warehouse
from ..warehouse.base import TABLE_EXISTS_SQL

MAX_POINTS = 2000
# grains a chart may be drawn at, coarsest last; a mart's own grain is always a candidate
GRAINS = (60, 300, 900, 3600, 6 * 3600, 86400, 7 * 86400)
_ADDITIVE = ("count", "sum", "count_if")


# --- filter state (what the URL holds) ------------------------------------------------------


@dataclass
class State:
    start: datetime | None = None  # None: from the data's first bucket
    end: datetime | None = None  # None: to the data's last bucket
    filters: dict[str, list[str]] = field(default_factory=dict)

    def to_query(self) -> str:
        pairs: list[tuple[str, str]] = []
        if self.start:
            pairs.append(("from", self.start.strftime("%Y-%m-%dT%H:%M")))
        if self.end:
            pairs.append(("to", self.end.strftime("%Y-%m-%dT%H:%M")))
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
        st.filters = {d: qs[d] for d in dims if qs.get(d)}
        return st


# --- measures -------------------------------------------------------------------------------------


def mart_columns(cfg: ProjectConfig, wh: Warehouse, mart: str) -> list[str]:
    m = cfg.marts[mart]
    if m.sql is None:
        cols = [d.name for d in m.dimensions] + list(m.measures)
        return cols if m.time_column in cols else [m.time_column, *cols]
    return wh.table_columns(mart) or []


def default_agg(m: Mart, column: str) -> str:
    """How a mart measure re-aggregates over coarser buckets or other dimensions."""
    text = m.measures.get(column, "").strip().lower()
    fn = text.split("(", 1)[0]
    if fn in _ADDITIVE or not text:
        return "sum"
    if fn in ("min", "max"):
        return fn
    return "avg"  # count_distinct and avg are not additive: show the mean per bucket


def measure_sql(chart: Chart, mart: Mart, columns: list[str], dialect: str, where: str) -> str:
    text = chart.measure.strip()
    if text in columns:
        agg = chart.agg or default_agg(mart, text)
        return f'{agg.upper()}("{text}")'
    return aggregate_sql(text, chart.mart, columns, dialect, where)


def aggregate_sql(text: str, mart: str, columns: list[str], dialect: str, where: str) -> str:
    """An aggregate expression over a mart's columns (checked, rendered for the engine)."""
    try:
        node = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError:
        raise ProjectError(f"{where}: cannot parse '{text}'; give a mart column or an aggregate such as sum(col)") from None
    if any(isinstance(n, (exp.Select, exp.Subquery, exp.Command)) for n in node.walk()):
        raise ProjectError(f"{where}: '{text}' must be an expression over the mart's columns, not a query")
    unknown = sorted({c.name for c in node.find_all(exp.Column)} - set(columns))
    if unknown:
        raise ProjectError(f"{where}: unknown column(s) {', '.join(unknown)}; mart {mart} has {', '.join(columns)}")
    if not any(isinstance(n, exp.AggFunc) for n in node.walk()):
        raise ProjectError(f"{where}: '{text}' is not an aggregate; wrap it, e.g. sum({text})")
    return node.sql(dialect=dialect)


# --- chart queries -----------------------------------------------------------------------------


@dataclass
class ChartQuery:
    sql: str
    params: dict[str, Any]
    grain: int | None = None  # seconds per time bucket, for time series


def choose_grain(start: datetime, end: datetime, mart_grain: int, series: int) -> int:
    """The finest grain (a multiple of the mart's) that keeps buckets × series under MAX_POINTS."""
    span = max((end - start).total_seconds(), 1)
    candidates = [mart_grain] + [g for g in GRAINS if g > mart_grain and g % mart_grain == 0]
    for g in candidates:
        if span / g * max(series, 1) <= MAX_POINTS:
            return g
    return candidates[-1]


class DashboardQueries:
    """Builds and runs one dashboard's queries against the warehouse, cached per data version."""

    def __init__(self, name: str, dash: Dashboard, cfg: ProjectConfig, wh: Warehouse,
                 locate: Callable[[str], str] = str):
        self.name, self.dash, self.cfg, self.wh, self.locate = name, dash, cfg, wh, locate
        self.columns = {c.mart: mart_columns(cfg, wh, c.mart) for c in dash.charts.values()}
        self.measures = {
            n: measure_sql(c, cfg.marts[c.mart], self.columns[c.mart], wh.dialect,
                           locate(f"dashboards.{name}.charts.{n}.measure"))
            for n, c in dash.charts.items()
        }
        self.cache = Cache()

    @property
    def filter_dims(self) -> list[str]:
        return [f.dimension for f in self.dash.filters if f.dimension != "time"]

    def exists(self, table: str, version: tuple | None = None) -> bool:
        """Thread-safe: dashboards query from a pool, never on the warehouse's own connection."""
        if version is None:
            return self.wh.concurrent_table_exists(table)
        return bool(self._fetch(TABLE_EXISTS_SQL, {"t": table}, version).rows[0][0])

    # data version: any ledger change (a mart run) makes every cached result stale
    def version(self) -> tuple:
        if not self.exists(RUNS):
            return (0, None, None)
        marts = sorted({c.mart for c in self.dash.charts.values()})
        r = self.wh.concurrent_fetch(
            f"SELECT count(*), max(started_at), max(window_end) FROM {self.wh.q(RUNS)} "
            f"WHERE status = 'ok' AND {self.wh.in_list_sql('mart', 'marts')}",
            {"marts": marts},
        ).rows[0]
        return tuple(r)

    def fresh_until(self) -> datetime | None:
        return self.version()[2]

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
        span = self.span(version)
        if span is None:
            return None
        return (st.start or span[0], st.end or span[1])

    def values(self, dim: str, version: tuple | None = None) -> list[str]:
        """Distinct values of a dimension over the dashboard's marts that have it, for filter options."""
        version = version or self.version()
        cast = "VARCHAR" if self.wh.dialect == "duckdb" else "TEXT"
        out: set[str] = set()
        for mart in {c.mart for c in self.dash.charts.values()}:
            if dim in self.columns[mart] and self.exists(mart, version):
                rows = self._fetch(f"SELECT DISTINCT CAST({self.wh.q(dim)} AS {cast}) FROM {self.wh.q(mart)}", {},
                                   version).rows
                out.update(r[0] for r in rows if r[0] is not None)
        return sorted(out)

    def where(self, chart: Chart, st: State, start: datetime, end: datetime,
              params: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
        m = self.cfg.marts[chart.mart]
        tc = self.wh.q(m.time_column)
        params.update(start=start, end=end)
        parts = [f"{tc} >= {{{{ start }}}}", f"{tc} < {{{{ end }}}}"]
        for i, (dim, values) in enumerate(sorted(st.filters.items())):
            if values and dim in self.columns[chart.mart] and dim not in skip:
                params[f"f{i}"] = list(values)
                parts.append(self.wh.in_list_sql(self.wh.q(dim), f"f{i}"))
        return " AND ".join(parts)

    def chart_query(self, name: str, st: State, window: tuple[datetime, datetime],
                    version: tuple | None = None) -> ChartQuery:
        chart = self.dash.charts[name]
        m = self.cfg.marts[chart.mart]
        q, measure = self.wh.q, self.measures[name]
        start, end = window
        params: dict[str, Any] = {}
        table = q(chart.mart)
        if chart.type in ("area", "line"):
            series = 1
            if chart.color:
                series = len(st.filters.get(chart.color) or self.values(chart.color, version)) or 1
            g = choose_grain(start, end, m.grain_seconds, series)
            start, end = floor_time(start, g), end
            bucket = self.wh.bucket_sql(q(m.time_column), g) if g != m.grain_seconds else q(m.time_column)
            dims = [f"{bucket} AS bucket"] + ([f"{q(chart.color)} AS series"] if chart.color else [])
            group = "1, 2" if chart.color else "1"
            sql = (f"SELECT {', '.join(dims)}, {measure} AS value FROM {table} "
                   f"WHERE {self.where(chart, st, start, end, params)} GROUP BY {group} ORDER BY {group}")
            return ChartQuery(sql, params, g)
        if chart.type == "kpi":
            return ChartQuery(f"SELECT {measure} AS value FROM {table} WHERE {self.where(chart, st, start, end, params)}",
                              params)
        if chart.type in ("pie", "donut", "bar"):
            d = q(chart.dimension)
            sql = (f"SELECT {d} AS category, {measure} AS value FROM {table} "
                   f"WHERE {self.where(chart, st, start, end, params)} GROUP BY 1 ORDER BY 2 DESC NULLS LAST, 1")
            return ChartQuery(sql, params)
        if chart.type == "funnel":
            d = q(chart.dimension)
            params["stages"] = list(chart.stages or [])
            # the funnel's own dimension is not filtered: its stages are the point
            w = self.where(chart, st, start, end, params, skip=(chart.dimension,))
            sql = (f"SELECT {d} AS stage, {measure} AS value FROM {table} WHERE {w} AND "
                   f"{self.wh.in_list_sql(d, 'stages')} GROUP BY 1")
            return ChartQuery(sql, params)
        if chart.type == "heatmap":
            sql = (f"SELECT {q(chart.x)} AS x, {q(chart.y)} AS y, {measure} AS value FROM {table} "
                   f"WHERE {self.where(chart, st, start, end, params)} GROUP BY 1, 2 ORDER BY 1, 2")
            return ChartQuery(sql, params)
        cols = ", ".join(q(c) for c in chart.columns or [])
        sql = (f"SELECT {cols}, {measure} AS {q(chart.measure if chart.measure in self.columns[chart.mart] else 'value')} "
               f"FROM {table} WHERE {self.where(chart, st, start, end, params)} "
               f"GROUP BY {', '.join(str(i + 1) for i in range(len(chart.columns or [])))} "
               f"ORDER BY {len(chart.columns or []) + 1} DESC NULLS LAST LIMIT {int(chart.limit)}")
        return ChartQuery(sql, params)

    def run(self, name: str, st: State, window: tuple[datetime, datetime],
            version: tuple | None = None) -> tuple[ChartQuery, QueryResult]:
        version = version or self.version()
        cq = self.chart_query(name, st, window, version)
        return cq, self._fetch(cq.sql, cq.params, version)

    def previous(self, name: str, st: State, window: tuple[datetime, datetime], version: tuple | None = None) -> Any:
        """A KPI's value over the equal period just before the window."""
        start, end = window
        prev = (start - (end - start), start)
        return self.run(name, st, prev, version)[1].rows[0][0]

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
            for key in ("color", "dimension", "x", "y"):
                v = getattr(c, key)
                if v and v not in cols:
                    raise ProjectError(f"{locate(f'dashboards.{self.name}.charts.{n}.{key}')}: '{v}' is not a column "
                                       f"of mart {c.mart} ({', '.join(cols)})")
            for v in c.columns or []:
                if v not in cols:
                    raise ProjectError(f"{locate(f'dashboards.{self.name}.charts.{n}.columns')}: '{v}' is not a "
                                       f"column of mart {c.mart} ({', '.join(cols)})")
            if c.type == "funnel" and self.exists(c.mart):
                have = set(self.values_in(c.mart, c.dimension))
                if have:
                    missing = [s for s in c.stages or [] if s not in have]
                    if missing:
                        raise ProjectError(
                            f"{locate(f'dashboards.{self.name}.charts.{n}.stages')}: stage(s) {', '.join(missing)} "
                            f"never occur in {c.mart}.{c.dimension} (values: {', '.join(sorted(have)[:10])})")

    def values_in(self, mart: str, dim: str) -> list[str]:
        cast = "VARCHAR" if self.wh.dialect == "duckdb" else "TEXT"
        rows = self.wh.concurrent_fetch(f"SELECT DISTINCT CAST({self.wh.q(dim)} AS {cast}) FROM {self.wh.q(mart)}").rows
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
            self._d[k] = value
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value
