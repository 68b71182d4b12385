"""Ingest: read in bounded chunks, check, keep every bad line once, load each key once.

Each file streams through in chunks of ~32 MB (:mod:`.chunks`), so memory stays bounded whatever the file
size. Each chunk commits with its rejects, the ingest's counts and how far its file got: a kill -9 loses at
most the chunk in flight, and the same command run again resumes after the last committed chunk (dedup by key
means a chunk read twice loads nothing twice). Every line read is accounted for — loaded, a duplicate of a key
already loaded, or one reject row with all of its reasons — and ingest checks that the counts add up.

Each ingest has an id (``eventmart ingests``): its rows carry it in ``_ingest``, so ``eventmart ingests undo
ID`` removes exactly that load and re-opens the mart windows it touched. A file ledger (size, mtime, SHA-256)
skips a file that has not changed since it was loaded, unless ``--force``.
"""

from __future__ import annotations

import glob
import hashlib
import os
import re
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa

from ..config import Source, match_header
from ..errors import InputError, ProjectError, UserError
from ..timeutil import utcnow
from ..warehouse import Warehouse
from ..warehouse.base import TableLayout
from .chunks import Chunk, csv_chunks, json_text_sql, jsonl_chunks, read_layout
from .validate import validated_sql

INGESTS, FILES, SEQ = "_eventmart_ingests", "_eventmart_files", "_eventmart_ingests_seq"
EPOCH = datetime(1970, 1, 1)
INGEST_MEMORY = "512MB"  # DuckDB's buffer limit while loading: pages written are not kept around
REJECT_COLUMNS = ["rejected_at", "file", "line", "raw", "reason", "fmt", "header", "ingest"]
# reasons a replay cannot change: the bytes behind them are not kept
_UNREPLAYABLE = ("invalid UTF-8", "a NUL byte")

Progress = Callable[[str, int, int], None]  # (file, bytes done over all files, bytes in all)


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


# --- tables ------------------------------------------------------------------------------------------


def raw_columns(wh: Warehouse, src: Source) -> list[tuple[str, str]]:
    return [(n, wh.type_name(c.type)) for n, c in src.columns.items()] + [
        ("_time", wh.type_name("timestamp")), ("_loaded_at", wh.type_name("timestamp")),
        ("_ingest", wh.type_name("int"))]


def _evolve(wh: Warehouse, name: str, src: Source) -> None:
    """Follow the declared schema: add new columns, change types (e.g. after a fix, before a replay)."""
    have = wh.column_types(name)
    for col, c in src.columns.items():
        if col not in have:
            wh.add_column(name, col, c.type)
        elif have[col] != c.type:
            try:
                wh.alter_column_type(name, col, c.type)
            except Exception as e:  # the engine says why stored values do not fit
                raise ProjectError(
                    f"sources.{name}.columns.{col}: cannot change the loaded column from {have[col]} to {c.type} "
                    f"({str(e).splitlines()[0][:160]}); declare a type the loaded values fit"
                ) from None
    if "_ingest" not in have:  # a raw table from an earlier version: its old rows have no ingest id
        wh.add_column(name, "_ingest", "int")


def _add_missing(wh: Warehouse, table: str, columns: list[tuple[str, str]]) -> None:
    have = wh.table_columns(table)
    if have is None:
        wh.create_table(table, [(c, wh.type_name(t)) for c, t in columns])
        return
    for c, t in columns:
        if c not in have:
            wh.add_column(table, c, t)


def raw_layout(src: Source, dimensions: Sequence[str] = ()) -> TableLayout:
    """Raw events are read by time windows; text columns that marts group by have few distinct values."""
    return TableLayout("_time", ["_time"], [d for d in dimensions if d in src.columns and
                                            src.columns[d].type == "string"], "month")


def ensure_tables(wh: Warehouse, name: str, src: Source, dimensions: Sequence[str] = ()) -> None:
    if wh.table_columns(name) is None:
        wh.create_table(name, raw_columns(wh, src), primary_key=src.key, layout=raw_layout(src, dimensions))
    else:
        _evolve(wh, name, src)
    _add_missing(wh, f"{name}_rejects", [("rejected_at", "timestamp"), ("file", "string"), ("line", "int"),
                                         ("raw", "string"), ("reason", "string"), ("fmt", "string"),
                                         ("header", "string"), ("ingest", "int")])
    ensure_log(wh)


def ensure_log(wh: Warehouse) -> None:
    wh.lock("ingest-log")  # shared by every source: created once even by concurrent loads
    _add_missing(wh, INGESTS, [("source", "string"), ("files", "string"), ("started_at", "timestamp"),
                               ("seconds", "float"), ("loaded", "int"), ("duplicates", "int"), ("rejected", "int"),
                               ("min_time", "timestamp"), ("max_time", "timestamp"), ("id", "int"),
                               ("status", "string"), ("owner", "string")])
    # per file: how far a load got (`offset`/`next_line` of the last committed chunk) and whether it finished
    _add_missing(wh, FILES, [("source", "string"), ("path", "string"), ("size", "int"), ("mtime_ns", "int"),
                             ("sha256", "string"), ("ingest", "int"), ("loaded_at", "timestamp"), ("offset", "int"),
                             ("next_line", "int"), ("complete", "bool")])
    if not wh.sequence_exists(SEQ):
        top = wh.fetch(f"SELECT COALESCE(max(id), 0) FROM {wh.q(INGESTS)}").rows[0][0]
        wh.create_sequence(SEQ, int(top) + 1)


# --- files -------------------------------------------------------------------------------------------


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


# --- loading chunks ----------------------------------------------------------------------------------


class Loader:
    """Checks chunks and moves their good rows and rejects into the warehouse (inside the caller's transaction)."""

    def __init__(self, wh: Warehouse, name: str, src: Source, res: IngestResult, started: datetime, ingest: int,
                 store_rejects: bool = True):
        self.wh, self.name, self.src, self.res, self.started, self.ingest = wh, name, src, res, started, ingest
        self.store_rejects = store_rejects  # a replay leaves rows that still fail as they are
        self.con = wh.staging()
        self.cols = list(src.columns) + ["_time", "_loaded_at", "_ingest"]
        self.spans: list[tuple[datetime, datetime]] = []  # (first, last) event time of each chunk's good rows

    def load(self, chunk: Chunk, file: str) -> list[int]:
        """Check a chunk and load its good rows; returns the _row of every row that passed (replay needs them).

        The checks are a view over the chunk's Arrow table: no copy of the rows is made on the way in."""
        con = self.con
        con.register("_em_chunk", chunk.table)
        try:
            json_lines = chunk.fmt == "json" and "_raw" in chunk.table.column_names
            rel = f"({json_text_sql(self.src, '_em_chunk')})" if json_lines else "_em_chunk"
            con.execute(f"CREATE OR REPLACE TEMP VIEW _em_checked AS "
                        f"{validated_sql(self.src, rel, json_lines, chunk.typed)}")
            rows = chunk.table.num_rows
            stats = None if json_lines else clean_stats(self.src, chunk)
            if stats is not None:  # the reader's types and Arrow's counts prove every row good: no SQL pass
                good, lo, hi, klo, khi, repeats = rows, *stats
            else:
                k0 = self.wh.q(self.src.key[0])
                # a one-column key: whether the chunk repeats a key (a hash count is cheaper than ranking rows)
                distinct = f"count(DISTINCT {k0}) FILTER (WHERE _reason IS NULL)" if len(self.src.key) == 1 else "-1"
                good, lo, hi, klo, khi, nkeys = con.execute(
                    "SELECT count(*) FILTER (WHERE _reason IS NULL), min(_time) FILTER (WHERE _reason IS NULL), "
                    f"max(_time) FILTER (WHERE _reason IS NULL), min({k0}) FILTER (WHERE _reason IS NULL), "
                    f"max({k0}) FILTER (WHERE _reason IS NULL), {distinct} FROM _em_checked").fetchall()[0]
                repeats = nkeys != good
            bad = con.execute("SELECT _row, _reason FROM _em_checked WHERE _reason IS NOT NULL ORDER BY _row"
                              ).fetchall() if good < rows else []
            assert good + len(bad) == rows, "every row is good or has a reason"
            rejects = list(chunk.rejects)
            if bad:
                where = chunk.locate([r for r, _ in bad])
                if where is None and chunk.exact is not None:  # the fast parser cannot place them: read it exactly
                    con.execute("DROP VIEW _em_checked")
                    con.unregister("_em_chunk")
                    return self.load(chunk.exact(), file)
                rejects += [(where[r][0], where[r][1], reason) for r, reason in bad]
            loaded = 0
            if good:
                self.res.min_time = lo if self.res.min_time is None else min(lo, self.res.min_time)
                self.res.max_time = hi if self.res.max_time is None else max(hi, self.res.max_time)
                sel = ", ".join(self.wh.q(c) for c in self.src.columns)
                loaded = self.wh.append_new(
                    con, f"SELECT {sel}, _time, CAST({{{{ t }}}} AS TIMESTAMP) AS _loaded_at, CAST({{{{ i }}}} AS BIGINT) AS _ingest, "
                         "_row AS _ord FROM _em_checked WHERE _reason IS NULL", {"t": self.started, "i": self.ingest},
                    self.name, self.cols, self.src.key, (klo, khi), repeats=repeats)
            passed = [] if self.store_rejects else \
                [r[0] for r in con.execute("SELECT _row FROM _em_checked WHERE _reason IS NULL").fetchall()]
            con.execute("DROP VIEW _em_checked")
        finally:
            try:
                con.unregister("_em_chunk")
            except Exception:  # unregistered already on the way to the exact path
                pass
        self.res.read += rows + len(chunk.rejects)
        self.res.loaded += loaded
        if loaded:
            self.spans.append((lo, hi))
        self.res.duplicates += good - loaded
        self.res.rejected += len(rejects)
        for _, _, reason in rejects:
            key = re.sub(r"line \d+", "line N", reason.split(":")[0].split(";")[0].split(" (")[0])
            self.res.reasons[key] = self.res.reasons.get(key, 0) + 1
        if rejects and self.store_rejects:
            self.keep_rejects(file, rejects, chunk)
        return passed

    def keep_rejects(self, file: str, rejects: list[tuple[int, str, str]], chunk: Chunk) -> None:
        """Store rejects once: a line of a file that is already kept (a re-read) is not stored again."""
        wh = self.wh
        table = wh.q(f"{self.name}_rejects")
        lines = [ln for ln, _, _ in rejects]
        known = set(wh.fetch(f"SELECT line, raw FROM {table} WHERE file = {{{{ f }}}} AND line >= {{{{ a }}}} "
                             "AND line <= {{ b }}", {"f": file, "a": min(lines), "b": max(lines)}).rows)
        new = [r for r in rejects if (r[0], r[1]) not in known]
        if not new:
            return
        t = pa.table({"rejected_at": pa.array([self.started] * len(new), pa.timestamp("us")),
                      "file": [file] * len(new), "line": pa.array([r[0] for r in new], pa.int64()),
                      "raw": [r[1] for r in new], "reason": [r[2] for r in new], "fmt": [chunk.fmt] * len(new),
                      "header": [chunk.header] * len(new), "ingest": pa.array([self.ingest] * len(new), pa.int64())})
        self.con.register("_em_rej_new", t)
        try:
            self.con.execute("CREATE OR REPLACE TEMP TABLE _em_rej AS SELECT * FROM _em_rej_new")
        finally:
            self.con.unregister("_em_rej_new")
        wh.append_all(self.con, "_em_rej", f"{self.name}_rejects", REJECT_COLUMNS)
        self.con.execute("DROP TABLE _em_rej")


def clean_stats(src: Source, chunk: Chunk) -> tuple | None:
    """(first time, last time, first key, last key, keys may repeat) when Arrow alone shows every row of the
    chunk is good — required columns without nulls, numbers parsed by the reader, floats finite, event times
    inside the valid range — else None (the SQL checks decide, row by row)."""
    import pyarrow.compute as pc

    from .validate import valid_range

    t = chunk.table
    if not t.num_rows:
        return None
    for name, col in src.columns.items():
        if col.type not in ("string",) and name not in chunk.typed:
            return None  # a value that still has to be read as its type
        if (col.required or name == src.time.column) and t[name].null_count:
            return None
        if col.type == "float" and not pc.all(pc.is_finite(t[name])).as_py():
            return None
    tc = src.time.column
    if src.time.unit == "timestamp":
        return None
    mm = pc.min_max(t[tc])
    scale = 1000 if src.time.unit == "ms" else 1
    lo_v, hi_v = mm["min"].as_py(), mm["max"].as_py()
    vlo, vhi = valid_range(src)
    first, last = EPOCH + timedelta(seconds=lo_v / scale), EPOCH + timedelta(seconds=hi_v / scale)
    if first < vlo or last >= vhi:
        return None
    key = t[src.key[0]]
    km = pc.min_max(key)
    repeats = True
    if len(src.key) == 1 and key.type in (pa.int64(), pa.string()):
        ordered = key.combine_chunks() if isinstance(key, pa.ChunkedArray) else key
        if len(ordered) > 1 and not isinstance(ordered.type, pa.DictionaryType):
            # keys that grow along the file (a log's ids) cannot repeat inside the chunk
            repeats = not pc.all(pc.greater(ordered.slice(1), ordered.slice(0, len(ordered) - 1))).as_py()
    # the event time as the engine computes it: rounded to microseconds
    return (first.replace(microsecond=round(first.microsecond)), last, km["min"].as_py(), km["max"].as_py(), repeats)


def _next_ingest(wh: Warehouse) -> int:
    return int(wh.fetch(f"SELECT {wh.next_value_sql(SEQ)}").rows[0][0])


def _log(wh: Warehouse, res: IngestResult, seconds: float, status: str) -> None:
    wh.execute(f"UPDATE {wh.q(INGESTS)} SET seconds = {{{{ sec }}}}, loaded = {{{{ l }}}}, duplicates = {{{{ d }}}}, "
               "rejected = {{ r }}, min_time = {{ mn }}, max_time = {{ mx }}, status = {{ st }} WHERE id = {{ id }}",
               {"sec": seconds, "l": res.loaded, "d": res.duplicates, "r": res.rejected, "mn": res.min_time,
                "mx": res.max_time, "st": status, "id": res.id})


def stream_ingest(wh: Warehouse, name: str, src: Source, batches: Iterator[tuple[list[tuple[str, Chunk]], Callable]],
                  label: str, dimensions: Sequence[str] = (),
                  on_batch: Callable[[IngestResult, list[tuple[datetime, datetime]]], None] | None = None,
                  lock: Any = None) -> IngestResult:
    """Load a stream (Kafka) batch by batch: each batch's chunks, rejects, counts and its ``after()`` (the
    consumer's offsets) commit in one transaction, so a crash at any point loses nothing and repeats nothing (a
    batch read again after a crash finds its keys loaded). ``on_batch(result, spans)`` runs after each commit
    with the event-time spans of the rows it loaded."""
    import contextlib

    from ..ledger import OWNER

    lock = lock or contextlib.nullcontext()
    t0, started = time.perf_counter(), utcnow()
    res = IngestResult(name, [label])
    with lock, wh.transaction():
        wh.lock(f"source:{name}")
        ensure_tables(wh, name, src, dimensions)
        res.id = _next_ingest(wh)
        wh.execute(f"INSERT INTO {wh.q(INGESTS)} (source, files, started_at, seconds, loaded, duplicates, rejected, "
                   "id, status, owner) VALUES ({{ s }}, {{ f }}, {{ t }}, 0, 0, 0, 0, {{ id }}, 'running', {{ o }})",
                   {"s": name, "f": label, "t": started, "id": res.id, "o": OWNER})
    loader = Loader(wh, name, src, res, started, res.id)
    try:
        for chunks, after in batches:
            loader.spans = []
            with lock, wh.transaction():
                wh.lock(f"source:{name}")
                for file, chunk in chunks:
                    loader.load(chunk, file)
                after()
                _log(wh, res, time.perf_counter() - t0, "running")
            if on_batch and loader.spans:
                on_batch(res, loader.spans)
    finally:
        res.seconds = time.perf_counter() - t0
        with lock, wh.transaction():
            _log(wh, res, res.seconds, "ok")
    assert res.read == res.loaded + res.duplicates + res.rejected, "every record is loaded, a duplicate or a reject"
    return res


def ingest(wh: Warehouse, name: str, src: Source, files: list[str], progress: Progress | None = None,
           force: bool = False, dimensions: Sequence[str] = (), labels: dict[str, str] | None = None) -> IngestResult:
    """Load files (or, for a postgres source, its table) into the raw table ``name``, chunk by chunk.
    ``dimensions``: the source's columns that marts group by (a layout hint for a new raw table); ``labels``: the
    name a file goes by in rejects and the ingest log (an S3 object's URL for its cached copy)."""
    from . import bad_files

    t0 = time.perf_counter()
    res = IngestResult(name, [(labels or {}).get(f, f) for f in files])
    started = utcnow()
    for f in files:  # a path that is no readable file is a mistake in the command: stop before writing anything
        check_readable(f)
    good = []
    for f in files:  # a file that cannot be read at all is listed and passed by: the good ones beside it load
        label = (labels or {}).get(f, f)
        why = bad_files.still_bad(wh, name, f)
        if why is None:
            try:
                preflight(f, src)
                good.append(f)
                continue
            except InputError as e:  # an S3 object's cached copy: name the object
                why = str(e).replace(f, label)
                with wh.transaction():
                    bad_files.reject(wh, name, f, label, why, started)
        res.bad_files.append((label, why))
    files = good
    if not files and src.format != "postgres":
        res.seconds = time.perf_counter() - t0
        return res
    total = sum(os.path.getsize(f) for f in files) or 1
    done = [0]

    def tick(file: str) -> Callable[[int], None]:
        def inner(n: int) -> None:
            done[0] += n
            if progress:
                progress(file, min(done[0], total), total)
        return inner

    stage = wh.staging()
    # DuckDB would otherwise keep every page it wrote cached: a big file would cost its size in memory; the
    # warehouse's own limit (warehouse.memory_limit) comes back afterwards
    stage.execute(f"SET memory_limit = '{INGEST_MEMORY}'")
    # a checkpoint after every chunk's commit would rewrite the table each time: once, at the end, instead
    stage.execute("SET checkpoint_threshold = '16GB'")
    try:
        res = _ingest(wh, name, src, files, res, started, tick, done, force, t0, dimensions, labels or {})
        if res.loaded:
            wh.analyze(name)  # the marts and vault loads that read the new rows next plan with their real size
        return res
    finally:
        if wh.stage_memory_limit:
            stage.execute("SET memory_limit = $m", {"m": wh.stage_memory_limit})
        else:
            stage.execute("RESET memory_limit")
        stage.execute("RESET checkpoint_threshold")


def _ingest(wh: Warehouse, name: str, src: Source, files: list[str], res: IngestResult, started: datetime,
            tick: Callable, done: list[int], force: bool, t0: float, dimensions: Sequence[str] = (),
            labels: dict[str, str] | None = None) -> IngestResult:
    """Chunk by chunk: each commits its rows, its rejects, the ingest's counts and how far its file got, so
    memory stays bounded (DuckDB holds what a transaction inserted until it commits) and a stopped load resumes
    where it stopped. Keys make a repeat harmless: a chunk read twice loads nothing twice."""
    from ..ledger import OWNER
    from . import bad_files

    with wh.transaction():
        wh.lock(f"source:{name}")
        ensure_tables(wh, name, src, dimensions)
        res.id = _next_ingest(wh)
        wh.execute(f"INSERT INTO {wh.q(INGESTS)} (source, files, started_at, seconds, loaded, duplicates, rejected, "
                   "id, status, owner) VALUES ({{ s }}, {{ f }}, {{ t }}, 0, 0, 0, 0, {{ id }}, 'running', {{ o }})",
                   {"s": name, "f": "\n".join(files)[:10000], "t": started, "id": res.id, "o": OWNER})
    loader = Loader(wh, name, src, res, started, res.id)

    def commit(chunk: Chunk, label: str, after=None) -> None:
        with wh.transaction():
            wh.lock(f"source:{name}")  # concurrent loads of one source take turns, chunk by chunk
            loader.load(chunk, label)
            if chunk.extra is not None:
                loader.load(chunk.extra, label)
            if after:
                after()
            _log(wh, res, time.perf_counter() - t0, "running")

    read: list[str] = []
    if src.format == "postgres":
        from .database import postgres_chunks

        label = f"postgres:{src.table}"
        for chunk in postgres_chunks(src, name):
            commit(chunk, label)
        read.append(label)
    labels = labels or {}
    for f in files:
        label = labels.get(f, f)
        if not force and _unchanged(wh, name, f):
            res.skipped.append(label)
            done[0] += os.path.getsize(f)
            continue
        resume = None if force else _resume_point(wh, name, f)
        chunks, sha = file_chunks(f, src, tick(label), resume)
        for chunk in chunks:
            commit(chunk, label, lambda c=chunk, f=f: _progress(wh, name, f, res.id, started, c.end, c.next_line))
        with wh.transaction():
            _progress(wh, name, f, res.id, started, os.path.getsize(f), 0, sha())
            bad_files.clear(wh, name, f)  # it loads now: off the list
        read.append(label)
    res.seconds = time.perf_counter() - t0
    assert res.read == res.loaded + res.duplicates + res.rejected, "every line is loaded, a duplicate or a reject"
    with wh.transaction():
        wh.execute(f"UPDATE {wh.q(INGESTS)} SET files = {{{{ f }}}} WHERE id = {{{{ id }}}}",
                   {"f": "\n".join(read)[:10000] or "(nothing new)", "id": res.id})
        _log(wh, res, res.seconds, "ok")
    return res


# --- rejects, replay ---------------------------------------------------------------------------------


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
    """Check every stored reject again (e.g. after fixing the declared schema); load those that now pass and
    drop their reject rows. Rows that still fail are left exactly as they are, so replaying twice is a no-op."""
    from .chunks import exact_chunk

    table = f"{name}_rejects"
    res = IngestResult(name, ["<rejects>"])
    t0 = time.perf_counter()
    if wh.table_columns(table) is None:
        return res
    stored = wh.fetch(f"SELECT file, line, raw, fmt, header, reason FROM {wh.q(table)} ORDER BY file, line").rows
    res.rejected = sum(1 for r in stored if str(r[5]).startswith(_UNREPLAYABLE))
    stored = [r for r in stored if not str(r[5]).startswith(_UNREPLAYABLE)]
    res.read = res.rejected
    if not stored:
        return res
    started = utcnow()
    with wh.transaction():
        wh.lock(f"source:{name}")
        ensure_tables(wh, name, src)
        res.id = _next_ingest(wh)
        loader = Loader(wh, name, src, res, started, res.id, store_rejects=False)
        groups: dict[tuple[str, str | None], list[tuple]] = {}
        for r in stored:
            groups.setdefault((r[3], r[4]), []).append(r)
        fixed: list[tuple] = []
        for (fmt, header), group in groups.items():
            if fmt == "csv":
                layout = _replay_layout(src, header)
                parts, keep = [], []
                for r in group:  # each stored line on its own: its fields, or it stays as it is
                    one = exact_chunk((r[2] + "\n").encode("utf-8"), int(r[1]), layout, 0)
                    if one.table.num_rows == 1 and not one.rejects:
                        parts.append(one.table)
                        keep.append(r)
                res.read += len(group) - len(keep)
                res.rejected += len(group) - len(keep)
                if not parts:
                    continue
                t = pa.concat_tables(parts)
                t = t.set_column(0, "_row", pa.array(range(t.num_rows), pa.int64()))
                chunk = Chunk(t, 0, [], "csv", header,
                              where=lambda rs, keep=keep: {i: (keep[i][1], keep[i][2]) for i in rs})
                group = keep
            else:
                t = pa.table({"_row": pa.array(range(len(group)), pa.int64()),
                              "_line": pa.array([r[1] for r in group], pa.int64()),
                              "_raw": pa.array([r[2] for r in group], pa.string())})
                chunk = Chunk(t, 0, [], "json", None, where=lambda rs, g=group: {i: (g[i][1], g[i][2]) for i in rs})
            fixed += [group[i] for i in loader.load(chunk, "<replay>")]
        for file, line, raw, *_ in fixed:
            wh.execute(f"DELETE FROM {wh.q(table)} WHERE file = {{{{ f }}}} AND line = {{{{ l }}}} AND raw = {{{{ r }}}}",
                       {"f": file, "l": line, "r": raw})
        res.seconds = time.perf_counter() - t0
        assert res.read == res.loaded + res.duplicates + res.rejected
        if fixed:
            wh.execute(f"INSERT INTO {wh.q(INGESTS)} (source, files, started_at, id, status) VALUES "
                       "({{ s }}, '<rejects>', {{ t }}, {{ id }}, 'ok')", {"s": name, "t": started, "id": res.id})
            _log(wh, res, res.seconds, "ok")
    return res


def _replay_layout(src: Source, header: str | None):
    import csv

    from .chunks import CsvLayout

    line = header or src.csv.delimiter.join(src.columns)
    cols = next(csv.reader([line], delimiter=src.csv.delimiter, quotechar=src.csv.quote))
    cols, _ = match_header(cols, list(src.columns))  # a cell missing now is a reject of the replay
    return CsvLayout(cols, line, src.csv.delimiter, src.csv.quote, list(src.columns))


# --- the ingest log and undo -----------------------------------------------------------------------------


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
