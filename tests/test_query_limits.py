"""A server that only serves: a read of user SQL never waits for or delays the writers, stops at its timeout on every
engine, stops when its client goes away, and is refused past its row and byte caps — while `query --out` streams a
result of any size to a file, directly and through the server."""

from __future__ import annotations

import csv
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import pytest

from conftest import events_config, write_project
from eventmart import Project
from eventmart.errors import UserError
from eventmart.server.api import TOKEN_HEADER, RemoteProject, running_server
from eventmart.server.serve import Server
from helpers import random_events, write_events_csv

EVENTMART = str(Path(sys.executable).parent / "eventmart")
# seconds to minutes of work on any engine, whatever its optimiser does with a plain cross join
SLOW = {"duckdb": "SELECT count(*) FROM range(40000) a, range(40000) b WHERE (a.range * 7 + b.range * 13) % 1000003 = 5",
        "postgres": "SELECT count(*) FROM generate_series(1, 40000) a, generate_series(1, 40000) b "
                    "WHERE (a * 7 + b * 13) % 1000003 = 5",
        # readonly=1 refuses table functions such as numbers(): the events, crossed with themselves
        "clickhouse": "SELECT count() FROM events a, events b, events c, events d "
                      "WHERE (a.id * 7 + b.id * 13 + c.id * 17 + d.id) % 1000003 = 5"}


def _project(d: Path, wh: dict, query: dict | None = None) -> Path:
    write_events_csv(d / "data" / "e.csv", random_events(300, seed=4, hours=3))
    cfg = events_config(wh)
    if query:
        cfg["query"] = query
    write_project(d, cfg)
    with Project.load(d) as p:
        p.ingest("events")
    return d


def test_a_read_stops_at_its_timeout_on_every_engine(tmp_path, engine):
    d = _project(tmp_path, engine, {"timeout": "1 second"})
    kind = engine["type"]
    with Project.load(d) as p:
        with pytest.raises(UserError, match=r"query: stopped after 1 s \(query.timeout\)"):
            p.query(SLOW[kind])
        assert p.query("SELECT count(*) FROM events").rows[0][0] == 300  # the warehouse is fine afterwards
        empty = p.query("SELECT id, topic FROM events WHERE id < 0")  # no rows: the columns all the same
        assert empty.columns == ["id", "topic"] and empty.rows == []


def test_results_past_the_caps_are_refused_and_exported_whole(tmp_path, engine):
    d = _project(tmp_path, engine, {"max_rows": 1000, "max_bytes": "20kB"})
    rows = {"duckdb": "SELECT range AS n FROM range(5000)", "postgres": "SELECT n FROM generate_series(0, 4999) n",
            "clickhouse": "SELECT arrayJoin(range(5000)) AS n"}[engine["type"]]
    wide = {"duckdb": "SELECT repeat('x', 100) AS s FROM range(500)",
            "postgres": "SELECT repeat('x', 100) AS s FROM generate_series(1, 500)",
            "clickhouse": "SELECT repeat('x', 100) AS s FROM (SELECT arrayJoin(range(500)))"}[engine["type"]]
    with Project.load(d) as p:
        with pytest.raises(UserError, match=r"more than 1,000 rows \(query.max_rows\).*--out FILE.csv"):
            p.query(rows)
        with pytest.raises(UserError, match=r"query.max_bytes"):
            p.query(wide)
        assert len(p.query(rows + " LIMIT 1000" if "LIMIT" not in rows else rows).rows) == 1000
    if engine["type"] == "clickhouse":
        return  # chDB opens one folder per process: the console script cannot while this one holds it
    out = tmp_path / "all.csv"
    r = subprocess.run([EVENTMART, "query", rows + " ORDER BY 1", "--out", str(out), "-p", str(d)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0 and r.stdout.strip() == f"wrote 5,000 row(s) to {out}", r.stderr
    got = list(csv.reader(out.open()))
    assert got[0] == ["n"] and [int(x[0]) for x in got[1:]] == list(range(5000))


def test_reads_never_wait_for_or_delay_the_writers_and_stop_when_the_client_goes(tmp_path):
    d = _project(tmp_path, {"type": "duckdb"}, {"timeout": "10 minutes"})
    with Project.load(d) as p:
        srv = Server(p, port=0, say=lambda m: None, scheduler=False)
        srv.start()
        try:
            remote = RemoteProject(d, running_server(d), p.config)
            slow: dict = {}
            reader = threading.Thread(target=lambda: slow.setdefault("r", _try(remote.query, SLOW["duckdb"])))
            reader.start()
            time.sleep(1.0)
            assert reader.is_alive()  # the read is running ...
            # ... and writes and other commands go on beside it, through the same server
            write_events_csv(d / "data" / "more.csv", [dict(e, id=e["id"] + 10_000) for e in random_events(50)])
            res = remote.ingest("events", [str(d / "data" / "more.csv")])
            assert res.loaded == 50 and reader.is_alive()
            runs = remote.run(start="2024-03-10", end="2024-03-11")
            assert runs[0].status == "ok" and reader.is_alive()
            assert remote.query("SELECT count(*) FROM events").rows == [(350,)]
            assert reader.is_alive()
            reader.join(600)
            assert not isinstance(slow["r"], UserError) and slow["r"].rows == [(0,)]
            # a client that goes away: the server's read (minutes of work) is interrupted, not left running
            state = running_server(d)
            endless = SLOW["duckdb"].replace("40000", "400000")
            with httpx.stream("POST", f"http://127.0.0.1:{state['port']}/_eventmart/api/call", timeout=30,
                              json={"method": "query", "args": [endless], "kwargs": {}},
                              headers={TOKEN_HEADER: state["token"]}) as r:
                assert next(r.iter_bytes()).strip() == b""  # the read runs; the client hangs up
            deadline = time.monotonic() + 20
            while any(t.name == "eventmart-query" and t.is_alive() for t in threading.enumerate()):
                assert time.monotonic() < deadline, "the abandoned read still runs"
                time.sleep(0.2)
        finally:
            srv.stop()


def test_export_through_the_server_streams_past_the_caps(tmp_path):
    d = _project(tmp_path, {"type": "duckdb"}, {"max_rows": 10})
    with Project.load(d) as p:
        srv = Server(p, port=0, say=lambda m: None, scheduler=False)
        srv.start()
        try:
            out = tmp_path / "big.jsonl"
            r = subprocess.run([EVENTMART, "query", "SELECT range AS n, 'a,b\n\"c\"' AS t FROM range(30000)",
                                "--out", str(out), "-p", str(d)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr
            lines = out.read_text().splitlines()
            assert len(lines) == 30000 and lines[7] == '{"n": 7, "t": "a,b\\n\\"c\\""}'
            r = subprocess.run([EVENTMART, "query", "SELECT * FROM nope", "--out", str(tmp_path / "x.csv"), "-p",
                                str(d)], capture_output=True, text=True, timeout=120)
            assert r.returncode == 2 and "no table or view nope" in r.stderr
            assert not (tmp_path / "x.csv").exists() and not (tmp_path / "x.csv.part").exists()
        finally:
            srv.stop()


def _try(fn, *args):
    try:
        return fn(*args)
    except UserError as e:
        return e
