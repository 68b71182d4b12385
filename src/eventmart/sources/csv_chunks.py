"""CSV in bounded chunks: each chunk of ~32 MB is cut at a record boundary and parsed by Arrow's reader when it is
clean; a chunk with anything unusual — a line with too few or too many fields, invalid UTF-8, a NUL byte, an
unterminated quote — is parsed again line by line with Python's csv module (:meth:`Chunk.exact`), which knows every
record's line: LF, CRLF and a mix of them, a UTF-8 BOM, a last line without a newline and a ``\\r`` inside a quoted
field all read as expected; a bad line is one reject whatever is wrong with it, and a quote left open rejects its
line only, the reading resuming on the next line.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import pyarrow as pa

from ..config import Source, match_header
from ..errors import InputError
from .chunks import BOM, Chunk, _reason_bytes, default_chunk_bytes

MAX_RECORD_BYTES = 16 << 20

MAX_ODD = 50  # lines per chunk set aside for a number that does not parse; beyond it the chunk is read as text  # a quoted field longer than this is taken for an unterminated quote


@dataclass
class CsvLayout:
    header: list[str]  # every column of the file, in order
    header_line: str  # as written (for replay)
    delimiter: str
    quote: str
    declared: list[str]  # the source's columns

    @property
    def index(self) -> dict[str, int]:
        return {c: self.header.index(c) for c in self.declared}

MAX_RECORD_LINES = 1000  # a record spanning more lines is taken for an unterminated quote


def records(data: bytes, first_line: int, layout: CsvLayout) -> Iterator[tuple[int, str, list[str] | None, str | None]]:
    """(line, raw, fields, reason) for every non-blank record of ``data`` (whole records), exactly, line by line.

    ``fields`` is None and ``reason`` says why for a record that cannot be used.
    """
    lines = data.split(b"\n")
    if lines and lines[-1] == b"":
        lines.pop()
    n = len(lines)
    bad = {i: r for i, b in enumerate(lines) if (b"\x00" in b or not b.isascii()) and (r := _reason_bytes(b))}
    # NUL cannot be stored in PostgreSQL text: a reject's raw text shows it as U+FFFD, like an invalid byte
    texts = [b.decode("utf-8", errors="replace").replace("\x00", "\ufffd") for b in lines]
    want = len(layout.header)
    i = 0
    while i < n:
        if i in bad:
            yield first_line + i, texts[i].rstrip("\r"), None, bad[i]
            i += 1
            continue
        used: list[int] = []

        def feed(start: int = i, used: list[int] = used) -> Iterator[str]:
            k = start
            while k < n and k not in bad and k - start < MAX_RECORD_LINES:
                used.append(k)
                yield texts[k] + "\n"
                k += 1

        try:
            fields: list[str] | None = next(csv.reader(feed(), delimiter=layout.delimiter, quotechar=layout.quote,
                                                       strict=False))
            error = None
        except StopIteration:
            i += 1
            continue
        except csv.Error as e:
            fields, error = None, str(e).split(" - ")[0]
        if len(used) > 1 and (fields is None or len(fields) != want):
            # a quote opened on this line and never closed where the fields allow: reject the line, read on
            yield (first_line + i, texts[i].rstrip("\r"), None,
                   f"a quote opened on line {first_line + i} is not closed; the line is rejected and reading goes "
                   "on with the next one")
            i += 1
            continue
        raw = "\n".join(texts[j] for j in used).rstrip("\r")
        i = (used[-1] + 1) if used else i + 1
        if fields is None:
            yield first_line + used[0], raw, None, f"malformed line ({error})"
        elif not fields or fields == [""]:
            continue  # a blank line
        elif len(fields) != want:
            yield first_line + used[0], raw, None, f"wrong number of fields: expected {want}, found {len(fields)}"
        else:
            yield first_line + used[0], raw, fields, None


def text_table(rows: list[list[str]], layout: CsvLayout, row_ids: list[int], lines: list[int] | None) -> pa.Table:
    cols: dict[str, pa.Array] = {"_row": pa.array(row_ids, pa.int64())}
    if lines is not None:
        cols["_line"] = pa.array(lines, pa.int64())
    idx = layout.index
    for c in layout.declared:
        i = idx[c]
        cols[c] = pa.array([(r[i] if r[i] != "" else None) for r in rows], pa.string())
    return pa.table(cols)


def exact_chunk(data: bytes, first_line: int, layout: CsvLayout, nbytes: int) -> Chunk:
    good: list[list[str]] = []
    lines: list[int] = []
    raws: list[str] = []
    rejects: list[tuple[int, str, str]] = []
    for line, raw, fields, reason in records(data, first_line, layout):
        if fields is None:
            rejects.append((line, raw, reason or "malformed line"))
        else:
            good.append(fields)
            lines.append(line)
            raws.append(raw)
    table = text_table(good, layout, list(range(len(good))), lines)
    return Chunk(table, nbytes, rejects, "csv", layout.header_line,
                 where=lambda rows: {r: (lines[r], raws[r]) for r in rows})

_ARROW_TYPES = {"int": pa.int64(), "float": pa.float64()}


def _dictionary_strings(t: pa.Table) -> pa.Table:
    """Text columns with few distinct values as dictionaries: DuckDB stores them ~30% faster, and this work
    happens in the reading thread, beside the insert."""
    import pyarrow.compute as pc

    cols = []
    for c in t.column_names:
        col = t.column(c)
        if pa.types.is_string(col.type) and t.num_rows > 1000:
            enc = pc.dictionary_encode(col)
            if max((len(ch.dictionary) for ch in enc.chunks), default=0) <= t.num_rows // 10:
                col = enc
        cols.append(col)
    return pa.table(cols, names=t.column_names)


def _bad_utf8(buf: bytearray, pos: int) -> int | None:
    """The position of the first byte at or after ``pos`` that is not valid UTF-8 (None: all valid), checked a
    megabyte at a time (cut at line ends), never copying the chunk."""
    mv = memoryview(buf)
    i = pos
    while i < len(buf):
        end = buf.find(b"\n", min(i + (1 << 20), len(buf)))
        end = len(buf) if end < 0 else end + 1
        try:
            str(mv[i:end], "utf-8")
        except UnicodeDecodeError as e:
            return i + e.start
        i = end
    return None


def _spans(data: bytes | bytearray, quote: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(start, end, newlines before start) of every non-blank record, vectorised: a newline ends a record when
    the quotes before it pair up. Arrow reads records the same way unless a quote sits inside an unquoted
    field; the callers check that both count the same records."""
    a = np.frombuffer(data, np.uint8)
    nl = np.flatnonzero(a == 10)
    q = np.flatnonzero(a == ord(quote))
    ends = nl[(np.searchsorted(q, nl) & 1) == 0] if len(q) else nl
    starts = np.concatenate([[0], ends + 1])
    ends = np.concatenate([ends, [len(a)]])
    if len(a) and starts[-1] >= len(a):
        starts, ends = starts[:-1], ends[:-1]
    # blank: nothing, or only a \r, between two newlines (Arrow skips those lines too)
    length = ends - starts
    cr = np.zeros(len(starts), dtype=bool)
    nonempty = length > 0
    cr[nonempty] = a[np.minimum(ends[nonempty] - 1, len(a) - 1)] == 13
    keep = (length > 1) | ((length == 1) & ~cr)
    return starts[keep], ends[keep], np.searchsorted(nl, starts[keep])


def _blank_line(data: bytearray, pos: int) -> tuple[bytearray, int, bytes]:
    """The line holding byte ``pos`` emptied in place (its newline kept): (the data, its start, its old bytes)."""
    start = data.rfind(b"\n", 0, pos) + 1
    end = data.find(b"\n", pos)
    end = len(data) if end < 0 else end
    old = bytes(data[start:end])
    del data[start:end]
    return data, start, old


def fast_chunk(data: bytes, first_line: int, layout: CsvLayout, nbytes: int,
               types: dict[str, str] | None = None) -> Chunk | None:
    """Arrow's parser on the chunk, with the problems of single lines taken out first; None when the chunk
    needs the exact path (the two ways of reading records disagree on it).

    Lines with a NUL byte or invalid UTF-8 are rejected and emptied, a quote left open rejects its line and
    is emptied too, a line with the wrong number of fields is skipped by Arrow and rejected — emptying a line
    keeps every line number right. Numbers are parsed to their declared type right here (Arrow is strict:
    `500.5`, `0x10` or `1e3` are not int64); a chunk where one does not parse is read again as text, so the
    SQL checks name the value."""
    import pyarrow.csv as pacsv

    buf = bytearray(data)
    rejects: list[tuple[int, str, str]] = []

    def line_of(pos: int) -> int:
        return first_line + buf.count(b"\n", 0, pos)

    def take_out(pos: int, reason: str | None = None) -> None:
        nonlocal buf
        line = line_of(pos)
        buf, _, old = _blank_line(buf, pos)
        rejects.append((line, old.rstrip(b"\r").decode("utf-8", "replace").replace("\x00", "\ufffd"),
                        reason or _reason_bytes(old) or "malformed line"))

    def clean_bytes() -> None:
        """Lines with a NUL byte or invalid UTF-8 out (Arrow refuses the whole chunk for one of those)."""
        while (pos := buf.find(b"\x00")) >= 0:
            take_out(pos)
        pos = 0
        while (at := _bad_utf8(buf, pos)) is not None:
            take_out(at)
            pos = buf.rfind(b"\n", 0, at) + 1 if at > 0 else 0

    def open_quotes() -> bool:
        """Records spanning more than MAX_RECORD_LINES lines are a quote left open: reject the line it opened
        on (found by pairing quotes, before Arrow would swallow the lines after it)."""
        starts, _, nls = _spans(buf, layout.quote)
        spread = np.diff(np.append(nls, buf.count(b"\n") + 1))
        bad = np.flatnonzero(spread > MAX_RECORD_LINES)
        for k in reversed(bad.tolist()):
            take_out(int(starts[k]), f"a quote opened on line {first_line + int(nls[k])} is not closed; the line "
                                     "is rejected and reading goes on with the next one")
        return bool(len(bad))

    if b"\x00" in buf:
        clean_bytes()
    cleaned = False
    if b'"' in buf:
        while open_quotes():
            pass
    numeric = {c: _ARROW_TYPES[t] for c, t in (types or {}).items() if t in _ARROW_TYPES}
    if b"0x" in buf or b"0X" in buf:  # Arrow reads 0x10 as 16: such a chunk's numbers are checked as text
        numeric = {}
    try_typed = bool(numeric)
    for _ in range(1000):
        invalid: list = []

        def on_invalid(row: object, invalid: list = invalid) -> str:
            invalid.append(row)
            return "skip"

        try:
            t = pacsv.read_csv(
                pa.BufferReader(pa.py_buffer(buf)),  # no copy of the chunk
                # one thread: the warehouse inserts the previous chunk on the other core (ingest.prefetch);
                # one block: a quote left open may swallow most of the chunk into one record
                read_options=pacsv.ReadOptions(column_names=layout.header, block_size=len(buf) + (1 << 16),
                                               use_threads=False),
                parse_options=pacsv.ParseOptions(delimiter=layout.delimiter, quote_char=layout.quote,
                                                 newlines_in_values=True, invalid_row_handler=on_invalid),
                convert_options=pacsv.ConvertOptions(
                    column_types={c: (numeric.get(c, pa.string()) if try_typed else pa.string())
                                  for c in layout.header},
                    include_columns=layout.declared, strings_can_be_null=True, null_values=[""],
                    quoted_strings_can_be_null=True))
        except (pa.ArrowInvalid, UnicodeDecodeError) as e:
            if try_typed and "conversion error" in str(e):  # a number that does not parse: read text, check below
                try_typed = False
                continue
            if not cleaned and ("UTF8" in str(e) or "UTF-8" in str(e) or isinstance(e, UnicodeDecodeError)):
                cleaned = True
                clean_bytes()
                continue
            return None
        if not invalid and b'"' not in buf and b"\r" not in buf:
            break  # one line, one record: nothing to check (line numbers are found when a row is rejected)
        starts, ends, nls = _spans(buf, layout.quote)
        if len(starts) != t.num_rows + len(invalid) or any(r.number is None for r in invalid):
            return None
        # a quote left open swallows the lines after it: into a record with the wrong number of fields, or —
        # when a later stray quote closes it — into one with the right number but a thousand lines
        spread = np.diff(np.append(nls, buf.count(b"\n") + 1))
        open_quote = sorted({r.number - 1 for r in invalid if "\n" in r.text.rstrip("\r\n")}
                            | {int(k) for k in np.flatnonzero(spread > MAX_RECORD_LINES)})
        if not open_quote:
            break
        for k in reversed(open_quote):  # from the end: earlier positions stay valid
            line = first_line + int(nls[k])
            take_out(int(starts[k]), f"a quote opened on line {line} is not closed; the line is rejected and reading "
                                     "goes on with the next one")
    else:
        return None
    spans: list = []

    def spans_now() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        if not spans:
            spans.extend(_spans(buf, layout.quote))
        return spans[0], spans[1], spans[2]

    if invalid:
        starts, ends, nls = spans_now()
    bad_records = {r.number - 1 for r in invalid}
    for r in invalid:
        k = r.number - 1
        rejects.append((first_line + int(nls[k]),
                        bytes(buf[int(starts[k]):int(ends[k])]).rstrip(b"\r").decode("utf-8", "replace"),
                        f"wrong number of fields: expected {len(layout.header)}, found {r.actual_columns}"))
    good = np.array([k for k in range(t.num_rows + len(invalid)) if k not in bad_records], dtype=np.int64) \
        if bad_records else np.arange(t.num_rows, dtype=np.int64)
    typed = frozenset(numeric) if try_typed else frozenset()
    extra = None
    if numeric and not try_typed:
        # numbers came as text: the rows whose numbers are plain go on typed, the others are checked (and named)
        # by the SQL checks in a small chunk of their own
        t, plain = _numbers(t, numeric)
        if not plain.all():
            starts, ends, nls = spans_now()
            odd = np.flatnonzero(~plain)
            lines = [first_line + int(nls[good[r]]) for r in odd]
            raws = [bytes(buf[int(starts[good[r]]):int(ends[good[r]])]).rstrip(b"\r").decode("utf-8", "replace")
                    for r in odd]
            side = t.take(pa.array(odd)).select(layout.declared)
            side = side.cast(pa.schema([(c, pa.string()) for c in layout.declared]))
            side = side.add_column(0, "_line", pa.array(lines, pa.int64()))
            side = side.add_column(0, "_row", pa.array(np.arange(len(odd), dtype=np.int64)))
            extra = Chunk(side, 0, [], "csv", layout.header_line,
                          where=lambda rs, lines=lines, raws=raws: {r: (lines[r], raws[r]) for r in rs})
            keep = pa.array(plain)
            t = t.filter(keep)
            good = good[plain]
        t = t.cast(pa.schema([(c, numeric.get(c, t.schema.field(c).type)) for c in t.column_names]))
        typed = frozenset(numeric)
    t = _dictionary_strings(t)
    t = t.add_column(0, "_row", pa.array(np.arange(t.num_rows, dtype=np.int64)))
    frozen = buf  # not changed from here on

    def where(rows: list[int]) -> dict[int, tuple[int, str]]:
        starts, ends, nls = spans_now()
        out = {}
        for r in rows:
            k = int(good[r])
            out[r] = (first_line + int(nls[k]),
                      bytes(frozen[int(starts[k]):int(ends[k])]).rstrip(b"\r").decode("utf-8", "replace"))
        return out

    rejects.sort()
    return Chunk(t, nbytes, rejects, "csv", layout.header_line, where=where, typed=typed, extra=extra)

_PLAIN = {"int": r"^[+-]?[0-9]{1,18}$", "float": r"^[+-]?([0-9]+\.?[0-9]*|\.[0-9]+)([eE][+-]?[0-9]+)?$"}


def _numbers(t: pa.Table, numeric: dict[str, pa.DataType]) -> tuple[pa.Table, np.ndarray]:
    """Which rows have plain numbers (or none) in every numeric column: those can be cast exactly."""
    import pyarrow.compute as pc

    plain = np.ones(t.num_rows, dtype=bool)
    for c, typ in numeric.items():
        pattern = _PLAIN["int" if pa.types.is_integer(typ) else "float"]
        ok = pc.or_kleene(pc.is_null(t[c]), pc.match_substring_regex(t[c], pattern))
        plain &= ok.to_numpy(zero_copy_only=False)
    return t, plain


def _cut(buf: bytes, at_eof: bool) -> int | None:
    """Where to end a chunk: after the last newline outside quotes (None: no such newline yet)."""
    if at_eof:
        return len(buf)
    end = buf.rfind(b"\n")
    if end < 0:
        return None
    if buf.find(b'"') < 0:
        return end + 1
    a = np.frombuffer(buf, np.uint8)
    quotes = np.flatnonzero(a == 34)
    newlines = np.flatnonzero(a == 10)
    even = (np.searchsorted(quotes, newlines) & 1) == 0
    outside = newlines[even]
    if len(outside) and len(newlines) - np.searchsorted(newlines, outside[-1]) <= MAX_RECORD_LINES:
        return int(outside[-1]) + 1
    # an open quote: no legitimate record spans that many lines, so cut at the last line and let the parser
    # reject the line where the quote opened (reading more would only grow the chunk)
    if len(newlines) - (np.searchsorted(newlines, outside[-1]) if len(outside) else 0) > MAX_RECORD_LINES:
        return int(newlines[-1]) + 1
    return None


def read_layout(path: str, src: Source, head: bytes) -> tuple[CsvLayout, int]:
    """The file's columns from its header (or the declared order), and the bytes the header takes."""
    opts = src.csv
    if src.csv.header:
        end = head.find(b"\n")
        first = head[: end if end >= 0 else len(head)]
        try:
            text = first.decode("utf-8")
        except UnicodeDecodeError:
            raise InputError(f"{path}:1: the header is not UTF-8 text (declared format csv); convert the file to "
                             "UTF-8 or check the format") from None
        if "\x00" in text:
            raise InputError(f"{path}:1: a NUL byte in the header: not a CSV file (declared format csv)")
        row = next(csv.reader([text.rstrip("\r")], delimiter=opts.delimiter, quotechar=opts.quote), None)
        if not row or not any(h.strip() for h in row):
            raise InputError(f"{path}: the file is empty; a CSV with a header line is expected")
        row, missing = match_header(row, list(src.columns))
        if missing:
            raise InputError(
                f"{path}:1: the header lacks declared column(s) {', '.join(missing)} (it has {', '.join(row[:20])}); "
                "fix the file or the source's columns")
        return CsvLayout(row, text.rstrip("\r"), opts.delimiter, opts.quote, list(src.columns)), \
            (end + 1 if end >= 0 else len(head))
    if not head.strip():
        raise InputError(f"{path}: the file is empty")
    cols = list(src.columns)
    return CsvLayout(cols, opts.delimiter.join(cols), opts.delimiter, opts.quote, cols), 0


def csv_chunks(f: io.BufferedReader, path: str, src: Source, size: int | None = None,
               resume: tuple[int, int] | None = None) -> Iterator[Chunk]:
    """The file's chunks; ``resume`` = (byte offset, line number) of a load that stopped there."""
    chunk_bytes = size or default_chunk_bytes()
    head = f.read(chunk_bytes)
    consumed = 0
    if head.startswith(BOM):  # Excel's "CSV UTF-8"
        head, consumed = head[len(BOM):], len(BOM)
    layout, skip = read_layout(path, src, head)
    pending, consumed = head[skip:], consumed + skip
    line = 2 if src.csv.header else 1
    eof = len(head) < chunk_bytes
    if resume is not None and resume[0] > consumed:
        f.seek(resume[0])
        consumed, line = resume
        pending = f.read(chunk_bytes)
        eof = len(pending) < chunk_bytes
    types = {n: c.type for n, c in src.columns.items()}
    while pending or not eof:
        cut = _cut(pending, eof)
        if cut is None:
            if not eof and len(pending) < MAX_RECORD_BYTES + chunk_bytes:
                more = f.read(chunk_bytes)
                eof = len(more) < chunk_bytes
                pending += more
                continue
            cut = pending.rfind(b"\n") + 1 or len(pending)  # an open quote: the parsers reject its line
        data, pending = pending[:cut], pending[cut:]
        consumed += len(data)
        chunk = fast_chunk(data, line, layout, len(data), types) or exact_chunk(data, line, layout, len(data))
        line += data.count(b"\n")
        chunk.end, chunk.next_line = consumed, line
        yield chunk
        if not eof and len(pending) < chunk_bytes:
            more = f.read(chunk_bytes)
            eof = len(more) < chunk_bytes
            pending += more
