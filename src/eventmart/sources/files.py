"""Files a source reads: which (globs, given paths), whether they can be read at all, their chunks as they stream
in, and the file ledger (size, mtime, SHA-256; how far a stopped load got) that skips unchanged files and resumes
stopped ones."""

from __future__ import annotations

import glob
import hashlib
import os
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..config import Source
from ..errors import InputError
from ..rawtables import FILES
from ..warehouse import Warehouse
from .chunks import Chunk, jsonl_chunks
from .csv_chunks import csv_chunks, read_layout


def resolve_files(src: Source, name: str, files: list[str] | None, project_dir: Path) -> list[str]:
    """Explicit files as given (relative to the current folder); else the source's globs in the project.
    Paths are absolute and resolved, so a file is one file however it was named."""
    if files:
        out: list[str] = []
        for f in files:
            hits = sorted(glob.glob(f)) if any(ch in f for ch in "*?[") else [f]
            if not hits:
                raise InputError(f"{f}: no file matches; check the path")
            out.extend(hits)
    else:
        if not src.paths:
            raise InputError(f"sources.{name}.path is not set; give files: eventmart ingest {name} FILE...")
        out = []
        for p in src.paths:
            pattern = str(project_dir / p)
            hits = sorted(glob.glob(pattern)) if any(ch in p for ch in "*?[") else [pattern]
            if not hits:
                raise InputError(f"sources.{name}.path: no file matches {pattern}; put data there or pass files")
            out.extend(hits)
    return [str(Path(f).resolve()) if os.path.exists(f) else f for f in out]


def check_readable(path: str) -> None:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file; check the path or the source's `path`")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a file; give a file or a glob like {path}/*.csv")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: not readable (permission denied); fix its permissions")


def preflight(path: str, src: Source) -> None:
    """What makes a file unusable, found before anything is written (the rest becomes rejects)."""
    check_readable(path)
    if src.format == "csv":
        with open(path, "rb") as f:
            head = f.read(1 << 20)
        read_layout(path, src, head[3:] if head.startswith(b"\xef\xbb\xbf") else head)
    elif src.format == "parquet":
        _parquet(path, src)


def _parquet(path: str, src: Source):
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a non-Parquet file
        raise InputError(f"{path}: not a Parquet file (declared format parquet): {str(e)[:120]}") from None
    missing = [c for c in src.columns if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(f"{path}: the Parquet schema lacks declared column(s) {', '.join(missing)}; "
                         "fix the file or the source")
    return pf


class _Hashing:
    """A file read once: chunks see the bytes, the ledger gets their SHA-256, progress their count."""

    def __init__(self, f: Any, tick: Callable[[int], None]):
        self.f, self.tick, self.sha = f, tick, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        b = self.f.read(n)
        self.sha.update(b)
        self.tick(len(b))
        return b

    def seek(self, pos: int) -> None:
        self.tick(pos - self.f.tell())
        self.f.seek(pos)


def file_chunks(path: str, src: Source, tick: Callable[[int], None],
                resume: tuple[int, int] | None = None) -> tuple[Iterator[Chunk], Callable[[], str]]:
    """The file's chunks (from where a stopped load left off, if ``resume``), and its SHA-256 once they have all
    been read."""
    if src.format == "parquet":
        pf = _parquet(path, src)
        sha = hashlib.sha256()
        with open(path, "rb") as f:
            while b := f.read(1 << 24):
                sha.update(b)
        from .chunks import arrow_chunks

        size = max(os.path.getsize(path), 1)
        rows = max(pf.metadata.num_rows, 1)

        def batches() -> Iterator[pa.Table]:
            for b in pf.iter_batches(batch_size=500_000, columns=list(src.columns)):
                t = pa.Table.from_batches([b])
                tick(int(size * t.num_rows / rows))
                yield t

        return arrow_chunks(batches(), {n: c.type for n, c in src.columns.items()}, lambda t: t.nbytes,
                            skip=resume[0] if resume else 0), sha.hexdigest
    f = open(path, "rb")  # noqa: SIM115 - closed when its chunks are exhausted
    h = _Hashing(f, tick)

    def chunks() -> Iterator[Chunk]:
        try:
            if src.format == "csv":
                yield from csv_chunks(h, path, src, resume=resume)
            else:
                yield from jsonl_chunks(h, path, resume=resume)
        finally:
            f.close()

    # a resumed file was not read from its start: its hash takes a pass of its own
    return prefetch(chunks()), (lambda: _sha256(path)) if resume else (lambda: h.sha.hexdigest())


def prefetch(it: Iterator[Chunk]) -> Iterator[Chunk]:
    """Read and parse the next chunk in a thread while the warehouse takes the current one (both release the
    GIL: Arrow's parser and DuckDB's engine). At most two chunks are held at a time."""
    import queue
    import threading

    q: queue.Queue = queue.Queue(maxsize=1)
    done = object()
    stop = threading.Event()

    def produce() -> None:
        try:
            for item in it:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as e:  # handed to the consumer, raised there
            q.put(e)

    t = threading.Thread(target=produce, daemon=True, name="eventmart-read")
    t.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        t.join(5)


def _unchanged(wh: Warehouse, name: str, path: str) -> bool:
    """Loaded completely before and not changed since: same size and mtime, or the same content (a `touch`)."""
    rows = wh.fetch(f"SELECT size, mtime_ns, sha256 FROM {wh.q(FILES)} WHERE source = {{{{ s }}}} AND path = {{{{ p }}}} "
                    "AND COALESCE(complete, TRUE)", {"s": name, "p": path}).rows
    if not rows:
        return False
    st = os.stat(path)
    size, mtime, sha = rows[0]
    if size != st.st_size:
        return False
    if mtime == st.st_mtime_ns:
        return True
    return _sha256(path) == sha


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 24):
            h.update(b)
    return h.hexdigest()


def _resume_point(wh: Warehouse, name: str, path: str) -> tuple[int, int] | None:
    """(offset, line) where an interrupted load of this unchanged file stopped, or None."""
    rows = wh.fetch(f"SELECT size, mtime_ns, \"offset\", next_line FROM {wh.q(FILES)} WHERE source = {{{{ s }}}} "
                    "AND path = {{ p }} AND complete = FALSE", {"s": name, "p": path}).rows
    if not rows:
        return None
    st = os.stat(path)
    size, mtime, offset, line = rows[0]
    return (int(offset), int(line)) if size == st.st_size and mtime == st.st_mtime_ns and offset else None


def _progress(wh: Warehouse, name: str, path: str, ingest: int, now: datetime, end: int, line: int,
              sha: str | None = None) -> None:
    """The file's ledger row: how far its load got (committed with the chunk), or that it finished."""
    st = os.stat(path)
    wh.execute(f"DELETE FROM {wh.q(FILES)} WHERE source = {{{{ s }}}} AND path = {{{{ p }}}}", {"s": name, "p": path})
    wh.execute(f"INSERT INTO {wh.q(FILES)} (source, path, size, mtime_ns, sha256, ingest, loaded_at, \"offset\", "
               "next_line, complete) VALUES ({{ s }}, {{ p }}, {{ n }}, {{ m }}, {{ h }}, {{ i }}, {{ t }}, {{ o }}, "
               "{{ l }}, {{ c }})",
               {"s": name, "p": path, "n": st.st_size, "m": st.st_mtime_ns, "h": sha, "i": ingest, "t": now,
                "o": end, "l": line, "c": sha is not None})
