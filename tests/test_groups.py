"""The communities example (seed 003) and the declared data vault: the group-conversion mart against an independent
pandas oracle on the raw files, idempotent and incremental vault loads, hashdiff satellites with late and
out-of-order records, hash keys identical on every engine and in Python, missing hub keys reported — from a folder
and from a real S3 API server on loopback."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import write_project
from eventmart import Project
from eventmart.examples import OLDEST, generate_groups, init_example

EVENTMART = str(Path(sys.executable).parent / "eventmart")


def oracle(data: Path, as_of: datetime) -> pd.DataFrame:
    """Straight from the CSV files: per group, joiners (an `add` before ``as_of``) and those of them who wrote in
    the group's dialogs at or after their first join."""
    log = pd.read_csv(data / "group_log.csv", on_bad_lines="skip", dtype=str)
    log = log[pd.to_numeric(log.group_id, errors="coerce").notna() & pd.to_numeric(log.user_id, errors="coerce").notna()]
    log["t"] = pd.to_datetime(log.datetime, errors="coerce")
    log = log[log.t.notna() & (log.event == "add") & (log.t < as_of)]
    joins = log.groupby(["group_id", "user_id"]).t.min().rename("joined").reset_index()
    msg = pd.read_csv(data / "dialogs.csv", dtype={"message_group": "Int64"})
    msg["t"] = pd.to_datetime(msg.message_ts)
    msg = msg[msg.message_group.notna() & (msg.t < as_of)]
    last = msg.groupby([msg.message_group.astype(str), msg.message_from.astype(str)]).t.max().rename("last")
    joins = joins.join(last, on=["group_id", "user_id"])
    joins["wrote"] = joins["last"] >= joins.joined
    groups = pd.read_csv(data / "groups.csv", dtype={"id": str})
    out = groups[pd.to_datetime(groups.registration_dt) < as_of][["id", "group_name", "registration_dt"]]
    agg = joins.groupby("group_id").agg(joiners=("user_id", "size"), writers=("wrote", "sum"))
    out = out.join(agg, on="id").fillna({"joiners": 0, "writers": 0})
    out["conversion"] = out.writers / out.joiners.where(out.joiners > 0)
    return out.set_index("id")


def mart_day(p: Project, day: datetime) -> pd.DataFrame:
    res = p.query("SELECT group_id, cnt_added_users, cnt_users_in_group_with_messages, group_conversion "
                  f"FROM group_conversion WHERE dt = TIMESTAMP '{day:%Y-%m-%d %H:%M:%S}'")
    return pd.DataFrame(res.rows, columns=res.columns).set_index("group_id")


def assert_matches_oracle(p: Project, data: Path, day: datetime) -> None:
    got, want = mart_day(p, day), oracle(data, day + timedelta(days=1))
    assert sorted(got.index) == sorted(want.index)
    both = want.join(got)
    assert (both.cnt_added_users == both.joiners).all()
    assert (both.cnt_users_in_group_with_messages == both.writers).all()
    conv = both.dropna(subset=["conversion"])
    assert conv.group_conversion.sub(conv.conversion).abs().max() < 1e-12
    assert both[both.conversion.isna()].group_conversion.isna().all()


def em(d: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([EVENTMART, *args], capture_output=True, text=True, timeout=600, cwd=d.parent,
                       env={**os.environ, **(env or {})})
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    d = tmp_path_factory.mktemp("groups") / "g"
    r = em(d, "demo", "groups", str(d), "--scale", "0.3", "--no-serve")
    assert r.returncode == 0, r.stdout + r.stderr
    return d, r.stdout


def test_demo_prints_the_10_oldest_groups_and_the_mart_equals_the_oracle(demo):
    d, out = demo
    assert "the 10 oldest groups" in out and "group_log: " in out and "4 rejected" in out
    with Project.load(d) as p:
        last = p.query("SELECT max(dt) FROM group_conversion").rows[0][0]
        for day in (last, last - timedelta(days=20), last - timedelta(days=50)):
            assert_matches_oracle(p, d / "data", day)
        oldest = p.query(OLDEST).rows
        assert len(oldest) == 10
        groups = pd.read_csv(d / "data" / "groups.csv").sort_values(["registration_dt", "id"]).head(10)
        assert sorted(int(r[0]) for r in oldest) == sorted(groups.id)
        convs = [r[5] for r in oldest]
        assert convs == sorted(convs, reverse=True) and 0.05 < min(convs) and max(convs) < 0.7
        # the rejected lines are the malformed ones, kept with their reason
        rej = p.rejects("group_log").rows
        assert len(rej) == 4 and all(r[2] for r in rej)


def test_the_original_numbers_count_writers_who_never_joined(demo):
    """The seed's query counted every writer of a group's dialogs, joined or not: its conversion is higher."""
    d, _ = demo
    data = d / "data"
    log = pd.read_csv(data / "group_log.csv", on_bad_lines="skip", dtype=str)
    adds = log[log.event == "add"].groupby("group_id").user_id.nunique()
    msg = pd.read_csv(data / "dialogs.csv", dtype={"message_group": "Int64"})
    writers = msg[msg.message_group.notna()].groupby(msg.message_group.astype(str)).message_from.nunique()
    seed = (writers / adds).dropna()
    with Project.load(d) as p:
        last = p.query("SELECT max(dt) FROM group_conversion").rows[0][0]
        ours = mart_day(p, last).group_conversion.dropna()
    common = seed.index.intersection(ours.index)
    assert len(common) > 20 and (seed[common] > ours[common]).mean() > 0.9


def test_vault_loads_are_idempotent_and_incremental(demo, tmp_path):
    d, _ = demo
    import shutil

    w = tmp_path / "g"
    shutil.copytree(d, w, ignore=shutil.ignore_patterns(".eventmart"))
    with Project.load(w) as p:
        counts = dict(p.query("SELECT 'h_users', count(*) FROM h_users UNION ALL SELECT 's_auth_history', count(*) "
                              "FROM s_auth_history UNION ALL SELECT 'l_user_group_activity', count(*) FROM "
                              "l_user_group_activity").rows)
        assert all(r.rows == 0 for r in p.vault_load())  # a rerun adds nothing
        # new events: a new member of an old group, a repeated event, and one that arrives late (effective earlier)
        g, u = 5011, 103  # group and user ids of the generator (group #1, user #1)
        late = datetime(2022, 3, 2, 9, 0)
        rows = [f"{g},{u},,add,2022-05-20 10:00:00", f"{g},{u},,add,2022-05-20 10:00:00", f"{g},{u},,leave,{late}",
                f"{g},{u},,leave,2022-05-21 08:00:00"]
        new = w / "data" / "group_log-2.csv"
        new.write_text("group_id,user_id,user_id_from,event,datetime\n" + "\n".join(rows))
        r = p.ingest("group_log", [str(new)])
        assert (r.loaded, r.duplicates) == (3, 1)
        before = p.query(f"SELECT count(*) FROM l_user_group_activity WHERE hk_l_user_group_activity = "
                         f"'{hashlib.md5(f'{u}||{g}'.encode()).hexdigest()}'").rows[0][0]
        res = {x.table: x.rows for x in p.vault_load()}
        assert res["h_users"] == 0 and res["s_user_socdem"] == 0
        assert res["l_user_group_activity"] == 1 - before  # the pair is new unless the generator made it already
        hist = p.query("SELECT event, effective_from FROM s_auth_history s JOIN l_user_group_activity l ON "
                       "l.hk_l_user_group_activity = s.hk_l_user_group_activity JOIN h_users h ON h.hk_user_id = "
                       f"l.hk_user_id JOIN h_groups gr ON gr.hk_group_id = l.hk_group_id WHERE h.user_id = {u} AND "
                       f"gr.group_id = {g} ORDER BY effective_from").rows
        events = [(e, t) for e, t in hist if t >= late]
        # the late leave sits at its own time, before the new add; the later leave follows the add
        assert [e for e, t in events][:1] == ["leave"] and events[0][1] == late
        assert ("add", datetime(2022, 5, 20, 10)) in events and ("leave", datetime(2022, 5, 21, 8)) in events
        assert sum(1 for e in events if e == ("add", datetime(2022, 5, 20, 10))) == 1
        # a satellite adds no row for a record whose attributes did not change
        assert res["s_auth_history"] == 3
        assert all(x.rows == 0 for x in p.vault_load())
        # rebuilt from scratch: the same rows
        p.vault_reset()
        p.vault_load()
        again = dict(p.query("SELECT 'h_users', count(*) FROM h_users UNION ALL SELECT 's_auth_history', count(*) "
                             "FROM s_auth_history UNION ALL SELECT 'l_user_group_activity', count(*) FROM "
                             "l_user_group_activity").rows)
        assert again["h_users"] == counts["h_users"]
        assert again["s_auth_history"] == counts["s_auth_history"] + 3


def test_missing_hub_keys_are_reported_not_dropped(demo, tmp_path):
    d, _ = demo
    import shutil

    w = tmp_path / "g"
    shutil.copytree(d, w, ignore=shutil.ignore_patterns(".eventmart"))
    new = w / "data" / "group_log-3.csv"
    new.write_text("group_id,user_id,user_id_from,event,datetime\n5011,999999,,add,2022-05-20 10:00:00\n")
    with Project.load(w) as p:
        p.ingest("group_log", [str(new)])
        res = {x.table: x for x in p.vault_load()}
        link = res["l_user_group_activity"]
        assert link.rows == 1 and link.orphans["h_users"] == 1 and "not in h_users" in link.line()
        status = {r[0]: r for r in p.vault_status().rows}
        assert status["l_user_group_activity"][6] == "h_users: 1"
        assert status["h_users"][2] == "hk_user_id <- md5(users.id)" and status["h_users"][3] > 0


VAULT = {
    "hubs": {"h_k": {"source": "ev", "key": ["a", "b"]}},
    "links": {}, "satellites": {"s_k": {"parent": "h_k", "source": "ev", "attributes": ["c", "t"]}},
}


def test_hash_keys_are_the_same_on_every_engine_and_in_python(tmp_path, engine):
    """The hash contract: the trimmed text of each part (not case-folded), '||' between, md5 hex."""
    rows = ["a,b,c,t,ts", "5,x,1,2024-03-10 10:00:00.123456,2024-03-10 10:00:00", " 7 ,é y,, 2024-01-01 00:00:00,2024-03-10 11:00:00"]
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "e.csv").write_text("\n".join(rows) + "\n")
    cfg = {"name": "h", "warehouse": engine, "vault": VAULT,
           "sources": {"ev": {"format": "csv", "path": "data/*.csv",
                              "columns": {"a": "int", "b": "string", "c": "int?", "t": "timestamp", "ts": "timestamp"},
                              "time": {"column": "ts"}, "key": ["a"]}}}
    write_project(tmp_path, cfg)
    with Project.load(tmp_path) as p:
        p.ingest("ev")
        p.vault_load()
        got = dict(p.query("SELECT a, hk_h_k FROM h_k").rows)
        diffs = dict(p.query("SELECT effective_from, hashdiff FROM s_k").rows)
    md5 = lambda s: hashlib.md5(s.encode()).hexdigest()  # noqa: E731
    assert got == {5: md5("5||x"), 7: md5("7||é y")}
    assert diffs == {datetime(2024, 3, 10, 10): md5("1||2024-03-10 10:00:00.123456"),
                     datetime(2024, 3, 10, 11): md5("^^||2024-01-01 00:00:00.000000")}


def test_vault_declaration_errors_name_the_key(tmp_path):
    cfg = {"name": "h", "sources": {"ev": {"format": "csv", "path": "data/*.csv", "columns": {"a": "int", "ts": "int"},
                                           "time": {"column": "ts", "unit": "s"}, "key": ["a"]}},
           "vault": {"hubs": {"h": {"source": "ev", "key": ["nope"]}}}}
    write_project(tmp_path, cfg)
    from eventmart import ProjectError

    with pytest.raises(ProjectError, match=r"eventmart\.yml:\d+: vault\.hubs\.h: 'nope' is not a column of source ev"):
        Project.load(tmp_path)


def test_demo_from_an_s3_server(tmp_path, s3):
    """With EVENTMART_DEMO_S3_ENDPOINT the demo uploads its files and reads them back from the bucket."""
    client, bucket, endpoint = s3
    d = tmp_path / "g"
    r = em(d, "demo", "groups", str(d), "--scale", "0.1", "--no-serve",
           env={"EVENTMART_DEMO_S3_ENDPOINT": endpoint, "EVENTMART_DEMO_S3_BUCKET": bucket})
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"uploaded 4 file(s) to s3://{bucket}/groups/" in r.stdout
    keys = sorted(o["Key"] for o in client.list_objects_v2(Bucket=bucket)["Contents"])
    assert keys == [f"groups/{n}.csv" for n in ("dialogs", "group_log", "groups", "users")]
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    assert all("s3" in s and "path" not in s for s in cfg["sources"].values())
    # the oracle reads the same objects the bucket holds
    data = tmp_path / "objects"
    data.mkdir()
    for k in keys:
        client.download_file(bucket, k, str(data / Path(k).name))
    with Project.load(d) as p:
        last = p.query("SELECT max(dt) FROM group_conversion").rows[0][0]
        assert_matches_oracle(p, data, last)
        assert p.rejects("group_log").rows[0][0].startswith(f"s3://{bucket}/groups/group_log.csv")
    r = em(d, "ingest", "group_log", "-p", str(d))
    assert r.returncode == 0 and "0 loaded" in r.stdout and "1 unchanged" in r.stdout, r.stdout + r.stderr


def test_groups_example_is_a_generator_of_its_own(tmp_path):
    init_example("groups", tmp_path)
    files = generate_groups(tmp_path, 0.05)
    assert sorted(f.name for f in files) == ["dialogs.csv", "group_log.csv", "groups.csv", "users.csv"]


def test_vault_and_conversion_on_every_engine(tmp_path, engine):
    """The same example on DuckDB, PostgreSQL and ClickHouse: the conversion mart equals the oracle, loads are
    idempotent and incremental."""
    d = tmp_path / "g"
    init_example("groups", d)
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["warehouse"] = engine
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    generate_groups(d, 0.1)
    with Project.load(d) as p:
        for s in p.config.sources:
            p.ingest(s)
        first = {r.table: r.rows for r in p.vault_load()}
        assert first["h_users"] == len(pd.read_csv(d / "data" / "users.csv")) and first["s_auth_history"] > 0
        assert all(r.rows == 0 for r in p.vault_load())
        last = p.query("SELECT max(_time) FROM group_log").rows[0][0].replace(hour=0, minute=0, second=0,
                                                                             microsecond=0)
        [r] = p.run(["group_conversion"], start=last, end=last + timedelta(days=1))
        assert r.status == "ok", r.error
        assert_matches_oracle(p, d / "data", last)
        new = d / "data" / "group_log-2.csv"
        new.write_text("group_id,user_id,user_id_from,event,datetime\n5011,103,,add,2022-05-20 10:00:00\n"
                       "5011,103,,add,2022-05-20 10:00:00\n5011,106,103,add,2022-05-20 11:00:00\n")
        assert p.ingest("group_log", [str(new)]).loaded == 2
        again = {r.table: r.rows for r in p.vault_load()}
        assert again["s_auth_history"] == 2 and again["h_users"] == 0 and again["s_dialog_info"] == 0
        [js] = p.run(["join_cohorts"], start=last - timedelta(days=7), end=last + timedelta(days=1))
        assert js.status == "ok", js.error


def test_groups_dashboard_charts_equal_the_oracle(demo):
    from eventmart.dashboards.query import DashboardQueries, State
    from eventmart.server.web import create_server

    d, _ = demo
    with Project.load(d) as p:
        q = DashboardQueries("groups", p.config.dashboards["groups"], p.config, p.warehouse)
        q.check()
        last = p.query("SELECT max(dt) FROM group_conversion").rows[0][0]
        st = State(last, last + timedelta(days=1))  # the dashboard's default: the last day
        window = q.window(st)
        want = oracle(d / "data", last + timedelta(days=1)).set_index("group_name")
        bars = dict(q.run("by_group", st, window)[1].rows)
        top = want.dropna(subset=["conversion"]).sort_values("conversion", ascending=False)
        assert list(bars)[:5] == list(top.index[:5])
        for name, v in bars.items():
            assert float(v) == pytest.approx(100 * want.loc[name, "conversion"])
        points = {r[0]: (r[1], r[2]) for r in q.run("scatter", st, window)[1].rows}
        assert points == {n: (int(r.joiners), int(r.writers)) for n, r in want.iterrows()}
        with pytest.raises(Exception, match="cannot be rolled up over the dimension"):  # a total would be wrong
            from eventmart.measures import MeasureLayer

            layer = MeasureLayer(p.config, p.warehouse)
            layer.check("group_conversion", [layer.metric("group_conversion", "max(cnt_added_users)", "kpi")],
                        None, [], "kpi")
        cq, table = q.run("table", st, window)
        assert table.columns == ["group_name", "value", "joiners", "writers"] and len(table.rows) == len(want)
        # the cohort line is drawn per week, its points the share of a week's joins that wrote within 7 days
        whole = q.window(State())
        cq, weeks = q.run("cohorts", State(), whole)
        assert cq.grain == 7 * 86400 and len(weeks.rows) >= 8
        assert all(0 <= float(v) <= 100 for _, v in weeks.rows if v is not None)
    server = create_server(Project.load(d))
    with server.test_client() as c:
        assert c.get("/d/groups/").status_code == 200
        csv = c.get(f"/d/groups/csv/table?from={last:%Y-%m-%dT%H:%M}").get_data(as_text=True)
        assert csv.splitlines()[0] == "group_name,value,joiners,writers" and len(csv.splitlines()) == len(want) + 1
