"""Drives a real Apache Superset for tests/test_superset.py. Runs with the Superset venv's Python (its pins are not
ours), never imported by the suite:

    .venv-superset/bin/python tests/superset/driver.py init HOME        # metadata DB, admin, roles (~60 s, once)
    .venv-superset/bin/python tests/superset/driver.py ask HOME < spec  # JSON in, JSON out

``ask`` takes {"databases": [{"name", "uri", "extra", "sql": [...], "charts": [{"table", "groupby", "metric"}]}]}:
each database is registered through the REST API as a user would (connection string and extra as the docs give
them), each SQL runs in SQL Lab, each chart is a dataset on a mart and a chart-data query. It prints
{"name": {"sql": [rows, …], "charts": [rows, …]}} or {"name": {"error": "…"}}. No port: Flask's test client.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

CONFIG = """SECRET_KEY = "eventmart-tests-only-{salt}"
SQLALCHEMY_DATABASE_URI = "sqlite:///{db}"
TALISMAN_ENABLED = False
WTF_CSRF_ENABLED = True
PREVENT_UNSAFE_DB_CONNECTIONS = False
"""


def env_for(home: Path) -> dict[str, str]:
    return {**os.environ, "SUPERSET_CONFIG_PATH": str(home / "superset_config.py"), "SUPERSET_HOME": str(home)}


def init(home: Path) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "superset_config.py").write_text(CONFIG.format(salt=os.getpid(), db=home / "superset.db"))
    exe = str(Path(sys.executable).parent / "superset")
    for args in (["db", "upgrade"],
                 ["fab", "create-admin", "--username", "admin", "--firstname", "a", "--lastname", "b",
                  "--email", "admin@example.invalid", "--password", "admin"],
                 ["init"]):
        r = subprocess.run([exe, *args], env=env_for(home), capture_output=True, text=True)
        if r.returncode != 0:
            sys.exit(f"superset {' '.join(args)} failed: {r.stderr[-2000:]}")


def ask(home: Path, spec: dict) -> dict:
    os.environ.update(env_for(home))
    from superset.app import create_app

    app = create_app()
    c = app.test_client()
    tok = c.post("/api/v1/security/login", json={"username": "admin", "password": "admin", "provider": "db",
                                                   "refresh": True}).get_json()["access_token"]
    h = {"Authorization": f"Bearer {tok}", "Referer": "http://localhost/"}
    h["X-CSRFToken"] = c.get("/api/v1/security/csrf_token/", headers=h).get_json()["result"]
    out: dict = {}
    for i, db in enumerate(spec["databases"]):
        r = c.post("/api/v1/database/", headers=h, json={
            "database_name": f"{db['name']}-{i}", "sqlalchemy_uri": db["uri"], "expose_in_sqllab": True,
            "extra": json.dumps(db.get("extra", {}))})
        if r.status_code != 201:
            out[db["name"]] = {"error": f"database: {r.status_code} {r.get_data(as_text=True)[:500]}"}
            continue
        dbid = r.get_json()["id"]
        res: dict = {"sql": [], "charts": []}
        for sql in db.get("sql", []):
            r = c.post("/api/v1/sqllab/execute/", headers=h, json={"database_id": dbid, "sql": sql,
                                                                    "runAsync": False, "schema": db.get("schema")})
            body = r.get_json() or {}
            if r.status_code != 200:
                res["sql"].append({"error": f"{r.status_code} {json.dumps(body)[:500]}"})
            else:
                res["sql"].append([[row[c["column_name"]] for c in body["columns"]] for row in body["data"]])
        for ch in db.get("charts", []):
            r = c.post("/api/v1/dataset/", headers=h, json={"database": dbid, "schema": db.get("schema"),
                                                             "table_name": ch["table"]})
            if r.status_code != 201:
                res["charts"].append({"error": f"dataset: {r.status_code} {r.get_data(as_text=True)[:500]}"})
                continue
            ds = r.get_json()["id"]
            q = {"columns": ch["groupby"], "metrics": [{"expressionType": "SQL", "sqlExpression": ch["metric"],
                                                         "label": "value"}],
                 "orderby": [], "row_limit": 100_000, "time_range": "No filter", "filters": []}
            r = c.post("/api/v1/chart/data", headers=h, json={"datasource": {"id": ds, "type": "table"},
                                                               "queries": [q], "result_format": "json",
                                                               "result_type": "full"})
            body = r.get_json() or {}
            if r.status_code != 200:
                res["charts"].append({"error": f"chart data: {r.status_code} {json.dumps(body)[:500]}"})
            else:
                res["charts"].append([[row[k] for k in [*ch["groupby"], "value"]] for row in body["result"][0]["data"]])
        out[db["name"]] = res
    return out


def main() -> None:
    cmd, home = sys.argv[1], Path(sys.argv[2])
    if cmd == "init":
        init(home)
    else:
        result = ask(home, json.load(sys.stdin))
        print("EVENTMART-RESULT " + json.dumps(result, default=str))  # Superset prints to stdout too


if __name__ == "__main__":
    main()
