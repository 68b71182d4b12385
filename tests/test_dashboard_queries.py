"""Dashboard query building: filters pushed down as bound values, grain choice, caching, start-up checks.

Results are compared with pandas computed straight from the raw events (not from the marts).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest

from conftest import events_config, write_project
from eventmart import Project
from eventmart.dashboards.query import DashboardQueries, State, choose_grain
from eventmart.errors import ProjectError
from eventmart.server.web import create_server
from helpers import T0, TOPICS, random_events, write_events_csv

INJECTION = "x' OR '1'='1"


def dashboard(**charts) -> dict:
    base = {
        "trend": {"type": "area", "mart": "by_topic", "measure": "events", "color": "topic"},
        "share": {"type": "pie", "mart": "by_topic", "measure": "events", "dimension": "topic"},
        "steps": {"type": "funnel", "mart": "by_topic", "measure": "events", "dimension": "action",
                  "stages": ["view", "like", "share"]},
        "total": {"type": "kpi", "mart": "by_topic", "measure": "sum(events)"},
        "users": {"type": "kpi", "mart": "by_topic", "measure": "users"},
        "grid": {"type": "heatmap", "mart": "by_topic", "measure": "events", "x": "topic", "y": "action"},
        "top": {"type": "table", "mart": "by_topic", "measure": "events", "columns": ["topic"]},
    }
    base.update(charts)
    return {"d": {"title": "T", "filters": ["time", "topic", "action"], "charts": base}}


def make(tmp: Path, warehouse: dict | None = None, hours: int = 24, mart: dict | None = None,
         **charts) -> tuple[Project, pd.DataFrame]:
    cfg = events_config(warehouse)
    cfg["marts"]["by_topic"].update(mart or {})
    cfg["dashboards"] = dashboard(**charts)
    events = random_events(3000, seed=5, hours=hours)
    write_events_csv(tmp / "data" / "e.csv", events)
    write_project(tmp, cfg)
    p = Project.load(tmp)
    p.ingest("events")
    p.run(start=T0, end=T0 + timedelta(hours=hours))
    df = pd.DataFrame(events)
    df["t"] = pd.to_datetime(df["ts"], unit="ms")
    return p, df


def queries(p: Project) -> DashboardQueries:
    return DashboardQueries("d", p.config.dashboards["d"], p.config, p.warehouse)


@pytest.fixture
def proj(engine, tmp_path):
    p, df = make(tmp_path, engine)
    yield p, df
    p.close()


def test_state_round_trips_through_the_url():
    st = State(datetime(2024, 3, 10, 1, 2), datetime(2024, 3, 10, 5, 0),
               {"topic": ["Кино, сериалы", INJECTION, 'Сказать "да"'], "action": ["like"]})
    back = State.from_query(st.to_query(), ["topic", "action"])
    assert back == st
    # unknown keys are ignored, unreadable times fall back to the default range
    assert State.from_query("?from=yesterday&evil=1&topic=a", ["topic"]) == State(filters={"topic": ["a"]})


@pytest.mark.parametrize("minutes, series, want", [
    (33, 26, 60),            # the seed's half hour: per minute
    (24 * 60, 26, 3600),     # a day of 26 topics: per hour
    (24 * 60, 1, 60),        # a day of one series: 1,440 minutes fit
    (30 * 24 * 60, 26, 86400),
    (30 * 24 * 60, 1, 3600),
])
def test_grain_keeps_points_under_2000(minutes, series, want):
    s = datetime(2024, 1, 1)
    g = choose_grain(s, s + timedelta(minutes=minutes), 60, series)
    assert g == want
    assert minutes * 60 / g * series <= 2000


def test_filters_are_values_not_sql(proj):
    p, df = proj
    q = queries(p)
    st = State(filters={"topic": [INJECTION]})
    window = q.window(st)
    _, res = q.run("share", st, window)
    want = df[df.topic == INJECTION].shape[0]
    assert res.rows == [(INJECTION, want)]
    _, total = q.run("total", st, window)
    assert total.rows[0][0] == want < len(df)


def test_charts_match_pandas_on_a_filtered_half_open_range(proj):
    p, df = proj
    q = queries(p)
    start, end = T0 + timedelta(hours=3), T0 + timedelta(hours=7, minutes=30)
    st = State(start, end, {"action": ["view", "like"], "topic": TOPICS[:3]})
    window = q.window(st)
    sel = df[(df.t >= start) & (df.t < end) & df.action.isin(["view", "like"]) & df.topic.isin(TOPICS[:3])]
    _, pie = q.run("share", st, window)
    assert dict(pie.rows) == sel.groupby("topic").size().to_dict()
    _, grid = q.run("grid", st, window)
    assert {(x, y): v for x, y, v in grid.rows} == sel.groupby(["topic", "action"]).size().to_dict()
    cq, trend = q.run("trend", st, window)
    # 4.5 hours x 3 topics at minute grain = 810 points: the mart's own grain
    assert cq.grain == 60
    ref = sel.assign(b=sel.t.dt.floor("min")).groupby(["b", "topic"]).size()
    assert {(b, s): v for b, s, v in trend.rows} == {(b.to_pydatetime(), s): v for (b, s), v in ref.items()}
    # the funnel ignores a filter on its own dimension: its stages are the point
    _, steps = q.run("steps", st, window)
    by_action = df[(df.t >= start) & (df.t < end) & df.topic.isin(TOPICS[:3])].groupby("action").size()
    assert dict(steps.rows) == by_action.to_dict()


def test_coarser_grain_sums_additive_counts(proj):
    p, df = proj
    q = queries(p)
    st = State()
    window = q.window(st)
    cq, trend = q.run("trend", st, window)
    assert cq.grain == 300  # a day of 6 topics: 8,640 points per minute, 1,728 per 5 minutes
    ref = df.assign(b=df.t.dt.floor("5min")).groupby(["b", "topic"]).size()
    assert {(b, s): v for b, s, v in trend.rows} == {(b.to_pydatetime(), s): v for (b, s), v in ref.items()}


DISTINCT = {
    "users": {"type": "kpi", "mart": "by_topic", "measure": "users"},
    "per_min": {"type": "kpi", "mart": "by_topic", "measure": "avg(users)"},
    "likers_per_min": {"type": "kpi", "mart": "by_topic", "measure": "avg(users) filter (where action = 'like')"},
    "like_rate": {"type": "kpi", "mart": "by_topic",
                  "measure": "100.0 * avg(users) filter (where action = 'like') / avg(users)"},
    "users_by_topic": {"type": "line", "mart": "by_topic", "measure": "users", "color": "topic"},
    "user_steps": {"type": "funnel", "mart": "by_topic", "measure": "users", "dimension": "action",
                   "stages": ["view", "like", "share"]},
    "users_pie": {"type": "bar", "mart": "by_topic", "measure": "users", "dimension": "topic"},
}


def test_distinct_counts_are_never_rolled_up_wrongly(tmp_path, engine):
    """Every distinct-count chart vs pandas on the raw events, for several filter states: a user counts once per
    group however many topics/actions they touched (the mart keeps users per minute x topic x action)."""
    p, df = make(tmp_path, engine, **DISTINCT)
    check_distinct_charts(queries(p), df)
    p.close()


def test_clickhouse_kept_states_answer_distinct_counts_from_the_mart_alone(tmp_path, ch_warehouse):
    """`keep_states: true`: each distinct count's uniqExact state is kept beside it, so every coarser chart merges
    states — the same numbers as pandas on the raw events, with the raw table gone."""
    p, df = make(tmp_path, ch_warehouse, mart={"keep_states": True,
                                                "measures": {"events": "count()", "users": "count_distinct(user_id)",
                                                             "approx_users": "approx_count_distinct(user_id)"}},
                 **DISTINCT, approx={"type": "kpi", "mart": "by_topic", "measure": "approx_users"})
    assert "users__state" in p.warehouse.table_columns("by_topic")
    p.warehouse.drop_table("events")  # nothing can be recounted now
    q = queries(p)
    seen = []
    orig = q.layer.sql
    q.layer.sql = lambda query: seen.append(c := orig(query)) or c  # noqa: E731
    check_distinct_charts(q, df)
    assert seen and not any(c.raw for c in seen)
    assert any("uniqExactMerge" in c.sql for c in seen)
    # the estimate: a sketch, labelled as one, close to the truth
    st = State()
    got = q.run("approx", st, q.window(st))[1].rows[0][0]
    assert abs(got - df.user_id.nunique()) <= 0.05 * df.user_id.nunique()
    assert q.layer.approximate(q.metrics["approx"]) and not q.layer.approximate(q.metrics["users"])
    server = create_server(p)
    with server.test_client() as c:
        layout = c.get("/d/d/_dash-layout").get_data(as_text=True)
    assert layout.count("approximate") == 2  # the label and its tooltip, on the estimate's chart only
    p.close()


@pytest.mark.parametrize("engine", ["duckdb", "postgres"], indirect=True)
def test_kept_states_and_estimates_are_refused_where_the_engine_has_none(tmp_path, engine):
    cfg = events_config(engine)
    cfg["marts"]["by_topic"]["keep_states"] = True
    write_events_csv(tmp_path / "data" / "e.csv", random_events(10))
    write_project(tmp_path, cfg)
    with Project.load(tmp_path) as p:
        p.ingest("events")
        with pytest.raises(ProjectError, match=r"marts\.by_topic\.keep_states: this warehouse keeps no mergeable"):
            p.run(start=T0, end=T0 + timedelta(hours=1))
    if engine["type"] == "postgres":
        cfg["marts"]["by_topic"].pop("keep_states")
        cfg["marts"]["by_topic"]["measures"]["approx"] = "approx_count_distinct(user_id)"
        write_project(tmp_path, cfg)
        with Project.load(tmp_path) as p, pytest.raises(ProjectError, match="no approximate distinct count"):
            p.run(start=T0, end=T0 + timedelta(hours=1))


def check_distinct_charts(q: DashboardQueries, df: pd.DataFrame) -> None:
    states = [State(), State(T0 + timedelta(hours=2), T0 + timedelta(hours=9, minutes=17)),
              State(filters={"topic": TOPICS[:2]}),
              State(T0 + timedelta(hours=1), T0 + timedelta(hours=3), {"action": ["like"], "topic": [TOPICS[0]]})]
    for st in states:
        window = q.window(st)
        sel = df[(df.t >= window[0].replace(second=0)) & (df.t < window[1])]
        for d, vals in st.filters.items():
            sel = sel[sel[d].isin(vals)]
        minute = sel.assign(b=sel.t.dt.floor("min"))
        _, r = q.run("users", st, window)
        assert r.rows[0][0] == sel.user_id.nunique()
        per_min = minute.groupby("b").user_id.nunique()
        _, r = q.run("per_min", st, window)
        assert float(r.rows[0][0]) == pytest.approx(per_min.mean())
        likers = minute[minute.action == "like"].groupby("b").user_id.nunique()
        _, r = q.run("likers_per_min", st, window)
        assert (r.rows[0][0] is None and likers.empty) or float(r.rows[0][0]) == pytest.approx(likers.mean())
        _, r = q.run("like_rate", st, window)
        if not likers.empty:
            assert float(r.rows[0][0]) == pytest.approx(100 * likers.mean() / per_min.mean())
        cq, r = q.run("users_by_topic", st, window)
        g = f"{cq.grain}s"
        ref = minute.assign(b=sel.t.dt.floor(g)).groupby(["b", "topic"]).user_id.nunique()
        assert {(b, s): v for b, s, v in r.rows} == {(b.to_pydatetime(), s): v for (b, s), v in ref.items()}
        _, r = q.run("user_steps", st, window)
        unfiltered = df[(df.t >= window[0].replace(second=0)) & (df.t < window[1])]
        if "topic" in st.filters:
            unfiltered = unfiltered[unfiltered.topic.isin(st.filters["topic"])]
        assert dict(r.rows) == unfiltered.groupby("action").user_id.nunique().to_dict()
        _, r = q.run("users_pie", st, window)
        assert dict(r.rows) == sel.groupby("topic").user_id.nunique().to_dict()


def test_pinned_filters_read_the_mart_and_sql_marts_refuse_what_they_cannot_answer(tmp_path):
    from eventmart.measures import MeasureLayer, Query

    p, df = make(tmp_path, hours=2)
    layer = MeasureLayer(p.config, p.warehouse)
    m = layer.metric("by_topic", "users", "x")
    # every dimension pinned to one value at the mart's grain: one mart row per bucket, no raw scan
    q = Query("by_topic", {"v": m}, T0, T0 + timedelta(hours=2), grain=60,
              filters={"topic": [TOPICS[0]], "action": ["like"]})
    assert layer.sql(q)[2] is False
    q.filters = {"topic": [TOPICS[0]]}
    assert layer.sql(q)[2] is True
    p.close()
    cfg = events_config()
    cfg["marts"]["daily_sql"] = {"from": "events", "grain": "1 day", "sql": (
        "select date_trunc('day', _time) as dt, topic, count(distinct user_id) as users, count(*) as n "
        "from events where _time >= {{ start }} and _time < {{ end }} group by 1, 2"),
        "rollup": {"users": "none"}}
    cfg["dashboards"] = {"d": {"title": "T", "charts": {
        "ok": {"type": "line", "mart": "daily_sql", "measure": "users", "color": "topic"},
        "ok2": {"type": "bar", "mart": "daily_sql", "measure": "avg(users)", "dimension": "topic"},
        "n": {"type": "kpi", "mart": "daily_sql", "measure": "n"},
        "bad": {"type": "kpi", "mart": "daily_sql", "measure": "users"}}}}
    write_project(tmp_path / "s", cfg)
    write_events_csv(tmp_path / "s" / "data" / "e.csv", random_events(300, seed=2, hours=48))
    with Project.load(tmp_path / "s") as p2:
        p2.ingest("events")
        p2.backfill()
        with pytest.raises(ProjectError) as e:
            create_server(p2)
        msg = str(e.value)
        assert "dashboards.d.charts.bad.measure" in msg and "cannot be answered correctly from SQL mart" in msg
        assert "dimension(s) topic" in msg
        del p2.config.dashboards["d"].charts["bad"]
        q = DashboardQueries("d", p2.config.dashboards["d"], p2.config, p2.warehouse)
        q.check()
        # a SQL mart's distinct count is drawn at its own grain (never summed into weeks), averaged per day
        st = State()
        cq, r = q.run("ok", st, q.window(st))
        assert cq.grain == 86400 and len(r.rows) == 2 * 6
        _, r = q.run("ok2", st, q.window(st))
        assert len(r.rows) == 6


def test_kpi_previous_period_and_cache_follow_new_runs(tmp_path):
    p, df = make(tmp_path, hours=4)
    q = queries(p)
    st = State(T0 + timedelta(hours=2), T0 + timedelta(hours=4))
    window = q.window(st)
    prev = q.compared("total", State(st.start, st.end, compare="previous"), window, None).rows[0][0]
    assert prev == df[(df.t >= T0) & (df.t < T0 + timedelta(hours=2))].shape[0]
    v1 = q.version()
    _, before = q.run("total", st, window)
    # the mart loses a window (reset + partial rebuild): a new run must not be hidden by the cache
    p.reset("by_topic")
    p.run(start=T0 + timedelta(hours=2), end=T0 + timedelta(hours=3))
    assert q.version() != v1
    _, after = q.run("total", st, window)
    assert after.rows[0][0] == df[(df.t >= T0 + timedelta(hours=2)) & (df.t < T0 + timedelta(hours=3))].shape[0]
    assert after.rows[0][0] < before.rows[0][0]
    p.close()


@pytest.mark.parametrize("chart, key, needle", [
    ({"type": "pie", "mart": "by_topic", "measure": "nope", "dimension": "topic"}, "measure", "unknown column(s) nope"),
    ({"type": "kpi", "mart": "by_topic", "measure": "sum(users) + users"}, "measure", "mixes measures by name"),
    ({"type": "kpi", "mart": "by_topic", "measure": "avg(topic)"}, "measure", "one measure column"),
    ({"type": "bar", "mart": "by_topic", "measure": "users", "dimension": "events"}, "dimension", "not a dimension"),
    ({"type": "pie", "mart": "by_topic", "measure": "events", "dimension": "colour"}, "dimension", "'colour' is not a column"),
    ({"type": "funnel", "mart": "by_topic", "measure": "events", "dimension": "action",
      "stages": ["view", "purchase"]}, "stages", "purchase never occur"),
    ({"type": "kpi", "mart": "by_topic", "measure": "events + (select 1)"}, "measure", "not a query"),
])
def test_bad_dashboards_fail_at_start_naming_the_key(tmp_path, chart, key, needle):
    # a measure expression is checked when the file loads; what needs the warehouse, when serve starts
    with pytest.raises(ProjectError) as e:
        p, _ = make(tmp_path, hours=1, bad=chart)
        try:
            create_server(p)
        finally:
            p.close()
    msg = str(e.value)
    assert f"dashboards.d.charts.bad.{key}" in msg and needle in msg
    assert msg.startswith(str(tmp_path / "eventmart.yml") + ":") and "\n" not in msg


def test_unknown_mart_is_a_project_file_error(tmp_path):
    cfg = events_config()
    cfg["dashboards"] = {"d": {"title": "T", "charts": {"c": {"type": "kpi", "mart": "nope", "measure": "x"}}}}
    write_project(tmp_path, cfg)
    with pytest.raises(ProjectError, match=r"eventmart.yml:\d+: dashboards.d.charts.c.mart: 'nope' is not a declared mart"):
        Project.load(tmp_path)


def test_serve_refuses_a_bad_dashboard_with_exit_2(tmp_path):
    import subprocess
    import sys

    p, _ = make(tmp_path, hours=1, bad={"type": "bar", "mart": "by_topic", "measure": "events", "dimension": "zzz"})
    p.close()
    r = subprocess.run([sys.executable, "-m", "eventmart", "serve", "-p", str(tmp_path), "--port", "0"],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2
    assert "dashboards.d.charts.bad.dimension" in r.stderr and len(r.stderr.strip().splitlines()) == 1
