"""The run ledger (`_eventmart_runs`): one row per attempt of a mart window, a report, a backup or an alert check.

A `running` row is committed before the work starts, so a crash leaves a trace; the work's own writes and the
row's `ok`/`failed` commit together. ``started_at`` keeps microseconds and ``seq`` is a monotonic sequence, so
"the last run" and "newest first" are exact even for runs started within the same second.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from .timeutil import fmt, utcnow_precise
from .warehouse import Warehouse

RUNS = "_eventmart_runs"
SEQ = "_eventmart_runs_seq"
# this process, as written in the ledger's `owner`: a `running` row whose owner is gone was interrupted
OWNER = f"{socket.gethostname()}:{os.getpid()}"

COLUMNS = [("run_id", "string"), ("mart", "string"), ("window_start", "timestamp"), ("window_end", "timestamp"),
           ("status", "string"), ("rows", "int"), ("started_at", "timestamp"), ("seconds", "float"),
           ("error", "string"), ("trigger", "string"), ("attempt", "int"), ("owner", "string"), ("seq", "int")]


@dataclass
class RunResult:
    mart: str
    start: datetime
    end: datetime
    status: str
    rows: int = 0
    seconds: float = 0.0
    error: str | None = None
    attempt: int = 1

    def line(self) -> str:
        w = f"[{fmt(self.start)}, {fmt(self.end)})"
        if self.status == "ok":
            return f"{self.mart} {w}: {self.rows:,} rows in {self.seconds:.2f}s"
        return f"{self.mart} {w}: failed: {self.error}"


def ensure_ledger(wh: Warehouse) -> None:
    wh.lock("ledger")  # two processes creating it at once would collide (PostgreSQL)
    have = wh.table_columns(RUNS)
    if have is None:
        wh.create_table(RUNS, [(c, wh.type_name(t)) for c, t in COLUMNS])
        wh.create_sequence(SEQ, 1)
        return
    for c, t in COLUMNS:  # a ledger from an earlier version: add what it lacks
        if c not in have:
            wh.add_column(RUNS, c, t)
    if "seq" not in have:  # number the old rows in the order they were started
        wh.execute(f"UPDATE {wh.q(RUNS)} SET seq = s.n FROM (SELECT run_id, row_number() OVER "
                   f"(ORDER BY started_at, window_start, run_id) AS n FROM {wh.q(RUNS)}) s "
                   f"WHERE {wh.q(RUNS)}.run_id = s.run_id")
    if not wh.sequence_exists(SEQ):
        top = wh.fetch(f"SELECT COALESCE(max(seq), 0) FROM {wh.q(RUNS)}").rows[0][0]
        wh.create_sequence(SEQ, int(top) + 1)


def begin(wh: Warehouse, r: RunResult, trigger: str, started: datetime | None = None) -> str:
    """Write (and commit) a `running` row; returns its run id."""
    run_id = uuid.uuid4().hex
    with wh.transaction():
        ensure_ledger(wh)
        wh.execute(
            f"INSERT INTO {wh.q(RUNS)} (run_id, mart, window_start, window_end, status, rows, started_at, seconds, "
            "error, trigger, attempt, owner, seq) VALUES ({{ id }}, {{ m }}, {{ s }}, {{ e }}, 'running', 0, {{ t }}, "
            f"0, NULL, {{{{ trig }}}}, {{{{ a }}}}, {{{{ o }}}}, {wh.next_value_sql(SEQ)})",
            {"id": run_id, "m": r.mart, "s": r.start, "e": r.end, "t": started or utcnow_precise(), "trig": trigger,
             "a": r.attempt, "o": OWNER},
        )
    return run_id


def finish(wh: Warehouse, run_id: str, r: RunResult) -> None:
    """Set the row's outcome; call inside the transaction that commits the work."""
    wh.execute(
        f"UPDATE {wh.q(RUNS)} SET status = {{{{ st }}}}, rows = {{{{ n }}}}, seconds = {{{{ sec }}}}, "
        "error = {{ err }} WHERE run_id = {{ id }}",
        {"st": r.status, "n": r.rows, "sec": r.seconds, "err": r.error, "id": run_id},
    )


class Recording:
    """What a recorded piece of work reports back: rows and, optionally, a note for the `error` column."""

    def __init__(self) -> None:
        self.rows = 0
        self.note: str | None = None
        self.result: RunResult | None = None


@contextmanager
def recorded(wh: Warehouse, name: str, start: datetime, end: datetime, trigger: str,
             attempt: int = 1, catch: tuple[type[BaseException], ...] = (Exception,)) -> Iterator[Recording]:
    """Record the work inside the block as one ledger row: `running` first, then `ok`, or `failed` with the
    exception's first line. Exceptions of the ``catch`` types end there (the row and ``rec.result`` say what
    happened); any other is recorded and raised again.

        with recorded(wh, "_backup", now, now, "schedule:weekly") as rec:
            rec.rows = do_the_work()
        print(rec.result.line())
    """
    run_id, t0 = begin(wh, RunResult(name, start, end, "running", attempt=attempt), trigger), time.perf_counter()
    rec = Recording()
    try:
        yield rec
    except BaseException as e:
        rec.result = RunResult(name, start, end, "failed", 0, time.perf_counter() - t0, first_line(e), attempt)
        with wh.transaction():
            finish(wh, run_id, rec.result)
        if not isinstance(e, catch):
            raise
    else:
        rec.result = RunResult(name, start, end, "ok", rec.rows, time.perf_counter() - t0, rec.note, attempt)
        with wh.transaction():
            finish(wh, run_id, rec.result)


def first_line(e: BaseException) -> str:
    text = str(e).strip()
    return text.splitlines()[0][:500] if text else type(e).__name__


def _alive(owner: str | None) -> bool:
    host, _, pid = (owner or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return host != socket.gethostname() and bool(host)  # another machine's run: not ours to judge
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def mark_interrupted(wh: Warehouse) -> int:
    """`running` rows whose process is gone become `failed` (their transaction never committed)."""
    if wh.table_columns(RUNS) is None:
        return 0
    with wh.transaction():
        ensure_ledger(wh)
        rows = wh.fetch(f"SELECT run_id, owner FROM {wh.q(RUNS)} WHERE status = 'running'").rows
        dead = [rid for rid, owner in rows if not _alive(owner)]
        for rid in dead:
            wh.execute(f"UPDATE {wh.q(RUNS)} SET status = 'failed', error = {{{{ e }}}} WHERE run_id = {{{{ id }}}}",
                       {"e": "interrupted: the process running it ended before it finished", "id": rid})
    return len(dead)


def covered(wh: Warehouse, mart: str, concurrent: bool = False) -> list[tuple[datetime, datetime]]:
    """The mart's successful windows (unmerged); ``concurrent``: read beside the writer (a dashboard's thread)."""
    if not (wh.concurrent_table_exists(RUNS) if concurrent else wh.table_columns(RUNS) is not None):
        return []
    fetch = wh.concurrent_fetch if concurrent else wh.fetch
    return [tuple(r) for r in fetch(f"SELECT window_start, window_end FROM {wh.q(RUNS)} "
                                    "WHERE mart = {{ m }} AND status = 'ok'", {"m": mart}).rows]


def last_run(wh: Warehouse, mart: str) -> tuple | None:
    """(started_at, status, window_start, window_end, rows, error) of the mart's newest run."""
    if wh.table_columns(RUNS) is None:
        return None
    r = wh.fetch(f"SELECT started_at, status, window_start, window_end, rows, error FROM {wh.q(RUNS)} "
                 "WHERE mart = {{ m }} ORDER BY seq DESC LIMIT 1", {"m": mart}).rows
    return r[0] if r else None


def forget(wh: Warehouse, mart: str) -> None:
    """Drop a mart's ledger rows (inside the caller's transaction)."""
    if wh.table_columns(RUNS) is not None:
        wh.execute(f"DELETE FROM {wh.q(RUNS)} WHERE mart = {{{{ m }}}}", {"m": mart})


def invalidate(wh: Warehouse, mart: str, times: list[datetime], span: bool = False) -> int:
    """Mark the mart's `ok` windows that hold any of ``times`` (with ``span``: that overlap [first, last] of
    them) as `stale`: they no longer count as covered, so status shows them as gaps and backfill/the scheduler
    rerun them. Returns how many windows."""
    import bisect

    if wh.table_columns(RUNS) is None or not times:
        return 0
    times = sorted(times)
    ok = wh.fetch(f"SELECT run_id, window_start, window_end FROM {wh.q(RUNS)} WHERE mart = {{{{ m }}}} "
                  "AND status = 'ok'", {"m": mart}).rows
    if span:
        hit = [rid for rid, s, e in ok if s <= times[-1] and e > times[0]]
    else:
        hit = [rid for rid, s, e in ok if (i := bisect.bisect_left(times, s)) < len(times) and times[i] < e]
    if not hit:
        return 0
    return wh.update_rows(RUNS, "status = 'stale'", wh.in_list_sql("run_id", "ids"), {"ids": hit})
