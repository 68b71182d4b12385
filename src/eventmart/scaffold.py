"""`eventmart init`: a new project — a minimal commented one, or one proposed from a sample of your CSV file.

From a file it infers the columns and their types (DuckDB's CSV sniffer), the time column and its unit (ISO
text, unix seconds or milliseconds, by name and by magnitude), a key (a column whose values are all distinct,
else the whole row), and proposes a first hourly mart and a dashboard. Everything it writes is plain YAML with
comments: read it, change it, `eventmart check` it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .config import NAME_RE, PROJECT_FILE
from .errors import InputError, UserError

MINIMAL = """\
# eventmart project file: where events come from, which aggregates to keep, what to show.
# Reference: https://github.com/eventmart/eventmart#the-project-file — check it with `eventmart check`.
name: {name}

warehouse:
  type: duckdb                  # a file in this folder; or postgres with url: ${{EVENTMART_PG_URL}}
  path: warehouse.duckdb

sources:
  events:
    format: csv                 # csv | jsonl | parquet | postgres
    path: data/*.csv            # files, relative to this folder
    columns:                    # name: type (string, int, float, decimal(18,2), bool, timestamp, date); `type?` may be empty
      event_id: int
      user_id: int
      action: string
      ts: int
    time: {{column: ts, unit: ms}}   # ms | s (unix) | timestamp (ISO text)
    key: [event_id]             # what makes an event unique: loaded once, whatever is read again

marts:
  events_hourly:
    from: events
    grain: 1 hour
    dimensions: [dt, action]
    measures:
      events: count()
      users: count_distinct(user_id)

dashboards:
  overview:
    title: Events
    filters: [time, action]
    charts:
      events: {{type: kpi, mart: events_hourly, measure: events}}
      users: {{type: kpi, mart: events_hourly, measure: users, title: unique users}}
      trend: {{type: line, mart: events_hourly, measure: events, color: action}}
"""

_TIME_NAMES = re.compile(r"^(ts|time|timestamp|event_?time|event_?ts|created(_at)?|date_?time|dt|datetime|"
                         r".*_at|.*_time|.*_ts)$", re.I)
_ID_NAMES = re.compile(r"^(id|.*_id|.*id|uuid|event_?id)$", re.I)
_USER_NAMES = re.compile(r"^(user|user_?id|uid|client_?id|visitor_?id|customer_?id|account_?id|member_?id)$", re.I)
_TYPES = {"BIGINT": "int", "INTEGER": "int", "SMALLINT": "int", "TINYINT": "int", "HUGEINT": "int",
          "UBIGINT": "int", "UINTEGER": "int", "DOUBLE": "float", "FLOAT": "float", "DECIMAL": "float",
          "BOOLEAN": "bool", "TIMESTAMP": "timestamp", "TIMESTAMP WITH TIME ZONE": "timestamp", "DATE": "date"}
_S_LO, _S_HI = 631_152_000, 4_102_444_800  # 1990..2100 as unix seconds


@dataclass
class Sniffed:
    columns: dict[str, str]  # name -> eventmart type
    nullable: set[str]
    distinct: dict[str, int]
    rows: int
    ranges: dict[str, tuple]  # numeric columns: (min, max)
    delimiter: str


def _sniff(path: Path) -> Sniffed:
    import duckdb

    con = duckdb.connect()
    try:
        con.execute("CREATE TABLE s AS SELECT * FROM read_csv_auto($p, sample_size = 20000) LIMIT 200000",
                    {"p": str(path)})
        sniff = con.execute("SELECT Delimiter FROM sniff_csv($p)", {"p": str(path)}).fetchone()
    except duckdb.Error as e:
        raise InputError(f"{path}: cannot read it as CSV ({str(e).splitlines()[0][:160]}); give a CSV with a header "
                         "line") from None
    desc = con.execute("DESCRIBE s").fetchall()
    cols, nullable, distinct, ranges = {}, set(), {}, {}
    rows = con.execute("SELECT count(*) FROM s").fetchone()[0]
    for name, typ, *_ in desc:
        t = _TYPES.get(str(typ).split("(")[0], "string")
        cols[name] = t
        q = '"' + name.replace('"', '""') + '"'
        n_null, n_distinct = con.execute(f"SELECT count(*) - count({q}), count(DISTINCT {q}) FROM s").fetchone()
        if n_null:
            nullable.add(name)
        distinct[name] = n_distinct
        if t in ("int", "float"):
            ranges[name] = con.execute(f"SELECT min({q}), max({q}) FROM s").fetchone()
    con.close()
    return Sniffed(cols, nullable, distinct, rows, ranges, sniff[0] if sniff else ",")


def _time_column(s: Sniffed) -> tuple[str, str]:
    """(column, unit): a timestamp column, or a number in the unix-seconds/ms range, preferring time-like names."""
    named = [c for c in s.columns if _TIME_NAMES.match(c)]
    for c in named + [c for c in s.columns if c not in named]:
        t = s.columns[c]
        if t == "timestamp":
            return c, "timestamp"
        if t in ("int", "float") and c in s.ranges and s.ranges[c][0] is not None:
            lo, hi = s.ranges[c]
            if _S_LO <= lo and hi < _S_HI:
                return c, "s"
            if _S_LO * 1000 <= lo and hi < _S_HI * 1000:
                return c, "ms"
    for c in named:
        if s.columns[c] == "date":
            return c, "timestamp"
    raise InputError("no column looks like the event time (a timestamp, or unix seconds/ms between 1990 and 2100); "
                     "write the project file by hand: eventmart init DIR, then edit sources.*.time")


def _ident(name: str) -> str:
    out = re.sub(r"\W+", "_", name.strip()).strip("_").lower() or "events"
    return out if NAME_RE.match(out) else f"c_{out}"


def propose(path: Path, name: str) -> str:
    """A project file for the CSV at ``path`` (copied to data/ by :func:`init_project`)."""
    s = _sniff(path)
    bad = [c for c in s.columns if not NAME_RE.match(c) or c in ("_time", "_loaded_at", "_ingest")]
    if bad:
        raise InputError(f"{path}: column name(s) {', '.join(bad)} are not usable names (letters, digits, _); rename "
                         "them in the header")
    time_col, unit = _time_column(s)
    if unit == "timestamp" and s.columns[time_col] == "date":
        s.columns[time_col] = "timestamp"
    ids = [c for c in s.columns if s.distinct[c] == s.rows and c != time_col and c not in s.nullable
           and s.columns[c] in ("int", "string")]
    key = [sorted(ids, key=lambda c: (not _ID_NAMES.match(c), c))[0]] if ids else \
        [c for c in s.columns if c not in s.nullable]
    users = [c for c in s.columns if _USER_NAMES.match(c) and c not in key]
    dims = [c for c in s.columns if s.columns[c] == "string" and c not in key and c not in users
            and 1 < s.distinct[c] <= 50 and c not in s.nullable][:3]
    src = _ident(path.stem)
    lines = [f"# proposed by `eventmart init --from {path.name}` from the first {s.rows:,} rows; check the types, the",
             "# time column and the key, then: eventmart check && eventmart ingest " + src,
             f"name: {name}", "", "warehouse:", "  type: duckdb", "  path: warehouse.duckdb", "", "sources:",
             f"  {src}:", "    format: csv", f"    path: data/{path.name}"]
    if s.delimiter != ",":
        lines.append(f"    csv: {{delimiter: '{s.delimiter}'}}")
    lines.append("    columns:")
    for c, t in s.columns.items():
        note = "  # the event time" if c == time_col else ("  # the key" if c in key and len(key) == 1 else "")
        lines.append(f"      {c}: {t}{'?' if c in s.nullable else ''}{note}")
    lines += [f"    time: {{column: {time_col}, unit: {unit}}}",
              f"    key: [{', '.join(key)}]" + ("" if ids else "   # no column is unique: a repeated identical line "
                                                                "counts once"), "", "marts:",
              f"  {src}_hourly:", f"    from: {src}", "    grain: 1 hour", f"    dimensions: [{', '.join(['dt', *dims])}]",
              "    measures:", "      events: count()"]
    if users:
        lines.append(f"      users: count_distinct({users[0]})")
    mart = f"{src}_hourly"
    lines += ["", "dashboards:", "  overview:", f"    title: {src}", f"    filters: [{', '.join(['time', *dims])}]",
              "    charts:", f"      events: {{type: kpi, mart: {mart}, measure: events}}"]
    if users:
        lines.append(f"      users: {{type: kpi, mart: {mart}, measure: users, title: unique users}}")
    lines.append(f"      trend: {{type: line, mart: {mart}, measure: events"
                 + (f", color: {dims[0]}" if dims else "") + "}")
    for d in dims[:2]:
        lines.append(f"      by_{d}: {{type: bar, mart: {mart}, measure: events, dimension: {d}}}")
    return "\n".join(lines) + "\n"


def init_project(directory: Path, from_csv: Path | None = None) -> Path:
    """Write a new project into ``directory`` (created if needed); with ``from_csv``, proposed from that file,
    which is copied into the project's data/ folder."""
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / PROJECT_FILE
    if target.exists():
        raise UserError(f"{target}: a project file exists already; choose an empty folder")
    name = _ident(directory.resolve().name)
    if from_csv is None:
        text = MINIMAL.format(name=name)
    else:
        if not from_csv.is_file():
            raise InputError(f"{from_csv}: no such file")
        text = propose(from_csv, name)
        (directory / "data").mkdir(exist_ok=True)
        shutil.copyfile(from_csv, directory / "data" / from_csv.name)
    (directory / "data").mkdir(exist_ok=True)
    target.write_text(text, encoding="utf-8")
    return target
