"""Type checks shared by every reader, written as DuckDB SQL over text values.

A reader produces a relation ``(_row, <column> VARCHAR ..., [_why])``; :func:`validated_sql` turns it into typed
columns, the UTC event time ``_time`` and a ``_reason`` that is NULL for good rows and otherwise lists every
problem of the row (one reject per row, whatever is wrong with it). Values are exact: ``500.5``, ``0x10`` or
``1e3`` are not integers, and nothing is rounded into a key that belongs to another row.
"""

from __future__ import annotations

from datetime import datetime

from ..config import Source, decimal_spec
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
_INT_RE = r"\s*[+-]?[0-9]+\s*"


def sql_str(s: str) -> str:
    """A SQL string literal for text that comes from the project file or from eventmart itself."""
    return "'" + s.replace("'", "''") + "'"


def valid_range(src: Source) -> tuple[datetime, datetime]:
    """The event times a source accepts, [from, to) in UTC."""
    from ..timeutil import parse_time

    return parse_time(src.time.valid_from, "time.valid.from"), parse_time(src.time.valid_to, "time.valid.to")


def time_sql(src: Source, col: str) -> str:
    """SQL for the UTC ``_time`` of a typed time column (NULL when it cannot be a time at all)."""
    c = q(col)
    if src.time.unit == "timestamp":
        if src.columns[col].type == "string":  # kept as written; read as a time here (an offset counts)
            return f"CAST({parsed_time_sql(c, src.time.format)} AS TIMESTAMP)"
        return f"CAST({c} AS TIMESTAMP)"
    scale = 1000 if src.time.unit == "ms" else 1
    # within what a TIMESTAMP holds (year 1..294000); the plausible range is checked separately
    return (f"CASE WHEN abs({c}) < {9_000_000_000_000 * scale // 1000} "
            f"THEN make_timestamp(CAST(round({c} * {1_000_000 // scale}) AS BIGINT)) END")


def parsed_time_sql(v: str, fmt: str | None) -> str:
    """Text as a TIMESTAMPTZ: ISO-like (2024-03-10, 2024/03/10 10:00, offsets) or by a strptime format."""
    if fmt is None:
        return f"TRY_CAST({v} AS TIMESTAMPTZ)"
    return f"CAST(try_strptime(trim({v}), {sql_str(fmt)}) AS TIMESTAMPTZ)"


def read_type(t: str) -> str:
    """The DuckDB type the stage reads a declared column type as."""
    spec = decimal_spec(t)
    return f"DECIMAL({spec[0]},{spec[1]})" if spec else READ_TYPES[t]


def typed_sql(name: str, t: str, fmt: str | None = None) -> str:
    v = q(name)
    if fmt is not None and t in ("timestamp", "date"):  # the time column, written in a declared format
        return f"CAST({parsed_time_sql(v, fmt)} AS {READ_TYPES[t]})"
    spec = decimal_spec(t)
    if spec is not None:  # exact: at most S decimals (trailing zeros aside) and P-S digits before the point
        p, s = spec
        pattern = f"\\s*[+-]?0*[0-9]{{0,{p - s}}}(\\.[0-9]{{0,{s}}}0*)?\\s*"
        return (f"CASE WHEN regexp_full_match({v}, '{pattern}') AND regexp_matches({v}, '[0-9]') "
                f"THEN TRY_CAST(trim({v}) AS DECIMAL({p},{s})) END")
    if t == "int":  # exact: digits only; TRY_CAST alone would round 500.5 and read 0x10 as hex
        return f"CASE WHEN regexp_full_match({v}, '{_INT_RE}') THEN TRY_CAST(trim({v}) AS BIGINT) END"
    if t == "float":
        return f"CASE WHEN isfinite(TRY_CAST({v} AS DOUBLE)) THEN TRY_CAST({v} AS DOUBLE) END"
    return f"TRY_CAST({v} AS {read_type(t)})"


def validated_sql(src: Source, text_rel: str, has_why: bool = False, typed_cols: set[str] | frozenset = frozenset()) -> str:
    """From text columns to typed columns plus ``_time`` and ``_reason`` (every problem, joined by '; ').

    ``has_why``: the relation carries ``_why``, a problem found before typing (not JSON, …); such a row has
    that reason only. ``typed_cols`` arrive typed already (a reader parsed them exactly): only their presence
    (and, for floats, finiteness) is checked.
    """
    typed, checks, fails = [], [], []
    for name, col in src.columns.items():
        v = q(name)
        if name in typed_cols:
            t = f"CASE WHEN isfinite({v}) THEN {v} END" if col.type == "float" else v
        else:
            t = typed_sql(name, col.type, src.time.format if name == src.time.column else None)
        typed.append(f"{t} AS {v}")
        what = "a finite number" if col.type == "float" else col.type
        if decimal_spec(col.type):
            p_, s_ = decimal_spec(col.type)
            what = f"a number with at most {s_} decimal(s) and {p_ - s_} digit(s) before the point ({col.type})"
        if name == src.time.column and src.time.format and col.type != "string":
            what += f" in the format {src.time.format}"
        required = col.required or name == src.time.column
        missing = f"WHEN {v} IS NULL THEN {sql_str(f'missing required value for column {name}')}" if required else ""
        checks.append(f"CASE {missing} WHEN {v} IS NOT NULL AND {t} IS NULL THEN "
                      f"{sql_str(f'column {name}: cannot read ')} || {v} || {sql_str(f' as {what}')} END")
        if name in typed_cols and col.type != "float":
            if required:
                fails.append(f"{v} IS NULL")
        else:
            fails.append(f"({v} IS NULL AND {'TRUE' if required else 'FALSE'}) OR ({v} IS NOT NULL AND {t} IS NULL)")
    lo, hi = valid_range(src)
    tcol = q(src.time.column)
    unit = {"ms": "unix ms", "s": "unix seconds", "timestamp": "a timestamp"}[src.time.unit]
    tail = f" is outside the valid range {lo:%Y-%m-%d}..{hi:%Y-%m-%d}"
    fix = "; check the declared unit or the source's time.valid range"
    if src.time.unit == "timestamp":
        hint = sql_str(tail + fix)
    else:  # the likely mix-up, by which side the value falls on
        scale = 1000 if src.time.unit == "ms" else 1
        small, large = {"ms": ("seconds", "microseconds"), "s": (None, "milliseconds")}[src.time.unit]
        lo_v = int((lo - datetime(1970, 1, 1)).total_seconds()) * scale
        hint = (f"CASE WHEN {tcol} < {lo_v} THEN {sql_str(tail + (f'; is it in {small}?' if small else '') + fix)} "
                f"ELSE {sql_str(tail + f'; is it in {large}?' + fix)} END")
    out_of_range = (
        f"{sql_str(f'time column {src.time.column}: ')} || CAST({tcol} AS VARCHAR) || "
        f"COALESCE(' (' || strftime(_time0, '%Y-%m-%d %H:%M:%S') || {sql_str(f' as {unit})')}, '') || {hint}")
    # a time column kept as text: a value that is no time at all is named as such, not as out of range
    if src.time.unit == "timestamp" and src.columns[src.time.column].type == "string":
        how = (f" in the format {src.time.format}" if src.time.format else
               "; declare time.format (e.g. '%d/%m/%Y %H:%M') if the times are written another way")
        out_of_range = (f"CASE WHEN _time0 IS NULL AND {tcol} IS NOT NULL THEN {sql_str(f'time column {src.time.column}: cannot read ')} || "
                        f"{tcol} || {sql_str(' as a time' + how)} ELSE {out_of_range} END")
    reasons = ", ".join(checks)
    why = "_why" if has_why else "NULL"
    # the reasons' text is built only for rows that fail (CASE evaluates lazily): the good rows pay for one test
    inner = (f"SELECT _row, {', '.join(typed)}, {why} AS _why0, "
             f"CASE WHEN {' OR '.join(fails) or 'FALSE'} THEN concat_ws('; ', {reasons}) ELSE '' END AS _r0 "
             f"FROM {text_rel}")
    return (
        f"SELECT * EXCLUDE (_why0, _r0, _time0), _time0 AS _time, "
        f"CASE WHEN _why0 IS NOT NULL THEN _why0 WHEN _r0 <> '' THEN _r0 "
        f"WHEN _time0 IS NULL OR _time0 < TIMESTAMP '{lo:%Y-%m-%d %H:%M:%S}' "
        f"OR _time0 >= TIMESTAMP '{hi:%Y-%m-%d %H:%M:%S}' THEN {out_of_range} END AS _reason "
        f"FROM (SELECT *, {time_sql(src, src.time.column)} AS _time0 FROM ({inner}))"
    )
