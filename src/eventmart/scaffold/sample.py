"""What a sample of a CSV file says about itself, for `eventmart init --from`: each column's type (read the way the
loader reads it), the event time and how it is written, a key, how far apart the events are.

Everything is decided from the text of the first rows, by the same rules the loader applies: a column is `int` when
every value is a plain integer, `decimal(P,S)` when every value has at most a few decimals (so that totals come out
exactly as the user would write them), a time column when every value reads as a time — ISO or by one strptime
format, or a number in the unix seconds/milliseconds range of 1990–2100.
"""

from __future__ import annotations

import itertools
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from ..config import normal_name
from ..errors import InputError

SAMPLE_ROWS = 200_000
MAX_DECIMALS = 6  # more decimals than this are measurements, not amounts: float
_S_LO, _S_HI = 631_152_000, 4_102_444_800  # 1990..2100 as unix seconds
_TIME_NAMES = ["ts", "timestamp", "time", "event_time", "event_ts", "datetime", "date_time", "date", "day", "dt",
               "created", "created_at", "occurred_at", "happened_at", "when", "period", "hour", "month", "week",
               "year"]
_TIME_LIKE = re.compile(r"^(.*_at|.*_time|.*_ts|.*_date|.*_day|date_.*|time_.*|.*datetime.*|.*timestamp.*)$")
_ID_NAMES = re.compile(r"^(id|.*_id|.*id|uuid|.*_uuid|key|.*_key|.*_no|.*_num|.*_number|code|.*_code)$")
_USER_NAMES = re.compile(r"^(user|user_?id|uid|client_?id|visitor_?id|customer_?id|account_?id|member_?id|"
                         r"session_?id|device_?id)$")

# strptime formats tried (in this order) on text that ISO parsing does not read; day-first and month-first orders
# of the same separators are both tried, and an ambiguous column is said to be so
_DATES = ["%m/%d/%Y", "%d/%m/%Y", "%d.%m.%Y", "%d-%m-%Y", "%m-%d-%Y", "%Y.%m.%d", "%m/%d/%y", "%d/%m/%y",
          "%d.%m.%y", "%b %d %Y", "%b %d, %Y", "%d %b %Y", "%d-%b-%Y", "%d-%b-%y", "%B %d %Y", "%B %d, %Y",
          "%d %B %Y", "%a %b %d %Y", "%a, %d %b %Y", "%Y %b %d", "%b-%d-%Y", "%Y%m%d"]
_TIMES = ["", " %H:%M", " %H:%M:%S", " %I:%M %p", " %I:%M:%S %p", " %H:%M:%S.%f", "T%H:%M", "T%H:%M:%S"]
_OTHER = ["%a %b %d %H:%M:%S %Y", "%d/%b/%Y:%H:%M:%S %z", "%a, %d %b %Y %H:%M:%S %z", "%Y%m%d%H%M%S",
          "%Y%m%d %H%M%S", "%Y-%m", "%Y/%m", "%b %Y", "%B %Y", "%Y"]
FORMATS = [d + t for d in _DATES for t in _TIMES] + _OTHER
_DAY_FIRST = {"%d/%m/": "%m/%d/", "%d-%m-": "%m-%d-"}  # pairs that read the same text two ways


@dataclass
class TimeChoice:
    column: str
    unit: str  # timestamp | s | ms
    declared: str  # the column's declared type: timestamp, date, string (kept as written), int, float
    format: str | None = None
    why: str = ""
    ambiguous: str | None = None  # the other reading of the same text, when both read every value


@dataclass
class ColumnFacts:
    name: str  # as the project file names it
    header: str  # as the file writes it
    type: str  # eventmart type
    nulls: int
    distinct: int
    example: str | None
    low: float | None = None  # numbers: the range
    high: float | None = None


@dataclass
class Sample:
    path: Path
    rows: int
    delimiter: str
    header: bool
    columns: dict[str, ColumnFacts] = field(default_factory=dict)
    time: TimeChoice | None = None
    key: list[str] = field(default_factory=list)
    key_why: str = ""
    spacing: list[float] = field(default_factory=list)  # seconds between consecutive distinct event times
    span: tuple[datetime, datetime] | None = None
    all_midnight: bool = False
    all_whole_hours: bool = False

    def numeric(self) -> list[str]:
        return [c for c, f in self.columns.items() if f.type in ("int", "float") or f.type.startswith("decimal")]


def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _lit(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def read_sample(path: Path) -> Sample:
    """Read up to SAMPLE_ROWS rows of ``path`` as text and work out what they hold; raises InputError when the
    file cannot be read as CSV or names no usable time."""
    import duckdb

    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    try:
        delim, quote, has_header = con.execute(
            "SELECT Delimiter, Quote, HasHeader FROM sniff_csv($p, sample_size = 20000)", {"p": str(path)}).fetchone()
        con.execute(f"CREATE TABLE s AS SELECT * FROM read_csv($p, all_varchar = true, header = {bool(has_header)}, "
                    f"delim = $d, sample_size = 20000, strict_mode = false, null_padding = true) LIMIT {SAMPLE_ROWS}",
                    {"p": str(path), "d": delim})
    except duckdb.Error as e:
        raise InputError(f"{path}: cannot read it as CSV ({str(e).strip().splitlines()[0][:160]}); give a CSV file "
                         "with a header line") from None
    headers = [r[0] for r in con.execute("DESCRIBE s").fetchall()]
    rows = con.execute("SELECT count(*) FROM s").fetchone()[0]
    if not rows:
        raise InputError(f"{path}: no rows under the header; give a file with some events in it")
    sample = Sample(path, rows, delim, bool(has_header))
    names = [normal_name(h) if has_header else f"column{i + 1}" for i, h in enumerate(headers)]
    dup = sorted({n for n in names if names.count(n) > 1})
    if dup:
        raise InputError(f"{path}:1: the header has columns that read as the same name ({', '.join(dup)}); rename "
                         "one of them")
    for name, h in zip(names, headers, strict=True):
        sample.columns[name] = _column(con, name, h, rows)
    sample.time = _time_column(con, sample)
    _spacing(con, sample)
    _key(con, sample)
    con.close()
    return sample


def _column(con, name: str, header: str, rows: int) -> ColumnFacts:
    v = f"trim({_q(header)})"
    nonnull, distinct, ints, nums, fin, bools, decs, intdigits, example = con.execute(
        f"SELECT count({v}), count(DISTINCT {v}), "
        f"count(*) FILTER (WHERE regexp_full_match({v}, '[+-]?[0-9]{{1,18}}')), "
        f"count(*) FILTER (WHERE regexp_full_match({v}, '[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)')), "
        f"count(*) FILTER (WHERE isfinite(TRY_CAST({v} AS DOUBLE))), "
        f"count(*) FILTER (WHERE lower({v}) IN ('true', 'false')), "
        f"max(length(split_part({v}, '.', 2))) FILTER (WHERE regexp_full_match({v}, '[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)')), "
        f"max(length(ltrim(split_part(ltrim({v}, '+-'), '.', 1), '0'))) "
        f"FILTER (WHERE regexp_full_match({v}, '[+-]?([0-9]+\\.?[0-9]*|\\.[0-9]+)')), "
        f"min({v}) FROM s WHERE {v} <> ''").fetchone()
    nulls = rows - nonnull
    if not nonnull:
        t = "string"
    elif ints == nonnull:
        t = "int"
    elif nums == nonnull and (decs or 0) <= MAX_DECIMALS:
        scale = decs or 0
        t = f"decimal({max(18, (intdigits or 0) + scale + 2)},{scale})" if (intdigits or 0) + scale <= 36 else "float"
    elif fin == nonnull:
        t = "float"
    elif bools == nonnull:
        t = "bool"
    else:
        t = "string"
    facts = ColumnFacts(name, header, t, nulls, distinct, example)
    if t != "string" and t != "bool" and nonnull:
        facts.low, facts.high = con.execute(f"SELECT min(TRY_CAST({v} AS DOUBLE)), max(TRY_CAST({v} AS DOUBLE)) "
                                            f"FROM s").fetchone()
    return facts


def _time_order(sample: Sample) -> list[str]:
    names = list(sample.columns)
    exact = sorted((c for c in names if c in _TIME_NAMES), key=_TIME_NAMES.index)
    like = [c for c in names if c not in exact and _TIME_LIKE.match(c)]
    return exact + like + [c for c in names if c not in exact and c not in like]


def _time_column(con, sample: Sample) -> TimeChoice:
    """The first column, time-like names first, whose every value reads as a time."""
    named = {c for c in sample.columns if c in _TIME_NAMES or _TIME_LIKE.match(c)}
    for c in _time_order(sample):
        f = sample.columns[c]
        if f.nulls == sample.rows:
            continue
        choice = _reads_as_time(con, f, sample.rows, c in named)
        if choice is not None:
            return choice
    raise InputError(
        f"{sample.path}: no column reads as the event time in every row (ISO or slash dates with or without a "
        "time, month names, unix seconds or milliseconds between 1990 and 2100); write the time column's "
        "format by hand: eventmart init DIR, then set sources.*.time (column, unit, format)")


def _reads_as_time(con, f: ColumnFacts, rows: int, named: bool) -> TimeChoice | None:
    v = f"trim({_q(f.header)})"
    nonnull = rows - f.nulls
    if f.type in ("int", "float") or f.type.startswith("decimal"):
        lo, hi = f.low, f.high
        if lo is not None and _S_LO <= lo and hi < _S_HI:
            return TimeChoice(f.name, "s", "float" if f.type != "int" else "int",
                              why=f"numbers between {lo:.0f} and {hi:.0f}: unix seconds ({_utc(lo)} … {_utc(hi)})")
        if lo is not None and _S_LO * 1000 <= lo and hi < _S_HI * 1000:
            return TimeChoice(f.name, "ms", "float" if f.type != "int" else "int",
                              why=f"numbers between {lo:.0f} and {hi:.0f}: unix milliseconds ({_utc(lo / 1000)} … "
                                  f"{_utc(hi / 1000)})")
        if not named or f.type != "int":  # a year (2012) or a compact date (20120101) only where the name says so
            return None
    if f.type != "int":
        iso, dateonly = con.execute(f"SELECT count(TRY_CAST({v} AS TIMESTAMPTZ)), count(*) FILTER (WHERE "
                                    f"TRY_CAST({v} AS DATE) IS NOT NULL AND length({v}) <= 10) FROM s WHERE {v} <> ''"
                                    ).fetchone()
        if iso == nonnull:
            declared = "date" if dateonly == nonnull else "timestamp"
            return TimeChoice(f.name, "timestamp", declared,
                              why=f"{'dates' if declared == 'date' else 'times'} like {f.example} (ISO), every row")
    candidates = [fmt for fmt in FORMATS if f.type != "int" or fmt in ("%Y", "%Y%m%d", "%Y%m%d%H%M%S")]
    counts = con.execute("SELECT " + ", ".join(f"count(try_strptime({v}, {_lit(fmt)}))" for fmt in candidates)
                         + f" FROM (SELECT DISTINCT {v} AS {_q(f.header)} FROM s WHERE {v} <> '' LIMIT 5000)"
                         ).fetchone()
    distinct = con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {v} FROM s WHERE {v} <> '' LIMIT 5000)").fetchone()[0]
    full = [fmt for fmt, n in zip(candidates, counts, strict=True) if n == distinct and distinct]
    if not full:
        return None
    fmt = full[0]
    other = next((o for o in full[1:] if _swapped(fmt, o)), None)
    dateonly = not any(d in fmt for d in ("%H", "%I", "%M", "%S"))
    declared = "date" if dateonly else "timestamp"
    why = f"{'dates' if dateonly else 'times'} like {f.example}, read as {fmt}, every row"
    if other:
        why += f" (they read as {other} too: month first was chosen; change time.format if they are day first)"
    return TimeChoice(f.name, "timestamp", declared, fmt, why, other)


def _swapped(a: str, b: str) -> bool:
    for day_first, month_first in _DAY_FIRST.items():
        if a.replace(month_first, day_first) == b or a.replace(day_first, month_first) == b:
            return True
    return False


def _utc(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d")


def time_expr(sample: Sample) -> str:
    """SQL over the sample table for each row's event time (as the loader reads it)."""
    t = sample.time
    f = sample.columns[t.column]
    v = f"trim({_q(f.header)})"
    if t.unit == "s":
        return f"make_timestamp(CAST(round(CAST({v} AS DOUBLE) * 1000000) AS BIGINT))"
    if t.unit == "ms":
        return f"make_timestamp(CAST(round(CAST({v} AS DOUBLE) * 1000) AS BIGINT))"
    if t.format:
        return f"CAST(CAST(try_strptime({v}, {_lit(t.format)}) AS TIMESTAMPTZ) AS TIMESTAMP)"
    return f"CAST(TRY_CAST({v} AS TIMESTAMPTZ) AS TIMESTAMP)"


def _spacing(con, sample: Sample) -> None:
    e = time_expr(sample)
    row = con.execute(f"SELECT min(t), max(t), bool_and(t = date_trunc('day', t)), bool_and(t = date_trunc('hour', t)) "
                      f"FROM (SELECT {e} AS t FROM s) WHERE t IS NOT NULL").fetchone()
    sample.span = (row[0], row[1]) if row[0] is not None else None
    sample.all_midnight, sample.all_whole_hours = bool(row[2]), bool(row[3])
    gaps = con.execute(f"SELECT epoch(t - lag(t) OVER (ORDER BY t)) FROM (SELECT DISTINCT {e} AS t FROM s "
                       "WHERE t IS NOT NULL) QUALIFY t - lag(t) OVER (ORDER BY t) IS NOT NULL").fetchall()
    sample.spacing = sorted(g[0] for g in gaps)


def _key(con, sample: Sample) -> None:
    """A key, most telling first: a unique id-like column; the event time when no two rows share it; the time and
    one more column together (readings per station and day); another unique text or integer column; else the whole
    line. Amounts unique by chance (decimals) never are."""
    t = sample.time.column

    def unique(c: str) -> bool:
        f = sample.columns[c]
        return not f.nulls and f.distinct == sample.rows

    ids = [c for c in sample.columns if _ID_NAMES.match(c) and unique(c) and sample.columns[c].type in ("int", "string")]
    if ids:
        sample.key, sample.key_why = [ids[0]], f"{ids[0]}: a different value on every row"
        return
    if unique(t):
        sample.key, sample.key_why = [t], f"{t}: a different time on every row"
        return
    if not sample.columns[t].nulls:
        # the time and up to three categories (a mart exported per minute, topic and segment): fewest values first
        cats = [c for _, c in sorted((f.distinct, c) for c, f in sample.columns.items()
                                     if c != t and not f.nulls and f.type in ("string", "int", "bool"))][:6]
        for k in (1, 2, 3):
            for combo in itertools.combinations(cats, k):
                cols = ", ".join(_q(sample.columns[c].header) for c in (t, *combo))
                if con.execute(f"SELECT count(*) FROM (SELECT DISTINCT {cols} FROM s)").fetchone()[0] == sample.rows:
                    sample.key = [t, *combo]
                    sample.key_why = f"{', '.join(sample.key)}: no two rows share them all"
                    return
    other = [c for c in sample.columns if unique(c) and sample.columns[c].type in ("int", "string")]
    if other:
        sample.key, sample.key_why = [other[0]], f"{other[0]}: a different value on every row"
        return
    sample.key = [c for c, f in sample.columns.items() if not f.nulls]
    sample.key_why = "no column is unique, so the whole line is (a repeated identical line counts once)"
