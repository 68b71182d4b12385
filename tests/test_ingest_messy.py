"""Ingest of the files real pipelines produce, on DuckDB and PostgreSQL warehouses: mixed line endings, BOMs,
bad bytes, short and long lines, unterminated quotes, non-integers in int columns, seconds declared as ms —
every line loaded or rejected exactly once, replays that change nothing twice, undo of one load, tiny chunks
that put boundaries everywhere, and kill -9 in the middle of a file."""

from __future__ import annotations

import csv
import io
import json
import os
import signal
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import yaml

from conftest import events_config, write_project
from eventmart import Project
from helpers import T0, ms, random_events, write_events_csv

HEADER = b"id,user_id,action,topic,amount,ts"
GOOD_TS = ms(T0 + timedelta(hours=1))


def project(tmp: Path, wh=None, fmt: str = "csv", **src) -> Project:
    cfg = events_config(wh, grain="1 hour")
    cfg["sources"]["events"].update({"format": fmt, "path": f"data/*.{fmt}", **src})
    write_project(tmp, cfg)
    return Project.load(tmp)


def rejects(p: Project) -> dict[int, tuple[str, str]]:
    return {r[1]: (r[2], r[3]) for r in p.rejects("events").rows}


def line(i: int, topic: str = "t", ts: int = GOOD_TS, amount: str = "1.5") -> bytes:
    return f"{i},7,view,{topic},{amount},{ts}".encode()


def test_line_endings_bom_and_quotes_as_python_csv_reads_them(tmp_path, engine):
    """LF lines, then CRLF lines appended by another writer, a BOM, a quoted \\r and CRLF inside a field, no final
    newline: every row loads with the values Python's csv module reads."""
    body = [line(1), line(2) + b"\r", b'3,7,view,"a\rb",1,' + str(GOOD_TS).encode(),
            b'4,7,view,"two\r\nlines",1,' + str(GOOD_TS).encode() + b"\r", line(5) + b"\r", line(6, "last")]
    data = b"\xef\xbb\xbf" + HEADER + b"\n" + b"\n".join(body)  # no newline at the end
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "e.csv").write_bytes(data)
    with project(tmp_path, engine) as p:
        res = p.ingest("events")
        assert (res.read, res.loaded, res.rejected) == (6, 6, 0), p.rejects("events").rows
        want = {int(r["id"]): r["topic"] for r in csv.DictReader(io.StringIO(data[3:].decode(), newline=""))}
        got = dict(p.query("SELECT id, topic FROM events").rows)
        assert got == want and got[3] == "a\rb" and got[4] == "two\r\nlines"


def test_every_bad_line_is_one_reject_with_all_its_reasons(tmp_path, engine):
    lines = [line(1),
             b"only,three,fields",                                       # 3: short
             line(2) + b",9,9",                                          # 4: long
             b"3,x,view,t,abc," + str(GOOD_TS).encode(),                 # 5: two bad columns
             b'4,7,view,"open,1.5,' + str(GOOD_TS).encode(),             # 6: quote never closed
             line(5),
             b"6,7,view,caf\xe9,1," + str(GOOD_TS).encode(),            # 8: latin-1, not UTF-8
             b"7,7,vi\x00ew,t,1," + str(GOOD_TS).encode(),               # 9: NUL
             b"500.5,7,view,t,1," + str(GOOD_TS).encode(),               # 10: not an integer
             b"501,7,view,t,1," + str(GOOD_TS).encode(),
             b"0x10,7,view,t,1," + str(GOOD_TS).encode(),                # 12: hex
             b"1e3,7,view,t,1," + str(GOOD_TS).encode(),                 # 13: exponent
             b"99999999999999999999,7,view,t,1," + str(GOOD_TS).encode(),  # 14: out of range
             b"16,7,view,t,1,1710028800",                                # 15: seconds declared as ms
             b"17,7,view,t,1,1710028800000000",                          # 16: microseconds declared as ms
             b"",                                                         # 17: blank: not a line of data
             line(18)]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "e.csv").write_bytes(HEADER + b"\n" + b"\n".join(lines) + b"\n")
    with project(tmp_path, engine) as p:
        res = p.ingest("events")
        assert res.read == 16 == res.loaded + res.duplicates + res.rejected
        assert (res.loaded, res.rejected) == (4, 12)
        rej = rejects(p)
        assert sorted(rej) == [3, 4, 5, 6, 8, 9, 10, 12, 13, 14, 15, 16]
        assert rej[3][0] == "wrong number of fields: expected 6, found 3" and rej[3][1] == "only,three,fields"
        assert rej[4][0] == "wrong number of fields: expected 6, found 8"
        assert rej[5][0] == "column user_id: cannot read x as int; column amount: cannot read abc as a finite number"
        assert "quote opened on line 6 is not closed" in rej[6][0]
        assert rej[8][0].startswith("invalid UTF-8 (byte 0xe9")
        assert rej[9][0].startswith("a NUL byte")
        for n, v in ((10, "500.5"), (12, "0x10"), (13, "1e3"), (14, "99999999999999999999")):
            assert rej[n][0] == f"column id: cannot read {v} as int"
        assert "1710028800 (2024-03-10 00:00:00 as unix ms)" not in rej[15][0]
        assert "is outside the valid range 1990-01-01..2100-01-01; is it in seconds?" in rej[15][0]
        assert "is it in microseconds?" in rej[16][0]
        # 500.5 was not rounded into 501's key: the real row 501 is there, once
        assert sorted(r[0] for r in p.query("SELECT id FROM events").rows) == [1, 5, 18, 501]
        assert p.status()[0].gaps == [] or p.status()[0].gaps[0][0].year == 2024  # no 1970 row to span from


def test_replay_is_idempotent_and_moves_only_fixed_rows(tmp_path, engine):
    lines = [line(1), b"only,three,fields", line(2, amount="cheap"), line(3, amount="dear"),
             b"4,x,view,t,1," + str(GOOD_TS).encode(), b'5,7,view,"q, ""x""",cheap,' + str(GOOD_TS).encode()]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "e.csv").write_bytes(HEADER + b"\n" + b"\n".join(lines) + b"\n")
    with project(tmp_path, engine) as p:
        assert p.ingest("events").rejected == 5
        table = sorted(p.query("SELECT file, line, raw, reason, rejected_at FROM events_rejects").rows)
        for _ in range(2):  # rows that still fail: the table stays exactly as it was
            r = p.replay_rejects("events")
            assert (r.read, r.loaded, r.rejected) == (5, 0, 5)
            assert sorted(p.query("SELECT file, line, raw, reason, rejected_at FROM events_rejects").rows) == table
    cfg = yaml.safe_load((tmp_path / "eventmart.yml").read_text())
    cfg["sources"]["events"]["columns"]["amount"] = "string?"
    write_project(tmp_path, cfg)
    with Project.load(tmp_path) as p:
        r = p.replay_rejects("events")
        assert (r.loaded, r.rejected) == (3, 2)
        left = sorted(p.query("SELECT line, reason FROM events_rejects").rows)
        assert [x[0] for x in left] == [3, 6]  # the short line and user_id x: untouched
        assert p.query("SELECT topic, amount FROM events WHERE id = 5").rows == [('q, "x"', "cheap")]
        again = p.replay_rejects("events")
        assert (again.loaded, again.rejected) == (0, 2)
        assert p.query("SELECT count(*) FROM events").rows[0][0] == 4


def test_tiny_chunks_keep_lines_dedup_and_quoted_fields_across_boundaries(tmp_path, engine, monkeypatch):
    monkeypatch.setenv("EVENTMART_CHUNK_BYTES", "300")
    events = random_events(400, seed=11)
    bad = ["999999,1,view,plain,1,notatime"]  # the last line
    f = write_events_csv(tmp_path / "data" / "a.csv", events + events[5:40], bad)  # duplicates across chunks
    text = f.read_text()
    want_line = text.count("\n")  # 1 header + 435 rows (some span two lines) + the bad one, last
    with project(tmp_path, engine) as p:
        res = p.ingest("events")
        assert (res.loaded, res.duplicates, res.rejected) == (400, 35, 1)
        assert list(rejects(p)) == [want_line]
        got = dict(p.query("SELECT id, topic FROM events").rows)
        assert got == {e["id"]: e["topic"] for e in events}  # Unicode, commas and quotes intact
        # a second file repeating keys of the first: deduplicated across files too
        write_events_csv(tmp_path / "data" / "b.csv", events[:50] + random_events(10, seed=3)[:0])
        res = p.ingest("events")
        assert (res.loaded, res.duplicates, len(res.skipped)) == (0, 50, 1)


def test_jsonl_and_parquet_reject_lines_not_files(tmp_path, engine):
    good = {"id": 1, "user_id": 2, "action": "view", "topic": "t", "ts": GOOD_TS}
    lines = [b"\xef\xbb\xbf" + json.dumps(good).encode(), json.dumps({**good, "id": 600.5}).encode(),
             json.dumps({**good, "id": "0x10"}).encode(), b'{"id": 3, "topic": "caf\xe9"}',
             json.dumps({**good, "id": 600}).encode() + b"\r", json.dumps({**good, "id": 4, "ts": 1710028800}).encode()]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "e.jsonl").write_bytes(b"\n".join(lines))
    with project(tmp_path, engine, fmt="jsonl") as p:
        res = p.ingest("events")
        assert (res.read, res.loaded, res.rejected) == (6, 2, 4)
        rej = rejects(p)
        assert rej[2][0] == "column id: cannot read 600.5 as int" and rej[3][0] == "column id: cannot read 0x10 as int"
        assert rej[4][0].startswith("invalid UTF-8") and "is it in seconds?" in rej[6][0]
        assert sorted(r[0] for r in p.query("SELECT id FROM events").rows) == [1, 600]
    t = pa.table({"id": pa.array([1.0, 2.5, 3.0]), "user_id": [1, 1, 1], "action": ["v", "v", "v"],
                  "topic": ["a", "b", "c"], "amount": [None, None, None], "ts": [GOOD_TS] * 3})
    pq.write_table(t, tmp_path / "data" / "f.parquet")
    with project(tmp_path, engine, fmt="parquet") as p:
        res = p.ingest("events")
        assert (res.loaded, res.duplicates, res.rejected) == (1, 1, 1)  # 1.0 is id 1, loaded from the JSONL
        assert rejects(p)[2][0] == "column id: cannot read 2.5 as int"


def test_file_ledger_skips_unchanged_and_rejects_are_one_file_however_named(tmp_path, monkeypatch):
    f = write_events_csv(tmp_path / "data" / "e.csv", random_events(20), ["bad,1,view,t,1,1"])
    with project(tmp_path) as p:
        assert p.ingest("events").loaded == 20
        os.utime(f, ns=(time.time_ns(), time.time_ns() + 10**9))  # touched, not changed: still skipped
        assert len(p.ingest("events").skipped) == 1
        monkeypatch.chdir(tmp_path)
        for name in ("data/e.csv", "./data/e.csv", str(f)):
            assert p.ingest("events", [name], force=True).rejected == 1
        assert len(p.rejects("events").rows) == 1
        with open(f, "a") as out:  # changed: read again; the new line loads, nothing doubles
            out.write(line(777).decode() + "\n")
        r = p.ingest("events")
        assert (r.loaded, r.duplicates, r.rejected, r.skipped) == (1, 20, 1, [])
        assert len(p.rejects("events").rows) == 1


def test_undo_removes_exactly_one_load_and_reopens_its_windows(tmp_path, engine):
    from helpers import assert_frames_equal, mart_frame, reference_by_topic

    a = random_events(300, seed=1, hours=6)
    b = [dict(e, id=e["id"] + 10_000) for e in random_events(100, seed=2, start=T0 + timedelta(hours=2), hours=1)]
    write_events_csv(tmp_path / "data" / "a.csv", a)
    with project(tmp_path, engine) as p:
        first = p.ingest("events")
        second = p.ingest("events", [str(write_events_csv(tmp_path / "in" / "b.csv", b, ["bad,1,view,t,1,1"]))])
        p.run(start=T0, end=T0 + timedelta(hours=6))
        assert [r[0] for r in p.ingests().rows] == [second.id, first.id]
        res = p.undo_ingest(second.id)
        assert (res.rows, res.rejects) == (100, 1) and res.windows == {"by_topic": 1}
        assert p.query("SELECT count(*) FROM events").rows[0][0] == 300
        assert p.rejects("events").rows == []
        st = p.status()[0]
        assert st.gaps == [(T0, T0 + timedelta(hours=6))]  # the 6-hour run held the removed rows
        p.backfill()
        assert_frames_equal(mart_frame(p), reference_by_topic(a, T0, T0 + timedelta(hours=6), 3600))
        assert p.ingests().rows[0][-1] == "undone"
        with pytest.raises(Exception, match="undone already"):
            p.undo_ingest(second.id)
        # the file can be loaded again after an undo
        assert p.ingest("events", [str(tmp_path / "in" / "b.csv")]).loaded == 100


KILLER = r"""
import sys, time
from eventmart import Project
p = Project.load(sys.argv[1])
n = [0]
def tick(f, done, total):
    n[0] += 1
    if n[0] == 5:
        open(sys.argv[2], "w").write("mid-file")
        time.sleep(60)
p.ingest("events", progress=tick)
"""


def test_kill_9_in_the_middle_of_a_file_resumes_without_duplicates(tmp_path):
    """Chunks commit one by one: kill -9 keeps what was committed, `ingests` says the load was interrupted, and
    the same command resumes after the last committed chunk; every key loads once."""
    events = random_events(3000, seed=8)
    write_events_csv(tmp_path / "data" / "e.csv", events, ["bad,1,view,t,1,1"])
    project(tmp_path).close()
    flag = tmp_path / "flag"
    env = {**os.environ, "EVENTMART_CHUNK_BYTES": "4096"}
    proc = subprocess.Popen([sys.executable, "-c", KILLER, str(tmp_path), str(flag)], env=env)
    for _ in range(600):
        if flag.exists() or proc.poll() is not None:
            break
        time.sleep(0.05)
    assert flag.exists(), "the ingest never reached its fifth chunk"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    with Project.load(tmp_path) as p:
        part = p.query("SELECT count(*) FROM events").rows[0][0]
        assert 0 < part < 3000
        (first,) = p.ingests().rows
        assert first[-1].startswith("interrupted") and first[4] == part
    with Project.load(tmp_path) as p:
        res = p.ingest("events")
        assert (res.loaded, res.rejected) == (3000 - part, 1) and res.duplicates < 100  # at most the chunk in flight
        assert p.query("SELECT count(*), count(DISTINCT id) FROM events").rows == [(3000, 3000)]
        assert len(p.rejects("events").rows) == 1
        assert len(p.ingest("events").skipped) == 1  # finished now: unchanged, skipped
