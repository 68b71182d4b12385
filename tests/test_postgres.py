"""The same project on a real PostgreSQL server: ingest by COPY, marts in-database, the seed's log_raw as a source."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta
from pathlib import Path

import psycopg
import pytest

from conftest import events_config, write_project
from eventmart import Project, UserError
from helpers import T0, assert_frames_equal, mart_frame, random_events, reference_by_topic, write_events_csv


def _pg_project(tmp_path: Path, url: str, events: list[dict], extra: list[str] = (), **marts) -> Project:
    write_events_csv(tmp_path / "data" / "e.csv", events, extra)
    write_project(tmp_path, events_config(warehouse={"type": "postgres", "url": url}, **marts))
    return Project.load(tmp_path)


def test_ingest_marts_and_idempotency_on_postgres(tmp_path: Path, pg_url: str):
    events = random_events(3000, seed=21, hours=24)
    p = _pg_project(tmp_path, pg_url, events + events[:50], ["9999,1,view,'x,1,notatime", "9998,2,,plain,1,1710028800000"])
    res = p.ingest("events")
    assert (res.loaded, res.duplicates, res.rejected) == (3000, 50, 2)
    assert p.ingest("events").loaded == 0  # again: every key known
    rej = sorted((r[1], r[2]) for r in p.rejects("events").rows)
    assert rej[0][0] == 3052 and "ts" in rej[0][1]
    assert rej[1] == (3053, "missing required value for column action")
    # hourly runs, then the whole day, then one hour again: always the reference
    for h in range(0, 24, 6):
        p.run(start=T0 + timedelta(hours=h), end=T0 + timedelta(hours=h + 6))
    p.run(start=T0, end=T0 + timedelta(days=1))
    p.run(start=T0 + timedelta(hours=5), end=T0 + timedelta(hours=6))
    assert_frames_equal(mart_frame(p), reference_by_topic(events, T0, T0 + timedelta(days=1)))
    [st] = p.status()
    assert st.covered == [(T0, T0 + timedelta(days=1))]
    # the marts live in PostgreSQL itself
    with psycopg.connect(pg_url) as c:
        assert int(c.execute("SELECT sum(events) FROM by_topic").fetchone()[0]) == int(reference_by_topic(
            events, T0, T0 + timedelta(days=1))["events"].sum())
    assert len(p.rejects("events").rows) == 2  # reading the file twice kept its bad rows once


def test_postgres_backfill_and_sql_mart_use_pg_dialect(tmp_path: Path, pg_url: str):
    events = random_events(500, seed=4, hours=48)
    sql = {"from": "events", "grain": "1 hour", "time_column": "hour",
           "sql": "SELECT date_trunc('hour', _time) AS hour, count(*) AS n, "
                  "count(*) FILTER (WHERE topic LIKE '%,%') AS with_comma FROM events "
                  "WHERE _time >= {{ start }} AND _time < {{ end }} GROUP BY 1"}
    p = _pg_project(tmp_path, pg_url, events, hourly=sql)
    p.ingest("events")
    res = p.backfill()
    assert res and all(r.status == "ok" for r in res)
    n, commas = p.query("SELECT sum(n), sum(with_comma) FROM hourly").rows[0]
    ref = reference_by_topic(events, T0 - timedelta(hours=1), T0 + timedelta(hours=49))
    assert int(n) == int(ref["events"].sum())
    assert int(commas) == sum(e["topic"] == "Кино, сериалы" for e in {e["id"]: e for e in events}.values())


def test_query_is_read_only_on_postgres(tmp_path: Path, pg_url: str):
    p = _pg_project(tmp_path, pg_url, random_events(10))
    p.ingest("events")
    with pytest.raises(UserError, match="read-only"):
        p.query("DELETE FROM events")
    assert p.query("SELECT count(*) FROM events").rows == [(10,)]


def test_seed_log_raw_table_as_a_source(tmp_path: Path, pg_url: str):
    """Seed 000 keeps raw events in PostgreSQL's log_raw; eventmart reads them from there."""
    with psycopg.connect(pg_url, autocommit=True) as c:
        c.execute("CREATE TABLE log_raw (event_id bigint, age_segment text, event text, item_topic text, ts text, user_id bigint)")
        with c.cursor().copy("COPY log_raw FROM STDIN") as cp:
            for row in [(1, "18-25", "show", "Деньги", "1569349680000", 5), (2, "45+", "click", "Кино, 'x'", "1569349681000", 6),
                        (3, "45+", None, "Деньги", "1569349682000", 7), (4, "45+", "view", "Деньги", "soon", 7)]:
                cp.write_row(row)
    cfg = {
        "name": "seed",
        "warehouse": {"type": "duckdb"},
        "sources": {"log_raw": {
            "format": "postgres", "url": pg_url, "table": "log_raw",
            "columns": {"event_id": "int", "age_segment": "string", "event": "string", "item_topic": "string",
                        "ts": "int", "user_id": "int"},
            "time": {"column": "ts", "unit": "ms"}, "key": ["event_id"]}},
        "marts": {"dash_visits": {"from": "log_raw", "grain": "1 minute",
                                  "dimensions": ["item_topic", "age_segment", "dt"], "measures": {"visits": "count()"}}},
    }
    write_project(tmp_path, cfg)
    p = Project.load(tmp_path)
    res = p.ingest("log_raw")
    assert (res.loaded, res.rejected) == (2, 2)
    assert sorted(r[2] for r in p.rejects("log_raw").rows) == [
        "column ts: cannot read soon as int", "missing required value for column event"]
    assert p.ingest("log_raw").loaded == 0
    p.run(start="2019-09-24 18:28", end="2019-09-24 18:29")
    assert sorted(p.query("SELECT item_topic, visits FROM dash_visits").rows) == [("Деньги", 1), ("Кино, 'x'", 1)]


def test_concurrent_runs_of_one_window_never_double_the_mart(tmp_path, pg_url):
    """Two processes replace the same window at the same time (a slow query makes them overlap): one waits for
    the other, and the mart holds the window once."""
    cfg = events_config({"type": "postgres", "url": pg_url}, slow={
        "from": "events", "grain": "1 hour",
        "sql": "select date_trunc('hour', _time) as dt, count(*) as n from events, (select pg_sleep(0.6)) s "
               "where _time >= {{ start }} and _time < {{ end }} group by 1"})
    write_events_csv(tmp_path / "data" / "e.csv", random_events(500, seed=4, hours=6))
    write_project(tmp_path, cfg)
    with Project.load(tmp_path) as p:
        p.ingest("events")
    cmd = [sys.executable, "-m", "eventmart", "run", "slow", "by_topic", "--start", "2024-03-10", "--end",
           "2024-03-10 06:00", "-p", str(tmp_path)]
    for _ in range(3):
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(2)]
        for pr in procs:
            _, err = pr.communicate(timeout=120)
            assert pr.returncode == 0, err
        with Project.load(tmp_path) as p:
            assert p.query("SELECT sum(n) FROM slow").rows[0][0] == 500
            assert p.query("SELECT sum(events) FROM by_topic").rows[0][0] == 500


def test_the_planner_sees_a_batch_just_loaded(tmp_path, pg_url):
    """After an ingest (and each vault table's load) the statistics are fresh: the next statement that reads the new
    rows must not plan them as one row — PostgreSQL then picks a nested loop, hours on a vault's anti-join."""
    import json

    events = random_events(6000, seed=5, hours=24)
    p = _pg_project(tmp_path, pg_url, events[:3000])
    p.ingest("events")
    write_events_csv(tmp_path / "data" / "f.csv", events[3000:])
    assert p.ingest("events").loaded == 3000
    last = p.warehouse.fetch("SELECT max(_ingest) FROM events").rows[0][0]
    [[plan]] = p.warehouse.fetch(f"EXPLAIN (FORMAT JSON) SELECT * FROM events WHERE _ingest = {int(last)}").rows
    plan = plan if isinstance(plan, list) else json.loads(plan)
    assert plan[0]["Plan"]["Plan Rows"] > 1000, plan
    p.close()
