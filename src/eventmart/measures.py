"""Measures: how a mart's columns are computed from events, how they roll up, and the one compiler that turns
a chart's, report's or alert's measure expression into SQL that cannot show a wrong number.

Every mart column that is a measure has a roll-up rule: ``count``, ``count_if`` and ``sum`` add up (``sum``),
``min``/``max`` roll up by themselves, ``count_distinct`` and ``avg`` do not roll up at all (``none``): a user
who saw two topics in a minute is one user of that minute, not two. A measure expression reads mart columns
in one of two ways (mixing them in one expression is refused):

- **by name** — ``users``: the measure over each output group (a time bucket, a category, the whole range).
  Additive measures sum the mart's rows; a distinct count at a coarser grain, or over fewer dimensions than
  its mart keeps, is counted again from the raw events with the same filters pushed down.
- **inside an aggregate** — ``avg(users)``, ``sum(likes) / sum(views)``,
  ``avg(users) filter (where event = 'click')``: the aggregate runs over the mart's *time buckets*; each
  bucket's value is the measure over everything in that bucket that matches the output group, the filters and
  the ``filter (where …)`` — "average unique users per minute", "mean DAU per day". ``count(*)`` and
  ``count(distinct <time column>)`` count those buckets.

A mart's rows answer the query when that gives the same number (additive measures always; a non-additive one
when every dimension of the mart is grouped by or pinned to one value); otherwise a declarative mart's
source answers it, and a SQL mart — whose lineage eventmart cannot know — refuses it with the reason.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

import sqlglot
from sqlglot import exp

from .errors import ProjectError
from .expressions import (
    STATE_SUFFIX,
    MartShape,
    Metric,
    Ref,
    check_expression,
    measure_sql,
    parse_metric,
    shape_from_config,
)

if TYPE_CHECKING:
    from .config import Mart, ProjectConfig
    from .warehouse import Warehouse


# --- what a mart holds ------------------------------------------------------------------------------

_NUMERIC = ("int", "float", "bigint", "integer", "double", "hugeint", "decimal", "numeric", "real", "smallint")


def numeric_type(engine_type: str) -> bool:
    return any(t in str(engine_type).lower() for t in _NUMERIC)


def mart_shape(cfg: ProjectConfig, wh: Warehouse, name: str) -> MartShape:
    m: Mart = cfg.marts[name]
    if m.sql is None:
        return shape_from_config(cfg, name)
    # a SQL mart: declared dimensions, or its non-numeric columns; measures add up unless `rollup` says otherwise
    types = wh.column_types(name) if wh.table_columns(name) else {}
    cols = [c for c in types if c != m.time_column]
    dims = list(m.dimensions_sql) if m.dimensions_sql is not None else [
        c for c in cols if not numeric_type(types[c])]
    rollups = {c: (m.rollup or {}).get(c, "sum") for c in cols if c not in dims}
    return MartShape(name, m.time_column, m.grain_seconds, m.timezone, dims, rollups)


# --- queries ------------------------------------------------------------------------------------------


@dataclass
class Query:
    """Measures of one mart per output group: an optional time bucket (``grain`` seconds), dimensions."""

    mart: str
    metrics: dict[str, Metric]
    start: datetime
    end: datetime
    grain: int | None = None
    group: list[str] = field(default_factory=list)
    filters: dict[str, list[str]] = field(default_factory=dict)  # dimension -> values (IN list)


class Compiled(NamedTuple):
    sql: str
    params: dict[str, Any]
    raw: bool  # answered from the source's raw events (the mart's rows could not say)
    ignored: list[str]  # filters this mart cannot apply (a SQL mart without that dimension)


class MeasureLayer:
    """Parses measure expressions once and compiles queries to the engine; knows when raw events must answer."""

    def __init__(self, cfg: ProjectConfig, wh: Warehouse):
        self.cfg, self.wh = cfg, wh
        self._shapes: dict[str, MartShape] = {}

    def shape(self, mart: str) -> MartShape:
        if mart not in self._shapes:
            self._shapes[mart] = mart_shape(self.cfg, self.wh, mart)
        return self._shapes[mart]

    def metric(self, mart: str, text: str, where: str) -> Metric:
        return parse_metric(self.shape(mart), text, where)

    def approximate(self, metric: Metric) -> bool:
        """Whether the metric reads an estimate (approx_count_distinct): charts say so."""
        return any(r.column in self.shape(metric.mart).approximate for r in metric.refs)

    def source_dims(self, shape: MartShape) -> dict[str, str]:
        """Dimension -> SQL over the raw events, for a declarative mart: its own dimensions, those other marts of
        the same source define (a dashboard filter means the same thing on every chart), and the source's columns."""
        if shape.source is None:
            return {}
        src = self.cfg.sources[shape.source]
        allowed = set(src.columns) | {"_time"}
        out = {c: self.wh.q(c) for c in src.columns}
        for name, m in self.cfg.marts.items():
            if m.from_ == shape.source and m.sql is None and name != shape.name:
                for d in m.dimensions:
                    if d.expr:
                        out[d.name] = check_expression(d.expr, allowed, f"marts.{name}.dimensions.{d.name}") \
                            .sql(dialect=self.wh.dialect)
        for d, e in shape.dim_expr.items():
            out[d] = check_expression(e, allowed, f"marts.{shape.name}.dimensions.{d}").sql(dialect=self.wh.dialect) \
                if e else self.wh.q(d)
        return out

    # --- can the mart's rows answer? -------------------------------------------------------------
    def exact(self, shape: MartShape, group: list[str], pinned: set[str]) -> bool:
        """One mart row per (bucket, group): every dimension grouped by or pinned to one value."""
        return set(shape.dimensions) <= set(group) | pinned

    def needs_raw(self, shape: MartShape, metrics: list[Metric], grain: int | None, group: list[str],
                  pinned: set[str]) -> str | None:
        """Why the mart's rows cannot answer (None: they can)."""
        exact = self.exact(shape, group, pinned)
        for m in metrics:
            for r in m.refs:
                if shape.rollups[r.column] != "none" or r.column in shape.states:
                    continue  # adds up, or merges from its kept state at any grain
                if not exact:
                    return (f"{r.column} is a distinct count or average: it cannot be rolled up over the "
                            f"dimension(s) {', '.join(sorted(set(shape.dimensions) - set(group) - pinned))}")
                if not m.over_buckets and grain != shape.grain:
                    return (f"{r.column} is a distinct count or average: it cannot be rolled up from "
                            f"{shape.grain // 60}-minute buckets to " + ("the whole range" if grain is None else
                                                                        f"{grain // 60}-minute buckets"))
        return None

    def check(self, mart: str, metrics: list[Metric], grain: int | None, group: list[str], where: str) -> None:
        """Refuse (at start-up) what neither the mart nor its source can answer."""
        shape = self.shape(mart)
        why = self.needs_raw(shape, metrics, grain, group, set())
        if why and shape.source is None:
            raise ProjectError(f"{where}: cannot be answered correctly from SQL mart {mart}: {why}, and eventmart "
                               "cannot recount a SQL mart from its events; group by its dimensions, or keep such a "
                               "measure in a declarative mart")

    def max_grain(self, mart: str, metrics: list[Metric]) -> int | None:
        """The coarsest time bucket a time series may be drawn at (a SQL mart's distinct counts: its own)."""
        shape = self.shape(mart)
        if shape.source is None and any(shape.rollups.get(r.column) == "none" and not m.over_buckets
                                        for m in metrics for r in m.refs):
            return shape.grain
        return None

    def raw_scope(self, shape: MartShape, start: datetime, end: datetime) -> tuple[str, list[str], dict[str, Any]]:
        """The raw events behind a declarative mart's buckets in [start, end): (the mart's bucket over ``_time``,
        WHERE terms, their parameters ``start`` and ``end``)."""
        qi = self.wh.q
        if shape.timezone:
            bucket = self.wh.local_date_sql(qi("_time"), shape.timezone)
            return bucket, [f"{bucket} >= {{{{ start }}}}", f"{bucket} < {{{{ end }}}}"], {"start": start, "end": end}
        from .timeutil import ceil_time

        # the mart keeps a bucket when its start lies in [start, end): the same events, by _time
        return (self.wh.bucket_sql(qi("_time"), shape.grain),
                [f"{qi('_time')} >= {{{{ start }}}}", f"{qi('_time')} < {{{{ end }}}}"],
                {"start": ceil_time(start, shape.grain), "end": ceil_time(end, shape.grain)})

    # --- a coarser mart of the same events --------------------------------------------------------
    def coarser(self, q: Query) -> Query | None:
        """The same query on a coarser declarative mart of the same source, when it gives the same numbers
        faster: a mart that keeps the dimensions the query groups and filters by (the same expressions), the
        measures it reads (the same text), at a grain that divides the query's and its bounds, whose rows can answer
        without the raw events, and whose run ledger covers the range. Aggregates over buckets ("users per minute")
        mean other buckets there: never moved. The coarsest such mart wins (a daily mart beside a minute one)."""
        shape = self.shape(q.mart)
        metrics = list(q.metrics.values())
        if shape.source is None or shape.timezone or any(m.over_buckets for m in metrics):
            return None
        from .timeutil import is_aligned

        filters = {d for d, v in q.filters.items() if v}
        if not filters <= set(shape.dimensions):
            return None  # a filter the mart cannot apply: the raw events answer, wherever
        conds = {c.name for m in metrics for r in m.refs if r.cond is not None for c in r.cond.find_all(exp.Column)}
        dims = set(q.group) | filters | conds
        cols = {r.column for m in metrics for r in m.refs}
        pinned = {d for d, v in q.filters.items() if len(v) == 1}
        best: tuple[MartShape, dict[str, Metric]] | None = None
        for name, m in self.cfg.marts.items():
            if name == q.mart or m.sql is not None or m.from_ != shape.source or m.timezone:
                continue
            c = self.shape(name)
            if c.grain <= shape.grain or (best and c.grain <= best[0].grain) or c.grain % shape.grain \
                    or (q.grain is not None and q.grain % c.grain) or not is_aligned(q.start, c.grain) \
                    or not is_aligned(q.end, c.grain) or not dims <= set(c.dimensions) \
                    or any(c.dim_expr.get(d) != shape.dim_expr.get(d) for d in dims) \
                    or any(c.measure_text.get(k) != shape.measure_text.get(k) for k in cols):
                continue
            try:
                moved = {k: parse_metric(c, m.text, f"marts.{name}") for k, m in q.metrics.items()}
            except ProjectError:
                continue
            if self.needs_raw(c, list(moved.values()), q.grain, q.group, pinned) is None \
                    and self._covers(name, q.start, q.end):
                best = (c, moved)
        if best is None:
            return None
        return Query(best[0].name, best[1], q.start, q.end, q.grain, list(q.group), dict(q.filters))

    def _covers(self, mart: str, start: datetime, end: datetime) -> bool:
        """Whether the mart's successful runs cover [start, end) (its table holds every row of that range)."""
        from .ledger import covered
        from .timeutil import subtract_intervals

        return not subtract_intervals((start, end), covered(self.wh, mart, concurrent=True))

    # --- SQL -----------------------------------------------------------------------------------------
    def sql(self, q: Query) -> Compiled:
        """Columns: ``bucket`` (with a grain), the group's dimensions by name, then one per metric by name.

        A filter on a dimension the mart does not keep is applied to the source's raw events when the mart is
        declarative (its source knows it); a SQL mart cannot apply it and says so in ``ignored``."""
        q = self.coarser(q) or q
        wh, shape = self.wh, self.shape(q.mart)
        qi = wh.q
        metrics = list(q.metrics.values())
        filters = {d: v for d, v in q.filters.items() if v}
        pinned = {d for d, v in filters.items() if len(v) == 1 and d in shape.dimensions}
        why = self.needs_raw(shape, metrics, q.grain, q.group, pinned)
        src_dims = self.source_dims(shape)
        outside = [d for d in filters if d not in shape.dimensions]
        if why is None and any(d in src_dims for d in outside):
            why = f"a filter on {', '.join(d for d in outside if d in src_dims)}, which mart {q.mart} does not keep"
        raw = why is not None
        if raw and shape.source is None:
            raise ProjectError(f"mart {q.mart}: {why}")
        ignored = [d for d in outside if not raw or d not in src_dims]
        params: dict[str, Any] = {"start": q.start, "end": q.end}
        tcol = qi(shape.time_column)
        if raw:
            dim = src_dims
            mart_bucket, where, bounds = self.raw_scope(shape, q.start, q.end)
            params.update(bounds)
            table = qi(shape.source)
        else:
            dim = {d: qi(d) for d in shape.dimensions}
            mart_bucket = tcol
            where = [f"{tcol} >= {{{{ start }}}}", f"{tcol} < {{{{ end }}}}"]
            table = qi(q.mart)
        for i, (d, values) in enumerate(sorted(filters.items())):
            if d in dim:
                params[f"f{i}"] = [str(v) for v in values]
                where.append(wh.in_list_sql(f"({dim[d]})", f"f{i}"))

        def cond_sql(cond: exp.Expression) -> str:
            c = cond.copy()
            for col in list(c.find_all(exp.Column)):
                col.replace(sqlglot.parse_one(dim[col.name], read=wh.dialect) if raw else
                            exp.column(col.name, quoted=True))
            return c.sql(dialect=wh.dialect)

        def ref_sql(r: Ref) -> str:
            when = cond_sql(r.cond) if r.cond is not None else None
            if raw:
                src = self.cfg.sources[shape.source]
                base = measure_sql(shape.measure_text[r.column], set(src.columns) | {"_time"}, wh.dialect,
                                   f"marts.{q.mart}.measures.{r.column}", when,
                                   lambda e, n, s=shape.source: wh.sum_sql(e, s, n))
            elif r.column in shape.states:  # a distinct count merged from the states of the rows it covers
                base = wh.merge_state_sql(shape.states[r.column], qi(r.column + STATE_SUFFIX)) + \
                    (f" FILTER (WHERE {when})" if when else "")
            else:
                fn = {"sum": "SUM", "min": "MIN", "max": "MAX", "none": "MAX"}[shape.rollups[r.column]]
                base = f"{fn}({qi(r.column)})" + (f" FILTER (WHERE {when})" if when else "")
            # a bucket with no row matching the filter has no value (not 0): averages skip it
            return f"CASE WHEN COUNT(*) FILTER (WHERE {when}) > 0 THEN {base} END" if when else base

        def time_at(expr: str, grain: int | None) -> str:
            if grain is None or grain == shape.grain:
                return expr
            if shape.timezone:
                expr = f"CAST({expr} AS TIMESTAMP)"
            return wh.bucket_sql(expr, grain)

        gcols = [f"{dim[d]} AS {qi(d)}" for d in q.group]
        gnames = [qi(d) for d in q.group]
        refs: dict[str, Ref] = {}
        outs = []
        for i, (n, m) in enumerate(q.metrics.items()):  # each metric's readings get names of their own
            node = m.node.copy()
            local = {r.col: f"m{i}_{r.col}" for r in m.refs}
            for c in node.find_all(exp.Column):
                if c.name in local:
                    c.set("this", exp.to_identifier(local[c.name], quoted=True))
            refs.update({local[r.col]: r for r in m.refs})
            outs.append(f"{node.sql(dialect=wh.dialect)} AS {qi(n)}")
        inner_cols = [f"{ref_sql(r)} AS {qi(c)}" for c, r in refs.items()]
        over = [m.over_buckets for m in metrics]
        if any(over) and not all(over):
            # each kind in its own subquery, joined on the group
            raise ProjectError(f"mart {q.mart}: measures by name and aggregates over buckets in one query")
        w = " AND ".join(where)
        if all(over):
            inner_keys = [f"{mart_bucket} AS {qi('__b')}", *gcols]
            inner = (f"SELECT {', '.join(inner_keys + inner_cols)} FROM {table} WHERE {w} "
                     f"GROUP BY {', '.join(str(i + 1) for i in range(len(inner_keys)))}")
            keys = ([f"{time_at(qi('__b'), q.grain)} AS bucket"] if q.grain else []) + gnames
            group_by = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
            return Compiled(f"SELECT {', '.join(keys + outs)} FROM ({inner}) v{group_by}", params, raw, ignored)
        keys = ([f"{time_at(mart_bucket, q.grain)} AS bucket"] if q.grain else []) + gcols
        group_by = f" GROUP BY {', '.join(str(i + 1) for i in range(len(keys)))}" if keys else ""
        inner = f"SELECT {', '.join(keys + inner_cols)} FROM {table} WHERE {w}{group_by}"
        okeys = (["bucket"] if q.grain else []) + gnames
        return Compiled(f"SELECT {', '.join(okeys + outs)} FROM ({inner}) v", params, raw, ignored)
