"""User SQL cannot leave the warehouse: a corpus of escape payloads per engine, each run through the console script
directly and through a running `eventmart serve` (the HTTP API), is refused and shows nothing of the secret file; and
behind the check, the engine itself refuses to read files where it can (DuckDB's instance, a PostgreSQL superuser's
reads, ClickHouse's table functions)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import events_config, write_project
from eventmart import Project
from eventmart.errors import UserError
from eventmart.server.serve import Server
from helpers import random_events, write_events_csv

EVENTMART = str(Path(sys.executable).parent / "eventmart")
SECRET = "s3cr3t-line-no-one-may-read"


def corpus(secret: Path) -> list[str]:
    """Payloads for every engine: files and URLs by table function, scalar function and quoted name, CTE and
    subquery scoping, quoting, comments, case, unicode look-alikes, settings, catalogs."""
    f = str(secret)
    q = f.replace("'", "''")
    return [
        # DuckDB: files by name, table function, replacement scan, and the CTE-scope trick through the server
        f"SELECT * FROM '{q}'",
        f'SELECT * FROM "{f}"',
        f'SELECT * FROM "{f}", (WITH "{f}" AS (SELECT 1 AS z) SELECT * FROM "{f}") q',
        f'WITH a AS (SELECT * FROM "{f}"), "{f}" AS (SELECT 1 AS z) SELECT * FROM a',
        f'SELECT * FROM (WITH "{f}" AS (SELECT 1) SELECT 1) s UNION ALL SELECT * FROM "{f}"',
        f"SELECT * FROM read_text('{q}')",
        f"SELECT * FROM READ_TEXT('{q}')",
        f"SELECT * FROM read_csv('{q}', header = false)",
        f"SELECT * FROM read_csv_auto(['{q}'])",
        f"SELECT content FROM read_blob('{q}')",
        f"SELECT * FROM glob('{q}')",
        f"SELECT * FROM sniff_csv('{q}')",
        f"SELECT * FROM parquet_scan('{q}')",
        f"SELECT * FROM query_table('{q}')",
        f"SELECT * FROM query('SELECT * FROM read_text(''{q}'')')",
        f"SELECT * FROM /* a comment */ read_text /* another */ ('{q}')",
        f"select * from \tread_text(\n'{q}')",
        f"SELECT * FROM reаd_text('{q}')",  # a Cyrillic а: no such function
        "SELECT getenv('HOME')",
        f"COPY (SELECT 1) TO '{q}.out'",
        f"ATTACH '{q}' AS x",
        "SELECT * FROM events, other.main.events",
        "SET enable_external_access = true",
        "SELECT 1; SET enable_external_access = true",
        # ClickHouse: scalar file(), quoted and cased; table functions; other servers; settings
        f"SELECT file('{q}') AS f",
        f"SELECT `file`('{q}')",
        f"SELECT FILE('{q}')",
        f"SELECT file /* c */ ('{q}')",
        f"SELECT * FROM file('{q}', 'LineAsString')",
        "SELECT * FROM url('http://127.0.0.1:9/x', 'CSV', 'a String')",
        "SELECT * FROM remote('127.0.0.1', system.one)",
        "SELECT * FROM s3('http://127.0.0.1:9/b/k', 'CSV')",
        f"SELECT catboostEvaluate('{q}', 1)",
        "SELECT dictGet('d', 'a', toUInt64(1))",
        "SELECT * FROM events SETTINGS readonly = 0",
        "SELECT name FROM system.users",
        # PostgreSQL: server files, programs, other databases, session changes
        f"SELECT pg_read_file('{q}')",
        f"SELECT pg_read_binary_file('{q}')",
        "SELECT * FROM pg_ls_dir('.')",
        f"SELECT lo_import('{q}')",
        "SELECT set_config('role', 'postgres', false)",
        "SELECT * FROM dblink('dbname=postgres', 'select 1') AS t(x int)",
        f"COPY events FROM '{q}'",
        "COPY events FROM PROGRAM 'cat /etc/hostname'",
    ]


def _project(tmp: Path, wh: dict) -> tuple[Path, Path]:
    secret = tmp / "secret's.txt"
    secret.write_text(SECRET + "\n")
    write_events_csv(tmp / "data" / "e.csv", random_events(100, seed=2, hours=2))
    write_project(tmp, events_config(wh))
    with Project.load(tmp) as p:
        p.ingest("events")
    return tmp, secret


def _refused(p, payloads: list[str]) -> None:
    """Each payload refused by ``p`` (a Project, or the RemoteProject that asks the running server over HTTP) with
    one line that shows nothing of the secret."""
    for sql in payloads:
        with pytest.raises(UserError) as e:
            p.query(sql)
        assert SECRET not in str(e.value) and "\n" not in str(e.value), (sql, str(e.value))


def _console(d: Path, payloads: list[str]) -> None:
    """A few through the console script, as a user types them: exit 2, one `error:` line."""
    for sql in payloads:
        r = subprocess.run([EVENTMART, "query", sql, "-p", str(d)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 2 and SECRET not in r.stdout + r.stderr, (sql, r.stdout, r.stderr)
        assert r.stderr.startswith("error: ") and len(r.stderr.strip().splitlines()) == 1, (sql, r.stderr)


def test_duckdb_corpus_directly_and_through_serve(tmp_path):
    from eventmart.server.api import RemoteProject, running_server

    d, secret = _project(tmp_path, {"type": "duckdb"})
    payloads = corpus(secret)
    with Project.load(d) as p:
        _refused(p, payloads)
    _console(d, payloads[2:4])
    with Project.load(d) as p:
        srv = Server(p, port=0, say=lambda m: None, scheduler=False)
        srv.start()
        try:
            _refused(RemoteProject(d, running_server(d), p.config), payloads)  # through the server's API
            _console(d, payloads[2:4])
            # behind the check: the server's own instance reads no file, and cannot be told to
            wh = p.warehouse
            for sql in (f"SELECT * FROM read_text('{secret}')", f'SELECT * FROM "{secret}"',
                        "SET enable_external_access = true"):
                with pytest.raises(Exception) as e:
                    wh.read_only_query(sql)
                assert SECRET not in str(e.value)
            assert wh.read_only_query("SELECT count(*) FROM events").rows == [(100,)]
        finally:
            srv.stop()


def test_postgres_corpus_and_a_superuser_reads_no_file(tmp_path, pg_url):
    import psycopg

    d, secret = _project(tmp_path, {"type": "postgres", "url": pg_url})
    _console(d, [f"SELECT pg_read_file('{secret}')", "SELECT pg_read_file('x'"])  # a quote left open too
    with Project.load(d) as p:
        _refused(p, corpus(secret))
        wh = p.warehouse
        assert wh.fetch("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").rows == [(True,)]
        # past the check, the server itself: user SQL runs as eventmart's reader role, not as the superuser
        who = wh.read_only_query("SELECT current_user, count(*) FROM events").rows
        assert who[0][0].startswith("eventmart_reader_") and who[0][1] == 100
        for sql in ("SELECT pg_read_file('/etc/hostname')", "SELECT pg_ls_dir('.')",
                    "CREATE TABLE x AS SELECT 1", "SET ROLE postgres"):
            with pytest.raises(psycopg.Error):
                wh.read_only_query(sql)


def test_clickhouse_corpus_and_the_engine_refuses_table_functions(tmp_path, ch_warehouse):
    d, secret = _project(tmp_path, ch_warehouse)
    payloads = corpus(secret)
    with Project.load(d) as p:  # chDB opens one folder per process: this one, not a console script's
        _refused(p, payloads)
        wh = p.warehouse
        # readonly=1 binds the engine: table functions, writes and settings are refused past the check
        for sql in (f"SELECT * FROM file('{secret}', 'LineAsString')", "SELECT * FROM url('http://127.0.0.1:9/x', "
                    "'CSV', 'a String')", "INSERT INTO events (id) VALUES (1)", "SELECT 1 SETTINGS readonly = 0"):
            with pytest.raises(Exception) as e:
                wh.read_only_query(sql)
            assert SECRET not in str(e.value)
