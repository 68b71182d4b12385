"""The read API's OpenAPI 3.1 document, written for this project: each mart's measures and dimensions are
enumerated, so a client generator (or Grafana's JSON API source) knows what it may ask."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..dashboards.explore import DRILL_MAX, GRAINS
from ..timeutil import COMPARISONS

if TYPE_CHECKING:
    from ..config import ProjectConfig


def _p(name: str, where: str, schema: dict, description: str, required: bool = False) -> dict:
    return {"name": name, "in": where, "required": required, "schema": schema, "description": description}


_FORMAT = _p("format", "query", {"type": "string", "enum": ["json", "csv"], "default": "json"}, "the answer's format")
_RANGE = [_p("from", "query", {"type": "string"}, "UTC start, inclusive (default: the mart's first bucket)"),
          _p("to", "query", {"type": "string"}, "UTC end, exclusive (default: the end of its last bucket)")]
_ROWS = {"type": "object", "properties": {
    "columns": {"type": "array", "items": {"type": "string"}},
    "rows": {"type": "array", "items": {"type": "array"}},
    "next_offset": {"type": ["integer", "null"], "description": "the offset of the next page; null: the last"}}}


def _ok(description: str) -> dict:
    return {"200": {"description": description, "content": {
        "application/json": {"schema": _ROWS}, "text/csv": {"schema": {"type": "string"}}}},
        "400": {"description": "a parameter this mart cannot answer; the body says why"},
        "401": {"description": "no token, an unknown one or an expired one"},
        "403": {"description": "the token does not reach this mart or dashboard"}}


def document(cfg: ProjectConfig) -> dict[str, Any]:
    from ..expressions import shape_from_config

    paths: dict[str, Any] = {"/api/v1/marts": {"get": {
        "summary": "the marts this token reads, with their dimensions, measures and grains",
        "responses": {"200": {"description": "marts"}}}}}
    for name, m in cfg.marts.items():
        if m.sql is None:
            shape = shape_from_config(cfg, name)
            dims, measures = shape.dimensions, list(shape.rollups)
        else:  # a SQL mart's columns are known once it ran: names are checked then
            dims, measures = list(m.dimensions_sql or []), []
        filters = [_p(d, "query", {"type": "array", "items": {"type": "string"}}, f"keep rows whose {d} is one of "
                      "these (repeat the parameter)") for d in dims]
        grains = [g for g, s in GRAINS.items() if s >= m.grain_seconds and s % m.grain_seconds == 0]
        measure = {"type": "string", **({"enum": measures} if measures else {})}
        paths[f"/api/v1/marts/{name}"] = {"get": {
            "summary": f"mart {name}: measures per time bucket and dimension",
            "parameters": [*_RANGE, *filters, _FORMAT,
                           _p("measures", "query", {"type": "array", "items": measure}, "measures, by name "
                              "(default: all)"),
                           _p("group", "query", {"type": "array", "items": {"type": "string", "enum": dims}},
                              "dimensions to group by (default: none)"),
                           _p("grain", "query", {"type": "string", "enum": grains}, "time buckets (default: none, "
                              "the whole range); distinct counts and averages are counted at this grain"),
                           _p("limit", "query", {"type": "integer", "default": 1000, "maximum": 10000}, "rows"),
                           _p("offset", "query", {"type": "integer", "default": 0}, "rows to skip")],
            "responses": _ok("rows: bucket, the group's dimensions, the measures")}}
        if dims:
            paths[f"/api/v1/marts/{name}/leaderboard/{{dimension}}"] = {"get": {
                "summary": f"mart {name}: a dimension's values ranked by a measure, share and change",
                "parameters": [_p("dimension", "path", {"type": "string", "enum": dims}, "the dimension", True),
                               _p("measure", "query", measure, "the measure to rank by (default: the first)"),
                               _p("compare", "query", {"type": "string", "enum": list(COMPARISONS)},
                                  "the comparison period"),
                               _p("search", "query", {"type": "string"}, "values containing this text (any case)"),
                               _p("sort", "query", {"type": "string", "enum": ["value", "name", "share", "delta",
                                                                               "pct"]}, "the order"),
                               *_RANGE, *filters, _FORMAT,
                               _p("limit", "query", {"type": "integer", "default": 25}, "rows"),
                               _p("offset", "query", {"type": "integer", "default": 0}, "rows to skip")],
                "responses": _ok("value, measure, share_pct, compare_value, change, change_pct")}}
        if m.sql is None:
            paths[f"/api/v1/marts/{name}/events"] = {"get": {
                "summary": f"mart {name}: the raw events behind its rows in the range, oldest first",
                "parameters": [*_RANGE, *filters, _FORMAT,
                               _p("limit", "query", {"type": "integer", "default": 100, "maximum": DRILL_MAX}, "rows"),
                               _p("offset", "query", {"type": "integer", "default": 0}, "rows to skip")],
                "responses": _ok("the source's columns and _time")}}
    for d, dash in cfg.dashboards.items():
        dims = [f.dimension for f in dash.filters if f.dimension != "time"]
        paths[f"/api/v1/dashboards/{d}/charts/{{chart}}"] = {"get": {
            "summary": f"dashboard {d}: a chart's rows, as the page draws them for the same URL state",
            "parameters": [_p("chart", "path", {"type": "string", "enum": list(dash.charts)}, "the chart", True),
                           *_RANGE, _FORMAT,
                           _p("compare", "query", {"type": "string", "enum": [*COMPARISONS, "none"]},
                              "KPIs and time series gain the comparison period's values"),
                           _p("grain", "query", {"type": "string", "enum": list(GRAINS)}, "a time series' buckets "
                              "(default: the finest that keeps it under 2,000 points); others answer 400"),
                           _p("limit", "query", {"type": "integer", "default": 10000, "maximum": 10000}, "rows"),
                           _p("offset", "query", {"type": "integer", "default": 0}, "rows to skip"),
                           *[_p(x, "query", {"type": "array", "items": {"type": "string"}}, "a filter") for x in dims]],
            "responses": _ok("the chart's rows")}}
    return {"openapi": "3.1.0",
            "info": {"title": f"{cfg.name} — eventmart read API", "version": "1"},
            "components": {"securitySchemes": {"token": {"type": "http", "scheme": "bearer"}}},
            "security": [{"token": []}],
            "paths": paths}
