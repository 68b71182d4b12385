"""Marts against an independent pandas reference; idempotency; windows; ledger; gaps; backfill — on every engine
(the ``engine`` fixture: DuckDB, PostgreSQL, ClickHouse via chDB) where the test is not about one engine."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import events_config, variant, write_project
from eventmart import Project, ProjectError, UserError
from helpers import (
    T0,
    assert_frames_equal,
    mart_frame,
    ms,
    random_events,
    reference_by_topic,
    write_events_csv,
)


def _loaded(tmp_path: Path, events: list[dict], warehouse: dict | None = None, **cfg) -> Project:
    write_events_csv(tmp_path / "data" / "e.csv", events)
    write_project(tmp_path, events_config(warehouse, **cfg))
    p = Project.load(tmp_path)
    p.ingest("events")
    return p


def test_window_matches_reference_and_excludes_boundaries(tmp_path: Path, engine: dict):
    events = random_events(3000, seed=3, hours=30)
    # exactly on both window ends and 1 ms inside/outside them
    s, e = T0 + timedelta(hours=2), T0 + timedelta(hours=26)
    extra = [s - timedelta(milliseconds=1), s, e - timedelta(milliseconds=1), e]
    for i, t in enumerate(extra):
        events.append({"id": 10_000 + i, "user_id": 1, "action": "like", "topic": "edge", "amount": 1.0, "ts": ms(t)})
    p = _loaded(tmp_path, events, engine)
    [r] = p.run(start=s, end=e)
    assert r.status == "ok", r.error
    got, ref = mart_frame(p), reference_by_topic(events, s, e)
    assert_frames_equal(got, ref)
    edge = got[got.topic == "edge"]
    assert list(edge.dt) == [s, e - timedelta(minutes=1)]  # the end boundary belongs to the next window


@pytest.mark.parametrize("engine", ["duckdb", "clickhouse"], indirect=True)
@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(n=st.integers(0, 400), seed=st.integers(0, 10_000), grain=st.sampled_from(["1 minute", "15 minutes", "1 hour"]),
       dup=st.integers(0, 30))
def test_property_any_log_any_grain(tmp_path_factory, engine, n, seed, grain, dup):
    tmp = tmp_path_factory.mktemp("prop")
    events = random_events(n, seed=seed, hours=6)
    events += events[:dup]  # exact duplicates must count once
    p = _loaded(tmp, events, variant(engine, tmp.name), grain=grain)
    g = {"1 minute": 60, "15 minutes": 900, "1 hour": 3600}[grain]
    s, e = T0, T0 + timedelta(hours=6)
    p.run(start=s, end=e)
    assert_frames_equal(mart_frame(p), reference_by_topic(events, s, e, g))
    p.close()


def test_day_at_once_equals_hourly_runs_and_reruns(tmp_path: Path, engine: dict):
    events = random_events(4000, seed=5, hours=24)
    a = _loaded(tmp_path / "a", events, variant(engine, "a"))
    a.run(start=T0, end=T0 + timedelta(days=1))
    b = _loaded(tmp_path / "b", events, variant(engine, "b"))
    for h in range(24):
        b.run(start=T0 + timedelta(hours=h), end=T0 + timedelta(hours=h + 1))
    b.run(start=T0, end=T0 + timedelta(days=1))  # twice over: still identical
    b.run(start=T0 + timedelta(hours=3), end=T0 + timedelta(hours=4))
    fa, fb = mart_frame(a), mart_frame(b)
    assert len(fa) > 1000
    assert_frames_equal(fb, reference_by_topic(events, T0, T0 + timedelta(days=1)))
    assert_frames_equal(fa, reference_by_topic(events, T0, T0 + timedelta(days=1)))


def test_empty_window_clears_old_rows(tmp_path: Path, engine: dict):
    p = _loaded(tmp_path, random_events(200, hours=2), engine)
    p.run(start=T0, end=T0 + timedelta(hours=2))
    n = p.query("SELECT count(*) FROM by_topic").rows[0][0]
    assert n > 0
    # the data for the first hour is deleted upstream (say, a bad load was removed), then the hour re-run
    p.warehouse.execute("DELETE FROM events WHERE _time < {{ t }}", {"t": T0 + timedelta(hours=1)})
    [r] = p.run(start=T0, end=T0 + timedelta(hours=1))
    assert r.rows == 0
    assert p.query("SELECT count(*) FROM by_topic WHERE dt < TIMESTAMP '2024-03-10 01:00:00'").rows == [(0,)]
    assert p.query("SELECT count(*) FROM by_topic").rows[0][0] > 0


def test_unaligned_or_reversed_windows_are_refused(tmp_path: Path):
    p = _loaded(tmp_path, random_events(10), grain="15 minutes")
    with pytest.raises(UserError, match="not aligned to mart by_topic's grain .15 minutes.; use 2024-03-10 00:00 or 2024-03-10 00:15"):
        p.run(start="2024-03-10 00:07", end="2024-03-10 01:00")
    with pytest.raises(UserError, match="must be after"):
        p.run(start="2024-03-10 01:00", end="2024-03-10 00:00")
    assert p.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'by_topic'").rows == [(0,)]


def test_failed_run_keeps_old_window_and_is_in_the_ledger(tmp_path: Path, engine: dict):
    sql_mart = {"grain": "1 hour", "time_column": "hour",
                "sql": "SELECT date_trunc('hour', _time) AS hour, count(*) AS n FROM events "
                       "WHERE _time >= {{ start }} AND _time < {{ end }} GROUP BY 1"}
    p = _loaded(tmp_path, random_events(500, hours=4), engine, hourly=sql_mart)
    s, e = T0, T0 + timedelta(hours=4)
    [r] = p.run(["hourly"], start=s, end=e)
    assert r.status == "ok" and r.rows == 4
    before = p.query("SELECT * FROM hourly ORDER BY hour").rows
    assert sum(x[1] for x in before) == 500
    # break the mart: it now writes a bucket outside its window
    p.close()
    cfg = events_config(engine, hourly={**sql_mart, "sql": sql_mart["sql"].replace(
        "date_trunc('hour', _time)", "date_trunc('hour', _time) + INTERVAL '1 hour'")})
    write_project(tmp_path, cfg)
    p = Project.load(tmp_path)
    [r] = p.run(["hourly"], start=s, end=e)
    assert r.status == "failed" and "outside the window" in r.error
    assert p.query("SELECT * FROM hourly ORDER BY hour").rows == before
    ledger = p.query("SELECT status, rows, error IS NULL FROM _eventmart_runs WHERE mart = 'hourly' ORDER BY seq").rows
    assert [x[0] for x in ledger] == ["ok", "failed"]


def test_sql_mart_with_engine_error_is_recorded(tmp_path: Path, engine: dict):
    bad = {"grain": "1 hour", "time_column": "hour",
           "sql": "SELECT no_such_column AS hour FROM events WHERE _time >= {{ start }} AND _time < {{ end }}"}
    p = _loaded(tmp_path, random_events(10), engine, bad=bad)
    [r] = p.run(["bad"], start=T0, end=T0 + timedelta(hours=1))
    assert r.status == "failed" and "no_such_column" in r.error


def test_status_gaps_and_backfill(tmp_path: Path, engine: dict):
    events = random_events(3000, seed=9, hours=72)
    p = _loaded(tmp_path, events, engine, grain="1 hour")
    p.run(start=T0 + timedelta(hours=30), end=T0 + timedelta(hours=40))
    [s] = p.status()
    span = (T0, T0 + timedelta(hours=72))
    assert s.span == span
    assert s.covered == [(T0 + timedelta(hours=30), T0 + timedelta(hours=40))]
    assert s.gaps == [(T0, T0 + timedelta(hours=30)), (T0 + timedelta(hours=40), span[1])]
    plan = p.plan_backfill()
    # a declarative mart's day-aligned chunks run together, up to BATCH_ROWS source rows a statement: a gap each
    assert [(a, b) for _, a, b in plan] == [(T0, T0 + timedelta(hours=30)), (T0 + timedelta(hours=40), span[1])]
    seen = []
    res = p.backfill(progress=lambda r, i, n: seen.append((i, n)))
    assert all(r.status == "ok" for r in res) and seen[-1] == (2, 2)
    [s] = p.status()
    assert s.gaps == [] and s.covered == [span]
    assert_frames_equal(mart_frame(p), reference_by_topic(events, *span, 3600))
    assert p.backfill() == []


def test_backfill_batches_stay_within_the_row_budget(tmp_path: Path, engine: dict, monkeypatch):
    """With a budget below a day's rows every day runs alone; below two days' rows, pairs never form: each batch
    holds at most the budget (or one chunk), and the mart equals pandas whatever the batching."""
    import eventmart.marts as marts

    events = random_events(3000, seed=4, hours=96)  # ~750 rows a day
    per_day: dict = {}
    for e in events:
        day = datetime.utcfromtimestamp(e["ts"] / 1000).replace(hour=0, minute=0, second=0, microsecond=0)
        per_day[day] = per_day.get(day, 0) + 1
    monkeypatch.setattr(marts, "BATCH_ROWS", 1600)
    p = _loaded(tmp_path, events, engine, grain="1 hour")
    plan = p.plan_backfill()
    assert len(plan) >= 2
    for _, a, b in plan:
        rows = sum(n for d, n in per_day.items() if a <= d < b)
        assert rows <= 1600 or b - a == timedelta(days=1), (a, b, rows)
    assert [b for _, _, b in plan[:-1]] == [a for _, a, _ in plan[1:]]  # contiguous, nothing left out
    assert all(r.status == "ok" for r in p.backfill())
    [s] = p.status()
    assert_frames_equal(mart_frame(p), reference_by_topic(events, *s.span, 3600))


def test_measure_and_dimension_errors_name_the_key(tmp_path: Path):
    cfg = events_config()
    cfg["marts"]["by_topic"]["measures"]["bad"] = "median(amount)"
    write_project(tmp_path, cfg)
    with pytest.raises(ProjectError, match=r"marts\.by_topic\.measures\.bad: 'median\(amount\)' is not a measure"):
        Project.load(tmp_path).run(start=T0, end=T0 + timedelta(hours=1))
    cfg["marts"]["by_topic"]["measures"]["bad"] = "count_if(nope > 1)"
    write_project(tmp_path, cfg)
    with pytest.raises(ProjectError, match=r"unknown column\(s\) nope"):
        Project.load(tmp_path).run(start=T0, end=T0 + timedelta(hours=1))
    cfg["marts"]["by_topic"]["measures"].pop("bad")
    cfg["marts"]["by_topic"]["dimensions"].append("city")
    write_project(tmp_path, cfg)
    with pytest.raises(ProjectError, match=r"'city' is not a column of source events"):
        Project.load(tmp_path).run(start=T0, end=T0 + timedelta(hours=1))


def test_dimension_expressions_and_changed_definition(tmp_path: Path, engine: dict):
    events = random_events(500, hours=3)
    p = _loaded(tmp_path, events, engine)
    p.run(start=T0, end=T0 + timedelta(hours=3))
    p.close()
    cfg = events_config(engine)
    cfg["marts"]["by_topic"]["dimensions"] = ["dt", {"big": "amount >= 50"}]
    cfg["marts"]["by_topic"]["measures"] = {"events": "count()"}
    write_project(tmp_path, cfg)
    p = Project.load(tmp_path)
    with pytest.raises(ProjectError, match="columns changed"):
        p.run(start=T0, end=T0 + timedelta(hours=3))
    p.reset("by_topic")
    p.run(start=T0, end=T0 + timedelta(hours=3))
    got = dict(p.query("SELECT big, sum(events) FROM by_topic GROUP BY big").rows)
    amounts = [e["amount"] for e in events]
    assert got == {True: sum(a is not None and a >= 50 for a in amounts),
                   False: sum(a is not None and a < 50 for a in amounts),
                   None: sum(a is None for a in amounts)}


def test_a_reader_never_sees_a_half_replaced_window(tmp_path: Path):
    """A second connection reading while a window is replaced sees the old total or the new, nothing else."""
    events = random_events(2000, hours=1)
    p = _loaded(tmp_path, events)
    p.run(start=T0, end=T0 + timedelta(hours=1))
    wh = p.warehouse
    reader = wh.con.cursor()  # its own connection to the same database
    total = lambda: reader.execute("SELECT sum(events) FROM by_topic").fetchone()[0]  # noqa: E731
    n0 = total()
    assert n0 == reference_by_topic(events, T0, T0 + timedelta(hours=1))["events"].sum()
    seen = []
    orig = wh.execute

    def spy(sql, params=None):
        n = orig(sql, params)
        seen.append(total())  # after every statement inside the replacing transaction
        return n

    wh.execute = spy
    p.run(start=T0, end=T0 + timedelta(hours=1))
    wh.execute = orig
    assert len(seen) >= 3 and set(seen) == {n0}


def test_a_reader_never_sees_a_half_replaced_window_on_clickhouse(tmp_path: Path, ch_warehouse: dict):
    """No transactions there: the window is swapped in by REPLACE PARTITION. A reader on its own connection, reading
    after every statement of the replacement, sees the old total or the new one, nothing else."""
    events = random_events(2000, hours=1)
    p = _loaded(tmp_path, events, ch_warehouse)
    p.run(start=T0, end=T0 + timedelta(hours=1))
    wh = p.warehouse
    total = lambda: wh.concurrent_fetch("SELECT sum(events) FROM by_topic").rows[0][0]  # noqa: E731
    n0 = total()
    assert n0 == reference_by_topic(events, T0, T0 + timedelta(hours=1))["events"].sum()
    seen, orig = [], wh.execute

    def spy(sql, params=None):
        n = orig(sql, params)
        seen.append(total())
        return n

    wh.execute = spy
    [r] = p.run(start=T0, end=T0 + timedelta(hours=1))
    wh.execute = orig
    assert r.status == "ok" and len(seen) >= 4 and set(seen) == {n0}
    assert not [t for t in wh.table_names() if t.startswith("_em_stage")]  # the staging table is gone
