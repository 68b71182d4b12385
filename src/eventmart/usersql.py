"""User SQL (`eventmart query`, the local API): one read of the warehouse's own tables, nothing else.

The statement is parsed with sqlglot before it reaches the engine and refused unless it is a single read —
SELECT (with CTEs, unions), DESCRIBE or SHOW — of tables and views that exist in the warehouse. Writes, COMMIT
escapes, SET, COPY, ATTACH, extension installs, file-reading table functions (``read_csv``, ``glob``, a quoted
path as a table), environment and server-side file functions are refused with one line. It then runs on a
connection of its own inside a read-only transaction that is rolled back (see the adapters'
``read_only_query``), so it cannot touch the session state of whatever else uses the warehouse.
"""

from __future__ import annotations

import logging

import sqlglot
from sqlglot import exp

from .errors import UserError

_READS = (exp.Select, exp.Union, exp.Intersect, exp.Except, exp.Describe, exp.Show)
_WRITES = tuple(getattr(exp, n) for n in (
    "Insert", "Update", "Delete", "Merge", "Create", "Drop", "Alter", "Copy", "Set", "Command", "Transaction",
    "Commit", "Rollback", "Pragma", "Install", "Attach", "Detach", "Use", "LoadData", "TruncateTable", "Grant",
    "Revoke", "Comment", "Analyze", "Refresh", "Cache", "Uncache", "Export") if hasattr(exp, n))
# functions that read files, the network or the environment, or change or stall the session — any engine's: a name
# one engine lacks is refused everywhere, which costs nothing. By prefix, then by exact (lower-case) name.
_DENY_PREFIX = ("read_", "parquet_", "sniff_", "glob", "getenv", "query", "pg_read", "pg_ls_", "pg_stat_file",
                "lo_", "dblink", "set_config", "pg_sleep", "pg_terminate", "pg_cancel", "pg_reload", "pg_rotate",
                "pg_file", "copy_", "load_extension", "system", "shell",
                # ClickHouse: files (scalar file() reads any path in chDB), object stores, other servers, the host
                "file", "s3", "hdfs", "remote", "cluster", "mysql", "postgresql", "jdbc", "odbc", "executable", "azure",
                "gcs", "iceberg", "deltalake", "hudi", "paimon", "mongo", "redis", "sqlite", "ytsaurus", "arrowflight",
                "prometheus", "dict", "joinget", "catboost", "evalml", "filesystem", "addressto", "demangle", "sleep",
                "getsetting", "getserversetting", "getmergetree", "getmacro", "getclienthttpheader", "generaterandom",
                "mergetree", "numbers", "zeros", "fuzzjson")
_DENY_EXACT = {"url", "urlcluster", "oss", "osscluster", "input", "merge", "loop", "view", "viewifpermitted",
               "viewexplain", "values", "format", "globalvariable", "transactionid", "hostname", "fqdn", "serveruuid",
               "uptime", "currentuser", "currentprofiles", "currentroles", "enabledroles", "defaultroles",
               "getosversion", "getoskernelversion", "buildid", "displayname", "version"}
_TABLE_FUNCTIONS = {"range", "generate_series", "exploding_generate_series", "unnest", "explode"}
_SCHEMAS = {"information_schema", "pg_catalog", "main"}


def _fn_name(node: exp.Expression) -> str:
    if isinstance(node, exp.Anonymous):
        return str(node.name).lower()
    return (node.sql_name() if hasattr(node, "sql_name") else node.key).lower()


def _with(node: exp.Expression) -> exp.With | None:
    w = node.args.get("with") or node.args.get("with_")
    return w if isinstance(w, exp.With) else None


def _is_cte(table: exp.Table) -> bool:
    """Whether ``table`` names a CTE visible where it stands, as SQL scopes them: a query's WITH covers that query
    (its subqueries included); inside a CTE only the CTEs before it (and itself when RECURSIVE) are visible. A CTE
    of a sibling subquery is not. The name must match exactly: a near miss is a table, and tables are checked."""
    name = table.name
    child, node = table, table.parent
    while node is not None:
        if isinstance(node, exp.CTE) and isinstance(node.parent, exp.With):
            w = node.parent
            ctes = list(w.expressions)
            i = next(k for k, c in enumerate(ctes) if c is node)
            if any(c.alias == name for c in ctes[: i + 1 if w.args.get("recursive") else i]):
                return True
            owner = w.parent  # the query that owns this WITH: its other CTEs are not visible from here
            if owner is None:
                return False
            child, node = owner, owner.parent
            continue
        w = _with(node)
        if w is not None and child is not w and any(c.alias == name for c in w.expressions):
            return True
        child, node = node, node.parent
    return False


def check_read(sql: str, dialect: str, tables: set[str], schema: str | None = None) -> None:
    """Raise :class:`UserError` unless ``sql`` is one read of ``tables`` (names in the warehouse's schema)."""
    what = "eventmart query runs one read-only statement (SELECT, DESCRIBE or SHOW) on the warehouse's tables"
    log = logging.getLogger("sqlglot")
    level, log.level = log.level, logging.ERROR  # its "falling back to a Command" warning is not for the user
    try:
        statements = [s for s in sqlglot.parse(sql, read=dialect) if s is not None]
    except sqlglot.errors.SqlglotError as e:  # a parse or tokenizer error: not SQL it can vouch for
        raise UserError(f"query: cannot parse it ({str(e).splitlines()[0][:160]}); {what}") from None
    finally:
        log.level = level
    if len(statements) != 1:
        raise UserError(f"query: {len(statements)} statements given; {what}")
    (st,) = statements
    if not isinstance(st, _READS):
        raise UserError(f"query: {st.key.upper()} is not a read; {what}")
    for node in st.walk():
        if isinstance(node, _WRITES):
            raise UserError(f"query: {node.key.upper()} is not a read; {what}")
        if node.args.get("settings"):  # ClickHouse's per-query SETTINGS would lift the limits user SQL runs under
            raise UserError(f"query: a SETTINGS clause is not available here; {what}")
        if isinstance(node, exp.Func):
            name = _fn_name(node)
            if name.startswith(_DENY_PREFIX) or name in _DENY_EXACT:
                raise UserError(f"query: {name}() is not available here (it reads files or the environment, or "
                                f"changes the session); {what}")
        if isinstance(node, exp.Table):
            target = node.this
            if isinstance(target, exp.Func) or not isinstance(target, exp.Identifier):
                name = _fn_name(target) if isinstance(target, exp.Func) else target.sql()
                if name not in _TABLE_FUNCTIONS:
                    raise UserError(f"query: FROM {name[:60]} is not a table of the warehouse; {what}")
                continue
            name = target.name
            db = node.db.lower() if node.db else ""
            if node.catalog or (db and db not in _SCHEMAS and db != (schema or "").lower()):
                raise UserError(f"query: {node.sql()} is outside the warehouse's schema; {what}")
            if db in ("information_schema", "pg_catalog"):
                continue
            if name not in tables and not _is_cte(node):
                raise UserError(f"query: no table or view {name} in the warehouse; list them with "
                                "`eventmart query \"select table_name from information_schema.tables\"`")
