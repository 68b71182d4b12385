"""Marts: the declarative-measure compiler, window replacement, the run ledger, gaps and backfill.

A mart's window ``[start, end)`` is replaced in one transaction: delete the window, insert its fresh
aggregate, write the ledger row. A reader sees the old window or the new one, never a mix.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import sqlglot
from sqlglot import exp

from .config import Mart, Source
from .errors import ProjectError, UserError
from .timeutil import (
    ceil_time,
    chunks,
    floor_time,
    fmt,
    grain_label,
    is_aligned,
    merge_intervals,
    subtract_intervals,
    utcnow,
)
from .warehouse import Warehouse

RUNS = "_eventmart_runs"
_AGGS = {"count", "count_distinct", "sum", "min", "max", "avg", "count_if"}


@dataclass
class RunResult:
    mart: str
    start: datetime
    end: datetime
    status: str
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None

    def line(self) -> str:
        w = f"[{fmt(self.start)}, {fmt(self.end)})"
        if self.status == "ok":
            return f"{self.mart} {w}: {self.rows:,} rows in {self.seconds:.2f}s"
        return f"{self.mart} {w}: failed: {self.error}"


@dataclass
class MartStatus:
    mart: str
    grain: str
    rows: int
    covered: list[tuple[datetime, datetime]] = field(default_factory=list)
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    span: tuple[datetime, datetime] | None = None
    last_run: tuple | None = None


# --- compiling declarative marts --------------------------------------------------------------


def _columns_used(node: exp.Expression) -> set[str]:
    return {c.name for c in node.find_all(exp.Column)}


def _check_expr(text: str, allowed: set[str], where: str) -> exp.Expression:
    try:
        node = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.ParseError as e:
        raise ProjectError(f"{where}: cannot parse '{text}' ({str(e).splitlines()[0]}); fix the expression") from None
    if any(isinstance(n, (exp.Select, exp.Subquery, exp.Command)) for n in node.walk()):
        raise ProjectError(f"{where}: '{text}' must be an expression over the source's columns, not a query")
    unknown = sorted(_columns_used(node) - allowed)
    if unknown:
        raise ProjectError(
            f"{where}: unknown column(s) {', '.join(unknown)} in '{text}'; the source has {', '.join(sorted(allowed))}"
        )
    return node


def measure_sql(text: str, allowed: set[str], dialect: str, where: str) -> str:
    """Compile ``count()``, ``count_distinct(x)``, ``sum(x)``, ``min/max/avg(x)``, ``count_if(cond)``."""
    node = _check_expr(text, allowed, where)
    if isinstance(node, exp.Anonymous):
        name, args = node.name.lower(), node.expressions
    elif isinstance(node, exp.Count):
        inner = node.this
        if isinstance(inner, exp.Distinct):
            name, args = "count_distinct", inner.expressions
        else:
            name, args = "count", ([] if inner is None or isinstance(inner, exp.Star) else [inner])
    elif isinstance(node, exp.CountIf):
        name, args = "count_if", [node.this]
    elif isinstance(node, (exp.Sum, exp.Min, exp.Max, exp.Avg)):
        name, args = node.key, [node.this]
    else:
        name, args = "", []
    if name not in _AGGS:
        raise ProjectError(
            f"{where}: '{text}' is not a measure; use count(), count_distinct(col), sum(col), min(col), "
            "max(col), avg(col) or count_if(condition)"
        )
    r = [a.sql(dialect=dialect) for a in args]
    if name == "count":
        return f"COUNT({r[0]})" if r else "COUNT(*)"
    if len(r) != 1:
        raise ProjectError(f"{where}: {name} takes exactly one argument, got '{text}'")
    if name == "count_distinct":
        return f"COUNT(DISTINCT {r[0]})"
    if name == "count_if":
        return f"COUNT(CASE WHEN {r[0]} THEN 1 END)"
    return f"{name.upper()}({r[0]})"


def compile_mart(wh: Warehouse, name: str, mart: Mart, sources: dict[str, Source]) -> tuple[str, list[str]]:
    """SQL that computes one window of the mart (placeholders start/end), and its output columns in order."""
    if mart.sql is not None:
        return mart.sql, []
    src = sources[mart.from_]  # checked at load
    allowed = set(src.columns) | {"_time"}
    q = wh.q
    bucket = wh.bucket_sql(q("_time"), mart.grain_seconds)
    order = [d.name for d in mart.dimensions]
    if mart.time_column not in order:
        order.insert(0, mart.time_column)
    exprs: dict[str, str] = {mart.time_column: bucket}
    group = [bucket]
    for d in mart.dimensions:
        if d.name == mart.time_column:
            if d.expr:
                raise ProjectError(f"marts.{name}.dimensions.{d.name}: the time column takes no expression")
            continue
        if d.expr:
            e = _check_expr(d.expr, allowed, f"marts.{name}.dimensions.{d.name}").sql(dialect=wh.dialect)
        else:
            if d.name not in src.columns:
                raise ProjectError(
                    f"marts.{name}.dimensions: '{d.name}' is not a column of source {mart.from_}; "
                    f"give an expression ({d.name}: <expr>) or use one of {', '.join(src.columns)}"
                )
            e = q(d.name)
        exprs[d.name] = e
        group.append(e)
    for m, text in mart.measures.items():
        exprs[m] = measure_sql(text, allowed, wh.dialect, f"marts.{name}.measures.{m}")
        order.append(m)
    select = ", ".join(f"{exprs[c]} AS {q(c)}" for c in order)
    sql = (
        f"SELECT {select} FROM {q(mart.from_)} WHERE {q('_time')} >= {{{{ start }}}} AND {q('_time')} < {{{{ end }}}} "
        f"GROUP BY {', '.join(group)}"
    )
    return sql, order


# --- the ledger --------------------------------------------------------------------------------


def ensure_ledger(wh: Warehouse) -> None:
    t = wh.type_name
    wh.create_table(
        RUNS,
        [
            ("mart", t("string")),
            ("window_start", t("timestamp")),
            ("window_end", t("timestamp")),
            ("status", t("string")),
            ("rows", t("int")),
            ("started_at", t("timestamp")),
            ("seconds", t("float")),
            ("error", t("string")),
            ("trigger", t("string")),
        ],
    )


def _record(wh: Warehouse, r: RunResult, started: datetime, trigger: str) -> None:
    wh.execute(
        f"INSERT INTO {wh.q(RUNS)} VALUES ({{{{ m }}}}, {{{{ s }}}}, {{{{ e }}}}, {{{{ st }}}}, {{{{ n }}}}, "
        "{{ t }}, {{ sec }}, {{ err }}, {{ trig }})",
        {"m": r.mart, "s": r.start, "e": r.end, "st": r.status, "n": r.rows, "t": started, "sec": r.seconds,
         "err": r.error, "trig": trigger},
    )


# --- running windows -----------------------------------------------------------------------------


class MartRunner:
    def __init__(self, wh: Warehouse, marts: dict[str, Mart], sources: dict[str, Source]):
        self.wh, self.marts, self.sources = wh, marts, sources
        self._compiled: dict[str, tuple[str, list[str]]] = {}

    def compiled(self, name: str) -> tuple[str, list[str]]:
        if name not in self._compiled:
            self._compiled[name] = compile_mart(self.wh, name, self.marts[name], self.sources)
        return self._compiled[name]

    def check_window(self, name: str, start: datetime, end: datetime) -> None:
        g = self.marts[name].grain_seconds
        for what, t in (("start", start), ("end", end)):
            if not is_aligned(t, g):
                raise UserError(
                    f"--{what} {fmt(t)} is not aligned to mart {name}'s grain ({grain_label(g)}); "
                    f"use {fmt(floor_time(t, g))} or {fmt(ceil_time(t, g))}"
                )
        if end <= start:
            raise UserError(f"--end {fmt(end)} must be after --start {fmt(start)}")

    def _ensure_table(self, name: str, sql: str, cols: list[str]) -> None:
        wh, mart = self.wh, self.marts[name]
        have = wh.table_columns(name)
        epoch = {"start": datetime(1970, 1, 1), "end": datetime(1970, 1, 1)}
        if have is None:
            wh.create_table_as(name, sql, epoch)
            have = wh.table_columns(name) or []
            if mart.time_column not in have:
                wh.drop_table(name)
                raise ProjectError(f"marts.{name}.sql: the query returns no column {mart.time_column} (time_column)")
        elif cols and have != cols:
            raise ProjectError(
                f"marts.{name}: its columns changed ({', '.join(have)} -> {', '.join(cols)}); "
                f"rebuild it with `eventmart reset {name}` and `eventmart backfill {name}`"
            )

    def run_window(self, name: str, start: datetime, end: datetime, trigger: str = "run") -> RunResult:
        wh, mart = self.wh, self.marts[name]
        sql, cols = self.compiled(name)
        q = wh.q
        tc = q(mart.time_column)
        started, t0 = utcnow(), time.perf_counter()
        params = {"start": start, "end": end}
        try:
            with wh.transaction():
                ensure_ledger(wh)
                self._ensure_table(name, sql, cols)
                wh.execute(f"DELETE FROM {q(name)} WHERE {tc} >= {{{{ start }}}} AND {tc} < {{{{ end }}}}", params)
                if mart.sql is None:
                    rows = wh.execute(f"INSERT INTO {q(name)} {sql}", params)
                else:
                    rows = wh.execute(f"INSERT INTO {q(name)} SELECT * FROM ({sql}) AS s", params)
                    # a SQL mart may not write outside its window: that would corrupt its neighbours.
                    # The window was emptied first, so every inserted row must be found inside it.
                    inside = wh.fetch(
                        f"SELECT count(*) FROM {q(name)} WHERE {tc} >= {{{{ start }}}} AND {tc} < {{{{ end }}}}",
                        params,
                    ).rows[0][0]
                    if inside != rows:
                        raise UserError(
                            f"marts.{name}.sql: {rows - inside} row(s) have {mart.time_column} outside the window "
                            f"[{fmt(start)}, {fmt(end)}); filter the input with {{{{ start }}}} and {{{{ end }}}}"
                        )
                res = RunResult(name, start, end, "ok", rows, time.perf_counter() - t0)
                _record(wh, res, started, trigger)
            return res
        except ProjectError:
            raise
        except Exception as e:  # the engine's error is the user's SQL or data: keep it in the ledger
            msg = str(e).strip().splitlines()[0][:500] if str(e).strip() else type(e).__name__
            res = RunResult(name, start, end, "failed", 0, time.perf_counter() - t0, msg)
            with wh.transaction():
                ensure_ledger(wh)
                _record(wh, res, started, trigger)
            return res

    # --- coverage --------------------------------------------------------------------------------
    def covered(self, name: str) -> list[tuple[datetime, datetime]]:
        if self.wh.table_columns(RUNS) is None:
            return []
        rows = self.wh.fetch(
            f"SELECT window_start, window_end FROM {self.wh.q(RUNS)} WHERE mart = {{{{ m }}}} AND status = 'ok'",
            {"m": name},
        ).rows
        return merge_intervals([(s, e) for s, e in rows])

    def data_span(self, name: str) -> tuple[datetime, datetime] | None:
        """The grain-aligned span the mart should cover: from its `start` (or first event) to the last event."""
        mart = self.marts[name]
        g = mart.grain_seconds
        if mart.from_ is None or self.wh.table_columns(mart.from_) is None:
            return None
        lo, hi = self.wh.fetch(f"SELECT min(_time), max(_time) FROM {self.wh.q(mart.from_)}").rows[0]
        if lo is None:
            return None
        if mart.start:
            from .timeutil import parse_time

            lo = parse_time(mart.start, f"marts.{name}.start")
        return floor_time(lo, g), floor_time(hi, g) + timedelta(seconds=g)

    def status(self, name: str) -> MartStatus:
        mart = self.marts[name]
        covered = self.covered(name)
        span = self.data_span(name)
        if span is None and covered:
            span = (covered[0][0], covered[-1][1])
        gaps = subtract_intervals(span, covered) if span else []
        rows = 0
        if self.wh.table_columns(name) is not None:
            rows = self.wh.fetch(f"SELECT count(*) FROM {self.wh.q(name)}").rows[0][0]
        last = None
        if self.wh.table_columns(RUNS) is not None:
            r = self.wh.fetch(
                f"SELECT started_at, status, window_start, window_end, rows, error FROM {self.wh.q(RUNS)} "
                "WHERE mart = {{ m }} ORDER BY started_at DESC LIMIT 1",
                {"m": name},
            ).rows
            last = r[0] if r else None
        return MartStatus(name, grain_label(mart.grain_seconds), rows, covered, gaps, span, last)

    def plan_backfill(
        self, name: str, start: datetime | None, end: datetime | None
    ) -> list[tuple[datetime, datetime]]:
        mart = self.marts[name]
        g = mart.grain_seconds
        span = self.data_span(name)
        lo = floor_time(start, g) if start else (span[0] if span else None)
        hi = ceil_time(end, g) if end else (span[1] if span else None)
        if lo is None or hi is None or hi <= lo:
            return []
        size = max(mart.chunk_seconds, g)
        out: list[tuple[datetime, datetime]] = []
        for gs, ge in subtract_intervals((lo, hi), self.covered(name)):
            out.extend(chunks(gs, ge, size))
        return out

    def backfill(
        self,
        names: list[str],
        start: datetime | None,
        end: datetime | None,
        progress: Callable[[RunResult, int, int], None] | None = None,
    ) -> list[RunResult]:
        plan = [(n, s, e) for n in names for s, e in self.plan_backfill(n, start, end)]
        results = []
        for i, (n, s, e) in enumerate(plan, 1):
            r = self.run_window(n, s, e, trigger="backfill")
            results.append(r)
            if progress:
                progress(r, i, len(plan))
        return results
