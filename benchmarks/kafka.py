"""Kafka consumption (issue 14): the rate into DuckDB with the exactly-once path, and event-to-mart latency.

    .venv/bin/python benchmarks/kafka.py [--rounds 6 --round 80000] [--rate 10000 --seconds 60]

A Kafka broker process (Tansu, in memory, on loopback: the broker the tests and `demo web` run) holds web pageview
messages. Each round produces ``--round`` messages, then (1) eventmart's consumer (`consume`, batches committed with
their offsets into a DuckDB warehouse) and (2) a plain confluent-kafka consumer loop that only parses the JSON
(stores nothing) read them; their time runs from the first message to the last (the group join, ~3 s, is left out: a long-running
consumer pays it once). (3) `eventmart serve`'s streaming path (the web example's marts on DuckDB) while a
producer sends ``--rate`` pageviews a second: every half second the number sent so far is noted, and the latency
of that point is the time until the web_pages mart counts that many; p50/p95. One run on whatever machine runs
this.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zen_marts import DATA  # noqa: E402


def pageview(i: int, t: datetime) -> bytes:
    return json.dumps({"event_id": f"e{i}", "event_timestamp": t.strftime("%Y-%m-%d %H:%M:%S.%f"),
                       "event_type": "pageview", "click_id": f"c{i % 5000}", "browser_name": "Chrome",
                       "browser_user_agent": "Mozilla/5.0", "browser_language": "en_US"}).encode()


def fill(bootstrap: str, topic: str, n: int, first: int = 0) -> float:
    from confluent_kafka import Producer

    p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 50, "queue.buffering.max.messages": 1_000_000,
                  "log_level": 3})
    t0, base = time.perf_counter(), datetime(2022, 11, 28)
    for i in range(first, first + n):
        while True:
            try:
                p.produce(topic, pageview(i, base + timedelta(milliseconds=i * 20)))
                break
            except BufferError:
                p.poll(0.05)
    p.flush(120)
    return time.perf_counter() - t0


def plain_consumer(bootstrap: str, topic: str, n: int, group: str) -> float:
    """The baseline: consume and json.loads every message, store nothing; seconds from the first message."""
    from confluent_kafka import Consumer

    c = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "auto.offset.reset": "earliest",
                  "enable.auto.commit": False, "log_level": 3})
    c.subscribe([topic])
    got, t0, last = 0, None, 0.0
    while got < n:
        msgs = c.consume(20_000, timeout=0.5)
        if msgs and t0 is None:
            t0 = time.perf_counter()
        for m in msgs:
            if m.error() is None:
                json.loads(m.value())
                got += 1
                last = time.perf_counter()
        if t0 is not None and not msgs and time.perf_counter() - last > 2:
            break
    dt = last - t0
    c.commit(asynchronous=False)
    c.close()
    return dt


def eventmart_consumer(d: Path) -> tuple[float, int]:
    """eventmart's consumer into the project's warehouse: seconds from its first batch to the last batch committed
    (the plain consumer's clock, too, stops at its last message), rows loaded."""
    from eventmart import Project
    from eventmart.sources import kafka

    first: list[float] = []
    done: list[float] = []
    orig = kafka.Reader.batches

    def timed(self):
        for item in orig(self):
            if not first:
                first.append(time.perf_counter())
            yield item
            done.append(time.perf_counter())  # resumed: the batch is loaded and its offsets committed

    kafka.Reader.batches = timed
    try:
        with Project.load(d) as p:
            res = kafka.consume(p.warehouse, "web_browser", p.config.sources["web_browser"], drain=True)
    finally:
        kafka.Reader.batches = orig
    return done[-1] - first[0], res.loaded


def web_project(d: Path, bootstrap: str, topic: str, batch: int = 50_000) -> Path:
    import shutil

    from eventmart.examples import init_example

    if d.exists():
        shutil.rmtree(d)
    init_example("web", d)
    text = (d / "eventmart.yml").read_text().replace("topic: browser_events", f"topic: {topic}")
    text = text.replace("${EVENTMART_KAFKA:-localhost:9092}", bootstrap)
    text = text.replace(f"topic: {topic}}}", f"topic: {topic}, batch: {batch}}}")
    (d / "eventmart.yml").write_text(text)
    return d


def latency(bootstrap: str, rate: int, seconds: int) -> dict:
    from confluent_kafka import Producer

    from eventmart import Project
    from eventmart.server.serve import Server

    topic = f"live-{int(time.time())}"
    d = web_project(DATA / "kafka-live", bootstrap, topic, batch=20_000)
    os.environ["EVENTMART_KAFKA"] = bootstrap
    p = Project.load(d)
    srv = Server(p, port=0, say=lambda m: None)
    srv.start()
    sent = [0]
    marks: list[tuple[float, int]] = []
    seen: list[tuple[float, int]] = []
    stop = threading.Event()

    def produce() -> None:
        prod = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "log_level": 3})
        base, t0 = datetime(2022, 11, 29), time.perf_counter()
        while not stop.is_set():
            due = int((time.perf_counter() - t0) * rate)
            while sent[0] < due:
                prod.produce(topic, pageview(sent[0], base + timedelta(milliseconds=sent[0] * 1000 // rate)))
                sent[0] += 1
            prod.poll(0)
            time.sleep(0.01)
        prod.flush(10)

    def poll() -> None:
        while not stop.is_set():
            wh = p.warehouse
            if wh.concurrent_table_exists("web_pages"):
                n = wh.concurrent_fetch("SELECT COALESCE(sum(pageviews), 0) FROM web_pages").rows[0][0]
                seen.append((time.perf_counter(), int(n)))
            time.sleep(0.1)

    threads = [threading.Thread(target=produce, daemon=True), threading.Thread(target=poll, daemon=True)]
    for t in threads:
        t.start()
    time.sleep(8)  # the group join
    t_end = time.perf_counter() + seconds
    while time.perf_counter() < t_end:
        marks.append((time.perf_counter(), sent[0]))
        time.sleep(0.5)
    time.sleep(15)
    stop.set()
    for t in threads:
        t.join(20)
    srv.stop()
    p.close()
    lat = []
    for t, n in marks:
        hit = next((ts for ts, have in seen if ts >= t and have >= n), None)
        if hit is not None:
            lat.append(hit - t)
    q = statistics.quantiles(lat, n=20) if len(lat) > 2 else [float("nan")] * 19
    return {"samples": len(marks), "answered": len(lat), "p50": statistics.median(lat) if lat else None,
            "p95": q[18], "sent": sent[0], "seconds": seconds, "rate": rate}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--round", type=int, default=40_000)
    ap.add_argument("--rate", type=int, default=10_000)
    ap.add_argument("--seconds", type=int, default=60)
    a = ap.parse_args()
    from eventmart.examples.broker import Broker

    broker = Broker().start()
    bootstrap = broker.bootstrap
    try:
        topic = f"bulk-{int(time.time())}"
        d = web_project(DATA / "kafka-bulk", bootstrap, topic)
        ours = base = 0.0
        loaded = 0
        for k in range(a.rounds):
            fill(bootstrap, topic, a.round, first=k * a.round)
            t, n = eventmart_consumer(d)
            ours, loaded = ours + t, loaded + n
            base += plain_consumer(bootstrap, topic, a.round, "plain")
            print(f"  round {k + 1}: eventmart {a.round / t:,.0f}/s", file=sys.stderr, flush=True)
        import duckdb

        con = duckdb.connect(str(d / "warehouse.duckdb"), read_only=True)
        rows = con.execute("SELECT count(*), count(DISTINCT event_id) FROM web_browser").fetchone()
        con.close()
        lat = latency(bootstrap, a.rate, a.seconds)
    finally:
        broker.stop()
    n = a.rounds * a.round
    print(f"\n== Kafka: {a.rounds} rounds of {a.round:,} pageview messages, a Tansu broker process ==")
    print(f"  plain consumer (consume + json.loads, stores nothing): {n / base:12,.0f} messages/s")
    print(f"  eventmart consumer -> DuckDB, offsets in each batch's transaction: {n / ours:10,.0f} events/s; "
          f"{loaded:,} loaded, {rows[0]:,} rows ({rows[1]:,} distinct)")
    print(f"  ratio to the plain consumer: {base / ours:.2f}x   goal >= 0.9x: {'met' if base / ours >= 0.9 else 'not met'}")
    print(f"  live: {lat['rate']:,}/s for {lat['seconds']}s ({lat['sent']:,} sent), event -> web_pages mart: "
          f"p50 {lat['p50']:.2f}s, p95 {lat['p95']:.2f}s over {lat['answered']}/{lat['samples']} samples; "
          f"goal p95 < 5 s: {'met' if lat['p95'] < 5 else 'not met'}")
    (DATA / "kafka.json").write_text(json.dumps({"plain": base, "eventmart": ours, "n": n, "rows": rows,
                                                 "latency": lat}, default=str, indent=1))


if __name__ == "__main__":
    main()
