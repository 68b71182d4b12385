"""ClickHouse through a server: clickhouse-connect's HTTP client against chDB's engine behind ClickHouse's HTTP
interface on loopback (tests/chserver.py: no modern clickhouse-server installs here). The installed console
script, credentials from the environment only; marts vs pandas on the raw events; dedup on re-reads; read-only
queries; backups; cluster DDL. (The embedded chDB transport runs in the three-engine tests of every other file.)"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pytest

from conftest import events_config, write_project
from eventmart import Project
from eventmart.dashboards.query import DashboardQueries, State
from helpers import T0, assert_frames_equal, mart_frame, random_events, reference_by_topic, write_events_csv

EVENTMART = str(Path(sys.executable).parent / "eventmart")


def em(project: Path, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([EVENTMART, *args, "-p", str(project)], capture_output=True, text=True, timeout=300,
                       env={**os.environ, **(env or {})})
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def server_project(tmp_path, ch_server, monkeypatch):
    """A project whose warehouse is a database on the ClickHouse server; the URL (with its password) only in the
    environment."""
    monkeypatch.setenv("EVENTMART_CH_URL", ch_server["url"])
    db = f"srv{int(time.time() * 1e6) % 10**12}"
    cfg = events_config({"type": "clickhouse", "url": "${EVENTMART_CH_URL}", "database": db})
    cfg["dashboards"] = {"d": {"title": "T", "filters": ["time", "topic"], "charts": {
        "users": {"type": "kpi", "mart": "by_topic", "measure": "users"},
        "users_by_topic": {"type": "bar", "mart": "by_topic", "measure": "users", "dimension": "topic"}}}}
    write_project(tmp_path, cfg)
    return tmp_path, ch_server


def test_server_transport_end_to_end_from_the_console_script(server_project):
    d, srv = server_project
    events = random_events(3000, seed=4, hours=30)
    write_events_csv(d / "data" / "a.csv", events[:2000])
    write_events_csv(d / "data" / "b.csv", events[1500:] + events[:10])  # overlaps: 510 keys read twice
    outputs = []
    r = em(d, "ingest", "events")
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 0 and "3,000 loaded, 510 duplicate" in r.stdout, r.stdout + r.stderr
    r = em(d, "ingest", "events", "--force")
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 0 and "0 loaded, 3,510 duplicate" in r.stdout, r.stdout
    r = em(d, "backfill")
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 0, r.stderr
    s, e = T0, T0 + timedelta(hours=30)
    with Project.load(d) as p:
        assert_frames_equal(mart_frame(p), reference_by_topic(events, s, e))
        # a distinct count at a coarser grain than the mart keeps: from the raw events, never a sum
        q = DashboardQueries("d", p.config.dashboards["d"], p.config, p.warehouse)
        q.check()
        st = State(T0 + timedelta(hours=2), T0 + timedelta(hours=20), {"topic": ["plain", "Авто"]})
        window = q.window(st)
        df = pd.DataFrame(events)
        df["t"] = pd.to_datetime(df.ts, unit="ms")
        sel = df[(df.t >= window[0]) & (df.t < window[1]) & df.topic.isin(["plain", "Авто"])]
        assert q.run("users", st, window)[1].rows[0][0] == sel.user_id.nunique()
        assert dict(q.run("users_by_topic", st, window)[1].rows) == sel.groupby("topic").user_id.nunique().to_dict()
        assert p.status()[0].gaps == []
    # read-only: the server refuses a write the parser lets through
    r = em(d, "query", "select count(*) from events settings readonly = 0")
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    r = em(d, "query", "select count(*) as n from by_topic", "--format", "csv")
    assert r.returncode == 0 and int(r.stdout.splitlines()[1]) > 0
    # a backup verified by restoring it into a scratch database on the server, then restored
    r = em(d, "backup")
    outputs.append(r.stdout + r.stderr)
    assert r.returncode == 0 and "verified by restore" in r.stdout, r.stdout + r.stderr
    [made] = list((d / "backups").glob("warehouse-*.chbackup"))
    with Project.load(d) as p:
        before = mart_frame(p)
        p.reset("by_topic")
    r = em(d, "restore", str(made))
    assert r.returncode == 0, r.stderr
    with Project.load(d) as p:
        assert_frames_equal(mart_frame(p), before)
    assert not any(srv["password"] in o for o in outputs)


def test_a_server_that_is_down_or_refuses_the_password_is_one_line_without_secrets(server_project, monkeypatch):
    d, srv = server_project
    write_events_csv(d / "data" / "a.csv", random_events(10))
    bad = srv["url"].replace(srv["password"], srv["password"] + "x")
    r = em(d, "ingest", "events", env={"EVENTMART_CH_URL": bad})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert srv["password"] not in r.stderr and "Authentication failed" in r.stderr, r.stderr
    down = "http://eventmart:hunter2secret@127.0.0.1:9/x"
    r = em(d, "status", env={"EVENTMART_CH_URL": down})
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "hunter2secret" not in r.stderr and "127.0.0.1:9" in r.stderr, r.stderr


def test_cluster_ddl_is_replicated_on_cluster_with_distributed_reads(server_project):
    d, srv = server_project
    import yaml

    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["warehouse"]["cluster"] = "events_cluster"
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    write_events_csv(d / "data" / "a.csv", random_events(10))  # found, not loaded
    r = em(d, "check", "--sql")
    assert r.returncode == 0, r.stdout + r.stderr
    ddl = [ln for ln in r.stdout.splitlines() if ln.startswith("CREATE")]
    raw = [ln for ln in ddl if ln.startswith('CREATE TABLE IF NOT EXISTS "events" ')]
    mart = [ln for ln in ddl if ln.startswith('CREATE TABLE IF NOT EXISTS "by_topic" ')]
    assert len(raw) == len(mart) == 1, r.stdout
    for stmt in (raw[0], mart[0]):
        assert 'ON CLUSTER "events_cluster"' in stmt
        assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')" in stmt
    assert 'PARTITION BY toYYYYMM("_time") ORDER BY ("_time")' in raw[0] and "TYPE minmax" in raw[0]
    assert '"topic" LowCardinality(Nullable(String))' in raw[0] and '"user_id" Nullable(Int64)' in raw[0]
    assert 'PARTITION BY toYYYYMMDD("dt") ORDER BY ("dt", "topic", "action")' in mart[0]
    assert '"events" Int64' in mart[0] and '"dt" DateTime(\'UTC\')' in mart[0]
    dist = [ln for ln in ddl if "_dist" in ln]
    assert any(f'ENGINE = Distributed("events_cluster", "{cfg["warehouse"]["database"]}", "by_topic", rand())' in x
               for x in dist), dist
    # nothing was created: check writes nothing
    with Project.load(d) as p:
        assert p.warehouse.table_columns("events") is None


class ClusterRecorder:
    """Between eventmart and one ClickHouse node: records every statement as eventmart sends it for a cluster, and
    lets the single node run it — ``ON CLUSTER`` dropped, ReplicatedMergeTree as MergeTree, a Distributed table as
    a view of its local table. The run's numbers come from the real engine; the statements are the cluster's."""

    def __init__(self, client, cluster: str):
        object.__setattr__(self, "_c", client)
        object.__setattr__(self, "_cluster", cluster)
        object.__setattr__(self, "sent", [])

    def _local(self, text: str) -> str:
        import re

        text = text.replace(f' ON CLUSTER "{self._cluster}"', "")
        text = re.sub(r"ReplicatedMergeTree\('/clickhouse/tables/\{shard\}/\{database\}/\{table\}', '\{replica\}'\)",
                      "MergeTree", text)
        m = re.match(r'CREATE TABLE IF NOT EXISTS ("\w+_dist") AS ("\w+") ENGINE = Distributed\(.*\)$', text)
        return f"CREATE VIEW IF NOT EXISTS {m[1]} AS SELECT * FROM {m[2]}" if m else text

    def command(self, text, *a, **k):
        self.sent.append(text)
        return self._c.command(self._local(text), *a, **k)

    def insert_arrow(self, table, *a, **k):
        self.sent.append(f"INSERT ARROW {table}")
        return self._c.insert_arrow(table, *a, **k)

    def __getattr__(self, name):
        return getattr(self._c, name)

    def __setattr__(self, name, value):
        setattr(self._c, name, value)


def test_a_cluster_run_sends_shared_ddl_on_cluster_and_swaps_windows_on_one_replica(server_project, monkeypatch):
    """What eventmart sends to a cluster (one shard, replicas): tables and their changes ON CLUSTER, Replicated,
    with a Distributed table for reads; rows and window swaps to the replica it talks to (ClickHouse replicates
    them), scratch tables on that node only; and the numbers of that run equal pandas on the raw events. Also: the
    worked example in docs/guide/clickhouse-cluster.md shows the statements this run sent."""
    import re

    import yaml

    from eventmart.warehouse.clickhouse import ClickHouseWarehouse

    d, _ = server_project
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["warehouse"]["cluster"] = "events_cluster"
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    db = cfg["warehouse"]["database"]
    events = random_events(2000, seed=8, hours=6)
    write_events_csv(d / "data" / "a.csv", events)
    recorders: list[ClusterRecorder] = []
    real = ClickHouseWarehouse._connect

    def connect(self):
        recorders.append(ClusterRecorder(real(self), "events_cluster"))
        return recorders[-1]

    monkeypatch.setattr(ClickHouseWarehouse, "_connect", connect)
    with Project.load(d) as p:
        p.ingest("events")
        p.backfill()
        assert_frames_equal(mart_frame(p), reference_by_topic(events, T0, T0 + timedelta(hours=6)))
        assert p.query("SELECT count() FROM by_topic_dist").rows[0][0] == len(mart_frame(p))
    sent = [s for r in recorders for s in r.sent]
    scratch = re.compile(r"_em_stage_")

    def target(stmt: str) -> str:
        m = re.match(r'(?:CREATE TABLE(?: IF NOT EXISTS)?|DROP TABLE IF EXISTS|ALTER TABLE|INSERT INTO) "([^"]+)"',
                     stmt)
        return m[1] if m else ""

    creates = [s for s in sent if s.startswith("CREATE TABLE")]
    shared = [s for s in creates if not scratch.search(target(s))]
    assert {target(s) for s in shared} >= {"events", "by_topic", "by_topic_dist", "events_dist"}, shared
    for s in shared:  # every table every replica needs: created on all of them
        assert ' ON CLUSTER "events_cluster"' in s, s
        assert ("ReplicatedMergeTree('/clickhouse/tables/{shard}/{database}/{table}', '{replica}')" in s
                or "ENGINE = Distributed(" in s), s
    for s in creates:
        if scratch.search(target(s)):  # scratch tables: this node only, never registered with ZooKeeper
            assert "ON CLUSTER" not in s and "Replicated" not in s, s
    # a window is swapped on the replica eventmart talks to (REPLACE PARTITION replicates by itself; ON CLUSTER
    # would run it on replicas that do not have the scratch table)
    swaps = [s for s in sent if "REPLACE PARTITION" in s]
    assert swaps and all(re.fullmatch(r'ALTER TABLE "by_topic" REPLACE PARTITION ID \'\d{8}\' FROM "_em_stage_'
                                      r'by_topic_[0-9a-f]{12}"', s) for s in swaps), swaps
    stage = next(s for s in creates if target(s).startswith("_em_stage_by_topic_"))
    assert 'ENGINE = MergeTree PARTITION BY toYYYYMMDD(dt) ORDER BY (dt, topic, action)' in stage, stage
    # rows go to the replicated tables (or scratch ones), never through a Distributed table
    inserts = [s for s in sent if s.startswith(("INSERT INTO", "INSERT ARROW"))]
    assert inserts and not any("_dist" in s for s in inserts), inserts
    drops = [s for s in sent if s.startswith("DROP TABLE") and not scratch.search(target(s))]
    assert all(" ON CLUSTER " in s for s in drops), drops
    # the docs' worked example quotes these statements
    doc = (Path(__file__).resolve().parents[1] / "docs" / "guide" / "clickhouse-cluster.md").read_text()
    quoted = re.search(r"```sql\n-- sent by eventmart\n(.*?)```", doc, re.S)
    assert quoted, "docs/guide/clickhouse-cluster.md lost its generated example"
    mine = {re.sub(r"_[0-9a-f]{12}", "_<id>", re.sub(r"ID '\d{8}'", "ID '<day>'", s)).replace(f'"{db}"', '"events_db"')
            for s in sent}
    for line in quoted[1].strip().splitlines():
        if not line.startswith("--"):
            assert line in mine, f"not sent by this run: {line}"
