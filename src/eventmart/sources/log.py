"""The ingest log: what each load did (its id, files, counts, time span), listed by `eventmart ingests`, and
`eventmart ingests undo ID`, which removes exactly one load's rows."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ..errors import UserError
from ..rawtables import FILES, INGESTS, SEQ
from ..warehouse import Warehouse


@dataclass
class IngestResult:
    source: str
    files: list[str]
    read: int = 0  # lines (records) read
    loaded: int = 0
    duplicates: int = 0
    rejected: int = 0
    min_time: datetime | None = None
    max_time: datetime | None = None
    seconds: float = 0.0
    reasons: dict[str, int] = field(default_factory=dict)
    skipped: list[str] = field(default_factory=list)  # unchanged since loaded
    id: int | None = None
    notes: list[str] = field(default_factory=list)  # what the user should know (a Kafka offset that was reset)
    bad_files: list[tuple[str, str]] = field(default_factory=list)  # (file, why) not read at all (bad_files.py)

    def summary(self) -> str:
        read = len(self.files) - len(self.skipped) - len(self.bad_files)
        stream = self.files and self.files[0].startswith("kafka://")
        s = (f"{self.source}: {self.loaded:,} loaded, {self.duplicates:,} duplicate, {self.rejected:,} rejected "
             + (f"from {self.files[0]}" if stream else f"from {read} file(s)") + f" in {self.seconds:.2f}s")
        if self.skipped:
            s += f"; {len(self.skipped)} unchanged file(s) skipped (--force reads them again)"
        if self.bad_files:
            s += f"; {len(self.bad_files)} file(s) not read (below; tried again when they change)"
        return "; ".join([s, *self.notes])


def _next_ingest(wh: Warehouse) -> int:
    return int(wh.fetch(f"SELECT {wh.next_value_sql(SEQ)}").rows[0][0])


def _log(wh: Warehouse, res: IngestResult, seconds: float, status: str) -> None:
    wh.execute(f"UPDATE {wh.q(INGESTS)} SET seconds = {{{{ sec }}}}, loaded = {{{{ l }}}}, duplicates = {{{{ d }}}}, "
               "rejected = {{ r }}, min_time = {{ mn }}, max_time = {{ mx }}, status = {{ st }} WHERE id = {{ id }}",
               {"sec": seconds, "l": res.loaded, "d": res.duplicates, "r": res.rejected, "mn": res.min_time,
                "mx": res.max_time, "st": status, "id": res.id})


def list_ingests(wh: Warehouse, source: str | None = None, limit: int = 50) -> tuple[list[str], list[tuple]]:
    cols = ["id", "source", "started_at", "files", "loaded", "duplicates", "rejected", "min_time", "max_time",
            "status"]
    if wh.table_columns(INGESTS) is None:
        return cols, []
    where, params = ("WHERE source = {{ s }}", {"s": source}) if source else ("", {})
    from ..ledger import _alive

    rows = wh.fetch(f"SELECT id, source, started_at, files, loaded, duplicates, rejected, min_time, max_time, "
                    f"COALESCE(status, 'ok'), owner FROM {wh.q(INGESTS)} {where} ORDER BY started_at DESC, id DESC "
                    f"LIMIT {int(limit)}", params).rows
    out = []
    for r in rows:
        files = (r[3] or "").split("\n")
        label = Path(files[0]).name + (f" (+{len(files) - 1})" if len(files) > 1 else "")
        status = "interrupted (ingest again to resume)" if r[9] == "running" and not _alive(r[10]) else r[9]
        out.append((r[0], r[1], r[2], label, *r[4:9], status))
    return cols, out


@dataclass
class UndoResult:
    ingest: int
    source: str
    rows: int
    rejects: int
    windows: dict[str, int]  # mart -> windows re-opened

    def line(self) -> str:
        w = ", ".join(f"{m}: {n}" for m, n in self.windows.items() if n) or "none"
        return (f"ingest {self.ingest} ({self.source}) undone: {self.rows:,} row(s) and {self.rejects:,} reject(s) "
                f"removed; windows to recompute: {w} (eventmart backfill)")


def undo_ingest(wh: Warehouse, ingest: int, marts: dict[str, list[str]], step: int = 60) -> UndoResult:
    """Remove exactly the rows of one ingest, mark the mart windows they were in as stale; one transaction.

    ``marts``: source -> the marts that read it; ``step``: seconds that divide every window boundary of theirs
    (the load's event times are looked at to that precision)."""
    from ..ledger import invalidate

    if wh.table_columns(INGESTS) is None:
        raise UserError(f"no ingest {ingest}: nothing has been loaded yet")
    row = wh.fetch(f"SELECT source, COALESCE(status, 'ok') FROM {wh.q(INGESTS)} WHERE id = {{{{ i }}}}",
                   {"i": ingest}).rows
    if not row:
        raise UserError(f"no ingest {ingest}; list them with `eventmart ingests`")
    source, status = row[0]
    if status == "undone":
        raise UserError(f"ingest {ingest} was undone already")
    if status == "running":
        from ..ledger import _alive

        owner = wh.fetch(f"SELECT owner FROM {wh.q(INGESTS)} WHERE id = {{{{ i }}}}", {"i": ingest}).rows[0][0]
        if _alive(owner):
            raise UserError(f"ingest {ingest} is still running ({owner}); wait for it or stop it first")
    with wh.transaction():
        wh.lock(f"source:{source}")
        windows = {}
        raw = wh.q(source)
        # which mart windows held the load's rows: their times floored to a step that no boundary falls inside
        times = [r[0] for r in wh.fetch(f"SELECT DISTINCT {wh.bucket_sql('_time', step)} FROM {raw} "
                                        "WHERE _ingest = {{ i }}", {"i": ingest}).rows] if marts.get(source) else []
        for mart in marts.get(source, []):
            windows[mart] = invalidate(wh, mart, times)
        rows = wh.delete_rows(source, "_ingest = {{ i }}", {"i": ingest})
        rejects = wh.delete_rows(source + "_rejects", "ingest = {{ i }}", {"i": ingest})
        wh.execute(f"DELETE FROM {wh.q(FILES)} WHERE ingest = {{{{ i }}}}", {"i": ingest})
        wh.execute(f"UPDATE {wh.q(INGESTS)} SET status = 'undone' WHERE id = {{{{ i }}}}", {"i": ingest})
    return UndoResult(ingest, source, max(rows, 0), max(rejects, 0), windows)
