"""Checking a chunk and moving it into the warehouse: its good rows (each key once) and its rejects (every bad
line once, with all of its reasons)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

import pyarrow as pa

from ..config import Source
from ..rawtables import REJECT_COLUMNS
from ..warehouse import Warehouse
from .chunks import Chunk, json_text_sql
from .log import IngestResult
from .validate import validated_sql

EPOCH = datetime(1970, 1, 1)


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
            rel = f"({json_text_sql(self.src, '_em_chunk', '_kafka_ts' in chunk.table.column_names)})" \
                if json_lines else "_em_chunk"
            # JSON text is parsed once into a temp table (the checks and the append read it again); other chunks
            # are checked through a view over their Arrow table (no copy)
            kind = "TABLE" if json_lines else "VIEW"
            con.execute(f"CREATE OR REPLACE TEMP {kind} _em_checked AS "
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
                    con.execute(f"DROP {kind} _em_checked")
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
            con.execute(f"DROP {kind} _em_checked")
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
