"""`eventmart query` is read-only: through the console script, through a running server, on DuckDB and on
PostgreSQL, every write, escape, setting change and file access is refused (exit 2) and changes nothing."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import events_config, write_project
from eventmart import Project, UserError
from eventmart.server.serve import Server
from helpers import random_events, write_events_csv

EVENTMART = str(Path(sys.executable).parent / "eventmart")

ATTACKS = [
    ("COMMIT; DELETE FROM events WHERE id < 50; BEGIN TRANSACTION; SELECT 1", "statements given"),
    ("DELETE FROM events", "DELETE is not a read"),
    ("DROP TABLE events", "is not a read"),
    ("CREATE TABLE x AS SELECT 1", "is not a read"),
    ("SET TimeZone = 'America/New_York'", "is not a read"),
    ("COPY (SELECT 1) TO 'out.csv'", "is not a read"),
    ("INSTALL httpfs", "is not a read"),
    ("SELECT * FROM read_csv('/etc/passwd')", "is not a table of the warehouse"),
    ("SELECT * FROM read_text('/etc/passwd')", "is not a table of the warehouse"),
    ("SELECT * FROM '/etc/passwd'", "no table or view /etc/passwd"),
    ("SELECT * FROM glob('/etc/*')", "is not a table of the warehouse"),
    ("SELECT getenv('HOME')", "getenv() is not available"),
    ("SELECT * FROM events, other_db.main.events", "outside the warehouse's schema"),
    ("ATTACH '/tmp/x.duckdb' AS x", "is not a read"),
]


def em(project: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([EVENTMART, *args, "-p", str(project)], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def fixture_project(tmp: Path, wh: dict | None = None) -> Path:
    write_events_csv(tmp / "data" / "e.csv", random_events(200, seed=2, hours=2))
    write_project(tmp, events_config(wh))
    with Project.load(tmp) as p:
        p.ingest("events")
        p.backfill()
    return tmp


def counts(project: Path) -> tuple:
    with Project.load(project) as p:
        return (p.query("SELECT count(*) FROM events").rows[0][0],
                p.query("SELECT count(*) FROM information_schema.tables").rows[0][0])


@pytest.mark.parametrize("sql, needle", ATTACKS)
def test_the_console_script_refuses_anything_but_a_read(tmp_path, sql, needle):
    d = fixture_project(tmp_path)
    before = counts(d)
    r = em(d, "query", sql)
    assert r.returncode == 2 and needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert counts(d) == before
    assert not (Path.cwd() / "out.csv").exists()


def test_reads_still_work_and_nothing_leaks_into_the_servers_session(tmp_path):
    d = fixture_project(tmp_path)
    r = em(d, "query", "with t as (select topic, count(*) n from events group by 1) select count(*) from t "
                       "union all select count(*) from range(3)", "--format", "csv")
    assert r.returncode == 0 and r.stdout.splitlines()[1:] == ["6", "3"], r.stderr
    assert em(d, "query", "describe events").returncode == 0
    p = Project.load(d)
    srv = Server(p, port=0, say=lambda m: None, scheduler=False)
    srv.start()
    try:
        time.sleep(0.2)
        for sql, needle in ATTACKS:
            r = em(d, "query", sql)
            assert r.returncode == 2 and needle in r.stderr, (sql, r.stderr)
        # the server's own session is untouched: a timestamp with an offset still lands in UTC
        assert em(d, "query", "select current_setting('TimeZone')").stdout.count("UTC") == 1
        assert p.warehouse.fetch("select current_setting('TimeZone')").rows[0][0] == "UTC"
        r = em(d, "query", "select count(*) from events", "--format", "csv")
        assert r.stdout.splitlines()[1] == "200"
    finally:
        srv.stop()
        p.close()


def test_postgres_refuses_writes_and_keeps_percent_signs(tmp_path, pg_url):
    d = fixture_project(tmp_path, {"type": "postgres", "url": pg_url})
    before = counts(d)
    for sql, _ in ATTACKS:
        r = em(d, "query", sql)
        assert r.returncode == 2, (sql, r.stdout)
    for sql in ("SELECT set_config('TimeZone', 'America/New_York', false)", "SELECT pg_read_file('/etc/passwd')",
                "SELECT pg_sleep(100)"):
        r = em(d, "query", sql)
        assert r.returncode == 2 and "is not available here" in r.stderr, r.stderr
    assert counts(d) == before
    r = em(d, "query", "select '50%' as pct, 7 % 3 as m, '{{ x }}' as braces", "--format", "csv")
    assert r.returncode == 0 and r.stdout.splitlines()[1] == "50%,1,{{ x }}", r.stdout + r.stderr


def test_a_postgres_read_role_is_used_when_configured(tmp_path, pg_url):
    import psycopg

    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("CREATE ROLE em_reader LOGIN")
        c.execute("GRANT USAGE ON SCHEMA public TO em_reader")
        c.execute("ALTER DEFAULT PRIVILEGES IN SCHEMA public GRANT SELECT ON TABLES TO em_reader")
    reader = pg_url.replace("postgres@", "em_reader@", 1)
    d = fixture_project(tmp_path, {"type": "postgres", "url": pg_url, "read_url": reader})
    r = em(d, "query", "select current_user, count(*) from events", "--format", "csv")
    assert r.returncode == 0 and r.stdout.splitlines()[1] == "em_reader,200", r.stdout + r.stderr


def test_the_library_can_read_then_write_with_one_project(tmp_path):
    d = fixture_project(tmp_path)
    write_events_csv(d / "data" / "more.csv", [dict(e, id=e["id"] + 1000) for e in random_events(5, seed=9)])
    with Project.load(d) as p:
        assert p.query("select count(*) from events").rows[0][0] == 200
        assert p.ingest("events").loaded == 5  # the read-only handle gives way to a writing one
        assert p.query("select count(*) from events").rows[0][0] == 205


CH_ATTACKS = [
    ("SELECT * FROM file('/etc/passwd', 'LineAsString')", "is not a table of the warehouse"),
    ("SELECT * FROM url('http://127.0.0.1:9/x', 'CSV')", "is not a table of the warehouse"),
    ("SELECT * FROM remote('127.0.0.1', system.one)", "is not a table of the warehouse"),
    ("SELECT name FROM system.users", "outside the warehouse's schema"),
    ("INSERT INTO FUNCTION file('out.csv', 'CSV') SELECT 1", "is not a read"),
    ("SELECT 1 SETTINGS readonly = 0", "SETTINGS clause"),
    ("ALTER TABLE events DELETE WHERE 1", "is not a read"),
    ("OPTIMIZE TABLE events FINAL", ""),
]


def test_clickhouse_refuses_writes_files_and_settings(tmp_path, ch_warehouse, ch_server, monkeypatch):
    d = fixture_project(tmp_path / "chdb", ch_warehouse)
    before = counts(d)
    # DuckDB's attacks are refused too, some as text ClickHouse's parser does not take
    with Project.load(d) as p:
        for sql, needle in [(a, "") for a, _ in ATTACKS] + CH_ATTACKS:
            with pytest.raises(UserError) as e:
                p.query(sql)
            assert needle in str(e.value) and "\n" not in str(e.value), (sql, str(e.value))
    assert counts(d) == before
    # the ClickHouse-specific ones also through the console script, on a server (this process holds the chDB
    # folder: chDB opens one per process)
    monkeypatch.setenv("EVENTMART_CH_URL", ch_server["url"])
    d = fixture_project(tmp_path / "server", {"type": "clickhouse", "url": "${EVENTMART_CH_URL}",
                                              "database": f"ro{int(time.time() * 1e6) % 10**12}"})
    before = counts(d)
    for sql, needle in CH_ATTACKS[:3]:
        r = em(d, "query", sql)
        assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert counts(d) == before
    assert not (Path.cwd() / "out.csv").exists() and not (tmp_path / "out.csv").exists()
    r = em(d, "query", "select topic, count(*) as n from events group by topic order by n desc, topic limit 2",
           "--format", "csv")
    assert r.returncode == 0 and len(r.stdout.splitlines()) == 3, r.stdout + r.stderr
