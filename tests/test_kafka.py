"""Kafka sources against a real broker process (Tansu, a Kafka-compatible broker the kafka extra installs: the Kafka
protocol, consumer groups, committed offsets), from separate processes — the installed console script — on every
engine: each message loaded once, poison messages kept as rejects without stopping the partition, the consumer
SIGKILLed at random moments, the broker killed and restarted mid-stream (its log on S3), two consumers in one
group, a broker down at start, offsets that no longer fit the topic, late parts of joined sources re-opening their
windows. Seeds of the random moments: EVENTMART_CHAOS_SEED (printed in a failure)."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest
import yaml
from confluent_kafka import Producer

from conftest import write_project
from eventmart import Project
from eventmart.examples.broker import Broker, free_port

EVENTMART = str(Path(sys.executable).parent / "eventmart")
T0 = datetime(2024, 3, 10)


def em(d: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    r = subprocess.run([EVENTMART, *args, "-p", str(d)], capture_output=True, text=True, timeout=timeout)
    assert "Traceback" not in r.stderr, r.stderr
    return r


def topic_name(tag: str) -> str:
    return f"{tag}-{int(time.time() * 1e6) % 10**12}"


def send(broker: str, topic: str, values: list[bytes | str], keys: list[str] | None = None, linger: int = 5) -> None:
    p = Producer({"bootstrap.servers": broker, "linger.ms": linger, "log_level": 3})
    for i, v in enumerate(values):
        while True:
            try:
                p.produce(topic, v.encode() if isinstance(v, str) else v, key=(keys[i] if keys else str(i)).encode())
                break
            except BufferError:  # librdkafka's local queue is full (a busy machine): let it deliver, then retry
                p.poll(0.1)
        if linger == 0:
            p.flush(10)  # one record per batch
        elif i % 10_000 == 0:
            p.poll(0)
    assert p.flush(30) == 0


def event(i: int, minute: int | None = None) -> str:
    t = T0 + timedelta(minutes=i % 600 if minute is None else minute, milliseconds=i % 1000)
    return json.dumps({"id": i, "user": f"u{i % 97}", "action": ["view", "like"][i % 2],
                       "ts": t.strftime("%Y-%m-%d %H:%M:%S.%f")})


def project(d: Path, broker: str, topic: str, engine: dict | None = None, batch: int = 500, **marts) -> Path:
    cfg = {"name": "k", "warehouse": engine or {"type": "duckdb"},
           # a consumer group per topic: on the session's one broker, a test's group never waits for another
           # test's members (two consumers, killed ones) to leave it
           "sources": {"ev": {"format": "jsonl", "kafka": {"bootstrap_servers": broker, "topic": topic, "batch": batch,
                                                           "group": f"g-{topic}"},
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


def chaos_seed() -> int:
    return int(os.environ.get("EVENTMART_CHAOS_SEED") or time.time_ns() % 10**9)


POISON = ["not json at all", b"\xff\xfe bytes", '{"id": "x", "user": "u", "action": "view", "ts": "2024-03-10 01:00:00"}']


def with_poison(values: list[str], every: int) -> list[str | bytes]:
    """``values`` with a poison message after every ``every``-th one."""
    out: list[str | bytes] = []
    for i, v in enumerate(values):
        out.append(v)
        if i % every == every - 1:
            out.append(POISON[(i // every) % len(POISON)])
    return out


def truth_per_hour(ids: range) -> dict[tuple[str, str], int]:
    """The per_hour mart computed from the events themselves."""
    out: dict[tuple[str, str], int] = {}
    for i in ids:
        e = json.loads(event(i))
        k = (e["ts"][:13] + ":00:00", e["action"])
        out[k] = out.get(k, 0) + 1
    return out


def assert_exactly_once(d: Path, ids: range, poison: int, note: str) -> None:
    """Raw table, rejects and the per_hour mart (built by the console script) against the events sent."""
    r = em(d, "backfill")
    assert r.returncode == 0, note + r.stdout + r.stderr
    with Project.load(d) as p:
        assert p.query("SELECT count(*), count(DISTINCT id), min(id), max(id) FROM ev").rows[0] == \
            (len(ids), len(ids), ids[0], ids[-1]), note
        rej = [(x[0], x[1]) for x in p.rejects("ev").rows]  # (kafka://topic/partition, offset)
        assert len(rej) == poison and len(set(rej)) == poison, (note, len(rej), len(set(rej)), poison)
        assert sum(row[3] for row in p.lag("ev").rows) == 0, note
        mart = {(str(dt)[:19], a): n for dt, a, n in
                p.query("SELECT dt, action, events FROM per_hour").rows}
    assert mart == truth_per_hour(ids), note


@pytest.mark.parametrize("engine", ["duckdb", "postgres", "clickhouse"], indirect=True)
def test_the_consumer_killed_at_random_moments_loses_and_doubles_nothing(tmp_path, kafka_broker, engine):
    seed = chaos_seed()
    rng = random.Random(seed)
    topic = topic_name("kill")
    n = 80_000
    send(kafka_broker, topic, with_poison([event(i) for i in range(n)], 997))
    d = project(tmp_path, kafka_broker, topic, engine, batch=2000)
    kills, moments = 0, []
    for _ in range(3):
        proc = subprocess.Popen([EVENTMART, "ingest", "ev", "-p", str(d)], stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL)
        moments.append(round(rng.uniform(1.0, 5.0), 2))
        time.sleep(moments[-1])
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            kills += 1
        proc.wait()
    note = f"EVENTMART_CHAOS_SEED={seed} (SIGKILL after {moments} s): "
    assert kills, note + "every consumer finished before it could be killed: make the topic bigger"
    r = em(d, "ingest", "ev")
    assert r.returncode == 0, note + r.stderr
    assert_exactly_once(d, range(n), n // 997, note)


def test_the_broker_killed_and_restarted_mid_stream_loses_and_doubles_nothing(tmp_path, s3, pg_url):
    """Tansu with its log on S3 (the moto server): kill -9 while a consumer drains it — once a random share of the
    topic is loaded (a PostgreSQL warehouse can be watched meanwhile) — and start it again on the same port; the
    consumer rides it out (kafka.connect_timeout), and what is sent afterwards is loaded once more."""
    import psycopg

    client, bucket, endpoint = s3
    seed = chaos_seed()
    rng = random.Random(seed)
    env = {"AWS_ENDPOINT": endpoint, "AWS_ALLOW_HTTP": "true", "AWS_ACCESS_KEY_ID": "testing",
           "AWS_SECRET_ACCESS_KEY": "testing-secret", "AWS_DEFAULT_REGION": "us-east-1"}
    broker = Broker(storage=f"s3://{bucket}/", env=env).start()
    try:
        topic = topic_name("restart")
        first, later = 40_000, 10_000
        send(broker.bootstrap, topic, with_poison([event(i) for i in range(first)], 1009))
        d = project(tmp_path, broker.bootstrap, topic, {"type": "postgres", "url": pg_url}, batch=500)
        share = round(rng.uniform(0.1, 0.6), 2)
        note = f"EVENTMART_CHAOS_SEED={seed} (broker killed at {share:.0%} loaded): "
        proc = subprocess.Popen([EVENTMART, "ingest", "ev", "-p", str(d)], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        with psycopg.connect(pg_url, autocommit=True) as c:
            until = time.monotonic() + 120
            while True:
                assert proc.poll() is None, note + "the consumer finished before the broker was killed"
                assert time.monotonic() < until, note + "no progress"
                got = c.execute("SELECT to_regclass('_eventmart_offsets') IS NOT NULL").fetchone()[0] and \
                    c.execute("SELECT COALESCE(sum(next_offset), 0) FROM _eventmart_offsets").fetchone()[0]
                if got and got >= share * first:
                    break
                time.sleep(0.05)
        broker.kill()
        time.sleep(rng.uniform(0.5, 3.0))
        broker.start()
        out, err = proc.communicate(timeout=240)
        assert proc.returncode == 0 and "Traceback" not in err, note + out + err
        send(broker.bootstrap, topic, with_poison([event(i) for i in range(first, first + later)], 1009))
        r = em(d, "ingest", "ev")
        assert r.returncode == 0, note + r.stderr
        assert_exactly_once(d, range(first + later), first // 1009 + later // 1009, note)
    finally:
        broker.stop()


def test_lag_counts_the_messages_not_loaded_yet(tmp_path, kafka_broker):
    # one record per batch (linger.ms=0): Tansu 0.6 reports a partition's high watermark as its last *batch*'s
    # base offset + 1, which equals the last offset + 1 only then (real Kafka always)
    topic = topic_name("lag")
    send(kafka_broker, topic, [event(i) for i in range(200)], linger=0)
    d = project(tmp_path, kafka_broker, topic)
    assert "200 loaded" in em(d, "ingest", "ev").stdout
    send(kafka_broker, topic, [event(i) for i in range(200, 237)], linger=0)
    with Project.load(d) as p:
        rows = p.lag("ev").rows
    assert sum(r[3] for r in rows) == 37 and sum(r[2] for r in rows) == 237, rows
    r = em(d, "ingest", "ev")
    assert "37 loaded, 0 duplicate" in r.stdout and "beyond its end" not in r.stdout, r.stdout
    with Project.load(d) as p:
        assert sum(r[3] for r in p.lag("ev").rows) == 0


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


def test_a_broker_down_at_start_is_retried_then_one_line(tmp_path):
    port = free_port()  # nothing listens there
    topic = topic_name("down")
    d = project(tmp_path / "down", f"127.0.0.1:{port}", topic)
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["sources"]["ev"]["kafka"]["connect_timeout"] = 3
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg))
    t0 = time.monotonic()
    r = em(d, "ingest", "ev", timeout=60)
    took = time.monotonic() - t0
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert f"no broker answered at 127.0.0.1:{port} for 3s" in r.stderr and "connect_timeout" in r.stderr, r.stderr
    assert 3 <= took < 20, took  # it retried for the timeout, and did not hang
    with Project.load(d) as p:
        assert p.warehouse.table_columns("ev") is None  # nothing half-written
    # within the timeout (30 s by default), a broker that comes up is found and read
    d = project(tmp_path / "late", f"127.0.0.1:{port}", topic)
    proc = subprocess.Popen([EVENTMART, "ingest", "ev", "-p", str(d)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    time.sleep(3)
    with Broker(port=port) as b:
        send(b.bootstrap, topic, [event(i) for i in range(500)])
        out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0 and "500 loaded" in out, out + err


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
