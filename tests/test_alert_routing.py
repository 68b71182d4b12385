"""Alerts per breakdown (top N, new values, grouped messages), NoData and Error states with their policies, routing
by labels and severity, mute timings and templates — each through the channels' stand-ins (Telegram, Slack, a
signed webhook, the file channel), under a hand-moved clock."""

from __future__ import annotations

import subprocess
import sys
from datetime import timedelta

import pytest
import yaml
from test_alerts import RULE, T0, TOKEN, Q, counts_project, run_until, steady

from eventmart import Project, ProjectError
from fakes import Recorder, SlackHandler, TelegramHandler, smtp_inbox, webhook_handler
from helpers import ms

SECRET = "whsec-0123456789abcdef"


def _events(p: Project, name: str | None = None) -> list[tuple]:
    return [(r[1], r[2], r[3], r[9]) for r in reversed(p.alerts_history(name, limit=500).rows)]


def test_top_n_per_breakdown_picks_up_new_values_and_groups_what_fires_together(tmp_path):
    counts = {"a": steady(40, level=1000, spikes={30: 4000}),
              "b": steady(40, level=800),
              "c": steady(40, level=50, spikes={20: 2000}),  # small: outside the top 2, its spike is not judged
              # a value that appears at bucket 14 with the most volume: picked up without a change of the rule
              "e": [0] * 14 + steady(26, level=5000, spikes={16: 15000})}
    p = counts_project(tmp_path, {k: v for k, v in counts.items()}, {"r": {**RULE, "by": ["os"], "top": 2}})
    checks = {b: run_until(p, "r", b) for b in range(12, 36)}
    keys = {r[1] for r in p.alerts_state().rows}
    assert "os=c" not in keys and {"os=a", "os=e"} <= keys
    fired = [(b, e.series) for b, r in checks.items() for e in r.events if e.event == "fired"]
    assert ("os=c" not in {s for _, s in fired})
    # a and e both jump at bucket 30 (e's bucket 16): one check, one message naming both
    assert (31, "os=a") in fired and (31, "os=e") in fired
    assert [d[1] for d in checks[31].deliveries] == ["sent", "sent"]  # both events, one delivery
    group = [g for g in (tmp_path / "out" / "alerts" / "r").glob("*-group-*") if "firing" in
             (g / "index.html").read_text()]
    assert len(group) == 1
    page = (group[0] / "index.html").read_text()
    assert "os=a" in page and "os=e" in page and "2 firing" in page
    assert len(list(group[0].glob("alert-*.png"))) == 2  # each series' chart, with its incident band
    p.close()


def test_no_data_is_an_alert_once_and_data_back_resolves_it(tmp_path):
    hook = Recorder(webhook_handler(SECRET))
    try:
        rule = {**RULE, "channels": ["hook", "files"], "no_data_after": "1 hour", "dashboard": "d"}
        dash = {"d": {"title": "d", "charts": {"n": {"type": "kpi", "mart": "m15", "measure": "n"}}}}
        p = counts_project(tmp_path, {"all": steady(40)}, {"r": rule},
                           channels={"hook": {"type": "webhook", "url": hook.url + "/in", "secret": SECRET},
                                     "files": {"type": "file", "path": "files"}}, extra={"dashboards": dash})
        run_until(p, "r", 39)
        p.run(start=T0, end=T0 + 40 * Q)
        assert hook.calls == []
        # the source stops at bucket 40; an hour later that is an alert (not silence), said once
        r = p.alerts_check(now=T0 + 40 * Q + timedelta(minutes=61))[0]
        assert [e.event for e in r.events] == ["nodata"]
        assert p.alerts_check(now=T0 + 40 * Q + timedelta(minutes=90))[0].events == []
        body = hook.calls[0]["body"]
        assert hook.calls[0]["signed"] and body["event"] == "nodata" and body["series"] == "(nodata)"
        assert body["dashboard_url"].startswith("http://127.0.0.1:8050/d/d/?from=") and "nodata" not in \
            body["dashboard_url"]  # the dashboard around the silence, not filtered by the pseudo-series
        # the notice carries the last day's chart, the silence since the newest event as its band
        page = next((tmp_path / "files").glob("alerts/r/*-nodata-*/index.html"), None)
        assert page is not None and "alert-r-all.png" in page.read_text()
        # events again: the NoData state resolves, once
        more = tmp_path / "data" / "f.csv"
        more.write_text("id,os,ts\n" + "".join(f"{900000 + i},all,{ms(T0 + 40 * Q + i * timedelta(seconds=9))}\n"
                                               for i in range(600)))  # 100 per bucket, as before
        p.ingest("ev")
        p.run(start=T0 + 40 * Q, end=T0 + 46 * Q)
        r = p.alerts_check(now=T0 + 46 * Q + timedelta(minutes=1))[0]
        assert [(e.event, e.series) for e in r.events if e.series == "(nodata)"] == [("resolved", "(nodata)")]
        assert [c["body"]["event"] for c in hook.calls] == ["nodata", "resolved"]
        p.close()
    finally:
        hook.close()


@pytest.mark.parametrize("policy", ["keep", "ok"])
def test_no_data_policies_keep_or_treat_as_ok(tmp_path, policy):
    counts = steady(40, spikes={37: 900, 38: 950, 39: 990})  # firing when the source stops
    rule = {**RULE, "detector": "threshold", "params": {"upper": 500}, "no_data": policy}
    p = counts_project(tmp_path, {"all": counts}, {"r": rule})
    for b in range(12, 40):
        run_until(p, "r", b)
    p.run(start=T0, end=T0 + 40 * Q)
    p.alerts_check(now=T0 + 40 * Q + timedelta(minutes=1))
    assert {r[1]: r[2] for r in p.alerts_state().rows}["all"] == "FIRING"
    r = p.alerts_check(now=T0 + 40 * Q + timedelta(hours=3))[0]
    state = {row[1]: row[2] for row in p.alerts_state().rows}
    assert state["(nodata)"] == "NODATA"
    if policy == "keep":  # nothing said, the last state kept
        assert r.events == [] and state["all"] == "FIRING"
    else:  # the firing series resolved, saying why
        assert [(e.event, e.series) for e in r.events] == [("resolved", "all")]
        assert "no data" in r.events[0].detail and state["all"] == "OK"
    p.close()


def test_error_state_alerts_once_and_recovers(tmp_path):
    tg = Recorder(TelegramHandler)
    try:
        rule = {"sql": "SELECT bucket, v FROM metric_src WHERE bucket >= {{ start }} AND bucket < {{ end }}",
                "grain": "15 minutes", "detector": "threshold", "params": {"upper": 100}, "channels": ["tg"]}
        p = counts_project(tmp_path, {"all": steady(20)}, {"bad": rule},
                           channels={"tg": {"type": "telegram", "token": TOKEN, "chat_id": "5", "api_base": tg.url}})
        now = T0 + 20 * Q + timedelta(minutes=1)
        r = p.alerts_check(now=now)[0]
        assert r.error and "metric_src" in r.error and [e.event for e in r.events] == ["error"]
        assert p.alerts_check(now=now + Q)[0].events == []  # still failing: said once
        assert {row[1]: row[2] for row in p.alerts_state().rows}["(error)"] == "ERROR"
        texts = [c["fields"]["text"] for c in tg.calls]
        assert len(texts) == 1 and "cannot be evaluated" in texts[0] and "metric_src" in texts[0]
        # the scheduler's job reports the rule as failed (the run ledger shows it)
        p.close()
        r2 = subprocess.run([sys.executable, "-m", "eventmart", "alerts", "check", "--now", str(now + 2 * Q),
                             "-p", str(tmp_path)], capture_output=True, text=True)
        assert r2.returncode == 2 and "alerts.bad: cannot be evaluated" in r2.stderr
        p = Project.load(tmp_path)
        p.query("SELECT 1")  # the table appears: the rule is evaluated again, and says so once
        p.warehouse.execute("CREATE TABLE metric_src AS SELECT TIMESTAMP '2024-05-01 05:15' AS bucket, 5.0 AS v")
        r = p.alerts_check(now=now + 3 * Q)[0]
        assert r.error is None and [(e.event, e.series) for e in r.events] == [("resolved", "(error)")]
        assert "evaluated again" in tg.calls[-1]["fields"]["text"]
        p.close()
    finally:
        tg.close()


def _routed(tmp_path, tg: Recorder, slack: Recorder, hook: Recorder) -> Project:
    counts = steady(40, spikes={12: 900, 26: 950})
    pay = {**RULE, "labels": {"team": "payments"}, "severity": "critical", "channels": []}
    other = {**RULE, "measure": "sum(n) * 2", "severity": "warning", "channels": []}
    channels = {"tg": {"type": "telegram", "token": TOKEN, "chat_id": "5", "api_base": tg.url},
                "slack": {"type": "slack", "webhook": slack.url + "/services/T/B/x"},
                "hook": {"type": "webhook", "url": hook.url + "/in", "secret": SECRET},
                "files": {"type": "file", "path": "out"}}
    p = counts_project(tmp_path, {"all": counts}, {"pay": pay, "other": other}, channels=channels)
    cfg = yaml.safe_load((tmp_path / "eventmart.yml").read_text())
    cfg["alerting"] = {
        "routes": [{"match": {"team": "payments"}, "channels": ["hook"], "continue": True},
                   {"match": {"severity": ["critical"]}, "channels": ["tg"], "mute": ["nights"], "template": "short"},
                   {"channels": ["slack"]}],
        # T0 is 03:00 in Moscow: the night mute holds messages until 04:00 UTC (bucket 16)
        "mute_timings": {"nights": [{"times": ["22:00-07:00"], "timezone": "Europe/Moscow"}]},
        "templates": {"short": {"title": "{{ severity | upper }} {{ rule }} {{ event }}",
                                "body": "{{ value | num }} above {{ upper | num }} · team {{ labels.team }}"}}}
    (tmp_path / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    p.close()
    return Project.load(tmp_path)


def test_routes_by_label_and_severity_with_a_night_mute_and_a_template(tmp_path):
    tg, slack, hook = Recorder(TelegramHandler), Recorder(SlackHandler), Recorder(webhook_handler(SECRET))
    try:
        p = _routed(tmp_path, tg, slack, hook)
        for b in range(12, 30):
            p.run(start=T0, end=T0 + b * Q)
            p.alerts_check(now=T0 + b * Q + timedelta(minutes=1))
        # payments → the webhook (and on: continue) → critical → Telegram; `other` falls through to Slack only
        assert [c["body"]["rule"] for c in hook.calls if "rule" in c["body"]] == ["pay"] * 4  # 2 fired, 2 resolved
        assert all(c["signed"] for c in hook.calls)
        slack_text = [c["body"]["text"] for c in slack.calls]
        assert slack_text and all("other" in t for t in slack_text) and not any("pay" in t for t in slack_text)
        # the night: Telegram held the first incident, then one digest of it at 07:00 Moscow, then the day's
        # incident in the template's words (the sandbox keeps Python's insides out of it)
        tg_text = [c["fields"].get("text") or c["fields"].get("caption") or "" for c in tg.calls
                   if c["method"] == "sendMessage"]
        assert "held back" in tg_text[0] and "pay: fired all" in tg_text[0] and "pay: resolved all" in tg_text[0]
        assert tg_text[1].startswith("<b>CRITICAL pay fired</b>") and "950 above" in tg_text[1]
        assert "team payments" in tg_text[1] and tg_text[2].startswith("<b>CRITICAL pay resolved</b>")
        statuses = {(r[1], r[8], r[9]) for r in p.alerts_history(limit=500).rows}
        assert ("pay", "tg", "digested") in statuses and ("pay", "tg", "held") not in statuses
        assert any(r[1] == "pay" and r[8] == "tg" and r[10] == "muted by nights"
                   for r in p.alerts_history("pay", limit=500).rows)
        p.close()
    finally:
        for s in (tg, slack, hook):
            s.close()


def test_a_route_groups_rules_firing_in_one_check(tmp_path):
    """Three rules of one team fire in the same check: one message (a page, one e-mail) naming them all, each
    rule's chart inline."""
    from email import message_from_bytes, policy

    with smtp_inbox() as (port, got):
        counts = steady(30, spikes={20: 900})
        rules = {n: {**RULE, "channels": [], "labels": {"team": "core"}} for n in ("views", "plays", "likes")}
        p = counts_project(tmp_path, {"all": counts}, rules)
        cfg = yaml.safe_load((tmp_path / "eventmart.yml").read_text())
        cfg["channels"]["mail"] = {"type": "email", "host": "127.0.0.1", "port": port, "security": "none",
                                   "from": "alerts@example.invalid", "to": ["core@example.invalid"]}
        cfg["alerting"] = {"routes": [{"match": {"team": "core"}, "channels": ["files", "mail"],
                                       "group_by": ["team"]}]}
        (tmp_path / "eventmart.yml").write_text(yaml.safe_dump(cfg))
        p.close()
        p = Project.load(tmp_path)
        p.run(start=T0, end=T0 + 20 * Q)
        p.alerts_check(now=T0 + 20 * Q + timedelta(minutes=1))
        p.run(start=T0, end=T0 + 21 * Q)
        res = p.alerts_check(now=T0 + 21 * Q + timedelta(minutes=1))
        assert [e.event for r in res for e in r.events] == ["fired"] * 3
        written = list((tmp_path / "out" / "alerts" / "group").glob("*-group-3"))
        assert len(written) == 1 and all(n in (written[0] / "index.html").read_text() for n in rules)
        assert sorted(f.name for f in written[0].glob("*.png")) == [f"alert-{n}-all.png" for n in sorted(rules)]
        (env,) = got  # one e-mail for the three
        msg = message_from_bytes(env.original_content, policy=policy.default)
        assert msg["Subject"].startswith("🔴 3 firing: likes, plays, views")
        html = msg.get_body(preferencelist=("html",)).get_content()
        cids = [part["Content-ID"].strip("<>") for part in msg.walk() if part.get_content_type() == "image/png"]
        assert len(cids) == 3 and all(f"cid:{c}" in html for c in cids)
        p.close()


@pytest.mark.parametrize("alerting, where", [
    ({"routes": [{"channels": ["nowhere"]}]}, "alerting.routes.0.channels"),
    ({"routes": [{"channels": ["files"], "mute": ["nigths"]}], "mute_timings": {"nights": []}},
     "alerting.routes.0.mute"),
    ({"mute_timings": {"nights": [{"times": ["25:00-07:00"]}]}}, "alerting.mute_timings.nights.0.times"),
    ({"mute_timings": {"w": [{"weekdays": ["funday"]}]}}, "alerting.mute_timings.w.0.weekdays"),
    ({"templates": {"t": {"title": "{{ value"}}}, "alerting.templates.t.title"),
])
def test_bad_routing_is_refused_with_its_key(tmp_path, alerting, where):
    p = counts_project(tmp_path, {"all": steady(5)}, {"r": RULE})
    p.close()
    cfg = yaml.safe_load((tmp_path / "eventmart.yml").read_text())
    cfg["alerting"] = alerting
    (tmp_path / "eventmart.yml").write_text(yaml.safe_dump(cfg))
    with pytest.raises(ProjectError) as e:
        Project.load(tmp_path)
    assert where in str(e.value)
    r = subprocess.run([sys.executable, "-m", "eventmart", "check", "-p", str(tmp_path)], capture_output=True,
                       text=True)
    assert r.returncode == 2 and where in r.stderr


def test_top_needs_by(tmp_path):
    with pytest.raises(ProjectError, match="alerts.r.top"):
        counts_project(tmp_path, {"all": steady(5)}, {"r": {**RULE, "top": 3}})


def test_templates_run_sandboxed_and_a_failing_one_still_alerts():
    from types import SimpleNamespace

    from eventmart.alerts.messages import _templated
    from eventmart.config import Alerting

    alerting = Alerting(templates={"evil": {"title": "{{ ''.__class__.__mro__[1].__subclasses__() }}"},
                                   "fine": {"body": "{% for a in alerts %}{{ a.series }}={{ a.value | num }} {% endfor %}"}})
    project = SimpleNamespace(config=SimpleNamespace(alerting=alerting))
    head, lines = _templated(project, "evil", "🔴 r is anomalous", ["value 9"], {})
    assert head == "🔴 r is anomalous" and "template evil failed" in lines[-1] and "<class" not in " ".join(lines)
    head, lines = _templated(project, "fine", "h", [], {"alerts": [{"series": "os=iOS", "value": 1234567.0}]})
    assert lines == ["os=iOS=1,234,567"]


def test_alerts_test_replays_a_rule_with_routes_mutes_and_a_chart(tmp_path):
    """`eventmart alerts test` from the installed console script: the firings it lists are the live engine's."""
    import json
    import shutil

    tg, slack, hook = Recorder(TelegramHandler), Recorder(SlackHandler), Recorder(webhook_handler(SECRET))
    try:
        p = _routed(tmp_path, tg, slack, hook)
        p.run(start=T0, end=T0 + 30 * Q)
        p.close()
        exe = shutil.which("eventmart") or str(__import__("pathlib").Path(sys.executable).with_name("eventmart"))
        r = subprocess.run([exe, "alerts", "test", "pay", "--start", str(T0 + 12 * Q), "--format", "json",
                            "--png", str(tmp_path / "pay.png")], capture_output=True, text=True, cwd=tmp_path)
        assert r.returncode == 0, r.stderr
        got = json.loads(r.stdout)
        firings = [(f["at"], [(d["channel"], d["status"], d["message"]) for d in f["deliveries"]])
                   for f in got["firings"]]
        assert firings == [
            (str(T0 + 12 * Q), [("hook", "sent", "🔴 pay is anomalous"),
                                ("tg", "held: muted by nights", "CRITICAL pay fired")]),
            (str(T0 + 26 * Q), [("hook", "sent", "🔴 pay is anomalous"), ("tg", "sent", "CRITICAL pay fired")])]
        assert (tmp_path / "pay.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert tg.calls == [] and slack.calls == [] and hook.calls == []  # nothing sent
        # the same rule checked live, bucket by bucket, fires at the same buckets
        with Project.load(tmp_path) as q:
            live = []
            for b in range(13, 30):
                live += [e.bucket for r in q.alerts_check(["pay"], now=T0 + b * Q + timedelta(minutes=1))
                         for e in r.events if e.event == "fired"]
        assert [str(t) for t in live] == [f["at"] for f in got["firings"]]
        table = subprocess.run([exe, "alerts", "test", "pay", "--start", str(T0 + 12 * Q)], capture_output=True,
                               text=True, cwd=tmp_path)
        assert "2 alert(s) would have fired" in table.stdout and "muted by nights" in table.stdout
        assert (tmp_path / "pay-test.png").exists()
        # the backtest's --png draws the same chart
        bt = subprocess.run([exe, "alerts", "backtest", "pay", "--start", str(T0 + 12 * Q), "--end", str(T0 + 30 * Q),
                             "--png", str(tmp_path / "bt.png")], capture_output=True, text=True, cwd=tmp_path)
        assert bt.returncode == 0 and (tmp_path / "bt.png").read_bytes() == (tmp_path / "pay.png").read_bytes()
        late = subprocess.run([exe, "alerts", "test", "pay", "--start", "2030-01-01"], capture_output=True, text=True,
                              cwd=tmp_path)
        assert late.returncode == 2 and "is not before the end of the data" in late.stderr
    finally:
        for s in (tg, slack, hook):
            s.close()
