"""PostgreSQL backups with the server's own tools: ``pg_dump --format=custom`` of the warehouse schema, verified by
``pg_restore`` into a scratch database whose row counts must equal the warehouse's."""

from __future__ import annotations

import glob
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

from ..errors import UserError
from .base import keep_verified


def _pg_tool(name: str) -> str:
    hits = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    found = hits[-1] if hits else shutil.which(name)
    if not found:
        raise UserError(f"{name} is not installed; install PostgreSQL's client tools (Debian: postgresql-client)")
    return found


# libpq's environment variable per connection setting, where it is not PG + the name in capitals
_PG_VARS = {"dbname": "PGDATABASE", "application_name": "PGAPPNAME", "connect_timeout": "PGCONNECT_TIMEOUT",
            "target_session_attrs": "PGTARGETSESSIONATTRS", "client_encoding": "PGCLIENTENCODING",
            "load_balance_hosts": "PGLOADBALANCEHOSTS", "ssl_min_protocol_version": "PGSSLMINPROTOCOLVERSION",
            "ssl_max_protocol_version": "PGSSLMAXPROTOCOLVERSION", "channel_binding": "PGCHANNELBINDING"}
_PG_PLAIN = {"host", "hostaddr", "port", "dbname", "user", "password", "passfile", "service", "options", "sslmode",
             "sslcert", "sslkey", "sslrootcert", "sslcrl", "sslcrldir", "sslsni", "sslcompression", "requirepeer",
             "gssencmode", "krbsrvname", "gsslib", "requiressl"}


def _pg_env(url: str, dbname: str | None = None) -> dict[str, str]:
    """libpq environment for the tools: every setting of the URL (sslmode, …), the password out of the process
    list."""
    import psycopg

    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:  # its message quotes the URL's pieces
        raise UserError("the PostgreSQL URL is not valid; percent-encode special characters in the user and "
                        "password (%40 for @, %2F for /, %20 for a space, %25 for %)") from None
    env = dict(os.environ)
    for key, value in info.items():
        if value is None or value == "":
            continue
        var = _PG_VARS.get(key) or (f"PG{key.upper()}" if key in _PG_PLAIN else None)
        if var is None:
            raise UserError(f"the warehouse URL's setting '{key}' cannot be passed to pg_dump/pg_restore; set it in "
                            "a pg_service.conf service instead (service=…)")
        env[var] = str(value)
    if dbname:
        env["PGDATABASE"] = dbname
    return env


def _run(args: list[str], env: dict[str, str], what: str, harmless: tuple[str, ...] = ()) -> None:
    r = subprocess.run(args, env=env, capture_output=True, text=True)
    if r.returncode == 0:
        return
    errors = [ln for ln in r.stderr.splitlines() if "error:" in ln.lower() and "errors ignored" not in ln]
    real = [ln for ln in errors if not any(re.search(h, ln) for h in harmless)]
    if errors and not real:
        return  # pg_restore meeting the schema that already exists: nothing was lost
    from .pgconnect import safe_message

    first = (real or r.stderr.strip().splitlines() or ["failed"])[0]
    said = safe_message(first, "", [env.get("PGPASSWORD", "")])
    raise UserError(f"{what} failed: {said or 'the tool quoted the credentials (message not shown)'}")


# the warehouse schema exists already where a dump is restored (always so for `public`)
_SCHEMA_EXISTS = (r'schema "[^"]+" already exists', r"cannot drop schema")


def _pg_counts(conn, schema: str) -> dict[str, int]:
    from psycopg import sql

    tables = [r[0] for r in conn.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = %s AND table_type = 'BASE TABLE' "
        "ORDER BY 1", (schema,)).fetchall()]
    return {t: conn.execute(sql.SQL("SELECT count(*) FROM {}.{}").format(sql.Identifier(schema), sql.Identifier(t)))
            .fetchone()[0] for t in tables}


def backup(wh, target: Path) -> dict[str, int]:
    import psycopg

    from .pgconnect import pg_connect

    tmp = target.with_suffix(".partial")
    env = _pg_env(wh.url)
    want = _pg_counts(wh.conn, wh.schema)
    _run([_pg_tool("pg_dump"), "--format=custom", f"--schema={wh.schema}", "--no-owner", "-f", str(tmp)], env,
         "pg_dump")
    scratch = f"em_verify_{os.getpid()}_{int(time.time())}"
    admin = wh.conn
    from psycopg import sql

    admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(scratch)))
    try:
        _run([_pg_tool("pg_restore"), "--no-owner", "-d", scratch, str(tmp)], _pg_env(wh.url, scratch),
             "pg_restore (verification)", _SCHEMA_EXISTS)
        info = psycopg.conninfo.conninfo_to_dict(wh.url)
        info["dbname"] = scratch
        with pg_connect(psycopg.conninfo.make_conninfo(**info)) as c:
            got = _pg_counts(c, wh.schema)
    finally:
        admin.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(scratch)))
    return keep_verified(tmp, target, got, want)


def restore(wh, path: Path) -> None:
    _run([_pg_tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "-d",
          _pg_env(wh.url)["PGDATABASE"], str(path)], _pg_env(wh.url), "pg_restore", _SCHEMA_EXISTS)
