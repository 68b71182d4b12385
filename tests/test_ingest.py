"""Ingest: every malformed row lands in rejects with raw text, reason, file and line; keys load once."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from conftest import events_config, write_project
from eventmart import InputError, Project
from helpers import T0, ms, random_events, write_events_csv


def _project(tmp_path: Path, **kw) -> Project:
    write_project(tmp_path, events_config(**kw))
    return Project.load(tmp_path)


def test_good_and_bad_rows_are_all_accounted_for(tmp_path: Path):
    events = random_events(200)
    bad = [
        "201,1,view,plain,1.5,notatime",          # line 202: unparsable time
        "202,1,view,plain,1.5",                   # 203: too few fields
        "203,1,view,plain,1.5,1710028800000,9",   # 204: too many fields
        "204,abc,view,plain,1.5,1710028800000",   # 205: wrong type
        "205,1,,plain,1.5,1710028800000",         # 206: missing required value
        "206,1,view,plain,,1710028800000",        # 207: optional value empty: fine
        "207,1,view,plain,1,1710028800000000",    # 208: microseconds given for ms: year 56000
        '208,1,view,"multi\nline, ""quoted""",2,1710028800000',  # 209-210: fine
        "209,1,view,plain,2,-5",                  # 211: negative time
    ]
    f = write_events_csv(tmp_path / "data" / "e.csv", events, bad)
    p = _project(tmp_path)
    res = p.ingest("events")
    assert res.read == 200 + len(bad) == res.loaded + res.duplicates + res.rejected
    assert res.loaded == 202 and res.rejected == 7 and res.duplicates == 0
    rej = {r[1]: r for r in p.rejects("events").rows}  # by line
    assert sorted(rej) == [202, 203, 204, 205, 206, 208, 211]
    assert all(r[0] == str(f) for r in rej.values())
    assert "ts" in rej[202][2] and rej[202][3] == "201,1,view,plain,1.5,notatime"
    assert "wrong number of fields" in rej[203][2]
    assert "wrong number of fields" in rej[204][2]
    assert rej[205][2] == "column user_id: cannot read abc as int"
    assert rej[206][2] == "missing required value for column action"
    assert rej[206][3] == "205,1,,plain,1.5,1710028800000"
    assert "outside the valid range" in rej[208][2]
    assert "outside the valid range" in rej[211][2]
    got = p.query("SELECT topic, amount FROM events WHERE id IN (206, 208) ORDER BY id").rows
    assert got == [("plain", None), ('multi\nline, "quoted"', 2.0)]


def test_reingest_and_duplicate_lines_load_once(tmp_path: Path):
    events = random_events(100)
    write_events_csv(tmp_path / "data" / "a.csv", events + events[:10], ["x,1,view,plain,1,1"])  # duplicate lines
    p = _project(tmp_path)
    r1 = p.ingest("events")
    assert (r1.loaded, r1.duplicates, r1.rejected) == (100, 10, 1)
    r2 = p.ingest("events")  # unchanged since loaded: skipped by the file ledger
    assert (r2.read, r2.loaded, len(r2.skipped)) == (0, 0, 1) and "1 unchanged file(s) skipped" in r2.summary()
    r2 = p.ingest("events", force=True)
    assert (r2.loaded, r2.duplicates, r2.rejected) == (0, 110, 1)
    assert len(p.rejects("events").rows) == 1  # the bad row is kept once, not once per read
    assert p.query("SELECT count(*), count(DISTINCT id) FROM events").rows == [(100, 100)]
    # the run log of ingests keeps both loads
    assert p.query("SELECT loaded, duplicates FROM _eventmart_ingests ORDER BY started_at, loaded DESC").rows[0] == (100, 10)


def test_rejects_persist_and_replay_after_schema_fix(tmp_path: Path):
    write_events_csv(tmp_path / "data" / "a.csv", random_events(5), [
        "101,7,view,plain,cheap,1710028800000",   # amount is text: fails as float
        "102,7,view,plain,3.5,1710028800000",
    ])
    p = _project(tmp_path)
    assert p.ingest("events").rejected == 1
    write_events_csv(tmp_path / "data" / "b.csv", [], ["103,7,view,plain,dear,1710028800000", "104,x,view,p,1,1"])
    assert p.ingest("events", [str(tmp_path / "data" / "b.csv")]).rejected == 2
    assert len(p.rejects("events").rows) == 3  # rejects from both loads persist
    p.close()
    # fix the schema: amount is text after all
    cfg = events_config()
    cfg["sources"]["events"]["columns"]["amount"] = "string?"
    write_project(tmp_path, cfg)
    p = Project.load(tmp_path)
    res = p.replay_rejects("events")
    assert (res.loaded, res.rejected) == (2, 1)
    left = p.rejects("events").rows
    assert len(left) == 1 and left[0][1] == 3 and left[0][0].endswith("b.csv")  # still its own file and line
    assert p.query("SELECT id, amount FROM events WHERE id IN (101, 103) ORDER BY id").rows == [
        (101, "cheap"), (103, "dear")]
    # replaying again changes nothing and duplicates nothing
    res = p.replay_rejects("events")
    assert (res.loaded, res.rejected) == (0, 1)
    assert p.query("SELECT count(*) FROM events").rows == [(8,)]


def _counts(p: Project) -> tuple:
    tables = {r[0] for r in p.query("SELECT table_name FROM information_schema.tables").rows}
    return tuple(
        p.query(f"SELECT count(*) FROM {t}").rows[0][0] if t in tables else None
        for t in ("events", "events_rejects", "_eventmart_ingests")
    )


@pytest.mark.parametrize("problem", ["missing", "header", "binary", "empty", "folder"])
def test_unusable_file_writes_nothing(tmp_path: Path, problem: str):
    good = write_events_csv(tmp_path / "data" / "good.csv", random_events(10))
    p = _project(tmp_path)
    p.ingest("events")
    before = _counts(p)
    target = tmp_path / "in" / "x.csv"
    target.parent.mkdir()
    if problem == "header":
        target.write_text("id,user,action\n1,2,3\n")
    elif problem == "binary":
        target.write_bytes(b"PAR1\x00\x15\xff\xfe" * 50)
    elif problem == "empty":
        target.write_text("")
    elif problem == "folder":
        target.mkdir()
    if problem in ("missing", "folder"):  # no file there: a mistake in the command, nothing at all is written
        with pytest.raises(InputError) as e:
            p.ingest("events", [str(good), str(target)])
        msg = str(e.value)
        assert str(target) in msg and "\n" not in msg
        assert _counts(p) == before
        return
    # a file whose bytes cannot be read: passed by and listed, the good one beside it still counts (test_bad_files)
    res = p.ingest("events", [str(good), str(target)])
    assert [f for f, _ in res.bad_files] == [str(target)] and str(target) in res.bad_files[0][1]
    assert _counts(p)[:2] == before[:2]  # no row and no reject of it


def test_cli_exit_codes(tmp_path: Path):
    write_events_csv(tmp_path / "data" / "a.csv", random_events(10), ["x,1,view,plain,1,1"])
    write_project(tmp_path, events_config())
    cmd = [sys.executable, "-m", "eventmart", "-p", str(tmp_path)]
    ok = subprocess.run([*cmd[:3], "ingest", "events", "-p", str(tmp_path)], capture_output=True, text=True)
    assert ok.returncode == 0, ok.stderr
    assert "10 loaded, 0 duplicate, 1 rejected" in ok.stdout
    bad = subprocess.run([*cmd[:3], "ingest", "events", str(tmp_path / "nope.csv"), "-p", str(tmp_path)],
                         capture_output=True, text=True)
    assert bad.returncode == 2
    assert bad.stderr.strip().count("\n") == 0 and "nope.csv" in bad.stderr


def test_jsonl_rows_and_rejects(tmp_path: Path):
    cfg = events_config()
    cfg["sources"]["events"] = {**cfg["sources"]["events"], "format": "jsonl", "path": "data/*.jsonl"}
    write_project(tmp_path, cfg)
    lines = [
        json.dumps({"id": 1, "user_id": 2, "action": "view", "topic": "Кино, \"сериалы\"", "amount": 1.5,
                    "ts": ms(T0)}, ensure_ascii=False),
        "{not json",
        json.dumps([1, 2]),
        json.dumps({"id": 2, "user_id": "zz", "action": "view", "topic": "a", "ts": ms(T0)}),
        json.dumps({"id": 3, "user_id": 2, "topic": "a", "ts": ms(T0)}),
        "",
        json.dumps({"id": 4, "user_id": 2, "action": "like", "topic": "a", "ts": ms(T0), "extra": True}),
    ]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "e.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    p = Project.load(tmp_path)
    res = p.ingest("events")
    assert (res.loaded, res.rejected) == (2, 4)
    rej = {r[1]: r[2] for r in p.rejects("events").rows}
    assert rej == {
        2: "not valid JSON",
        3: "not a JSON object",
        4: "column user_id: cannot read zz as int",
        5: "missing required value for column action",
    }
    assert p.query("SELECT topic FROM events WHERE id = 1").rows == [('Кино, "сериалы"',)]


def test_parquet_rows_and_rejects(tmp_path: Path):
    cfg = events_config()
    cfg["sources"]["events"] = {**cfg["sources"]["events"], "format": "parquet", "path": "data/*.parquet"}
    write_project(tmp_path, cfg)
    (tmp_path / "data").mkdir()
    t = pa.table({"id": [1, 2, 3], "user_id": [5, 6, 7], "action": ["view", None, "like"],
                  "topic": ["a", "b", "c"], "amount": [1.0, None, 2.0], "ts": [ms(T0), ms(T0), -1]})
    pq.write_table(t, tmp_path / "data" / "e.parquet")
    # a second file with looser types takes the text path
    t2 = pa.table({"id": ["10", "x"], "user_id": ["5", "6"], "action": ["view", "view"], "topic": ["a", "b"],
                   "amount": [None, None], "ts": [str(ms(T0)), str(ms(T0))]})
    pq.write_table(t2, tmp_path / "data" / "f.parquet")
    p = Project.load(tmp_path)
    res = p.ingest("events")
    assert (res.loaded, res.rejected) == (2, 3)
    rej = sorted((Path(r[0]).name, r[1], r[2]) for r in p.rejects("events").rows)
    assert rej[0] == ("e.parquet", 2, "missing required value for column action")
    assert rej[1][:2] == ("e.parquet", 3) and "outside the valid range" in rej[1][2]
    assert rej[2] == ("f.parquet", 2, "column id: cannot read x as int")
    raw = json.loads(p.query("SELECT raw FROM events_rejects WHERE line = 2 AND file LIKE '%e.parquet'").rows[0][0])
    assert raw["id"] == 2 and raw["action"] is None


def test_not_parquet_is_unusable(tmp_path: Path):
    cfg = events_config()
    cfg["sources"]["events"] = {**cfg["sources"]["events"], "format": "parquet", "path": "data/*.parquet"}
    write_project(tmp_path, cfg)
    write_events_csv(tmp_path / "data" / "e.parquet", random_events(3))
    res = Project.load(tmp_path).ingest("events")
    assert res.loaded == 0 and "not a Parquet file" in res.bad_files[0][1]
