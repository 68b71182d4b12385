"""A real Apache Superset (6.1, in .venv-superset, which make test builds from tests/superset/constraints.txt) reads
eventmart's marts the way the docs tell a user to connect it: DuckDB's `bi.duckdb` while `eventmart serve` owns the
warehouse, and a PostgreSQL warehouse through a read-only role. Every number Superset shows — through SQL Lab and
through a dataset's chart-data API — equals the truth computed here from the raw events; every BI connection string
in the docs is one of those tested (ClickHouse's is not: no ClickHouse server runs here, and the docs say so)."""

from __future__ import annotations

import json
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from conftest import write_project

ROOT = Path(__file__).resolve().parents[1]
SUPERSET_PY = ROOT / ".venv-superset" / "bin" / "python"
DRIVER = Path(__file__).parent / "superset" / "driver.py"
EVENTMART = str(Path(sys.executable).parent / "eventmart")
pytestmark = pytest.mark.xdist_group("superset")  # one worker initialises Superset once

T0 = datetime(2024, 5, 1)
BIG = 2**40 + 7  # sums of these stay exact in a double, and a float would still show it


@pytest.fixture(scope="module")
def superset_home(tmp_path_factory) -> Path:
    if not SUPERSET_PY.exists():
        pytest.fail(f"{SUPERSET_PY} is missing: `make test` builds it (the Superset venv)")
    home = tmp_path_factory.mktemp("superset")
    r = subprocess.run([str(SUPERSET_PY), str(DRIVER), "init", str(home)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return home


def ask(home: Path, tmp: Path, spec: dict) -> dict:
    """One Superset session on a copy of the initialised metadata."""
    mine = tmp / "superset-home"
    shutil.copytree(home, mine)
    cfg = mine / "superset_config.py"
    cfg.write_text(cfg.read_text().replace(str(home), str(mine)))
    r = subprocess.run([str(SUPERSET_PY), str(DRIVER), "ask", str(mine)], input=json.dumps(spec), capture_output=True,
                       text=True, timeout=600)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("EVENTMART-RESULT ")), None)
    assert r.returncode == 0 and line, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(line.split(" ", 1)[1])


def events(n: int = 3000) -> list[dict]:
    """Events over 30 hours: three actions, a big amount now and then, a user id that repeats."""
    return [{"id": i, "user": f"u{i % 37}", "action": ["view", "like", "share"][i % 3 if i % 11 else 0],
             "amount": BIG if i % 97 == 0 else i % 1000, "ts": (T0 + timedelta(seconds=i * 36)).isoformat(sep=" ")}
            for i in range(n)]


def truth(evs: list[dict]) -> tuple[list[list], dict[str, int]]:
    """The per_hour mart and events by action, from the raw events."""
    per: dict[tuple[str, str], list[int]] = {}
    for e in evs:
        k = (e["ts"][:13] + ":00:00", e["action"])
        v = per.setdefault(k, [0, 0])
        v[0] += 1
        v[1] += e["amount"]
    rows = [[dt, a, c, s] for (dt, a), (c, s) in sorted(per.items())]
    return rows, dict(Counter(e["action"] for e in evs))


def project(d: Path, warehouse: dict) -> Path:
    (d / "data").mkdir(parents=True)
    (d / "data" / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events()))
    return write_project(d, {
        "name": "bi", "warehouse": warehouse,
        "sources": {"ev": {"format": "jsonl", "path": "data/*.jsonl",
                           "columns": {"id": "int", "user": "string", "action": "string", "amount": "int",
                                       "ts": "timestamp"},
                           "time": {"column": "ts"}, "key": ["id"]}},
        "marts": {"per_hour": {"from": "ev", "grain": "1 hour", "dimensions": ["dt", "action"],
                               "measures": {"events": "count()", "amount": "sum(amount)"}}}})


def build(d: Path) -> None:
    for args in (["ingest", "ev"], ["backfill"]):
        r = subprocess.run([EVENTMART, *args, "-p", str(d)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr


SQL = "SELECT CAST(dt AS VARCHAR) AS dt, action, events, amount FROM per_hour ORDER BY dt, action"


def as_rows(got: list) -> list[list]:
    return [[str(dt)[:19].replace("T", " "), a, int(c), int(s)] for dt, a, c, s in got]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_superset_reads_the_duckdb_marts_while_serve_owns_the_warehouse(tmp_path, superset_home):
    d = project(tmp_path / "p", {"type": "duckdb"})
    build(d)
    srv = subprocess.Popen([EVENTMART, "serve", "--port", str(free_port()), "-p", str(d)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        until = time.monotonic() + 60
        while not (d / "bi.duckdb").exists():  # serve publishes the marts for BI tools as it starts
            assert srv.poll() is None and time.monotonic() < until, srv.stdout.read() if srv.poll() else "no bi.duckdb"
            time.sleep(0.2)
        # the docs' connection: duckdb:////path/to/project/bi.duckdb, read_only (duckdb-engine)
        uri = f"duckdb:///{(d / 'bi.duckdb').resolve()}"
        got = ask(superset_home, tmp_path, {"databases": [
            {"name": "duckdb", "uri": uri, "schema": "main",
             "extra": {"engine_params": {"connect_args": {"read_only": True}}},
             "sql": [SQL], "charts": [{"table": "per_hour", "groupby": ["action"], "metric": "SUM(events)"}]},
            {"name": "locked", "uri": f"duckdb:///{(d / 'warehouse.duckdb').resolve()}", "schema": "main",
             "extra": {"engine_params": {"connect_args": {"read_only": True}}}, "sql": ["SELECT 1"]}]})
        assert srv.poll() is None, "serve stopped while Superset read"
    finally:
        srv.terminate()
        srv.wait(30)
    rows, by_action = truth(events())
    assert as_rows(got["duckdb"]["sql"][0]) == rows
    assert {a: int(v) for a, v in got["duckdb"]["charts"][0]} == by_action
    # the warehouse itself is serve's alone (DuckDB's lock): which is why bi.duckdb exists
    locked = got["locked"]
    assert "error" in locked or "error" in locked["sql"][0], locked


def test_superset_reads_the_postgres_marts_through_a_read_only_role(tmp_path, superset_home, pg_url):
    d = project(tmp_path / "p", {"type": "postgres", "url": pg_url})
    build(d)
    # the read-only role of the docs (engines.md), with the schema eventmart writes to
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("CREATE ROLE bi_reader LOGIN PASSWORD 'bi-secret'") if not c.execute(
            "SELECT 1 FROM pg_roles WHERE rolname = 'bi_reader'").fetchone() else None
        c.execute("GRANT USAGE ON SCHEMA public TO bi_reader")
        c.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO bi_reader")
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    host = f"{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}"
    spec = {"sql": [SQL.replace("VARCHAR", "TEXT"), "DELETE FROM per_hour"],
            "charts": [{"table": "per_hour", "groupby": ["action"], "metric": "SUM(events)"}]}
    got = ask(superset_home, tmp_path, {"databases": [
        # the docs' string for Superset (SQLAlchemy 1.4: psycopg2)
        {"name": "pg", "uri": f"postgresql+psycopg2://bi_reader:bi-secret@{host}/{info['dbname']}",
         "schema": "public", **spec},
        # psycopg 3's dialect, which SQLAlchemy 2 clients use: Superset has none (the docs say so)
        {"name": "pg3", "uri": f"postgresql+psycopg://bi_reader:bi-secret@{host}/{info['dbname']}", "sql": ["SELECT 1"]}]})
    rows, by_action = truth(events())
    assert as_rows(got["pg"]["sql"][0]) == rows
    assert "error" in got["pg"]["sql"][1]  # a reader: Superset's DML switch and the role both refuse
    assert {a: int(v) for a, v in got["pg"]["charts"][0]} == by_action
    assert "error" in got["pg3"], got["pg3"]
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT count(*) FROM per_hour").fetchone()[0] == len(rows)


def test_every_bi_connection_string_in_the_docs_is_tested():
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
    schemes = set(re.findall(r"`((?:postgresql|duckdb|clickhousedb|clickhouse)[+a-z0-9]*)://", text))
    # above, against Superset: the first two work; psycopg 3's fails there, and the docs say so next to it
    tested = {"postgresql+psycopg2", "duckdb", "postgresql+psycopg"}
    untested = {"clickhousedb": "no ClickHouse server here"}  # stated in the docs
    assert schemes <= tested | set(untested), schemes - tested - set(untested)
    assert {"postgresql+psycopg2", "duckdb"} <= schemes
    bi = text[text.index("### BI tools"):]
    assert "`postgresql+psycopg://` fails there" in bi and "clickhousedb://" in bi.split("Not tested")[0]
