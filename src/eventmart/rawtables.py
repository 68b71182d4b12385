"""The tables a source's loads write: its raw table (the declared columns, `_time`, `_loaded_at`, `_ingest`) and
`<source>_rejects`, the ingest log and the file ledger. Sources write them; marts, the vault and the dashboards read
them."""

from __future__ import annotations

from collections.abc import Sequence

from .config import Source
from .errors import ProjectError
from .warehouse import Warehouse
from .warehouse.base import TableLayout

INGESTS, FILES, SEQ = "_eventmart_ingests", "_eventmart_files", "_eventmart_ingests_seq"

REJECT_COLUMNS = ["rejected_at", "file", "line", "raw", "reason", "fmt", "header", "ingest"]


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
