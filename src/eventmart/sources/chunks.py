"""Files read in bounded chunks, as text columns with every problem of the reading kept per line.

A chunk is at most ~32 MB of the file, cut at a record boundary, so memory stays bounded whatever the file
size. Each format yields :class:`Chunk` objects: the declared columns as text (``_row`` numbers the rows of the
chunk), the lines that could not even be split into fields (with their reason), and a way to find the line
number and raw text of any row that fails the type checks later.

CSV has a module of its own (:mod:`.csv_chunks`); here are the chunk itself, JSON Lines, and typed rows (Parquet, a
database).
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np
import pyarrow as pa

from ..config import Source, decimal_spec
from ..errors import InputError

BOM = b"\xef\xbb\xbf"
CHUNK_BYTES = 32 << 20  # EVENTMART_CHUNK_BYTES overrides it (tests use tiny chunks to cross boundaries)


@dataclass
class Chunk:
    table: pa.Table  # _row, [_line], declared columns as text (None for empty); json: _row, _line, _raw
    nbytes: int  # bytes of the file this chunk covers (progress, the read check)
    rejects: list[tuple[int, str, str]] = field(default_factory=list)  # (line, raw, reason) found while reading
    fmt: str = "csv"  # csv | json: how rejected raw text is read again on replay
    header: str | None = None  # csv: the header line, stored with rejects so a replay reads fields the same way
    where: Callable[[list[int]], dict[int, tuple[int, str]] | None] | None = None  # _row -> (line, raw)
    exact: Callable[[], Chunk] | None = None  # the same chunk parsed line by line (None: this is it)
    typed: frozenset[str] = frozenset()  # columns that arrive in their declared type (checked by the reader)
    extra: Chunk | None = None  # lines of this chunk set aside to be read on their own (see fast_chunk)
    end: int = 0  # where in the file the next chunk starts (bytes, or rows for Parquet): a resumed load seeks there
    next_line: int = 0  # the line (row) number the next chunk starts with

    def locate(self, rows: list[int]) -> dict[int, tuple[int, str]] | None:
        return self.where(rows) if self.where else {}


def _reason_bytes(b: bytes) -> str | None:
    if b"\x00" in b:
        return "a NUL byte in the line; the file may be binary or corrupt here"
    try:
        b.decode("utf-8")
    except UnicodeDecodeError as e:
        return f"invalid UTF-8 (byte 0x{b[e.start]:02x} at byte {e.start + 1} of the line); save the file as UTF-8"
    return None


def default_chunk_bytes() -> int:
    import os

    return int(os.environ.get("EVENTMART_CHUNK_BYTES", CHUNK_BYTES))


def jsonl_chunks(f: io.BufferedReader, path: str, size: int | None = None,
                 resume: tuple[int, int] | None = None) -> Iterator[Chunk]:
    """JSON Lines: a line is a record; its columns are read from the JSON in SQL (:func:`json_text_sql`)."""
    chunk_bytes = size or default_chunk_bytes()
    line, pending, eof, checked, consumed = 1, b"", False, False, 0
    if resume is not None:
        f.seek(resume[0])
        consumed, line = resume
    while True:
        if not eof:
            more = f.read(chunk_bytes)
            eof = len(more) < chunk_bytes
            if line == 1 and not pending and more.startswith(BOM):
                more, consumed = more[len(BOM):], consumed + len(BOM)
            pending += more
        if not pending:
            return
        cut = len(pending) if eof else pending.rfind(b"\n") + 1
        if cut == 0:
            continue
        data, pending = pending[:cut], pending[cut:]
        consumed += len(data)
        parts = data.split(b"\n")
        if parts and parts[-1] == b"":
            parts.pop()
        lines, raws, rejects = [], [], []
        for i, b in enumerate(parts):
            b = b.rstrip(b"\r")
            if not b.strip():
                continue
            reason = _reason_bytes(b) if (b"\x00" in b or not b.isascii()) else None
            if reason:
                rejects.append((line + i, b.decode("utf-8", errors="replace").replace("\x00", "\ufffd"), reason))
                continue
            lines.append(line + i)
            raws.append(b.decode("utf-8"))
        if not checked and raws:
            checked = True
            if not any(s.lstrip().startswith("{") for s in raws[:1000]):
                raise InputError(f"{path}:{lines[0]}: not JSON Lines (declared format jsonl): no line starts with '{{'")
        line += len(parts)
        t = pa.table({"_row": pa.array(range(len(raws)), pa.int64()), "_line": pa.array(lines, pa.int64()),
                      "_raw": pa.array(raws, pa.string())})
        yield Chunk(t, len(data), rejects, "json", None,
                    where=lambda rs, lines=lines, raws=raws: {r: (lines[r], raws[r]) for r in rs}, end=consumed,
                    next_line=line)


def json_text_sql(src: Source, rel: str, kafka_ts: bool = False) -> str:
    """Columns of JSON Lines as text, and ``_why`` for a line that is not a JSON object. ``kafka_ts``: the relation
    has a ``_kafka_ts`` column (a Kafka message's timestamp), the value of ``kafka_ts`` unless the JSON has one."""
    from ..warehouse.base import quote_ident as q
    from .validate import sql_str

    names = list(src.columns)

    def col(i: int, n: str) -> str:
        got = f"_v[{i + 1}]"
        return f"COALESCE({got}, CAST(_kafka_ts AS VARCHAR))" if kafka_ts and n == "kafka_ts" else got

    # one extraction of every path: the document is parsed once, not once per column (2-3x faster)
    paths = ", ".join(sql_str("$." + json.dumps(n)) for n in names)
    sel = ", ".join(f"{col(i, n)} AS {q(n)}" for i, n in enumerate(names))
    extra = ", _kafka_ts" if kafka_ts else ""
    return (f"SELECT _row, _line, {sel}, _why FROM (SELECT *, json_extract_string(_doc, [{paths}]) AS _v FROM "
            f"(SELECT *, CASE WHEN _why IS NULL THEN _raw END AS _doc FROM "
            f"(SELECT _row, _line, _raw{extra}, CASE WHEN NOT json_valid(_raw) THEN 'not valid JSON' WHEN "
            f"json_type(CASE WHEN json_valid(_raw) THEN _raw END) <> 'OBJECT' THEN 'not a JSON object' END AS _why "
            f"FROM {rel})))")


def arrow_chunks(batches: Iterator[pa.Table], columns: dict[str, str], nbytes: Callable[[pa.Table], int],
                 skip: int = 0) -> Iterator[Chunk]:
    """Typed rows (Parquet, a database): a column already in its declared type passes as it is; any other is
    turned into text, so the same checks apply to it. Raw text of a reject is its row as JSON. ``skip``: rows
    a stopped load committed already."""
    first = 0
    for tbl in batches:
        if first + tbl.num_rows <= skip:
            first += tbl.num_rows
            continue
        if first < skip:
            tbl, first = tbl.slice(skip - first), skip
        text = {"_row": pa.array(np.arange(tbl.num_rows, dtype=np.int64))}
        text["_line"] = pa.array(np.arange(first + 1, first + tbl.num_rows + 1, dtype=np.int64))
        typed = set()
        for c, declared in columns.items():
            col = tbl.column(c) if c in tbl.column_names else pa.nulls(tbl.num_rows, pa.string())
            exact = _exact(col, declared)
            if exact is not None:
                text[c] = exact
                typed.add(c)
            else:
                text[c] = _as_text(col)
        t = pa.table(text)

        def where(rows: list[int], tbl=tbl, first=first) -> dict[int, tuple[int, str]]:
            picked = tbl.take(pa.array(rows, pa.int64())).to_pylist()
            return {r: (first + r + 1, json.dumps(v, default=str, ensure_ascii=False)) for r, v in zip(rows, picked,
                                                                                                      strict=True)}

        first += tbl.num_rows
        yield Chunk(t, nbytes(tbl), [], "json", None, where=where, typed=frozenset(typed), end=first,
                    next_line=first + 1)


def _exact(col: pa.ChunkedArray, declared: str) -> pa.ChunkedArray | None:
    """The column in its declared type when it already is that type (widened losslessly), else None."""
    t = col.type
    if declared == "int" and pa.types.is_integer(t) and not (pa.types.is_uint64(t)):
        return col.cast(pa.int64())
    if declared == "float" and pa.types.is_floating(t):
        return col.cast(pa.float64())
    if declared == "string" and (pa.types.is_string(t) or pa.types.is_large_string(t)):
        return col.cast(pa.string())
    if declared == "bool" and pa.types.is_boolean(t):
        return col
    if declared == "timestamp" and pa.types.is_timestamp(t):
        return col
    if declared == "date" and pa.types.is_date(t):
        return col
    spec = decimal_spec(declared)
    if spec and pa.types.is_decimal(t) and t.scale <= spec[1] and t.precision - t.scale <= spec[0] - spec[1]:
        return col.cast(pa.decimal128(*spec))
    return None


def _as_text(col: pa.ChunkedArray) -> pa.ChunkedArray:
    """Any value as the text the typed checks read back exactly (timestamps in ISO form, with their zone)."""
    return col.cast(pa.string())
