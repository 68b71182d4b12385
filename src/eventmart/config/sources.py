"""`sources:` — where events come from: files (local or S3), a PostgreSQL table or a Kafka topic, their columns,
event time and key."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from .base import (
    NAME_RE,
    RESERVED,
    TYPES,
    Strict,
    _at,
    _Problems,
    decimal_spec,
    did_you_mean,
)


class Column(Strict):
    # string, int, float, bool, timestamp, date, or decimal(P,S): P digits, S of them after the point, summed exactly
    type: str
    required: bool = True  # False: the value may be empty (written `type?`)

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

    from_: str = Field(default="1990-01-01", alias="from")  # the first time accepted (UTC)
    to: str = "2100-01-01"  # the first time refused (UTC)

    @model_validator(mode="after")
    def _check(self) -> TimeRange:
        from ..timeutil import parse_time

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
    column: str  # the column holding the event time
    # how the time column is written in the data; stored as a UTC timestamp in `_time`
    unit: Literal["timestamp", "s", "ms"] = "timestamp"
    # unit timestamp: a strptime format for times ISO parsing does not read, e.g. '%d.%m.%Y %H:%M', '%b %d %Y'
    format: str | None = None
    valid: TimeRange = TimeRange()  # the event times accepted; others are rejects

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

    bucket: str  # the bucket's name
    prefix: str = ""  # only keys under this prefix
    glob: str = "*"  # matched against the key after the prefix
    endpoint_url: str | None = None  # e.g. https://storage.yandexcloud.net or http://127.0.0.1:9000
    region: str | None = None  # the bucket's region (default: the credential chain's)

    @model_validator(mode="after")
    def _check(self) -> S3Spec:
        if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", self.bucket):
            raise _at("bucket", f"'{self.bucket}' is not a bucket name (3-63 of a-z, 0-9, '.', '-')")
        return self


class KafkaSpec(Strict):
    """A topic whose messages are events (JSON objects). Connection settings that are secrets come from
    ``${VAR}``; ``options`` passes librdkafka settings through (security.protocol, sasl.*, ssl.*)."""

    bootstrap_servers: str  # host:port,… of the brokers (use ${VAR})
    topic: str  # the topic whose messages are events
    group: str | None = None  # the consumer group (default eventmart-<source>)
    batch: int = Field(default=20_000, ge=1, le=1_000_000)  # messages per batch (one transaction)
    start: Literal["earliest", "latest"] = "earliest"  # where a partition eventmart has never read starts
    options: dict[str, str] = {}  # librdkafka settings passed through (security.protocol, sasl.*, ssl.*)
    # seconds an ingest keeps retrying brokers that do not answer — at start, or gone in the middle of a run —
    # before it fails with one line (batches loaded before stay committed; the next run resumes after them)
    connect_timeout: float = Field(default=30.0, gt=0, le=3600)


class CsvOptions(Strict):
    delimiter: str = ","  # the field separator
    header: bool = True  # whether the first line names the columns (else: the declared order)
    quote: str = '"'  # the quote character


class Source(Strict):
    format: Literal["csv", "jsonl", "parquet", "postgres"]  # how the data is written (postgres: a table)
    path: str | list[str] | None = None  # files: a path, glob or list, relative to the project folder
    url: str | None = None  # postgres source: connection URL (use ${VAR})
    table: str | None = None  # postgres source: table name, optionally schema.table
    # name: type (string, int, float, bool, timestamp, date, decimal(P,S)); `type?` may be empty
    columns: dict[str, Column]
    time: TimeSpec  # the event time: which column, how it is written
    key: list[str]  # what makes an event unique: a key loaded again is a duplicate, loaded once
    csv: CsvOptions = CsvOptions()  # CSV dialect
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
