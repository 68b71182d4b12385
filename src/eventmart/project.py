"""The public API: ``Project.load(dir)`` and one method per CLI command.

    from eventmart import Project
    with Project.load("demo/zen") as p:
        p.ingest("log_raw")
        p.run(start="2019-09-24", end="2019-09-25")
        print(p.query("select * from dash_visits limit 5").rows)
"""

from __future__ import annotations

import functools
import math
import re
import threading
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import Mart, ProjectConfig, Source, did_you_mean, load_config, locate, project_file
from .errors import ProjectError, UserError
from .ledger import RunResult
from .marts import MartRunner, MartStatus
from .timeutil import parse_time
from .warehouse import QueryResult, Warehouse, open_warehouse

if TYPE_CHECKING:
    from .sources import IngestResult


_KEY_RE = re.compile(r"^((?:sources|marts|dashboards|reports|alerts|schedules|channels|warehouse)\.[\w.]+): ")


def _locked(fn):
    """Project methods hold the project's lock: the scheduler, API calls and the caller share one warehouse.
    A project-file error found only now (it needed the warehouse) gets its file and line."""

    @functools.wraps(fn)
    def inner(self, *a, **k):
        with self.lock:
            try:
                return fn(self, *a, **k)
            except ProjectError as e:
                raise self.located(e) from None

    return inner


def _first_line(e: BaseException) -> str:
    return str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__


def _time(t: datetime | str | None, what: str) -> datetime | None:
    if t is None or isinstance(t, datetime):
        return t
    return parse_time(t, what)


def _empty_select(wh: Warehouse, columns: list[tuple[str, str]]) -> str:
    """A query with these columns and types and no rows."""
    return "SELECT " + ", ".join(f"CAST(NULL AS {t}) AS {wh.q(c)}" for c, t in columns) + " WHERE 1 = 0"


class Project:
    def __init__(self, directory: Path, config: ProjectConfig):
        self.dir = directory
        self.config = config
        self._wh: Warehouse | None = None
        self._read_only = False
        # one writer at a time inside a process (scheduler, API calls, dashboard actions)
        self.lock = threading.RLock()
        self.caches: dict[str, Any] = {}  # features' own (Workspace.caches)

    @classmethod
    def load(cls, directory: str | Path = ".") -> Project:
        """The project in ``directory`` (or whose eventmart.yml ``directory`` is)."""
        d = project_file(Path(directory).resolve()).parent
        return cls(d, load_config(d))

    def located(self, e: UserError) -> UserError:
        """``marts.x.measures.y: …`` as ``eventmart.yml:LINE: marts.x.measures.y: …`` (same error class)."""
        m = _KEY_RE.match(str(e))
        if not m:
            return e
        return type(e)(f"{locate(self.dir, m.group(1))}: {str(e)[m.end():]}")

    # --- plumbing -------------------------------------------------------------------------------
    @property
    def warehouse(self) -> Warehouse:
        if self._wh is not None and getattr(self._wh, "read_only", False):  # opened to read (query, check)
            self._wh.close()
            self._wh = None
        if self._wh is None:
            self._wh = open_warehouse(self.config.warehouse, self.dir)
        return self._wh

    def warehouse_for_reading(self) -> Warehouse:
        """The warehouse, opened so that nothing is written (an embedded file read-only; an empty in-memory one
        when there is no file yet)."""
        if self._wh is None:
            self._wh = open_warehouse(self.config.warehouse, self.dir, read_only=True)
        return self._wh

    def close(self) -> None:
        if self._wh is not None:
            self._wh.close()
            self._wh = None

    def __enter__(self) -> Project:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def source(self, name: str) -> Source:
        if name not in self.config.sources:
            known = ", ".join(self.config.sources) or "none declared"
            raise UserError(f"unknown source '{name}'{did_you_mean(name, self.config.sources)} "
                            f"(sources: {known}); check eventmart.yml")
        return self.config.sources[name]

    def mart(self, name: str) -> Mart:
        if name not in self.config.marts:
            known = ", ".join(self.config.marts) or "none declared"
            raise UserError(f"unknown mart '{name}'{did_you_mean(name, self.config.marts)} "
                            f"(marts: {known}); check eventmart.yml")
        return self.config.marts[name]

    def _marts(self, names: list[str] | None) -> list[str]:
        names = list(names or self.config.marts)
        for n in names:
            self.mart(n)
        return names

    @property
    def runner(self) -> MartRunner:
        return MartRunner(self.warehouse, self.config.marts, self.config.sources)

    # --- commands -------------------------------------------------------------------------------
    @_locked
    def ingest(self, source: str, files: list[str] | None = None,
               progress: Callable[[str, int, int], None] | None = None, force: bool = False) -> IngestResult:
        """Load the source's files (or ``files``); files unchanged since they were loaded are skipped unless
        ``force``. ``progress(file, bytes done, bytes in all)`` is called as the files are read."""
        from .sources import ingest
        from .sources.files import resolve_files

        src = self.source(source)
        dims = [d.name for m in self.config.marts.values() if m.from_ == source for d in m.dimensions]
        if src.kafka is not None and not files:
            from .sources.kafka import consume

            return consume(self.warehouse, source, src, drain=True, dimensions=dims,
                           on_batch=lambda res, spans: self.reopen(source, spans, res.id))
        if src.s3 is not None and not files:
            from .sources.s3 import ingest_objects

            res = ingest_objects(self.warehouse, source, src, self.dir, progress, force, dims)
        else:
            paths = [] if src.format == "postgres" else resolve_files(src, source, files, self.dir)
            res = ingest(self.warehouse, source, src, paths, progress, force, dims)
        if res.loaded and res.min_time is not None:  # late rows re-open the windows they belong to
            self.reopen(source, [(res.min_time, res.max_time)], res.id)
        return res

    def reopen(self, source: str, spans: list[tuple[datetime, datetime]], ingest: int) -> dict[str, int]:
        """After rows of ``source`` arrived (ingest ``ingest``, event times in ``spans``): mark the mart windows
        they fall in as stale (marts that read the source), and those of the rows they join (SQL marts that
        `join` it), so the scheduler recomputes what changed — a lookback driven by what arrived. Returns
        mart -> windows re-opened."""
        from .ledger import invalidate

        lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
        out = {}
        wh = self.warehouse
        for name, m in self.config.marts.items():
            if m.from_ == source:
                times = [lo, hi]
            elif m.joins and source in m.joins and wh.table_columns(m.from_) is not None:
                key = wh.q(m.joins[source])
                # the rows they join: their time is the mart's
                row = wh.fetch(f"SELECT min(d._time), max(d._time) FROM {wh.q(m.from_)} d WHERE {key} IN "
                               f"(SELECT {key} FROM {wh.q(source)} WHERE _ingest = {{{{ i }}}} AND _time >= {{{{ lo }}}} "
                               "AND _time <= {{ hi }})", {"i": ingest, "lo": lo, "hi": hi}).rows[0]
                if row[0] is None:
                    continue
                times = list(row)
            else:
                continue
            n = invalidate(wh, name, times, span=True)
            if n:
                out[name] = n
        return out

    @_locked
    def ingests(self, source: str | None = None, limit: int = 50) -> QueryResult:
        """The ingest log, newest first: id, files, rows, the time span they cover, status."""
        from .sources.log import list_ingests

        if source:
            self.source(source)
        return QueryResult(*list_ingests(self.warehouse, source, limit))

    @_locked
    def undo_ingest(self, ingest_id: int):
        """Remove exactly the rows of one ingest and re-open the mart windows they were in (one transaction)."""
        from .marts import marts_reading
        from .sources.log import undo_ingest

        marts = {s: marts_reading(self.config, s) for s in self.config.sources}
        # windows start on grain boundaries (local midnights: whole quarter hours in every zone)
        step = math.gcd(900, *(m.grain_seconds for m in self.config.marts.values()))
        return undo_ingest(self.warehouse, int(ingest_id), marts, step)

    @_locked
    def bad_files(self, source: str | None = None) -> QueryResult:
        """Files of the sources that could not be read at all (source, file, reason, when), newest first."""
        from .sources.bad_files import listing

        if source:
            self.source(source)
        return QueryResult(*listing(self.warehouse, source))

    @_locked
    def rejects(self, source: str, limit: int | None = None) -> QueryResult:
        self.source(source)
        from .sources import list_rejects

        cols, rows = list_rejects(self.warehouse, source, limit)
        return QueryResult(cols, rows)

    @_locked
    def replay_rejects(self, source: str) -> IngestResult:
        from .sources import replay_rejects

        return replay_rejects(self.warehouse, source, self.source(source))

    @_locked
    def run(
        self, marts: list[str] | None = None, *, start: datetime | str, end: datetime | str
    ) -> list[RunResult]:
        names = self._marts(marts)
        s, e = _time(start, "--start"), _time(end, "--end")
        runner = self.runner
        windows = {}
        for n, src in self.unloaded(names, never=True).items():
            raise UserError(f"mart {n} reads source {src}, which has never been loaded; run `eventmart ingest {src}` "
                            "first")
        for n in names:  # check every window before running any
            runner.compiled(n)
            windows[n] = (runner.from_user(n, s), runner.from_user(n, e))
            runner.check_window(n, *windows[n])
        return [runner.run_window(n, *windows[n]) for n in names]

    @_locked
    def backfill(
        self,
        marts: list[str] | None = None,
        *,
        start: datetime | str | None = None,
        end: datetime | str | None = None,
        progress: Callable[[RunResult, int, int], None] | None = None,
    ) -> list[RunResult]:
        names = self._marts(marts)
        waiting = self.unloaded(names)
        if waiting and len(waiting) == len(names):
            srcs = sorted(set(waiting.values()))
            raise UserError(f"nothing to build: {', '.join(sorted(waiting))} read(s) {', '.join(srcs)}, which has "
                            f"nothing loaded yet; run `eventmart ingest {srcs[0]}` first")
        names = [n for n in names if n not in waiting]
        runner = self.runner
        for n in names:
            runner.compiled(n)
        return runner.backfill(names, _time(start, "--start"), _time(end, "--end"), progress)

    @_locked
    def unloaded(self, marts: list[str] | None = None, never: bool = False) -> dict[str, str]:
        """mart -> a source it reads that has no rows loaded yet (``never``: no raw table at all). Backfill passes
        such marts by; run stops."""
        from .marts import marts_reading

        wh = self.warehouse
        empty = {s for s in self.config.sources if wh.table_columns(s) is None or (not never and
                 wh.fetch(f"SELECT count(*) FROM (SELECT 1 FROM {wh.q(s)} LIMIT 1) AS t").rows[0][0] == 0)}
        out: dict[str, str] = {}
        for s in sorted(empty):
            for n in marts_reading(self.config, s):
                if (marts is None or n in marts) and n not in out and s not in (self.config.marts[n].joins or {}):
                    out[n] = s
        return out

    @_locked
    def run_window(self, mart: str, start: datetime, end: datetime, trigger: str = "backfill") -> RunResult:
        """One planned window of one mart (what a backfill runs, one call per window)."""
        self.mart(mart)
        runner = self.runner
        runner.compiled(mart)
        runner.check_window(mart, start, end)
        return runner.run_window(mart, start, end, trigger=trigger)

    @_locked
    def plan_backfill(self, marts: list[str] | None = None, *, start=None, end=None) -> list[tuple[str, datetime, datetime]]:
        runner = self.runner
        return [
            (n, s, e)
            for n in self._marts(marts)
            for s, e in runner.plan_backfill(n, _time(start, "--start"), _time(end, "--end"))
        ]

    @_locked
    def status(self) -> list[MartStatus]:
        from .ledger import mark_interrupted

        mark_interrupted(self.warehouse)  # a run killed -9 shows as failed, not running
        runner = self.runner
        return [runner.status(n) for n in self.config.marts]

    @_locked
    def reset(self, mart: str) -> None:
        """Drop a mart's table and its ledger rows, e.g. after its definition changed."""
        self.mart(mart)
        from .ledger import forget

        wh = self.warehouse
        with wh.transaction():
            wh.drop_table(mart)
            forget(wh, mart)

    @_locked
    def check(self) -> tuple[list[str], list[str]]:
        """Every problem the project has, without writing anything: (problems, what was checked)."""
        from .check import check_project

        return check_project(self)

    def ddl(self) -> list[tuple[str, list[str]]]:
        """(table, the statements that create it) for every source's raw table and every mart, as this warehouse
        would run them; nothing is written. A mart whose source has not been loaded yet is described from the
        declared columns."""
        from .marts import compile_mart
        from .rawtables import raw_columns, raw_layout

        wh = self.warehouse_for_reading()
        out = []
        for name, src in self.config.sources.items():
            dims = [d.name for m in self.config.marts.values() if m.from_ == name for d in m.dimensions]
            out.append((name, wh.table_ddl(name, raw_columns(wh, src), src.key, raw_layout(src, dims))))
        epoch = {"start": datetime(1970, 1, 1), "end": datetime(1970, 1, 1)}
        runner = MartRunner(wh, self.config.marts, self.config.sources)  # on the reading handle
        for name, mart in self.config.marts.items():
            sql, _ = runner.compiled(name)
            src = mart.from_
            if src and mart.sql is None and wh.table_columns(src) is None:  # not loaded: an empty stand-in
                empty = f"({_empty_select(wh, raw_columns(wh, self.config.sources[src]))}) AS e"
                sql, _ = compile_mart(wh, name, mart, self.config.sources, empty)
            select = sql if mart.sql is None else f"SELECT * FROM ({sql}) AS s"
            try:
                out.append((name, wh.table_as_ddl(name, select, epoch, runner.layout(name))))
            except wh.errors as e:  # a SQL mart reading tables that are not loaded yet
                out.append((name, [f"-- not yet: {str(e).strip().splitlines()[0][:200]}"]))
        from .vault import tables

        for name, (_, cols, layout) in tables(self.config, wh).items():
            out.append((name, wh.table_ddl(name, cols, layout=layout)))
        return out

    def query(self, sql: str, cancel: threading.Event | None = None) -> QueryResult:
        """One read of the warehouse's tables (SELECT, DESCRIBE, SHOW), checked and run read-only within the
        project's `query:` limits (time, rows, bytes, memory); anything else is refused with a UserError (see
        usersql.py). It takes no lock: inside `eventmart serve` a read never waits for, nor delays, the writers.
        ``cancel``: set it to stop the read (a client that went away)."""
        from .warehouse.base import QueryStopped, ResultTooBig

        wh, limits = self._reader(sql)
        try:
            return wh.read_only_query(sql, limits, cancel)
        except ResultTooBig as e:
            raise UserError(f"query: the result has {e}; add a LIMIT or aggregate it, or write it all to a file "
                            "with `eventmart query SQL --out FILE.csv`") from None
        except QueryStopped as e:
            raise UserError(f"query: {e}; narrow it, or raise query.timeout in eventmart.yml") from None
        except wh.errors as e:
            raise UserError(f"query failed: {_first_line(e)}") from None

    def export(self, sql: str, cancel: threading.Event | None = None) -> Iterator[tuple[list[str], list[tuple]]]:
        """The whole result of one read, batch by batch, past query.max_rows and max_bytes (``eventmart query
        --out``): (columns, rows) batches. Checked like :meth:`query`; no lock; no timeout (``cancel`` stops it)."""
        from .warehouse.base import Limits, QueryStopped

        wh, limits = self._reader(sql)
        try:
            yield from wh.read_only_batches(sql, Limits(memory=limits.memory), cancel)
        except QueryStopped as e:
            raise UserError(f"query: {e}") from None
        except wh.errors as e:
            raise UserError(f"query failed: {_first_line(e)}") from None

    def _reader(self, sql: str):
        from .config import parse_size
        from .usersql import check_read
        from .warehouse.base import Limits

        wh = self._wh if self._wh is not None else self.warehouse_for_reading()
        check_read(sql, wh.dialect, set(wh.reader_table_names()), getattr(wh, "schema", None))
        q = self.config.query
        return wh, Limits(q.timeout_seconds, q.max_rows, parse_size(q.max_bytes), parse_size(q.memory))

    # --- run history, backups ---------------------------------------------------------------------
    @_locked
    def runs(self, job: str | None = None, failed: bool = False, mart: str | None = None,
             limit: int = 50) -> QueryResult:
        """The run ledger, newest first (a `running` row whose process is gone shows as failed)."""
        from .ledger import RUNS, mark_interrupted

        wh = self.warehouse
        if wh.table_columns(RUNS) is None:
            return QueryResult(["started_at", "mart", "window_start", "window_end", "status", "rows", "seconds",
                                "attempt", "trigger", "error"], [])
        mark_interrupted(wh)  # @_locked: the lock is held already
        where, params = ["1 = 1"], {}
        if job:
            if job not in self.config.schedules:
                known = ", ".join(self.config.schedules) or "none declared"
                raise UserError(f"unknown job '{job}'{did_you_mean(job, self.config.schedules)} "
                                f"(schedules: {known}); check eventmart.yml")
            where.append("(trigger = {{ t }} OR trigger = {{ tl }})")
            params.update(t=f"schedule:{job}", tl=f"schedule:{job}:lookback")
        if failed:
            where.append("status = 'failed'")
        if mart:
            where.append("mart = {{ m }}")
            params["m"] = mart
        res = wh.fetch(
            "SELECT started_at, mart, window_start, window_end, status, rows, seconds, "
            f"attempt, trigger, error FROM {wh.q(RUNS)} WHERE {' AND '.join(where)} "
            f"ORDER BY seq DESC LIMIT {int(limit)}", params)
        res.rows = [(*r[:6], round(float(r[6] or 0), 3), *r[7:]) for r in res.rows]
        return res

    def backup(self, directory: str | Path | None = None, keep: int = 4):
        """A consistent, verified copy of the warehouse in ``directory`` (default: backups/)."""
        from .backup import backup

        d = Path(directory) if directory else self.dir / "backups"
        if not d.is_absolute():
            d = self.dir / d
        with self.lock:
            return backup(self.warehouse, d, keep)

    def restore(self, path: str | Path) -> str:
        """Bring a backup back as the warehouse (an embedded file: the current one is kept beside it)."""
        src = Path(path)
        if not src.is_absolute():
            src = (Path.cwd() / src) if src.exists() else self.dir / src
        if not src.is_file():
            raise UserError(f"{path}: no such backup file; list them with `ls {self.dir / 'backups'}`")
        from .warehouse import restore

        with self.lock:
            self.close()  # the next use opens the restored warehouse
            return restore(self.config.warehouse, self.dir, src)

    def prepare(self) -> None:
        """Before serving a project that has not loaded anything yet: empty raw tables for its sources, its vault's
        tables and its SQL marts' tables (their columns are what their query returns), so dashboards on them can be
        checked and drawn (empty) at once, and fill as data arrives."""
        from .rawtables import ensure_tables

        with self.lock:
            wh = self.warehouse
            with wh.transaction():
                for name, src in self.config.sources.items():
                    if wh.table_columns(name) is None:
                        dims = [d.name for m in self.config.marts.values() if m.from_ == name for d in m.dimensions]
                        ensure_tables(wh, name, src, dims)
                if self.config.vault.hubs or self.config.vault.links or self.config.vault.satellites:
                    from .vault import ensure

                    ensure(self.config, wh)
            runner = self.runner
            for name, m in self.config.marts.items():
                if m.sql is not None and wh.table_columns(name) is None:
                    sql, cols = runner.compiled(name)
                    try:
                        with wh.transaction():
                            runner._ensure_table(name, sql, cols)
                    except wh.errors:  # its SQL does not run yet: the dashboard check says so by name
                        pass

    def publish(self) -> Path | None:
        """Write the marts (and the vault) into ``bi.duckdb`` beside an embedded warehouse, for BI tools that cannot
        open the warehouse while `eventmart serve` holds it; None where they connect to the engine itself."""
        from .vault import tables as vault_tables

        target = self.dir / "bi.duckdb"
        with self.lock:
            wh = self.warehouse
            names = [n for n in [*self.config.marts, *vault_tables(self.config, wh)] if wh.table_columns(n)]
            return target if wh.publish(names, target) else None

    # --- Kafka -------------------------------------------------------------------------------------------
    def produce(self, source: str, files: list[str], topic: str | None = None) -> int:
        """Publish JSON Lines files to a Kafka source's topic (keyed by the source's key)."""
        from .sources.kafka import produce

        src = self.source(source)
        if src.kafka is None:
            raise UserError(f"source {source} is not a Kafka source (it has no `kafka:` section)")
        return produce(source, src, files, topic)

    @_locked
    def lag(self, source: str) -> QueryResult:
        """Per partition of a Kafka source: the warehouse's next offset, the partition's end, the lag."""
        from .sources.kafka import lag

        src = self.source(source)
        if src.kafka is None:
            raise UserError(f"source {source} is not a Kafka source")
        return QueryResult(["partition", "next_offset", "end", "lag"], lag(self.warehouse, source, src))

    # --- the data vault -----------------------------------------------------------------------------
    @_locked
    def vault_load(self, tables: list[str] | None = None):
        """Load hubs, links and satellites from what the raw tables gained since their last load (idempotent)."""
        from .vault import load

        return load(self.config, self.warehouse, tables)

    @_locked
    def vault_status(self) -> QueryResult:
        from .vault import status

        return QueryResult(["table", "kind", "keys", "rows", "last_load", "last_ingest", "missing_hub_keys"],
                           status(self.config, self.warehouse))

    @_locked
    def vault_reset(self, tables: list[str] | None = None) -> list[str]:
        """Drop vault tables (all, or some) and their load marks: the next load rebuilds them."""
        from .vault import reset

        return reset(self.config, self.warehouse, tables)

    # --- reports --------------------------------------------------------------------------------
    @_locked
    def report(self, name: str, day: date | str | None = None, dry_run: bool = False,
               out: str | Path | None = None, trigger: str = "report"):
        """Build report ``name`` for ``day`` (default: the newest day of its mart) and send it."""
        from .reports import send_report

        if name not in self.config.reports:
            known = ", ".join(self.config.reports) or "none declared"
            raise UserError(f"unknown report '{name}'{did_you_mean(name, self.config.reports)} "
                            f"(reports: {known}); check eventmart.yml")
        if isinstance(day, str):
            day = parse_time(day, "--date").date()
        if out is not None:
            out = Path(out) if Path(out).is_absolute() else Path.cwd() / out
        return send_report(self, name, day, dry_run, out, trigger)

    # --- alerts ---------------------------------------------------------------------------------
    def _rule(self, name: str):
        if name not in self.config.alerts:
            known = ", ".join(self.config.alerts) or "none declared"
            raise UserError(f"unknown alert rule '{name}'{did_you_mean(name, self.config.alerts)} "
                            f"(alerts: {known}); check eventmart.yml")
        return self.config.alerts[name]

    @_locked
    def alerts_check(self, names: list[str] | None = None, now: datetime | str | None = None) -> list:
        """Evaluate rules now (or as of ``now``): judge new complete buckets, move state, notify."""
        from .alerts.engine import evaluate

        names = names or list(self.config.alerts)
        for n in names:
            self._rule(n)
        return [evaluate(self, n, _time(now, "--now")) for n in names]

    @_locked
    def alerts_backtest(self, name: str, start: datetime | str, end: datetime | str):
        """Replay a rule over history: (verdicts per bucket, incidents). Same detectors as live."""
        from .alerts.engine import backtest

        self._rule(name)
        s, e = _time(start, "--start"), _time(end, "--end")
        if e <= s:
            raise UserError(f"--end {e} must be after --start {s}")
        return backtest(self, name, s, e)

    @_locked
    def alerts_evaluate(self, names: list[str] | None, labels: str, start: datetime | str, end: datetime | str,
                        tolerance: int = 2) -> list:
        """Backtest rules over [start, end) and score them against the labelled incidents in ``labels`` (CSV)."""
        from .alerts.evaluate import evaluate_rule

        names = names or list(self.config.alerts)
        for n in names:
            self._rule(n)
        s, e = _time(start, "--start"), _time(end, "--end")
        if e <= s:
            raise UserError(f"--end {e} must be after --start {s}")
        lab = self._labels(labels)
        return [evaluate_rule(self, n, s, e, lab, tolerance) for n in names]

    def _labels(self, labels: str) -> list:
        """Labelled incidents from a CSV path, or from a warehouse table given as ``table:NAME``."""
        from .alerts.evaluate import labels_from_rows, read_labels

        if not labels.startswith("table:"):
            return read_labels(labels)
        name = labels[len("table:"):].strip()
        wh = self.warehouse_for_reading()
        if name not in set(wh.table_names()):
            raise UserError(f"--labels {labels}: no table {name!r} in the warehouse; load one with columns "
                            "start, end[, series] (or give a CSV path)")
        import sqlglot

        # the name is a known table; quoted by sqlglot for the engine's dialect, never pasted raw
        ident = sqlglot.exp.to_table(name, dialect=wh.dialect).sql(dialect=wh.dialect, identify=True)
        res = self.query(f"SELECT * FROM {ident}")
        if "start" not in res.columns:
            raise UserError(f"--labels {labels}: the table needs columns start, end[, series]; it has "
                            f"{', '.join(res.columns)}")
        return labels_from_rows([dict(zip(res.columns, r, strict=True)) for r in res.rows], f"table {name}, row")

    @_locked
    def alerts_tune(self, name: str, start: datetime | str, end: datetime | str, budget: float = 2.0,
                    labels: str | None = None):
        """Choose the rule's parameters on the earlier part of [start, end) within ``budget`` alerts per week per
        series (or by F1 with labels), and report the later part."""
        from .alerts.evaluate import tune

        self._rule(name)
        s, e = _time(start, "--start"), _time(end, "--end")
        if e <= s:
            raise UserError(f"--end {e} must be after --start {s}")
        return tune(self, name, s, e, budget, self._labels(labels) if labels else None)

    @_locked
    def alerts_silence(self, name: str, duration: str) -> datetime:
        from .alerts.engine import silence
        from .timeutil import parse_duration

        self._rule(name)
        try:
            seconds = parse_duration(duration)
        except ValueError as e:
            raise UserError(f"--for {duration}: {e}") from None
        return silence(self, name, seconds)

    @_locked
    def alerts_silences(self) -> QueryResult:
        """Silences in force: rule, until, set at."""
        from .alerts.engine import silences

        return QueryResult(["rule", "silenced_until", "set_at"], silences(self))

    @_locked
    def alerts_unsilence(self, name: str) -> int:
        """Lift a rule's silence now; how many silences were in force."""
        from .alerts.engine import unsilence

        self._rule(name)
        return unsilence(self, name)

    @_locked
    def alerts_history(self, name: str | None = None, limit: int = 50) -> QueryResult:
        from .alerts.engine import EVENTS, ensure_tables

        wh = self.warehouse
        with wh.transaction():
            ensure_tables(wh)
        where, params = ("WHERE rule = {{ r }}", {"r": name}) if name else ("", {})
        return wh.fetch(f"SELECT sent_at, rule, series, event, bucket, value, lower, upper, channel, status, detail "
                        f"FROM {EVENTS} {where} ORDER BY sent_at DESC, rule, series LIMIT {int(limit)}", params)

    @_locked
    def alerts_state(self) -> QueryResult:
        from .alerts.engine import STATE, ensure_tables

        wh = self.warehouse
        with wh.transaction():
            ensure_tables(wh)
        res = wh.fetch(f"SELECT rule, series, state, since, consecutive, last_bucket, value, lower, upper "
                       f"FROM {STATE} ORDER BY rule, series")
        from .alerts.engine import silences

        quiet = {r[0]: r[1] for r in silences(self)}
        res.columns.append("silenced_until")
        res.rows = [(*r, quiet.get(r[0])) for r in res.rows]
        return res
