"""A file a source cannot read at all (gzip bytes named .csv, a header without the declared columns) no longer stops
the source: the good files beside it load, the bad one is listed (status, ingests, the Runs page) and passed by while
it is unchanged, tried again when it changes, and `eventmart ingest` ends with exit status 3."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

from conftest import events_config, write_project
from eventmart import Project
from helpers import random_events, write_events_csv

EVENTMART = str(Path(sys.executable).parent / "eventmart")


def em(d: Path, *args: str) -> subprocess.CompletedProcess:
    r = subprocess.run([EVENTMART, *args, "-p", str(d)], capture_output=True, text=True, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def test_a_bad_file_in_the_glob_is_passed_by_listed_and_retried_when_it_changes(tmp_path):
    good = random_events(120, seed=1, hours=2)
    write_events_csv(tmp_path / "data" / "a.csv", good[:60])
    bad = tmp_path / "data" / "b.csv"
    with open(tmp_path / "data" / "b.tmp", "wb") as f:
        f.write(gzip.compress(b"id,user_id\n1,2\n"))
    os.replace(tmp_path / "data" / "b.tmp", bad)
    write_project(tmp_path, events_config())
    r = em(tmp_path, "ingest", "events")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "60 loaded" in r.stdout and "1 file(s) not read" in r.stdout
    assert "not read:" in r.stderr and "b.csv" in r.stderr
    # listed where a user looks
    status = json.loads(em(tmp_path, "status", "-f", "json").stdout)
    assert [f["file"] for f in status["files_not_read"]] == [str(bad)]
    assert "files not read" in em(tmp_path, "ingests").stdout
    # the next good file loads although the bad one is still there, unchanged: it is passed by, not re-read
    write_events_csv(tmp_path / "data" / "c.csv", good[60:])
    r = em(tmp_path, "ingest", "events")
    assert r.returncode == 3 and "60 loaded" in r.stdout
    with Project.load(tmp_path) as p:
        assert p.query("select count(*) from events").rows[0][0] == 120
        assert len(p.bad_files().rows) == 1
        from eventmart.server.web import create_server

        runs = create_server(p).config["eventmart_runs"]
        assert "b.csv" in json.dumps(runs.bad_files_table(), default=str)
    # fixed (it changed): read again, loaded, off the list; exit 0
    time.sleep(0.01)
    write_events_csv(bad, [dict(e, id=e["id"] + 5000) for e in good[:10]])
    r = em(tmp_path, "ingest", "events")
    assert r.returncode == 0 and "10 loaded" in r.stdout, (r.stdout, r.stderr)
    assert json.loads(em(tmp_path, "status", "-f", "json").stdout)["files_not_read"] == []


def test_only_bad_files_load_nothing_and_say_so(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "x.csv").write_text("nope,columns\n1,2\n")
    write_project(tmp_path, events_config())
    r = em(tmp_path, "ingest", "events")
    assert r.returncode == 3 and "0 loaded" in r.stdout and "the header lacks declared column(s)" in r.stderr
