"""A real Apache Superset (6.1, in .venv-superset, which make test builds from tests/superset/constraints.txt) reads
eventmart's marts the way the docs tell a user to connect it: DuckDB's `bi.duckdb` while `eventmart serve` owns the
warehouse, and a PostgreSQL warehouse through a read-only role. Every number Superset shows — through SQL Lab and
through a dataset's chart-data API — equals the truth computed here from the raw events; every BI connection string
in the docs is one of those tested (ClickHouse's is not: no ClickHouse server runs here, and the docs say so)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from datetime import datetime, timedelta
from pathlib import Path

import psycopg
import pytest

from conftest import write_project
from pgserver import free_port

ROOT = Path(__file__).resolve().parents[1]
SUPERSET_PY = ROOT / ".venv-superset" / "bin" / "python"
DRIVER = Path(__file__).parent / "superset" / "driver.py"
EVENTMART = str(Path(sys.executable).parent / "eventmart")
pytestmark = pytest.mark.xdist_group("superset")  # one worker initialises Superset once

T0 = datetime(2024, 5, 1)
BIG = 2**40 + 7  # sums of these stay exact in a double, and a float would still show it


@pytest.fixture(scope="module")
def superset_home(tmp_path_factory) -> Path:
    if not SUPERSET_PY.exists():
        pytest.fail(f"{SUPERSET_PY} is missing: `make test` builds it (the Superset venv)")
    home = tmp_path_factory.mktemp("superset")
    r = subprocess.run([str(SUPERSET_PY), str(DRIVER), "init", str(home)], capture_output=True, text=True,
                       timeout=600)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    return home


def home_copy(home: Path, mine: Path) -> Path:
    """A copy of the initialised Superset home (its metadata), its config pointing at the copy."""
    shutil.copytree(home, mine)
    cfg = mine / "superset_config.py"
    cfg.write_text(cfg.read_text().replace(str(home), str(mine)))
    return mine


def bi_reader(pg_url: str) -> None:
    """The read-only role of the docs (engines.md), with the schema eventmart writes to."""
    with psycopg.connect(pg_url, autocommit=True) as c:
        if not c.execute("SELECT 1 FROM pg_roles WHERE rolname = 'bi_reader'").fetchone():
            c.execute("CREATE ROLE bi_reader LOGIN PASSWORD 'bi-secret'")
        c.execute("GRANT USAGE ON SCHEMA public TO bi_reader")
        c.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO bi_reader")


def ask(home: Path, tmp: Path, spec: dict) -> dict:
    """One Superset session on a copy of the initialised metadata."""
    mine = home_copy(home, tmp / "superset-home")
    r = subprocess.run([str(SUPERSET_PY), str(DRIVER), "ask", str(mine)], input=json.dumps(spec), capture_output=True,
                       text=True, timeout=600)
    line = next((ln for ln in r.stdout.splitlines() if ln.startswith("EVENTMART-RESULT ")), None)
    assert r.returncode == 0 and line, r.stdout[-2000:] + r.stderr[-3000:]
    return json.loads(line.split(" ", 1)[1])


def events(n: int = 3000) -> list[dict]:
    """Events over 30 hours: three actions, a big amount now and then, a user id that repeats."""
    return [{"id": i, "user": f"u{i % 37}", "action": ["view", "like", "share"][i % 3 if i % 11 else 0],
             "amount": BIG if i % 97 == 0 else i % 1000, "ts": (T0 + timedelta(seconds=i * 36)).isoformat(sep=" ")}
            for i in range(n)]


def truth(evs: list[dict]) -> tuple[list[list], dict[str, int]]:
    """The per_hour mart and events by action, from the raw events."""
    per: dict[tuple[str, str], list[int]] = {}
    for e in evs:
        k = (e["ts"][:13] + ":00:00", e["action"])
        v = per.setdefault(k, [0, 0])
        v[0] += 1
        v[1] += e["amount"]
    rows = [[dt, a, c, s] for (dt, a), (c, s) in sorted(per.items())]
    return rows, dict(Counter(e["action"] for e in evs))


def project(d: Path, warehouse: dict) -> Path:
    (d / "data").mkdir(parents=True)
    (d / "data" / "events.jsonl").write_text("".join(json.dumps(e) + "\n" for e in events()))
    return write_project(d, {
        "name": "bi", "warehouse": warehouse,
        "sources": {"ev": {"format": "jsonl", "path": "data/*.jsonl",
                           "columns": {"id": "int", "user": "string", "action": "string", "amount": "int",
                                       "ts": "timestamp"},
                           "time": {"column": "ts"}, "key": ["id"]}},
        "marts": {"per_hour": {"from": "ev", "grain": "1 hour", "dimensions": ["dt", "action"],
                               "measures": {"events": "count()", "amount": "sum(amount)"}}}})


def build(d: Path) -> None:
    for args in (["ingest", "ev"], ["backfill"]):
        r = subprocess.run([EVENTMART, *args, "-p", str(d)], capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout + r.stderr


SQL = "SELECT CAST(dt AS VARCHAR) AS dt, action, events, amount FROM per_hour ORDER BY dt, action"


def as_rows(got: list) -> list[list]:
    return [[str(dt)[:19].replace("T", " "), a, int(c), int(s)] for dt, a, c, s in got]


def test_superset_reads_the_duckdb_marts_while_serve_owns_the_warehouse(tmp_path, superset_home):
    d = project(tmp_path / "p", {"type": "duckdb"})
    build(d)
    srv = subprocess.Popen([EVENTMART, "serve", "--port", str(free_port()), "-p", str(d)], stdout=subprocess.PIPE,
                           stderr=subprocess.STDOUT, text=True)
    try:
        until = time.monotonic() + 60
        while not (d / "bi.duckdb").exists():  # serve publishes the marts for BI tools as it starts
            assert srv.poll() is None and time.monotonic() < until, srv.stdout.read() if srv.poll() else "no bi.duckdb"
            time.sleep(0.2)
        # the docs' connection: duckdb:////path/to/project/bi.duckdb, read_only (duckdb-engine)
        uri = f"duckdb:///{(d / 'bi.duckdb').resolve()}"
        got = ask(superset_home, tmp_path, {"databases": [
            {"name": "duckdb", "uri": uri, "schema": "main",
             "extra": {"engine_params": {"connect_args": {"read_only": True}}},
             "sql": [SQL], "charts": [{"table": "per_hour", "groupby": ["action"], "metric": "SUM(events)"}]},
            {"name": "locked", "uri": f"duckdb:///{(d / 'warehouse.duckdb').resolve()}", "schema": "main",
             "extra": {"engine_params": {"connect_args": {"read_only": True}}}, "sql": ["SELECT 1"]}]})
        assert srv.poll() is None, "serve stopped while Superset read"
    finally:
        srv.terminate()
        srv.wait(30)
    rows, by_action = truth(events())
    assert as_rows(got["duckdb"]["sql"][0]) == rows
    assert {a: int(v) for a, v in got["duckdb"]["charts"][0]} == by_action
    # the warehouse itself is serve's alone (DuckDB's lock): which is why bi.duckdb exists
    locked = got["locked"]
    assert "error" in locked or "error" in locked["sql"][0], locked


def test_superset_reads_the_postgres_marts_through_a_read_only_role(tmp_path, superset_home, pg_url):
    d = project(tmp_path / "p", {"type": "postgres", "url": pg_url})
    build(d)
    bi_reader(pg_url)
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    host = f"{info.get('host', '127.0.0.1')}:{info.get('port', 5432)}"
    spec = {"sql": [SQL.replace("VARCHAR", "TEXT"), "DELETE FROM per_hour"],
            "charts": [{"table": "per_hour", "groupby": ["action"], "metric": "SUM(events)"}]}
    got = ask(superset_home, tmp_path, {"databases": [
        # the docs' string for Superset (SQLAlchemy 1.4: psycopg2)
        {"name": "pg", "uri": f"postgresql+psycopg2://bi_reader:bi-secret@{host}/{info['dbname']}",
         "schema": "public", **spec},
        # psycopg 3's dialect, which SQLAlchemy 2 clients use: Superset has none (the docs say so)
        {"name": "pg3", "uri": f"postgresql+psycopg://bi_reader:bi-secret@{host}/{info['dbname']}", "sql": ["SELECT 1"]}]})
    rows, by_action = truth(events())
    assert as_rows(got["pg"]["sql"][0]) == rows
    assert "error" in got["pg"]["sql"][1]  # a reader: Superset's DML switch and the role both refuse
    assert {a: int(v) for a, v in got["pg"]["charts"][0]} == by_action
    assert "error" in got["pg3"], got["pg3"]
    with psycopg.connect(pg_url) as c:
        assert c.execute("SELECT count(*) FROM per_hour").fetchone()[0] == len(rows)


def test_every_bi_connection_string_in_the_docs_is_tested():
    text = "\n".join(p.read_text() for p in [ROOT / "README.md", *(ROOT / "docs").rglob("*.md")])
    schemes = set(re.findall(r"`((?:postgresql|duckdb|clickhousedb|clickhouse)[+a-z0-9]*)://", text))
    # above, against Superset: the first two work; psycopg 3's fails there, and the docs say so next to it
    tested = {"postgresql+psycopg2", "duckdb", "postgresql+psycopg"}
    untested = {"clickhousedb": "no ClickHouse server here"}  # stated in the docs
    assert schemes <= tested | set(untested), schemes - tested - set(untested)
    assert {"postgresql+psycopg2", "duckdb"} <= schemes
    bi = text[text.index("### BI tools"):]
    assert "`postgresql+psycopg://` fails there" in bi and "clickhousedb://" in bi.split("Not tested")[0]


# --- eventmart superset export / push --------------------------------------------------------------------------

DASHBOARD = {"title": "Activity", "filters": [{"dimension": "time", "default": "last 24 hours"}, "action"], "charts": {
    "events": {"type": "kpi", "mart": "per_hour", "measure": "events"},
    "users": {"type": "kpi", "mart": "per_hour", "measure": "users"},
    "by_action": {"type": "bar", "mart": "per_hour", "measure": "events", "dimension": "action"},
    "users_by_action": {"type": "pie", "mart": "per_hour", "measure": "users", "dimension": "action"},
    "amount_per_event": {"type": "table", "mart": "per_hour", "measure": "sum(amount) / sum(events)",
                         "columns": ["action"]},
    "amount": {"type": "line", "mart": "per_hour", "measure": "amount"}}}


def dashboard_project(d: Path, warehouse: dict) -> Path:
    project(d, warehouse)
    import yaml

    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["marts"]["per_hour"]["measures"]["users"] = "count_distinct(user)"
    cfg["dashboards"] = {"activity": DASHBOARD}
    return write_project(d, cfg)


def test_export_of_a_duckdb_project_names_what_superset_cannot_reaggregate(tmp_path):
    import zipfile

    import yaml

    d = dashboard_project(tmp_path / "p", {"type": "duckdb"})
    r = subprocess.run([EVENTMART, "superset", "export", "activity", "-o", str(tmp_path / "b.zip"), "-p", str(d)],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    # the two distinct-count charts are left out, by name and with the reason; the others are there
    assert "charts.users: left out — measure users is a distinct count" in r.stdout, r.stdout
    assert "charts.users_by_action: left out" in r.stdout and "wrote " in r.stdout and "4 chart(s)" in r.stdout
    z = zipfile.ZipFile(tmp_path / "b.zip")
    files = {n.split("/", 1)[1]: z.read(n).decode() for n in z.namelist()}
    db = yaml.safe_load(next(v for k, v in files.items() if k.startswith("databases/")))
    assert db["sqlalchemy_uri"] == f"duckdb:///{(d / 'bi.duckdb').resolve()}"
    assert db["extra"] == {"engine_params": {"connect_args": {"read_only": True}}} and db["allow_dml"] is False
    ds = yaml.safe_load(files["datasets/eventmart_bi/per_hour.yaml"])
    metrics = {m["metric_name"]: m["expression"] for m in ds["metrics"]}
    assert metrics == {"events": 'SUM("events")', "amount": 'SUM("amount")'}  # users: not a sum of buckets
    assert ds["main_dttm_col"] == "dt" and ds["database_uuid"] == db["uuid"]
    dash = yaml.safe_load(next(v for k, v in files.items() if k.startswith("dashboards/")))
    time_f, action_f = dash["metadata"]["native_filter_configuration"]
    assert time_f["filterType"] == "filter_time"
    assert time_f["defaultDataMask"]["extraFormData"] == {"time_range": 'DATEADD(DATETIME("now"), -86400, second) : now'}
    assert action_f["filterType"] == "filter_select"
    assert action_f["targets"] == [{"datasetUuid": ds["uuid"], "column": {"name": "action"}}]
    charts = [yaml.safe_load(v) for k, v in files.items() if k.startswith("charts/")]
    placed = [c["meta"]["uuid"] for c in dash["position"].values() if isinstance(c, dict) and c.get("type") == "CHART"]
    assert sorted(placed) == sorted(c["uuid"] for c in charts) and all(c["dataset_uuid"] == ds["uuid"] for c in charts)
    # a password in --uri is not written: Superset asks for it on import
    r2 = subprocess.run([EVENTMART, "superset", "export", "-o", str(tmp_path / "d.zip"), "--uri",
                         "postgresql+psycopg2://bi:topsecret@127.0.0.1:5432/db", "-p", str(d)], capture_output=True,
                        text=True, timeout=120)
    assert r2.returncode == 0 and b"topsecret" not in (tmp_path / "d.zip").read_bytes(), r2.stderr
    assert b"bi:XXXXXXXXXX@127.0.0.1:5432/db" in zipfile.ZipFile(tmp_path / "d.zip").read(
        next(n for n in zipfile.ZipFile(tmp_path / "d.zip").namelist() if "/databases/" in n))
    # a Superset that is not there, or no credentials: one line, exit 2
    env = {**os.environ, "SUPERSET_USER": "admin", "SUPERSET_PASSWORD": "x"}
    r = subprocess.run([EVENTMART, "superset", "push", f"http://127.0.0.1:{free_port()}", "-p", str(d)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "cannot reach" in r.stderr, r.stderr
    env.pop("SUPERSET_PASSWORD")
    r = subprocess.run([EVENTMART, "superset", "push", "http://127.0.0.1:9", "-p", str(d)],
                       capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 2 and "SUPERSET_PASSWORD" in r.stderr, r.stderr
    ratio = next(c for c in charts if c["slice_name"] == "amount_per_event")
    assert ratio["params"]["metrics"] == [{"expressionType": "SQL", "sqlExpression": 'SUM("amount") / SUM("events")',
                                           "label": "sum(amount) / sum(events)"}]


def superset_server(home: Path, port: int) -> subprocess.Popen:
    exe = SUPERSET_PY.parent / "superset"
    env = {**os.environ, "SUPERSET_CONFIG_PATH": str(home / "superset_config.py"),
           "SUPERSET_HOME": str(home)}
    proc = subprocess.Popen([str(exe), "run", "-h", "127.0.0.1", "-p", str(port), "--with-threads"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    import httpx

    until = time.monotonic() + 120
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None or time.monotonic() > until:
            proc.kill()
            raise AssertionError(f"superset run did not answer: {proc.stderr.read()[-2000:]}")
        time.sleep(0.5)


def test_push_imports_the_dashboard_and_superset_charts_equal_eventmart_charts(tmp_path, superset_home, pg_url):
    import httpx

    from eventmart import Project
    from eventmart.dashboards.query import DashboardQueries, State

    d = dashboard_project(tmp_path / "p", {"type": "postgres", "url": pg_url})
    build(d)
    bi_reader(pg_url)
    info = psycopg.conninfo.conninfo_to_dict(pg_url)
    uri = f"postgresql+psycopg2://bi_reader@{info.get('host')}:{info.get('port')}/{info['dbname']}"
    home = home_copy(superset_home, tmp_path / "superset-home")
    port = free_port()
    srv = superset_server(home, port)
    base = f"http://127.0.0.1:{port}"
    try:
        env = {**os.environ, "SUPERSET_USER": "admin", "SUPERSET_PASSWORD": "admin",
               "BI_PW": "bi-secret"}
        r = subprocess.run([EVENTMART, "superset", "push", base, "-p", str(d)], capture_output=True, text=True,
                           timeout=300, env={**env, "SUPERSET_PASSWORD": "wrong"})
        assert r.returncode == 2 and "login to" in r.stderr and "wrong" not in r.stderr, r.stderr
        for _ in range(2):  # a second push updates what the first created
            r = subprocess.run([EVENTMART, "superset", "push", base, "activity", "--uri", uri, "--password-env",
                                "BI_PW", "-p", str(d)], capture_output=True, text=True, timeout=300, env=env)
            assert r.returncode == 0, r.stdout + r.stderr
            assert "imported into" in r.stdout and "6 chart(s)" in r.stdout, r.stdout
        assert "bi-secret" not in r.stdout + r.stderr
        with httpx.Client(base_url=base, timeout=60, headers={"Referer": base + "/"}) as c:
            tok = c.post("/api/v1/security/login", json={"username": "admin", "password": "admin",
                                                         "provider": "db"}).json()["access_token"]
            h = {"Authorization": f"Bearer {tok}"}
            dashes = c.get("/api/v1/dashboard/", headers=h).json()["result"]
            assert [x["dashboard_title"] for x in dashes] == ["Activity"]  # once, though pushed twice
            charts = c.get(f"/api/v1/dashboard/{dashes[0]['id']}/charts", headers=h).json()["result"]
            by_name = {ch["slice_name"]: ch for ch in charts}
            assert set(by_name) == set(DASHBOARD["charts"])
            lo, hi = T0 + timedelta(hours=2), T0 + timedelta(hours=20)
            picked = ["view", "like"]

            def superset_rows(name: str) -> list[list]:
                fd = by_name[name]["form_data"]
                metrics = fd.get("metrics") or [fd["metric"]]
                cols = [fd["x_axis"]] if fd["viz_type"] == "echarts_timeseries_bar" else list(fd.get("groupby") or [])
                q = {"columns": cols, "metrics": metrics, "orderby": [], "row_limit": 10_000,
                     "filters": [{"col": "dt", "op": "TEMPORAL_RANGE",
                                  "val": f"{lo:%Y-%m-%dT%H:%M:%S} : {hi:%Y-%m-%dT%H:%M:%S}"},
                                 {"col": "action", "op": "IN", "val": picked}]}
                ds_id, _ = fd["datasource"].split("__")
                body = c.post("/api/v1/chart/data", headers=h, json={
                    "datasource": {"id": int(ds_id), "type": "table"}, "queries": [q], "result_format": "json",
                    "result_type": "full"}).json()
                data = body["result"][0]["data"]
                keys = [*cols, *(m if isinstance(m, str) else m["label"] for m in metrics)]
                return sorted([[row[k] for k in keys] for row in data], key=str)

            with Project.load(d) as p:
                qs = DashboardQueries("activity", p.config.dashboards["activity"], p.config, p.warehouse)
                st = State(lo, hi, {"action": picked})
                window = qs.window(st)
                for name in ("events", "users", "by_action", "users_by_action", "amount_per_event"):
                    ours = sorted([list(row) for row in qs.run(name, st, window)[1].rows], key=str)
                    theirs = superset_rows(name)
                    norm = lambda rows: [[round(float(v), 9) if isinstance(v, int | float) or  # noqa: E731
                                          type(v).__name__ == "Decimal" else v for v in r] for r in rows]
                    assert norm(theirs) == norm(ours), (name, theirs, ours)
            # and both equal the raw events
            evs = [e for e in events() if lo <= datetime.fromisoformat(e["ts"]) < hi and e["action"] in picked]
            assert superset_rows("events") == [[len(evs)]]
            assert superset_rows("users") == [[len({e["user"] for e in evs})]]
    finally:
        srv.terminate()
        srv.wait(30)


def test_the_raw_events_dataset_of_a_distinct_count_is_the_marts_sql(tmp_path, pg_url):
    """The dataset a distinct count is counted again from: the mart's bucket and dimension expressions in the
    engine's SQL, columns quoted (`user` is CURRENT_USER on PostgreSQL), in the warehouse's schema."""
    import yaml

    from eventmart import Project
    from eventmart.superset import build as build_bundle

    d = dashboard_project(tmp_path / "p", {"type": "postgres", "url": pg_url, "schema": "bi"})
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["marts"]["per_hour"]["dimensions"].append({"name": "first_users", "expr": "user in ('u1', 'u2')"})
    write_project(d, cfg)
    build(d)
    with Project.load(d) as p:
        b = build_bundle(p, "activity")
        ds = yaml.safe_load(b.files["datasets/eventmart_bi/per_hour__events.yaml"])
        assert ds["sql"].startswith("SELECT ") and ' AS "dt", ' in ds["sql"], ds["sql"]
        assert "\"user\" IN ('u1', 'u2') AS \"first_users\"" in ds["sql"] and 'FROM "bi"."ev"' in ds["sql"]
        # the SQL runs, and counts what the raw events say
        n = p.warehouse.fetch(f"SELECT count(DISTINCT \"user\") FROM ({ds['sql']}) s WHERE first_users").rows[0][0]
        assert n == 2 and {m["metric_name"]: m["expression"] for m in ds["metrics"]}["users"] == \
            'COUNT(DISTINCT "user")'
