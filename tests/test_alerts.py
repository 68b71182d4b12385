"""Alerts: seed parity of iqr, detectors on labelled synthetic series, the state machine under a hand-moved
clock (hysteresis, reminders, cap and digest, silence, late data, restart), Telegram delivery, backtest = live."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import write_project
from eventmart import Project
from eventmart.alerts import detect
from eventmart.alerts.engine import evaluate
from fakes import Recorder, TelegramHandler
from helpers import ms
from seedcode import check_anomaly

Q = timedelta(minutes=15)
T0 = datetime(2024, 5, 1)
TOKEN = "123456789:AAbbCCddEEffGGhhIIjjKKllMMnnOOppQQr"


@pytest.mark.parametrize("seed, a, n", [(1, 4, 5), (2, 3, 5), (3, 4, 4), (4, 2, 7)])
def test_iqr_equals_the_seed_point_by_point(seed, a, n):
    rng = np.random.default_rng(seed)
    idx = pd.date_range("2024-01-01", periods=240, freq="15min")
    v = pd.Series(rng.poisson(100, 240).astype(float), index=idx)
    v.iloc[60:64] = 320  # a spike
    v.iloc[120:130] = 100  # flat: IQR = 0, the seed never alerts
    v.iloc[200] = 5
    got = detect(v, "iqr", a=a, n=n, min_history=0, grain="15 minutes")
    alerts = 0
    for t in range(len(v)):  # the seed judges the newest row of the frame it is given
        is_alert, d = check_anomaly(pd.DataFrame({"x": v.iloc[: t + 1].to_numpy()}), "x", a=a, n=n)
        assert bool(is_alert) == bool(got.anomalous.iloc[t]), t
        for seed_col, col in (("up", "upper"), ("low", "lower")):
            x, y = d[seed_col].iloc[-1], got[col].iloc[t]
            assert (np.isnan(x) and np.isnan(y)) or x == pytest.approx(y, abs=1e-9), (t, seed_col)
        alerts += is_alert
    assert alerts >= 3


def daily_series(days: int, rng, noise: float = 0.04) -> pd.Series:
    idx = pd.date_range("2024-01-01", periods=days * 96, freq="15min")
    minute = idx.hour * 60 + idx.minute
    base = 1000 + 800 * np.sin((minute - 6 * 60) / 1440 * 2 * np.pi)
    return pd.Series(base * (1 + noise * rng.standard_normal(len(idx))), index=idx)


def flat_series(days: int, rng, noise: float = 0.04) -> pd.Series:
    idx = pd.date_range("2024-01-01", periods=days * 96, freq="15min")
    return pd.Series(1000 * (1 + noise * rng.standard_normal(len(idx))), index=idx)


@pytest.mark.parametrize("detector, params, for_, shape, min_precision", [
    # the daily cycle: only detectors that compare with the same time on earlier days stay quiet on it
    ("seasonal", {"a": 4, "k": 7, "period": "1 day"}, 2, daily_series, 0.99),
    ("auto", {}, 1, daily_series, 0.99),  # the default, untuned
    ("auto", {}, 1, flat_series, 0.99),
    # a day-ago comparison also flags the day after an incident (its reference is the incident): half
    ("pct_change", {"threshold": 0.35, "lag": "1 day"}, 1, daily_series, 0.45),
    ("zscore", {"a": 5, "n": 16}, 1, flat_series, 0.99),
    ("mad", {"a": 6, "n": 16}, 1, flat_series, 0.75),
])
def test_detectors_find_injected_incidents(detector, params, for_, shape, min_precision):
    from eventmart.alerts.detectors import incidents

    rng = np.random.default_rng(7)
    v = shape(21, rng)
    truth = []
    for day, hour, factor, length in [(9, 14, 0.35, 3), (12, 3, 2.5, 2), (15, 20, 0.3, 4), (18, 9, 2.2, 3)]:
        i = day * 96 + hour * 4
        v.iloc[i:i + length] *= factor
        truth.append((v.index[i], v.index[i + length - 1]))
    judged = detect(v, detector, **params).iloc[8 * 96:]  # after a week of history
    found = [(judged.index[a], judged.index[min(b, len(judged) - 1)])
             for a, b in incidents(judged.anomalous.to_numpy(), list(judged.index), for_)]
    hit = [any(s <= te and e >= ts for s, e in found) for ts, te in truth]
    true_pos = [f for f in found if any(f[0] <= te + timedelta(hours=1) and f[1] >= ts for ts, te in truth)]
    recall, precision = sum(hit) / len(truth), len(true_pos) / max(len(found), 1)
    assert recall == 1.0, (detector, found)
    assert precision >= min_precision, (detector, precision, found)


def test_threshold_and_direction():
    idx = pd.date_range("2024-01-01", periods=6, freq="15min")
    v = pd.Series([5, 15, 25, 15, 2, 30], index=idx, dtype=float)
    both = detect(v, "threshold", lower=4, upper=20)
    assert both.anomalous.tolist() == [False, False, True, False, True, True]
    assert detect(v, "threshold", direction="down", lower=4, upper=20).anomalous.tolist() == \
        [False, False, False, False, True, False]


# --- the live engine on a small project ---------------------------------------------------------------


def counts_project(tmp, counts: dict[str, list[int]], rules: dict, channels: dict | None = None,
                   warehouse: dict | None = None, extra: dict | None = None):
    """Events whose count per 15-minute bucket and os is given; a 15-minute mart; alert rules."""
    rng = np.random.default_rng(0)
    events, eid = [], 1
    for os_name, per_bucket in counts.items():
        for i, c in enumerate(per_bucket):
            for _ in range(c):
                t = T0 + i * Q + timedelta(milliseconds=int(rng.integers(0, 900_000)))
                events.append({"id": eid, "os": os_name, "ts": ms(t)})
                eid += 1
    path = tmp / "data" / "e.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        f.write("id,os,ts\n" + "".join(f"{e['id']},{e['os']},{e['ts']}\n" for e in events))
    cfg = {"name": "a", "warehouse": warehouse or {"type": "duckdb"},
           "sources": {"ev": {"format": "csv", "path": "data/*.csv",
                                           "columns": {"id": "int", "os": "string", "ts": "int"},
                                           "time": {"column": "ts", "unit": "ms"}, "key": ["id"]}},
           "marts": {"m15": {"from": "ev", "grain": "15 minutes", "dimensions": ["dt", "os"],
                             "measures": {"n": "count()"}}},
           "channels": channels or {"files": {"type": "file", "path": "out"}}, "alerts": rules, **(extra or {})}
    write_project(tmp, cfg)
    p = Project.load(tmp)
    p.ingest("ev")
    return p


def steady(n: int, level: int = 100, spikes: dict[int, int] | None = None) -> list[int]:
    rng = np.random.default_rng(n + level)
    out = [int(level + x) for x in rng.integers(-6, 7, n)]
    for i, v in (spikes or {}).items():
        out[i] = v
    return out


RULE = {"mart": "m15", "measure": "sum(n)", "detector": "iqr", "params": {"a": 3, "n": 5}, "min_history": 5,
        "channels": ["files"]}


def run_until(p: Project, name: str, end_bucket: int, now_offset=timedelta(minutes=1)):
    """Build the mart up to bucket ``end_bucket`` and evaluate as of just after it closed."""
    p.run(start=T0, end=T0 + end_bucket * Q)
    return evaluate(p, name, T0 + end_bucket * Q + now_offset)


def test_fires_once_resolves_once_with_hysteresis(tmp_path, engine):
    counts = steady(40, spikes={20: 400, 30: 420, 31: 430})  # 20: one bucket only; 30-31: two in a row
    p = counts_project(tmp_path, {"all": counts}, {"r": {**RULE, "for": 2}}, warehouse=engine)
    events = []
    for b in range(12, 40):
        events += [(e.event, e.bucket) for e in run_until(p, "r", b).events]
    # bucket 20 alone never fires (for: 2); 30-31 fire once at 31, resolve at 32
    assert events == [("fired", T0 + 31 * Q), ("resolved", T0 + 32 * Q)]
    hist = p.alerts_history("r").rows
    assert sorted((r[3], r[9]) for r in hist) == [("fired", "sent"), ("resolved", "sent")]
    fired = [r for r in hist if r[3] == "fired"][0]
    assert fired[5] == 430 and fired[7] < 430  # value above the upper bound
    page = (tmp_path / "out" / "alerts" / "r")
    assert len(list(page.glob("*-fired-all/alert-r-all.png"))) == 1
    p.close()


def test_incomplete_bucket_is_not_judged_and_late_data_is_said(tmp_path, engine):
    counts = steady(30, spikes={25: 500})
    p = counts_project(tmp_path, {"all": counts}, {"r": RULE}, warehouse=engine)
    p.run(start=T0, end=T0 + 25 * Q)
    # now is inside bucket 25: only up to 24 is complete — the spike in 25 is not judged yet
    r = evaluate(p, "r", T0 + 25 * Q + timedelta(minutes=7))
    assert r.events == [] and r.judged >= 1
    # an hour later the mart has not been run: data is late; say so once, do not alert on the "drop"
    r = evaluate(p, "r", T0 + 29 * Q + timedelta(minutes=1))
    assert [e.event for e in r.events] == ["late"]
    assert [e.event for e in evaluate(p, "r", T0 + 29 * Q + timedelta(minutes=5)).events] == []
    p.run(start=T0 + 25 * Q, end=T0 + 29 * Q)
    r = evaluate(p, "r", T0 + 29 * Q + timedelta(minutes=6))
    assert [(e.event, e.bucket) for e in r.events] == [("fired", T0 + 25 * Q), ("resolved", T0 + 26 * Q)]
    p.close()


def test_restart_never_resends_a_firing_alert(tmp_path, engine):
    counts = steady(30, spikes={20: 500, 21: 520})
    p = counts_project(tmp_path, {"all": counts}, {"r": RULE}, warehouse=engine)
    for b in range(12, 22):
        run_until(p, "r", b)  # judged up to bucket 20: firing
    assert p.alerts_state().rows[0][2] == "FIRING"
    p.close()
    q = Project.load(tmp_path)  # the server restarts and evaluates again at once
    assert evaluate(q, "r", T0 + 21 * Q + timedelta(minutes=2)).events == []
    r = run_until(q, "r", 22)  # bucket 21: still anomalous, no second "fired"
    assert r.events == [] and q.alerts_state().rows[0][2] == "FIRING"
    assert [e.event for e in run_until(q, "r", 23).events] == ["resolved"]
    assert [r[3] for r in q.alerts_history("r").rows].count("fired") == 1
    q.close()


def test_reminders_cap_digest_and_silence(tmp_path, engine):
    counts = {f"os{k}": steady(40, level=100 + k, spikes={20 + k: 600}) for k in range(3)}
    rule = {**RULE, "by": ["os"], "cap": 2, "remind": "1 hour"}
    p = counts_project(tmp_path, counts, {"r": rule}, warehouse=engine)
    for b in range(12, 25):
        run_until(p, "r", b)
    hist = p.alerts_history("r", limit=100).rows
    sent = [r for r in hist if r[9] == "sent"]
    held = [r for r in hist if r[9] in ("held", "digested")]
    # the hour's cap of messages (one may carry several events of one check), the rest held
    assert len({(r[0], r[10]) for r in sent}) == 2 and len(held) >= 1
    # an hour later there is room: one digest carries what was held
    r = evaluate(p, "r", T0 + 24 * Q + timedelta(hours=1, minutes=5))
    assert ("files", "sent") in [(c, s) for c, s, _ in r.deliveries]
    statuses = [r[9] for r in p.alerts_history("r", limit=100).rows]
    assert "held" not in statuses and "digested" in statuses
    p.close()


def test_a_silenced_rule_keeps_state_but_sends_nothing(tmp_path, engine):
    p = counts_project(tmp_path, {"all": steady(30, spikes={20: 500})}, {"r": RULE}, warehouse=engine)
    for b in range(12, 20):
        run_until(p, "r", b)
    p.alerts_silence("r", "2h")
    res = run_until(p, "r", 21)
    assert [e.event for e in res.events] == ["fired"] and [d[1] for d in res.deliveries] == ["silenced"]
    assert p.alerts_state().rows[0][2] == "FIRING"
    assert not (tmp_path / "out").exists()
    p.close()


def test_reminders_while_firing(tmp_path, engine):
    counts = steady(40, spikes={i: 600 for i in range(20, 30)})  # 150 minutes above a static bound
    rule = {"mart": "m15", "measure": "sum(n)", "detector": "threshold", "params": {"upper": 300},
            "remind": "1 hour", "channels": ["files"]}
    p = counts_project(tmp_path, {"all": counts}, {"r": rule}, warehouse=engine)
    events = []
    for b in range(12, 33):
        events += [(e.event, e.bucket) for e in run_until(p, "r", b).events]
    assert [e for e, _ in events] == ["fired", "reminder", "reminder", "resolved"]
    assert events[0][1] == T0 + 20 * Q and events[-1][1] == T0 + 30 * Q
    p.close()


def test_delivery_through_the_telegram_stand_in(tmp_path):
    tg = Recorder(TelegramHandler)
    try:
        counts = steady(30, spikes={20: 500})
        p = counts_project(tmp_path, {"all": counts}, {"r": {**RULE, "channels": ["tg"], "title": "Events <15m>"}},
                           channels={"tg": {"type": "telegram", "token": TOKEN, "chat_id": "5", "api_base": tg.url}})
        for b in range(12, 23):
            run_until(p, "r", b)
        methods = [c["method"] for c in tg.calls]
        assert methods == ["sendMessage", "sendPhoto", "sendMessage", "sendPhoto"]  # fired, resolved: each + chart
        text = tg.calls[0]["fields"]["text"]
        assert text.startswith("<b>🔴 Events &lt;15m&gt; is anomalous</b>") and "value 500" in text
        assert all("error" not in c for c in tg.calls)
        p.close()
    finally:
        tg.close()


def test_backtest_equals_live(tmp_path):
    rng = np.random.default_rng(5)
    counts = [int(100 + x) for x in rng.integers(-8, 9, 96)]
    for i in (30, 31, 55, 70, 71, 72):
        counts[i] = 300
    counts[80] = 20
    p = counts_project(tmp_path, {"all": counts}, {"r": {**RULE, "for": 2}})
    p.run(start=T0, end=T0 + 96 * Q)
    v, incs = p.alerts_backtest("r", T0 + 12 * Q, T0 + 96 * Q)
    # live, one evaluation per closed bucket
    live, open_since = [], None
    for b in range(13, 97):
        for e in evaluate(p, "r", T0 + b * Q + timedelta(seconds=30)).events:
            if e.event == "fired":
                open_since = e.since
            elif e.event == "resolved":
                live.append((open_since, e.bucket))
    assert [(i.start, i.end) for i in incs] == live
    assert len(live) == 2  # 30-31 and 70-72; the single buckets never fire
    p.close()
    # the CLI gives every judged bucket and incident
    r = subprocess.run([sys.executable, "-m", "eventmart", "alerts", "backtest", "r", "--start", str(T0 + 12 * Q),
                        "--end", str(T0 + 96 * Q), "--format", "json", "-p", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["buckets"]) == 84 and [(x["start"], x["end"]) for x in out["incidents"]] == \
        [(a.isoformat(sep=" "), b.isoformat(sep=" ")) for a, b in live]


@pytest.fixture(scope="module")
def feed_demo(tmp_path_factory):
    from eventmart.examples import generate_feed, init_example

    d = tmp_path_factory.mktemp("feed-alerts")
    init_example("feed", d)
    generate_feed(d, scale=0.25, days=14)
    with Project.load(d) as p:
        for s in p.config.sources:
            p.ingest(s)
        p.backfill(["feed_15min", "feed_15min_by_os"])
    return d


def test_feed_backtest_finds_the_injected_incidents_with_few_false_alarms(feed_demo):
    from eventmart.examples.feed import incidents as labelled

    truth = labelled(14)
    found = []
    with Project.load(feed_demo) as p:
        for rule in ("users", "active_posts", "views", "likes", "ctr", "views_by_os"):
            _, incs = p.alerts_backtest(rule, datetime(2024, 3, 8), datetime(2024, 3, 15))
            found += [(rule, i) for i in incs]
    def matches(t, i):
        return i.series == t["series"] and i.start < t["end"] + Q and (i.end or t["end"]) > t["start"]
    for t in truth:
        assert any(matches(t, i) for _, i in found), (t["what"], found)
    false = [(r, i) for r, i in found if not any(matches(t, i) or (t["series"] == "all" and i.start < t["end"] + Q
                                                                 and (i.end or t["end"]) > t["start"]) for t in truth)]
    assert len(false) <= 2, false


def test_feed_live_scheduler_raises_and_resolves_each_incident_once(feed_demo, tmp_path):
    from eventmart.examples.feed import incidents as labelled
    from eventmart.server.scheduler import Scheduler

    truth = labelled(14)
    with Project.load(feed_demo) as p:
        s = Scheduler(p, say=lambda _: None)
        s.jobs = {"alerts_15min": p.config.schedules["alerts_15min"]}
        # from hours before the first incident (03-12 20:00) to hours after the second (03-13 14:00) resolved
        t = datetime(2024, 3, 12, 12, 0)
        s.start_up(t)
        while t < datetime(2024, 3, 13, 20, 0):
            t += Q
            s.tick(t + timedelta(seconds=20))
        hist = p.alerts_history(limit=500).rows
    fired = [(r[1], r[2], r[4]) for r in hist if r[3] == "fired"]
    resolved = [(r[1], r[2], r[4]) for r in hist if r[3] == "resolved"]
    for inc in truth:
        rule = "views_by_os" if inc["series"] == "os=iOS" else "likes"
        f = [x for x in fired if x[0] == rule and x[1] == inc["series"] and inc["start"] <= x[2] < inc["end"] + Q]
        r = [x for x in resolved if x[0] == rule and x[1] == inc["series"] and inc["start"] < x[2] <= inc["end"] + 2 * Q]
        assert len(f) == 1 and len(r) == 1, (inc["what"], fired, resolved)


def test_alerts_page_shows_state_history_and_a_replay(tmp_path):
    from eventmart.server.web import create_server

    p = counts_project(tmp_path, {"all": steady(40, spikes={30: 600})}, {"r": RULE})
    for b in range(12, 33):
        run_until(p, "r", b)
    server = create_server(p)
    assert server.test_client().get("/alerts/").status_code == 200
    app = server.config["eventmart_alerts"]
    assert [r[3] for r in app.history_rows()] == ["resolved", "fired"]
    assert app.state_rows()[0][2] == "OK"
    import eventmart.alerts.page as page

    real = page._now
    page._now = lambda: T0 + 33 * Q  # the page replays "the last days" of data: pin now to the data's end
    try:
        fig, summary = app.replay("r", 1)
    finally:
        page._now = real
    end = p.runner.covered("m15")[-1][1]  # the replay stops where the mart does
    _, incs = p.alerts_backtest("r", end - timedelta(days=1), end)
    assert summary.startswith(f"{len(incs)} incident(s)") and "2024-05-01 07:30" in fig["data"][3]["x"]
    p.alerts_silence("r", "2h")
    assert [r[0] for r in app.silence_rows()] == ["r"]
    p.close()


def test_silences_are_listed_and_liftable_from_the_cli(tmp_path):
    p = counts_project(tmp_path, {"all": steady(20)}, {"r": RULE, "other": RULE})
    p.close()
    em = [sys.executable, "-m", "eventmart"]

    def run(*args):
        r = subprocess.run([*em, *args, "-p", str(tmp_path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        return r.stdout

    assert "no rule is silenced" in run("alerts", "silences")
    run("alerts", "silence", "r", "--for", "2h")
    out = run("alerts", "silences")
    assert "r" in out.split() and "other" not in out.split()
    assert run("alerts", "status")  # the silence shows there too (a column)
    assert "silence lifted" in run("alerts", "unsilence", "r")
    assert "no rule is silenced" in run("alerts", "silences")
    assert "was not silenced" in run("alerts", "unsilence", "r")
    with Project.load(tmp_path) as p2:
        p2.alerts_silence("r", "1h")
        assert p2.alerts_state().columns[-1] == "silenced_until"


def test_historic_data_is_not_late_and_values_print_as_numbers(tmp_path):
    """A demo whose events ended long ago: its first check judges up to the data's end and says nothing is late."""
    p = counts_project(tmp_path, {"all": [int(v) for v in steady(40)]}, {"r": {**RULE, "measure": "sum(n) / 3"}})
    p.run(start=T0, end=T0 + 40 * Q)
    p.close()
    r = subprocess.run([sys.executable, "-m", "eventmart", "alerts", "check", "--now", "2026-11-24 10:00", "-p",
                        str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "late:" not in r.stdout and "None" not in r.stdout
    # its source stopped long before "now": that is said once, as no data (not as a drop to zero)
    assert r.stdout.count("no data:") == 1 and "fired" not in r.stdout
    st = subprocess.run([sys.executable, "-m", "eventmart", "alerts", "status", "-p", str(tmp_path)],
                        capture_output=True, text=True).stdout
    assert "99999" not in st and "00000" not in st  # 100.33333333333333 prints as 100.333333
    with Project.load(tmp_path) as p:
        rows = {r[1]: r for r in p.alerts_state().rows}
        assert rows["(nodata)"][2] == "NODATA" and rows["(nodata)"][5] == T0 + 40 * Q  # the data ends there
        last = rows["all"][5]
        assert last == T0 + 39 * Q  # every complete bucket of the data was judged


def test_evaluate_and_tune_from_the_installed_cli(tmp_path):
    """Score a rule against labelled incidents (CSV and a warehouse table) and tune it under a budget, as a user
    runs it; the figures are checked against a count made here from the labels and the backtest."""
    eventmart = str(Path(sys.executable).parent / "eventmart")
    rng = np.random.default_rng(3)
    counts = [int(x) for x in rng.poisson(200, 14 * 96)]
    for i in (500, 501, 502):
        counts[i] = 600  # a burst
    for i in (900, 901):
        counts[i] = 15  # an outage
    p = counts_project(tmp_path, {"all": counts}, {"r": {"mart": "m15", "measure": "sum(n)", "channels": ["files"]}})
    p.run(start=T0, end=T0 + len(counts) * Q)
    p.close()
    labels = tmp_path / "labels.csv"
    # CRLF and a BOM, as a spreadsheet saves it; the third incident is invisible in the data
    labels.write_bytes("\ufeffstart,end,series\r\n".encode() + "".join(
        f"{T0 + a * Q:%Y-%m-%d %H:%M},{T0 + b * Q:%Y-%m-%d %H:%M},all\r\n" for a, b in ((500, 502), (900, 901), (1200, 1201))
    ).encode())
    args = ["--start", str(T0), "--end", str(T0 + len(counts) * Q), "-p", str(tmp_path)]
    r = subprocess.run([eventmart, "alerts", "evaluate", "r", "--labels", str(labels), "--format", "json",
                        "--out", str(tmp_path / "scores.csv"), *args], capture_output=True, text=True, timeout=180)
    assert r.returncode == 0, r.stderr
    (row,) = json.loads(r.stdout)
    with Project.load(tmp_path) as p:
        v, incs = p.alerts_backtest("r", T0, T0 + len(counts) * Q)
    starts = [i.start for i in incs]
    near = lambda a, b: [t for t in starts if T0 + (a - 2) * Q <= t <= T0 + (b + 2) * Q]  # noqa: E731
    found = sum(bool(near(a, b)) for a, b in ((500, 502), (900, 901), (1200, 1201)))
    true = len({t for a, b in ((500, 502), (900, 901), (1200, 1201)) for t in near(a, b)})
    assert (row["incidents"], row["found"], row["alerts"]) == (3, found, len(starts))
    assert found == 2 and row["recall"] == round(2 / 3, 3)
    assert row["precision"] == round(true / len(starts), 3)
    assert (tmp_path / "scores.csv").read_text().splitlines()[0].startswith("rule,incidents,found,alerts")
    # the same labels from a warehouse table
    with Project.load(tmp_path) as p:  # (the warehouse's own DuckDB reads no file: the rows come through Python)
        wh = p.warehouse
        wh.execute('CREATE TABLE incident_labels (start TIMESTAMP, "end" TIMESTAMP, series VARCHAR)')
        for a, b in ((500, 502), (900, 901), (1200, 1201)):
            wh.execute("INSERT INTO incident_labels VALUES ({{ s }}, {{ e }}, 'all')",
                       {"s": T0 + a * Q, "e": T0 + b * Q})
    r2 = subprocess.run([eventmart, "alerts", "evaluate", "r", "--labels", "table:incident_labels", "-f", "json",
                         *args], capture_output=True, text=True, timeout=180)
    assert r2.returncode == 0 and json.loads(r2.stdout) == [row], r2.stderr
    bad = subprocess.run([eventmart, "alerts", "evaluate", "r", "--labels", "table:nope", *args],
                         capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and "no table 'nope'" in bad.stderr and "Traceback" not in bad.stderr
    # tune: tries its grid on the first 60%, reports the rest; the choice respects the budget when one can
    t = subprocess.run([eventmart, "alerts", "tune", "r", "--budget", "1", *args], capture_output=True, text=True,
                       timeout=180)
    assert t.returncode == 0, t.stderr
    assert "chosen: params: {'a':" in t.stdout and "on the later part:" in t.stdout
    assert "within the budget" in t.stdout
