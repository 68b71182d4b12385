"""Warehouse adapters: DuckDB (default, embedded), PostgreSQL, ClickHouse (embedded chDB or a server)."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Warehouse as WarehouseConfig
from ..errors import ProjectError
from .base import QueryResult, Warehouse, quote_ident

__all__ = ["QueryResult", "Warehouse", "open_warehouse", "quote_ident", "single_writer"]


def single_writer(cfg: WarehouseConfig) -> bool:
    """Whether one process at a time may open the warehouse (an embedded engine's files): then, while
    `eventmart serve` holds it, other commands go through the server."""
    return cfg.type == "duckdb" or (cfg.type == "clickhouse" and not cfg.url)


def open_warehouse(cfg: WarehouseConfig, project_dir: Path, read_only: bool = False) -> Warehouse:
    """The adapter for ``cfg``. ``read_only``: nothing will be written (an embedded file is opened read-only, or an
    empty in-memory warehouse stands in while there is no file yet)."""
    if cfg.type == "duckdb":
        from .duckdb import DuckDBWarehouse

        path = project_dir / cfg.path
        if read_only and not path.exists():
            return DuckDBWarehouse(None, read_only=True)
        return DuckDBWarehouse(path, read_only=read_only, memory_limit=cfg.memory_limit)
    if cfg.type == "clickhouse":
        from .clickhouse import open_clickhouse

        return open_clickhouse(cfg, project_dir, read_only=read_only)
    from .postgres import PostgresWarehouse

    url = cfg.url or os.environ.get("EVENTMART_PG_URL")
    if not url:
        raise ProjectError(
            f"{project_dir / 'eventmart.yml'}: warehouse.url: a postgres warehouse needs a URL; "
            "set warehouse.url: ${MY_PG_URL} or export EVENTMART_PG_URL"
        )
    return PostgresWarehouse(url, cfg.schema_, read_only=read_only, read_url=cfg.read_url)


def restore(cfg: WarehouseConfig, project_dir: Path, backup: Path) -> str:
    """Bring ``backup`` back as the warehouse; returns what was done. An embedded file is replaced without opening
    it (it may be the damaged one); a server's warehouse is restored through a connection."""
    if cfg.type == "duckdb":
        from .duckdb import DuckDBWarehouse

        return DuckDBWarehouse.restore_file(project_dir / cfg.path, backup)
    wh = open_warehouse(cfg, project_dir)
    try:
        return wh.restore_from(backup)
    finally:
        wh.close()
