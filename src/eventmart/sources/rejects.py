"""A source's rejects: listed (`eventmart rejects`) and replayed (`eventmart rejects replay`) after the declared
schema was fixed — rows that now pass load and leave the table, the others stay as they were."""

from __future__ import annotations

import time

import pyarrow as pa

from ..config import Source, match_header
from ..rawtables import INGESTS, ensure_tables
from ..timeutil import utcnow
from ..warehouse import Warehouse
from .chunks import Chunk
from .loader import Loader
from .log import IngestResult, _log, _next_ingest

# reasons a replay cannot change: the bytes behind them are not kept
_UNREPLAYABLE = ("invalid UTF-8", "a NUL byte")


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
    from .csv_chunks import exact_chunk

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

    from .csv_chunks import CsvLayout

    line = header or src.csv.delimiter.join(src.columns)
    cols = next(csv.reader([line], delimiter=src.csv.delimiter, quotechar=src.csv.quote))
    cols, _ = match_header(cols, list(src.columns))  # a cell missing now is a reject of the replay
    return CsvLayout(cols, line, src.csv.delimiter, src.csv.quote, list(src.columns))
