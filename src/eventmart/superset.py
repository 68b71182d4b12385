"""Apache Superset interop: the project's dashboards as a Superset import bundle (``eventmart superset export``) and
its import through Superset's REST API (``eventmart superset push``).

The bundle is Superset's own v1 format (a ZIP of YAML: metadata, one database, datasets, charts, dashboards). The
database is the one the docs tell a BI tool to use: ``bi.duckdb`` read-only beside an embedded DuckDB warehouse
(`eventmart serve` keeps it fresh), the server itself for PostgreSQL and ClickHouse — as ``--uri`` says, e.g. a
read-only role. A password is never written: Superset asks for it on import (``push`` sends it from an environment
variable).

Metrics re-aggregate the way eventmart's measure layer does, never as sums of values that do not add up:
additive measures (count, count_if, sum) as ``SUM``, min and max as themselves, a chart's ratio of aggregates as
written. A distinct count (or an avg) of a mart cannot be re-aggregated from the mart's rows: where the raw
source is in the BI database (PostgreSQL, ClickHouse) its dataset is the source's rows with the mart's bucket and
dimensions, and the metric counts them again; on DuckDB (``bi.duckdb`` holds the marts only) such metrics and the
charts that need them are left out, and the export says so.
"""

from __future__ import annotations

import io
import json
import uuid
import zipfile
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import yaml

from .errors import UserError

if TYPE_CHECKING:
    from .config import Chart, Dashboard, ProjectConfig
    from .project import Project

VERSION = "1.0.0"
VIZ = {"kpi": "big_number_total", "line": "echarts_timeseries_line", "area": "echarts_area",
       "bar": "echarts_timeseries_bar", "pie": "pie", "donut": "pie", "funnel": "funnel", "table": "table",
       "heatmap": "heatmap_v2"}
_NS = uuid.UUID("6f1c7a52-3b8e-4a55-9d0e-2f4b3c1a7e90")  # stable ids: a re-export overwrites, not duplicates


def _uuid(*parts: str) -> str:
    return str(uuid.uuid5(_NS, "/".join(parts)))


@dataclass
class Bundle:
    files: dict[str, str] = field(default_factory=dict)  # path in the ZIP -> YAML text
    notes: list[str] = field(default_factory=list)  # what was left out, and why
    database: str = ""  # its file in the bundle (for push's password)

    def zip(self) -> bytes:
        buf = io.BytesIO()
        with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
            for path, text in self.files.items():
                z.writestr(f"eventmart_export/{path}", text)
        return buf.getvalue()


def _yaml(d: dict) -> str:
    return yaml.safe_dump(d, allow_unicode=True, sort_keys=False)


def default_uri(p: Project) -> tuple[str, dict, str | None]:
    """The BI connection the docs give for this warehouse: (SQLAlchemy URI without a password, extra, schema)."""
    w = p.config.warehouse
    if w.type == "duckdb":
        return (f"duckdb:///{(p.dir / 'bi.duckdb').resolve()}",
                {"engine_params": {"connect_args": {"read_only": True}}}, "main")
    import psycopg

    if w.type == "postgres":
        info = psycopg.conninfo.conninfo_to_dict(p.warehouse.url)
        user = info.get("user", "")
        auth = f"{user}:XXXXXXXXXX@" if info.get("password") else (f"{user}@" if user else "")
        host = f"{info.get('host', 'localhost')}:{info.get('port', 5432)}"
        return f"postgresql+psycopg2://{auth}{host}/{info.get('dbname', '')}", {}, w.schema_ or "public"
    if w.type == "clickhouse" and w.url:
        from urllib.parse import urlsplit

        u = urlsplit(p.warehouse.url)
        auth = f"{u.username}:XXXXXXXXXX@" if u.password else (f"{u.username}@" if u.username else "")
        return f"clickhousedb://{auth}{u.hostname}:{u.port or 8123}/{p.warehouse.database}", {}, None
    raise UserError("superset export: embedded chDB serves no BI tool; give the BI database with --uri")


def build(p: Project, dashboard: str | None = None, uri: str | None = None) -> Bundle:
    cfg = p.config
    names = [dashboard] if dashboard else list(cfg.dashboards)
    for n in names:
        if n not in cfg.dashboards:
            raise UserError(f"superset export: no dashboard '{n}' in eventmart.yml (there are: "
                            f"{', '.join(cfg.dashboards) or 'none'})")
    if not names:
        raise UserError("superset export: eventmart.yml declares no dashboards")
    sqlalchemy_uri, extra, schema = default_uri(p) if not uri or p.config.warehouse.type == "duckdb" else (
        uri, {}, p.config.warehouse.schema_ or ("public" if p.config.warehouse.type == "postgres" else None))
    if uri:
        sqlalchemy_uri = _masked(uri)
    b = Bundle()
    db_uuid = _uuid(cfg.name, "database")
    db_name = f"eventmart {cfg.name}"
    b.database = f"databases/{_file(db_name)}.yaml"
    b.files[b.database] = _yaml({
        "database_name": db_name, "sqlalchemy_uri": sqlalchemy_uri, "cache_timeout": None, "expose_in_sqllab": True,
        "allow_run_async": False, "allow_ctas": False, "allow_cvas": False, "allow_dml": False,
        "allow_csv_upload": False, "extra": extra, "uuid": db_uuid, "version": VERSION})
    raw_readable = cfg.warehouse.type != "duckdb"
    datasets: dict[str, _Dataset] = {}
    for n in names:
        _dashboard(p, b, n, cfg.dashboards[n], datasets, raw_readable, schema)
    for ds in datasets.values():
        b.files[f"datasets/{_file(db_name)}/{ds.table}.yaml"] = _yaml(ds.yaml(db_uuid, schema))
    b.files["metadata.yaml"] = _yaml({"version": VERSION, "type": "Dashboard",
                                      "timestamp": datetime.now(UTC).isoformat()})
    return b


def _masked(uri: str) -> str:
    """A URI's password as Superset's exports write it: the import asks for it (push: --password-env)."""
    from urllib.parse import urlsplit, urlunsplit

    u = urlsplit(uri)
    if u.password is None:
        return uri
    host = u.netloc.rsplit("@", 1)[1]
    return urlunsplit(u._replace(netloc=f"{u.username}:XXXXXXXXXX@{host}"))


def _file(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


@dataclass
class _Dataset:
    table: str
    time_column: str
    columns: list[str]
    metrics: dict[str, str]  # metric name -> SQL expression
    sql: str | None = None  # a virtual dataset (the raw source, bucketed)
    uuid: str = ""

    def yaml(self, db_uuid: str, schema: str | None) -> dict:
        return {
            "table_name": self.table, "main_dttm_col": self.time_column, "description": None,
            "default_endpoint": None, "offset": 0, "cache_timeout": None, "schema": schema, "sql": self.sql,
            "params": None, "template_params": None, "filter_select_enabled": True,
            "fetch_values_predicate": None, "extra": None, "uuid": self.uuid, "normalize_columns": False,
            "always_filter_main_dttm": False,
            "metrics": [{"metric_name": m, "verbose_name": m, "metric_type": None, "expression": e,
                         "description": None, "d3format": None, "extra": {}, "warning_text": None}
                        for m, e in self.metrics.items()],
            "columns": [{"column_name": c, "verbose_name": None, "is_dttm": c == self.time_column,
                         "is_active": True, "type": "DATETIME" if c == self.time_column else None,
                         "groupby": True, "filterable": True, "expression": None, "description": None,
                         "python_date_format": None, "extra": {}} for c in self.columns],
            "version": VERSION, "database_uuid": db_uuid}


def _mart_dataset(p: Project, mart: str, raw: bool, schema: str | None) -> _Dataset:
    """The mart as a dataset; ``raw``: its source's rows instead (bucketed like the mart), for distinct counts."""
    from .expressions import ROLLUP, measure_kind, measure_sql, shape_from_config
    from .measures import MeasureLayer
    from .warehouse.base import quote_ident as q

    cfg = p.config
    m = cfg.marts[mart]
    dims = [d for d in m.dimensions if d.name != m.time_column]
    if not raw:  # the project file says it all: an embedded warehouse `serve` holds is not opened
        metrics = {}
        for name, text in m.measures.items():
            rollup = ROLLUP[measure_kind(text)]
            if rollup != "none":
                metrics[name] = f"{'SUM' if rollup == 'sum' else rollup.upper()}({q(name)})"
        cols = [m.time_column, *[d.name for d in dims], *m.measures]
        return _Dataset(mart, m.time_column, cols, metrics, uuid=_uuid(cfg.name, "dataset", mart))
    wh = p.warehouse
    src = cfg.sources[m.from_]
    allowed = set(src.columns) | {"_time"}
    # each dimension as the mart computes it from its events (the measure layer's own rendering)
    dim_sql = MeasureLayer(cfg, wh).source_dims(shape_from_config(cfg, mart))
    sel = [f"{wh.bucket_sql(q('_time'), m.grain_seconds)} AS {q(m.time_column)}"]
    sel += [f"{dim_sql[d.name]} AS {q(d.name)}" for d in dims]
    rest = [c for c in src.columns if c not in {d.name for d in dims} | {m.time_column}]
    sel += [q(c) for c in rest]
    metrics = {name: measure_sql(text, allowed, wh.dialect, f"marts.{mart}.measures.{name}")
               for name, text in m.measures.items()}
    table = f"{mart}__events"
    return _Dataset(table, m.time_column, [m.time_column, *[d.name for d in dims], *rest], metrics,
                    sql=f"SELECT {', '.join(sel)} FROM {f'{q(schema)}.' if schema else ''}{q(m.from_)}",
                    uuid=_uuid(cfg.name, "dataset", table))


def _metric_for(p: Project, chart: Chart, raw_readable: bool) -> tuple[str, str, str] | str:
    """(dataset key, metric name or SQL, label) for a chart's measure, or the reason it cannot be exported."""
    from sqlglot import exp

    from .expressions import ROLLUP, check_expression, measure_kind, parse_metric, shape_from_config

    m = p.config.marts.get(chart.mart)
    if m is None or m.sql is not None:
        return f"mart {chart.mart} is a SQL mart: its measures' roll-ups are not declared"
    measure = chart.measure.strip()
    if measure in m.measures:
        rollup = ROLLUP[measure_kind(m.measures[measure])]
        if chart.agg and chart.agg != ("sum" if rollup == "sum" else rollup):
            return f"measure {measure} with agg {chart.agg}: an aggregate over the mart's buckets"
        if rollup != "none":
            return chart.mart, measure, measure
        if raw_readable and m.from_ and not m.timezone:
            return f"{chart.mart}__events", measure, measure
        if m.timezone:
            return (f"measure {measure} is a distinct count or an average of a mart bucketed in {m.timezone}: "
                    "counting it again from the raw events would bucket in UTC")
        return (f"measure {measure} is a distinct count or an average: Superset cannot re-aggregate it from the "
                "marts in bi.duckdb (use a PostgreSQL or ClickHouse warehouse, whose raw events it can read)")
    # an aggregate expression over additive mart columns (e.g. sum(likes) / sum(views)) means the same in Superset
    shape = shape_from_config(p.config, chart.mart)
    try:
        metric = parse_metric(shape, measure, f"chart measure {measure}")
    except Exception as e:  # noqa: BLE001 — the dashboard check reports it in full
        return f"measure {measure}: {str(e).splitlines()[0]}"
    if not metric.over_buckets or any(shape.rollups.get(r.column) != "sum" or r.cond is not None
                                      for r in metric.refs):
        return f"measure {measure}: it aggregates per-bucket values of the mart (Superset has no such step)"
    if any(isinstance(n, exp.Avg | exp.Count) for n in metric.node.walk()):
        return f"measure {measure}: an average or a count over the mart's buckets"
    dialect = {"postgres": "postgres", "clickhouse": "clickhouse"}.get(p.config.warehouse.type, "duckdb")
    sql = check_expression(measure, set(shape.columns), f"chart measure {measure}").sql(dialect=dialect)
    return chart.mart, f"SQL:{sql}", measure


def _dashboard(p: Project, b: Bundle, name: str, dash: Dashboard, datasets: dict[str, _Dataset],
               raw_readable: bool, schema: str | None) -> None:
    cfg: ProjectConfig = p.config
    chart_ids: dict[str, tuple[str, str]] = {}  # chart -> (uuid, dataset key)
    for cname, ch in dash.charts.items():
        title = ch.title or cname
        if ch.type not in VIZ:
            b.notes.append(f"dashboards.{name}.charts.{cname}: a {ch.type} chart has no Superset counterpart here")
            continue
        got = _metric_for(p, ch, raw_readable)
        if isinstance(got, str):
            b.notes.append(f"dashboards.{name}.charts.{cname}: left out — {got}")
            continue
        key, metric, label = got
        if key not in datasets:
            datasets[key] = _mart_dataset(p, ch.mart, key != ch.mart, schema)
        ds = datasets[key]
        if metric.startswith("SQL:"):
            metric_ref: Any = {"expressionType": "SQL", "sqlExpression": metric[4:], "label": label}
        else:
            metric_ref = metric
        cu = _uuid(cfg.name, "chart", name, cname)
        params = _params(ch, ds, metric_ref)
        b.files[f"charts/{_file(title)}_{cu[:8]}.yaml"] = _yaml({
            "slice_name": title, "description": None, "certified_by": None, "certification_details": None,
            "viz_type": VIZ[ch.type], "params": params, "query_context": None, "cache_timeout": None,
            "uuid": cu, "version": VERSION, "dataset_uuid": ds.uuid})
        chart_ids[cname] = (cu, key)
    du = _uuid(cfg.name, "dashboard", name)
    b.files[f"dashboards/{_file(dash.title)}_{du[:8]}.yaml"] = _yaml({
        "dashboard_title": dash.title, "description": dash.description or None, "css": "", "slug": None,
        "uuid": du, "position": _position(dash, chart_ids),
        "metadata": {"native_filter_configuration": _filters(name, dash, chart_ids, datasets),
                     "refresh_frequency": dash.refresh, "color_scheme": "", "label_colors": {},
                     "expanded_slices": {}, "timed_refresh_immune_slices": [], "cross_filters_enabled": False,
                     "default_filters": "{}", "chart_configuration": {}},
        "version": VERSION})


def _params(ch: Chart, ds: _Dataset, metric: Any) -> dict:
    base = {"viz_type": VIZ[ch.type], "adhoc_filters": [], "time_range": "No filter", "row_limit": 10_000}
    if ch.type == "kpi":
        return {**base, "metric": metric, "header_font_size": 0.4, "subheader_font_size": 0.15}
    if ch.type in ("line", "area"):
        return {**base, "x_axis": ds.time_column, "time_grain_sqla": None, "metrics": [metric],
                "groupby": [ch.color] if ch.color else []}
    if ch.type == "bar":
        return {**base, "x_axis": ch.dimension, "metrics": [metric], "groupby": [], "row_limit": ch.limit,
                "orientation": "vertical"}
    if ch.type in ("pie", "donut", "funnel"):
        return {**base, "metric": metric, "groupby": [ch.dimension], "row_limit": ch.limit,
                "donut": ch.type == "donut"}
    if ch.type == "heatmap":
        return {**base, "x_axis": ch.x, "groupby": [ch.y], "metric": metric}
    return {**base, "query_mode": "aggregate", "groupby": list(ch.columns or []), "metrics": [metric],
            "row_limit": ch.limit}


def _position(dash: Dashboard, charts: dict[str, tuple[str, str]]) -> dict:
    pos: dict[str, Any] = {"DASHBOARD_VERSION_KEY": "v2",
                           "ROOT_ID": {"type": "ROOT", "id": "ROOT_ID", "children": ["GRID_ID"]},
                           "GRID_ID": {"type": "GRID", "id": "GRID_ID", "children": [], "parents": ["ROOT_ID"]},
                           "HEADER_ID": {"id": "HEADER_ID", "type": "HEADER", "meta": {"text": dash.title}}}
    seq = 0  # chartId: the exporting Superset's id, which an import maps to its own (by uuid)
    for i, row in enumerate(dash.rows()):
        items = [(n, w) for n, w in row if n in charts]
        if not items:
            continue
        rid = f"ROW-{i}"
        pos["GRID_ID"]["children"].append(rid)
        pos[rid] = {"type": "ROW", "id": rid, "children": [], "parents": ["ROOT_ID", "GRID_ID"],
                    "meta": {"background": "BACKGROUND_TRANSPARENT"}}
        total = sum(w for _, w in items)
        for n, w in items:
            cid = f"CHART-{charts[n][0][:8]}"
            seq += 1
            pos[rid]["children"].append(cid)
            pos[cid] = {"type": "CHART", "id": cid, "children": [], "parents": ["ROOT_ID", "GRID_ID", rid],
                        "meta": {"width": max(1, round(12 * w / total)), "height": 50, "uuid": charts[n][0], "chartId": seq,
                                 "sliceName": (dash.charts[n].title or n)}}
    return pos


def _filters(name: str, dash: Dashboard, charts: dict[str, tuple[str, str]],
             datasets: dict[str, _Dataset]) -> list[dict]:
    out = []
    for f in dash.filters:
        fid = f"NATIVE_FILTER-{_uuid(name, 'filter', f.dimension)[:10]}"
        common = {"id": fid, "name": f.label or f.dimension, "type": "NATIVE_FILTER", "description": "",
                  "cascadeParentIds": [], "scope": {"rootPath": ["ROOT_ID"], "excluded": []}, "chartsInScope": []}
        if f.dimension == "time":
            value = None if f.default in (None, "all") else _time_range(f.default)
            out.append({**common, "filterType": "filter_time", "targets": [{}], "controlValues": {},
                        "defaultDataMask": {"filterState": {"value": value}, "extraFormData": (
                            {"time_range": value} if value else {})}})
            continue
        holder = next((datasets[k] for _, k in charts.values() if f.dimension in datasets[k].columns), None)
        if holder is None:
            continue
        default = [f.default] if isinstance(f.default, str) else f.default
        out.append({**common, "filterType": "filter_select",
                    "targets": [{"datasetUuid": holder.uuid, "column": {"name": f.dimension}}],
                    "controlValues": {"multiSelect": True, "enableEmptyFilter": False, "defaultToFirstItem": False,
                                      "inverseSelection": False, "searchAllOptions": False},
                    "defaultDataMask": {"filterState": {"value": default}, "extraFormData": (
                        {"filters": [{"col": f.dimension, "op": "IN", "val": default}]} if default else {})}})
    return out


def _time_range(last: str) -> str:
    """``last 24 hours`` in Superset's time-range syntax."""
    from .timeutil import parse_last

    seconds = parse_last(last)
    return f'DATEADD(DATETIME("now"), -{int(seconds)}, second) : now'


def push(url: str, bundle: Bundle, user: str, password: str, db_password: str | None = None,
         timeout: float = 120) -> dict:
    """Import the bundle into the Superset at ``url`` through its REST API (log in, CSRF token, import)."""
    import httpx

    base = url.rstrip("/")
    with httpx.Client(base_url=base, timeout=timeout, headers={"Referer": base + "/"}) as c:
        try:
            r = c.post("/api/v1/security/login", json={"username": user, "password": password, "provider": "db",
                                                        "refresh": True})
        except httpx.HTTPError as e:
            raise UserError(f"superset push: cannot reach {base} ({type(e).__name__}); check the URL") from None
        if r.status_code != 200:
            raise UserError(f"superset push: login to {base} as {user} refused ({r.status_code}); check "
                            "SUPERSET_USER / SUPERSET_PASSWORD")
        h = {"Authorization": f"Bearer {r.json()['access_token']}"}
        h["X-CSRFToken"] = c.get("/api/v1/security/csrf_token/", headers=h).json()["result"]
        data = {"overwrite": "true"}
        if db_password:
            data["passwords"] = json.dumps({f"eventmart_export/{bundle.database}": db_password})
        r = c.post("/api/v1/dashboard/import/", headers=h, data=data,
                   files={"formData": ("eventmart.zip", bundle.zip(), "application/zip")})
        if r.status_code != 200:
            try:
                why = json.dumps(r.json())[:400]
            except ValueError:
                why = "no detail (see Superset's log)"
            raise UserError(f"superset push: {base} refused the import (HTTP {r.status_code}): {why}")
        return r.json()
