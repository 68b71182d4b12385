"""Warehouse adapters: DuckDB (default, embedded) and PostgreSQL."""

from __future__ import annotations

import os
from pathlib import Path

from ..config import Warehouse as WarehouseConfig
from ..errors import ProjectError
from .base import QueryResult, Warehouse, quote_ident

__all__ = ["QueryResult", "Warehouse", "open_warehouse", "quote_ident"]


def open_warehouse(cfg: WarehouseConfig, project_dir: Path, read_only: bool = False) -> Warehouse:
    if cfg.type == "duckdb":
        from .duckdb import DuckDBWarehouse

        return DuckDBWarehouse(project_dir / cfg.path, read_only=read_only)
    from .postgres import PostgresWarehouse

    url = cfg.url or os.environ.get("EVENTMART_PG_URL")
    if not url:
        raise ProjectError(
            f"{project_dir / 'eventmart.yml'}: warehouse.url: a postgres warehouse needs a URL; "
            "set warehouse.url: ${MY_PG_URL} or export EVENTMART_PG_URL"
        )
    return PostgresWarehouse(url, cfg.schema_, read_only=read_only, read_url=cfg.read_url)
