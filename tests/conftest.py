"""Shared fixtures. PostgreSQL is a real throwaway cluster on a spare loopback port for the session."""

from __future__ import annotations

import copy
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from pgserver import temp_postgres


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
