"""`eventmart init`: a new project — a minimal commented one, or one proposed from a sample of your CSV file.

From a file (what :mod:`eventmart.infer` reads off its first rows) it proposes the source — columns and their
types, the event time and how it is written, a key — a mart at the grain the events' spacing suggests, with a
count, a distinct count of users and sum/avg/min/max of the numeric columns by the low-cardinality text columns,
and a dashboard of them. Everything it writes is plain YAML with comments: read it, change it, `eventmart check` it.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PROJECT_FILE, SCHEMA_FILE, SCHEMA_LINE, normal_name, write_schema
from ..errors import InputError, UserError

MINIMAL = """\
# eventmart project file: where events come from, which aggregates to keep, what to show.
# Every key: docs/reference/project-file.md (eventmart.schema.json beside this file lets editors complete it);
# check it with `eventmart check`.
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

_GRAINS = [(60, "1 minute", "by_minute"), (300, "5 minutes", "by_5min"), (900, "15 minutes", "by_15min"),
           (3600, "1 hour", "hourly"), (86400, "1 day", "daily")]
MAX_BUCKETS = 20_000  # over the sample's span: a mart a dashboard reads at once
MAX_DIMENSION_VALUES = 50
MAX_DIMENSIONS = 4
MAX_NUMERIC = 6  # columns given sum/avg/min/max


@dataclass
class Proposal:
    text: str  # the project file
    notes: list[str] = field(default_factory=list)  # what was chosen, and why
    source: str = ""


def _grain(sample) -> tuple[int, str, str, str]:
    """(seconds, grain, mart suffix, why) from how far apart the events are and how long they span."""
    span = (sample.span[1] - sample.span[0]).total_seconds() if sample.span else 0
    gaps = sample.spacing
    typical = gaps[len(gaps) // 2] if gaps else 86400
    if sample.all_midnight:
        i, why = 4, "every time is a midnight: a row per day (or coarser)"
    elif sample.all_whole_hours:
        i, why = 3, "every time is a whole hour"
    else:
        i = next((k for k, (g, *_) in enumerate(_GRAINS) if g >= typical), 4)
        why = f"events are typically {_duration(typical)} apart"
    while i < 4 and span / _GRAINS[i][0] > MAX_BUCKETS:
        i += 1
        why += f"; {_duration(span)} of data would make too many {_GRAINS[i - 1][1]} buckets"
    g, label, suffix = _GRAINS[i]
    return g, label, suffix, why


def _duration(seconds: float) -> str:
    for unit, n in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= n:
            v = seconds / n
            return f"{v:.0f} {unit}{'s' if round(v) != 1 else ''}"
    return f"{seconds:.0f} second{'s' if round(seconds) != 1 else ''}"


def _scalar(text: str) -> str:
    """Text as a YAML scalar: plain where that reads back the same, else double-quoted."""
    import re

    return text if re.fullmatch(r"[A-Za-z0-9_./ -]+", text) and not text.startswith((" ", "-")) else json.dumps(text)


def propose(path: Path, name: str) -> Proposal:
    """A project file for the CSV at ``path`` (copied to data/ by :func:`init_project`)."""
    from .sample import _ID_NAMES, _USER_NAMES, read_sample

    s = read_sample(path)
    cols, t = s.columns, s.time
    reserved = {"_time", "_loaded_at", "_ingest"}
    if reserved & set(cols):
        raise InputError(f"{path}:1: column name(s) {', '.join(sorted(reserved & set(cols)))} are reserved by "
                         "eventmart; rename them in the header")
    src = normal_name(path.stem)
    if src in ("_rejects",):
        src = "events"
    types = {c: f.type for c, f in cols.items()}
    types[t.column] = t.declared
    key = s.key
    users = [c for c in cols if _USER_NAMES.match(c) and c not in key]
    unique = key if len(key) == 1 else []  # a column of a pair key (a station beside the date) is a dimension
    dims = [c for c, f in cols.items() if c != t.column and c not in unique and c not in users and
            types[c] in ("string", "bool") and 1 < f.distinct <= MAX_DIMENSION_VALUES][:MAX_DIMENSIONS]
    numeric = [c for c in s.numeric() if c != t.column and c not in unique and c not in users
               and not _ID_NAMES.match(c)][:MAX_NUMERIC]
    g, grain, suffix, grain_why = _grain(s)
    mart = f"{src}_{suffix}"
    time_column = "dt" if "dt" not in dims else "bucket"
    measures = {"events": "count()"}
    if users:
        measures["users"] = f"count_distinct({users[0]})"
    for c in numeric:
        for fn in ("sum", "avg", "min", "max"):
            measures.setdefault(f"{c}_{fn}", f"{fn}({c})")

    lines = [f"# proposed by `eventmart init --from {path.name}` from its first {s.rows:,} rows: check the types,",
             f"# the time column and the key, then: eventmart check && eventmart ingest {src}",
             f"name: {name}", "", "warehouse:", "  type: duckdb", "  path: warehouse.duckdb", "", "sources:",
             f"  {src}:", "    format: csv", f"    path: {_scalar('data/' + path.name)}"]
    if s.delimiter != "," or not s.header:
        opts = ([f"delimiter: {json.dumps(s.delimiter)}"] if s.delimiter != "," else []) + \
            (["header: false"] if not s.header else [])
        lines.append(f"    csv: {{{', '.join(opts)}}}")
    lines.append("    columns:")
    for c, f in cols.items():
        notes = []
        if c == t.column:
            notes.append("the event time")
        if c in key and len(key) == 1:
            notes.append("the key")
        if f.header != c and s.header:
            notes.append(f"{json.dumps(f.header, ensure_ascii=False)} in the file")
        if types[c].startswith("decimal"):
            notes.append("exact: summed without rounding")
        note = f"  # {'; '.join(notes)}" if notes else ""
        lines.append(f"      {c}: {types[c]}{'?' if f.nulls and c not in key else ''}{note}")
    tspec = [f"column: {t.column}"] + ([f"unit: {t.unit}"] if t.unit != "timestamp" else []) + \
        ([f"format: {json.dumps(t.format)}"] if t.format else [])
    lines.append(f"    time: {{{', '.join(tspec)}}}")
    whole = s.key_why.startswith("no column is unique")
    lines.append(f"    key: [{', '.join(key)}]" + ("   # no column is unique: a repeated identical line counts once"
                                                  if whole else f"   # {s.key_why.split(':')[1].strip()}"
                                                  if len(key) > 1 else ""))
    lines += ["", "marts:", f"  {mart}:", f"    from: {src}", f"    grain: {grain}"]
    if time_column != "dt":
        lines.append(f"    time_column: {time_column}")
    if dims:
        lines.append(f"    dimensions: [{', '.join(dims)}]")
    lines.append("    measures:")
    lines += [f"      {k}: {v}" for k, v in measures.items()]

    charts = {"events": f"{{type: kpi, mart: {mart}, measure: events}}"}
    if users:
        charts["users"] = f"{{type: kpi, mart: {mart}, measure: users, title: unique {users[0]}}}"
    if numeric:
        charts[f"{numeric[0]}_total"] = f"{{type: kpi, mart: {mart}, measure: {numeric[0]}_sum, title: total {numeric[0]}}}"
    color = next((d for d in dims if cols[d].distinct <= 12), None)
    charts["trend"] = f"{{type: line, mart: {mart}, measure: events" + (f", color: {color}" if color else "") + "}"
    if numeric:
        charts[f"{numeric[0]}_avg"] = f"{{type: line, mart: {mart}, measure: {numeric[0]}_avg, title: average {numeric[0]}}}"
    for d in dims[:2]:
        charts[f"by_{d}"] = f"{{type: bar, mart: {mart}, measure: events, dimension: {d}}}"
    kpis = [c for c in charts if charts[c].startswith("{type: kpi")]
    layout = [kpis] + [[c] for c in charts if c not in kpis and not c.startswith("by_")]
    bars = [c for c in charts if c.startswith("by_")]
    if bars:
        layout.append(bars)
    lines += ["", "dashboards:", "  overview:", f"    title: {json.dumps(path.stem, ensure_ascii=False)}",
              f"    filters: [{', '.join(['time', *dims])}]", "    charts:"]
    lines += [f"      {c}: {v}" for c, v in charts.items()]
    lines.append("    layout:")
    lines += [f"      - [{', '.join(row)}]" for row in layout]

    notes = [f"read {s.rows:,} row(s) of {path.name}: {len(cols)} column(s)",
             f"time: {t.column} — {t.why}",
             f"key: {s.key_why}",
             f"mart {mart}: grain {grain} ({grain_why})",
             "dimensions: " + (", ".join(f"{d} ({cols[d].distinct} values)" for d in dims) or
                               "none (no text column has 2 to 50 values)"),
             "measures: count" + (f", distinct {users[0]}" if users else "") +
             (f", sum/avg/min/max of {', '.join(numeric)}" if numeric else "")]
    return Proposal("\n".join(lines) + "\n", notes, src)


def init_project(directory: Path, from_csv: Path | None = None) -> tuple[Path, list[str]]:
    """Write a new project into ``directory`` (created if needed); with ``from_csv``, proposed from that file,
    which is copied into the project's data/ folder. Returns the project file and what was chosen. Nothing is
    left behind when it fails."""
    target = directory / PROJECT_FILE
    if target.exists():
        raise UserError(f"{target}: a project file exists already; choose an empty folder")
    notes: list[str] = []
    if from_csv is None:
        text = MINIMAL.format(name=normal_name(directory.resolve().name))
    else:
        if not from_csv.is_file():
            raise InputError(f"{from_csv}: no such file; give the path of a CSV file")
        proposal = propose(from_csv, normal_name(directory.resolve().name))
        text, notes = proposal.text, proposal.notes
    created = [d for d in (directory, directory / "data") if not d.exists()]
    try:
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "data").mkdir(exist_ok=True)
        if from_csv is not None:
            shutil.copyfile(from_csv, directory / "data" / from_csv.name)
        target.write_text(f"{SCHEMA_LINE}\n{text}", encoding="utf-8")
        write_schema(directory)
    except BaseException:
        if from_csv is not None:
            (directory / "data" / from_csv.name).unlink(missing_ok=True)
        target.unlink(missing_ok=True)
        (directory / SCHEMA_FILE).unlink(missing_ok=True)
        for d in reversed(created):
            shutil.rmtree(d, ignore_errors=True)
        raise
    return target, notes
