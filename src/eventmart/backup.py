"""Backups of the warehouse: a consistent, timestamped copy, verified by restoring it to scratch.

How a copy is taken and verified is the engine's (``Warehouse.backup_to``: DuckDB ``COPY FROM DATABASE``,
PostgreSQL ``pg_dump``, ClickHouse a Native dump per table); here: names, timestamps, and keeping the newest
``keep`` copies.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from .errors import UserError
from .timeutil import utcnow
from .warehouse import Warehouse

STAMP = "%Y%m%dT%H%M%SZ"


@dataclass
class BackupResult:
    path: Path
    tables: dict[str, int]
    seconds: float
    removed: list[Path]

    def line(self) -> str:
        rows = sum(self.tables.values())
        return (f"backup {self.path.name}: {len(self.tables)} table(s), {rows:,} rows, verified by restore "
                f"in {self.seconds:.2f}s" + (f"; removed {len(self.removed)} older" if self.removed else ""))


# --- the command -----------------------------------------------------------------------------------


def backup(wh: Warehouse, directory: Path, keep: int, now: datetime | None = None) -> BackupResult:
    t0 = time.perf_counter()
    directory.mkdir(parents=True, exist_ok=True)
    stamp = (now or utcnow()).strftime(STAMP)
    ext = wh.backup_suffix
    target = directory / f"warehouse-{stamp}.{ext}"
    if target.exists():
        raise UserError(f"{target}: a backup with this timestamp exists already; wait a second and retry")
    tables = wh.backup_to(target)
    copies = sorted(directory.glob(f"warehouse-*.{ext}"))
    removed = copies[:-keep] if len(copies) > keep else []
    for old in removed:
        old.unlink()
    return BackupResult(target, tables, time.perf_counter() - t0, removed)

