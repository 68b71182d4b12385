"""Shared fixtures. PostgreSQL is a real throwaway cluster on a spare loopback port for the session."""

from __future__ import annotations

import copy
import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _pg_bin() -> Path:
    hits = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if not hits:
        raise RuntimeError("PostgreSQL is not installed: run `make test` (it installs Debian's postgresql)")
    return Path(hits[-1]).parent


@pytest.fixture(scope="session")
def pg_server() -> Iterator[str]:
    """A real PostgreSQL server; yields a base URL without database name. Fails (never skips) if it cannot start."""
    bindir = _pg_bin()
    root = Path(tempfile.mkdtemp(prefix="eventmart-pg-"))
    data = root / "data"
    port = _free_port()
    as_root = os.geteuid() == 0
    # initdb refuses to run as root: run the cluster as the postgres user then
    prefix = ["runuser", "-u", "postgres", "--"] if as_root else []
    if as_root:
        shutil.chown(root, "postgres", "postgres")
    subprocess.run([*prefix, str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
                    "--no-sync", "-E", "UTF8", "--locale=C.UTF-8"], check=True, capture_output=True)
    opts = (f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off "
            "-c full_page_writes=off")
    subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-w", "-l", str(root / "log"), "-o", opts,
                    "start"], check=True, capture_output=True)
    try:
        yield f"postgresql://postgres@127.0.0.1:{port}"
    finally:
        subprocess.run([*prefix, str(bindir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop"],
                       capture_output=True)
        shutil.rmtree(root, ignore_errors=True)


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
