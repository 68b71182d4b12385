"""What a reliability and security probe found, each as a test: crafted dashboard URLs and Runs-page requests,
Host headers, half-configured auth, symlinks under /reports/, a server that fails or hangs behind the CLI,
passwords in malformed URLs, URL settings kept by backups, control characters in secrets, interrupted runs."""

from __future__ import annotations

import http.server
import os
import subprocess
import sys
import threading
import time
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from conftest import events_config, write_project
from eventmart import Project, UserError
from eventmart.dashboards.query import MAX_FILTER_VALUES, State
from eventmart.server.web import create_server
from helpers import T0, random_events, write_events_csv

EVENTMART = str(Path(sys.executable).parent / "eventmart")


def em(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([EVENTMART, *args], capture_output=True, text=True, timeout=120,
                       env={**os.environ, **(env or {})})
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def proj(tmp_path) -> Project:
    cfg = events_config()
    cfg["dashboards"] = {"d": {"title": "T", "filters": ["time", "topic"], "charts": {
        "k": {"type": "kpi", "mart": "by_topic", "measure": "sum(events)"},
        "t": {"type": "line", "mart": "by_topic", "measure": "events", "color": "topic"}}}}
    write_events_csv(tmp_path / "data" / "e.csv", random_events(300, seed=3, hours=48))
    write_project(tmp_path, cfg)
    p = Project.load(tmp_path)
    p.ingest("events")
    p.run(start=T0, end=T0 + timedelta(days=1))
    yield p
    p.close()


def test_runs_page_plans_within_the_data_and_runs_only_a_previewed_plan(proj):
    import flask

    from eventmart.server.runs_page import MAX_WINDOWS, RunsApp

    app = RunsApp(proj, flask.Flask("t"))
    t0 = time.perf_counter()
    text, token = app.preview(None, "2015-01-01", "9999-12-31")  # clamped to the data: one missing day
    assert time.perf_counter() - t0 < 5 and text.startswith("1 window(s) will run") and token
    assert app.run_backfill(None).startswith("preview the backfill first")
    assert app.run_backfill("forged").startswith("preview the backfill first")
    assert "started" in app.run_backfill(token)
    app.backfill_thread.join(30)
    assert proj.status()[0].gaps == []
    assert app.run_backfill(token).startswith("preview the backfill first")  # a token runs once
    proj.reset("by_topic")
    import eventmart.server.runs_page as runs

    runs.MAX_WINDOWS = 0  # the two days run as one batch now: a plan of one is over a limit of none
    try:
        with pytest.raises(ValueError, match=r"1 window\(s\): narrow the range"):
            app.plan(None, None, None)
    finally:
        runs.MAX_WINDOWS = MAX_WINDOWS


def test_dashboard_urls_with_far_or_reversed_dates_and_huge_filter_lists(proj):
    server = create_server(proj)
    app = server.config["eventmart_apps"]["d"]
    client = server.test_client()
    for q in ("?to=9999-12-31", "?from=0001-01-01&to=9999-12-31", "?from=2024-03-11&to=2024-03-10"):
        assert client.get("/d/d/" + q).status_code == 200
        assert client.get("/d/d/csv/k" + q).status_code == 200
    figs = app.figures(State(end=datetime(9999, 12, 31)))
    assert figs[0]["data"][0]["value"] == proj.query("select sum(events) from by_topic").rows[0][0]  # no overflow
    figs = app.figures(State(datetime(2024, 3, 11), datetime(2024, 3, 10)))
    assert "'from' 2024-03-11 00:00 is not before 'to'" in figs[0]["layout"]["annotations"][0]["text"]
    figs = app.figures(State(datetime(2030, 1, 1), datetime(2031, 1, 1)))
    assert "no data in this range" in figs[1]["layout"]["annotations"][0]["text"]
    many = "&".join(f"topic=t{i}" for i in range(200_000))
    st = State.from_query(many, ["topic"])
    assert len(st.filters["topic"]) == MAX_FILTER_VALUES


def test_host_header_allow_list_and_half_configured_auth(proj, monkeypatch):
    client = create_server(proj).test_client()
    assert client.get("/healthz").status_code == 200
    assert client.get("/healthz", headers={"Host": "127.0.0.1:8050"}).status_code == 200
    assert client.get("/healthz", headers={"Host": "attacker.example:8050"}).status_code == 400
    monkeypatch.setenv("EVENTMART_ALLOWED_HOSTS", "dash.example.com")
    assert create_server(proj).test_client().get("/healthz", headers={"Host": "dash.example.com"}).status_code == 200
    monkeypatch.setenv("EVENTMART_DASH_USER", "ana")
    with pytest.raises(UserError, match="EVENTMART_DASH_PASSWORD is not set"):
        create_server(proj)
    r = em("serve", "--port", "0", "-p", str(proj.dir), env={"EVENTMART_DASH_USER": "ana"})
    assert r.returncode == 2 and "go together" in r.stderr


def test_reports_folder_does_not_follow_symlinks_out(proj, tmp_path):
    reports = proj.dir / "reports"
    (reports / "daily").mkdir(parents=True)
    (reports / "daily" / "index.html").write_text("ok")
    secret = tmp_path / "outside.txt"
    secret.write_text("private")
    (reports / "leak.txt").symlink_to(secret)
    client = create_server(proj).test_client()
    assert client.get("/reports/daily/index.html").data == b"ok"
    assert client.get("/reports/leak.txt").status_code == 404
    assert client.get("/reports/../eventmart.yml").status_code == 404


class _Bad(http.server.BaseHTTPRequestHandler):
    mode = "html500"

    def do_POST(self):  # noqa: N802 - http.server's naming
        if self.mode == "hang":
            time.sleep(3)
        self.send_response(500)
        self.send_header("Content-Type", "text/html")
        self.end_headers()
        self.wfile.write(b"<html>Internal Server Error</html>")

    def log_message(self, *a):
        pass


@pytest.mark.parametrize("mode, needle", [("html500", "answered HTTP 500"), ("hang", "did not answer in time")])
def test_a_failing_or_hanging_server_is_one_line_for_the_cli(tmp_path, mode, needle, monkeypatch):
    from eventmart.server.api import RemoteProject

    _Bad.mode = mode
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Bad)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    monkeypatch.setenv("EVENTMART_CALL_TIMEOUT", "1")
    try:
        remote = RemoteProject(tmp_path, {"port": httpd.server_port, "token": "x"}, None)
        with pytest.raises(UserError, match=needle):
            remote.status()
    finally:
        httpd.shutdown()


@pytest.mark.parametrize("url", ["postgres:/u:SECRETPW@127.0.0.1/db", "postgresql://u:SECRET%PW@127.0.0.1:1/db",
                                 "postgresql://u:SECRETPW@127.0.0.1:1/db?sslmode=bogus"])
def test_a_malformed_postgres_url_never_prints_its_password(tmp_path, url):
    write_project(tmp_path, events_config({"type": "postgres", "url": "${BAD_URL}"}))
    for cmd in (["status"], ["query", "select 1"], ["backup"]):
        r = em(*cmd, "-p", str(tmp_path), env={"BAD_URL": url})
        assert r.returncode == 2, (cmd, r.stderr)
        assert "SECRET" not in r.stderr + r.stdout and len(r.stderr.strip().splitlines()) == 1


def test_backups_keep_the_urls_settings(tmp_path, pg_url):
    from eventmart.warehouse.pgdump import _pg_env

    env = _pg_env(pg_url + "?sslmode=disable&application_name=nightly&connect_timeout=7")
    assert (env["PGSSLMODE"], env["PGAPPNAME"], env["PGCONNECT_TIMEOUT"]) == ("disable", "nightly", "7")
    url = pg_url + "?sslmode=disable&application_name=eventmart-backup"
    write_events_csv(tmp_path / "data" / "e.csv", random_events(50, seed=1))
    write_project(tmp_path, events_config({"type": "postgres", "url": url}))
    with Project.load(tmp_path) as p:
        p.ingest("events")
        res = p.backup()
    assert res.tables["events"] == 50 and res.path.exists()


def test_a_secret_with_a_line_break_fails_the_channel_in_one_line(tmp_path):
    cfg = events_config(grain="1 day")
    cfg["channels"] = {"tg": {"type": "telegram", "token": "${TG_TOKEN:-unset}", "chat_id": "1",
                              "api_base": "http://127.0.0.1:9"}}
    cfg["reports"] = {"daily": {"title": "D", "mart": "by_topic", "metrics": {"n": {"value": "sum(events)"}},
                                "compare": [], "channels": ["tg"]}}
    write_events_csv(tmp_path / "data" / "e.csv", random_events(50, seed=1))
    write_project(tmp_path, cfg)
    with Project.load(tmp_path) as p:
        p.ingest("events")
        p.backfill()
    r = em("report", "daily", "-p", str(tmp_path), env={"TG_TOKEN": "123:abc\n"})
    assert r.returncode == 2
    assert "`token` contains a line break" in r.stdout + r.stderr and "123:abc" not in r.stdout + r.stderr


def test_status_shows_a_killed_run_as_interrupted(proj):
    from eventmart.ledger import RUNS

    wh = proj.warehouse
    wh.execute(f"UPDATE {RUNS} SET status = 'running', owner = 'nowhere-host:1' WHERE mart = 'by_topic'")
    wh.execute(f"UPDATE {RUNS} SET owner = {{{{ o }}}} WHERE mart = 'by_topic'",
               {"o": f"{__import__('socket').gethostname()}:999999"})
    last = proj.status()[0].last_run
    assert last[1] == "failed" and "interrupted" in last[5]


def test_a_time_value_the_reader_cannot_read_is_a_reject_not_lost(tmp_path):
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "e.csv").write_text("id,user_id,action,topic,amount,ts\n1,1,view,t,1,0xFFFFFFFFFFFF\n")
    write_project(tmp_path, events_config())
    r = em("ingest", "events", "-p", str(tmp_path))
    assert r.returncode == 0 and "0 loaded, 0 duplicate, 1 rejected" in r.stdout, r.stdout + r.stderr


@pytest.mark.parametrize("password", ["Hunter2 Secret%PW", "a/b@c:d", "p@ss wrd9", "pa:ss/wo@rd"])
def test_postgres_urls_with_odd_passwords_never_show_any_part(tmp_path, password):
    for url in (f"postgresql://u:{password}@127.0.0.1:1/db", f"host=127.0.0.1 port=1 user=u password={password}",
                f"postgresql://u:{password}@127.0.0.1:1/db?sslmode=bogus"):
        write_project(tmp_path, events_config({"type": "postgres", "url": "${BAD_URL}"}))
        r = em("status", "-p", str(tmp_path), env={"BAD_URL": url})
        assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, (url, r.stderr)
        words = [w for w in __import__("re").split(r"[\s:/@%]+", password) if len(w) >= 3]
        assert not any(w in r.stderr + r.stdout for w in words), (url, r.stderr)


def test_a_password_inside_other_words_does_not_garble_the_message():
    from eventmart.warehouse.pgconnect import safe_message

    url = "postgresql://u:p@127.0.0.1:1/db"
    msg = 'connection to server at "127.0.0.1", port 1 failed: is the server running and accepting TCP/IP connections?'
    assert safe_message(msg, url) == msg  # 'p' in 'accepting' or 'port' is not the password
    assert safe_message("FATAL: password authentication failed: got p", url) is None
    long = "postgresql://u:Hunter2%20Secret@127.0.0.1:1/db"
    assert safe_message("role rejected Secret token", long) is None  # a word of it is enough to withhold it
    assert safe_message(f"could not parse {long}", long) == "could not parse <postgres url>"


def test_probing_dash_assets_is_a_plain_404_and_logs_nothing(proj, caplog):
    client = create_server(proj).test_client()
    dash = next(iter(proj.config.dashboards))
    base = f"/d/{dash}/_dash-component-suites"
    for path in (f"{base}/dash/..%2f..%2fetc%2fpasswd", f"{base}/dash/../../../etc/passwd",
                 f"{base}/dash/deps/nope.js", f"{base}/no_such_lib/x.js"):
        with caplog.at_level("DEBUG"):
            r = client.get(path)
        assert r.status_code == 404 and b"passwd" not in r.data and b"registered" not in r.data, path
    assert "registered" not in caplog.text and "List of registered paths" not in caplog.text
    assert client.get(f"{base}/plotly/package_data/plotly.min.js").status_code == 200
