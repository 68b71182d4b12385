"""The default warehouse: one DuckDB file in the project folder."""

from __future__ import annotations

import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import duckdb

if TYPE_CHECKING:
    import pyarrow as pa

from ..config import decimal_spec
from ..errors import UserError
from .base import PARAM_RE, Limits, QueryResult, Warehouse, Watchdog, decimal_name, keep_verified, quote_ident

BATCH_ROWS = 10_000  # rows fetched at a time from a read of user SQL

_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}


def _sql_text(s: str) -> str:
    """A quoted SQL string for ATTACH, which takes no bound parameters; paths only, never user data."""
    return "'" + s.replace("'", "''") + "'"


def _counts(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    tables = [r[0] for r in con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = current_schema() "
        "AND table_type = 'BASE TABLE' ORDER BY 1").fetchall()]
    return {t: con.execute(f"SELECT count(*) FROM {quote_ident(t)}").fetchone()[0] for t in tables}


def _prepare(sql: str) -> str:
    return PARAM_RE.sub(lambda m: "$" + m.group(1), sql)


def _used(sql: str, params: dict[str, Any] | None) -> dict[str, Any] | None:
    """Only the parameters the statement names: DuckDB refuses extra ones."""
    if not params:
        return None
    names = set(PARAM_RE.findall(sql))
    return {k: v for k, v in params.items() if k in names} or None


def default_memory_limit() -> str:
    """Half the machine's memory: DuckDB's own default (80 %) leaves too little beside it for the process's
    Python side, serve's dashboards and the rest of the machine once a big load spills."""
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        return "4GB"
    return f"{max(total // 2 // 2**20, 256)}MiB"


def connect(path: str | Path | None, read_only: bool = False, memory_limit: str | None = None,
            io_dir: Path | None = None) -> duckdb.DuckDBPyConnection:
    """A connection in UTC. Read-only ones (queries, checks) cannot reach files or change settings. With
    ``io_dir`` (the warehouse itself) the instance reaches no file but that folder, where backups and published
    copies are written before Python moves them: SQL run on it — user SQL through `eventmart serve` included —
    cannot read the project's files or anything else, and no statement can switch that back."""
    config: dict[str, Any] = {"enable_external_access": False} if read_only else {}
    if memory_limit:
        # bounded: beyond it aggregates, joins and sorts spill to <file>.tmp beside the warehouse
        config["memory_limit"] = memory_limit
    con = duckdb.connect(str(path) if path else ":memory:", read_only=read_only and path is not None, config=config)
    con.execute("SET TimeZone = 'UTC'")
    if read_only:
        con.execute("SET lock_configuration = true")
    elif io_dir is not None:
        con.execute(f"SET allowed_directories = [{_sql_text(str(io_dir) + os.sep)}]")
        con.execute("SET enable_external_access = false")  # for good: DuckDB refuses to turn it back on
    return con


class DuckDBWarehouse(Warehouse):
    dialect = "duckdb"
    errors = (duckdb.Error,)

    def __init__(self, path: Path | None, read_only: bool = False, memory_limit: str | None = None):
        """A file, or in memory (``path`` None)."""
        self.path = path
        self.read_only = read_only
        if read_only and path is not None and not path.exists():
            raise UserError(f"{path}: the warehouse does not exist yet; load data with `eventmart ingest` first")
        if path is not None and not read_only:  # a warehouse file that is written: its memory is bounded
            self.stage_memory_limit = (memory_limit or default_memory_limit()).replace(" ", "")
        # the only folder this instance may touch: backups and published copies pass through it
        self.io_dir = path.with_name(path.name + ".io") if path is not None else Path(tempfile.gettempdir()) / \
            f"eventmart-io-{os.getpid()}-{id(self)}"
        try:
            self.con = connect(path, read_only=read_only, memory_limit=self.stage_memory_limit,
                               io_dir=None if read_only else self.io_dir)
        except duckdb.IOException as e:
            if "lock" in str(e).lower():
                raise UserError(
                    f"{path}: the warehouse is in use by another eventmart process; stop it or wait for it"
                ) from None
            raise
        self._depth = 0
        self._local = threading.local()

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        cur = self.con.execute(_prepare(sql), _used(sql, params))
        try:
            row = cur.fetchone()
        except duckdb.InvalidInputException:
            return -1
        # DML returns a single "Count" row
        return int(row[0]) if row and cur.description and cur.description[0][0] == "Count" else -1

    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        cur = self.con.execute(_prepare(sql), _used(sql, params))
        cols = [d[0] for d in cur.description] if cur.description else []
        return QueryResult(cols, cur.fetchall())

    def fetch_arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        return self.con.sql(_prepare(sql), params=_used(sql, params)).to_arrow_table()

    @contextmanager
    def transaction(self) -> Iterator[None]:
        if self._depth:
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self.con.execute("BEGIN TRANSACTION")
        self._depth = 1
        try:
            yield
        except BaseException:
            self._depth = 0
            self.con.execute("ROLLBACK")
            raise
        self._depth = 0
        self.con.execute("COMMIT")

    def read_only_batches(self, sql, limits=None, cancel=None):
        limits = limits or Limits()
        # a cursor is a connection of its own (its own session state), in a read-only transaction; DuckDB's
        # memory for it is the warehouse's (memory_limit, spilling beyond)
        cur = self.con.cursor()
        try:
            cur.execute("BEGIN TRANSACTION READ ONLY")
            with Watchdog(limits.timeout, cancel, cur.interrupt) as dog:
                try:
                    res = cur.execute(sql)
                    cols = [d[0] for d in res.description] if res.description else []
                    if not res.description:
                        yield cols, []
                        return
                    first = True
                    while (batch := res.fetchmany(BATCH_ROWS)) or first:  # an empty result still has columns
                        first = False
                        yield cols, batch
                except duckdb.InterruptException:
                    dog.raise_stopped()
                    raise
        finally:
            try:
                cur.execute("ROLLBACK")
            except duckdb.Error:
                pass
            cur.close()

    def reader_table_names(self) -> list[str]:
        cur = self.con.cursor()
        try:
            return [r[0] for r in cur.execute("SELECT table_name FROM information_schema.tables "
                                              "WHERE table_schema = current_schema()").fetchall()]
        finally:
            cur.close()

    def table_columns(self, name: str) -> list[str] | None:
        # the catalog function, not information_schema's view over it: half the time, asked several times a run
        rows = self.con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = $n AND schema_name = current_schema() "
            "AND database_name = current_database() ORDER BY column_index",
            {"n": name},
        ).fetchall()
        return [r[0] for r in rows] or None

    def column_types(self, name: str) -> dict[str, str]:
        back = {v: k for k, v in _TYPES.items()}
        rows = self.con.execute(
            "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = $n "
            "AND table_schema = current_schema() ORDER BY ordinal_position",
            {"n": name},
        ).fetchall()
        return {c: back.get(t) or decimal_name(t) or t for c, t in rows}

    def type_name(self, t: str) -> str:
        spec = decimal_spec(t)
        return f"DECIMAL({spec[0]},{spec[1]})" if spec else _TYPES[t]

    def sequence_exists(self, name: str) -> bool:
        return bool(self.con.execute("SELECT count(*) FROM duckdb_sequences() WHERE sequence_name = $n "
                                     "AND schema_name = current_schema()", {"n": name}).fetchone()[0])

    def bucket_sql(self, expr: str, grain_seconds: int) -> str:
        unit = {60: "minute", 3600: "hour", 86400: "day", 604800: "week"}.get(grain_seconds)
        if unit:  # the same buckets (units start at midnight), computed faster
            return f"date_trunc('{unit}', {expr})"
        return f"time_bucket(INTERVAL '{grain_seconds} seconds', {expr}, TIMESTAMP '1970-01-05')"

    def local_date_sql(self, expr: str, tz: str) -> str:
        return f"CAST(timezone('{tz}', CAST({expr} AS TIMESTAMPTZ)) AS DATE)"

    def staging(self) -> duckdb.DuckDBPyConnection:
        return self.con

    def append_new(self, stage, select_sql, params, target, columns, key, key_range=None, repeats=True) -> int:
        cols = ", ".join(self.q(c) for c in columns)
        k = ", ".join(self.q(c) for c in key)
        join = " AND ".join(f"t.{self.q(c)} = s.{self.q(c)}" for c in key)
        # the staged keys' range: row groups of the raw table outside it are skipped by their min/max, so a
        # log whose keys grow with time is checked against the recent rows only (the same answer, faster)
        k0 = self.q(key[0])
        if key_range is None:
            key_range = self.fetch(f"SELECT min({k0}), max({k0}) FROM ({select_sql})", params).rows[0]
        lo, hi = key_range
        first = f"(SELECT * FROM ({select_sql}) QUALIFY row_number() OVER (PARTITION BY {k} ORDER BY _ord) = 1)" \
            if repeats else f"({select_sql})"
        return self.execute(
            f"INSERT INTO {self.q(target)} ({cols}) SELECT {cols} FROM {first} s "
            f"WHERE NOT EXISTS (SELECT 1 FROM {self.q(target)} t WHERE {join} "
            f"AND t.{k0} >= {{{{ _lo }}}} AND t.{k0} <= {{{{ _hi }}}})", {**params, "_lo": lo, "_hi": hi}
        )

    def append_all(self, stage, staged, target, columns: Sequence[str]) -> int:
        cols = ", ".join(self.q(c) for c in columns)
        return self.execute(f"INSERT INTO {self.q(target)} ({cols}) SELECT {cols} FROM {self.q(staged)}")

    def concurrent_fetch(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        # a cursor is its own connection to the same database: own transaction, safe in its thread
        cur = getattr(self._local, "cur", None)
        if cur is None:
            cur = self._local.cur = self.con.cursor()
        res = cur.execute(_prepare(sql), _used(sql, params))
        return QueryResult([d[0] for d in res.description], res.fetchall())

    def canonical_text_sql(self, expr: str, t: str) -> str:
        if t == "timestamp":
            return f"strftime({expr}, '%Y-%m-%d %H:%M:%S.%f')"
        return self.text_sql(expr)

    def in_list_sql(self, expr: str, param: str) -> str:
        return f"list_contains(CAST({{{{ {param} }}}} AS VARCHAR[]), CAST({expr} AS VARCHAR))"

    def publish(self, tables: list[str], target: Path) -> bool:
        """A DuckDB file with copies of ``tables``: written beside, then renamed over ``target`` (a reader that has
        the old file open keeps reading it)."""
        tmp = target.with_name(target.name + ".partial")
        tmp.unlink(missing_ok=True)
        staged = self._io_file("publish")
        con = self.con
        con.execute(f"ATTACH {_sql_text(str(staged))} AS em_publish")
        try:
            for t in tables:
                con.execute(f"CREATE TABLE em_publish.{self.q(t)} AS SELECT * FROM {self.q(t)}")
        finally:
            con.execute("DETACH em_publish")
        shutil.move(staged, tmp)
        tmp.replace(target)
        return True

    def _io_file(self, what: str) -> Path:
        """A new file in the one folder the instance may write (see :func:`connect`)."""
        self.io_dir.mkdir(parents=True, exist_ok=True)
        f = self.io_dir / f"{what}-{os.getpid()}-{time.time_ns()}.duckdb"
        f.unlink(missing_ok=True)
        return f

    # --- backups: COPY FROM DATABASE into a new file (checkpointed and consistent while eventmart holds the file) --
    backup_suffix = "duckdb"

    def backup_to(self, target: Path) -> dict[str, int]:
        con = self.con
        src_db = con.execute("SELECT current_database()").fetchone()[0]
        tmp = target.with_suffix(".partial")
        tmp.unlink(missing_ok=True)
        staged = self._io_file("backup")
        con.execute(f"ATTACH {_sql_text(str(staged))} AS em_backup")
        try:
            con.execute(f"COPY FROM DATABASE {self.q(src_db)} TO em_backup")
        finally:
            con.execute("DETACH em_backup")
        shutil.move(staged, tmp)
        want = _counts(con)
        # restore to scratch: a copy of the file, opened on its own, must hold the same rows
        with tempfile.TemporaryDirectory(prefix="eventmart-verify-") as scratch:
            probe = Path(scratch) / "restored.duckdb"
            shutil.copyfile(tmp, probe)
            c = duckdb.connect(str(probe), read_only=True)
            try:
                got = _counts(c)
            finally:
                c.close()
        return keep_verified(tmp, target, got, want)

    @staticmethod
    def restore_file(warehouse_file: Path, path: Path) -> str:
        """The backup file becomes the warehouse file (not opened: it may be the damaged one); the current one is
        kept beside it."""
        try:
            duckdb.connect(str(path), read_only=True).close()
        except duckdb.Error as e:
            raise UserError(f"{path}: not a readable DuckDB backup ({str(e).splitlines()[0]})") from None
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
        keep = warehouse_file.with_name(warehouse_file.name + f".before-restore-{stamp}")
        if warehouse_file.exists():
            warehouse_file.rename(keep)
        Path(str(warehouse_file) + ".wal").unlink(missing_ok=True)
        shutil.copyfile(path, warehouse_file)
        return f"restored {path.name}; the previous warehouse is kept as {keep.name}"

    def restore_from(self, path: Path) -> str:
        if self.path is None:
            raise UserError("an in-memory warehouse cannot be restored into")
        self.close()
        return self.restore_file(self.path, path)

    def close(self) -> None:
        self.con.close()
