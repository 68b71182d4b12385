"""Where the data lives and how user SQL may use it: `warehouse:` and `query:`."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, model_validator

from ..timeutil import parse_duration
from .base import Strict, _at, _Problems, parse_size


class Warehouse(Strict):
    type: Literal["duckdb", "postgres", "clickhouse"] = "duckdb"  # the engine
    path: str = ""  # duckdb: its file in the project folder; clickhouse without url: chDB's folder
    url: str | None = None  # postgres: default from $EVENTMART_PG_URL; clickhouse: a server (default: embedded)
    schema_: str | None = Field(default=None, alias="schema")  # postgres schema (default: public)
    read_url: str | None = None  # postgres: a read-only role for `eventmart query` (default: url, read-only)
    database: str | None = None  # clickhouse: the database (default: the URL's, else `default`)
    cluster: str | None = None  # clickhouse server: a cluster name; tables are Replicated, reads Distributed
    memory_limit: str | None = None  # duckdb: its memory before it spills to disk, e.g. 8GB (default: half the RAM)

    @model_validator(mode="after")
    def _defaults(self) -> Warehouse:
        if not self.path:
            self.path = "warehouse.chdb" if self.type == "clickhouse" else "warehouse.duckdb"
        if self.cluster and (self.type != "clickhouse" or not self.url):
            raise _at("cluster", "a cluster is a ClickHouse server setting (type: clickhouse with url:)")
        if self.database is not None and self.type != "clickhouse":
            raise _at("database", "database is a ClickHouse setting; PostgreSQL takes it in the URL")
        if self.memory_limit is not None and self.type != "duckdb":
            raise _at("memory_limit", "memory_limit is a DuckDB setting; a server engine has its own")
        if self.memory_limit is not None and not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)",
                                                              self.memory_limit.strip()):
            raise _at("memory_limit", f"'{self.memory_limit}' is not a size like 512MB, 8GB or 16GiB")
        if self.database is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.database):
            raise _at("database", f"'{self.database}' is not a plain name (letters, digits, _)")
        return self


class QuerySettings(Strict):
    """Limits on user SQL (`eventmart query`, the local API): one read may not hold the warehouse or the server's
    memory. `eventmart query SQL --out FILE` streams a whole result to a file, past max_rows and max_bytes."""

    timeout: str = "1 minute"  # a read running longer is cancelled (0 seconds: never)
    max_rows: int = Field(default=100_000, ge=1)  # rows a result may have
    max_bytes: str = "64MB"  # what a result may weigh, as text
    memory: str = "1GB"  # what one read may use where the engine bounds it (ClickHouse; PostgreSQL: work_mem / 16)

    @model_validator(mode="after")
    def _check(self) -> QuerySettings:
        with _Problems() as bad:
            try:
                parse_duration(self.timeout)
            except ValueError as e:
                bad.add("timeout", str(e))
            for key in ("max_bytes", "memory"):
                try:
                    parse_size(getattr(self, key))
                except ValueError as e:
                    bad.add(key, str(e))
        return self

    @property
    def timeout_seconds(self) -> float | None:
        return float(parse_duration(self.timeout)) or None
