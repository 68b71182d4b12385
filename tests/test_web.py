"""The web-analytics example (seed 004): the demo through the console script against pandas joins of its own
files; `eventmart serve` consuming four topics continuously, parts that arrive late shown as unmatched and then
joined; a SQL client other than eventmart (SQLAlchemy) reading the marts while serve runs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from confluent_kafka import Producer

from eventmart import Project
from eventmart.examples import init_example
from eventmart.server.serve import Server

EVENTMART = str(Path(sys.executable).parent / "eventmart")


def frames(data: Path) -> dict[str, pd.DataFrame]:
    out = {}
    for part in ("browser", "location", "device", "geo"):
        out[part] = pd.concat([pd.read_json(f, lines=True, dtype=False) for f in sorted(data.glob(f"{part}_*.jsonl"))])
    return out


def test_demo_marts_equal_pandas_joins_of_the_files(tmp_path):
    d = tmp_path / "web"
    r = subprocess.run([EVENTMART, "demo", "web", str(d), "--scale", "0.1", "--no-serve"], capture_output=True,
                       text=True, timeout=600, env={k: v for k, v in os.environ.items() if k != "EVENTMART_KAFKA"})
    assert r.returncode == 0, r.stdout + r.stderr
    assert "started a Kafka broker process (Tansu" in r.stdout and "0 rejected" in r.stdout
    # the device and place records repeat per pageview: the demo says why they count once
    assert "records whose key (click_id) was loaded already: kept once (a visitor's device record comes again" \
        in r.stdout
    f = frames(d / "data")
    b = f["browser"].drop_duplicates("event_id")
    loc = f["location"].drop_duplicates("event_id")
    dev = f["device"].drop_duplicates("click_id")
    geo = f["geo"].drop_duplicates("click_id")
    with Project.load(d) as p:
        got = dict(p.query("SELECT page, sum(pageviews) FROM web_pages GROUP BY 1").rows)
        want = b.merge(loc, on="event_id", how="left").page_url_path.fillna("(not yet)").value_counts().to_dict()
        assert {k: int(v) for k, v in got.items()} == want
        got = dict(p.query("SELECT device_type, sum(pageviews) FROM web_tech GROUP BY 1").rows)
        want = b.merge(dev, on="click_id", how="left").device_type.fillna("(not yet)").value_counts().to_dict()
        assert {k: int(v) for k, v in got.items()} == want
        got = dict(p.query("SELECT country, sum(pageviews) FROM web_geo_5min GROUP BY 1").rows)
        want = b.merge(geo, on="click_id", how="left").geo_country.fillna("(not yet)").value_counts().to_dict()
        assert {k: int(v) for k, v in got.items()} == want
        assert p.query("SELECT sum(unmatched) FROM web_pages").rows[0][0] == 0
        clicks = p.query("SELECT dt, clicks FROM web_clicks").rows
        b["bucket"] = pd.to_datetime(b.event_timestamp).dt.floor("5min")
        assert {t: int(c) for t, c in clicks} == b.groupby("bucket").click_id.nunique().to_dict()


def wait_for(cond, timeout: float = 60.0, show=None) -> float:
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if cond():
            return time.monotonic() - t0
        time.sleep(0.2)
    raise AssertionError(f"timed out{': ' + repr(show()) if show else ''}")


@pytest.fixture
def live(tmp_path, kafka_broker, monkeypatch):
    monkeypatch.setenv("EVENTMART_KAFKA", kafka_broker)
    d = tmp_path / "web"
    init_example("web", d)
    text = (d / "eventmart.yml").read_text()
    tag = str(int(time.time() * 1e6) % 10**9)
    for t in ("browser_events", "location_events", "device_events", "geo_events"):  # topics of this test alone
        text = text.replace(f"topic: {t}", f"topic: {t}_{tag}")
    (d / "eventmart.yml").write_text(text)
    p = Project.load(d)
    srv = Server(p, port=0, say=lambda m: None)
    srv.publisher.every = 1.0
    srv.start()
    yield d, p, tag, kafka_broker
    srv.stop()
    p.close()


def send(broker: str, topic: str, rows: list[dict]) -> None:
    prod = Producer({"bootstrap.servers": broker, "log_level": 3})
    for r in rows:
        prod.produce(topic, json.dumps(r).encode())
    assert prod.flush(10) == 0


def test_serve_keeps_marts_live_and_late_parts_join(live):
    d, p, tag, broker = live
    views = [{"event_id": f"e{i}", "event_timestamp": f"2022-11-28 21:{i % 60:02d}:00.000", "event_type": "pageview",
              "click_id": f"c{i % 7}", "browser_name": "Chrome"} for i in range(120)]
    send(broker, f"browser_events_{tag}", views)

    def marts() -> tuple:
        wh = p.warehouse
        if not wh.concurrent_table_exists("web_pages"):
            return (0, 0)
        return tuple(int(x or 0) for x in wh.concurrent_fetch(
            "SELECT sum(pageviews), sum(unmatched) FROM web_pages").rows[0])

    latency = wait_for(lambda: marts() == (120, 120), show=marts)  # on the dashboard, waiting for their location
    send(broker, f"location_events_{tag}", [{"event_id": f"e{i}", "page_url_path": "/home"} for i in range(90)])
    wait_for(lambda: marts() == (120, 30), show=marts)
    rows = dict(p.warehouse.concurrent_fetch("SELECT page, sum(pageviews) FROM web_pages GROUP BY 1").rows)
    assert {k: int(v) for k, v in rows.items()} == {"/home": 90, "(not yet)": 30}
    assert latency < 60
    # the Runs page shows the lag per partition of each Kafka source
    import flask

    from eventmart.server.runs_page import RunsApp
    from eventmart.sources.kafka import lag

    for name, sent in (("web_browser", 120), ("web_location", 90)):
        parts = lag(p.warehouse, name, p.config.sources[name], concurrent=True)
        assert sum(nxt or 0 for _, nxt, _, _ in parts) == sent and all(n == 0 for *_, n in parts), parts
    text = str(RunsApp(p, flask.Flask("runs-test")).lag_table())
    assert "web_browser" in text and "web_location" in text
    assert text.count("lag-row") >= 8  # four partitions each of the topics that exist
    # a SQL client other than eventmart (SQLAlchemy + duckdb-engine, as Superset connects) reads the marts while
    # serve holds the warehouse: from bi.duckdb, which serve keeps up to date
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.pool import NullPool

    wait_for(lambda: (d / "bi.duckdb").exists())
    # a connection per query (NullPool): an open connection keeps reading the file it opened
    engine = create_engine(f"duckdb:///{d / 'bi.duckdb'}", connect_args={"read_only": True}, poolclass=NullPool)

    def bi_total() -> int:
        with engine.connect() as c:
            return int(c.execute(text("SELECT sum(pageviews) - sum(unmatched) FROM web_pages")).scalar() or 0)

    assert {"web_pages", "web_tech", "web_clicks"} <= set(inspect(engine).get_table_names())
    wait_for(lambda: bi_total() == 90, show=bi_total)
    engine.dispose()


def test_a_postgres_warehouse_is_read_by_sqlalchemy_while_serve_runs(tmp_path, pg_url):
    from sqlalchemy import create_engine, text

    from conftest import events_config, write_project
    from helpers import random_events, write_events_csv

    write_events_csv(tmp_path / "data" / "e.csv", random_events(300, seed=3, hours=3))
    write_project(tmp_path, events_config({"type": "postgres", "url": pg_url}))
    p = Project.load(tmp_path)
    p.ingest("events")
    p.backfill()
    srv = Server(p, port=0, say=lambda m: None)
    srv.start()
    try:
        engine = create_engine(pg_url.replace("postgresql://", "postgresql+psycopg://"))
        with engine.connect() as c:
            assert c.execute(text("SELECT sum(events) FROM by_topic")).scalar() == 300
        engine.dispose()
        assert not (tmp_path / "bi.duckdb").exists()  # a server's clients read it directly
    finally:
        srv.stop()
        p.close()


def test_without_a_broker_binary_the_demo_names_its_mock_fallback(monkeypatch):
    import eventmart.examples as examples
    import eventmart.examples.broker as broker

    monkeypatch.setattr(broker, "tansu_binary", lambda: None)
    monkeypatch.setenv("EVENTMART_KAFKA", "")
    said: list[str] = []
    try:
        bootstrap = examples.kafka_for_demo(said.append)
    finally:
        os.environ.pop("EVENTMART_KAFKA", None)
    assert len(said) == 1 and "MOCK cluster" in said[0] and "eventmart[kafka]" in said[0], said
    p = Producer({"bootstrap.servers": bootstrap, "log_level": 3})  # and it is a cluster that takes messages
    p.produce("t", b"{}")
    assert p.flush(10) == 0
