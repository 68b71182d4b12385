"""`eventmart serve` as the single owner: the CLI through its local API, start-up catch-up, Runs page, backups."""

from __future__ import annotations

import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from conftest import events_config, write_project
from eventmart import Project
from eventmart.server.api import TOKEN_HEADER, running_server, state_path
from eventmart.server.serve import Server
from eventmart.timeutil import floor_time, utcnow
from helpers import assert_frames_equal, mart_frame, random_events, reference_by_topic, write_events_csv

DAY = timedelta(days=1)


def cli(*args: str, project: Path) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "eventmart", *args, "-p", str(project)], capture_output=True,
                          text=True, timeout=120)


@pytest.fixture
def recent(tmp_path):
    """A project whose events cover the three days before today, with a nightly job."""
    start = floor_time(utcnow(), 86400) - 3 * DAY
    cfg = events_config()
    cfg["schedules"] = {"nightly": {"cron": "15 3 * * *"}}
    cfg["alerts"] = {"volume": {"mart": "by_topic", "measure": "sum(events)"}}
    events = random_events(1500, seed=21, start=start, hours=72)
    write_events_csv(tmp_path / "data" / "e.csv", events[:1000])
    write_project(tmp_path, cfg)
    with Project.load(tmp_path) as p:
        p.ingest("events")
    return tmp_path, start, events


def wait_for(cond, timeout: float = 60) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_the_cli_works_while_serve_owns_the_warehouse(recent):
    d, start, events = recent
    p = Project.load(d)
    srv = Server(p, port=0, say=lambda m: None)
    srv.start()
    try:
        # start-up caught up the three closed days
        wait_for(lambda: len(p.runs(job="nightly").rows) == 3)
        assert running_server(d)["port"] == srv.port
        # another terminal: more events, a re-run, queries — no lock errors
        write_events_csv(d / "data" / "more.csv", events[1000:])
        r = cli("ingest", "events", str(d / "data" / "more.csv"), project=d)
        assert r.returncode == 0, r.stderr
        assert "500 loaded" in r.stdout
        # the new events fall in the days already built: those windows are re-opened, nothing else (and, the
        # mart being declarative, they run together)
        r = cli("backfill", "--dry-run", project=d)
        assert r.returncode == 0 and "1 window(s) to run" in r.stdout, r.stdout + r.stderr
        assert r.stdout.startswith(f"by_topic [{start:%Y-%m-%d} 00:00, "), r.stdout
        r = cli("run", "--start", start.isoformat(), "--end", (start + 3 * DAY).isoformat(), project=d)
        assert r.returncode == 0, r.stderr
        r = cli("query", "select sum(events) from by_topic", "--format", "csv", project=d)
        assert r.returncode == 0 and r.stdout.splitlines()[1] == "1500", r.stdout + r.stderr
        r = cli("runs", "--failed", project=d)
        assert r.returncode == 0, r.stderr
        r = cli("status", project=d)
        assert r.returncode == 0 and "by_topic" in r.stdout
        # a rule tried before it is switched on: replayed by the server, its chart written here
        r = subprocess.run([sys.executable, "-m", "eventmart", "alerts", "test", "volume", "--png",
                            str(d / "volume.png"), "-p", str(d)], capture_output=True, text=True, timeout=120)
        assert r.returncode == 0 and "would have fired" in r.stdout, r.stdout + r.stderr
        assert (d / "volume.png").read_bytes()[:4] == b"\x89PNG"
        # a user error from the server comes back as one line, exit 2
        r = cli("run", "nope", "--start", "2024-01-01", "--end", "2024-01-02", project=d)
        assert r.returncode == 2 and r.stderr.startswith("error: unknown mart 'nope'")
        # one owner only; restore waits for the server to stop
        assert cli("serve", "--port", "0", project=d).returncode == 2
        r = cli("restore", "backups/x.duckdb", project=d)
        assert r.returncode == 2 and "stop it before" in r.stderr
        assert_frames_equal(mart_frame(p), reference_by_topic(events, start, start + 3 * DAY))
        # the API wants the token, and only the commands
        url = f"http://127.0.0.1:{srv.port}/_eventmart/api/call"
        assert httpx.post(url, json={"method": "status"}).status_code == 403
        token = running_server(d)["token"]
        assert httpx.post(url, json={"method": "close"}, headers={TOKEN_HEADER: token}).status_code == 400
        assert (state_path(d).stat().st_mode & 0o777) == 0o600
        # the Runs page lists the runs
        page = httpx.get(f"http://127.0.0.1:{srv.port}/runs/")
        assert page.status_code == 200
        # a backfill through the server reports each window as it finishes (the CLI's progress bar)
        import eventmart.marts
        from eventmart.server.api import RemoteProject

        remote = RemoteProject(d, running_server(d), p.config)
        remote.reset("by_topic")
        seen = []
        batch, eventmart.marts.BATCH_ROWS = eventmart.marts.BATCH_ROWS, 100  # a day (~500 events) per run
        try:
            res = remote.backfill(progress=lambda r, i, n: seen.append((r.status, i, n)))
        finally:
            eventmart.marts.BATCH_ROWS = batch
        assert len(res) == len(seen) >= 3 and seen == [("ok", i, len(seen)) for i in range(1, len(seen) + 1)]
        assert_frames_equal(mart_frame(p), reference_by_topic(events, start, start + 3 * DAY))
    finally:
        srv.stop()
        p.close()
    assert not state_path(d).exists()
    assert cli("status", project=d).returncode == 0  # local again


def test_runs_page_coverage_states(recent):
    d, start, _ = recent
    cfg = events_config(gated={"from": "events", "grain": "1 day", "sql":
                               "select date_trunc('day', _time) as dt, count(*) as n from events, gate "
                               "where _time >= {{ start }} and _time < {{ end }} group by 1"})
    write_project(d, cfg)
    with Project.load(d) as p:
        p.run(["by_topic"], start=start, end=start + DAY)
        p.runner.run_window("by_topic", start + DAY, start + 2 * DAY, trigger="schedule:nightly:lookback")
        p.run(["gated"], start=start, end=start + DAY)  # fails: no table gate
        import flask

        from eventmart.server.runs_page import RunsApp

        app = RunsApp(p, flask.Flask("t"))
        cov = app.coverage()
        assert [c[2] for c in cov["by_topic"]] == ["done", "re-opened by lookback", "missing"]
        assert [c[2] for c in cov["gated"]] == ["failed", "missing", "missing"]
        plan = app.plan(["by_topic"], None, None)
        last = p.query("SELECT max(_time) FROM events").rows[0][0]  # a backfill stops at the data
        assert [(s, e) for _, s, e in plan] == [(start + 2 * DAY, floor_time(last, 60) + timedelta(minutes=1))]
        rows = app.runs(None, failed=True)
        assert [r["mart"] for r in rows] == ["gated"] and "gate" in rows[0]["error"]
        fig = app.calendar_figure()  # a few days: bars spanning each window
        done = next(t for t in fig["data"] if t["name"] == "done")
        assert done["type"] == "bar" and done["x"] == [DAY.total_seconds() * 1000]


def test_runs_page_shows_a_calendar_of_days_for_long_spans(tmp_path):
    import flask

    from eventmart.server.runs_page import RunsApp
    from helpers import T0

    write_events_csv(tmp_path / "data" / "e.csv", random_events(400, seed=1, hours=24 * 100))
    write_project(tmp_path, events_config(grain="1 day"))
    with Project.load(tmp_path) as p:
        p.ingest("events")
        p.run(start=T0, end=T0 + 30 * DAY)
        fig = RunsApp(p, flask.Flask("t")).calendar_figure()
    (heat,) = fig["data"]
    assert heat["type"] == "heatmap" and len(heat["x"]) == 100
    states = heat["colorbar"]["ticktext"]
    row = heat["z"][0]
    assert [states[v] for v in row[:30]] == ["done"] * 30 and states[row[30]] == "missing"


def test_backup_verify_keep_and_restore(tmp_path, engine):
    events = random_events(800, seed=8, hours=24)
    write_events_csv(tmp_path / "data" / "e.csv", events)
    write_project(tmp_path, events_config(engine))
    p = Project.load(tmp_path)
    p.ingest("events")
    p.backfill()
    made = []
    for _ in range(3):
        made.append(p.backup(keep=2).path)
        time.sleep(1.05)  # copies are stamped to the second
    kept = sorted((tmp_path / "backups").iterdir())
    assert kept == made[1:]
    before = mart_frame(p)
    p.reset("by_topic")
    assert p.warehouse.table_columns("by_topic") is None
    p.close()
    r = cli("restore", str(made[-1]), project=tmp_path)
    assert r.returncode == 0, r.stderr
    with Project.load(tmp_path) as q:
        assert_frames_equal(mart_frame(q), before)
        assert q.status()[0].gaps == []
    if engine["type"] == "duckdb":
        assert list(tmp_path.glob("warehouse.duckdb.before-restore-*"))  # the replaced file is kept


def test_a_scheduled_backup_is_recorded(tmp_path):
    cfg = events_config()
    cfg["schedules"] = {"weekly": {"cron": "0 4 * * 0", "run": "backup", "keep": 1}}
    write_events_csv(tmp_path / "data" / "e.csv", random_events(100, seed=1, hours=2))
    write_project(tmp_path, cfg)
    with Project.load(tmp_path) as p:
        p.ingest("events")
        from eventmart.server.scheduler import Scheduler

        s = Scheduler(p, say=lambda m: None)
        from datetime import datetime

        assert s.start_up(datetime(2026, 11, 24, 10)) == []  # no backup owed for downtime
        assert s.next["weekly"] == datetime(2026, 11, 29, 4)
        res = s.tick(datetime(2026, 11, 29, 4))
        assert [r.status for r in res] == ["ok"] and res[0].error.startswith("warehouse-")
        assert len(list((tmp_path / "backups").glob("*.duckdb"))) == 1
        assert p.runs(job="weekly").rows[0][1] == "_backup"
