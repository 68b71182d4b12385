"""Type checks shared by every reader, written as DuckDB SQL over text values.

A reader produces a relation ``(_line, _raw, <column> VARCHAR ...)``; :func:`validated_sql` turns it into
typed columns, the UTC event time ``_time`` and a ``_reason`` that is NULL for good rows.
"""

from __future__ import annotations

from ..config import Source
from ..warehouse.base import quote_ident as q

# how the DuckDB stage reads each declared type; timestamps accept an offset and are stored in UTC
READ_TYPES = {
    "string": "VARCHAR",
    "int": "BIGINT",
    "float": "DOUBLE",
    "bool": "BOOLEAN",
    "timestamp": "TIMESTAMPTZ",
    "date": "DATE",
}
# unix times outside [1970, 2200) are almost always a unit mistake (seconds read as ms, or the reverse)
_MAX_S = 7258118400


def sql_str(s: str) -> str:
    """A SQL string literal for text that comes from the project file or from eventmart itself."""
    return "'" + s.replace("'", "''") + "'"


def time_sql(src: Source, col: str) -> str:
    """SQL for the UTC ``_time`` of a typed time column (NULL when out of range)."""
    c = q(col)
    if src.time.unit == "timestamp":
        return f"CAST({c} AS TIMESTAMP)"
    scale = 1000 if src.time.unit == "ms" else 1
    return (
        f"CASE WHEN {c} >= 0 AND {c} < {_MAX_S * scale} "
        f"THEN make_timestamp(CAST(round({c} * {1_000_000 // scale}) AS BIGINT)) END"
    )


def range_reason_sql(src: Source) -> str:
    c = q(src.time.column)
    return (
        f"{sql_str(f'time column {src.time.column}: ')} || CAST({c} AS VARCHAR) || "
        f"{sql_str(f' is outside 1970..2200 as unix {src.time.unit}; check the declared unit (s or ms)')}"
    )


def validated_sql(src: Source, text_rel: str) -> str:
    """From text columns to typed columns plus ``_time`` and ``_reason`` (first problem found)."""
    typed, checks = [], []
    for name, col in src.columns.items():
        v = q(name)
        t = READ_TYPES[col.type]
        typed.append(f"TRY_CAST({v} AS {t}) AS {v}")
        if col.required or name == src.time.column:
            checks.append(f"WHEN {v} IS NULL THEN {sql_str(f'missing required value for column {name}')}")
        checks.append(
            f"WHEN {v} IS NOT NULL AND TRY_CAST({v} AS {t}) IS NULL THEN "
            f"{sql_str(f'column {name}: cannot read ')} || {v} || {sql_str(f' as {col.type}')}"
        )
    inner = f"SELECT _line, _raw, {', '.join(typed)}, CASE {' '.join(checks)} END AS _reason FROM {text_rel}"
    tcol = src.time.column
    return (
        f"SELECT * EXCLUDE (_reason, _time0), _time0 AS _time, "
        f"COALESCE(_reason, CASE WHEN _time0 IS NULL THEN {range_reason_sql(src)} END) AS _reason "
        f"FROM (SELECT *, {time_sql(src, tcol)} AS _time0 FROM ({inner}))"
    )
