"""`dashboards:` — charts on marts, their filters and layout."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from ..timeutil import parse_duration, parse_last
from .base import Strict, _at

CHART_TYPES = ("area", "line", "pie", "donut", "funnel", "bar", "kpi", "heatmap", "table")


class Filter(Strict):
    dimension: str  # `time` for the time range, else a dimension of the dashboard's marts
    label: str | None = None  # shown above the filter (default: the dimension)
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
    # the kind of chart
    type: Literal["area", "line", "pie", "donut", "funnel", "bar", "kpi", "heatmap", "table", "scatter"]
    mart: str  # the mart it reads
    # a mart column (aggregated with `agg`, by default as its measure implies) or an aggregate
    # expression over mart columns, e.g. "sum(visits)" or "avg(unique_users) filter (where event = 'click')"
    measure: str = ""  # every chart but scatter (x and y)
    # how a measure column is aggregated over the chart's groups (default: as its measure implies)
    agg: Literal["sum", "avg", "min", "max"] | None = None
    title: str | None = None  # default: the chart's name
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
    title: str  # shown at the top
    description: str = ""  # a line under the title
    refresh: int = Field(default=60, ge=0)  # seconds between auto-refreshes; 0: only on interaction
    # what KPIs and time series are compared with until the viewer picks: none, previous (period), week, month, year
    compare: Literal["none", "previous", "week", "month", "year"] = "none"
    filters: list[Filter] = []  # `time`, or dimensions of the dashboard's marts (a value list each)
    charts: dict[str, Chart]  # by name
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


class ApiToken(Strict):
    token: str = Field(min_length=16)  # the secret a client sends as `Authorization: Bearer …`; use ${VAR}
    dashboards: list[str] = []  # dashboards whose charts (and the marts they read) it may read; "*": all
    marts: list[str] = []  # marts it may read whole; "*": all
    expires: datetime | None = None  # UTC; from then on the token is refused


class Api(Strict):
    """`api:` — the read API (/api/v1/…) and signed embed links."""

    tokens: dict[str, ApiToken] = {}  # by name: the name is what logs show, never the token
    embed_secret: str | None = Field(default=None, min_length=16)  # signs `eventmart embed` links; use ${VAR}
