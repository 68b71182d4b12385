"""/metrics as Prometheus reads it (prometheus_client's own parser), each figure against what was done: rows
loaded and rejected by a load with bad lines, mart runs and the newest window, an alert's state, the scheduler's
job runs and their durations."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families
from werkzeug.serving import make_server

from eventmart import Project
from eventmart.server.scheduler import Scheduler
from eventmart.server.web import create_server
from helpers import explore_events, explore_project


def _samples(text: str) -> dict[tuple, float]:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(text) for s in fam.samples}


@pytest.mark.parametrize("engine", ["duckdb", "postgres", "clickhouse"], indirect=True)
def test_metrics_count_what_the_project_did(tmp_path, engine):
    df = explore_events(3000)
    d = tmp_path / "m"
    bad = ("x,2024-03-01 00:00:00,sport,ru,1,1", "5,not a time,sport,ru,1,1", "6,2024-03-01 00:00:00,sport,ru,1")
    explore_project(d, df, {
        "name": "m", "warehouse": engine,
        "marts": {"daily": {"from": "ev", "grain": "1 day", "dimensions": ["topic"], "measures": {"n": "count()"}}},
        "schedules": {"nightly": {"cron": "0 3 * * *", "marts": ["daily"], "window": "1 day", "lookback": 2}},
        # the log ends at 03:00 of its last day: that day holds 5 events, over the bound of 4
        "alerts": {"busy": {"mart": "daily", "measure": "sum(n)", "detector": "threshold",
                            "params": {"upper": 4}, "min_history": 0, "history": "3 days"}}}, bad)
    with Project.load(d) as p:
        p.ingest("ev")
        filled = p.backfill()
        end = df.ts.max().floor("D").to_pydatetime() + timedelta(days=1)
        p.alerts_check(now=end + timedelta(hours=1))
        server = create_server(p)
        nightly = Scheduler(p, say=lambda m: None, metrics=server.config["eventmart_metrics"]).run_job(
            "nightly", end + timedelta(hours=3))
        httpd = make_server("127.0.0.1", 0, server, threaded=True)
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        try:
            r = httpx.get(f"http://127.0.0.1:{httpd.server_port}/metrics")
        finally:
            httpd.shutdown()
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain"), r.text
    got = _samples(r.text)
    assert got[("eventmart_up", ())] == 1
    assert got[("eventmart_source_rows_loaded_total", (("source", "ev"),))] == len(df)
    assert got[("eventmart_source_rows_rejected_total", (("source", "ev"),))] == len(bad)
    assert got[("eventmart_source_last_event_seconds", (("source", "ev"),))] == df.ts.max().timestamp()
    # the backfill's windows and the nightly job's (the last ones again, for late events)
    assert nightly and all(r.status == "ok" for r in filled + nightly)
    assert got[("eventmart_mart_runs_total", (("mart", "daily"), ("status", "ok")))] == len(filled) + len(nightly)
    assert got[("eventmart_mart_run_seconds_sum", (("mart", "daily"),))] > 0
    assert got[("eventmart_mart_last_success_window_end_seconds", (("mart", "daily"),))] == \
        (end - datetime(1970, 1, 1)).total_seconds()
    assert got[("eventmart_alert_state", (("rule", "busy"), ("series", "all"), ("state", "FIRING")))] == 1
    assert got[("eventmart_job_runs_total", (("job", "nightly"), ("status", "ok")))] == len(nightly)
    assert got[("eventmart_job_seconds_count", (("job", "nightly"),))] == \
        got[("eventmart_job_runs_total", (("job", "nightly"), ("status", "ok")))]
