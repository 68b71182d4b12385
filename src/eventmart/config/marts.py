"""`marts:` — time-bucketed aggregates: declarative (measures by dimensions) or SQL."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..timeutil import parse_grain
from .base import NAME_RE, Strict, _Problems, check_timezone


class Dimension(Strict):
    name: str  # the column's name in the mart
    expr: str | None = None  # SQL expression over the source's columns; default: the column itself


class Mart(Strict):
    # the source it reads (a SQL mart: where gaps and backfill get their span)
    from_: str | None = Field(default=None, alias="from")
    grain: str = "1 day"  # the time bucket: 1 minute … 1 day, dividing a day evenly
    time_column: str = "dt"  # the bucket's column; place it among dimensions to set its position
    dimensions: list[Dimension] = []  # columns to group by: a source column, or `name: SQL expression`
    # name: count(), count_distinct(x), approx_count_distinct(x), sum/min/max/avg(x), count_if(cond)
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
