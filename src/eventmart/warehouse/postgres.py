"""PostgreSQL warehouse: marts computed in the server; files are parsed in DuckDB, then COPYed in."""

from __future__ import annotations

import os
import tempfile
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import duckdb
import psycopg
import pyarrow as pa

from ..config import decimal_spec
from .base import PARAM_RE, Limits, QueryResult, QueryStopped, Warehouse, Watchdog
from .duckdb import _prepare as duck_prepare
from .duckdb import _used as duck_used
from .duckdb import connect as duck_connect
from .pgconnect import pg_connect

_TYPES = {
    "string": "TEXT",
    "int": "BIGINT",
    "float": "DOUBLE PRECISION",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMP",
    "date": "DATE",
}
_COPY_CHUNK = 1 << 20


def _prepare(sql: str) -> str:
    # '%' is psycopg's placeholder character: escape literal ones before adding ours
    return PARAM_RE.sub(lambda m: f"%({m.group(1)})s", sql.replace("%", "%%"))


class PostgresWarehouse(Warehouse):
    dialect = "postgres"
    errors = (duckdb.Error, psycopg.Error)  # files are parsed in DuckDB, the rest runs in the server
    backup_suffix = "pgdump"
    approx_distinct = False  # no sketch in core PostgreSQL

    def __init__(self, url: str, schema: str | None = None, read_only: bool = False, read_url: str | None = None):
        self.url = url
        self.read_url = read_url  # a least-privileged role for user SQL (docs: "PostgreSQL")
        self.conn = pg_connect(url)
        self.read_only = read_only
        self.schema = schema or "public"
        if schema:
            self.conn.execute(f"CREATE SCHEMA IF NOT EXISTS {self.q(schema)}")
            self.conn.execute(f"SET search_path TO {self.q(schema)}")
        self._tx: psycopg.Transaction | None = None
        self._stage: duckdb.DuckDBPyConnection | None = None
        self._local = threading.local()
        self._readers: list[psycopg.Connection] = []
        self._reader: str | None = None  # the URL user SQL connects with (see _reader_url)
        self._reader_lock = threading.Lock()

    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        cur = self.conn.execute(_prepare(sql), params or None)
        return cur.rowcount

    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        cur = self.conn.execute(_prepare(sql), params or None)
        cols = [d.name for d in cur.description] if cur.description else []
        return QueryResult(cols, cur.fetchall() if cur.description else [])

    def fetch_arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        res = self.fetch(sql, params)
        return pa.table({c: [r[i] for r in res.rows] for i, c in enumerate(res.columns)})

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self.conn.transaction():
            yield

    def analyze(self, table: str) -> None:
        # a sample (default_statistics_target rows), allowed inside a transaction; autovacuum would come later
        self.conn.execute(f"ANALYZE {self.q(table)}")

    def lock(self, key: str) -> None:
        # a transaction-scoped advisory lock: two processes running one mart's window take turns, so the second
        # deletes what the first inserted instead of adding its rows beside them
        self.conn.execute("SELECT pg_advisory_xact_lock(hashtextextended(%s, 0))",
                          (f"eventmart:{self.schema}:{key}",))

    def read_only_batches(self, sql, limits=None, cancel=None):
        limits = limits or Limits()
        timeout_ms = int(limits.timeout * 1000) if limits.timeout else 0
        work_mem = max((limits.memory or 0) // 16 // 1024, 4096)  # kB: per sort or hash of the query
        # a connection of its own, read-only by default, as a role that cannot read the server's files; no
        # parameters: the text is sent as the user wrote it ('50%' stays 50%)
        conn = pg_connect(self._reader_url(), options=f"-c TimeZone=UTC -c default_transaction_read_only=on "
                                                      f"-c statement_timeout={timeout_ms} -c work_mem={work_mem}kB")
        try:
            if self.schema != "public":
                conn.execute(f"SET search_path TO {self.q(self.schema)}")
            with Watchdog(None, cancel, conn.cancel) as dog, conn.transaction(force_rollback=True):
                conn.execute("SET TRANSACTION READ ONLY")
                try:
                    # a server-side cursor: the rows come 10,000 at a time, never all at once (SHOW cannot be one)
                    show = sql.lstrip().lower().startswith("show")
                    cur = conn.cursor() if show else conn.cursor(name="eventmart_user_sql")
                    cur.execute(sql.encode())  # bytes: no placeholder processing at all
                    cols = [d.name for d in cur.description] if cur.description else []
                    first = True
                    while (batch := cur.fetchmany(10_000) if cur.description else []) or first:
                        first = False
                        yield cols, batch
                except psycopg.errors.QueryCanceled:
                    dog.raise_stopped()
                    if timeout_ms:
                        raise QueryStopped(f"stopped after {limits.timeout:g} s (query.timeout)") from None
                    raise
        finally:
            conn.close()

    def _reader_url(self) -> str:
        """Who user SQL connects as: the configured reader role, else the warehouse's role when it cannot read or
        run anything on the server's machine, else a reader role of eventmart's own (created once per database and
        schema, LOGIN with a password derived from the warehouse's URL, SELECT on the schema only): a superuser's
        pg_read_file is then refused by the server itself, whatever the text of the query."""
        if self.read_url:
            return self.read_url
        if self._reader is not None:
            return self._reader
        risky, can_create = self.conn.execute(
            "SELECT rolsuper OR pg_has_role(current_user, 'pg_read_server_files', 'MEMBER') "
            "OR pg_has_role(current_user, 'pg_write_server_files', 'MEMBER') "
            "OR pg_has_role(current_user, 'pg_execute_server_program', 'MEMBER'), rolsuper OR rolcreaterole "
            "FROM pg_roles WHERE rolname = current_user").fetchone()
        if not risky or not can_create:
            self._reader = self.url
            return self._reader
        import hashlib

        from psycopg import sql as psql

        info = psycopg.conninfo.conninfo_to_dict(self.url)
        db = self.conn.execute("SELECT current_database()").fetchone()[0]
        role = "eventmart_reader_" + hashlib.sha256(f"{db}/{self.schema}".encode()).hexdigest()[:12]
        secret = hashlib.sha256(f"eventmart-reader:{self.url}:{self.schema}".encode()).hexdigest()
        with self._reader_lock:
            try:
                self.conn.execute(psql.SQL("CREATE ROLE {} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOINHERIT")
                                  .format(psql.Identifier(role)))
            except psycopg.errors.DuplicateObject:
                pass
            ident, schema = psql.Identifier(role), psql.Identifier(self.schema)
            for st in (psql.SQL("ALTER ROLE {} WITH LOGIN NOSUPERUSER PASSWORD {}").format(ident, psql.Literal(secret)),
                       psql.SQL("ALTER ROLE {} SET default_transaction_read_only = on").format(ident),
                       psql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(psql.Identifier(db), ident),
                       psql.SQL("GRANT USAGE ON SCHEMA {} TO {}").format(schema, ident),
                       psql.SQL("GRANT SELECT ON ALL TABLES IN SCHEMA {} TO {}").format(schema, ident),
                       psql.SQL("ALTER DEFAULT PRIVILEGES IN SCHEMA {} GRANT SELECT ON TABLES TO {}").format(
                           schema, ident)):
                self.conn.execute(st)
        self._reader = psycopg.conninfo.make_conninfo(**{**info, "user": role, "password": secret})
        return self._reader

    def reader_table_names(self) -> list[str]:
        return [r[0] for r in self.concurrent_fetch("SELECT table_name FROM information_schema.tables WHERE "
                                                    "table_schema = {{ s }}", {"s": self.schema}).rows]

    def table_names(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT table_name FROM information_schema.tables WHERE "
                                                "table_schema = %s", (self.schema,)).fetchall()]

    def table_columns(self, name: str) -> list[str] | None:
        rows = self.conn.execute(
            "SELECT column_name FROM information_schema.columns WHERE table_name = %s AND table_schema = %s "
            "ORDER BY ordinal_position",
            (name, self.schema),
        ).fetchall()
        return [r[0] for r in rows] or None

    def column_types(self, name: str) -> dict[str, str]:
        back = {"text": "string", "bigint": "int", "double precision": "float", "boolean": "bool",
                "timestamp without time zone": "timestamp", "date": "date"}
        rows = self.conn.execute(
            "SELECT column_name, data_type, numeric_precision, numeric_scale FROM information_schema.columns "
            "WHERE table_name = %s AND table_schema = %s ORDER BY ordinal_position",
            (name, self.schema),
        ).fetchall()
        return {c: f"decimal({p},{s})" if t == "numeric" and p is not None else back.get(t, t)
                for c, t, p, s in rows}

    def alter_column_type(self, table: str, column: str, t: str) -> None:
        c = self.q(column)
        self.execute(f"ALTER TABLE {self.q(table)} ALTER COLUMN {c} TYPE {self.type_name(t)} USING {c}::{self.type_name(t)}")

    def type_name(self, t: str) -> str:
        spec = decimal_spec(t)
        return f"NUMERIC({spec[0]},{spec[1]})" if spec else _TYPES[t]

    def sequence_exists(self, name: str) -> bool:
        return bool(self.conn.execute("SELECT count(*) FROM information_schema.sequences WHERE sequence_name = %s "
                                      "AND sequence_schema = %s", (name, self.schema)).fetchone()[0])

    def local_date_sql(self, expr: str, tz: str) -> str:
        return f"CAST(({expr} AT TIME ZONE 'UTC') AT TIME ZONE '{tz}' AS DATE)"

    def bucket_sql(self, expr: str, grain_seconds: int) -> str:
        return f"date_bin(INTERVAL '{grain_seconds} seconds', {expr}, TIMESTAMP '1970-01-05')"

    def table_ddl(self, name, columns, primary_key=(), layout=None) -> list[str]:
        cols = ", ".join(f"{self.q(c)} {t}" for c, t in columns)
        pk = f", PRIMARY KEY ({', '.join(self.q(c) for c in primary_key)})" if primary_key else ""
        return [f"CREATE TABLE IF NOT EXISTS {self.q(name)} ({cols}{pk})"]

    # --- ingest: validated rows go from the DuckDB stage to PostgreSQL by COPY (CSV text) -------
    def staging(self) -> duckdb.DuckDBPyConnection:
        if self._stage is None:
            self._stage = duck_connect(None)
        return self._stage

    def _copy_in(self, stage: duckdb.DuckDBPyConnection, select_sql: str, params: dict | None, target: str,
                 columns: Sequence[str]) -> None:
        cols = ", ".join(self.q(c) for c in columns)
        fd, tmp = tempfile.mkstemp(suffix=".csv", prefix="eventmart-copy-")
        os.close(fd)
        try:
            # the path is eventmart's own temp file, never user input
            sql = f"COPY ({select_sql}) TO '{tmp}' (FORMAT csv, HEADER false)"
            stage.execute(duck_prepare(sql), duck_used(sql, params))
            with self.conn.cursor() as cur, cur.copy(f"COPY {self.q(target)} ({cols}) FROM STDIN (FORMAT csv)") as cp:
                with open(tmp, "rb") as f:
                    while chunk := f.read(_COPY_CHUNK):
                        cp.write(chunk)
        finally:
            os.unlink(tmp)

    def append_new(self, stage, select_sql, params, target, columns, key, key_range=None, repeats=True) -> int:
        tmp = f"_stage_{target}"
        self.execute(f"CREATE TEMP TABLE IF NOT EXISTS {self.q(tmp)} (LIKE {self.q(target)})")
        self.execute(f"TRUNCATE {self.q(tmp)}")
        cols = ", ".join(self.q(c) for c in columns)
        self._copy_in(stage, f"SELECT {cols} FROM ({select_sql}) s ORDER BY _ord", params, tmp, columns)
        # rows keep file order in the temp table, and ON CONFLICT keeps the first of equal keys
        return self.execute(
            f"INSERT INTO {self.q(target)} ({cols}) SELECT {cols} FROM {self.q(tmp)} ON CONFLICT DO NOTHING"
        )

    def append_all(self, stage, staged, target, columns) -> int:
        before = self.fetch(f"SELECT count(*) FROM {self.q(target)}").rows[0][0]
        cols = ", ".join(self.q(c) for c in columns)
        self._copy_in(stage, f"SELECT {cols} FROM {self.q(staged)}", None, target, columns)
        return self.fetch(f"SELECT count(*) FROM {self.q(target)}").rows[0][0] - before

    def concurrent_fetch(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        conn = getattr(self._local, "conn", None)
        if conn is None or conn.closed:
            conn = self._local.conn = pg_connect(self.url)
            self._readers.append(conn)
            if self.schema != "public":
                conn.execute(f"SET search_path TO {self.q(self.schema)}")
        cur = conn.execute(_prepare(sql), params or None)
        return QueryResult([d.name for d in cur.description], cur.fetchall())

    def canonical_text_sql(self, expr: str, t: str) -> str:
        if t == "timestamp":
            return f"to_char({expr}, 'YYYY-MM-DD HH24:MI:SS.US')"
        return self.text_sql(expr)

    def in_list_sql(self, expr: str, param: str) -> str:
        return f"CAST({expr} AS TEXT) = ANY(CAST({{{{ {param} }}}} AS TEXT[]))"

    def backup_to(self, target):
        from . import pgdump

        return pgdump.backup(self, target)

    def restore_from(self, path) -> str:
        from . import pgdump

        pgdump.restore(self, path)
        return f"restored {path.name} into the PostgreSQL warehouse"

    def close(self) -> None:
        self.conn.close()
        for c in self._readers:
            c.close()
        if self._stage is not None:
            self._stage.close()
