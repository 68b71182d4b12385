"""One interface over the engines; every dialect difference lives in a subclass.

SQL inside eventmart is written with ``{{ name }}`` placeholders; each adapter turns them into its
own bound-parameter style, so values never become SQL text. Beside statements, an adapter offers the
operations whose SQL differs between engines (replace a time range, delete and count, back up, restore)
and says what the engine can do (``transactional``, ``errors``): code above ``warehouse/`` never asks
which engine it runs on.
"""

from __future__ import annotations

import re
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # imported lazily: every command pays for what it imports
    import duckdb
    import pyarrow as pa

PARAM_RE = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# both engines have information_schema and current_schema()
TABLE_EXISTS_SQL = ("SELECT count(*) FROM information_schema.tables WHERE table_name = {{ t }} "
                    "AND table_schema = current_schema()")


@dataclass
class QueryResult:
    columns: list[str]
    rows: list[tuple[Any, ...]]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


_ENGINE_DECIMAL = re.compile(r"^(?:Nullable\()?(?:DECIMAL|NUMERIC|Decimal)\((\d+),\s*(\d+)\)\)?$", re.I)


def decimal_name(engine_type: str) -> str | None:
    """An engine's DECIMAL(18,2) / Decimal(18, 2) / numeric(18,2) as eventmart's ``decimal(18,2)``, else None."""
    m = _ENGINE_DECIMAL.match(engine_type.strip())
    return f"decimal({m.group(1)},{m.group(2)})" if m else None


def keep_verified(tmp: Path, target: Path, got: dict[str, int], want: dict[str, int]) -> dict[str, int]:
    """A backup written to ``tmp`` becomes ``target`` only if restoring it gave the warehouse's row counts."""
    if got != want:
        tmp.unlink(missing_ok=True)
        from ..errors import UserError

        raise UserError(f"backup {target.name} failed verification: restored row counts {got} != {want}")
    tmp.rename(target)
    return want


@dataclass(frozen=True)
class Limits:
    """What one read of user SQL may take (from the project file's `query:`)."""

    timeout: float | None = None  # seconds
    max_rows: int | None = None
    max_bytes: int | None = None
    memory: int | None = None  # bytes, where the engine bounds one query's memory


class ResultTooBig(Exception):  # noqa: N818 - the caller says what to do
    """A result past the limits; nothing more was fetched."""


class QueryStopped(Exception):  # noqa: N818 - the caller says what to do
    """A read stopped by its timeout or by its caller going away."""


def _weight(v: Any) -> int:
    return len(v) if isinstance(v, (str, bytes)) else 8


class Watchdog:
    """Stops a running read (``stop()``: the engine's interrupt or cancel) after ``timeout`` seconds or as soon as
    ``cancel`` is set; ``raise_stopped()`` then turns the engine's error into :class:`QueryStopped`.

        with Watchdog(limits.timeout, cancel, cursor.interrupt) as dog:
            try: ...
            except duckdb.InterruptException: dog.raise_stopped()
    """

    def __init__(self, timeout: float | None, cancel: threading.Event | None, stop: Any):
        self.timeout, self.cancel, self.stop = timeout, cancel, stop
        self.why: str | None = None
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    def _watch(self) -> None:
        import time

        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        while not self._done.is_set():
            if self.cancel is not None and self.cancel.is_set():
                self.why = "cancelled: the caller went away"
            elif deadline is not None and time.monotonic() >= deadline:
                self.why = f"stopped after {self.timeout:g} s (query.timeout)"
            if self.why:
                try:
                    self.stop()
                except Exception:  # the read ended meanwhile
                    pass
                return
            self._done.wait(0.05)

    def __enter__(self) -> Watchdog:
        if self.timeout is not None or self.cancel is not None:
            self._thread = threading.Thread(target=self._watch, daemon=True, name="eventmart-query-watchdog")
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._done.set()

    def raise_stopped(self) -> None:
        """Call where the engine reports an interrupted query: QueryStopped when this watchdog stopped it."""
        if self.why:
            raise QueryStopped(self.why) from None


class RowsOutsideWindow(Exception):  # noqa: N818 - a condition the caller turns into a user error
    """A query meant to fill a window returned rows outside it; nothing was replaced."""

    def __init__(self, count: int):
        super().__init__(f"{count} row(s) outside the window")
        self.count = count


@dataclass
class TableLayout:
    """How a table is used, for engines whose tables need a physical layout (ClickHouse's MergeTree):
    the time column it is read by, the columns rows are looked up or grouped by, and the partition size."""

    time_column: str | None = None
    order_by: Sequence[str] = ()
    low_cardinality: Sequence[str] = ()  # text columns with few distinct values (dimensions)
    partition: str | None = None  # "day" | "month" of the time column (windows are replaced partition by partition)


class Warehouse(ABC):
    #: sqlglot dialect name used to render measure expressions
    dialect: str
    #: statements inside ``transaction()`` commit together. Where False (ClickHouse), each write is atomic on its
    #: own and eventmart orders its writes so that a rerun after a crash converges (see replace_window)
    transactional: bool = True
    # execute() returns the rows an INSERT wrote (else -1: callers count the table before and after)
    counts_rows: bool = True
    #: the engine's own error classes: a user's SQL or data that the engine refused
    errors: tuple[type[BaseException], ...] = ()
    #: file suffix of this engine's backups
    backup_suffix: str = "backup"
    #: the engine has an approximate distinct count (approx_count_distinct)
    approx_distinct: bool = True
    #: the engine keeps mergeable aggregate states (a mart's `keep_states`): see state_sql / merge_state_sql
    states: bool = False
    #: a mart's compiled SQL depends on its definition alone, not on what the warehouse holds (ClickHouse asks
    #: the engine for an expression's type): it may be kept between processes (memo.py)
    pure_compile: bool = True
    #: SQL counting the tables named {{ t }} in the warehouse's schema (1 if it exists)
    table_exists_sql: str = TABLE_EXISTS_SQL

    q = staticmethod(quote_ident)

    # --- statements ------------------------------------------------------------
    @abstractmethod
    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        """Run one statement; returns the affected row count where the engine reports it."""

    @abstractmethod
    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult: ...

    @abstractmethod
    def fetch_arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table: ...

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """All statements inside commit together or not at all."""

    def analyze(self, table: str) -> None:  # noqa: B027 - a no-op where the engine keeps its statistics itself
        """Refresh the planner's statistics of ``table`` (eventmart's own name) after a big change, so the next
        statement sees its new rows: without it PostgreSQL plans a batch just loaded as one row (a nested loop)."""

    def lock(self, key: str) -> None:  # noqa: B027 - a no-op where the engine has one writer
        """Inside a transaction: wait until no other process holds ``key``; released at commit or rollback.
        DuckDB has one writing process per file (eventmart serve forwards to it), so nothing to do there."""

    @abstractmethod
    def read_only_batches(self, sql: str, limits: Limits | None = None,
                          cancel: threading.Event | None = None) -> Iterator[tuple[list[str], list[tuple]]]:
        """User SQL (checked by usersql.check_read first), streamed as (columns, rows) batches: on a connection of
        its own, in a read-only transaction that is rolled back, with no parameters (the text is the user's, sent as
        is), stopped by the engine after ``limits.timeout`` seconds or when ``cancel`` is set (use :class:`Watchdog`);
        callable from any thread while other work writes."""

    def read_only_query(self, sql: str, limits: Limits | None = None,
                        cancel: threading.Event | None = None) -> QueryResult:
        """The whole result of user SQL, refused past ``limits.max_rows`` rows or ``limits.max_bytes`` of text
        (the rest is never fetched)."""
        limits = limits or Limits()
        cols: list[str] = []
        rows: list[tuple] = []
        size = 0
        for names, batch in self.read_only_batches(sql, limits, cancel):
            cols = names
            rows.extend(batch)
            if limits.max_rows is not None and len(rows) > limits.max_rows:
                raise ResultTooBig(f"more than {limits.max_rows:,} rows (query.max_rows)")
            size += sum(_weight(v) for r in batch for v in r)
            if limits.max_bytes is not None and size > limits.max_bytes:
                raise ResultTooBig(f"more than {limits.max_bytes / 1e6:,.0f} MB (query.max_bytes)")
        return QueryResult(cols, rows)

    def table_names(self) -> list[str]:
        """Tables and views of the warehouse's schema."""
        return [r[0] for r in self.fetch("SELECT table_name FROM information_schema.tables "
                                         "WHERE table_schema = current_schema()").rows]

    def reader_table_names(self) -> list[str]:
        """Like table_names, callable from any thread while other work writes (user SQL is checked against it)."""
        return [r[0] for r in self.concurrent_fetch("SELECT table_name FROM information_schema.tables "
                                                    "WHERE table_schema = current_schema()").rows]

    # --- schema ----------------------------------------------------------------
    @abstractmethod
    def table_columns(self, name: str) -> list[str] | None:
        """Column names of a table in order, or None when it does not exist."""

    @abstractmethod
    def column_types(self, name: str) -> dict[str, str]:
        """Column name -> eventmart type (string, int, ...) or the engine's own name for other types."""

    def alter_column_type(self, table: str, column: str, t: str) -> None:
        self.execute(f"ALTER TABLE {self.q(table)} ALTER COLUMN {self.q(column)} TYPE {self.type_name(t)}")

    @abstractmethod
    def type_name(self, t: str) -> str:
        """SQL type for an eventmart column type (string, int, float, bool, timestamp, date)."""

    @abstractmethod
    def bucket_sql(self, expr: str, grain_seconds: int) -> str:
        """SQL for floor(expr to grain) with buckets aligned to midnight UTC."""

    @abstractmethod
    def local_date_sql(self, expr: str, tz: str) -> str:
        """SQL for the local date in zone ``tz`` of the naive-UTC timestamp ``expr`` (tz already validated)."""

    def table_ddl(
        self, name: str, columns: Sequence[tuple[str, str]], primary_key: Sequence[str] = (),
        layout: TableLayout | None = None,
    ) -> list[str]:
        """The statements that create table ``name`` (``eventmart check --sql`` prints them)."""
        cols = ", ".join(f"{self.q(c)} {t}" for c, t in columns)
        return [f"CREATE TABLE IF NOT EXISTS {self.q(name)} ({cols})"]

    def create_table(
        self, name: str, columns: Sequence[tuple[str, str]], primary_key: Sequence[str] = (),
        layout: TableLayout | None = None,
    ) -> None:
        for sql in self.table_ddl(name, columns, primary_key, layout):
            self.execute(sql)

    def table_as_ddl(self, name: str, select_sql: str, params: dict[str, Any],
                     layout: TableLayout | None = None) -> list[str]:
        """The statements that create ``name`` with the columns (and types) of ``select_sql``, empty (they may
        contain ``{{ }}`` parameters of ``params``)."""
        return [f"CREATE TABLE {self.q(name)} AS SELECT * FROM ({select_sql}) AS s LIMIT 0"]

    def create_table_as(self, name: str, select_sql: str, params: dict[str, Any],
                        layout: TableLayout | None = None) -> None:
        for sql in self.table_as_ddl(name, select_sql, params, layout):
            self.execute(sql, params)

    def drop_table(self, name: str) -> None:
        self.execute(f"DROP TABLE IF EXISTS {self.q(name)}")

    def add_column(self, table: str, column: str, t: str) -> None:
        """Add a column of eventmart type ``t`` (string, int, …) that existing rows hold as NULL."""
        self.execute(f"ALTER TABLE {self.q(table)} ADD COLUMN {self.q(column)} {self.type_name(t)}")

    # --- operations whose SQL differs between engines ----------------------------------------------
    def replace_window(self, table: str, column: str, lo: Any, hi: Any, select_sql: str, params: dict[str, Any],
                       check_inside: bool = False) -> int:
        """Replace the rows of ``table`` whose ``column`` is in ``[lo, hi)`` by the rows of ``select_sql`` (same
        columns, in order); returns the rows written. ``check_inside``: refuse (RowsOutsideWindow, nothing
        replaced) when the query returns rows outside the window. Inside the caller's transaction here: the
        delete and the insert commit with whatever else it writes (the ledger row)."""
        q, p = self.q, {**params, "_lo": lo, "_hi": hi}
        inside = f"{q(column)} >= {{{{ _lo }}}} AND {q(column)} < {{{{ _hi }}}}"
        self.execute(f"DELETE FROM {q(table)} WHERE {inside}", p)
        rows = self.execute(f"INSERT INTO {q(table)} SELECT * FROM ({select_sql}) AS s", p)
        if check_inside:
            # the window was emptied first, so every inserted row must be found inside it
            n = self.fetch(f"SELECT count(*) FROM {q(table)} WHERE {inside}", p).rows[0][0]
            if n != rows:
                raise RowsOutsideWindow(rows - n)
        return rows

    def delete_rows(self, table: str, where: str, params: dict[str, Any] | None = None) -> int:
        """Delete the rows matching ``where`` (SQL over the table's columns); returns how many."""
        return self.execute(f"DELETE FROM {self.q(table)} WHERE {where}", params)

    def update_rows(self, table: str, assignments: str, where: str, params: dict[str, Any] | None = None) -> int:
        """``UPDATE table SET assignments WHERE where``; returns how many rows matched."""
        return self.execute(f"UPDATE {self.q(table)} SET {assignments} WHERE {where}", params)

    def state_sql(self, kind: str, expr: str) -> str:
        """SQL for the mergeable state of distinct count ``kind`` (count_distinct | approx_count_distinct) of
        ``expr``, where ``states`` is True."""
        raise NotImplementedError

    def merge_state_sql(self, kind: str, column: str) -> str:
        """SQL merging the states in ``column`` into the distinct count (an aggregate)."""
        raise NotImplementedError

    def text_sql(self, expr: str) -> str:
        """``expr`` cast to the engine's text type."""
        return f"CAST({expr} AS {self.type_name('string')})"

    def contains_sql(self, text_expr: str, param: str) -> str:
        """Whether the text ``text_expr`` holds the text bound as ``param``, ignoring case (a search box)."""
        return f"strpos(lower({text_expr}), lower({{{{ {param} }}}})) > 0"

    def sum_sql(self, expr: str, table: str | None = None, node: Any = None) -> str:
        """The sum of ``expr`` (over rows of ``table``) in a type that cannot silently overflow: DuckDB sums
        BIGINT into HUGEINT and PostgreSQL into NUMERIC by themselves (and fail on an overflow inside the
        expression); ClickHouse does neither (see its adapter). ``node``: the expression, parsed (sqlglot)."""
        return f"SUM({expr})"

    def canonical_text_sql(self, expr: str, t: str) -> str:
        """``expr`` (of eventmart type ``t``) as text written the same on every engine: the vault's hash contract
        (timestamps ``YYYY-MM-DD HH:MM:SS.ffffff``, booleans ``true``/``false``, dates ISO)."""
        return self.text_sql(expr)

    def md5_hex_sql(self, text_expr: str) -> str:
        """The MD5 digest of a text expression as 32 lowercase hex digits."""
        return f"md5({text_expr})"

    def publish(self, tables: list[str], target: Path) -> bool:
        """For an embedded engine that other processes cannot open while eventmart holds it: write ``tables`` into a
        file of their own at ``target`` (replaced atomically) that BI tools open read-only. False where other
        clients connect to the engine itself (a server), so nothing is written."""
        return False

    def backup_to(self, target: Path) -> dict[str, int]:
        """Write a consistent copy of the warehouse to ``target``, verify it by restoring it to scratch, and return
        the row count per table (the copy's, equal to the warehouse's). Nothing is left at ``target`` if it
        fails."""
        raise NotImplementedError(f"backups are not supported on {self.dialect}")

    def restore_from(self, path: Path) -> str:
        """Bring a backup written by ``backup_to`` back as the warehouse; returns what was done, for the user. The
        adapter may close itself: the caller opens the warehouse again afterwards."""
        raise NotImplementedError(f"restore is not supported on {self.dialect}")

    # --- sequences (the run ledger's order) ------------------------------------------
    def create_sequence(self, name: str, start: int = 1) -> None:
        self.execute(f"CREATE SEQUENCE IF NOT EXISTS {self.q(name)} START WITH {int(start)}")

    @abstractmethod
    def sequence_exists(self, name: str) -> bool: ...

    def next_value_sql(self, name: str) -> str:
        """SQL for the sequence's next value (``name`` is eventmart's own, never user input)."""
        return f"nextval('{name}')"

    # --- ingest ------------------------------------------------------------------
    # the staging connection's memory limit outside an ingest (None: DuckDB's default)
    stage_memory_limit: str | None = None

    @abstractmethod
    def staging(self) -> duckdb.DuckDBPyConnection:
        """The DuckDB connection where files are parsed and validated before they reach the warehouse."""

    @abstractmethod
    def append_new(
        self, stage: duckdb.DuckDBPyConnection, select_sql: str, params: dict[str, Any], target: str,
        columns: Sequence[str], key: Sequence[str], key_range: tuple | None = None, repeats: bool = True,
    ) -> int:
        """Insert the rows of ``select_sql`` (run on ``stage``: ``columns`` plus ``_ord``, the read order) whose
        key is not yet in ``target``; the first of equal keys wins. ``key_range``: min and max of the first key
        column, when the caller knows them; ``repeats`` False: the rows' keys are known to be distinct.
        Returns the rows inserted."""

    @abstractmethod
    def append_all(
        self, stage: duckdb.DuckDBPyConnection, staged: str, target: str, columns: Sequence[str]
    ) -> int: ...

    # --- concurrent reads (dashboards) ---------------------------------------------------------
    @abstractmethod
    def concurrent_fetch(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        """Like fetch, callable from any thread; sees committed data only."""

    def concurrent_table_exists(self, name: str) -> bool:
        """Whether table ``name`` exists in the current schema; callable from any thread, like concurrent_fetch."""
        return bool(self.concurrent_fetch(self.table_exists_sql, {"t": name}).rows[0][0])

    @abstractmethod
    def in_list_sql(self, expr: str, param: str) -> str:
        """SQL testing ``expr`` (compared as text) against the list bound as ``param``."""

    def close(self) -> None:  # noqa: B027 - optional hook
        pass
