"""Files a source cannot read at all (gzip bytes named .csv, a header without the declared columns): kept on a list
of their own instead of stopping the source, so the good files beside them load and a scheduled source never stalls.

A listed file is passed by while it is unchanged (size and modification time) and tried again as soon as it
changes; a file that loads leaves the list. `status`, `ingests` and the Runs page show the list; `eventmart ingest`
ends with exit status 3 ("done, with rejected files") while a file it was asked to read is on it.
"""

from __future__ import annotations

import os
from datetime import datetime

from ..warehouse import Warehouse

BAD_FILES = "_eventmart_bad_files"
COLUMNS = [("source", "string"), ("path", "string"), ("label", "string"), ("size", "int"), ("mtime_ns", "int"),
           ("reason", "string"), ("rejected_at", "timestamp")]
EXIT_REJECTED_FILES = 3


def ensure(wh: Warehouse) -> None:
    if wh.table_columns(BAD_FILES) is None:
        wh.lock("bad-files")
        if wh.table_columns(BAD_FILES) is None:
            wh.create_table(BAD_FILES, [(c, wh.type_name(t)) for c, t in COLUMNS])


def still_bad(wh: Warehouse, source: str, path: str) -> str | None:
    """The reason a listed file was rejected, while it is unchanged; None when it is not listed or has changed."""
    if wh.table_columns(BAD_FILES) is None:
        return None
    rows = wh.fetch(f"SELECT size, mtime_ns, reason FROM {wh.q(BAD_FILES)} WHERE source = {{{{ s }}}} "
                    "AND path = {{ p }}", {"s": source, "p": path}).rows
    if not rows:
        return None
    size, mtime, reason = rows[0]
    st = os.stat(path)
    return reason if (size, mtime) == (st.st_size, st.st_mtime_ns) else None


def reject(wh: Warehouse, source: str, path: str, label: str, reason: str, now: datetime) -> None:
    """List the file (inside the caller's transaction), replacing what was listed for it."""
    ensure(wh)
    st = os.stat(path)
    clear(wh, source, path)
    wh.execute(f"INSERT INTO {wh.q(BAD_FILES)} (source, path, label, size, mtime_ns, reason, rejected_at) VALUES "
               "({{ s }}, {{ p }}, {{ l }}, {{ n }}, {{ m }}, {{ r }}, {{ t }})",
               {"s": source, "p": path, "l": label, "n": st.st_size, "m": st.st_mtime_ns, "r": reason, "t": now})


def clear(wh: Warehouse, source: str, path: str) -> None:
    """Take the file off the list (it loaded, or it is listed again)."""
    if wh.table_columns(BAD_FILES) is not None:
        wh.execute(f"DELETE FROM {wh.q(BAD_FILES)} WHERE source = {{{{ s }}}} AND path = {{{{ p }}}}",
                   {"s": source, "p": path})


def listing(wh: Warehouse, source: str | None = None, concurrent: bool = False) -> tuple[list[str], list[tuple]]:
    """(columns, rows) of the listed files that still exist, newest first."""
    cols = ["source", "file", "reason", "rejected_at"]
    exists = wh.concurrent_table_exists(BAD_FILES) if concurrent else wh.table_columns(BAD_FILES) is not None
    if not exists:
        return cols, []
    fetch = wh.concurrent_fetch if concurrent else wh.fetch
    where, params = ("WHERE source = {{ s }}", {"s": source}) if source else ("", {})
    rows = fetch(f"SELECT source, label, reason, rejected_at, path FROM {wh.q(BAD_FILES)} {where} "
                 "ORDER BY rejected_at DESC, label", params).rows
    # a local file that is gone is no longer a problem (the next ingest of the source forgets it); an object's
    # cached copy may come and go, the object is still there
    return cols, [r[:4] for r in rows if r[1] != r[4] or os.path.exists(r[4])]
