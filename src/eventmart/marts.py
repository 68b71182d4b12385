"""Marts: the declarative-measure compiler, window replacement, the run ledger, gaps and backfill.

A mart's window ``[start, end)`` is replaced in one transaction: delete the window, insert its fresh
aggregate, write the ledger row. A reader sees the old window or the new one, never a mix.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from .config import Mart, Source
from .errors import ProjectError, UserError
from .expressions import STATE_SUFFIX, STATEFUL, check_expression, measure_kind, measure_parts, measure_sql
from .ledger import RUNS, RunResult, begin, finish, first_line, last_run
from .ledger import covered as ledger_covered
from .timeutil import (
    ceil_time,
    chunks,
    floor_time,
    fmt,
    grain_label,
    is_aligned,
    merge_intervals,
    parse_time,
    subtract_intervals,
    utcnow_precise,
)
from .warehouse import Warehouse
from .warehouse.base import RowsOutsideWindow, TableLayout

__all__ = ["RUNS", "MartRunner", "MartStatus", "RunResult", "compile_mart"]
BUCKET_RE = re.compile(r"\{\{\s*bucket\(([^{}]+)\)\s*\}\}")
# source rows a backfill puts into one statement at most (consecutive windows of a declarative mart run together)
BATCH_ROWS = 5_000_000



@dataclass
class MartStatus:
    mart: str
    grain: str
    rows: int
    covered: list[tuple[datetime, datetime]] = field(default_factory=list)
    gaps: list[tuple[datetime, datetime]] = field(default_factory=list)
    span: tuple[datetime, datetime] | None = None
    last_run: tuple | None = None


def marts_reading(cfg, source: str) -> list[str]:
    """The marts whose windows depend on ``source``: declared `from` it, or a SQL mart that reads it."""
    import sqlglot
    from sqlglot import exp

    out = []
    for name, m in cfg.marts.items():
        if m.from_ == source:
            out.append(name)
        elif m.sql is not None:
            try:
                tables = {t.name for t in sqlglot.parse_one(m.sql.replace("{{", "'").replace("}}", "'"),
                                                            read="duckdb").find_all(exp.Table)}
            except sqlglot.errors.ParseError:
                tables = {source}  # cannot tell: assume it does
            if source in tables:
                out.append(name)
    return out


# --- SQL marts whose rows depend on the window as a whole ---------------------------------------------


def window_dependence(mart: Mart) -> str | None:
    """Why a SQL mart must run one grain step at a time, or None when its rows for [a, c) are its rows for [a, b)
    and [b, c): declared (``batch``), or read off its SQL — a time column computed from {{ start }} / {{ end }} (a
    snapshot dated by its window), or a bound on the window not paired with the other bound on the same expression
    (``x < {{ end }}`` alone: everything up to the window's end). SQL it cannot read runs step by step too."""
    if mart.sql is None or mart.batch == "any":
        return None
    if mart.batch == "grain":
        return "declared batch: grain"
    import sqlglot
    from sqlglot import exp

    text = BUCKET_RE.sub(lambda m: f"__em_bucket({m.group(1)})", mart.sql)
    text = re.sub(r"\{\{\s*(start|end)\s*\}\}", r"__em_\1", text)
    try:
        tree = sqlglot.parse_one(text, read="duckdb")
    except sqlglot.errors.SqlglotError:
        return "its SQL could not be read to tell"
    top = tree.find(exp.Select)
    for sel in (top.selects if top else []):
        if sel.alias_or_name == mart.time_column and any(c.name in ("__em_start", "__em_end")
                                                          for c in sel.find_all(exp.Column)):
            return f"its time column {mart.time_column} is computed from the window's start or end"
    bounds: dict[str, set[str]] = {}
    for col in tree.find_all(exp.Column):
        if col.name not in ("__em_start", "__em_end"):
            continue
        cmp = col.parent
        if not isinstance(cmp, (exp.GT, exp.GTE, exp.LT, exp.LTE)):
            return f"it uses {{{{ {col.name[5:]} }}}} other than as a bound on a column"
        left = cmp.this is col
        other = (cmp.expression if left else cmp.this).sql()
        # placeholder on the left: start < x is a lower bound; on the right: x >= start is one
        lower = isinstance(cmp, (exp.LT, exp.LTE)) if left else isinstance(cmp, (exp.GT, exp.GTE))
        role = "start" if lower else "end"
        if role != col.name[5:]:
            return f"{{{{ {col.name[5:]} }}}} bounds {other} from the wrong side"
        bounds.setdefault(other, set()).add(role)
    for other, roles in bounds.items():
        if roles != {"start", "end"}:
            return f"{other} is bounded by {{{{ {next(iter(roles))} }}}} alone (everything up to the window's end)"
    return None


def run_mode(mart: Mart) -> str:
    """How a mart's windows run, as `eventmart check` says it."""
    why = window_dependence(mart)
    if why:
        return f"one {grain_label(mart.grain_seconds)} step per statement ({why})"
    if mart.sql is None or mart.batch == "any":
        return "consecutive windows together (its rows for a window are the rows of its parts)"
    return "chunk by chunk (`batch: any` lets its windows run together)"


# --- compiling declarative marts --------------------------------------------------------------


def compile_mart(wh: Warehouse, name: str, mart: Mart, sources: dict[str, Source],
                 source_sql: str | None = None) -> tuple[str, list[str]]:
    """SQL that computes one window of the mart (placeholders start/end), and its output columns in order.
    ``source_sql``: a table expression to read instead of the source's raw table."""
    if mart.sql is not None:
        # {{ bucket(expr) }}: the mart's time bucket in this engine's SQL, so one SQL mart runs on every engine
        sql = BUCKET_RE.sub(lambda m: wh.bucket_sql(m.group(1).strip(), mart.grain_seconds), mart.sql)
        return sql, []
    src = sources[mart.from_]  # checked at load
    allowed = set(src.columns) | {"_time"}
    q = wh.q
    if mart.timezone:  # a business day: the local date of each event
        bucket = wh.local_date_sql(q("_time"), mart.timezone)
    else:
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
            e = check_expression(d.expr, allowed, f"marts.{name}.dimensions.{d.name}").sql(dialect=wh.dialect)
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
        where = f"marts.{name}.measures.{m}"
        kind = measure_kind(text)
        if kind == "approx_count_distinct" and not wh.approx_distinct:
            raise ProjectError(f"{where}: this warehouse has no approximate distinct count; use count_distinct")
        exprs[m] = measure_sql(text, allowed, wh.dialect, where, sum_sql=lambda e, n: wh.sum_sql(e, mart.from_, n))
        order.append(m)
    if mart.keep_states:
        if not wh.states:
            raise ProjectError(f"marts.{name}.keep_states: this warehouse keeps no mergeable states (ClickHouse "
                               "does); remove the key — distinct counts are then recounted from the raw events")
        for m, text in mart.measures.items():
            kind, args = measure_parts(text, allowed, f"marts.{name}.measures.{m}")
            if kind in STATEFUL:
                exprs[m + STATE_SUFFIX] = wh.state_sql(kind, args[0].sql(dialect=wh.dialect))
                order.append(m + STATE_SUFFIX)
    source = f"{source_sql or q(mart.from_)} WHERE {q('_time')} >= {{{{ start }}}} AND {q('_time')} < {{{{ end }}}}"
    parts = [measure_parts(text, allowed, f"marts.{name}.measures.{m}") for m, text in mart.measures.items()]
    distinct = {args[0].sql(dialect=wh.dialect) for kind, args in parts if kind == "count_distinct"}
    if all(kind == "count_distinct" for kind, _ in parts) and len(distinct) == 1 and not mart.keep_states:
        # unique users per bucket and dimensions (every measure a distinct count of one expression), the common
        # mart: the distinct rows first, then a plain count of them — the same numbers (COUNT skips a NULL as
        # COUNT(DISTINCT) does), a fifth less time on DuckDB
        v = next(f"__v{'_' * i}" for i in range(len(order) + len(allowed) + 1)
             if f"__v{'_' * i}" not in order and f"__v{'_' * i}" not in allowed)
        keys = [c for c in order if c not in mart.measures]
        inner = ", ".join([*(f"{exprs[c]} AS {q(c)}" for c in keys), f"{distinct.pop()} AS {q(v)}"])
        select = ", ".join(q(c) if c in keys else f"COUNT({q(v)}) AS {q(c)}" for c in order)
        return (f"SELECT {select} FROM (SELECT DISTINCT {inner} FROM {source}) AS d "
                f"GROUP BY {', '.join(q(c) for c in keys)}"), order
    select = ", ".join(f"{exprs[c]} AS {q(c)}" for c in order)
    return f"SELECT {select} FROM {source} GROUP BY {', '.join(group)}", order


# --- windows in UTC and in a business time zone ----------------------------------------------------


def _to_utc(local: datetime, tz: ZoneInfo) -> datetime:
    return local.replace(tzinfo=tz).astimezone(ZoneInfo("UTC")).replace(tzinfo=None)


def _to_local(utc: datetime, tz: ZoneInfo) -> datetime:
    return utc.replace(tzinfo=ZoneInfo("UTC")).astimezone(tz).replace(tzinfo=None)


def local_day_start(d: date, tz: ZoneInfo) -> datetime:
    """The UTC instant of local midnight starting day ``d``."""
    return _to_utc(datetime(d.year, d.month, d.day), tz)


# --- running windows -----------------------------------------------------------------------------


class MartRunner:
    def __init__(self, wh: Warehouse, marts: dict[str, Mart], sources: dict[str, Source],
                 env_values: frozenset[str] = frozenset()):
        self.wh, self.marts, self.sources, self.env_values = wh, marts, sources, env_values
        self._compiled: dict[str, tuple[str, list[str]]] = {}

    def compiled(self, name: str) -> tuple[str, list[str]]:
        if name not in self._compiled:
            wh, mart = self.wh, self.marts[name]
            material = None
            if wh.pure_compile and mart.sql is None:  # kept between processes: a minute's run parses nothing
                from . import memo

                material = [type(wh).__name__, wh.dialect, name, mart.model_dump(mode="json"),
                            list(self.sources[mart.from_].columns) if mart.from_ in self.sources else None]
                if kept := memo.get("mart-sql", material):
                    return self._compiled.setdefault(name, (kept[0], kept[1]))
            self._compiled[name] = compile_mart(wh, name, mart, self.sources)
            # a value from the environment in an expression stays off the disk (it may be a secret)
            if material is not None and not any(v in self._compiled[name][0] for v in self.env_values):
                memo.put("mart-sql", material, list(self._compiled[name]))
        return self._compiled[name]

    # --- windows: UTC instants everywhere; a mart with a time zone has local-day windows --------------
    def zone(self, name: str) -> ZoneInfo | None:
        tz = self.marts[name].timezone
        return ZoneInfo(tz) if tz else None

    def from_user(self, name: str, t: datetime) -> datetime:
        """A time as the user means it (--start, `start:`): UTC, or local for a mart with a time zone."""
        tz = self.zone(name)
        return t if tz is None else _to_utc(t, tz)

    def floor(self, name: str, t: datetime) -> datetime:
        tz = self.zone(name)
        if tz is None:
            return floor_time(t, self.marts[name].grain_seconds)
        return local_day_start(_to_local(t, tz).date(), tz)

    def ceil(self, name: str, t: datetime) -> datetime:
        f = self.floor(name, t)
        return f if f == t else self.next_boundary(name, f)

    def next_boundary(self, name: str, t: datetime) -> datetime:
        tz = self.zone(name)
        if tz is None:
            return t + timedelta(seconds=self.marts[name].grain_seconds)
        return local_day_start(_to_local(t, tz).date() + timedelta(days=1), tz)

    def _size(self, name: str, size: int | None) -> int:
        mart = self.marts[name]
        return max(size or mart.chunk_seconds, mart.grain_seconds)

    def floor_chunk(self, name: str, t: datetime, size: int | None = None) -> datetime:
        """The end of the last chunk-sized window closed at ``t`` (a local midnight with a time zone)."""
        if self.zone(name) is not None:
            return self.floor(name, t)
        return floor_time(t, self._size(name, size))

    def ceil_chunk(self, name: str, t: datetime, size: int | None = None) -> datetime:
        f = self.floor_chunk(name, t, size)
        if f == t:
            return f
        if self.zone(name) is not None:
            return self.next_boundary(name, f)
        return f + timedelta(seconds=self._size(name, size))

    def last_windows(self, name: str, end: datetime, n: int, size: int | None = None) -> list[tuple[datetime, datetime]]:
        """The ``n`` chunk windows just before ``end``, oldest first."""
        out: list[tuple[datetime, datetime]] = []
        tz = self.zone(name)
        size = self._size(name, size)
        e = end
        for _ in range(n):
            s = self.floor(name, e - timedelta(seconds=1)) if tz else e - timedelta(seconds=size)
            out.append((s, e))
            e = s
        return out[::-1]

    def windows(self, name: str, lo: datetime, hi: datetime, size: int | None = None) -> Iterator[tuple[datetime, datetime]]:
        """[lo, hi) cut into the mart's chunks (local days for a mart with a time zone)."""
        mart = self.marts[name]
        if self.zone(name) is None:
            yield from chunks(lo, hi, max(size or mart.chunk_seconds, mart.grain_seconds))
            return
        t = lo
        while t < hi:
            nxt = min(self.next_boundary(name, t), hi)
            yield t, nxt
            t = nxt

    def check_window(self, name: str, start: datetime, end: datetime) -> None:
        g = self.marts[name].grain_seconds
        tz = self.zone(name)
        if tz is not None:
            for what, t in (("start", start), ("end", end)):
                if self.floor(name, t) != t:
                    local = _to_local(t, tz)
                    raise UserError(
                        f"--{what} {fmt(local)} is not a local midnight in {tz.key} (mart {name} keeps local days); "
                        f"use a date such as {local.date().isoformat()}"
                    )
            if end <= start:
                raise UserError("--end must be after --start")
            return
        for what, t in (("start", start), ("end", end)):
            if not is_aligned(t, g):
                raise UserError(
                    f"--{what} {fmt(t)} is not aligned to mart {name}'s grain ({grain_label(g)}); "
                    f"use {fmt(floor_time(t, g))} or {fmt(ceil_time(t, g))}"
                )
        if end <= start:
            raise UserError(f"--end {fmt(end)} must be after --start {fmt(start)}")

    def layout(self, name: str) -> TableLayout:
        """The mart's physical layout where the engine wants one: read by time, grouped by its dimensions, one
        partition per day (per month for daily and coarser marts, whose days are small)."""
        mart = self.marts[name]
        dims = [d.name for d in mart.dimensions if d.name != mart.time_column]
        return TableLayout(mart.time_column, [mart.time_column, *dims], dims,
                           "month" if mart.timezone or mart.grain_seconds >= 86400 else "day")

    def _ensure_joined(self, name: str) -> None:
        """A joined source that has not delivered anything yet is an empty table: its parts are unmatched."""
        from .rawtables import ensure_tables

        for src in self.marts[name].joins or {}:
            if self.wh.table_columns(src) is None:
                ensure_tables(self.wh, src, self.sources[src])

    def _ensure_table(self, name: str, sql: str, cols: list[str]) -> None:
        wh, mart = self.wh, self.marts[name]
        have = wh.table_columns(name)
        epoch = {"start": datetime(1970, 1, 1), "end": datetime(1970, 1, 1)}
        if have is None:
            wh.create_table_as(name, sql, epoch, self.layout(name))
            have = wh.table_columns(name) or []
            if mart.time_column not in have:
                wh.drop_table(name)
                raise ProjectError(f"marts.{name}.sql: the query returns no column {mart.time_column} (time_column)")
        elif cols and have != cols:
            raise ProjectError(
                f"marts.{name}: its columns changed ({', '.join(have)} -> {', '.join(cols)}); "
                f"rebuild it with `eventmart reset {name}` and `eventmart backfill {name}`"
            )

    def run_window(self, name: str, start: datetime, end: datetime, trigger: str = "run",
                   attempt: int = 1) -> RunResult:
        """Replace the window [start, end) of the mart: one statement, or — for a mart whose rows depend on the
        window as a whole — one per grain step, each with its ledger row (the result sums them; the first failed
        step stops it)."""
        if self.stepwise(name) and self.next_boundary(name, start) < end:
            steps, t = [], start
            while t < end:
                nxt = min(self.next_boundary(name, t), end)
                steps.append(self._run_one(name, t, nxt, trigger, attempt))
                if steps[-1].status != "ok":
                    return RunResult(name, start, end, steps[-1].status, sum(r.rows for r in steps),
                                     sum(r.seconds for r in steps), steps[-1].error, attempt)
                t = nxt
            return RunResult(name, start, end, "ok", sum(r.rows for r in steps), sum(r.seconds for r in steps),
                             attempt=attempt)
        return self._run_one(name, start, end, trigger, attempt)

    def _run_one(self, name: str, start: datetime, end: datetime, trigger: str, attempt: int) -> RunResult:
        wh, mart = self.wh, self.marts[name]
        sql, cols = self.compiled(name)
        started, t0 = utcnow_precise(), time.perf_counter()
        params: dict = {"start": start, "end": end}
        # the mart's own time column: UTC buckets, or local dates for a mart with a time zone
        tz = self.zone(name)
        params["kstart"], params["kend"] = (start, end) if tz is None else (
            _to_local(start, tz).date(), _to_local(end, tz).date())
        run_id = begin(wh, RunResult(name, start, end, "running", attempt=attempt), trigger, started)
        try:
            with wh.transaction():
                wh.lock(f"mart:{name}")  # one writer per mart across processes (engines that allow several)
                self._ensure_joined(name)
                self._ensure_table(name, sql, cols)
                select = sql if mart.sql is None else f"SELECT * FROM ({sql}) AS s"
                try:
                    # a SQL mart may not write outside its window: that would corrupt its neighbours
                    rows = wh.replace_window(name, mart.time_column, params["kstart"], params["kend"], select,
                                             params, check_inside=mart.sql is not None)
                except RowsOutsideWindow as e:
                    raise UserError(
                        f"marts.{name}.sql: {e.count} row(s) have {mart.time_column} outside the window "
                        f"[{fmt(start)}, {fmt(end)}); filter the input with {{{{ start }}}} and {{{{ end }}}}"
                    ) from None
                res = RunResult(name, start, end, "ok", rows, time.perf_counter() - t0, attempt=attempt)
                finish(wh, run_id, res)
            return res
        except BaseException as e:  # the engine's error is the user's SQL or data: keep it in the ledger
            res = RunResult(name, start, end, "failed", 0, time.perf_counter() - t0, first_line(e), attempt)
            with wh.transaction():
                finish(wh, run_id, res)
            if isinstance(e, (ProjectError, KeyboardInterrupt, SystemExit)):
                raise
            return res

    # --- coverage --------------------------------------------------------------------------------
    def covered(self, name: str) -> list[tuple[datetime, datetime]]:
        return merge_intervals(ledger_covered(self.wh, name))

    def data_span(self, name: str) -> tuple[datetime, datetime] | None:
        """The grain-aligned span the mart should cover: from its `start` (or first event) to the last event."""
        mart = self.marts[name]
        if mart.from_ is None or self.wh.table_columns(mart.from_) is None:
            return None
        lo, hi = self.wh.fetch(f"SELECT min(_time), max(_time) FROM {self.wh.q(mart.from_)}").rows[0]
        if lo is None:
            return None
        if mart.start:
            lo = self.from_user(name, parse_time(mart.start, f"marts.{name}.start"))
        return self.floor(name, lo), self.next_boundary(name, self.floor(name, hi))

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
        return MartStatus(name, grain_label(mart.grain_seconds), rows, covered, gaps, span, last_run(self.wh, name))

    def plan_backfill(
        self, name: str, start: datetime | None, end: datetime | None
    ) -> list[tuple[datetime, datetime]]:
        span = self.data_span(name)
        if span is None:  # no data: nothing a backfill could fill
            return []
        # never outside the data: before the first event or after the last there is nothing to compute (and a
        # far date such as 9999-12-31 must not be turned into millions of windows)
        lo = max(self.floor(name, max(self.from_user(name, start), span[0])), span[0]) if start else span[0]
        hi = min(self.ceil(name, min(self.from_user(name, end), span[1])), span[1]) if end else span[1]
        if hi <= lo:
            return []
        out: list[tuple[datetime, datetime]] = []
        for gs, ge in subtract_intervals((lo, hi), self.covered(name)):
            out.extend(self.windows(name, gs, ge))
        return self._batches(name, out) if self.batchable(name) and len(out) > 1 else out

    def batchable(self, name: str) -> bool:
        """Whether consecutive windows may run as one: a declarative mart's rows for [a, c) are its rows for
        [a, b) and [b, c) (each bucket is computed from its own events), and a SQL mart's that says so (`batch:
        any`). Other SQL marts run chunk by chunk, and those whose rows depend on the window as a whole
        (:func:`window_dependence`) one grain step at a time."""
        mart = self.marts[name]
        return mart.sql is None or mart.batch == "any"

    def stepwise(self, name: str) -> str | None:
        """Why the mart runs one grain step per statement (see :func:`window_dependence`), or None."""
        return window_dependence(self.marts[name])

    def _batches(self, name: str, windows: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
        """Consecutive chunk windows merged into runs of at most BATCH_ROWS source rows (a chunk with more runs
        alone): a backfill of years of small days is a handful of statements, not one per day, and no statement
        takes more rows than a day of a big log would."""
        wh, mart = self.wh, self.marts[name]
        tz = self.zone(name)
        t = wh.q("_time")
        bucket = wh.local_date_sql(t, mart.timezone) if tz else wh.bucket_sql(t, self._size(name, None))
        rows = wh.fetch(f"SELECT {bucket} AS b, count(*) FROM {wh.q(mart.from_)} WHERE {t} >= {{{{ lo }}}} "
                        f"AND {t} < {{{{ hi }}}} GROUP BY 1", {"lo": windows[0][0], "hi": windows[-1][1]}).rows
        counts = {(b if isinstance(b, date) and not isinstance(b, datetime) else b.replace(tzinfo=None)): n
                  for b, n in rows}

        def key(s: datetime) -> date | datetime:
            return _to_local(s, tz).date() if tz else self.floor_chunk(name, s)

        out: list[list] = []
        for s, e in windows:
            n = int(counts.get(key(s), 0))
            if out and out[-1][1] == s and out[-1][2] + n <= BATCH_ROWS:
                out[-1][1], out[-1][2] = e, out[-1][2] + n
            else:
                out.append([s, e, n])
        return [(s, e) for s, e, _ in out]

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
