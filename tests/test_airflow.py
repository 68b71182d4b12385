"""Airflow export, checked with real Apache Airflow (installed by `make test` into .venv-airflow).

Airflow runs in its own virtual environment: its pins are not ours. The DAG files import into a
DagBag without errors, and `dag.test()` of the Zen mart DAG for one data interval fills that window
in a PostgreSQL warehouse — compared with the real dash_visits file.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc
import yaml

from eventmart import Project
from eventmart.examples import HERE, generate_zen, init_example
from eventmart.examples.zen import read_real

ROOT = Path(__file__).resolve().parent.parent
AIRFLOW_PY = ROOT / ".venv-airflow" / "bin" / "python"

AIRFLOW_SIDE = r"""
import json, sys
from datetime import datetime, timezone
try:
    from airflow.dag_processing.dagbag import DagBag  # Airflow 3
except ImportError:
    from airflow.models.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])  # examples are off: AIRFLOW__CORE__LOAD_EXAMPLES
out = {"errors": {k: str(v)[:300] for k, v in bag.import_errors.items()}, "dags": sorted(bag.dag_ids)}
dag = bag.get_dag(sys.argv[2])
out["catchup"], out["retries"] = dag.catchup, dag.default_args["retries"]
out["timetable"] = type(dag.timetable).__name__
import airflow
# the run for the interval [2019-09-24 03:15, 2019-09-25 03:15): Airflow 3 names a run by its interval's
# end, Airflow 2 by its start
day = 25 if int(airflow.__version__.split(".")[0]) >= 3 else 24
run = dag.test(logical_date=datetime(2019, 9, day, 3, 15, tzinfo=timezone.utc))
out["state"] = str(run.state)
out["interval"] = [str(run.data_interval_start), str(run.data_interval_end)]
print("RESULT " + json.dumps(out))
"""


def test_dags_import_and_a_dag_test_fills_one_window(tmp_path, pg_url):
    assert AIRFLOW_PY.exists(), "Airflow is not installed: `make test` creates .venv-airflow"
    proj = tmp_path / "zen"
    init_example("zen", proj)
    cfg = yaml.safe_load((HERE / "zen" / "eventmart.yml").read_text())
    cfg["warehouse"] = {"type": "postgres", "url": "${ZEN_PG_URL}"}  # a secret from the environment
    (proj / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    env = {**os.environ, "ZEN_PG_URL": pg_url}
    os.environ["ZEN_PG_URL"] = pg_url
    try:
        generate_zen(proj)
        with Project.load(proj) as p:
            p.ingest("log_raw")
        dags = tmp_path / "dags"
        r = subprocess.run([sys.executable, "-m", "eventmart", "airflow", "dags", str(dags), "-p", str(proj)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert sorted(f.name for f in dags.iterdir()) == ["eventmart_zen_nightly.py", "eventmart_zen_weekly_backup.py"]
        home = tmp_path / "airflow-home"
        home.mkdir()
        af_env = {**env, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                  "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "NO_PROXY": "*"}
        m = subprocess.run([str(AIRFLOW_PY.parent / "airflow"), "db", "migrate"], env=af_env, capture_output=True,
                           text=True, timeout=300)
        assert m.returncode == 0, m.stderr[-2000:]
        r = subprocess.run([str(AIRFLOW_PY), "-c", AIRFLOW_SIDE, str(dags), "eventmart_zen_nightly"], env=af_env,
                           capture_output=True, text=True, timeout=600)
        line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
        assert line, (r.stdout[-3000:], r.stderr[-3000:])
        out = json.loads(line[len("RESULT "):])
        assert out["errors"] == {}
        assert out["dags"] == ["eventmart_zen_nightly", "eventmart_zen_weekly_backup"]
        assert out["timetable"] == "CronDataIntervalTimetable"
        assert out["catchup"] is True and out["retries"] == 2
        assert out["state"].endswith("success"), out
        assert out["interval"] == ["2019-09-24 03:15:00+00:00", "2019-09-25 03:15:00+00:00"]
        with Project.load(proj) as p:
            runs = p.runs(limit=10).rows
            # the interval ending 2019-09-25 03:15 closed the day 2019-09-24: that window, once per mart
            assert sorted((r[1], str(r[2]), str(r[3]), r[4], r[8]) for r in runs) == [
                (m, "2019-09-24 00:00:00", "2019-09-25 00:00:00", "ok", "airflow:nightly")
                for m in ("dash_engagement", "dash_visits")]
            total = p.query("SELECT sum(visits) FROM dash_visits").rows[0][0]
            assert total == pc.sum(read_real()["visits"]).as_py() == 310_207
    finally:
        os.environ.pop("ZEN_PG_URL", None)


AIRFLOW_EACH = r"""
import json, sys
from datetime import datetime, timezone
try:
    from airflow.dag_processing.dagbag import DagBag  # Airflow 3
except ImportError:
    from airflow.models.dagbag import DagBag
import airflow

bag = DagBag(dag_folder=sys.argv[1])
out = {"errors": {k: str(v)[:300] for k, v in bag.import_errors.items()}, "states": {}}
v3 = int(airflow.__version__.split(".")[0]) >= 3
for dag_id in sorted(bag.dag_ids, key=lambda d: (not d.endswith("_marts"), d)):  # marts first
    dag = bag.get_dag(dag_id)
    # the interval that ends on 2024-05-03 at the job's fire time (Airflow 2 names a run by its start)
    end = datetime(2024, 5, 3, 11, 0, tzinfo=timezone.utc)
    when = end if v3 else dag.timetable.infer_manual_data_interval(run_after=end).start
    run = dag.test(logical_date=when)
    out["states"][dag_id] = str(run.state)
print("RESULT " + json.dumps(out))
"""


def test_every_job_kind_runs_under_airflow_as_under_serve(tmp_path):
    """marts, report, alerts, backup, ingest and vault jobs each do their work when Airflow runs them (one job
    runner)."""
    from datetime import datetime

    from conftest import events_config, write_project
    from helpers import random_events, write_events_csv

    assert AIRFLOW_PY.exists(), "Airflow is not installed: `make test` creates .venv-airflow"
    proj = tmp_path / "p"
    cfg = events_config(grain="1 hour")
    cfg["marts"]["daily"] = {"from": "events", "grain": "1 day", "dimensions": ["dt"],
                             "measures": {"events": "count()"}}
    cfg["channels"] = {"files": {"type": "file", "path": "out"}}
    cfg["reports"] = {"digest": {"title": "Digest", "mart": "daily", "metrics": {"events": {"value": "sum(events)"}},
                                 "compare": [], "channels": ["files"]}}
    cfg["alerts"] = {"spike": {"mart": "by_topic", "measure": "sum(events)", "detector": "threshold",
                               "params": {"upper": 0}, "min_history": 0, "channels": ["files"]}}
    cfg["schedules"] = {"marts": {"cron": "0 11 * * *", "marts": ["by_topic", "daily"]},
                        "digest": {"cron": "0 11 * * *", "run": "report", "report": "digest"},
                        "check": {"cron": "0 11 * * *", "run": "alerts"},
                        "backup": {"cron": "0 11 * * *", "run": "backup", "dir": "bk"},
                        "load": {"cron": "0 11 * * *", "run": "ingest"},
                        "vault": {"cron": "0 11 * * *", "run": "vault"}}
    cfg["vault"] = {"hubs": {"h_users": {"source": "events", "key": ["user_id"]}}}
    for job in cfg["schedules"].values():
        job["start"] = "2024-05-01"
    write_project(proj, cfg)
    t0 = datetime(2024, 5, 1)
    write_events_csv(proj / "data" / "e.csv", random_events(500, seed=4, start=t0, hours=48))
    with Project.load(proj) as p:
        p.ingest("events")
    # a new file for the ingest job to find
    write_events_csv(proj / "data" / "f.csv", [dict(e, id=e["id"] + 10_000) for e in random_events(7, seed=5, start=t0)])
    dags = tmp_path / "dags"
    r = subprocess.run([sys.executable, "-m", "eventmart", "airflow", "dags", str(dags), "-p", str(proj)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    home = tmp_path / "airflow-home"
    home.mkdir()
    af_env = {**os.environ, "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
              "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "NO_PROXY": "*"}
    m = subprocess.run([str(AIRFLOW_PY.parent / "airflow"), "db", "migrate"], env=af_env, capture_output=True,
                       text=True, timeout=300)
    assert m.returncode == 0, m.stderr[-2000:]
    r = subprocess.run([str(AIRFLOW_PY), "-c", AIRFLOW_EACH, str(dags)], env=af_env, capture_output=True,
                       text=True, timeout=600)
    line = next((x for x in r.stdout.splitlines() if x.startswith("RESULT ")), None)
    assert line, (r.stdout[-3000:], r.stderr[-3000:])
    out = json.loads(line[len("RESULT "):])
    assert out["errors"] == {}
    assert all(s.endswith("success") for s in out["states"].values()), out
    with Project.load(proj) as p:
        runs = p.runs(limit=100).rows
        trig = {(r[1], r[8]) for r in runs}
        # marts: both days of data closed by the interval's end, each mart, by the Airflow trigger
        assert ("by_topic", "airflow:marts") in trig and ("daily", "airflow:marts") in trig
        assert p.query("SELECT sum(events) FROM daily").rows[0][0] == 500
        # the report: yesterday's digest (2024-05-02) written by its file channel, with a ledger row
        assert ("_report:digest:files", "airflow:digest") in trig
        assert (proj / "out" / "digest" / "2024-05-02" / "index.html").exists()
        # the alert check judged the hourly buckets and fired (upper bound 0)
        assert p.alerts_history("spike").rows, "the alert job did not evaluate the rule"
        # the backup: a verified copy in bk/
        assert ("_backup", "airflow:backup") in trig
        assert list((proj / "bk").glob("warehouse-*.duckdb"))
        # ingest: the new file; vault: the hub from whatever was loaded when it ran
        assert ("_ingest", "airflow:load") in trig and ("_vault", "airflow:vault") in trig
        assert p.query("SELECT count(*) FROM events").rows[0][0] == 507
        assert p.query("SELECT count(*) FROM h_users").rows[0][0] == \
            p.query("SELECT count(DISTINCT user_id) FROM events WHERE _ingest <= "
                    "(SELECT max(last_ingest) FROM _eventmart_vault)").rows[0][0] > 0
