"""Ingest: read, validate, keep rejects, load each key once — all in one warehouse transaction."""

from __future__ import annotations

import glob
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from ..config import Source
from ..errors import InputError, ProjectError
from ..timeutil import utcnow
from ..warehouse import Warehouse
from . import readers
from .readers import GOOD, REJ

INGESTS = "_eventmart_ingests"
REJECT_COLUMNS = ["rejected_at", "file", "line", "raw", "reason", "fmt", "header"]


@dataclass
class IngestResult:
    source: str
    files: list[str]
    read: int = 0
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    min_time: datetime | None = None
    max_time: datetime | None = None
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)

    def summary(self) -> str:
        return (
            f"{self.source}: {self.loaded:,} loaded, {self.duplicates:,} duplicate, {self.rejected:,} rejected "
            f"from {len(self.files)} file(s) in {self.seconds:.2f}s"
        )


def raw_columns(wh: Warehouse, src: Source) -> list[tuple[str, str]]:
    return [(n, wh.type_name(c.type)) for n, c in src.columns.items()] + [
        ("_time", wh.type_name("timestamp")),
        ("_loaded_at", wh.type_name("timestamp")),
    ]


def _evolve(wh: Warehouse, name: str, src: Source) -> None:
    """Follow the declared schema: add new columns, change types (e.g. after a fix, before a replay)."""
    have = wh.column_types(name)
    for col, c in src.columns.items():
        if col not in have:
            wh.execute(f"ALTER TABLE {wh.q(name)} ADD COLUMN {wh.q(col)} {wh.type_name(c.type)}")
        elif have[col] != c.type:
            try:
                wh.alter_column_type(name, col, c.type)
            except Exception as e:  # the engine says why stored values do not fit
                raise ProjectError(
                    f"sources.{name}.columns.{col}: cannot change the loaded column from {have[col]} to {c.type} "
                    f"({str(e).splitlines()[0][:160]}); declare a type the loaded values fit"
                ) from None


def ensure_tables(wh: Warehouse, name: str, src: Source) -> None:
    if wh.table_columns(name) is None:
        wh.create_table(name, raw_columns(wh, src), primary_key=src.key)
    else:
        _evolve(wh, name, src)
    wh.create_table(
        f"{name}_rejects",
        [
            ("rejected_at", wh.type_name("timestamp")),
            ("file", wh.type_name("string")),
            ("line", wh.type_name("int")),
            ("raw", wh.type_name("string")),
            ("reason", wh.type_name("string")),
            ("fmt", wh.type_name("string")),
            ("header", wh.type_name("string")),
        ],
    )
    wh.create_table(
        INGESTS,
        [
            ("source", wh.type_name("string")),
            ("files", wh.type_name("string")),
            ("started_at", wh.type_name("timestamp")),
            ("seconds", wh.type_name("float")),
            ("loaded", wh.type_name("int")),
            ("duplicates", wh.type_name("int")),
            ("rejected", wh.type_name("int")),
            ("min_time", wh.type_name("timestamp")),
            ("max_time", wh.type_name("timestamp")),
        ],
    )


def resolve_files(src: Source, name: str, files: list[str] | None, project_dir: Path) -> list[str]:
    """Explicit files as given (relative to the current folder); else the source's globs in the project."""
    if files:
        out: list[str] = []
        for f in files:
            hits = sorted(glob.glob(f)) if any(ch in f for ch in "*?[") else [f]
            if not hits:
                raise InputError(f"{f}: no file matches; check the path")
            out.extend(hits)
        return out
    if not src.paths:
        raise InputError(f"sources.{name}.path is not set; give files: eventmart ingest {name} FILE...")
    out = []
    for p in src.paths:
        pattern = str(project_dir / p)
        hits = sorted(glob.glob(pattern)) if any(ch in p for ch in "*?[") else [pattern]
        if not hits:
            raise InputError(f"sources.{name}.path: no file matches {pattern}; put data there or pass files")
        out.extend(hits)
    return out


def _stage_counts(con: Any) -> tuple[int, int, dict[str, int]]:
    good = con.execute(f"SELECT count(*) FROM {GOOD}").fetchone()[0]
    rej = con.execute(f"SELECT count(*) FROM {REJ}").fetchone()[0]
    reasons = dict(
        con.execute(
            f"SELECT regexp_replace(reason, ':.*', ''), count(*) FROM {REJ} GROUP BY 1 ORDER BY 2 DESC"
        ).fetchall()
    )
    return good, rej, reasons


def _drop_known_rejects(wh: Warehouse, con: Any, name: str) -> None:
    """Reading a file again must not store its bad rows twice: drop those already kept."""
    files = [r[0] for r in con.execute(f"SELECT DISTINCT file FROM {REJ}").fetchall()]
    params = {f"f{i}": f for i, f in enumerate(files)}
    marks = ", ".join(f"{{{{ f{i} }}}}" for i in range(len(files)))
    known = wh.fetch_arrow(
        f"SELECT file, line, raw FROM {wh.q(name + '_rejects')} WHERE file IN ({marks})", params
    )
    if known.num_rows:
        con.register("_em_known", known)
        con.execute(
            f"DELETE FROM {REJ} r WHERE EXISTS (SELECT 1 FROM _em_known k WHERE k.file = r.file "
            "AND k.line = r.line AND k.raw = r.raw)"
        )
        con.unregister("_em_known")


def _commit(wh: Warehouse, name: str, src: Source, res: IngestResult, started: datetime,
            before_commit: Any = None) -> None:
    """Move the staged good rows and rejects into the warehouse in one transaction."""
    con = wh.staging()
    cols = list(src.columns) + ["_time", "_loaded_at"]
    con.execute(f"ALTER TABLE {GOOD} ADD COLUMN IF NOT EXISTS _loaded_at TIMESTAMP")
    con.execute(f"UPDATE {GOOD} SET _loaded_at = $t", {"t": started})
    con.execute(f"UPDATE {REJ} SET rejected_at = COALESCE(rejected_at, $t)", {"t": started})
    if res.read:
        res.min_time, res.max_time = con.execute(f"SELECT min(_time), max(_time) FROM {GOOD}").fetchone()
    with wh.transaction():
        ensure_tables(wh, name, src)
        res.loaded = wh.append_new(con, GOOD, name, cols, src.key) if res.read else 0
        res.duplicates = res.read - res.loaded
        if before_commit is not None:
            before_commit()
        if res.rejected:
            _drop_known_rejects(wh, con, name)
            wh.append_all(con, REJ, f"{name}_rejects", REJECT_COLUMNS)
        res.seconds = time.perf_counter() - res.seconds
        wh.execute(
            f"INSERT INTO {wh.q(INGESTS)} VALUES ({{{{ s }}}}, {{{{ f }}}}, {{{{ t }}}}, {{{{ sec }}}}, "
            "{{ l }}, {{ d }}, {{ r }}, {{ mn }}, {{ mx }})",
            {"s": name, "f": "\n".join(res.files)[:10000], "t": started, "sec": res.seconds, "l": res.loaded,
             "d": res.duplicates, "r": res.rejected, "mn": res.min_time, "mx": res.max_time},
        )
    con.execute(f"DROP TABLE IF EXISTS {GOOD}; DROP TABLE IF EXISTS {REJ}")


def ingest(wh: Warehouse, name: str, src: Source, files: list[str], progress: Any = None) -> IngestResult:
    """Load files (or, for a postgres source, its table) into the raw table ``name``."""
    res = IngestResult(name, files, seconds=time.perf_counter())
    started = utcnow()
    con = wh.staging()
    readers.init_stage(con, src)
    if src.format == "postgres":
        from .database import stage_postgres_table

        stage_postgres_table(con, src, name)
    else:
        for f in files:
            # every file is checked before any row is written: an unusable file aborts the whole load
            readers.stage_file(con, src, f)
            if progress:
                progress(f)
    res.read, res.rejected, res.reasons = _stage_counts(con)
    _commit(wh, name, src, res, started)
    return res


def list_rejects(wh: Warehouse, name: str, limit: int | None = None) -> tuple[list[str], list[tuple]]:
    table = f"{name}_rejects"
    if wh.table_columns(table) is None:
        return ["file", "line", "reason", "raw", "rejected_at"], []
    lim = f" LIMIT {int(limit)}" if limit else ""
    r = wh.fetch(
        f"SELECT file, line, reason, raw, rejected_at FROM {wh.q(table)} ORDER BY rejected_at, file, line{lim}"
    )
    return r.columns, r.rows


def replay_rejects(wh: Warehouse, name: str, src: Source) -> IngestResult:
    """Validate every stored reject again (e.g. after fixing the declared schema) and load those that pass."""
    table = f"{name}_rejects"
    res = IngestResult(name, ["<rejects>"], seconds=time.perf_counter())
    if wh.table_columns(table) is None:
        return res
    stored = wh.fetch(
        f"SELECT rejected_at, file, line, raw, reason, fmt, header FROM {wh.q(table)} ORDER BY rejected_at, file, line"
    ).rows
    if not stored:
        return res
    started = utcnow()
    con = wh.staging()
    readers.init_stage(con, src)
    origin = readers.stage_replay(con, src, [(i, r[3], r[5], r[6]) for i, r in enumerate(stored)])
    again = con.execute(f"SELECT file, line, reason FROM {REJ}").fetchall()
    kept = [(stored[origin[(f, ln)]], reason) for f, ln, reason in again]
    con.execute(f"DELETE FROM {REJ}")
    # rows rejected again keep their original file, line and first rejection time
    con.executemany(
        f"INSERT INTO {REJ} (file, line, raw, reason, fmt, header, rejected_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [(r[1], r[2], r[3], reason, r[5], r[6], r[0]) for r, reason in kept],
    )
    res.read, res.rejected, res.reasons = _stage_counts(con)

    def clear_old() -> None:
        wh.execute(f"DELETE FROM {wh.q(table)}")

    _commit(wh, name, src, res, started, before_commit=clear_old)
    return res
