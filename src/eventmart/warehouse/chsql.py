"""ClickHouse as eventmart writes it: column types and their names back, the settings every session gets, typed
server-side parameters (values never become SQL text), and the types a query's result is stored as."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from .base import PARAM_RE

_TYPES = {
    "string": "String",
    "int": "Int64",
    "float": "Float64",
    "bool": "Bool",
    "timestamp": "DateTime64(6, 'UTC')",
    "date": "Date32",
}
_BACK = {"String": "string", "Int64": "int", "Float64": "float", "Bool": "bool", "Date32": "date", "Date": "date"}

# every session: SQL semantics where ClickHouse's defaults differ from the other engines'
SETTINGS = {
    "session_timezone": "UTC",
    "aggregate_functions_null_for_empty": 1,  # sum() over no rows is NULL, as in SQL
    "join_use_nulls": 1,  # an outer join's missing side is NULL, not the type's default
    "transform_null_in": 1,  # NULL keys compare equal in IN: nullable keys deduplicate
    "prefer_column_name_to_alias": 1,  # `ts` means the column ts even if the SELECT names a bucket ts
    "max_partitions_per_insert_block": 0,  # a long window spans many daily partitions
    "mutations_sync": 2,  # ALTER … MODIFY COLUMN returns when it is done
}
# MergeTree settings for eventmart's own bookkeeping tables (lightweight UPDATE) and nullable sorting keys
_TABLE_SETTINGS = "allow_nullable_key = 1, enable_block_number_column = 1, enable_block_offset_column = 1"
_PARTITION = {"day": "toYYYYMMDD({})", "month": "toYYYYMM({})"}
_SAFE_PART = re.compile(r"^[0-9A-Za-z_-]+$")
SEQUENCES = "_eventmart_sequences"


def _param_type(v: Any) -> str:
    if v is None:
        return "Nullable(String)"
    if isinstance(v, bool):
        return "Bool"
    if isinstance(v, int):
        return "Int64"
    if isinstance(v, float):
        return "Float64"
    if isinstance(v, datetime):
        return "DateTime64(6)"
    if isinstance(v, date):
        return "Date32"
    if isinstance(v, str):
        return "String"
    if isinstance(v, (list, tuple)):
        return "Array(String)"
    raise TypeError(f"no ClickHouse type for a parameter of type {type(v).__name__}")


def _prepare(sql: str, params: dict[str, Any] | None) -> tuple[str, dict[str, Any] | None]:
    """``{{ name }}`` → ClickHouse's typed server-side parameter ``{name:Type}``: values never become SQL text."""
    if not params:
        if PARAM_RE.search(sql):
            raise KeyError(f"no value for parameter(s) {PARAM_RE.findall(sql)}")
        return sql, None
    used = set(PARAM_RE.findall(sql))
    out = {k: ([str(x) for x in v] if isinstance(v, (list, tuple)) else v) for k, v in params.items() if k in used}
    return PARAM_RE.sub(lambda m: "{" + m.group(1) + ":" + _param_type(params[m.group(1)]) + "}", sql), out


def _unwrap(t: str) -> str:
    while True:
        m = re.fullmatch(r"(?:Nullable|LowCardinality)\((.*)\)", t)
        if not m:
            return t
        t = m.group(1)


def _nullable(t: str) -> str:
    return t if t.startswith(("Nullable(", "LowCardinality(")) else f"Nullable({t})"


def _stored(t: str, low_cardinality: bool) -> str:
    """A query result's type as a table column: counts signed (UInt64 would wrap on subtraction), text dimensions
    low-cardinality."""
    if t.startswith("AggregateFunction("):  # a kept state: as the engine made it
        return t
    inner = _unwrap(t)
    nullable = t.startswith(("Nullable(", "LowCardinality(Nullable("))
    if re.fullmatch(r"U?Int(8|16|32|64)", inner):
        inner = "Int64"
    if inner.startswith("DateTime64"):
        inner = "DateTime64(6, 'UTC')"
    elif inner.startswith("DateTime"):
        inner = "DateTime('UTC')"
    out = f"Nullable({inner})" if nullable else inner
    if low_cardinality and inner == "String":
        out = f"LowCardinality({out})"
    return out


def redact(url: str) -> str:
    """A server URL without its credentials, for messages."""
    return re.sub(r"//[^/@]*@", "//", url)
