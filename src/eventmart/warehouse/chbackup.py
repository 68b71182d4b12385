"""ClickHouse backups: each table's DDL and its rows in ClickHouse's Native format, in one tar file with a manifest,
verified by restoring it into a scratch database of the same engine before it is kept. ``wh``: the
ClickHouseWarehouse (its client, statements and quoting)."""

from __future__ import annotations

import io
import json
import os
import re
import tarfile
import uuid
from pathlib import Path
from typing import Any

from ..errors import UserError
from .base import keep_verified


def _tables(wh: Any) -> list[tuple[str, str]]:
    return [(n, ddl) for n, ddl in wh.fetch(
        "SELECT name, create_table_query FROM system.tables WHERE database = currentDatabase() AND NOT is_temporary "
        "AND engine LIKE '%MergeTree' AND name NOT LIKE '\\_em\\_stage\\_%' ORDER BY name").rows]


def _create_in(wh: Any, ddl: str, database: str, name: str) -> str:
    # `CREATE TABLE db.name (…)` → the same table in ``database``
    head = re.match(r"CREATE TABLE\s+(\S+)\s", ddl)
    if head is None:
        raise RuntimeError(f"unexpected DDL for {name}")
    return f"CREATE TABLE {wh.q(database)}.{wh.q(name)} " + ddl[head.end():]


def _load_into(wh: Any, database: str, tables: dict, tar: tarfile.TarFile) -> dict[str, int]:
    counts = {}
    for name, meta in tables.items():
        wh.execute(f"DROP TABLE IF EXISTS {wh.q(database)}.{wh.q(name)} SYNC")
        wh.execute(_create_in(wh, meta["ddl"], database, name))
        member = tar.extractfile(f"{name}.native")
        if meta["rows"]:
            wh.client.raw_insert(f"{wh.q(database)}.{wh.q(name)}", insert_block=member.read(), fmt="Native")
        counts[name] = int(wh.fetch(f"SELECT count() FROM {wh.q(database)}.{wh.q(name)}").rows[0][0])
    return counts


def backup(wh: Any, target: Path) -> dict[str, int]:
    tmp = target.with_suffix(".partial")
    tables: dict[str, dict] = {}
    with tarfile.open(tmp, "w") as tar:
        for name, ddl in _tables(wh):
            data = wh.client.raw_query(f"SELECT * FROM {wh.q(name)} FORMAT Native")
            rows = int(wh.fetch(f"SELECT count() FROM {wh.q(name)}").rows[0][0])
            tables[name] = {"ddl": ddl, "rows": rows}
            info = tarfile.TarInfo(f"{name}.native")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        manifest = json.dumps({"tables": tables}, ensure_ascii=False).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    want = {n: m["rows"] for n, m in tables.items()}
    # restore to scratch: a database of its own on the same engine must hold the same rows
    scratch = f"_em_verify_{os.getpid()}_{uuid.uuid4().hex[:8]}"
    wh.execute(f"CREATE DATABASE {wh.q(scratch)}")
    try:
        with tarfile.open(tmp) as tar:
            got = _load_into(wh, scratch, tables, tar)
    finally:
        wh.execute(f"DROP DATABASE IF EXISTS {wh.q(scratch)} SYNC")
    return keep_verified(tmp, target, got, want)


def restore(wh: Any, path: Path) -> str:
    try:
        with tarfile.open(path) as tar:
            tables = json.loads(tar.extractfile("manifest.json").read())["tables"]
            counts = _load_into(wh, wh.database, tables, tar)
    except (tarfile.TarError, KeyError, json.JSONDecodeError) as e:
        raise UserError(f"{path}: not an eventmart ClickHouse backup ({e})") from None
    return f"restored {path.name}: {len(counts)} table(s), {sum(counts.values()):,} rows"
