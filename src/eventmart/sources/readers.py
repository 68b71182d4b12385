"""File and table readers. Each stages rows into two DuckDB temp tables:

- ``_em_good``: the declared columns (typed), ``_time`` (UTC) and ``_ord`` (read order), and
- ``_em_rej``: ``file, line, raw, reason, fmt`` for every row that failed a check.

A file that cannot be used at all raises :class:`InputError` before anything reaches the warehouse.
"""

from __future__ import annotations

import csv
import json
import os
from collections.abc import Callable, Iterator

import duckdb
import pyarrow as pa
import pyarrow.parquet as pq

from ..config import Source
from ..errors import InputError
from ..warehouse.base import quote_ident as q
from .validate import _MAX_S, READ_TYPES, sql_str, time_sql, validated_sql

GOOD, REJ = "_em_good", "_em_rej"


def init_stage(con: duckdb.DuckDBPyConnection, src: Source) -> None:
    cols = ", ".join(f"{q(n)} {READ_TYPES[c.type]}" for n, c in src.columns.items())
    con.execute(f"CREATE OR REPLACE TEMP TABLE {GOOD} ({cols}, _time TIMESTAMP, _ord BIGINT)")
    con.execute(f"CREATE OR REPLACE TEMP TABLE {REJ} (file VARCHAR, line BIGINT, raw VARCHAR, reason VARCHAR, fmt VARCHAR, header VARCHAR, rejected_at TIMESTAMP)")


def _next_ord(con: duckdb.DuckDBPyConnection) -> int:
    return con.execute(f"SELECT COALESCE(max(_ord), 0) FROM {GOOD}").fetchone()[0]


def _append_validated(con: duckdb.DuckDBPyConnection, src: Source, text_rel: str, file: str, fmt: str) -> None:
    """Validate a text relation ``(_line, _raw, cols...)`` and split it into good rows and rejects."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _em_checked AS {validated_sql(src, text_rel)}")
    base = _next_ord(con)
    cols = ", ".join(q(n) for n in src.columns)
    con.execute(
        f"INSERT INTO {GOOD} SELECT {cols}, _time, {base} + _line FROM _em_checked WHERE _reason IS NULL"
    )
    con.execute(
        f"INSERT INTO {REJ} (file, line, raw, reason, fmt, header) SELECT $file, _line, _raw, _reason, $fmt, NULL FROM _em_checked "
        "WHERE _reason IS NOT NULL ORDER BY _line",
        {"file": file, "fmt": fmt},
    )
    con.execute("DROP TABLE _em_checked")


# --- CSV -------------------------------------------------------------------------------------


def _csv_header(path: str, src: Source) -> list[str]:
    opts = src.csv
    try:
        with open(path, encoding="utf-8", newline="") as f:
            row = next(csv.reader(f, delimiter=opts.delimiter, quotechar=opts.quote), None)
    except UnicodeDecodeError:
        raise InputError(f"{path}:1: not a UTF-8 CSV file (declared format csv); convert it to UTF-8") from None
    if row is None:
        raise InputError(f"{path}: the file is empty; a CSV with a header line is expected")
    header = [h.strip() for h in row]
    missing = [c for c in src.columns if c not in header]
    if missing:
        raise InputError(
            f"{path}:1: the header lacks declared column(s) {', '.join(missing)} (found: {', '.join(header)[:200]}); "
            "fix the file or the source's columns"
        )
    dup = {h for h in header if header.count(h) > 1}
    if dup:
        raise InputError(f"{path}:1: the header repeats column(s) {', '.join(sorted(dup))}; fix the file")
    return header


def _csv_records(path: str, src: Source, first_line: int) -> Iterator[tuple[int, str, list[str]]]:
    """(start line, raw text, fields) per record, the way Python's csv module splits them."""
    buf: list[str] = []

    def lines() -> Iterator[str]:
        with open(path, encoding="utf-8", errors="replace", newline="") as f:
            for ln in f:
                buf.append(ln)
                yield ln

    reader = csv.reader(lines(), delimiter=src.csv.delimiter, quotechar=src.csv.quote)
    start = 1
    for fields in reader:
        raw = "".join(buf).rstrip("\r\n")
        buf.clear()
        if start >= first_line:
            yield start, raw, fields
        start = reader.line_num + 1


def _stage_csv(con: duckdb.DuckDBPyConnection, src: Source, path: str) -> None:
    opts = src.csv
    if opts.header:
        header = _csv_header(path, src)
    else:
        header = list(src.columns)
    # undeclared columns are read as text and dropped
    read_cols = {h: READ_TYPES[src.columns[h].type] if h in src.columns else "VARCHAR" for h in header}
    spec = "{" + ", ".join(f"{sql_str(k)}: {sql_str(v)}" for k, v in read_cols.items()) + "}"
    con.execute("DROP TABLE IF EXISTS _em_csv_errors; DROP TABLE IF EXISTS _em_csv_scans")
    cols = ", ".join(q(n) for n in src.columns)
    base = _next_ord(con)
    try:
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _em_csv AS SELECT {cols}, row_number() OVER () AS _n FROM read_csv($path, "
            f"header = {str(opts.header).lower()}, delim = $delim, quote = $quote, escape = $quote, columns = {spec}, "
            "auto_detect = false, store_rejects = true, rejects_table = '_em_csv_errors', "
            "rejects_scan = '_em_csv_scans', max_line_size = 16777216)",
            {"path": path, "delim": opts.delimiter, "quote": opts.quote},
        )
    except duckdb.Error as e:
        raise InputError(f"{path}: cannot read as CSV ({str(e).splitlines()[0][:200]}); check the file and csv options") from None
    # structural and type problems: DuckDB reports the exact line and the raw text
    declared = " ".join(f"WHEN {sql_str(n)} THEN {sql_str(c.type)}" for n, c in src.columns.items())
    con.execute(
        f"INSERT INTO {REJ} (file, line, raw, reason, fmt, header) SELECT $file, line, csv_line, "
        "CASE error_type WHEN 'CAST' THEN 'column ' || column_name || ': ' || "
        "COALESCE('cannot read ' || NULLIF(regexp_extract(error_message, 'Could not convert string \"(.*)\" to', 1), '') "
        f"|| ' as ' || CASE column_name {declared} END, error_message) "
        "WHEN 'MISSING COLUMNS' THEN 'wrong number of fields: ' || error_message "
        "WHEN 'TOO MANY COLUMNS' THEN 'wrong number of fields: ' || error_message "
        "ELSE lower(error_type) || ': ' || error_message END, 'csv', $header "
        "FROM _em_csv_errors ORDER BY line",
        {"file": path, "header": opts.delimiter.join(header)},
    )
    # what the reader cannot check: required values and the unix-time range
    bad_pred = []
    for n, c in src.columns.items():
        if c.required or n == src.time.column:
            bad_pred.append(f"{q(n)} IS NULL")
    time_expr = time_sql(src, src.time.column)
    bad_pred.append(f"({time_expr}) IS NULL")
    bad = " OR ".join(bad_pred)
    con.execute(
        f"INSERT INTO {GOOD} SELECT {cols}, {time_expr}, {base} + _n FROM _em_csv WHERE NOT ({bad})"
    )
    n_bad = con.execute(f"SELECT count(*) FROM _em_csv WHERE {bad}").fetchone()[0]
    if n_bad:
        _locate_csv_rejects(con, src, path, header, n_bad)
    con.execute("DROP TABLE _em_csv")


def _locate_csv_rejects(con: duckdb.DuckDBPyConnection, src: Source, path: str, header: list[str], n_bad: int) -> None:
    """Find the lines of rows that parsed but miss a required value or have an impossible time.

    DuckDB's reader does not number good rows, so this rare path re-reads the file with Python's csv.
    """
    already = {r[0] for r in con.execute("SELECT line FROM _em_csv_errors").fetchall()}
    idx = {h: i for i, h in enumerate(header)}
    scale = {"ms": 1000, "s": 1}.get(src.time.unit)
    found = []
    for line, raw, fields in _csv_records(path, src, 2 if src.csv.header else 1):
        if line in already or len(fields) != len(header):
            continue
        reason = None
        for n, c in src.columns.items():
            if (c.required or n == src.time.column) and fields[idx[n]] == "":
                reason = f"missing required value for column {n}"
                break
        if reason is None and scale:
            v = fields[idx[src.time.column]]
            try:
                ok = 0 <= float(v) < _MAX_S * scale
            except ValueError:
                ok = True  # the reader already rejected unparsable values
            if not ok:
                reason = (
                    f"time column {src.time.column}: {v} is outside 1970..2200 as unix {src.time.unit}; "
                    "check the declared unit (s or ms)"
                )
        if reason:
            found.append((path, line, raw, reason, "csv", src.csv.delimiter.join(header)))
    con.executemany(f"INSERT INTO {REJ} (file, line, raw, reason, fmt, header) VALUES (?, ?, ?, ?, ?, ?)", found)


# --- JSONL -----------------------------------------------------------------------------------


def _stage_json_lines(con: duckdb.DuckDBPyConnection, src: Source, lines: list[tuple[int, str]], file: str) -> None:
    tbl = pa.table({"_line": pa.array([n for n, _ in lines], pa.int64()), "_raw": pa.array([s for _, s in lines], pa.string())})
    con.register("_em_lines", tbl)
    try:
        sel = ", ".join(
            f"json_extract_string(_doc, {sql_str('$.' + json.dumps(n))}) AS {q(n)}"
            for n in src.columns
        )
        con.execute(
            "CREATE OR REPLACE TEMP TABLE _em_json AS SELECT _line, _raw, "
            "CASE WHEN NOT json_valid(_raw) THEN 'not valid JSON' "
            "WHEN json_type(CASE WHEN json_valid(_raw) THEN _raw END) <> 'OBJECT' THEN 'not a JSON object' "
            "END AS _why FROM _em_lines"
        )
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _em_text AS SELECT _line, _raw, _why IS NULL AS _ok, _why, {sel} "
            "FROM (SELECT _line, _why, _raw, CASE WHEN _why IS NULL THEN _raw END AS _doc FROM _em_json)"
        )
        con.execute("DROP TABLE _em_json")
    finally:
        con.unregister("_em_lines")
    con.execute(
        f"INSERT INTO {REJ} (file, line, raw, reason, fmt, header) SELECT $file, _line, _raw, _why, 'json', NULL FROM _em_text WHERE NOT _ok ORDER BY _line",
        {"file": file},
    )
    _append_validated(con, src, "(SELECT * FROM _em_text WHERE _ok)", file, "json")
    con.execute("DROP TABLE _em_text")


def _stage_jsonl(con: duckdb.DuckDBPyConnection, src: Source, path: str) -> None:
    lines: list[tuple[int, str]] = []
    try:
        with open(path, encoding="utf-8") as f:
            for i, ln in enumerate(f, 1):
                s = ln.rstrip("\r\n")
                if s.strip():
                    lines.append((i, s))
    except UnicodeDecodeError:
        raise InputError(f"{path}: not a UTF-8 text file (declared format jsonl); convert it to UTF-8") from None
    if lines and not any(s.lstrip().startswith("{") for _, s in lines[:1000]):
        raise InputError(f"{path}:{lines[0][0]}: not JSON Lines (declared format jsonl): no line starts with '{{'")
    _stage_json_lines(con, src, lines, path)


# --- Parquet and database rows: checked as JSON so rejects can be replayed the same way -----


def _stage_arrow_batches(
    con: duckdb.DuckDBPyConnection, src: Source, batches: Callable[[], Iterator[pa.Table]], file: str
) -> None:
    """Rows from a typed source (Parquet, a database) are checked as text, keeping their row number."""
    line = 0
    for tbl in batches():
        con.register("_em_batch", tbl)
        try:
            have = set(tbl.column_names)
            sel = ", ".join(
                (f"CAST({q(n)} AS VARCHAR)" if n in have else "NULL::VARCHAR") + f" AS {q(n)}" for n in src.columns
            )
            con.execute(
                f"CREATE OR REPLACE TEMP TABLE _em_text AS SELECT {line} + row_number() OVER () AS _line, "
                f"CAST(to_json(t) AS VARCHAR) AS _raw, {sel} FROM _em_batch t"
            )
        finally:
            con.unregister("_em_batch")
        _append_validated(con, src, "_em_text", file, "json")
        con.execute("DROP TABLE _em_text")
        line += tbl.num_rows


def _stage_parquet(con: duckdb.DuckDBPyConnection, src: Source, path: str) -> None:
    try:
        pf = pq.ParquetFile(path)
    except Exception as e:  # pyarrow raises several types for a non-Parquet file
        raise InputError(f"{path}: not a Parquet file (declared format parquet): {str(e)[:120]}") from None
    missing = [c for c in src.columns if c not in pf.schema_arrow.names]
    if missing:
        raise InputError(
            f"{path}: the Parquet schema lacks declared column(s) {', '.join(missing)}; fix the file or the source"
        )
    fast = all(
        pf.schema_arrow.field(n).type == _arrow_type(c.type) for n, c in src.columns.items()
    ) and src.time.unit != "timestamp"
    if fast:
        # exact types already: validate in one SQL pass straight from the file
        _stage_parquet_typed(con, src, path)
        return

    def batches() -> Iterator[pa.Table]:
        for b in pf.iter_batches(batch_size=1_000_000, columns=list(src.columns)):
            yield pa.Table.from_batches([b])

    _stage_arrow_batches(con, src, batches, path)


def _arrow_type(t: str) -> pa.DataType:
    return {"string": pa.string(), "int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(),
            "timestamp": pa.timestamp("us"), "date": pa.date32()}[t]


def _stage_parquet_typed(con: duckdb.DuckDBPyConnection, src: Source, path: str) -> None:
    cols = ", ".join(q(n) for n in src.columns)
    base = _next_ord(con)
    req = [f"{q(n)} IS NULL" for n, c in src.columns.items() if c.required or n == src.time.column]
    time_expr = time_sql(src, src.time.column)
    bad = " OR ".join([*req, f"({time_expr}) IS NULL"])
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE _em_pq AS SELECT {cols}, file_row_number + 1 AS _line "
        "FROM read_parquet($path, file_row_number = true)",
        {"path": path},
    )
    con.execute(f"INSERT INTO {GOOD} SELECT {cols}, {time_expr}, {base} + _line FROM _em_pq WHERE NOT ({bad})")
    if con.execute(f"SELECT count(*) FROM _em_pq WHERE {bad}").fetchone()[0]:
        text = ", ".join(f"CAST({q(n)} AS VARCHAR) AS {q(n)}" for n in src.columns)
        con.execute(
            f"CREATE OR REPLACE TEMP TABLE _em_text AS SELECT _line, CAST(to_json(t) AS VARCHAR) AS _raw, {text} "
            f"FROM (SELECT * EXCLUDE (_line), _line FROM _em_pq WHERE {bad}) t"
        )
        # reuse the text checks for the reasons; _raw keeps the row as JSON for replay
        con.execute("UPDATE _em_text SET _raw = CAST(json_remove(_raw::JSON, '$._line') AS VARCHAR)")
        _append_validated(con, src, "_em_text", path, "json")
        con.execute("DROP TABLE _em_text")
    con.execute("DROP TABLE _em_pq")


STAGERS = {"csv": _stage_csv, "jsonl": _stage_jsonl, "parquet": _stage_parquet}


def check_readable(path: str) -> None:
    if not os.path.exists(path):
        raise InputError(f"{path}: no such file; check the path or the source's `path`")
    if os.path.isdir(path):
        raise InputError(f"{path}: is a folder, not a file; give a file or a glob like {path}/*.csv")
    if not os.access(path, os.R_OK):
        raise InputError(f"{path}: not readable (permission denied); fix its permissions")


def stage_file(con: duckdb.DuckDBPyConnection, src: Source, path: str) -> None:
    check_readable(path)
    STAGERS[src.format](con, src, path)


def stage_replay(con: duckdb.DuckDBPyConnection, src: Source, rows: list[tuple[int, str, str, str | None]]) -> dict[tuple[str, int], int]:
    """Stage rejected rows again; ``rows`` are (id, raw, fmt, csv header).

    Returns (staged file, staged line) -> reject id, so rows rejected again keep their identity.
    """
    import tempfile

    origin: dict[tuple[str, int], int] = {}
    json_rows = [(i, raw) for i, raw, fmt, _ in rows if fmt != "csv"]
    if json_rows:
        _stage_json_lines(con, src, [(n, raw) for n, (_, raw) in enumerate(json_rows, 1)], "<replay>")
        origin.update({("<replay>", n): i for n, (i, _) in enumerate(json_rows, 1)})
    by_header: dict[str, list[tuple[int, str]]] = {}
    for i, raw, fmt, header in rows:
        if fmt == "csv":
            by_header.setdefault(header or src.csv.delimiter.join(src.columns), []).append((i, raw))
    for header, group in by_header.items():
        # one temp file per original header, so fields keep their meaning
        fd, tmp = tempfile.mkstemp(suffix=".csv", prefix="eventmart-replay-")
        try:
            with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
                line = 1
                if src.csv.header:
                    f.write(header + "\n")
                    line = 2
                for i, raw in group:
                    origin[(tmp, line)] = i
                    f.write(raw + "\n")
                    line += raw.count("\n") + 1
            _stage_csv(con, src, tmp)
        finally:
            os.unlink(tmp)
    return origin
