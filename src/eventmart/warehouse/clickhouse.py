"""ClickHouse warehouse: embedded chDB (a folder in the project: the default for ``type: clickhouse``) or a server
over HTTP (``url:``). One adapter and one SQL for both: clickhouse-connect drives either transport.

Tables are MergeTree, designed for ClickHouse rather than translated:
- raw events ordered by time, partitioned by month, a min/max index on the key, low-cardinality text for the
  columns marts group by;
- marts ordered by (time, dimensions) and partitioned by day (by month for daily marts), so a window is replaced
  with ``REPLACE PARTITION`` from a staging table: atomic per partition, no mutation, and a reader sees a
  partition's old rows or its new ones, never a mix;
- eventmart's own small tables (ledger, ingest log, alert state) allow lightweight UPDATE/DELETE.
There are no multi-statement transactions (``transactional`` is False): every write is atomic on its own and
ordered so that a rerun after a crash converges — a window is replaced before its ledger row says ok; a loaded
chunk is skipped by key when read again.

Dedup by key without unique constraints: a chunk's rows go to a scratch table first and only those whose key is
not yet in the raw table are inserted — an anti-join limited to the chunk's key range, which the key's min/max
index turns into a read of the parts that can hold it. For keys that grow with time (event ids) that is the
newest parts; random keys (UUIDs) cost a read of the key column per chunk, growing with the raw table.
"""

from __future__ import annotations

import logging
import re
import threading
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..config import decimal_spec
from ..errors import UserError
from .base import (
    Limits,
    QueryResult,
    QueryStopped,
    RowsOutsideWindow,
    TableLayout,
    Warehouse,
    decimal_name,
)
from .chsql import (
    _BACK,
    _PARTITION,
    _SAFE_PART,
    _TABLE_SETTINGS,
    _TYPES,
    SEQUENCES,
    SETTINGS,
    _prepare,
    _stored,
    _unwrap,
    redact,
)

if TYPE_CHECKING:
    import duckdb
    import pyarrow as pa

    from ..config import Warehouse as WarehouseConfig

# the client logs what it then raises; the exception is what reaches the user (once, in one line)
logging.getLogger("clickhouse_connect").setLevel(logging.CRITICAL)


def open_clickhouse(cfg: WarehouseConfig, project_dir: Path, read_only: bool = False) -> ClickHouseWarehouse:
    if cfg.url:
        return ClickHouseWarehouse(url=cfg.url, database=cfg.database, cluster=cfg.cluster, read_only=read_only)
    return ClickHouseWarehouse(path=project_dir / cfg.path, database=cfg.database, read_only=read_only)


class ClickHouseWarehouse(Warehouse):
    dialect = "clickhouse"
    pure_compile = False  # sum_sql asks the engine for types
    transactional = False
    counts_rows = False
    backup_suffix = "chbackup"
    table_exists_sql = "SELECT count() FROM system.tables WHERE database = currentDatabase() AND name = {{ t }}"

    def __init__(self, path: Path | None = None, url: str | None = None, database: str | None = None,
                 cluster: str | None = None, read_only: bool = False):
        import duckdb

        try:
            from clickhouse_connect.driver import exceptions
            if url is None:
                import chdb  # noqa: F401  (the embedded engine)
        except ImportError:
            raise UserError("a ClickHouse warehouse needs the clickhouse extra: pip install 'eventmart[clickhouse]' "
                            "(clickhouse-connect, and chdb for the embedded engine)") from None

        self.errors = (exceptions.Error, duckdb.Error)
        self.path, self.url, self.cluster, self.read_only = path, url, cluster, read_only
        self._db_name = database
        self._local = threading.local()
        self._readers: list[Any] = []
        self._stage: duckdb.DuckDBPyConnection | None = None
        self._seq_lock = threading.Lock()
        self.client = self._connect()
        self.database = database or self.client.database or "default"
        if self.client.database != self.database:
            # the warehouse's database is created on first use, like PostgreSQL's schema (metadata only, so even
            # a reader may create it)
            self.client.command(f"CREATE DATABASE IF NOT EXISTS {self.q(self.database)}")
            self.client.database = self.database

    def _connect(self):
        import clickhouse_connect
        from clickhouse_connect.driver import exceptions

        try:
            if self.url:
                # no session: every query stands alone (nothing of eventmart needs server-side session state)
                return clickhouse_connect.get_client(dsn=self.url, settings=SETTINGS, autogenerate_session_id=False)
            self.path.mkdir(parents=True, exist_ok=True)
            return clickhouse_connect.get_client(dsn=f"chdb://{self.path}", settings=SETTINGS)
        except exceptions.Error as e:
            where = redact(self.url) if self.url else str(self.path)
            first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
            if self.url:
                first = first.replace(self.url, where)
            if any(s in first for s in ("already initialized with path", "Cannot lock file", "Error initializing EmbeddedServer")):
                raise UserError(f"{where}: the warehouse is in use by another eventmart process (chDB opens one "
                                "folder per process); stop it or wait for it") from None
            errno = re.search(r"\[Errno -?\d+\] ([^\"')]+)", first)
            if errno:  # the network said no: say what, without the driver's retry story
                raise UserError(f"cannot reach the ClickHouse server at {where} ({errno.group(1).strip()}); check "
                                "warehouse.url and that the server runs") from None
            raise UserError(f"cannot open the ClickHouse warehouse at {where}: {first[:300]}; check warehouse.url "
                            "and that the server runs") from None

    # --- statements ------------------------------------------------------------------------------
    def execute(self, sql: str, params: dict[str, Any] | None = None) -> int:
        text, p = _prepare(sql, params)
        self.client.command(text, parameters=p)
        return -1  # ClickHouse does not report affected rows the same way; operations below count themselves

    def fetch(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        text, p = _prepare(sql, params)
        res = self.client.query(text, parameters=p)
        return QueryResult(list(res.column_names), [tuple(r) for r in res.result_rows])

    def fetch_arrow(self, sql: str, params: dict[str, Any] | None = None) -> pa.Table:
        import pyarrow as pa

        res = self.fetch(sql, params)
        return pa.table({c: [r[i] for r in res.rows] for i, c in enumerate(res.columns)})

    @contextmanager
    def transaction(self) -> Iterator[None]:
        yield  # each statement is atomic on its own (see the module's docstring)

    def read_only_batches(self, sql, limits=None, cancel=None):
        from clickhouse_connect.driver import exceptions

        limits = limits or Limits()
        settings: dict[str, Any] = {}
        if limits.timeout:
            settings["max_execution_time"] = max(int(limits.timeout), 1)
            settings["timeout_overflow_mode"] = "throw"
        if limits.memory:
            settings["max_memory_usage"] = limits.memory
        # readonly=1 last (the others are set before it binds): the engine refuses writes, table functions (file,
        # url, remote, s3) and setting changes for this query, whatever the text says. chDB's scalar file() is not
        # refused by it (clickhouse-local reads any path): usersql refuses that one by name
        settings["readonly"] = 1
        client = self._reader_client()
        try:
            with client.query_row_block_stream(sql, settings=settings) as stream:
                cols = list(stream.source.column_names)
                yielded = False
                for block in stream:
                    if cancel is not None and cancel.is_set():
                        raise QueryStopped("cancelled: the caller went away")
                    yielded = True
                    yield cols, [tuple(r) for r in block]
                if not yielded:  # chDB names no columns for a result without rows: ask the engine for them
                    if not cols:
                        try:
                            cols = [r[0] for r in client.query(f"DESCRIBE TABLE ({sql})", settings=settings)
                                    .result_rows]
                        except exceptions.Error:
                            cols = []
                    yield cols, []
        except exceptions.Error as e:
            if "TIMEOUT_EXCEEDED" in str(e):
                raise QueryStopped(f"stopped after {limits.timeout:g} s (query.timeout)") from None
            raise

    def _reader_client(self):
        client = getattr(self._local, "client", None)
        if client is None:
            client = self._local.client = self._connect()
            client.database = self.database
            self._readers.append(client)
        return client

    def reader_table_names(self) -> list[str]:
        return [r[0] for r in self.concurrent_fetch("SELECT name FROM system.tables WHERE database = "
                                                    "currentDatabase() ORDER BY name").rows]

    def table_names(self) -> list[str]:
        return [r[0] for r in self.fetch("SELECT name FROM system.tables WHERE database = currentDatabase() "
                                         "ORDER BY name").rows]

    # --- schema ----------------------------------------------------------------------------------
    def table_columns(self, name: str) -> list[str] | None:
        rows = self.fetch("SELECT name FROM system.columns WHERE database = currentDatabase() AND table = {{ t }} "
                          "ORDER BY position", {"t": name}).rows
        return [r[0] for r in rows] or None

    def column_types(self, name: str) -> dict[str, str]:
        rows = self.fetch("SELECT name, type FROM system.columns WHERE database = currentDatabase() AND table = {{ t }} "
                          "ORDER BY position", {"t": name}).rows
        out = {}
        for c, t in rows:
            inner = _unwrap(t)
            out[c] = "timestamp" if inner.startswith("DateTime") else _BACK.get(inner) or decimal_name(inner) or t
        return out

    def type_name(self, t: str) -> str:
        spec = decimal_spec(t)
        return f"Nullable(Decimal({spec[0]}, {spec[1]}))" if spec else f"Nullable({_TYPES[t]})"

    def alter_column_type(self, table: str, column: str, t: str) -> None:
        self.execute(f"ALTER TABLE {self.q(table)}{self._on_cluster()} MODIFY COLUMN {self.q(column)} "
                     f"{self.type_name(t)}")

    def add_column(self, table: str, column: str, t: str) -> None:
        self.execute(f"ALTER TABLE {self.q(table)}{self._on_cluster()} ADD COLUMN IF NOT EXISTS {self.q(column)} "
                     f"{self.type_name(t)}")

    def _on_cluster(self) -> str:
        return f" ON CLUSTER {self.q(self.cluster)}" if self.cluster else ""

    def _engine(self, layout: TableLayout | None) -> str:
        # on a cluster every table is replicated (one shard: see the README); ZooKeeper paths from the macros
        family = "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')" \
            if self.cluster else "MergeTree"
        if layout is None or not layout.order_by:
            return f"ENGINE = {family} ORDER BY tuple() SETTINGS {_TABLE_SETTINGS}"
        part = ""
        if layout.partition and layout.time_column:
            part = " PARTITION BY " + _PARTITION[layout.partition].format(self.q(layout.time_column))
        order = ", ".join(self.q(c) for c in layout.order_by)
        return f"ENGINE = {family}{part} ORDER BY ({order}) SETTINGS {_TABLE_SETTINGS}"

    def _create(self, name: str, cols: list[tuple[str, str]], layout: TableLayout | None,
                extra: Sequence[str] = ()) -> list[str]:
        body = ", ".join([*(f"{self.q(c)} {t}" for c, t in cols), *extra])
        out = [f"CREATE TABLE IF NOT EXISTS {self.q(name)}{self._on_cluster()} ({body}) {self._engine(layout)}"]
        if self.cluster:  # reads spread over the replicas (BI tools; eventmart reads the replicated table itself)
            out.append(f"CREATE TABLE IF NOT EXISTS {self.q(name + '_dist')}{self._on_cluster()} AS {self.q(name)} "
                       f"ENGINE = Distributed({self.q(self.cluster)}, {self.q(self.database)}, {self.q(name)}, rand())")
        return out

    def table_ddl(self, name, columns, primary_key=(), layout=None) -> list[str]:
        low = set(layout.low_cardinality) if layout else set()
        cols = []
        for c, t in columns:
            if layout is not None and c == layout.time_column:
                t = _unwrap(t)  # the sorting and partition key is never NULL
            elif c in low and _unwrap(t) == "String":
                t = f"LowCardinality({t})"
            cols.append((c, t))
        # the key's min/max per granule: the dedup anti-join reads only the parts whose keys can match
        index = [f"INDEX {self.q('_em_key_' + k)} {self.q(k)} TYPE minmax GRANULARITY 1" for k in primary_key[:1]]
        return self._create(name, cols, layout, index)

    def table_as_ddl(self, name, select_sql, params, layout=None) -> list[str]:
        text, p = _prepare(f"DESCRIBE TABLE (SELECT * FROM ({select_sql}) AS s LIMIT 0)", params)
        described = [(r[0], r[1]) for r in self.client.query(text, parameters=p).result_rows]
        low = set(layout.low_cardinality) if layout else set()
        cols = []
        for c, t in described:
            st = _stored(t, c in low)
            if layout is not None and c == layout.time_column:
                st = _unwrap(st)
            cols.append((c, st))
        return self._create(name, cols, layout)

    def drop_table(self, name: str) -> None:
        if self.cluster:
            self.execute(f"DROP TABLE IF EXISTS {self.q(name + '_dist')}{self._on_cluster()} SYNC")
        self.execute(f"DROP TABLE IF EXISTS {self.q(name)}{self._on_cluster()} SYNC")

    # --- sequences: a table of counters (one writer per warehouse: see the README) ------------------
    def create_sequence(self, name: str, start: int = 1) -> None:
        self._ensure_sequences()
        if not self.sequence_exists(name):
            self.execute(f"INSERT INTO {self.q(SEQUENCES)} (name, value) VALUES ({{{{ n }}}}, {{{{ v }}}})",
                         {"n": name, "v": int(start) - 1})

    def _ensure_sequences(self) -> None:
        for sql in self._create(SEQUENCES, [("name", "String"), ("value", "Int64")], TableLayout(order_by=["name"])):
            self.execute(sql)

    def sequence_exists(self, name: str) -> bool:
        if self.table_columns(SEQUENCES) is None:
            return False
        return bool(self.fetch(f"SELECT count() FROM {self.q(SEQUENCES)} WHERE name = {{{{ n }}}}",
                               {"n": name}).rows[0][0])

    def next_value_sql(self, name: str) -> str:
        """The next value, taken here and written into the statement as a number (eventmart's own)."""
        with self._seq_lock:
            v = int(self.fetch(f"SELECT max(value) FROM {self.q(SEQUENCES)} WHERE name = {{{{ n }}}}",
                               {"n": name}).rows[0][0] or 0) + 1
            self.execute(f"UPDATE {self.q(SEQUENCES)} SET value = {{{{ v }}}} WHERE name = {{{{ n }}}}",
                         {"v": v, "n": name})
        return str(v)

    # --- SQL differences ---------------------------------------------------------------------------
    def bucket_sql(self, expr: str, grain_seconds: int) -> str:
        g = int(grain_seconds)
        if 86400 % g == 0:  # aligned to the epoch, hence to midnight UTC
            return f"toDateTime(toStartOfInterval({expr}, INTERVAL {g} SECOND), 'UTC')"
        # counted from timeutil.ORIGIN (a Monday), as every engine and floor_time do: weeks start on Monday
        return f"toDateTime(intDiv(toInt64(toUnixTimestamp({expr})) - 345600, {g}) * {g} + 345600, 'UTC')"

    def local_date_sql(self, expr: str, tz: str) -> str:
        return f"toDate({expr}, '{tz}')"

    def in_list_sql(self, expr: str, param: str) -> str:
        return f"has({{{{ {param} }}}}, toString({expr}))"

    def text_sql(self, expr: str) -> str:
        return f"toString({expr})"

    def contains_sql(self, text_expr: str, param: str) -> str:
        return f"positionCaseInsensitiveUTF8({text_expr}, {{{{ {param} }}}}) > 0"

    def sum_sql(self, expr: str, table: str | None = None, node: Any = None) -> str:
        # sum(Int64) is Int64 here and wraps past 2^63 without a word, and so does Int64 arithmetic: integer
        # columns are read as Int128 inside the expression, and an integer expression is summed as Int128 (the
        # engine tells its type); decimals sum as Decimal128 with overflow checks, floats as Float64
        if node is not None and table and self.table_columns(table) is not None:
            from sqlglot import exp

            ints = {c for c, t in self.column_types(table).items() if t == "int"}
            node = node.copy()
            for col in list(node.find_all(exp.Column)):
                if col.name in ints:
                    col.replace(exp.Anonymous(this="toInt128", expressions=[col.copy()]))
            expr = node.sql(dialect=self.dialect)
        t = self._expr_type(expr, table) if table else ""
        if re.fullmatch(r"(Nullable\()?(LowCardinality\()?U?Int(8|16|32|64)\)*", t):
            return f"sum(toInt128({expr}))"
        return f"sum({expr})"

    def _expr_type(self, expr: str, table: str) -> str:
        """The engine's type for ``expr`` over ``table``'s rows ('' when the table does not exist yet)."""
        if self.table_columns(table) is None:
            return ""
        rows = self.fetch(f"DESCRIBE TABLE (SELECT {expr} AS v FROM {self.q(table)})").rows
        return str(rows[0][1]) if rows else ""

    def canonical_text_sql(self, expr: str, t: str) -> str:
        if t == "timestamp":
            return f"formatDateTime({expr}, '%Y-%m-%d %H:%i:%S.%f')"
        return self.text_sql(expr)

    def md5_hex_sql(self, text_expr: str) -> str:
        return f"lower(hex(MD5({text_expr})))"

    # distinct counts as mergeable states: exact (uniqExact: the set itself) or an estimate (uniq: a sketch)
    states = True
    _STATE_FN = {"count_distinct": "uniqExact", "approx_count_distinct": "uniq"}

    def state_sql(self, kind: str, expr: str) -> str:
        return f"{self._STATE_FN[kind]}State({expr})"

    def merge_state_sql(self, kind: str, column: str) -> str:
        return f"{self._STATE_FN[kind]}Merge({column})"

    # --- operations ----------------------------------------------------------------------------------
    def _scratch(self, table: str) -> str:
        return f"_em_stage_{table}_{uuid.uuid4().hex[:12]}"

    def _stage_ddl(self, stage: str, table: str) -> str:
        """A scratch table on this node only, with ``table``'s columns, partition key and sorting key: what REPLACE
        PARTITION needs (a replicated table's engine would register the scratch table with ZooKeeper)."""
        if not self.cluster:
            return f"CREATE TABLE {self.q(stage)} AS {self.q(table)}"
        part, order = self.fetch("SELECT partition_key, sorting_key FROM system.tables WHERE database = "
                                 "currentDatabase() AND name = {{ t }}", {"t": table}).rows[0]
        return (f"CREATE TABLE {self.q(stage)} AS {self.q(table)} ENGINE = MergeTree"
                + (f" PARTITION BY {part}" if part else "") + f" ORDER BY ({order or 'tuple()'}) "
                f"SETTINGS {_TABLE_SETTINGS}")

    def replace_window(self, table, column, lo, hi, select_sql, params, check_inside=False) -> int:
        """Build each partition the window touches in a staging table — the new rows, plus the partition's rows
        outside the window — then swap it in with REPLACE PARTITION (or DROP PARTITION when nothing is left)."""
        q = self.q
        stage = self._scratch(table)
        inside = f"{q(column)} >= {{{{ _lo }}}} AND {q(column)} < {{{{ _hi }}}}"
        p = {**params, "_lo": lo, "_hi": hi}
        self.execute(self._stage_ddl(stage, table))
        try:
            self.execute(f"INSERT INTO {q(stage)} SELECT * FROM ({select_sql}) AS s", p)
            if check_inside:
                out = self.fetch(f"SELECT count() FROM {q(stage)} WHERE NOT ({inside})", p).rows[0][0]
                if out:
                    raise RowsOutsideWindow(int(out))
            rows = int(self.fetch(f"SELECT count() FROM {q(stage)}").rows[0][0])
            parts = {r[0] for r in self.fetch(f"SELECT DISTINCT _partition_id FROM {q(stage)}").rows}
            old = {r[0] for r in self.fetch(f"SELECT DISTINCT _partition_id FROM {q(table)} WHERE {inside}", p).rows}
            for part in sorted(parts | old):
                if not _SAFE_PART.match(part):
                    raise RuntimeError(f"unexpected partition id {part!r}")
                # the partition's rows outside the window stay as they are
                self.execute(f"INSERT INTO {q(stage)} SELECT * FROM {q(table)} WHERE _partition_id = {{{{ _p }}}} "
                             f"AND NOT ({inside})", {**p, "_p": part})
            have = {r[0] for r in self.fetch(f"SELECT DISTINCT _partition_id FROM {q(stage)}").rows}
            for part in sorted(parts | old):
                if part in have:
                    self.execute(f"ALTER TABLE {q(table)} REPLACE PARTITION ID '{part}' FROM {q(stage)}")
                else:
                    self.execute(f"ALTER TABLE {q(table)} DROP PARTITION ID '{part}'")
        finally:
            self.execute(f"DROP TABLE IF EXISTS {q(stage)} SYNC")
        return rows

    def delete_rows(self, table: str, where: str, params: dict[str, Any] | None = None) -> int:
        n = int(self.fetch(f"SELECT count() FROM {self.q(table)} WHERE {where}", params).rows[0][0])
        if n:
            self.execute(f"DELETE FROM {self.q(table)} WHERE {where}", params)
        return n

    def update_rows(self, table: str, assignments: str, where: str, params: dict[str, Any] | None = None) -> int:
        n = int(self.fetch(f"SELECT count() FROM {self.q(table)} WHERE {where}", params).rows[0][0])
        if n:
            self.execute(f"UPDATE {self.q(table)} SET {assignments} WHERE {where}", params)
        return n

    # --- ingest: files are parsed and checked in DuckDB; checked rows come over as Arrow --------------------
    def staging(self) -> duckdb.DuckDBPyConnection:
        from .duckdb import connect

        if self._stage is None:
            self._stage = connect(None)
        return self._stage

    def _arrow_from_stage(self, stage, sql: str, params: dict | None) -> pa.Table:
        from .duckdb import _prepare as duck_prepare
        from .duckdb import _used as duck_used

        return stage.sql(duck_prepare(sql), params=duck_used(sql, params)).to_arrow_table()

    def append_new(self, stage, select_sql, params, target, columns, key, key_range=None, repeats=True) -> int:
        q = self.q
        cols = ", ".join(q(c) for c in columns)
        table = self._arrow_from_stage(stage, f"SELECT {cols}, _ord FROM ({select_sql}) s", params)
        if table.num_rows == 0:
            return 0
        new, fresh = self._scratch(target), self._scratch(target)
        keys = ", ".join(q(k) for k in key)
        k0 = q(key[0])
        if key_range is None:
            col = table.column(key[0])
            import pyarrow.compute as pc

            mm = pc.min_max(col).as_py()
            key_range = (mm["min"], mm["max"])
        try:
            self.execute(f"CREATE TABLE {q(new)} ENGINE = Memory AS SELECT {cols}, toInt64(0) AS _ord "
                         f"FROM {q(target)} LIMIT 0")
            self.client.insert_arrow(new, table)
            first = f"ORDER BY _ord LIMIT 1 BY {keys}" if repeats else ""
            lo, hi = key_range
            self.execute(f"CREATE TABLE {q(fresh)} ENGINE = Memory AS SELECT {cols} FROM {q(new)} "
                         f"WHERE ({keys}) NOT IN (SELECT {keys} FROM {q(target)} WHERE {k0} >= {{{{ _lo }}}} "
                         f"AND {k0} <= {{{{ _hi }}}}) {first}", {"_lo": lo, "_hi": hi})
            rows = int(self.fetch(f"SELECT count() FROM {q(fresh)}").rows[0][0])
            if rows:
                self.execute(f"INSERT INTO {q(target)} ({cols}) SELECT {cols} FROM {q(fresh)}")
            return rows
        finally:
            self.execute(f"DROP TABLE IF EXISTS {q(new)} SYNC")
            self.execute(f"DROP TABLE IF EXISTS {q(fresh)} SYNC")

    def append_all(self, stage, staged, target, columns) -> int:
        cols = ", ".join(self.q(c) for c in columns)
        table = self._arrow_from_stage(stage, f"SELECT {cols} FROM {self.q(staged)}", None)
        if table.num_rows:
            self.client.insert_arrow(target, table)
        return table.num_rows

    # --- concurrent reads (dashboards): a client per thread ----------------------------------------------
    def concurrent_fetch(self, sql: str, params: dict[str, Any] | None = None) -> QueryResult:
        client = self._reader_client()
        text, p = _prepare(sql, params)
        res = client.query(text, parameters=p)
        return QueryResult(list(res.column_names), [tuple(r) for r in res.result_rows])

    # --- backups: each table's DDL and its rows in ClickHouse's Native format, in one tar file (chbackup.py) ----
    def backup_to(self, target: Path) -> dict[str, int]:
        from . import chbackup

        return chbackup.backup(self, target)

    def restore_from(self, path: Path) -> str:
        from . import chbackup

        return chbackup.restore(self, path)

    def close(self) -> None:
        for c in [self.client, *self._readers]:
            try:
                c.close()
            except Exception:  # closing twice, or a server gone: nothing to keep
                pass
        self._readers = []
        if self._stage is not None:
            self._stage.close()
            self._stage = None

