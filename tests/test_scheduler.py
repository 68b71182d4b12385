"""The scheduler, driven by a hand-moved clock: catch-up, lookback, policies, retries, crashes, DST.

No test sleeps on the wall clock for the scheduler: `start_up(now)` and `tick(now)` take the time.
"""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from conftest import events_config, write_project
from eventmart import Project
from eventmart.config import Schedule
from eventmart.server.scheduler import Scheduler, next_fire
from helpers import (
    T0,
    assert_frames_equal,
    mart_frame,
    ms,
    random_events,
    reference_by_topic,
    write_events_csv,
)

DAY = timedelta(days=1)


def project(tmp: Path, schedules: dict, days: int = 5, marts: dict | None = None, **cfg_extra) -> tuple[Project, list]:
    cfg = events_config(**(marts or {}))
    cfg["schedules"] = schedules
    cfg.update(cfg_extra)
    events = random_events(2000, seed=9, hours=24 * days)
    write_events_csv(tmp / "data" / "e.csv", events)
    write_project(tmp, cfg)
    p = Project.load(tmp)
    p.ingest("events")
    return p, events


def windows(p: Project, mart: str = "by_topic", trigger_like: str = "schedule:%") -> list[tuple]:
    return [tuple(r) for r in p.warehouse.fetch(
        "SELECT window_start, window_end, status, attempt, trigger FROM _eventmart_runs WHERE mart = {{ m }} "
        "AND trigger LIKE {{ t }} ORDER BY started_at, window_start", {"m": mart, "t": trigger_like}).rows]


def quiet(_: str) -> None:
    pass


def test_catch_up_after_downtime_runs_exactly_the_missing_windows(tmp_path):
    p, events = project(tmp_path, {"nightly": {"cron": "15 3 * * *"}})
    s = Scheduler(p, say=quiet)
    # started on day 3 at 05:00: days 0, 1, 2 have closed; nothing else
    s.start_up(T0 + 3 * DAY + timedelta(hours=5))
    assert [(a, b) for a, b, *_ in windows(p)] == [(T0 + i * DAY, T0 + (i + 1) * DAY) for i in range(3)]
    assert s.next["nightly"] == T0 + 4 * DAY + timedelta(hours=3, minutes=15)
    assert s.tick(T0 + 4 * DAY + timedelta(hours=3)) == []  # not yet
    res = s.tick(T0 + 4 * DAY + timedelta(hours=3, minutes=15))
    assert [(r.start, r.end) for r in res] == [(T0 + 3 * DAY, T0 + 4 * DAY)]
    # the server stops for a while; a new one starts on day 7. The data ends with day 4: day 4 is owed,
    # days 5 and 6 have no events yet and are not run empty
    s2 = Scheduler(p, say=quiet)
    res = s2.start_up(T0 + 7 * DAY + timedelta(minutes=1))
    assert [(r.start, r.end) for r in res] == [(T0 + 4 * DAY, T0 + 5 * DAY)]
    # events for days 5 and 6 arrive (an upstream backlog): the next fire takes both, in order
    more = random_events(300, seed=10, start=T0 + 5 * DAY, hours=48)
    for e in more:
        e["id"] += 50_000
    write_events_csv(tmp_path / "data" / "more.csv", more)
    p.ingest("events")
    res = s2.tick(T0 + 7 * DAY + timedelta(hours=3, minutes=15))
    assert [(r.start, r.end) for r in res] == [(T0 + i * DAY, T0 + (i + 1) * DAY) for i in (5, 6)]
    assert all(r.status == "ok" for r in res)
    # nothing twice, nothing missing: the mart equals a plain computation over everything
    assert_frames_equal(mart_frame(p), reference_by_topic(events + more, T0, T0 + 7 * DAY))
    assert [g for s in p.status() for g in s.gaps] == []
    p.close()


def test_late_events_reopen_their_window_and_lookback_reruns_the_last(tmp_path):
    p, events = project(tmp_path, {"nightly": {"cron": "15 3 * * *", "lookback": 1}})
    s = Scheduler(p, say=quiet)
    s.start_up(T0 + 2 * DAY + timedelta(hours=4))
    # a late event for day 0 arrives: its window is re-opened by what arrived (a gap until it is run again)
    late = {"id": 99_999, "user_id": 1, "action": "like", "topic": "late", "amount": 1.0,
            "ts": ms(T0 + timedelta(hours=23, minutes=59))}
    write_events_csv(tmp_path / "data" / "late.csv", [late])
    p.ingest("events")
    assert ("stale", T0 + DAY) in [(w[2], w[1]) for w in windows(p, trigger_like="%")]
    res = s.tick(T0 + 3 * DAY + timedelta(hours=3, minutes=15))
    # the re-opened day, the new day, and day 1 again for the lookback
    assert [(r.start, r.end) for r in res] == [(T0, T0 + DAY), (T0 + DAY, T0 + 2 * DAY), (T0 + 2 * DAY, T0 + 3 * DAY)]
    assert [w[4] for w in windows(p)[-3:]] == ["schedule:nightly", "schedule:nightly:lookback", "schedule:nightly"]
    assert_frames_equal(mart_frame(p), reference_by_topic(events + [late], T0, T0 + 3 * DAY))
    p.close()


@pytest.mark.parametrize("policy, want", [
    ("latest", [(4, 5)]),
    ("coalesce", [(0, 5)]),
    ("all", [(0, 1), (1, 2), (2, 3), (3, 4), (4, 5)]),
])
def test_catchup_policies(tmp_path, policy, want):
    p, events = project(tmp_path, {"j": {"cron": "0 * * * *", "catchup": policy}})
    res = Scheduler(p, say=quiet).start_up(T0 + 5 * DAY + timedelta(minutes=30))
    assert [(r.start, r.end) for r in res] == [(T0 + a * DAY, T0 + b * DAY) for a, b in want]
    if policy != "latest":
        assert_frames_equal(mart_frame(p), reference_by_topic(events, T0, T0 + 5 * DAY))
    p.close()


GATED = {"gated": {"from": "events", "grain": "1 day", "sql":
                   "select date_trunc('day', _time) as dt, count(*) as n from events, gate "
                   "where _time >= {{ start }} and _time < {{ end }} group by 1"}}


def test_a_failed_run_retries_after_the_delay_then_succeeds(tmp_path):
    p, _ = project(tmp_path, {"g": {"cron": "15 3 * * *", "marts": ["gated"], "retry_delay": "1 minute"}},
                   days=1, marts=GATED)
    s = Scheduler(p, say=quiet)
    now = T0 + DAY + timedelta(hours=3, minutes=15)
    first = s.start_up(now)
    assert [r.status for r in first] == ["failed"] and "gate" in first[0].error
    p.warehouse.execute("CREATE TABLE gate AS SELECT 1 AS x")  # the cause goes away
    assert s.tick(now + timedelta(seconds=59)) == []  # the delay is honoured
    again = s.tick(now + timedelta(seconds=60))
    assert [(r.status, r.attempt) for r in again] == [("ok", 2)]
    assert [w[2:4] for w in windows(p, "gated")] == [("failed", 1), ("ok", 2)]
    assert p.status()[1].gaps == []
    p.close()


def test_retries_exhausted_stay_failed_and_other_jobs_still_run(tmp_path):
    p, events = project(tmp_path, {"g": {"cron": "15 3 * * *", "marts": ["gated"], "retries": 2},
                                   "healthy": {"cron": "15 3 * * *", "marts": ["by_topic"]}},
                        days=1, marts=GATED)
    s = Scheduler(p, say=quiet)
    now = T0 + DAY + timedelta(hours=3, minutes=15)
    s.start_up(now)
    for k in (1, 2, 3):
        s.tick(now + timedelta(minutes=k))
    assert [w[2:4] for w in windows(p, "gated")] == [("failed", 1), ("failed", 2), ("failed", 3)]
    assert s.retries == []  # given up
    assert [w[2] for w in windows(p, "by_topic")] == ["ok"]
    assert_frames_equal(mart_frame(p), reference_by_topic(events, T0, T0 + DAY))
    failed = p.runs(failed=True)
    assert len(failed.rows) == 3 and {r[1] for r in failed.rows} == {"gated"}
    assert len(p.runs(job="healthy").rows) == 1
    p.close()


SLOW_SQL = {
    "duckdb": "select {{ start }}::timestamp as dt, (select sum(hash(i)) from range(20000000000) t(i)) as n "
              "from events where _time >= {{ start }} and _time < {{ end }} limit 1",
    "postgres": "select {{ start }}::timestamp as dt, count(*) as n from events, (select pg_sleep(120)) s "
                "where _time >= {{ start }} and _time < {{ end }}",
}


@pytest.mark.parametrize("engine", ["duckdb", "postgres"])
def test_a_run_killed_midway_leaves_no_partial_window_and_shows_failed(tmp_path, engine, request):
    wh = {"type": "postgres", "url": request.getfixturevalue("pg_url")} if engine == "postgres" else None
    cfg = events_config(wh, slow={"from": "events", "grain": "1 day", "sql": SLOW_SQL[engine]})
    write_events_csv(tmp_path / "data" / "e.csv", random_events(500, seed=2, hours=24))
    write_project(tmp_path, cfg)
    with Project.load(tmp_path) as p:
        p.ingest("events")
        p.run(["by_topic"], start=T0, end=T0 + DAY)
        before = mart_frame(p)
    proc = subprocess.Popen([sys.executable, "-m", "eventmart", "run", "by_topic", "slow", "--start", "2024-03-10",
                             "--end", "2024-03-11", "-p", str(tmp_path)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    if engine == "postgres":  # watch the ledger until the slow run is under way
        import psycopg

        deadline = time.monotonic() + 60
        with psycopg.connect(wh["url"], autocommit=True) as c:
            while time.monotonic() < deadline and not c.execute(
                    "SELECT count(*) FROM _eventmart_runs WHERE mart = 'slow' AND status = 'running'").fetchone()[0]:
                time.sleep(0.1)
    else:  # DuckDB admits no second process while the run holds the file: by_topic takes < 1 s, slow minutes
        time.sleep(6)
    assert proc.poll() is None, "the slow run ended before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    with Project.load(tmp_path) as q:
        row = q.runs(mart="slow").rows[0]
        assert row[4] == "failed" and row[9].startswith("interrupted"), row
        assert q.query("SELECT count(*) FROM information_schema.tables WHERE table_name = 'slow' "
                       "AND table_schema = current_schema()").rows[0][0] == 0 or \
            q.query("SELECT count(*) FROM slow").rows[0][0] == 0
        assert_frames_equal(mart_frame(q), before)  # by_topic was re-run whole or not at all
        assert [s.gaps for s in q.status() if s.mart == "slow"][0]  # still a gap to fill


def test_day_windows_in_a_business_time_zone_follow_dst(tmp_path):
    tz_mart = {"daily_local": {"from": "events", "grain": "1 day", "timezone": "Europe/Berlin",
                               "dimensions": ["dt"], "measures": {"events": "count()"}}}
    cfg = events_config(**tz_mart)
    cfg["schedules"] = {"nightly": {"cron": "15 3 * * *", "timezone": "Europe/Berlin", "marts": ["daily_local"]}}
    start = datetime(2024, 3, 29)  # Berlin switches to summer time on 2024-03-31 at 02:00 local (01:00 UTC)
    events = random_events(3000, seed=4, start=start, hours=24 * 4)
    # events right at local midnights, either side
    for i, t in enumerate([datetime(2024, 3, 30, 23, 0), datetime(2024, 3, 30, 22, 59, 59, 999000),
                           datetime(2024, 3, 31, 22, 0), datetime(2024, 3, 31, 21, 59, 59, 999000)]):
        events.append({"id": 10**6 + i, "user_id": 1, "action": "view", "topic": "edge", "amount": None, "ts": ms(t)})
    write_events_csv(tmp_path / "data" / "e.csv", events)
    write_project(tmp_path, cfg)
    p = Project.load(tmp_path)
    p.ingest("events")
    s = Scheduler(p, say=quiet)
    # the cron is read in Berlin time: 03:15 local is 02:15 UTC before the change, 01:15 UTC after
    job = Schedule(cron="15 3 * * *", timezone="Europe/Berlin")
    assert next_fire(job, datetime(2024, 3, 30, 3, 0)) == datetime(2024, 3, 31, 1, 15)
    assert next_fire(job, datetime(2024, 3, 29, 3, 0)) == datetime(2024, 3, 30, 2, 15)
    res = s.start_up(datetime(2024, 4, 2, 1, 15))
    spans = [(r.start, r.end, (r.end - r.start).total_seconds() / 3600) for r in res]
    assert spans[:4] == [
        (datetime(2024, 3, 28, 23), datetime(2024, 3, 29, 23), 24),
        (datetime(2024, 3, 29, 23), datetime(2024, 3, 30, 23), 24),
        (datetime(2024, 3, 30, 23), datetime(2024, 3, 31, 22), 23),  # the short day
        (datetime(2024, 3, 31, 22), datetime(2024, 4, 1, 22), 24),
    ]
    got = {r[0]: r[1] for r in p.query("SELECT dt, events FROM daily_local ORDER BY 1").rows}
    df = pd.DataFrame(events)
    local = pd.to_datetime(df.ts, unit="ms").dt.tz_localize("UTC").dt.tz_convert("Europe/Berlin").dt.date
    want = local.value_counts().sort_index()
    assert got == {d: int(n) for d, n in want.items() if d < date(2024, 4, 2)}
    # a manual run takes local dates, and refuses a window that is not a local midnight
    p.run(["daily_local"], start="2024-03-31", end="2024-04-01")
    manual = [r for r in p.runs(mart="daily_local").rows if r[8] == "run"]
    assert [r[2:4] for r in manual] == [(datetime(2024, 3, 30, 23), datetime(2024, 3, 31, 22))]
    from eventmart.errors import UserError

    with pytest.raises(UserError, match="not a local midnight in Europe/Berlin"):
        p.runner.check_window("daily_local", datetime(2024, 3, 31), datetime(2024, 4, 1))
    p.close()


def test_schedule_errors_name_the_key(tmp_path):
    from eventmart.errors import ProjectError

    for bad, needle in (({"cron": "every day"}, "schedules.j.cron: 'every day' is not a five-field cron"),
                        ({"cron": "0 3 * * *", "timezone": "Mars/Base"}, "unknown time zone 'Mars/Base'"),
                        ({"cron": "0 3 * * *", "marts": ["nope"]}, "schedules.j.marts: 'nope' is not a declared mart"),
                        ({"cron": "0 3 * * *", "retry_delay": "soon"}, "'soon' is not a duration")):
        cfg = events_config()
        cfg["schedules"] = {"j": bad}
        write_project(tmp_path, cfg)
        with pytest.raises(ProjectError, match=r"eventmart.yml:\d+: ") as e:
            Project.load(tmp_path)
        assert needle in str(e.value)


def test_start_up_never_runs_windows_outside_the_data(tmp_path):
    """An hour of data (like the Zen demo), backfilled: start-up long after runs nothing — no empty window before
    the first event or after the last. Without any coverage it runs the one day that holds the data."""
    cfg = events_config()
    cfg["schedules"] = {"nightly": {"cron": "15 3 * * *"}}
    events = random_events(300, seed=5, start=T0 + timedelta(hours=18, minutes=28), hours=1)
    events = [e for e in events if e["ts"] < ms(T0 + timedelta(hours=19))]
    write_events_csv(tmp_path / "data" / "e.csv", events)
    write_project(tmp_path, cfg)
    with Project.load(tmp_path) as p:
        p.ingest("events")
        fresh = Scheduler(p, say=quiet).start_up(T0 + 400 * DAY)
        assert [(r.start, r.end, r.rows > 0) for r in fresh] == [(T0, T0 + DAY, True)]
        p.reset("by_topic")
        p.backfill()  # the gap-sized windows [18:28, 19:00)
        assert Scheduler(p, say=quiet).start_up(T0 + 400 * DAY) == []
        assert p.runner.plan_backfill("by_topic", None, None) == []


def test_run_history_order_is_exact_within_a_second(tmp_path):
    p, _ = project(tmp_path, {}, days=1)
    with p:
        order = []
        for i in (5, 1, 3, 0, 4, 2):  # out of time order, all within a second or two
            s = T0 + timedelta(hours=i)
            p.run(start=s, end=s + timedelta(hours=1))
            order.append(s)
        got = [r[2] for r in p.runs(limit=6).rows]
        assert got == order[::-1]
        assert p.status()[0].last_run[2] == order[-1]
        started = [r[0] for r in p.runs(limit=6).rows]
        assert started == sorted(started, reverse=True) and len(set(started)) == 6  # microseconds kept
