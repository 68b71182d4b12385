"""Explore one mart with no configuration: leaderboards of each dimension, a series at any grain, a pivot, and the
raw events behind a number (drill). The explore page, the dashboards' drill and the read API all ask here.

Every number comes from the measure layer, so a distinct count or an average shown per hour, per week or per
leaderboard row is counted again at that grain (from the raw events where the mart's rows cannot say), never
summed or averaged from finer rows. Measures are chosen by name (the mart's measure columns) and dimensions by
name; values, times and search text are bound parameters. Nothing a URL sends becomes SQL.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from ..config import ProjectConfig
from ..errors import ProjectError
from ..measures import MeasureLayer, Query, numeric_type
from ..timeutil import comparison, comparison_span, floor_time, later
from ..warehouse import QueryResult, Warehouse

GRAINS = {"minute": 60, "hour": 3600, "day": 86400, "week": 7 * 86400}
LEADER_CAP = 10_000  # values of one dimension a leaderboard ranks; more is said (`truncated`)
PIVOT_ROWS = 50
PIVOT_CELLS = 100_000  # a sum's pivot is ranked from its cells when there are at most this many
DRILL_MAX = 1000  # raw events per page


class ExploreError(ProjectError):
    """A request this mart cannot answer (an unknown measure, a grain finer than the mart's, a drill into a SQL
    mart); the message says why and what to ask instead."""


@dataclass
class Leader:
    value: Any  # the dimension's value
    current: Any
    share: float | None  # of the total under the same filters
    previous: Any = None  # in the comparison period
    delta: Any = None
    pct: float | None = None  # delta / previous, in percent


@dataclass
class Board:
    dimension: str
    measure: str
    rows: list[Leader]
    total: Any
    total_previous: Any = None
    count: int = 0  # values that match the search (before paging)
    truncated: bool = False  # more than LEADER_CAP values: only the biggest were ranked


    def table(self) -> QueryResult:
        """The rows as the read API and the CSV give them."""
        return QueryResult([self.dimension, self.measure, "share_pct", "compare_value", "change", "change_pct"],
                           [(r.value, r.current, r.share, r.previous, r.delta, r.pct) for r in self.rows])


@dataclass
class Pivot:
    row_dim: str
    col_dim: str  # a dimension, or "time"
    columns: list[Any]
    rows: list[tuple[Any, list[Any]]]

    def table(self) -> QueryResult:
        return QueryResult([self.row_dim, *[str(c) for c in self.columns]],
                           [(label, *values) for label, values in self.rows])


@dataclass
class Drill:
    columns: list[str]
    rows: list[tuple]
    total: int  # events behind the number
    offset: int
    ignored: list[str] = field(default_factory=list)  # filters the source cannot apply


def change(cur: Any, prev: Any) -> tuple[Any, float | None]:
    """(cur - prev, that in percent of prev): None where either is missing, the percentage also where prev is 0."""
    if cur is None or prev is None:
        return None, None
    delta = cur - prev
    return delta, (float(delta) / float(prev) * 100.0 if prev else None)


class Explorer:
    """Queries over one mart. ``fetch`` runs SQL (the dashboards pass their cached, versioned fetch)."""

    def __init__(self, cfg: ProjectConfig, wh: Warehouse, mart: str,
                 fetch: Callable[[str, dict[str, Any]], QueryResult] | None = None, layer: MeasureLayer | None = None):
        if mart not in cfg.marts:
            raise ExploreError(f"there is no mart {mart!r}; marts: {', '.join(cfg.marts)}")
        self.cfg, self.wh, self.mart = cfg, wh, mart
        self.layer = layer or MeasureLayer(cfg, wh)
        self.shape = self.layer.shape(mart)
        self.fetch = fetch or wh.concurrent_fetch
        self._metrics: dict[str, Any] = {}
        self._measures = list(self.shape.rollups)
        if self.shape.source is None:  # a SQL mart's other columns may be text (a key it keeps): not measures
            types = wh.column_types(mart) if wh.table_columns(mart) else {}
            self._measures = [c for c in self._measures if numeric_type(types.get(c, ""))]

    @property
    def measures(self) -> list[str]:
        return list(self._measures)

    @property
    def dimensions(self) -> list[str]:
        return list(self.shape.dimensions)

    @property
    def grains(self) -> dict[str, int]:
        """The grains a series may be drawn at: the mart's own and every coarser one it divides."""
        g = self.shape.grain
        out = {n: s for n, s in GRAINS.items() if s >= g and s % g == 0}
        if self.shape.timezone:  # local days: a coarser grain would cut them at UTC midnight
            out = {n: s for n, s in out.items() if s == g}
        return out or {"mart": g}

    def span(self) -> tuple[datetime, datetime] | None:
        """The mart's first bucket to the end of its last (None: no rows yet)."""
        wh = self.wh
        if not wh.concurrent_table_exists(self.mart):
            return None
        tc = wh.q(self.shape.time_column)
        lo, hi = self.fetch(f"SELECT min({tc}), max({tc}) FROM {wh.q(self.mart)}", {}).rows[0]
        if lo is None:
            return None
        lo, hi = (v.replace(tzinfo=None) if isinstance(v, datetime) else datetime(v.year, v.month, v.day)
                  for v in (lo, hi))
        return lo, hi + timedelta(seconds=self.shape.grain)

    def grain(self, name: str | int | None) -> int:
        if name is None:
            return self.shape.grain
        if isinstance(name, int) or str(name).isdigit():
            seconds = int(name)
            if seconds in self.grains.values():
                return seconds
        elif name in self.grains:
            return self.grains[name]
        raise ExploreError(f"mart {self.mart} cannot be drawn per {name}; grains: {', '.join(self.grains)}")

    def metric(self, measure: str) -> Any:
        if measure not in self._measures:
            raise ExploreError(f"mart {self.mart} has no measure {measure!r}; measures: {', '.join(self.measures)}")
        if measure not in self._metrics:
            self._metrics[measure] = self.layer.metric(self.mart, measure, f"explore.{self.mart}.{measure}")
        return self._metrics[measure]

    def check_dims(self, *dims: str | None) -> None:
        for d in dims:
            if d is not None and d not in self.shape.dimensions:
                raise ExploreError(f"mart {self.mart} has no dimension {d!r}; dimensions: "
                                   f"{', '.join(self.dimensions) or 'none'}")

    def clean_filters(self, filters: dict[str, list[str]] | None) -> dict[str, list[str]]:
        """Filters on the mart's dimensions, values as text; others are dropped (a URL of another mart's)."""
        return {d: [str(v) for v in vs] for d, vs in (filters or {}).items() if vs and d in self.shape.dimensions}

    # --- aggregates ------------------------------------------------------------------------------
    def run(self, measures: list[str], window: tuple[datetime, datetime], filters: dict[str, list[str]] | None = None,
            group: list[str] | None = None, grain: int | None = None, limit: int | None = None,
            offset: int = 0) -> QueryResult:
        """Measures per (bucket, group): columns ``bucket`` (with a grain), the group, the measures by name."""
        self.check_dims(*(group or []))
        if not measures:
            raise ExploreError(f"name at least one measure of mart {self.mart}: {', '.join(self.measures)}")
        q = Query(self.mart, {m: self.metric(m) for m in measures}, window[0], window[1], grain=grain,
                  group=list(group or []), filters=self.clean_filters(filters))
        if grain is not None:
            q.start = floor_time(window[0], grain)
        sql, params, _, _ = self.layer.sql(q)
        keys = (["bucket"] if grain else []) + [self.wh.q(d) for d in group or []]
        order = f" ORDER BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
        page = f" LIMIT {int(limit)} OFFSET {int(offset)}" if limit is not None else ""
        return self.fetch(f"SELECT * FROM ({sql}) e{order}{page}", params)

    def total(self, measure: str, window: tuple[datetime, datetime], filters: dict | None = None) -> Any:
        rows = self.run([measure], window, filters).rows
        return rows[0][0] if rows else None

    def leaderboard(self, dim: str, measure: str, window: tuple[datetime, datetime], filters: dict | None = None,
                    compare: str | None = None, search: str | None = None, sort: str = "value", limit: int = 25,
                    offset: int = 0) -> Board:
        """The dimension's values ranked by the measure, with share of total and change against ``compare``.

        The dimension's own filter is not applied: its leaderboard shows every value, the selected ones among
        them (as Rill's do)."""
        self.check_dims(dim)
        if sort not in ("value", "name", "delta", "pct", "share"):
            raise ExploreError(f"sort by value, name, delta, pct or share; not {sort!r}")
        others = {d: v for d, v in self.clean_filters(filters).items() if d != dim}
        current = self._ranked(dim, measure, window, others, search)
        board = Board(dim, measure, [], self._total(measure, window, others, current, search), count=len(current),
                      truncated=len(current) >= LEADER_CAP)
        prev: dict[Any, Any] = {}
        if compare:
            earlier = comparison(window, compare)
            ranked = self._ranked(dim, measure, earlier, others, search)
            prev = dict(ranked)
            board.total_previous = self._total(measure, earlier, others, ranked, search)
        # a value without events then: a count (distinct or not) of 0; an average or a minimum unknown
        absent = 0 if self.shape.rollups[measure] == "sum" or self.shape.measure_text.get(measure, "").lower() \
            .startswith(("count", "approx_count")) else None
        for value, cur in current:
            share = float(cur) / float(board.total) * 100.0 if cur is not None and board.total else None
            p = prev.get(value, absent) if compare else None
            board.rows.append(Leader(value, cur, share, p, *(change(cur, p) if compare else (None, None))))
        keys: dict[str, Callable[[Leader], Any]] = {
            "value": lambda r: (r.current is None, -(r.current or 0)),
            "share": lambda r: (r.share is None, -(r.share or 0)),
            "delta": lambda r: (r.delta is None, -abs(r.delta or 0)),
            "pct": lambda r: (r.pct is None, -abs(r.pct or 0)),
            "name": lambda r: (r.value is None, str(r.value))}
        board.rows.sort(key=keys[sort])
        board.rows = board.rows[offset: offset + limit]
        return board

    def _total(self, measure: str, window: tuple[datetime, datetime], filters: dict, ranked: list[tuple[Any, Any]],
               search: str | None) -> Any:
        """The measure over every value: from the ranked values when they hold them all and the measure rolls up
        (a sum is the sum of its groups', a maximum the greatest of theirs), else one more query."""
        how = self.shape.rollups[measure]
        if search or len(ranked) >= LEADER_CAP or how == "none" or measure in self.shape.states:
            return self.total(measure, window, filters)
        got = [v for _, v in ranked if v is not None]
        if not got:
            return None
        return sum(got[1:], got[0]) if how == "sum" else min(got) if how == "min" else max(got)

    def _ranked(self, dim: str, measure: str, window: tuple[datetime, datetime], filters: dict,
                search: str | None) -> list[tuple[Any, Any]]:
        q = Query(self.mart, {"value": self.metric(measure)}, window[0], window[1], group=[dim], filters=filters)
        sql, params, _, _ = self.layer.sql(q)
        where = ""
        if search:
            params = {**params, "search": search}
            where = " WHERE " + self.wh.contains_sql(self.wh.text_sql(self.wh.q(dim)), "search")
        rows = self.fetch(f"SELECT {self.wh.q(dim)}, value FROM ({sql}) c{where} ORDER BY 2 DESC NULLS LAST, 1 "
                          f"LIMIT {LEADER_CAP}", params).rows
        return [(r[0], r[1]) for r in rows]

    def series(self, measure: str, window: tuple[datetime, datetime], grain: int, filters: dict | None = None,
               by: str | None = None) -> QueryResult:
        return self.run([measure], window, filters, [by] if by else [], grain)

    def compared_series(self, measure: str, window: tuple[datetime, datetime], grain: int, how: str,
                        filters: dict | None = None, by: str | None = None) -> QueryResult:
        """The series over the comparison period, its buckets moved onto the current period's."""
        earlier = comparison(window, how, grain)
        res = self.series(measure, earlier, grain, filters, by)
        span = comparison_span(window, grain)
        return QueryResult(res.columns, [(floor_time(later(r[0], how, span), grain), *r[1:]) for r in res.rows])

    def pivot(self, measure: str, row_dim: str, col: str, window: tuple[datetime, datetime], grain: int | None = None,
              filters: dict | None = None) -> Pivot:
        """Rows: the ``PIVOT_ROWS`` biggest values of ``row_dim``; columns: time buckets (``col`` = "time") or the
        values of another dimension. Each cell is the measure of that pair, counted at that pair."""
        self.check_dims(row_dim, None if col == "time" else col)
        group = [row_dim] if col in ("time", row_dim) else [row_dim, col]
        g = (grain or self.shape.grain) if col == "time" else None
        res, top = None, None
        if self.shape.rollups[measure] == "sum" and measure not in self.shape.states:
            # a sum's row total is the sum of its cells: one query gives the cells and the ranking
            whole = self.run([measure], window, filters, group, g, PIVOT_CELLS + 1)
            if len(whole.rows) <= PIVOT_CELLS:
                res, totals = whole, {}
                for r in whole.rows:
                    key = r[1] if col == "time" else r[0]
                    totals[key] = totals.get(key, 0) + (r[-1] or 0)
                top = sorted(totals, key=lambda v: (-totals[v], str(v)))[:PIVOT_ROWS]
        if res is None:
            top = [v for v, _ in self._ranked(row_dim, measure, window, self.clean_filters(filters), None)[:PIVOT_ROWS]]
            flt = {**self.clean_filters(filters), row_dim: [str(v) for v in top if v is not None]} if top else filters
            res = self.run([measure], window, flt, group, g)
        if col == "time":  # bucket, row value, measure
            cells = {(r[1], r[0]): r[2] for r in res.rows}
        elif col != row_dim:  # row value, column value, measure
            cells = {(r[0], r[1]): r[2] for r in res.rows}
        else:
            cells = {(r[0], r[0]): r[1] for r in res.rows}
        columns = sorted({c for _, c in cells}, key=lambda c: (c is None, c if col == "time" else str(c)))
        return Pivot(row_dim, col, columns, [(v, [cells.get((v, c)) for c in columns]) for v in top])

    # --- the events behind a number ---------------------------------------------------------------
    def drill(self, window: tuple[datetime, datetime], filters: dict | None = None, limit: int = 100,
              offset: int = 0) -> Drill:
        """The raw events the mart's buckets in ``window`` hold under ``filters``, oldest first, a page at a time."""
        shape = self.shape
        if shape.source is None:
            raise ExploreError(f"mart {self.mart} is a SQL mart: eventmart does not know which events made its rows, "
                               "so it cannot show them; explore a declarative mart of the same source")
        limit = max(1, min(int(limit), DRILL_MAX))
        src = self.cfg.sources[shape.source]
        _, where, params = self.layer.raw_scope(shape, window[0], window[1])
        dims = self.layer.source_dims(shape)
        ignored = []
        for i, (d, values) in enumerate(sorted(self.clean_filters(filters).items())):
            if d not in dims:
                ignored.append(d)
                continue
            params[f"f{i}"] = values
            where.append(self.wh.in_list_sql(f"({dims[d]})", f"f{i}"))
        qi = self.wh.q
        table, w = qi(shape.source), " AND ".join(where)
        cols = ["_time", *src.columns]
        order = ", ".join(qi(c) for c in ["_time", *(src.key or [c for c in src.columns])])
        rows = self.fetch(f"SELECT {', '.join(qi(c) for c in cols)} FROM {table} WHERE {w} ORDER BY {order} "
                          f"LIMIT {limit} OFFSET {max(0, int(offset))}", params).rows
        total = self.fetch(f"SELECT count(*) FROM {table} WHERE {w}", params).rows[0][0]
        return Drill(cols, rows, int(total), offset, ignored)

    def point_window(self, bucket: datetime, grain: int) -> tuple[datetime, datetime]:
        """The window of one drawn bucket (a point of a series at ``grain``)."""
        return bucket, bucket + timedelta(seconds=grain)


__all__ = ["Board", "Drill", "ExploreError", "Explorer", "GRAINS", "Leader", "Pivot"]
