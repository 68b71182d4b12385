"""The facade's commands about marts: run, backfill, status, reset, run history, the DDL `check --sql` prints."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ..config import did_you_mean
from ..errors import UserError
from ..ledger import RunResult
from ..marts import MartRunner, MartStatus
from ..warehouse import QueryResult
from .core import _empty_select, _locked, _time

if TYPE_CHECKING:
    pass


class MartCommands:
    """Mixed into Project (project/__init__.py): ``self`` is the project."""

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
        from ..marts import marts_reading

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
        from ..ledger import mark_interrupted

        mark_interrupted(self.warehouse)  # a run killed -9 shows as failed, not running
        runner = self.runner
        return [runner.status(n) for n in self.config.marts]

    @_locked
    def reset(self, mart: str) -> None:
        """Drop a mart's table and its ledger rows, e.g. after its definition changed."""
        self.mart(mart)
        from ..ledger import forget

        wh = self.warehouse
        with wh.transaction():
            wh.drop_table(mart)
            forget(wh, mart)

    # --- run history, backups ---------------------------------------------------------------------
    @_locked
    def runs(self, job: str | None = None, failed: bool = False, mart: str | None = None,
             limit: int = 50) -> QueryResult:
        """The run ledger, newest first (a `running` row whose process is gone shows as failed)."""
        from ..ledger import RUNS, mark_interrupted

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

    def ddl(self) -> list[tuple[str, list[str]]]:
        """(table, the statements that create it) for every source's raw table and every mart, as this warehouse
        would run them; nothing is written. A mart whose source has not been loaded yet is described from the
        declared columns."""
        from ..marts import compile_mart
        from ..rawtables import raw_columns, raw_layout

        wh = self.warehouse_for_reading()
        out = []
        for name, src in self.config.sources.items():
            dims = [d.name for m in self.config.marts.values() if m.from_ == name for d in m.dimensions]
            out.append((name, wh.table_ddl(name, raw_columns(wh, src), src.key, raw_layout(src, dims))))
        epoch = {"start": datetime(1970, 1, 1), "end": datetime(1970, 1, 1)}
        runner = MartRunner(wh, self.config.marts, self.config.sources, self.config._env_values)  # on the reading handle
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
        from ..vault import tables

        for name, (_, cols, layout) in tables(self.config, wh).items():
            out.append((name, wh.table_ddl(name, cols, layout=layout)))
        return out
