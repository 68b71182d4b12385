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

import os
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any

from ..config import Source
from ..errors import InputError
from ..rawtables import INGESTS, ensure_tables
from ..timeutil import utcnow
from ..warehouse import Warehouse
from .chunks import Chunk
from .files import _progress, _resume_point, _unchanged, check_readable, file_chunks, preflight
from .loader import Loader
from .log import IngestResult, _log, _next_ingest

INGEST_MEMORY = "512MB"  # DuckDB's buffer limit while loading: pages written are not kept around

Progress = Callable[[str, int, int], None]  # (file, bytes done over all files, bytes in all)


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
