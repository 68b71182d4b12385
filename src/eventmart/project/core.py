"""The facade's core: loading a project, its warehouse and lock, name lookups, reading (query, export), checking,
backups, and what `serve` prepares and publishes."""

from __future__ import annotations

import functools
import re
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Self

from ..config import Mart, ProjectConfig, Source, did_you_mean, load_config, locate, project_file
from ..errors import ProjectError, UserError
from ..marts import MartRunner
from ..timeutil import parse_time
from ..warehouse import QueryResult, Warehouse, open_warehouse

if TYPE_CHECKING:
    pass


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


class ProjectCore:
    def __init__(self, directory: Path, config: ProjectConfig):
        self.dir = directory
        self.config = config
        self._wh: Warehouse | None = None
        self._read_only = False
        # one writer at a time inside a process (scheduler, API calls, dashboard actions)
        self.lock = threading.RLock()
        self.caches: dict[str, Any] = {}  # features' own (Workspace.caches)

    @classmethod
    def load(cls, directory: str | Path = ".") -> Self:
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

    def __enter__(self) -> Self:
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
        return MartRunner(self.warehouse, self.config.marts, self.config.sources, self.config._env_values)

    def query(self, sql: str, cancel: threading.Event | None = None) -> QueryResult:
        """One read of the warehouse's tables (SELECT, DESCRIBE, SHOW), checked and run read-only within the
        project's `query:` limits (time, rows, bytes, memory); anything else is refused with a UserError (see
        usersql.py). It takes no lock: inside `eventmart serve` a read never waits for, nor delays, the writers.
        ``cancel``: set it to stop the read (a client that went away)."""
        from ..warehouse.base import QueryStopped, ResultTooBig

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
        from ..warehouse.base import Limits, QueryStopped

        wh, limits = self._reader(sql)
        try:
            yield from wh.read_only_batches(sql, Limits(memory=limits.memory), cancel)
        except QueryStopped as e:
            raise UserError(f"query: {e}") from None
        except wh.errors as e:
            raise UserError(f"query failed: {_first_line(e)}") from None

    def _reader(self, sql: str):
        from ..config import parse_size
        from ..usersql import check_read
        from ..warehouse.base import Limits

        wh = self._wh if self._wh is not None else self.warehouse_for_reading()
        check_read(sql, wh.dialect, set(wh.reader_table_names()), getattr(wh, "schema", None))
        q = self.config.query
        return wh, Limits(q.timeout_seconds, q.max_rows, parse_size(q.max_bytes), parse_size(q.memory))

    @_locked
    def check(self) -> tuple[list[str], list[str]]:
        """Every problem the project has, without writing anything: (problems, what was checked)."""
        from ..check import check_project

        return check_project(self)

    def backup(self, directory: str | Path | None = None, keep: int = 4):
        """A consistent, verified copy of the warehouse in ``directory`` (default: backups/)."""
        from ..backup import backup

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
        from ..warehouse import restore

        with self.lock:
            self.close()  # the next use opens the restored warehouse
            return restore(self.config.warehouse, self.dir, src)

    def prepare(self) -> None:
        """Before serving a project that has not loaded anything yet: empty raw tables for its sources, its vault's
        tables and its SQL marts' tables (their columns are what their query returns), so dashboards on them can be
        checked and drawn (empty) at once, and fill as data arrives."""
        from ..rawtables import ensure_tables

        with self.lock:
            wh = self.warehouse
            with wh.transaction():
                for name, src in self.config.sources.items():
                    if wh.table_columns(name) is None:
                        dims = [d.name for m in self.config.marts.values() if m.from_ == name for d in m.dimensions]
                        ensure_tables(wh, name, src, dims)
                if self.config.vault.hubs or self.config.vault.links or self.config.vault.satellites:
                    from ..vault import ensure

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
        from ..vault import tables as vault_tables

        target = self.dir / "bi.duckdb"
        with self.lock:
            wh = self.warehouse
            names = [n for n in [*self.config.marts, *vault_tables(self.config, wh)] if wh.table_columns(n)]
            return target if wh.publish(names, target) else None
