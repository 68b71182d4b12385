"""Every chart of the bundled example dashboards against pandas computed from the *raw events*, never from the
marts the charts read, for several filter states — on DuckDB and on ClickHouse (chDB);
tests/test_dashboard_queries.py covers PostgreSQL."""

from __future__ import annotations

import time
from datetime import datetime

import pandas as pd
import pytest
import yaml

from eventmart import Project
from eventmart.dashboards.query import DashboardQueries, State
from eventmart.examples import HERE, generate_feed, generate_zen, init_example


def _rows(res) -> dict:
    return {tuple(r[:-1]) if len(r) > 2 else r[0]: r[-1] for r in res.rows}


def _close(got: dict, want: dict) -> None:
    assert set(got) == set(want), (sorted(set(got) ^ set(want))[:5])
    for k, v in want.items():
        assert float(got[k]) == pytest.approx(float(v)), k


def on_engine(d, request, name: str) -> None:
    """Point the example project in ``d`` at the engine of the fixture's parameter."""
    if request.param == "duckdb":
        return
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["warehouse"] = {"type": "clickhouse", "path": str(request.getfixturevalue("ch_folder")),
                        "database": f"{name}_{int(time.time() * 1e6) % 10**12}"}
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))


@pytest.fixture(scope="module", params=["duckdb", "clickhouse"])
def zen(tmp_path_factory, request):
    d = tmp_path_factory.mktemp("zen")
    init_example("zen", d)
    on_engine(d, request, "zen")
    generate_zen(d)
    with Project.load(d) as p:
        p.ingest("log_raw")
        p.backfill()
    raw = pd.read_csv(d / "data" / "log_raw.csv")
    raw["t"] = pd.to_datetime(raw.ts, unit="ms")
    raw["minute"] = raw.t.dt.floor("min")
    return d, raw


ZEN_STATES = [
    State(),
    State(filters={"age_segment": ["18-25"]}),
    State(datetime(2019, 9, 24, 18, 30), datetime(2019, 9, 24, 18, 57),
          {"item_topic": ["Наука", "Отношения", "Интересные факты"]}),
    State(filters={"source_topic": ["Семья"], "age_segment": ["26-30", "31-35"]}),
]


@pytest.mark.parametrize("st", ZEN_STATES, ids=["all", "age", "range+topics", "source+ages"])
def test_zen_dashboard_vs_raw_events(zen, st):
    d, raw = zen
    with Project.load(d) as p:
        q = DashboardQueries("zen", p.config.dashboards["zen"], p.config, p.warehouse)
        q.check()
        window = q.window(st)
        sel = raw[(raw.t >= window[0]) & (raw.t < window[1])]
        for dim, vals in st.filters.items():
            sel = sel[sel[dim].isin(vals)]
        run = lambda c: q.run(c, st, window)  # noqa: E731
        assert run("events")[1].rows[0][0] == len(sel)
        per_minute = sel.groupby("minute").user_id.nunique()
        assert float(run("users")[1].rows[0][0]) == pytest.approx(per_minute.mean())
        by_event = {e: sel[sel.event == e].groupby("minute").user_id.nunique().mean() for e in ("show", "click", "view")}
        assert float(run("ctr")[1].rows[0][0]) == pytest.approx(100 * by_event["click"] / by_event["show"])
        assert float(run("view_rate")[1].rows[0][0]) == pytest.approx(100 * by_event["view"] / by_event["show"])
        cq, hist = run("history")
        ref = sel.groupby([sel.t.dt.floor(f"{cq.grain}s"), "item_topic"]).size()
        assert _rows(hist) == {(b.to_pydatetime(), s): v for (b, s), v in ref.items()}
        assert _rows(run("sources")[1]) == sel.groupby("source_topic").size().to_dict()
        _close(_rows(run("funnel")[1]), sel.groupby("event").user_id.nunique().to_dict())
        assert _rows(run("topics")[1]) == sel.groupby(["source_topic", "item_topic"]).size().to_dict()
        # the number the old roll-up got wrong (34: a mean over topic x age cells): thousands of users a minute
        if not st.filters and st.start is None:
            assert per_minute.mean() > 1000


@pytest.fixture(scope="module", params=["duckdb", "clickhouse"])
def feed(tmp_path_factory, request):
    d = tmp_path_factory.mktemp("feed")
    cfg = yaml.safe_load((HERE / "feed" / "eventmart.yml").read_text())
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    on_engine(d, request, "feed")
    generate_feed(d, scale=0.05, days=10)
    with Project.load(d) as p:
        for s in p.config.sources:
            p.ingest(s)
        p.backfill(["daily_metrics", "feed_daily_by"])
    f = pd.read_parquet(d / "data" / "feed_actions.parquet").drop_duplicates(["user_id", "post_id", "action", "time"])
    m = pd.read_parquet(d / "data" / "message_actions.parquet").drop_duplicates(["user_id", "receiver_id", "time"])
    f["day"], m["day"] = f.time.dt.floor("D"), m.time.dt.floor("D")
    f["gender"] = f.gender.map({0: "female", 1: "male"}).fillna("unknown")
    f["age_group"] = pd.cut(f.age, [-1, 17, 24, 34, 44, 54, 1000],
                            labels=["<18", "18-24", "25-34", "35-44", "45-54", "55+"]).astype(str)
    return d, f, m


FEED_STATES = [
    State(),
    State(filters={"os": ["iOS"]}),
    State(datetime(2024, 3, 3), datetime(2024, 3, 8), {"gender": ["female"], "age_group": ["18-24", "25-34"]}),
]


@pytest.mark.parametrize("st", FEED_STATES, ids=["all", "ios", "range+gender+age"])
def test_feed_dashboard_vs_raw_events(feed, st):
    d, f, m = feed
    with Project.load(d) as p:
        q = DashboardQueries("feed", p.config.dashboards["feed"], p.config, p.warehouse)
        q.check()
        window = q.window(st)
        sel = f[(f.time >= window[0]) & (f.time < window[1])]
        for dim, vals in st.filters.items():
            sel = sel[sel[dim].isin(vals)]
        run = lambda c: q.run(c, st, window)  # noqa: E731
        daily_users = sel.groupby("day").user_id.nunique()
        assert float(run("dau")[1].rows[0][0]) == pytest.approx(daily_users.mean())
        views, likes = (sel.action == "view").sum(), (sel.action == "like").sum()
        assert run("views")[1].rows[0][0] == views and run("likes")[1].rows[0][0] == likes
        assert float(run("ctr")[1].rows[0][0]) == pytest.approx(100 * likes / views)
        dau_os = sel.groupby(["day", "os"]).user_id.nunique()
        assert _rows(run("dau_by_os")[1]) == {(b.to_pydatetime(), s): v for (b, s), v in dau_os.items()}
        va = sel[sel.action == "view"].groupby(["day", "age_group"]).size()
        assert _rows(run("views_by_age")[1]) == {(b.to_pydatetime(), s): v for (b, s), v in va.items()}
        assert _rows(run("by_gender")[1]) == sel[sel.action == "like"].groupby("gender").size().to_dict()
        # the messenger charts read a mart without os/gender/age: those filters do not apply to them
        md = m[(m.time >= window[0]) & (m.time < window[1])]
        assert _rows(run("messenger")[1]) == {b.to_pydatetime(): v for b, v in md.groupby("day").size().items()}
        assert _rows(run("senders")[1]) == {b.to_pydatetime(): v for b, v in
                                            md.groupby("day").user_id.nunique().items()}


def test_feed_dau_by_os_is_a_distinct_count_not_an_average_of_slices(feed):
    """The chart that showed ~1,079 Android users (an average over gender x age cells) now shows DAU per os."""
    d, f, _ = feed
    with Project.load(d) as p:
        q = DashboardQueries("feed", p.config.dashboards["feed"], p.config, p.warehouse)
        st = State(datetime(2024, 3, 5), datetime(2024, 3, 6))
        got = _rows(q.run("dau_by_os", st, q.window(st))[1])
        day = f[f.day == datetime(2024, 3, 5)]
        assert got[(datetime(2024, 3, 5), "Android")] == day[day.os == "Android"].user_id.nunique()
        cells = day[day.os == "Android"].groupby(["gender", "age_group"]).user_id.nunique()
        assert got[(datetime(2024, 3, 5), "Android")] > 3 * cells.mean()
        assert sum(v for (_, os), v in got.items()) == day.user_id.nunique()  # each user has one os
