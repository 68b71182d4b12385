"""Shared fixtures. PostgreSQL is a real throwaway cluster on a spare loopback port for the session."""

from __future__ import annotations

import copy
import os
import shutil
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pgserver import temp_postgres

# what eventmart keeps between processes (memo.py) goes to this session's folder, not the user's ~/.cache; the
# commands the tests start inherit it
os.environ.setdefault("EVENTMART_CACHE_DIR", tempfile.mkdtemp(prefix="eventmart-cache-"))


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A real PostgreSQL server; yields a base URL without database name. Fails (never skips) if it cannot start."""
    with temp_postgres() as url:
        yield url


@pytest.fixture
def pg_url(pg_server: str) -> Iterator[str]:
    """A fresh database per test."""
    import psycopg

    name = f"t{int(time.time() * 1e6) % 10**12}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as c:
        c.execute(f'CREATE DATABASE "{name}"')
    yield f"{pg_server}/{name}"
    with psycopg.connect(f"{pg_server}/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture(scope="session")
def ch_folder(tmp_path_factory) -> Path:
    """One chDB folder for the session (chDB opens one folder per process); each test gets its own database."""
    return tmp_path_factory.mktemp("chdb") / "store"


@pytest.fixture
def ch_warehouse(ch_folder: Path) -> dict:
    """An embedded ClickHouse (chDB) warehouse in a fresh database."""
    return {"type": "clickhouse", "path": str(ch_folder), "database": f"t{int(time.time() * 1e6) % 10**12}"}


@pytest.fixture(scope="session")
def ch_server(tmp_path_factory) -> Iterator[dict]:
    """chDB's engine behind ClickHouse's HTTP interface on loopback (tests/chserver.py), with a password; yields
    {"url": base URL with credentials, "host_url": without, "password": …}. Fails (never skips) if it cannot start."""
    import subprocess
    import sys
    import urllib.request

    from pgserver import free_port

    port, password = free_port(), "pw-" + str(int(time.time() * 1000))
    folder = tmp_path_factory.mktemp("chserver")
    proc = subprocess.Popen([sys.executable, str(Path(__file__).parent / "chserver.py"), "--path", str(folder / "store"),
                             "--port", str(port), "--user", "eventmart"],
                            env={**__import__("os").environ, "CHSERVER_PASSWORD": password},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/ping", timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the ClickHouse stand-in did not start: {proc.stderr.read().decode()[-500:]}") from None
            time.sleep(0.2)
    try:
        yield {"url": f"http://eventmart:{password}@127.0.0.1:{port}", "host_url": f"http://127.0.0.1:{port}",
               "password": password}
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture(scope="session")
def s3_server() -> Iterator[str]:
    """A real S3 API server on loopback (moto's server process, over HTTP); yields its endpoint URL."""
    import subprocess
    import sys
    import tempfile
    import urllib.request

    from pgserver import free_port

    port = free_port()
    exe = Path(sys.executable).parent / "moto_server"
    # its log (a line per request) goes to a file: into an unread pipe it would fill the pipe and stop the server
    # mid-session — a Kafka broker keeping its log on S3 sends thousands of requests
    log = tempfile.TemporaryFile()
    proc = subprocess.Popen([str(exe), "-H", "127.0.0.1", "-p", str(port)], stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while True:
        try:
            urllib.request.urlopen(url, timeout=1).read()
            break
        except OSError:
            if proc.poll() is not None or time.monotonic() > deadline:
                log.seek(0)
                raise RuntimeError(f"moto_server did not start: {log.read().decode()[-500:]}") from None
            time.sleep(0.1)
    try:
        yield url
    finally:
        proc.kill()
        proc.wait()
        log.close()


@pytest.fixture
def s3(s3_server, monkeypatch):
    """A boto3 client on the loopback S3 server with test credentials in the environment (as users set them), and a
    fresh bucket; yields (client, bucket, endpoint)."""
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    client = boto3.client("s3", endpoint_url=s3_server, region_name="us-east-1")
    bucket = f"b{int(time.time() * 1e6) % 10**12}"
    client.create_bucket(Bucket=bucket)
    yield client, bucket, s3_server


@pytest.fixture(scope="session")
def kafka_broker() -> Iterator[str]:
    """A Kafka broker process (Tansu, in memory: topics auto-create with 4 partitions); yields its bootstrap
    address. Fails (never skips) when it cannot start."""
    from eventmart.examples.broker import Broker

    with Broker() as b:
        yield b.bootstrap


ENGINES = ["duckdb", "postgres", "clickhouse"]


@pytest.fixture(params=ENGINES)
def engine(request) -> dict:
    """The warehouse section for each engine in turn: DuckDB (a file), PostgreSQL (a fresh database on the
    session's server), ClickHouse (chDB, a fresh database). Tests use it as ``events_config(engine)``."""
    if request.param == "postgres":
        return {"type": "postgres", "url": request.getfixturevalue("pg_url")}
    if request.param == "clickhouse":
        return request.getfixturevalue("ch_warehouse")
    return {"type": "duckdb"}


def variant(warehouse: dict | None, tag: str) -> dict | None:
    """The same engine, another namespace: for tests that need two warehouses side by side."""
    if not warehouse or warehouse["type"] == "duckdb":
        return warehouse
    if warehouse["type"] == "postgres":
        return {**warehouse, "schema": f"s_{tag}"}
    return {**warehouse, "database": f"{warehouse['database']}_{tag}"}


def write_project(d: Path, config: dict) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    (d / "eventmart.yml").write_text(yaml.safe_dump(config, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return d


EVENTS_SOURCE = {
    "format": "csv",
    "path": "data/*.csv",
    "columns": {"id": "int", "user_id": "int", "action": "string", "topic": "string", "amount": "float?",
                "ts": "int"},
    "time": {"column": "ts", "unit": "ms"},
    "key": ["id"],
}


def events_config(warehouse: dict | None = None, grain: str = "1 minute", **extra_marts) -> dict:
    marts = {
        "by_topic": {
            "from": "events",
            "grain": grain,
            "dimensions": ["dt", "topic", "action"],
            "measures": {
                "events": "count()",
                "users": "count_distinct(user_id)",
                "likes": "count_if(action = 'like')",
                "amount_sum": "sum(amount)",
                "amount_min": "min(amount)",
                "amount_max": "max(amount)",
            },
        },
        **extra_marts,
    }
    return copy.deepcopy({"name": "t", "warehouse": warehouse or {"type": "duckdb"},
                          "sources": {"events": EVENTS_SOURCE}, "marts": marts})


# --- a real headless Chromium (Debian's, driven by Playwright; never downloaded) ----------------------------------

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                 "--disable-background-networking", "--disable-component-update", "--no-first-run", "--disable-sync",
                 "--disable-quic"]


@pytest.fixture(scope="module")
def browser() -> Iterator:
    from playwright.sync_api import sync_playwright

    exe = shutil.which("chromium")
    assert exe, "Debian's chromium is not installed: run `make test` (it installs chromium and chromium-driver)"
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser):
    ctx = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = ctx.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    ctx.close()
    assert not errors, errors
