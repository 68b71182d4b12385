"""The feed example and its daily digest: figures vs pandas on the raw events, and every channel for real on loopback."""

from __future__ import annotations

import email
import json
import subprocess
import sys
from datetime import date, datetime, timedelta
from email import policy
from pathlib import Path

import pandas as pd
import pytest
import yaml

from eventmart import Project
from eventmart.examples import HERE, generate_feed
from eventmart.reports import send_report
from fakes import Recorder, SlackHandler, TelegramHandler, smtp_inbox, webhook_handler
from pgserver import free_port

TOKEN = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQr"  # the Bot API's shape; a test value
DAY = date(2024, 3, 14)


@pytest.fixture(scope="module")
def feed(tmp_path_factory):
    """A small feed project (14 days), marts built; raw events kept for the reference computation."""
    d = tmp_path_factory.mktemp("feed")
    cfg = yaml.safe_load((HERE / "feed" / "eventmart.yml").read_text())
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    generate_feed(d, scale=0.03, days=14)
    with Project.load(d) as p:
        for s in p.config.sources:
            p.ingest(s)
        p.backfill(["feed_slices", "daily_metrics", "feed_daily_by"])
    f = pd.read_parquet(d / "data" / "feed_actions.parquet")
    m = pd.read_parquet(d / "data" / "message_actions.parquet")
    f["day"], m["day"] = f.time.dt.floor("D").dt.date, m.time.dt.floor("D").dt.date
    return d, f, m


def reference(f: pd.DataFrame, m: pd.DataFrame, day: date) -> dict[str, float]:
    fd, md = f[f.day == day], m[m.day == day]
    views, likes = int((fd.action == "view").sum()), int((fd.action == "like").sum())
    return {"dau": len(set(fd.user_id) | set(md.user_id)), "dau_feed": fd.user_id.nunique(),
            "dau_messenger": md.user_id.nunique(), "views": views, "likes": likes, "ctr": likes / views,
            "messages": len(md), "senders": md.user_id.nunique(), "receivers": md.receiver_id.nunique()}


def with_channels(d: Path, channels: dict, tmp: Path) -> Path:
    """A copy of the feed project whose digest goes to the given channels (same warehouse file)."""
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["warehouse"]["path"] = str(d / "warehouse.duckdb")
    for s in cfg["sources"].values():
        s["path"] = str(d / s["path"])
    cfg["channels"] = channels
    cfg["reports"]["daily"]["channels"] = list(channels)
    cfg["alerts"] = {}  # they name channels this copy does not have
    tmp.mkdir(exist_ok=True)
    (tmp / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    return tmp


def test_digest_figures_match_pandas_and_dry_run_writes_files(feed, tmp_path):
    d, f, m = feed
    r = subprocess.run([sys.executable, "-m", "eventmart", "report", "daily", "--dry-run", "--date", str(DAY),
                        "--out", str(tmp_path), "-p", str(d)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    folder = tmp_path / "daily" / str(DAY)
    got = json.loads((folder / "digest.json").read_text())
    ref, prev, week = (reference(f, m, DAY - timedelta(days=k)) for k in (0, 1, 7))
    for k, v in ref.items():
        assert got["metrics"][k]["value"] == pytest.approx(v), k
        assert got["metrics"][k]["compare"]["previous_day"]["value"] == pytest.approx(prev[k]), k
        assert got["metrics"][k]["compare"]["same_day_last_week"]["value"] == pytest.approx(week[k]), k
        assert got["metrics"][k]["compare"]["previous_day"]["change"] == pytest.approx((v - prev[k]) / prev[k]), k
    assert 0.15 < ref["ctr"] < 0.25  # the simulator's CTR
    assert sorted(p.name for p in folder.iterdir()) == ["chart-1.png", "chart-2.png", "chart-3.png", "chart-4.png",
                                                         "digest.json", "index.html"]
    assert (folder / "chart-1.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    page = (folder / "index.html").read_text()
    assert "<img src='chart-1.png'" in page and "/d/feed/?from=2024-03-08T00%3A00&amp;to=2024-03-15T00%3A00" in page


def test_slices_keep_messenger_only_users(feed):
    d, f, m = feed
    with Project.load(d) as p:
        res = p.query(f"SELECT dimension, sum(views), sum(messages_sent), sum(messages_received), sum(users_received) "
                      f"FROM feed_slices WHERE event_date = '{DAY}' GROUP BY 1 ORDER BY 1")
    fd, md = f[f.day == DAY], m[m.day == DAY]
    recv = md.groupby("receiver_id").user_id.nunique().sum()
    for dim, views, sent, received, users_received in res.rows:
        # every user lands in exactly one value of each dimension: totals match the raw events
        assert (views, sent, received, users_received) == ((fd.action == "view").sum(), len(md), len(md), recv), dim
    # a messenger-only user: counted, with zero views
    only = set(md.user_id) - set(fd.user_id)
    assert only
    with Project.load(d) as p:
        n = p.query(f"SELECT count(*) FROM feed_slices WHERE event_date = '{DAY}'").rows[0][0]
    assert n >= 3 * 2


def test_telegram_gets_the_digest_and_the_charts(feed, tmp_path):
    d, f, m = feed
    tg = Recorder(TelegramHandler)
    try:
        proj = with_channels(d, {"tg": {"type": "telegram", "token": TOKEN, "chat_id": "-1001", "api_base": tg.url,
                                        "backoff": 0}}, tmp_path / "p")
        with Project.load(proj) as p:
            res = p.report("daily", DAY)
        assert [(x.channel, x.status) for x in res.deliveries] == [("tg", "ok")]
        assert [c["method"] for c in tg.calls] == ["sendMessage", "sendMediaGroup"]
        msg, group = tg.calls
        assert msg["token"] == TOKEN and msg["fields"]["parse_mode"] == "HTML" and "error" not in msg
        text = msg["fields"]["text"]
        ref = reference(f, m, DAY)
        assert f"<b>Views</b>: {ref['views']:,}" in text and f"<b>CTR</b>: {ref['ctr'] * 100:.2f}%" in text
        assert "&amp;" in text or "&" not in text.replace("&amp;", "")  # escaped for HTML parse mode
        media = json.loads(group["fields"]["media"])
        assert [x["media"] for x in media] == [f"attach://photo{k}" for k in range(4)]
        assert all(v == b"\x89PNG\r\n\x1a\n" for v in group["png"].values())
    finally:
        tg.close()


def test_telegram_429_waits_as_asked_then_sends(feed, tmp_path):
    d, _, _ = feed
    tg = Recorder(TelegramHandler)
    tg.script = [(429, {"ok": False, "error_code": 429, "description": "Too Many Requests: retry after 3",
                        "parameters": {"retry_after": 3}}, {})]
    slept: list[float] = []
    try:
        proj = with_channels(d, {"tg": {"type": "telegram", "token": TOKEN, "chat_id": "7", "api_base": tg.url}},
                             tmp_path / "p")
        with Project.load(proj) as p:
            res = send_report(p, "daily", DAY, sleep=slept.append)
        assert res.deliveries[0].status == "ok"
        assert slept == [3.0]  # retry_after, not the backoff
        assert [c.get("scripted", c["method"]) for c in tg.calls] == [429, "sendMessage", "sendMediaGroup"]
    finally:
        tg.close()


def test_a_failing_channel_is_recorded_and_the_others_still_deliver(feed, tmp_path):
    d, _, _ = feed
    tg, slack = Recorder(TelegramHandler), Recorder(SlackHandler)
    tg.script = [(502, {"ok": False, "error_code": 502, "description": "Bad Gateway"}, {})] * 3
    slept: list[float] = []
    with smtp_inbox() as (port, got):
        try:
            proj = with_channels(d, {
                "tg": {"type": "telegram", "token": TOKEN, "chat_id": "7", "api_base": tg.url, "retries": 2,
                       "backoff": 0.5},
                "slack": {"type": "slack", "webhook": f"{slack.url}/services/T0/B0/XYZ",
                          "image_base_url": "https://reports.example.invalid"},
                "mail": {"type": "email", "host": "127.0.0.1", "port": port, "security": "none",
                         "from": "digest@example.invalid", "to": ["team@example.invalid"]},
            }, tmp_path / "p")
            with Project.load(proj) as p:
                res = send_report(p, "daily", DAY, sleep=slept.append)
                failed = p.runs(failed=True).rows
            status = {x.channel: x.status for x in res.deliveries}
            assert status == {"tg": "failed", "slack": "ok", "mail": "ok"}
            assert slept == [0.5, 1.0]  # backoff doubles; 3 attempts in all
            reason = res.deliveries[0].detail
            assert "502" in reason and TOKEN not in reason and TOKEN.split(":")[1] not in reason
            assert [(r[1], r[4]) for r in failed] == [("_report:daily:tg", "failed")]
            assert TOKEN.split(":")[1] not in failed[0][9]
            # Slack: blocks with the figures and links to the charts
            body = slack.calls[0]["body"]
            assert body["blocks"][0]["type"] == "header"
            images = [b["image_url"] for b in body["blocks"] if b["type"] == "image"]
            assert images == [f"https://reports.example.invalid/daily/{DAY}/chart-{k}.png" for k in range(1, 5)]
            # e-mail: HTML with the charts inline, each referenced by its Content-ID
            (env,) = got
            assert env.rcpt_tos == ["team@example.invalid"]
            msg = email.message_from_bytes(env.original_content, policy=policy.default)
            assert msg["Subject"] == f"Feed & messenger — daily digest — {DAY}"
            html_part = msg.get_body(preferencelist=("html",))
            html = html_part.get_content()
            cids = [part["Content-ID"].strip("<>") for part in msg.walk() if part.get_content_type() == "image/png"]
            assert len(cids) == 4 and all(f"cid:{c}" in html for c in cids)
            assert msg.get_body(preferencelist=("plain",)).get_content().startswith("Feed & messenger — daily digest")
        finally:
            tg.close()
            slack.close()


def test_webhook_is_signed(feed, tmp_path):
    d, f, m = feed
    hook = Recorder(webhook_handler("s3cr3t"))
    try:
        proj = with_channels(d, {"hook": {"type": "webhook", "url": f"{hook.url}/in", "secret": "s3cr3t"}},
                             tmp_path / "p")
        with Project.load(proj) as p:
            res = p.report("daily", DAY)
        assert res.deliveries[0].status == "ok"
        (call,) = hook.calls
        assert call["signed"] and call["body"]["metrics"]["views"]["value"] == reference(f, m, DAY)["views"]
    finally:
        hook.close()


def test_the_scheduler_sends_yesterdays_digest(feed, tmp_path):
    d, _, _ = feed
    proj = with_channels(d, {"files": {"type": "file", "path": str(tmp_path / "out")}}, tmp_path / "p")
    from eventmart.server.scheduler import Scheduler

    with Project.load(proj) as p:
        s = Scheduler(p, say=lambda _: None)
        s.jobs = {"digest": p.config.schedules["digest"]}
        s.start_up(datetime(2024, 3, 15, 10, 0))  # a digest is not owed for downtime
        assert not (tmp_path / "out").exists()
        res = s.tick(datetime(2024, 3, 15, 11, 0))
        assert [r.status for r in res] == ["ok"]
    assert (tmp_path / "out" / "daily" / str(DAY) / "index.html").exists()


def test_report_errors_are_one_line(feed, tmp_path):
    d, _, _ = feed
    r = subprocess.run([sys.executable, "-m", "eventmart", "report", "weekly", "-p", str(d)],
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.startswith("error: unknown report 'weekly'")
    r = subprocess.run([sys.executable, "-m", "eventmart", "report", "daily", "--date", "2020-01-01", "--dry-run",
                        "-p", str(d)], capture_output=True, text=True)
    assert r.returncode == 2 and "has no rows for 2020-01-01" in r.stderr


def test_the_feed_dashboard_draws_from_its_marts(feed):
    d, f, _ = feed
    from eventmart.dashboards.query import State
    from eventmart.server.web import create_server

    with Project.load(d) as p:
        app = create_server(p).config["eventmart_apps"]["feed"]
        figs = dict(zip(app.charts, app.figures(State()), strict=True))
        assert figs["views"]["data"][0]["value"] == (f.action == "view").sum()
        st = State(filters={"os": ["iOS"]})
        figs = dict(zip(app.charts, app.figures(st), strict=True))
        assert figs["views"]["data"][0]["value"] == ((f.action == "view") & (f.os == "iOS")).sum()
        assert {t["name"] for t in figs["dau_by_os"]["data"]} == {"iOS"}


def test_serve_publishes_the_report_files(feed, tmp_path):
    d, _, _ = feed
    from eventmart.server.web import create_server

    with Project.load(d) as p:
        p.report("daily", DAY)  # the project's own `files` channel: reports/daily/<day>/
        client = create_server(p).test_client()
        r = client.get(f"/reports/daily/{DAY}/chart-2.png")
        assert r.status_code == 200 and r.data[:4] == b"\x89PNG"
        assert client.get("/reports/../eventmart.yml").status_code == 404


@pytest.fixture(scope="module")
def tls_cert(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1 (openssl), trusted through the channel's ca_file."""
    d = tmp_path_factory.mktemp("tls")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(d / "key.pem"),
                    "-out", str(d / "cert.pem"), "-days", "1", "-subj", "/CN=127.0.0.1",
                    "-addext", "subjectAltName=IP:127.0.0.1"], check=True, capture_output=True)
    return d / "cert.pem", d / "key.pem"


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_email_over_tls_with_login(feed, tmp_path, tls_cert, security):
    import ssl

    from aiosmtpd.controller import Controller
    from aiosmtpd.smtp import AuthResult

    d, _, _ = feed
    cert, key = tls_cert
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    got: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.append((session.authenticated, envelope))
            return "250 OK"

    def auth(server, session, envelope, mechanism, data):
        return AuthResult(success=(data.login, data.password) == (b"digest", b"pa55-w0rd"))

    port = free_port()
    # aiosmtpd's auth_require_tls only knows STARTTLS; with implicit TLS the whole session is encrypted anyway
    kw = ({"tls_context": ctx, "require_starttls": True, "auth_require_tls": True} if security == "starttls"
          else {"ssl_context": ctx, "auth_require_tls": False})
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port, authenticator=auth, **kw)
    smtp.start()
    try:
        for password, want in (("pa55-w0rd", "ok"), ("wrong-pa55", "failed")):
            proj = with_channels(d, {"mail": {
                "type": "email", "host": "127.0.0.1", "port": port, "security": security, "user": "digest",
                "password": password, "from": "digest@example.invalid", "to": ["a@example.invalid"],
                "ca_file": str(cert), "backoff": 0, "timeout": 5}}, tmp_path / f"p-{want}")
            with Project.load(proj) as p:
                res = p.report("daily", DAY)
            assert res.deliveries[0].status == want, res.deliveries[0].detail
            if want == "failed":
                assert "refused the login" in res.deliveries[0].detail and password not in res.deliveries[0].detail
        assert len(got) == 1 and got[0][0] is True
    finally:
        smtp.stop()


def test_feed_marts_run_the_same_in_postgres(feed, tmp_path, pg_url):
    d, _, _ = feed
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["warehouse"] = {"type": "postgres", "url": pg_url}
    for s in cfg["sources"].values():
        s["path"] = str(d / s["path"])
    (tmp_path / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    marts = ["feed_slices", "daily_metrics", "feed_15min", "feed_daily_by"]
    queries = {
        "feed_slices": "SELECT event_date, dimension, dimension_value, views, likes, messages_received, messages_sent, "
                       "users_received, users_sent FROM feed_slices ORDER BY 1, 2, 3",
        "daily_metrics": "SELECT dt, dau, dau_feed, dau_messenger, dau_both, views, likes, round(ctr * 1e6), messages, "
                         "senders, receivers FROM daily_metrics ORDER BY 1",
        "feed_15min": "SELECT dt, users, active_posts, views, likes FROM feed_15min ORDER BY 1",
        "feed_daily_by": "SELECT dt, os, gender, age_group, users, views, likes FROM feed_daily_by ORDER BY 1, 2, 3, 4",
    }
    with Project.load(tmp_path) as pg, Project.load(d) as duck:
        for s in pg.config.sources:
            pg.ingest(s)
        pg.backfill(marts, start="2024-03-08", end="2024-03-11")
        duck.backfill(["feed_15min"])
        for m in marts:
            sql = queries[m].replace("ORDER BY", "WHERE {t} >= '2024-03-08' AND {t} < '2024-03-11' ORDER BY").format(
                t="event_date" if m == "feed_slices" else "dt")
            want = [tuple(float(v) if isinstance(v, (int, float)) else v for v in r) for r in duck.query(sql).rows]
            got = [tuple(float(v) if isinstance(v, (int, float)) or type(v).__name__ == "Decimal" else v for v in r)
                   for r in pg.query(sql).rows]
            assert got == want and len(got) > 0, m


def test_a_digest_compares_with_a_month_and_a_year_earlier(tmp_path):
    """The same day a calendar month earlier (5 April against 5 March), and a year earlier, where the data does
    not reach: no value, no change, nothing invented."""
    from eventmart.reports.build import build
    from helpers import explore_events, explore_project

    df = explore_events(4000)
    d = tmp_path / "m"
    explore_project(d, df, {"name": "m",
        "marts": {"hourly": {"from": "ev", "grain": "1 hour", "dimensions": ["topic"],
                             "measures": {"n": "count()", "users": "count_distinct(user_id)"}}},
        "channels": {"files": {"type": "file", "path": "reports"}},
        "reports": {"daily": {"title": "x", "mart": "hourly", "channels": ["files"],
                              "compare": ["previous_day", "same_day_last_month", "same_day_last_year"],
                              "metrics": {"events": {"value": "n"}, "users": {"value": "users"}}}}})
    with Project.load(d) as p:
        p.ingest("ev")
        p.backfill()
        digest = build(p, "daily", date(2024, 4, 5))

    def day(t: date) -> pd.DataFrame:
        return df[df.ts.dt.date == t]

    got = {m.name: m for m in digest.metrics}
    for name, f in (("events", len), ("users", lambda x: x.user_id.nunique())):
        assert got[name].value == f(day(date(2024, 4, 5)))
        assert got[name].compare["previous_day"] == f(day(date(2024, 4, 4)))
        assert got[name].compare["same_day_last_month"] == f(day(date(2024, 3, 5)))
        assert got[name].compare["same_day_last_year"] is None and got[name].change("same_day_last_year") is None
