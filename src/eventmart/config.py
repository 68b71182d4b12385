"""The project file ``eventmart.yml``: pydantic models, loading, ``${VAR}`` substitution.

Errors name the file, the line and the key path, e.g.
``eventmart.yml:14: marts.dash_visits.grain: '7 minutes' must divide a day evenly``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .errors import ProjectError
from .timeutil import parse_duration, parse_grain, parse_last

PROJECT_FILE = "eventmart.yml"
NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
TYPES = ("string", "int", "float", "bool", "timestamp", "date")
_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")
RESERVED = ("_time", "_loaded_at")


def _at(sub: str, msg: str) -> ValueError:
    """A model-level error that points at the sub-key ``sub`` (dotted) of the model."""
    return ValueError(f"@{sub}@ {msg}")


_SEP = "\x1e"  # between the problems one validator found (pydantic keeps one error per validator)


class _Problems:
    """Independent checks of one model, every failure kept: `check` lists them all, not the first.

        with _Problems() as bad:
            if ...: bad.add("key", "...")
    """

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, sub: str | None, msg: str) -> None:
        self.found.append(f"@{sub}@ {msg}" if sub else msg)

    def __enter__(self) -> _Problems:
        return self

    def __exit__(self, et: Any, e: Any, tb: Any) -> None:
        if et is not None and issubclass(et, ValueError):  # a helper's own check (a name, a zone): one more
            self.found.append(str(e))
        if self.found:
            raise ValueError(_SEP.join(self.found)) from None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _dates_as_text(cls, v: Any) -> Any:
        # YAML reads an unquoted 2019-09-24 as a date; the models take times as ISO text
        if isinstance(v, datetime | date):
            return v.isoformat()
        return v


_TZ_RE = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")


def check_timezone(v: str) -> str:
    """An IANA zone name (validated, so it may be written into SQL as a literal)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not _TZ_RE.match(v):
        raise ValueError(f"'{v}' is not a time zone name; use an IANA name such as Europe/Moscow")
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{v}'; use an IANA name such as Europe/Moscow or UTC") from None
    return v


def normal_name(text: str) -> str:
    """A header cell as a column name: 'Max Temp (C)' -> 'max_temp_c', '2nd value' -> 'c_2nd_value'."""
    out = re.sub(r"[^0-9A-Za-z]+", "_", text.strip()).strip("_").lower() or "column"
    return out if NAME_RE.match(out) else f"c_{out}"


def match_header(header: list[str], declared: list[str]) -> tuple[list[str], list[str]]:
    """The header with each declared column's cell renamed to it — written exactly, or as its normal name
    ('Max Temp' for max_temp) — and the declared columns it lacks."""
    out, missing = list(header), []
    normal: dict[str, list[int]] = {}
    for i, h in enumerate(header):
        normal.setdefault(normal_name(h), []).append(i)
    for c in declared:
        if c in header:
            continue
        hits = [i for i in normal.get(c, []) if header[i] not in declared]
        if len(hits) == 1:
            out[hits[0]] = c
        else:
            missing.append(c)
    return out, missing


def _check_name(v: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(f"'{v}' is not a valid name; use letters, digits and _ (not starting with a digit)")
    return v


_DECIMAL_RE = re.compile(r"^\s*decimal\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$", re.I)


def decimal_spec(t: str) -> tuple[int, int] | None:
    """(precision, scale) of a `decimal(P,S)` column type, else None."""
    m = _DECIMAL_RE.match(t)
    return (int(m.group(1)), int(m.group(2))) if m else None


class Column(Strict):
    # string, int, float, bool, timestamp, date, or decimal(P,S): P digits, S of them after the point, summed exactly
    type: str
    required: bool = True

    @field_validator("type")
    @classmethod
    def _type(cls, v: str) -> str:
        if v in TYPES:
            return v
        spec = decimal_spec(v)
        if spec is None:
            raise ValueError(f"'{v}' is not a column type; use one of {', '.join(TYPES)} or decimal(P,S), e.g. "
                             "decimal(18,2)")
        p, sc = spec
        if not 1 <= p <= 38 or sc > p:
            raise ValueError(f"'{v}': a decimal holds 1 to 38 digits (P), S of them after the point (S <= P)")
        return f"decimal({p},{sc})"


class TimeRange(Strict):
    """Event times a source accepts, [from, to) in UTC; rows outside go to rejects (the default catches
    seconds declared as milliseconds, 1970-01-19, and milliseconds declared as seconds, year 51000)."""

    from_: str = Field(default="1990-01-01", alias="from")
    to: str = "2100-01-01"

    @model_validator(mode="after")
    def _check(self) -> TimeRange:
        from .timeutil import parse_time

        for key, v in (("from", self.from_), ("to", self.to)):
            try:
                parse_time(v, key)
            except Exception:
                raise _at(key, f"'{v}' is not an ISO date or time") from None
        if parse_time(self.to) <= parse_time(self.from_):
            raise _at("to", "must be after from")
        return self


# strptime directives DuckDB reads (with the `-` modifier: no leading zero)
_TIME_FORMAT_RE = re.compile(r"^(?:[^%\x00-\x1f]|%-?[aAwdbBmyYHIpMSgfnzZjUWcxX%])+$")


class TimeSpec(Strict):
    column: str
    # how the time column is written in the data; stored as a UTC timestamp in `_time`
    unit: Literal["timestamp", "s", "ms"] = "timestamp"
    # unit timestamp: a strptime format for times ISO parsing does not read, e.g. '%d.%m.%Y %H:%M', '%b %d %Y'
    format: str | None = None
    valid: TimeRange = TimeRange()

    @model_validator(mode="after")
    def _check(self) -> TimeSpec:
        if self.format is not None:
            if self.unit != "timestamp":
                raise _at("format", f"a format is for times written as text (unit: timestamp), not unix {self.unit}")
            if "%" not in self.format or not _TIME_FORMAT_RE.match(self.format):
                raise _at("format", f"'{self.format}' is not a strptime format; use directives such as %Y-%m-%d, "
                                    "%d/%m/%Y %H:%M or %b %d %Y")
        return self

    @property
    def valid_from(self) -> str:
        return self.valid.from_

    @property
    def valid_to(self) -> str:
        return self.valid.to


class S3Spec(Strict):
    """Objects in a bucket (AWS S3 or any S3-compatible store: Yandex Object Storage, MinIO). Credentials come
    from the standard AWS chain (AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE, …), never from here."""

    bucket: str
    prefix: str = ""
    glob: str = "*"  # matched against the key after the prefix
    endpoint_url: str | None = None  # e.g. https://storage.yandexcloud.net or http://127.0.0.1:9000
    region: str | None = None

    @model_validator(mode="after")
    def _check(self) -> S3Spec:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", self.bucket):
            raise _at("bucket", f"'{self.bucket}' is not a bucket name (3-63 of a-z, 0-9, '.', '-')")
        return self


class KafkaSpec(Strict):
    """A topic whose messages are events (JSON objects). Connection settings that are secrets come from
    ``${VAR}``; ``options`` passes librdkafka settings through (security.protocol, sasl.*, ssl.*)."""

    bootstrap_servers: str
    topic: str
    group: str | None = None  # the consumer group (default eventmart-<source>)
    batch: int = Field(default=20_000, ge=1, le=1_000_000)  # messages per batch (one transaction)
    start: Literal["earliest", "latest"] = "earliest"  # where a partition eventmart has never read starts
    options: dict[str, str] = {}


class CsvOptions(Strict):
    delimiter: str = ","
    header: bool = True
    quote: str = '"'


class Source(Strict):
    format: Literal["csv", "jsonl", "parquet", "postgres"]
    path: str | list[str] | None = None
    url: str | None = None  # postgres source: connection URL (use ${VAR})
    table: str | None = None  # postgres source: table name, optionally schema.table
    columns: dict[str, Column]
    time: TimeSpec
    key: list[str]
    csv: CsvOptions = CsvOptions()
    s3: S3Spec | None = None  # files in a bucket instead of `path`
    kafka: KafkaSpec | None = None  # a topic instead of files (format: jsonl; each message's time is kafka_ts)

    @field_validator("columns", mode="before")
    @classmethod
    def _short_columns(cls, v: Any) -> Any:
        # `name: string` is required, `name: string?` may be empty
        if isinstance(v, dict):
            return {
                k: ({"type": c.rstrip("?"), "required": not c.endswith("?")} if isinstance(c, str) else c)
                for k, c in v.items()
            }
        return v

    @model_validator(mode="after")
    def _check(self) -> Source:
        with _Problems() as bad:
            for c in self.columns:
                if not NAME_RE.match(c):
                    bad.add(f"columns.{c}", f"'{c}' is not a valid name; use letters, digits and _ (not starting "
                                            "with a digit)")
                if c in RESERVED:
                    bad.add(f"columns.{c}", f"column name '{c}' is reserved by eventmart")
            if self.time.column not in self.columns:
                bad.add("time.column", f"'{self.time.column}' is not one of the declared columns"
                                       f"{did_you_mean(self.time.column, self.columns)}")
            else:
                want = {"timestamp": ("timestamp", "date", "string"), "s": ("int", "float"),
                        "ms": ("int", "float")}[self.time.unit]
                if self.columns[self.time.column].type not in want:
                    bad.add("time", f"time column '{self.time.column}' with unit {self.time.unit} must be declared "
                                    f"as {', '.join(want[:-1])} or {want[-1]}")
            for k in self.key:
                if k not in self.columns:
                    bad.add("key", f"key column '{k}' is not one of the declared columns{did_you_mean(k, self.columns)}")
                elif not self.columns[k].required:
                    bad.add(f"columns.{k}", f"key column '{k}' is declared optional ({self.columns[k].type}?); an "
                                            "event's key always has a value")
            if not self.key:
                bad.add("key", "key must name at least one column (the event's unique id)")
            if self.format == "postgres":
                if not self.table:
                    bad.add("format", "a postgres source needs `table`")
                if self.s3 is not None:
                    bad.add("s3", "a postgres source reads a table, not objects")
            elif self.s3 is not None and self.path is not None:
                bad.add("s3", "give either path (files) or s3 (objects in a bucket), not both")
            if self.kafka is not None:
                if self.path is not None or self.s3 is not None:
                    bad.add("kafka", "a Kafka source reads a topic: no path or s3")
                if self.format != "jsonl":
                    bad.add("format", "a Kafka source's messages are JSON objects: format: jsonl")
        return self

    @property
    def paths(self) -> list[str]:
        if self.path is None:
            return []
        return [self.path] if isinstance(self.path, str) else list(self.path)


class Dimension(Strict):
    name: str
    expr: str | None = None  # SQL expression over the source's columns; default: the column itself


class Mart(Strict):
    from_: str | None = Field(default=None, alias="from")
    grain: str = "1 day"
    time_column: str = "dt"
    dimensions: list[Dimension] = []
    measures: dict[str, str] = {}
    sql: str | None = None  # SQL mart: must filter its input with {{ start }} / {{ end }}; `from` gives its span
    start: str | None = None  # earliest window to keep covered; default: the source's first event
    chunk: str | None = None  # backfill chunk size; default: 1 day
    # business time zone: day windows are local days (23 or 25 hours at DST changes), keyed by local date
    timezone: str | None = None
    # SQL marts: how each measure column rolls up (default sum); `none` for distinct counts, averages, ratios
    rollup: dict[str, Literal["sum", "min", "max", "none"]] | None = None
    # ClickHouse: keep each distinct count's mergeable state beside its value, so coarser charts merge states
    # instead of counting the raw events again
    keep_states: bool = False
    # SQL marts joining other sources to `from`: source -> the key column they share with `from`; rows of those
    # sources arriving late re-open the windows of the `from` rows they join (their own time is not the mart's)
    joins: dict[str, str] | None = None
    # SQL marts: `grain` runs one grain step per statement (rows that depend on the window as a whole: a snapshot as
    # of its end, dated {{ start }}); `any` lets consecutive windows run as one statement; default: found from the
    # SQL (a time column computed from {{ start }}/{{ end }}, or a bound not paired with the other → grain)
    batch: Literal["grain", "any"] | None = None

    @field_validator("dimensions", mode="before")
    @classmethod
    def _short_dims(cls, v: Any) -> Any:
        out = []
        for d in v or []:
            if isinstance(d, str):
                out.append({"name": d})
            elif isinstance(d, dict) and len(d) == 1 and "name" not in d:
                (n, e), = d.items()
                out.append({"name": n, "expr": e})
            else:
                out.append(d)
        return out

    @field_validator("grain", "chunk")
    @classmethod
    def _grain(cls, v: str | None) -> str | None:
        if v is not None:
            parse_grain(v)
        return v

    @model_validator(mode="after")
    def _check(self) -> Mart:
        with _Problems() as bad:
            if not NAME_RE.match(self.time_column):
                bad.add("time_column", f"'{self.time_column}' is not a valid name; use letters, digits and _")
            if self.timezone is not None:
                try:
                    check_timezone(self.timezone)
                except ValueError as e:
                    bad.add("timezone", str(e))
                if self.grain_seconds != 86400:
                    bad.add("timezone", "a business time zone needs `grain: 1 day` (windows are local days)")
                if self.chunk and parse_grain(self.chunk) != 86400:
                    bad.add("chunk", "a mart with a time zone runs in local days: leave chunk at 1 day")
            if self.sql is None:
                if self.batch is not None:
                    bad.add("batch", "batch is for SQL marts (a declarative mart's windows always run together)")
                if not self.from_:
                    bad.add(None, "a mart needs `from` (a source) and measures, or `sql`")
                if not self.measures:
                    bad.add(None, "a declarative mart needs at least one measure")
                names = [d.name for d in self.dimensions] + list(self.measures)
                for n in dict.fromkeys(names):
                    if not NAME_RE.match(n):
                        bad.add("measures" if n in self.measures else "dimensions",
                                f"'{n}' is not a valid name; use letters, digits and _ (not starting with a digit)")
                dup = {n for n in names if names.count(n) > 1}
                if dup:
                    bad.add("measures", f"column names used twice: {', '.join(sorted(dup))}")
                if self.time_column in self.measures:
                    bad.add("measures", f"measure name '{self.time_column}' clashes with time_column")
            else:
                if self.measures:
                    bad.add("sql", "a SQL mart takes `sql`, not measures (its columns are what the query returns; "
                                   "say how they roll up with `rollup:`)")
                if any(d.expr for d in self.dimensions):
                    bad.add("dimensions", "a SQL mart names its dimension columns; the query computes them")
                if "{{ start }}" not in self.sql.replace("{{start}}", "{{ start }}") or "end" not in self.sql:
                    bad.add("sql", "a SQL mart must filter its input with {{ start }} and {{ end }}")
        return self

    @property
    def grain_seconds(self) -> int:
        return parse_grain(self.grain)

    @property
    def dimensions_sql(self) -> list[str] | None:
        """A SQL mart's declared dimension columns (None: not declared)."""
        return [d.name for d in self.dimensions] if "dimensions" in self.model_fields_set else None

    @property
    def chunk_seconds(self) -> int:
        return parse_grain(self.chunk) if self.chunk else 86400


CHART_TYPES = ("area", "line", "pie", "donut", "funnel", "bar", "kpi", "heatmap", "table")


class Filter(Strict):
    dimension: str  # `time` for the time range, else a dimension of the dashboard's marts
    label: str | None = None
    default: str | list[str] | None = None  # time: "all" or "last N minutes|hours|days"; else values


    @model_validator(mode="after")
    def _check(self) -> Filter:
        if self.dimension == "time" and self.default is not None:
            if not isinstance(self.default, str):
                raise _at("default", "the time filter's default is 'all' or e.g. 'last 24 hours'")
            if self.default != "all":
                parse_last(self.default)
        return self


class Chart(Strict):
    type: Literal["area", "line", "pie", "donut", "funnel", "bar", "kpi", "heatmap", "table", "scatter"]
    mart: str
    # a mart column (aggregated with `agg`, by default as its measure implies) or an aggregate
    # expression over mart columns, e.g. "sum(visits)" or "avg(unique_users) filter (where event = 'click')"
    measure: str = ""  # every chart but scatter (x and y)
    agg: Literal["sum", "avg", "min", "max"] | None = None
    title: str | None = None
    color: str | None = None  # area/line: one series per value
    dimension: str | None = None  # pie/donut/funnel/bar: the categories
    stages: list[str] | None = None  # funnel: values of `dimension` in order; % of the first
    x: str | None = None  # heatmap: a dimension; scatter: a measure expression (one point per `dimension` value)
    y: str | None = None  # heatmap: a dimension; scatter: a measure expression
    columns: list[str] | None = None  # table: dimensions shown (measure added)
    measures: dict[str, str] | None = None  # table: more measure columns, name -> expression
    grain: str | None = None  # area/line: draw at least this coarse (e.g. 1 week), finer grains are not used
    limit: int = Field(default=25, ge=1, le=10_000)  # pie/bar categories, table rows
    height: int = Field(default=360, ge=80, le=2000)  # pixels

    @model_validator(mode="after")
    def _check(self) -> Chart:
        need = {"area": [], "line": [], "kpi": [], "pie": ["dimension"], "donut": ["dimension"],
                "funnel": ["dimension", "stages"], "bar": ["dimension"], "heatmap": ["x", "y"],
                "table": ["columns"], "scatter": ["dimension", "x", "y"]}[self.type]
        for k in need + ([] if self.type == "scatter" else ["measure"]):
            if not getattr(self, k):
                raise _at(k, f"a {self.type} chart needs `{k}`")
        if self.measures and self.type != "table":
            raise _at("measures", "more measure columns are for table charts")
        if self.grain is not None:
            if self.type not in ("area", "line"):
                raise _at("grain", "a drawing grain is for area and line charts")
            try:
                parse_duration(self.grain)
            except ValueError as e:
                raise _at("grain", str(e)) from None
        return self

    @property
    def grain_seconds(self) -> int | None:
        return parse_duration(self.grain) if self.grain else None


class Dashboard(Strict):
    title: str
    description: str = ""
    refresh: int = Field(default=60, ge=0)  # seconds between auto-refreshes; 0: only on interaction
    filters: list[Filter] = []
    charts: dict[str, Chart]
    # rows of chart names; `name: 2` gives a chart twice the width of a `name` in its row
    layout: list[list[str | dict[str, float]]] | None = None

    @field_validator("filters", mode="before")
    @classmethod
    def _short_filters(cls, v: Any) -> Any:
        return [{"dimension": f} if isinstance(f, str) else f for f in v or []]

    @model_validator(mode="after")
    def _check(self) -> Dashboard:
        dims = [f.dimension for f in self.filters]
        dup = {d for d in dims if dims.count(d) > 1}
        if dup:
            raise _at("filters", f"filters declared twice: {', '.join(sorted(dup))}")
        seen: list[str] = []
        for i, row in enumerate(self.layout or []):
            for item in row:
                names = [item] if isinstance(item, str) else list(item)
                for n in names:
                    if n not in self.charts:
                        raise _at(f"layout.{i}", f"'{n}' is not one of this dashboard's charts")
                    seen.append(n)
        return self

    def rows(self) -> list[list[tuple[str, float]]]:
        """The layout as rows of (chart, relative width); charts left out get a row each."""
        out = [[(i, 1.0) if isinstance(i, str) else next(iter(i.items())) for i in row] for row in self.layout or []]
        placed = {n for row in out for n, _ in row}
        out += [[(n, 1.0)] for n in self.charts if n not in placed]
        return out


class Warehouse(Strict):
    type: Literal["duckdb", "postgres", "clickhouse"] = "duckdb"
    path: str = ""  # duckdb: its file in the project folder; clickhouse without url: chDB's folder
    url: str | None = None  # postgres: default from $EVENTMART_PG_URL; clickhouse: a server (default: embedded)
    schema_: str | None = Field(default=None, alias="schema")  # postgres schema (default: public)
    read_url: str | None = None  # postgres: a read-only role for `eventmart query` (default: url, read-only)
    database: str | None = None  # clickhouse: the database (default: the URL's, else `default`)
    cluster: str | None = None  # clickhouse server: a cluster name; tables are Replicated, reads Distributed
    memory_limit: str | None = None  # duckdb: its memory before it spills to disk, e.g. 8GB (default: half the RAM)

    @model_validator(mode="after")
    def _defaults(self) -> Warehouse:
        if not self.path:
            self.path = "warehouse.chdb" if self.type == "clickhouse" else "warehouse.duckdb"
        if self.cluster and (self.type != "clickhouse" or not self.url):
            raise _at("cluster", "a cluster is a ClickHouse server setting (type: clickhouse with url:)")
        if self.database is not None and self.type != "clickhouse":
            raise _at("database", "database is a ClickHouse setting; PostgreSQL takes it in the URL")
        if self.memory_limit is not None and self.type != "duckdb":
            raise _at("memory_limit", "memory_limit is a DuckDB setting; a server engine has its own")
        if self.memory_limit is not None and not re.fullmatch(r"\d+(\.\d+)?\s*(KB|MB|GB|TB|KiB|MiB|GiB|TiB)",
                                                              self.memory_limit.strip()):
            raise _at("memory_limit", f"'{self.memory_limit}' is not a size like 512MB, 8GB or 16GiB")
        if self.database is not None and not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", self.database):
            raise _at("database", f"'{self.database}' is not a plain name (letters, digits, _)")
        return self


class Channel(Strict):
    """Where reports (and alerts) go. Secrets come from ${VAR}; they are never printed."""

    type: Literal["telegram", "slack", "email", "webhook", "file"]
    # telegram
    token: str | None = None
    chat_id: str | None = None
    api_base: str = "https://api.telegram.org"
    # slack
    webhook: str | None = None
    image_base_url: str | None = None  # slack: public URL where the report images are served
    # email
    host: str | None = None
    port: int | None = None
    security: Literal["starttls", "ssl", "none"] = "starttls"
    user: str | None = None
    password: str | None = None
    sender: str | None = Field(default=None, alias="from")
    ca_file: str | None = None  # email: CA certificates to trust (a private CA); default: the system's
    to: list[str] = []
    # webhook
    url: str | None = None
    secret: str | None = None  # HMAC-SHA256 of the body in X-Eventmart-Signature
    # file
    path: str = "reports"
    # delivery
    retries: int = Field(default=3, ge=0)
    backoff: float = Field(default=2.0, ge=0)  # seconds before the first retry; doubles
    timeout: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _check(self) -> Channel:
        need = {"slack": ["webhook"], "email": ["host", "to"], "webhook": ["url"]}.get(self.type, [])
        for k in need:
            if not getattr(self, k):
                raise _at(k, f"a {self.type} channel needs `{k}`")
        return self


class Metric(Strict):
    value: str  # an aggregate over the report's mart rows of one day, e.g. sum(views)
    label: str | None = None
    format: Literal["int", "float", "percent"] = "int"


class ReportChart(Strict):
    metrics: list[str]
    title: str | None = None
    days: int = Field(default=7, ge=2, le=366)


class Report(Strict):
    title: str
    mart: str
    metrics: dict[str, Metric]
    compare: list[Literal["previous_day", "same_day_last_week"]] = ["previous_day", "same_day_last_week"]
    charts: list[ReportChart] = []
    dashboard: str | None = None  # a link to it, filtered to the charts' days
    base_url: str = "http://127.0.0.1:8050"  # where `eventmart serve` is reachable for readers
    channels: list[str] = ["files"]

    @model_validator(mode="after")
    def _check(self) -> Report:
        for i, c in enumerate(self.charts):
            for m in c.metrics:
                if m not in self.metrics:
                    raise _at(f"charts.{i}.metrics", f"'{m}' is not one of this report's metrics")
        return self


class AlertRule(Strict):
    """An anomaly rule on a metric: a mart measure (or SQL), per series of `by`, judged by a detector."""

    mart: str | None = None
    measure: str | None = None  # an aggregate over the mart's columns per bucket, e.g. sum(views)
    sql: str | None = None  # or: SQL reading {{ start }}/{{ end }}, returning bucket [, by columns], value
    grain: str | None = None  # default: the mart's grain
    by: list[str] = []  # one series per value (e.g. os)
    # auto (recommended: daily cycles, level shifts, counts or ratios, stuck values) | iqr | zscore | mad |
    # pct_change | seasonal | threshold
    detector: Literal["auto", "iqr", "zscore", "mad", "pct_change", "seasonal", "threshold"] = "auto"
    params: dict[str, Any] = {}  # the detector's: a, n, k, period, lag, threshold, lower, upper, min_spread, ...
    direction: Literal["up", "down", "both"] = "both"
    min_history: int = Field(default=12, ge=0)  # buckets of history before a series is judged
    for_: int = Field(default=1, ge=1, alias="for")  # anomalous buckets in a row before it fires
    remind: str | None = None  # while firing, repeat every ... (e.g. "1 hour")
    cap: int = Field(default=10, ge=1)  # messages per channel per hour; the rest go out as one digest
    history: str = "2 days"  # how far back the detector may look (seasonal: at least k periods)
    fill: Literal["zero", "none"] = "zero"  # a bucket without rows: 0 (counts) or missing (ratios)
    channels: list[str] = []
    dashboard: str | None = None
    base_url: str = "http://127.0.0.1:8050"
    title: str | None = None

    @model_validator(mode="after")
    def _check(self) -> AlertRule:
        if (self.mart is None) == (self.sql is None):
            raise ValueError("an alert rule takes `mart` + `measure`, or `sql`")
        if self.mart is not None and not self.measure:
            raise _at("measure", "an alert on a mart needs `measure` (e.g. sum(views))")
        if self.sql is not None and not self.grain:
            raise _at("grain", "an alert with `sql` needs its `grain`")
        for key in ("grain",):
            if getattr(self, key):
                parse_grain(getattr(self, key))
        for key in ("remind", "history"):
            if getattr(self, key):
                try:
                    parse_duration(getattr(self, key))
                except ValueError as e:
                    raise _at(key, str(e)) from None
        from .alerts.params import DetectorError, check_params

        try:
            check_params(self.detector, self.params, self.direction)
        except DetectorError as e:
            raise _at("params", str(e)) from None
        return self


class Schedule(Strict):
    """A job run on a cron schedule by `eventmart serve` (or exported to Airflow)."""

    cron: str  # five-field cron expression, e.g. "15 3 * * *"
    timezone: str = "UTC"  # the zone the cron expression is read in
    run: Literal["marts", "backup", "report", "alerts", "ingest", "vault"] = "marts"
    marts: list[str] | None = None  # run: marts; default all marts
    sources: list[str] | None = None  # run: ingest; default all sources (their declared files or objects)
    window: str | None = None  # run: marts; window size per run (default: each mart's chunk)
    report: str | None = None  # run: report
    alerts: list[str] | None = None  # run: alerts; default all rules
    lookback: int = Field(default=0, ge=0)  # also re-run the last N windows (late events)
    catchup: Literal["all", "latest", "coalesce"] = "all"
    retries: int = Field(default=2, ge=0)
    retry_delay: str = "1 minute"
    start: str | None = None  # first data interval when exported to Airflow (default: the marts' start or yesterday)
    keep: int = Field(default=4, ge=1)  # run: backup; copies kept
    dir: str = "backups"  # run: backup; folder (relative to the project)

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        from croniter import croniter

        if not croniter.is_valid(self.cron) or len(self.cron.split()) != 5:
            raise _at("cron", f"'{self.cron}' is not a five-field cron expression (e.g. '15 3 * * *')")
        check_timezone(self.timezone)
        parse_duration(self.retry_delay)
        if self.window is not None:
            parse_grain(self.window)
        if self.run == "report" and not self.report:
            raise _at("report", "a report job names the report to send: report: <name>")
        if self.start is not None:
            from .timeutil import parse_time

            try:
                parse_time(self.start, "start")
            except Exception:
                raise _at("start", f"'{self.start}' is not an ISO date or time") from None
        return self

    @property
    def retry_seconds(self) -> int:
        return parse_duration(self.retry_delay)

    @property
    def window_seconds(self) -> int | None:
        return parse_grain(self.window) if self.window else None


class Hub(Strict):
    """One business entity: its business key(s), taken from a source. ``key`` maps the hub's key column names to
    the source's columns (a list: the same names)."""

    source: str
    key: dict[str, str]
    hash_key: str | None = None  # the hash key's column name (default hk_<hub>)
    record_source: str | None = None  # written into record_source (default: the source's name)

    @field_validator("key", mode="before")
    @classmethod
    def _key_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {v: v}
        return {k: k for k in v} if isinstance(v, list) else v


class Link(Strict):
    """A relationship between hubs seen in a source: for each hub, the source's columns holding its business key
    (in the hub's key order). Rows where any of them is empty are not relationships and are skipped."""

    source: str
    hubs: dict[str, list[str]]
    hash_key: str | None = None
    record_source: str | None = None

    @field_validator("hubs", mode="before")
    @classmethod
    def _one_column(cls, v: Any) -> Any:
        return {h: [c] if isinstance(c, str) else c for h, c in v.items()} if isinstance(v, dict) else v


class Satellite(Strict):
    """Descriptive attributes of a hub or link over time: a row only when they change (hashdiff), placed at the
    record's effective time (default: the source's event time), so late and out-of-order records land where
    they belong."""

    parent: str  # a hub or a link
    source: str
    attributes: list[str]
    key: list[str] | None = None  # the source's columns with the parent's business key (default: the parent's own)
    effective: str | None = None  # a timestamp column of the source (default: its event time)
    record_source: str | None = None


class Vault(Strict):
    hubs: dict[str, Hub] = {}
    links: dict[str, Link] = {}
    satellites: dict[str, Satellite] = {}


_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.I)
_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
               "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """'64MB', '1.5GiB' -> bytes. Raises ValueError when unusable."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"'{text}' is not a size like 512MB, 8GB or 16GiB")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])


class QuerySettings(Strict):
    """Limits on user SQL (`eventmart query`, the local API): one read may not hold the warehouse or the server's
    memory. `eventmart query SQL --out FILE` streams a whole result to a file, past max_rows and max_bytes."""

    timeout: str = "1 minute"  # a read running longer is cancelled (0 seconds: never)
    max_rows: int = Field(default=100_000, ge=1)  # rows a result may have
    max_bytes: str = "64MB"  # what a result may weigh, as text
    memory: str = "1GB"  # what one read may use where the engine bounds it (ClickHouse; PostgreSQL: work_mem / 16)

    @model_validator(mode="after")
    def _check(self) -> QuerySettings:
        with _Problems() as bad:
            try:
                parse_duration(self.timeout)
            except ValueError as e:
                bad.add("timeout", str(e))
            for key in ("max_bytes", "memory"):
                try:
                    parse_size(getattr(self, key))
                except ValueError as e:
                    bad.add(key, str(e))
        return self

    @property
    def timeout_seconds(self) -> float | None:
        return float(parse_duration(self.timeout)) or None


class ProjectConfig(Strict):
    name: str = "eventmart"
    warehouse: Warehouse = Warehouse()
    query: QuerySettings = QuerySettings()
    sources: dict[str, Source] = {}
    marts: dict[str, Mart] = {}
    dashboards: dict[str, Dashboard] = {}
    schedules: dict[str, Schedule] = {}
    channels: dict[str, Channel] = {}
    reports: dict[str, Report] = {}
    alerts: dict[str, AlertRule] = {}
    vault: Vault = Vault()

    @model_validator(mode="after")
    def _vault(self) -> ProjectConfig:
        """Every vault table names declared sources and columns, and its keys line up with its parent's."""
        v = self.vault
        names = [*v.hubs, *v.links, *v.satellites]
        for n in names:
            _check_name(n)
        taken = set(self.sources) | set(self.marts)
        for n in names:
            if n in taken or names.count(n) > 1:
                raise _at(f"vault.{n}", f"'{n}' is used by another table; vault tables need names of their own")

        def columns(where: str, source: str, cols: list[str]) -> None:
            if source not in self.sources:
                raise _at(f"{where}.source", f"'{source}' is not a declared source{did_you_mean(source, self.sources)}")
            have = self.sources[source].columns
            for c in cols:
                if c not in have:
                    raise _at(where, f"'{c}' is not a column of source {source}{did_you_mean(c, have)}")

        for n, h in v.hubs.items():
            columns(f"vault.hubs.{n}", h.source, list(h.key.values()))
        for n, link in v.links.items():
            if len(link.hubs) < 2:
                raise _at(f"vault.links.{n}.hubs", "a link joins at least two hubs")
            for h, cols in link.hubs.items():
                if h not in v.hubs:
                    raise _at(f"vault.links.{n}.hubs", f"'{h}' is not a declared hub{did_you_mean(h, v.hubs)}")
                if len(cols) != len(v.hubs[h].key):
                    raise _at(f"vault.links.{n}.hubs.{h}", f"hub {h} has {len(v.hubs[h].key)} key column(s); "
                                                            f"give as many columns of {link.source}")
                columns(f"vault.links.{n}.hubs.{h}", link.source, cols)
        for n, sat in v.satellites.items():
            where = f"vault.satellites.{n}"
            parent = v.hubs.get(sat.parent) or v.links.get(sat.parent)
            if parent is None:
                raise _at(f"{where}.parent", f"'{sat.parent}' is not a declared hub or link")
            own = list(parent.key.values()) if isinstance(parent, Hub) else [c for cs in parent.hubs.values()
                                                                                for c in cs]
            if sat.key is None and sat.source != parent.source:
                raise _at(f"{where}.key", f"the satellite reads {sat.source}, its parent {parent.source}: say which "
                                          f"columns of {sat.source} hold the parent's key ({len(own)})")
            if sat.key is not None and len(sat.key) != len(own):
                raise _at(f"{where}.key", f"the parent's key has {len(own)} column(s)")
            columns(where, sat.source, [*sat.attributes, *(sat.key or own)])
            if sat.effective:
                columns(f"{where}.effective", sat.source, [sat.effective])
                if self.sources[sat.source].columns[sat.effective].type not in ("timestamp", "date"):
                    raise _at(f"{where}.effective", f"'{sat.effective}' is not a timestamp column")
        return self

    @model_validator(mode="after")
    def _refs(self) -> ProjectConfig:
        with _Problems() as bad:
            for section, names in (("sources", self.sources), ("marts", self.marts), ("reports", self.reports),
                                   ("alerts", self.alerts), ("schedules", self.schedules)):
                for n in names:
                    if not NAME_RE.match(n):
                        bad.add(f"{section}.{n}", f"'{n}' is not a valid name; use letters, digits and _ (not "
                                                  "starting with a digit)")
            clash = set(self.sources) & set(self.marts)
            if clash:
                bad.add(None, f"names used by both a source and a mart: {', '.join(sorted(clash))}")
            for n, m in self.marts.items():
                if m.from_ and m.from_ not in self.sources:
                    bad.add(f"marts.{n}.from", f"'{m.from_}' is not a declared source{did_you_mean(m.from_, self.sources)}")
                for src, key in (m.joins or {}).items():
                    if not m.from_ or m.sql is None:
                        bad.add(f"marts.{n}.joins", "joins are for SQL marts with `from` (the source that sets the time)")
                    elif src not in self.sources:
                        bad.add(f"marts.{n}.joins", f"'{src}' is not a declared source")
                    else:
                        for s_ in (src, m.from_):
                            if s_ in self.sources and key not in self.sources[s_].columns:
                                bad.add(f"marts.{n}.joins.{src}", f"'{key}' is not a column of source {s_}")
            # reports and alert rules point at a mart, channels and a dashboard the same way
            for section, items in (("reports", self.reports), ("alerts", self.alerts)):
                for n, item in items.items():
                    if item.mart and item.mart not in self.marts:
                        bad.add(f"{section}.{n}.mart", f"'{item.mart}' is not a declared mart"
                                                       f"{did_you_mean(item.mart, self.marts)}")
                    for c in item.channels:
                        if c not in self.channels:
                            bad.add(f"{section}.{n}.channels", f"'{c}' is not a declared channel")
                    if item.dashboard and item.dashboard not in self.dashboards:
                        bad.add(f"{section}.{n}.dashboard", f"'{item.dashboard}' is not a declared dashboard")
            for j, job in self.schedules.items():
                for r in job.alerts or []:
                    if r not in self.alerts:
                        bad.add(f"schedules.{j}.alerts", f"'{r}' is not a declared alert rule")
                if job.report and job.report not in self.reports:
                    bad.add(f"schedules.{j}.report", f"'{job.report}' is not a declared report")
                for src in job.sources or []:
                    if src not in self.sources:
                        bad.add(f"schedules.{j}.sources", f"'{src}' is not a declared source")
                for m in job.marts or []:
                    if m not in self.marts:
                        bad.add(f"schedules.{j}.marts", f"'{m}' is not a declared mart")
            for d, dash in self.dashboards.items():
                for c, chart in dash.charts.items():
                    if chart.mart not in self.marts:
                        bad.add(f"dashboards.{d}.charts.{c}.mart", f"'{chart.mart}' is not a declared mart"
                                                                   f"{did_you_mean(chart.mart, self.marts)}")
            self._expressions(bad)
        return self

    def _expressions(self, bad: _Problems) -> None:
        """Measures, dimension expressions and the measure expressions of charts, reports and alert rules on
        declarative marts: checked when the file loads, so every command stops at a bad one with its line
        (SQL marts' columns are known only to the warehouse: `eventmart check` and `serve` check those)."""
        from .measures import check_expression, measure_sql, parse_metric, shape_from_config

        def attempt(fn, *args) -> bool:
            try:
                fn(*args)
                return True
            except ProjectError as e:
                key, _, msg = str(e).partition(": ")
                bad.add(key, msg)
                return False

        good: set[str] = set()  # marts whose own columns check out: what charts on them can be checked against
        for n, m in self.marts.items():
            if m.sql is not None:
                good.add(n)
                continue
            if m.from_ not in self.sources:
                continue
            allowed = set(self.sources[m.from_].columns) | {"_time"}
            ok = True
            for d in m.dimensions:
                if d.expr:
                    ok &= attempt(check_expression, d.expr, allowed, f"marts.{n}.dimensions.{d.name}")
                elif d.name != m.time_column and d.name not in allowed:
                    ok = False
                    bad.add(f"marts.{n}.dimensions", f"'{d.name}' is not a column of source {m.from_}"
                                                     f"{did_you_mean(d.name, allowed)}; give an expression "
                                                     f"({d.name}: <expr>) or use one of its columns")
            for k, text in m.measures.items():
                ok &= attempt(measure_sql, text, allowed, "duckdb", f"marts.{n}.measures.{k}")
            if ok:
                good.add(n)
        uses = [(f"dashboards.{d}.charts.{c}.measure", ch.mart,
                 f"{ch.agg}({ch.measure})" if ch.agg else ch.measure)
                for d, dash in self.dashboards.items() for c, ch in dash.charts.items() if ch.type != "scatter"]
        uses += [(f"dashboards.{d}.charts.{c}.{k}", ch.mart, text)
                 for d, dash in self.dashboards.items() for c, ch in dash.charts.items()
                 for k, text in ([("x", ch.x), ("y", ch.y)] if ch.type == "scatter" else
                                 [(f"measures.{m}", t) for m, t in (ch.measures or {}).items()])]
        uses += [(f"reports.{r}.metrics.{k}.value", rep.mart, mv.value)
                 for r, rep in self.reports.items() for k, mv in rep.metrics.items()]
        uses += [(f"alerts.{a}.measure", rule.mart, rule.measure) for a, rule in self.alerts.items() if rule.mart]
        for where, mart, text in uses:
            if mart in good and self.marts[mart].sql is None:
                attempt(lambda t, w, m=mart: parse_metric(shape_from_config(self, m), t, w), text, where)


# --- loading -----------------------------------------------------------------


def _node_line(root: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """The 1-based line of the YAML node at key path ``loc`` (or of its nearest existing parent)."""
    node, line = root, (root.start_mark.line + 1 if root is not None else None)
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(part) or (part == "from_" and k.value == "from") or (
                    part == "schema_" and k.value == "schema") or (part == "sender" and k.value == "from") or (
                    part == "for_" and k.value == "for"):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                break
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
            line = node.start_mark.line + 1
        else:
            break
    return line


def _substitute_env(value: Any, path: tuple[Any, ...], root: yaml.Node, file: str) -> Any:
    if isinstance(value, dict):
        return {k: _substitute_env(v, (*path, k), root, file) for k, v in value.items()}
    if isinstance(value, list):
        return [_substitute_env(v, (*path, i), root, file) for i, v in enumerate(value)]
    if isinstance(value, str) and "${" in value:

        def repl(m: re.Match[str]) -> str:
            var, default = m.group(1), m.group(2)
            if var in os.environ:
                return os.environ[var]
            if default is not None:
                return default
            line = _node_line(root, path)
            raise ProjectError(
                f"{file}:{line}: {'.'.join(map(str, path))}: environment variable {var} is not set; "
                f"export {var}=... before running eventmart"
            )

        return _ENV_RE.sub(repl, value)
    return value


def _loc_str(loc: tuple[Any, ...]) -> str:
    return ".".join({"from_": "from", "schema_": "schema", "sender": "from", "for_": "for"}.get(str(p), str(p))
                    for p in loc)


def project_file(path: Path) -> Path:
    """The project file for `-p PATH`: PATH/eventmart.yml, or PATH itself when it is that file."""
    if path.is_file() or path.suffix in (".yml", ".yaml"):
        if path.name != PROJECT_FILE:
            raise ProjectError(f"{path}: a project file is named {PROJECT_FILE}; rename it or pass its folder")
        return path
    return path / PROJECT_FILE


def did_you_mean(word: str, choices: list[str] | set[str] | dict) -> str:
    """"; did you mean 'x'?" for a near miss, else ""."""
    import difflib

    hits = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{hits[0]}'?" if hits else ""


def _known_keys() -> set[str]:
    keys: set[str] = set()
    stack: list[type] = [Strict]
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        for name, f in getattr(cls, "model_fields", {}).items():
            keys.add(f.alias or name)
    return keys


@dataclass
class _Error:
    at: tuple[Any, ...]  # where pydantic raised it (a field, or the model whose validator found it)
    loc: tuple[Any, ...]  # the key it is about
    type: str
    msg: str
    expected: str | None = None  # literal errors: the allowed values, as pydantic writes them


def _errors(e: ValidationError) -> list[_Error]:
    out = []
    for err in e.errors():
        at = tuple(p for p in err["loc"] if not (isinstance(p, str) and p.startswith("function-")))
        for msg in err["msg"].removeprefix("Value error, ").split(_SEP):
            loc = at
            m = re.match(r"^@([^@]+)@ (.*)$", msg, re.S)
            if m:
                loc = (*at, *(int(p) if p.isdigit() else p for p in m.group(1).split(".")))
                msg = m.group(2)
            if err["type"] == "extra_forbidden":
                msg = f"unknown key '{loc[-1]}'{did_you_mean(loc[-1], _known_keys()) or '; check its spelling'}"
            elif err["type"] == "missing":
                msg = f"missing required key '{loc[-1]}'"
            out.append(_Error(at, loc, err["type"], msg, (err.get("ctx") or {}).get("expected")))
    return out


def _text(e: _Error, root: yaml.Node | None, file: str) -> str:
    key = _loc_str(e.loc)
    return f"{file}:{_node_line(root, e.loc)}: {key + ': ' if key else ''}{e.msg}"


_SECTIONS = ("sources", "marts", "dashboards", "schedules", "channels", "reports", "alerts")
_ALIASES = {"from_": "from", "schema_": "schema", "for_": "for", "sender": "from"}


def _item(loc: tuple[Any, ...]) -> tuple[Any, ...] | None:
    """The top-level item a key belongs to: (sources, events), (vault, hubs, h), (warehouse,)."""
    if len(loc) >= 2 and loc[0] in _SECTIONS:
        return loc[:2]
    if len(loc) >= 3 and loc[0] == "vault":
        return loc[:3]
    if loc and loc[0] in ("warehouse", "vault"):
        return loc[:1]
    return None


def _node(data: Any, path: tuple[Any, ...]) -> Any:
    for p in path:
        if isinstance(data, dict) and p in data:
            data = data[p]
        elif isinstance(data, dict) and _ALIASES.get(p) in data:
            data = data[_ALIASES[p]]
        elif isinstance(data, list) and isinstance(p, int) and p < len(data):
            data = data[p]
        else:
            return None
    return data


def _repair(data: dict, e: _Error, hidden: list[tuple], dropped: set[str]) -> bool:
    """Take an error out of the way so that the checks behind it run (pydantic runs a model's own checks only when
    its fields are valid): an unknown key goes, a bad choice becomes a valid one, anything else drops the item it
    is in (a source, a mart, ...). What was hidden or dropped is remembered, so that errors of our making are not
    reported. True when something changed."""
    parent, key = (_node(data, e.at[:-1]), e.at[-1]) if e.at else (None, None)
    if isinstance(parent, dict) and key is not None:
        name = key if key in parent else _ALIASES.get(key, key)
        if e.type == "extra_forbidden" and name in parent:
            del parent[name]
            hidden.append(e.at)
            return True
        if e.type == "literal_error" and name in parent and e.expected:
            choice = re.match(r"'([^']*)'", e.expected)
            if choice and parent[name] != choice.group(1):
                parent[name] = choice.group(1)
                hidden.append(e.at)
                return True
    item = _item(e.at) or _item(e.loc)
    if item is None:
        return False
    holder = _node(data, item[:-1])
    if isinstance(holder, dict) and item[-1] in holder:
        del holder[item[-1]]
        hidden.append(item)
        if len(item) > 1:
            dropped.add(str(item[-1]))
        return True
    return False


def _all_problems(data: dict, first: ValidationError, root: yaml.Node | None, file: str) -> list[str]:
    """Every problem of the file, not only those pydantic reports before a model's own checks can run: errors are
    repaired or their item dropped, and the file validated again, for a few rounds."""
    import copy

    data = copy.deepcopy(data)
    problems: list[str] = []
    hidden: list[tuple] = []
    dropped: set[str] = set()
    err = first
    for _ in range(8):
        errs = _errors(err)
        for e in errs:
            # of our making: about a key we hid or dropped, about what holds such a key (below its item: the
            # `time` of a `time.unit` we replaced), or naming a dropped item
            ours = any(e.at[:len(h)] == h or e.loc[:len(h)] == h or
                       (h[:len(e.loc)] == e.loc and len(e.loc) > len(_item(h) or h)) for h in hidden) or \
                any(f"'{d}'" in e.msg for d in dropped)
            text = _text(e, root, file)
            if not ours and text not in problems:
                problems.append(text)
        if not any([_repair(data, e, hidden, dropped) for e in errs]):
            break
        try:
            ProjectConfig.model_validate(data)
            break
        except ValidationError as again:
            err = again
    return problems


def load_config(directory: Path) -> ProjectConfig:
    path = project_file(directory)
    file = str(path)
    if not path.is_file():
        raise ProjectError(
            f"{file}: no project file here; run eventmart in a project folder, pass -p DIR, "
            "or create one with `eventmart init`"
        )
    env_file = path.parent / ".env"
    if env_file.is_file():  # KEY=value lines beside the project file; what the environment already has wins
        from dotenv import load_dotenv

        load_dotenv(env_file, override=False)
    text = path.read_text(encoding="utf-8")
    try:
        root = yaml.compose(text)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ProjectError(f"{file}{where}: not valid YAML ({getattr(e, 'problem', e)}); fix the syntax") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ProjectError(f"{file}:1: the project file must be a mapping of keys (name, warehouse, sources, marts)")
    data = _substitute_env(data, (), root, file)
    try:
        return ProjectConfig.model_validate(data)
    except ValidationError as e:
        problems = _all_problems(data, e, root, file)
        err = ProjectError(problems[0])
        err.problems = problems  # `eventmart check` lists them all
        raise err from None


def locate(directory: Path, key: str) -> str:
    """``file:line: key`` for errors found after loading (e.g. a dashboard checked against the warehouse)."""
    path = project_file(directory)
    try:
        root = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        root = None
    loc = tuple(int(p) if p.isdigit() else p for p in key.split("."))
    return f"{path}:{_node_line(root, loc)}: {key}"
