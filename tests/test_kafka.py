"""Kafka sources against librdkafka's mock cluster (the real Kafka protocol, consumer groups, committed offsets),
from separate processes — the installed console script — on every engine: each message loaded once, poison
messages kept as rejects without stopping the partition, kill -9 in the middle of a batch, two consumers in one
group, offsets that no longer fit the topic, late parts of joined sources re-opening their windows."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from confluent_kafka import Producer

from conftest import write_project
from eventmart import Project

EVENTMART = str(Path(sys.executable).parent / "eventmart")
T0 = datetime(2024, 3, 10)


def em(d: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([EVENTMART, *args, "-p", str(d)], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def topic_name(tag: str) -> str:
    return f"{tag}-{int(time.time() * 1e6) % 10**12}"


def send(broker: str, topic: str, values: list[bytes | str], keys: list[str] | None = None) -> None:
    p = Producer({"bootstrap.servers": broker, "linger.ms": 5, "log_level": 3})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, v.encode() if isinstance(v, str) else v, key=(keys[i] if keys else str(i)).encode())
                break
            except BufferError:  # librdkafka's local queue is full (a busy machine): let it deliver, then retry
                p.poll(0.1)
        if i % 10_000 == 0:
            p.poll(0)
    assert p.flush(30) == 0


def event(i: int, minute: int | None = None) -> str:
    t = T0 + timedelta(minutes=i % 600 if minute is None else minute, milliseconds=i % 1000)
    return json.dumps({"id": i, "user": f"u{i % 97}", "action": ["view", "like"][i % 2],
                       "ts": t.strftime("%Y-%m-%d %H:%M:%S.%f")})


def project(d: Path, broker: str, topic: str, engine: dict | None = None, batch: int = 500, **marts) -> Path:
    cfg = {"name": "k", "warehouse": engine or {"type": "duckdb"},
           "sources": {"ev": {"format": "jsonl", "kafka": {"bootstrap_servers": broker, "topic": topic, "batch": batch},
                              "columns": {"id": "int", "user": "string", "action": "string", "ts": "timestamp",
                                          "kafka_ts": "int"},
                              "time": {"column": "ts"}, "key": ["id"]}},
           "marts": {"per_hour": {"from": "ev", "grain": "1 hour", "dimensions": ["dt", "action"],
                                  "measures": {"events": "count()"}}, **marts}}
    return write_project(d, cfg)


def test_each_message_once_and_poison_as_rejects(tmp_path, kafka_broker, engine):
    topic = topic_name("ev")
    good = [event(i) for i in range(3000)]
    poison = ["not json at all", '{"id": "x", "user": "u", "action": "view", "ts": "2024-03-10 01:00:00"}',
              b"\xff\xfe bytes", '{"id": 5000, "user": "u", "action": "view"}']
    send(kafka_broker, topic, good[:1500] + poison + good[1500:] + good[:100])  # 100 repeated messages
    d = project(tmp_path, kafka_broker, topic, engine)
    r = em(d, "ingest", "ev")
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"3,000 loaded, 100 duplicate, 4 rejected from kafka://{topic}" in r.stdout, r.stdout
    with Project.load(d) as p:
        rej = p.rejects("ev").rows
        assert sorted(x[0] for x in rej)[0].startswith(f"kafka://{topic}/") and len(rej) == 4
        assert {x[2].split(":")[0].split(" (")[0] for x in rej} >= {"not UTF-8 text"}
        assert p.query("SELECT count(*), count(DISTINCT id) FROM ev").rows[0] == (3000, 3000)
        # the message's own timestamp came along
        assert p.query("SELECT count(*) FROM ev WHERE kafka_ts > 1600000000000").rows[0][0] == 3000
        assert all(row[3] == 0 for row in p.lag("ev").rows)
    # again: nothing new; then only what was sent since
    r = em(d, "ingest", "ev")
    assert "0 loaded, 0 duplicate, 0 rejected" in r.stdout, r.stdout
    send(kafka_broker, topic, [event(i) for i in range(3000, 3050)])
    r = em(d, "ingest", "ev")
    assert "50 loaded, 0 duplicate" in r.stdout, r.stdout
    r = em(d, "status")
    assert r.returncode == 0 and "lag" in r.stdout and "ev" in r.stdout, r.stdout


@pytest.mark.parametrize("engine", ["duckdb", "postgres", "clickhouse"], indirect=True)
def test_kill_9_in_the_middle_of_a_batch_loses_and_doubles_nothing(tmp_path, kafka_broker, engine):
    topic = topic_name("kill")
    n = 120_000
    send(kafka_broker, topic, [event(i) for i in range(n)])
    d = project(tmp_path, kafka_broker, topic, engine, batch=3000)
    kills = 0
    for delay in (4.5, 6.0):
        proc = subprocess.Popen([EVENTMART, "ingest", "ev", "-p", str(d)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        time.sleep(delay)
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    assert kills, "every consumer finished before it could be killed: make the topic bigger"
    r = em(d, "ingest", "ev")
    assert r.returncode == 0, r.stderr
    with Project.load(d) as p:
        assert p.query("SELECT count(*), count(DISTINCT id) FROM ev").rows[0] == (n, n)
        assert sum(row[3] for row in p.lag("ev").rows) == 0
        assert p.rejects("ev").rows == []


def test_two_consumers_of_one_group_share_the_partitions(tmp_path, kafka_broker, pg_url):
    topic = topic_name("two")
    n = 60_000
    send(kafka_broker, topic, [event(i) for i in range(n)])
    d = project(tmp_path, kafka_broker, topic, {"type": "postgres", "url": pg_url}, batch=1000)
    procs = [subprocess.Popen([EVENTMART, "ingest", "ev", "-p", str(d)], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert all(p.returncode == 0 for p in procs), outs
    loaded = [int(o[0].split(" loaded")[0].split(": ")[-1].replace(",", "")) for o in outs]
    with Project.load(d) as p:
        assert p.query("SELECT count(*), count(DISTINCT id) FROM ev").rows[0] == (n, n)
        assert sum(loaded) >= n and sum(row[3] for row in p.lag("ev").rows) == 0


def test_an_offset_beyond_the_topic_is_read_again_from_the_start(tmp_path, kafka_broker):
    topic = topic_name("reset")
    send(kafka_broker, topic, [event(i) for i in range(400)])
    d = project(tmp_path, kafka_broker, topic)
    assert em(d, "ingest", "ev").returncode == 0
    with Project.load(d) as p:  # as if the topic had been recreated: the warehouse is ahead of it
        p.warehouse.execute("UPDATE _eventmart_offsets SET next_offset = next_offset + 1000")
    r = em(d, "ingest", "ev")
    assert r.returncode == 0 and "0 loaded, 400 duplicate" in r.stdout and "beyond its end" in r.stdout, r.stdout
    with Project.load(d) as p:
        assert p.query("SELECT count(*) FROM ev").rows[0][0] == 400


def test_produce_publishes_files_and_a_bad_broker_is_one_line(tmp_path, kafka_broker):
    topic = topic_name("prod")
    d = project(tmp_path, kafka_broker, topic)
    f = tmp_path / "events.jsonl"
    f.write_text("\n".join(event(i) for i in range(250)) + "\n")
    r = em(d, "produce", "ev", str(f))
    assert r.returncode == 0 and "250 message(s)" in r.stdout, r.stdout + r.stderr
    assert "250 loaded" in em(d, "ingest", "ev").stdout
    bad = project(tmp_path / "bad", "127.0.0.1:9", topic)
    r = em(bad, "ingest", "ev", timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_late_parts_of_a_joined_source_reopen_the_windows_they_join(tmp_path, kafka_broker):
    """Pageviews arrive first, their locations minutes later: the windows of the joined pageviews are run again,
    and until then the mart shows them as unmatched."""
    views, places = topic_name("views"), topic_name("places")
    d = tmp_path / "j"
    cfg = {"name": "j",
           "sources": {
               "views": {"format": "jsonl", "kafka": {"bootstrap_servers": kafka_broker, "topic": views},
                         "columns": {"event_id": "string", "ts": "timestamp"}, "time": {"column": "ts"},
                         "key": ["event_id"]},
               "places": {"format": "jsonl", "kafka": {"bootstrap_servers": kafka_broker, "topic": places},
                          "columns": {"event_id": "string", "page": "string", "kafka_ts": "int"},
                          "time": {"column": "kafka_ts", "unit": "ms"}, "key": ["event_id"]}},
           "marts": {"by_page": {"from": "views", "grain": "1 hour", "joins": {"places": "event_id"},
                                 "sql": "SELECT date_trunc('hour', v._time) AS dt, COALESCE(p.page, '?') AS page, "
                                        "count(*) AS views, count(*) FILTER (WHERE p.event_id IS NULL) AS unmatched "
                                        "FROM views v LEFT JOIN places p ON p.event_id = v.event_id "
                                        "WHERE v._time >= {{ start }} AND v._time < {{ end }} GROUP BY 1, 2",
                                 "time_column": "dt"}}}
    write_project(d, cfg)
    ids = [f"e{i}" for i in range(300)]
    send(kafka_broker, views, [json.dumps({"event_id": e, "ts": f"2024-03-10 0{i % 3}:1{i % 6}:00"})
                               for i, e in enumerate(ids)])
    with Project.load(d) as p:
        p.ingest("views")
        p.backfill()
        assert p.query("SELECT sum(unmatched) FROM by_page").rows[0][0] == 300
        assert p.backfill() == []
        send(kafka_broker, places, [json.dumps({"event_id": e, "page": "/home"}) for e in ids[:200]])
        p.ingest("places")
        again = p.plan_backfill()
        assert again and all(w[0] == "by_page" for w in again)  # re-opened by what arrived, not by a guess
        p.backfill()
        assert p.query("SELECT sum(unmatched), sum(views) FROM by_page").rows[0] == (100, 300)
