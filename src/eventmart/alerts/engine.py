"""Alert rules at work: series from the warehouse, judged bucket by bucket, with state and noise control.

A rule × series moves OK → FIRING → OK. It fires after ``for`` anomalous buckets in a row (one message:
value, expected range, deviation, a 24-hour chart with the bounds and the anomalous points, a dashboard
link), may remind every ``remind``, and sends one recovery message. Only complete buckets are judged:
the one still filling never, nor one the mart has not been run for yet (then a single "data is late"
notice instead of a false drop). State lives in the warehouse, so a restart never re-sends a firing
alert. Per channel at most ``cap`` messages an hour go out; the rest are held and sent as one digest
once the hour allows. Silenced rules keep their state and history but send nothing.

The backtest runs the same detectors and the same state machine over history (``incidents``).
"""

from __future__ import annotations

import io
import time
import urllib.parse
from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from ..config import AlertRule
from ..errors import UserError
from ..ledger import RunResult
from ..measures import MeasureLayer, Query
from ..reports.build import Chart
from ..reports.channels import ChannelError, Message, deliver
from ..timeutil import floor_time, fmt, parse_duration, parse_grain, utcnow
from .detectors import detect_matrix, incidents, lag_buckets

if TYPE_CHECKING:
    from ..project import Project

STATE, EVENTS, SILENCES = "_eventmart_alert_state", "_eventmart_alert_events", "_eventmart_silences"
ALL = "all"


def ensure_tables(wh) -> None:
    wh.lock("alerts")
    t = wh.type_name
    wh.create_table(STATE, [("rule", t("string")), ("series", t("string")), ("state", t("string")),
                            ("since", t("timestamp")), ("consecutive", t("int")), ("last_bucket", t("timestamp")),
                            ("last_notified", t("timestamp")), ("value", t("float")), ("lower", t("float")),
                            ("upper", t("float"))])
    wh.create_table(EVENTS, [("sent_at", t("timestamp")), ("rule", t("string")), ("series", t("string")),
                             ("event", t("string")), ("bucket", t("timestamp")), ("value", t("float")),
                             ("lower", t("float")), ("upper", t("float")), ("channel", t("string")),
                             ("status", t("string")), ("detail", t("string"))])
    wh.create_table(SILENCES, [("rule", t("string")), ("silenced_until", t("timestamp")),
                               ("created_at", t("timestamp"))])


# --- series -------------------------------------------------------------------------------------------


@dataclass
class Series:
    grain: int
    times: list[datetime]  # the regular grid of buckets, oldest first
    keys: list[str]  # one per series: "os=iOS", or "all"
    values: np.ndarray  # (T, S)


def rule_grain(project: Project, rule: AlertRule) -> int:
    if rule.grain:
        return parse_grain(rule.grain)
    return project.config.marts[rule.mart].grain_seconds


def _data_version(project: Project) -> tuple:
    from ..ledger import RUNS

    wh = project.warehouse
    if wh.table_columns(RUNS) is None:
        return (0, None)
    return tuple(wh.fetch(f"SELECT count(*), max(started_at) FROM {wh.q(RUNS)}").rows[0])


def load_series(project: Project, name: str, rule: AlertRule, start: datetime, end: datetime) -> Series:
    """The rule's metric per bucket in [start, end) (cached per data version: rules share series)."""
    key = (rule.mart, rule.measure, rule.sql, tuple(rule.by), rule.grain, rule.fill, start, end,
           _data_version(project))
    cache = project.__dict__.setdefault("_series_cache", {})
    if key not in cache:
        if len(cache) >= 32:
            cache.pop(next(iter(cache)))
        cache[key] = _load_series(project, name, rule, start, end)
    return cache[key]


def _load_series(project: Project, name: str, rule: AlertRule, start: datetime, end: datetime) -> Series:
    wh = project.warehouse
    g = rule_grain(project, rule)
    params = {"start": start, "end": end}
    if rule.sql is not None:
        table = wh.fetch_arrow(rule.sql, params)
        by = table.column_names[1:-1]
    else:
        layer = MeasureLayer(project.config, wh)
        shape = layer.shape(rule.mart)
        for d in rule.by:
            if d not in shape.dimensions:
                raise UserError(f"alerts.{name}.by: '{d}' is not a dimension of mart {rule.mart} "
                                f"({', '.join(shape.dimensions) or 'none'})")
        metric = layer.metric(rule.mart, rule.measure, f"alerts.{name}.measure")
        by = list(rule.by)
        if wh.table_columns(rule.mart) is None:
            table = None
        else:
            sql, q_params, *_ = layer.sql(Query(rule.mart, {"v": metric}, start, end, grain=g, group=by))
            dims = "".join(f", {wh.q(d)}" for d in by)
            # a double: sums of counts come back as 128-bit integers otherwise, slow to convert
            table = wh.fetch_arrow(f"SELECT bucket AS b{dims}, CAST(v AS DOUBLE PRECISION) AS v FROM ({sql}) a",
                                   q_params)
    n = int((end - start).total_seconds() // g)
    times = [start + timedelta(seconds=g * i) for i in range(n)]
    if table is None or table.num_rows == 0:
        keys = [] if by else [ALL]
        return Series(g, times, keys, np.full((n, len(keys)), 0.0 if rule.fill == "zero" else np.nan))
    import pyarrow as pa
    import pyarrow.compute as pc

    b = table.column(0).cast(pa.timestamp("us")).to_numpy()
    pos = ((b - np.datetime64(start, "us")) // np.timedelta64(g, "s")).astype(np.int64)
    if by:  # one key per combination of the by columns, sorted
        parts = [pc.binary_join_element_wise(f"{d}=", pc.cast(table.column(i + 1), pa.string()), "")
                 for i, d in enumerate(by)]
        label = parts[0] if len(parts) == 1 else pc.binary_join_element_wise(*parts, ", ")
        label = pc.fill_null(label, "null")
        keys = sorted(pc.unique(label).to_pylist())
        codes = pc.index_in(label, value_set=pa.array(keys)).to_numpy(zero_copy_only=False)
    else:
        codes, keys = np.zeros(table.num_rows, dtype=np.int64), [ALL]
    values = np.full((n, len(keys)), 0.0 if rule.fill == "zero" else np.nan)
    v = table.column(table.num_columns - 1).cast(pa.float64()).to_numpy(zero_copy_only=False)
    ok = (pos >= 0) & (pos < n)
    codes = np.asarray(codes)
    values[pos[ok], codes[ok]] = v[ok]
    if rule.fill == "zero":  # before a series' first row there is no data, not zero events
        first = np.full(len(keys), n)
        np.minimum.at(first, codes[ok], pos[ok])
        values[np.arange(n)[:, None] < first[None, :]] = np.nan
    return Series(g, times, keys, values)


def _key(by: list[str], values: tuple) -> str:
    return ", ".join(f"{d}={v}" for d, v in zip(by, values, strict=True)) if by else ALL


def history_seconds(rule: AlertRule, grain: int) -> int:
    """How far back a judgement looks: the rule's `history`, and at least what its detector needs."""
    need = parse_duration(rule.history)
    p = rule.params
    if rule.detector in ("iqr", "zscore", "mad"):
        need = max(need, (int(p.get("n", 20)) + rule.min_history + 2) * grain)
    # the detector's own parser for its period / lag, so "2 days" or "1 week" need what they say
    if rule.detector == "seasonal":
        period = lag_buckets(p.get("period", "1 day"), grain) * grain
        need = max(need, (int(p.get("k", 7)) + 1) * period)
    if rule.detector == "pct_change":
        need = max(need, (lag_buckets(p.get("lag", "1 bucket"), grain) + 1) * grain)
    return need


# --- judging ---------------------------------------------------------------------------------------


@dataclass
class Verdicts:
    series: Series
    lower: np.ndarray
    upper: np.ndarray
    anomalous: np.ndarray


def judge(project: Project, name: str, rule: AlertRule, start: datetime, end: datetime) -> Verdicts:
    """Every bucket in [start, end) judged as of its own time (history loaded from before ``start``)."""
    g = rule_grain(project, rule)
    lo = floor_time(start - timedelta(seconds=history_seconds(rule, g)), g)
    s = load_series(project, name, rule, lo, end)
    j = detect_matrix(s.values, rule.detector, g, rule.params, rule.direction, rule.min_history)
    first = int((start - lo).total_seconds() // g)
    cut = Series(g, s.times[first:], s.keys, s.values[first:])
    return Verdicts(cut, j.lower[first:], j.upper[first:], j.anomalous[first:])


@dataclass
class Incident:
    series: str
    start: datetime
    end: datetime | None  # None: still going at the end of the range

    def minutes(self, until: datetime) -> float:
        return ((self.end or until) - self.start).total_seconds() / 60


def backtest(project: Project, name: str, start: datetime, end: datetime) -> tuple[Verdicts, list[Incident]]:
    rule = project.config.alerts[name]
    v = judge(project, name, rule, start, end)
    out = []
    for j, key in enumerate(v.series.keys):
        for a, b in incidents(v.anomalous[:, j], v.series.times, rule.for_):
            out.append(Incident(key, v.series.times[a], v.series.times[b] if b < len(v.series.times) else None))
    return v, sorted(out, key=lambda i: (i.start, i.series))


# --- live evaluation -------------------------------------------------------------------------------


@dataclass
class Event:
    rule: str
    series: str
    event: str  # fired | reminder | resolved | late
    bucket: datetime | None
    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    since: datetime | None = None
    previous: float | None = None
    chart: Chart | None = None


@dataclass
class EvalResult:
    rule: str
    judged: int = 0
    events: list[Event] = field(default_factory=list)
    deliveries: list[tuple[str, str, str]] = field(default_factory=list)  # (channel, status, detail)


def freshness_end(project: Project, rule: AlertRule, complete: datetime) -> datetime:
    """The end of the data that may be judged: complete buckets the mart has been run for."""
    if rule.mart is None:
        return complete
    covered = project.runner.covered(rule.mart)
    if not covered:
        return min(complete, datetime.min)
    return min(complete, covered[-1][1])


def loaded_end(project: Project, rule: AlertRule, complete: datetime) -> datetime:
    """The end of the data loaded so far: the bucket holding the mart's source's newest event (capped at the
    last complete bucket). Past it there is nothing to judge, and nothing late: a source whose events stopped
    (a demo's historic data) is not a mart that fell behind."""
    if rule.mart is None:
        return complete
    src = project.config.marts[rule.mart].from_
    wh = project.warehouse
    if not src or wh.table_columns(src) is None:
        return datetime.min
    last = wh.fetch(f"SELECT max(_time) FROM {wh.q(src)}").rows[0][0]
    if last is None:
        return datetime.min
    g = rule_grain(project, rule)
    return min(complete, floor_time(last, g) + timedelta(seconds=g))


def evaluate(project: Project, name: str, now: datetime | None = None, sleep=time.sleep) -> EvalResult:
    """Judge the buckets completed since the last evaluation, move the state, notify."""
    wh = project.warehouse
    rule = project.config.alerts[name]
    now = now or utcnow()
    g = rule_grain(project, rule)
    complete = floor_time(now, g)
    fresh = freshness_end(project, rule, complete)
    res = EvalResult(name)
    with wh.transaction():
        ensure_tables(wh)
    state = {r[0]: list(r[1:]) for r in wh.fetch(
        f"SELECT series, state, since, consecutive, last_bucket, last_notified, value, lower, upper FROM {STATE} "
        "WHERE rule = {{ r }}", {"r": name}).rows}
    late_key = "(data)"
    # late: the mart has not been run for more than a bucket of events that are loaded already
    if fresh < loaded_end(project, rule, complete) - timedelta(seconds=g):
        if state.get(late_key, [None])[0] != "LATE":
            res.events.append(Event(name, late_key, "late", fresh if fresh > datetime.min else None))
            state[late_key] = ["LATE", now, 0, None, now, None, None, None]
    elif late_key in state and state[late_key][0] == "LATE":
        state[late_key][0] = "OK"
    if fresh <= datetime.min:
        _save(project, name, state, res, now, sleep)
        return res
    last_seen = [s[3] for k, s in state.items() if k != late_key and s[3] is not None]
    start = min(last_seen) + timedelta(seconds=g) if last_seen else fresh - timedelta(seconds=g * rule.for_)
    start = max(start, fresh - timedelta(days=7))  # a long outage is not replayed bucket by bucket
    if start >= fresh:
        _save(project, name, state, res, now, sleep)
        return res
    v = judge(project, name, rule, start, fresh)
    times = v.series.times
    for j, key in enumerate(v.series.keys):
        st = state.get(key) or ["OK", None, 0, None, None, None, None, None]
        for i, t in enumerate(times):
            if st[3] is not None and t <= st[3]:
                continue  # judged before
            res.judged += 1
            value, lo, hi = float(v.series.values[i, j]), _f(v.lower[i, j]), _f(v.upper[i, j])
            st[3], st[5], st[6], st[7] = t, _f(value), lo, hi
            if v.anomalous[i, j]:
                st[2] += 1
                if st[0] == "OK" and st[2] >= rule.for_:
                    st[0], st[1], st[4] = "FIRING", t - timedelta(seconds=g * (st[2] - 1)), now
                    prev = _f(v.series.values[i - 1, j]) if i else None
                    chart = _chart(project, name, rule, key, t) if rule.channels else None
                    res.events.append(Event(name, key, "fired", t, _f(value), lo, hi, st[1], prev, chart=chart))
            else:
                if st[0] == "FIRING":
                    res.events.append(Event(name, key, "resolved", t, _f(value), lo, hi, st[1]))
                    st[0], st[1], st[4] = "OK", None, now
                st[2] = 0
        if st[0] == "FIRING" and rule.remind and st[4] is not None and \
                now - st[4] >= timedelta(seconds=parse_duration(rule.remind)):
            res.events.append(Event(name, key, "reminder", st[3], st[5], st[6], st[7], st[1]))
            st[4] = now
        state[key] = st
    _save(project, name, state, res, now, sleep)
    return res


def _f(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def _save(project: Project, name: str, state: dict, res: EvalResult, now: datetime, sleep) -> None:
    """Send what the evaluation decided, then write state and history together."""
    wh = project.warehouse
    rule = project.config.alerts[name]
    rows = _notify(project, name, rule, res, now, sleep)
    with wh.transaction():
        wh.execute(f"DELETE FROM {STATE} WHERE rule = {{{{ r }}}}", {"r": name})
        _insert(wh, STATE, [[name, key, *st] for key, st in state.items()])
        _insert(wh, EVENTS, [[r["at"], r["r"], r["k"], r["e"], r["b"], r["v"], r["lo"], r["hi"], r["ch"], r["st"],
                              r["d"]] for r in rows])


def _insert(wh, table: str, rows: list[list], batch: int = 200) -> None:
    """Many rows in few statements, every value bound (one INSERT per row costs ~1 ms)."""
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        params = {f"p{j}_{k}": v for j, r in enumerate(part) for k, v in enumerate(r)}
        values = ", ".join("(" + ", ".join(f"{{{{ p{j}_{k} }}}}" for k in range(len(r))) + ")"
                           for j, r in enumerate(part))
        wh.execute(f"INSERT INTO {table} VALUES {values}", params)


def silenced(project: Project, name: str, now: datetime) -> bool:
    wh = project.warehouse
    return bool(wh.fetch(f"SELECT count(*) FROM {SILENCES} WHERE rule = {{{{ r }}}} AND silenced_until > {{{{ t }}}}",
                         {"r": name, "t": now}).rows[0][0])


def _notify(project: Project, name: str, rule: AlertRule, res: EvalResult, now: datetime, sleep) -> list[dict]:
    wh = project.warehouse
    rows: list[dict] = []
    quiet = silenced(project, name, now)

    def row(e: Event | None, channel: str, status: str, detail: str, event: str | None = None) -> dict:
        return {"at": now, "r": name, "k": e.series if e else "", "e": event or (e.event if e else ""),
                "b": e.bucket if e else None, "v": e.value if e else None, "lo": e.lower if e else None,
                "hi": e.upper if e else None, "ch": channel, "st": status, "d": detail[:500]}

    for ch_name in rule.channels or [None]:
        if ch_name is None:  # no channel: history only
            rows += [row(e, "", "recorded", "") for e in res.events]
            continue
        ch = project.config.channels[ch_name]
        hour_ago = now - timedelta(hours=1)
        sent = wh.fetch(f"SELECT count(*) FROM {EVENTS} WHERE channel = {{{{ c }}}} AND status = 'sent' "
                        "AND sent_at > {{ t }}", {"c": ch_name, "t": hour_ago}).rows[0][0]
        for e in res.events:
            if quiet:
                rows.append(row(e, ch_name, "silenced", "rule silenced"))
            elif sent >= rule.cap:
                rows.append(row(e, ch_name, "held", f"over {rule.cap} messages an hour on {ch_name}"))
            else:
                rows.append(_send(project, ch, ch_name, message(project, name, rule, e), row(e, ch_name, "", ""), sleep))
                sent += rows[-1]["st"] == "sent"
        # a digest of what the cap held back, once the hour has room again
        held = wh.fetch(f"SELECT series, event, bucket FROM {EVENTS} WHERE rule = {{{{ r }}}} AND channel = {{{{ c }}}} "
                        "AND status = 'held' ORDER BY sent_at", {"r": name, "c": ch_name}).rows
        held_now = [r for r in rows if r["ch"] == ch_name and r["st"] == "held"]
        if (held or held_now) and sent < rule.cap and not quiet and not held_now:
            msg = digest_message(name, rule, [(s, e, b) for s, e, b in held])
            r = _send(project, ch, ch_name, msg, row(None, ch_name, "", "", "digest"), sleep)
            rows.append(r)
            if r["st"] == "sent":
                wh.execute(f"UPDATE {EVENTS} SET status = 'digested' WHERE rule = {{{{ r }}}} AND "
                           "channel = {{ c }} AND status = 'held'", {"r": name, "c": ch_name})
    for r in rows:
        res.deliveries.append((r["ch"], r["st"], r["d"]))
    return rows


def _send(project: Project, ch, ch_name: str, msg: Message, r: dict, sleep) -> dict:
    try:
        r["d"] = deliver(ch, ch_name, msg, project.dir, sleep)[:500]
        r["st"] = "sent"
    except ChannelError as e:
        r["st"], r["d"] = "failed", str(e)[:500]
    return r


# --- messages ------------------------------------------------------------------------------------------


def _fmt(v: float | None) -> str:
    if v is None:
        return "—"
    return f"{v:,.4g}" if abs(v) < 10 else f"{v:,.0f}"


def deviation(e: Event) -> float | None:
    if e.value is None:
        return None
    if e.upper is not None and e.value > e.upper and e.upper:
        return (e.value - e.upper) / abs(e.upper)
    if e.lower is not None and e.value < e.lower and e.lower:
        return (e.value - e.lower) / abs(e.lower)
    return None


def dashboard_link(rule: AlertRule, series: str, t: datetime | None) -> str | None:
    if not rule.dashboard or t is None:
        return None
    q = [("from", (t - timedelta(hours=12)).strftime("%Y-%m-%dT%H:%M")),
         ("to", (t + timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M"))]
    if series not in (ALL, "(data)"):
        q += [tuple(part.split("=", 1)) for part in series.split(", ")]
    return f"{rule.base_url.rstrip('/')}/d/{rule.dashboard}/?{urllib.parse.urlencode(q)}"


def message(project: Project, name: str, rule: AlertRule, e: Event) -> Message:
    import html

    what = rule.title or name
    series = "" if e.series == ALL else f" ({e.series})"
    link = dashboard_link(rule, e.series, e.bucket)
    if e.event == "late":
        head = f"⏳ {what}: data is late"
        lines = [f"The mart has data up to {fmt(e.bucket) if e.bucket else 'nothing yet'} UTC; "
                 "buckets after that are not judged until it is run (no alert on a drop that is only late data)."]
    elif e.event == "resolved":
        head = f"✅ {what}{series} is back to normal"
        lines = [f"value {_fmt(e.value)} at {fmt(e.bucket)} UTC, expected {_fmt(e.lower)} … {_fmt(e.upper)}",
                 f"anomalous since {fmt(e.since)} UTC ({(e.bucket - e.since).total_seconds() / 60:.0f} min)"]
    else:
        head = ("🔔 still: " if e.event == "reminder" else "🔴 ") + f"{what}{series} is anomalous"
        dev = deviation(e)
        change = (e.value / e.previous - 1) if e.previous and e.value is not None else None
        lines = [f"value {_fmt(e.value)} at {fmt(e.bucket)} UTC, expected {_fmt(e.lower)} … {_fmt(e.upper)}"
                 + (f" ({dev * 100:+.1f}% beyond the bound)" if dev is not None else ""),
                 f"since {fmt(e.since)} UTC" + (f"; {change * 100:+.1f}% vs the bucket before" if change is not None
                                                 else "")]
    esc = html.escape
    tg = "\n".join([f"<b>{esc(head)}</b>"] + [esc(x) for x in lines]
                   + ([f'<a href="{esc(link, quote=True)}">Open the dashboard</a>'] if link else []))
    text = "\n".join([head, *lines] + ([f"Dashboard: {link}"] if link else []))
    images = [e.chart] if e.chart else []

    def page(src: dict[str, str]) -> str:
        imgs = "".join(f"<p><img src='{esc(src[c.filename], quote=True)}' style='max-width:100%'></p>" for c in images)
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(head)}</title></head><body "
                f"style='font-family:system-ui,sans-serif'><h3>{esc(head)}</h3>"
                + "".join(f"<p>{esc(x)}</p>" for x in lines) + imgs
                + (f"<p><a href='{esc(link, quote=True)}'>Open the dashboard</a></p>" if link else "") + "</body></html>")

    def slack(base: str | None) -> dict:
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*\n" + "\n".join(lines)}}]
        blocks += [{"type": "image", "image_url": f"{base}/{c.filename}", "alt_text": c.title} for c in images if base]
        if link:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{link}|Open the dashboard>"}})
        return {"text": text[:3000], "blocks": blocks}

    stamp = (e.bucket or utcnow()).strftime("%Y%m%dT%H%M")
    key = f"alerts/{name}/{stamp}-{e.event}-{_slug(e.series)}"
    payload = {"rule": name, "series": e.series, "event": e.event, "bucket": e.bucket, "value": e.value,
               "lower": e.lower, "upper": e.upper, "since": e.since, "dashboard_url": link}
    return Message(key, head, tg, text, page, slack, payload, images)


def digest_message(name: str, rule: AlertRule, held: list[tuple]) -> Message:
    import html

    head = f"🧾 {rule.title or name}: {len(held)} message(s) held back by the hourly cap"
    lines = [f"{ev} {series} at {fmt(b) if b else '—'} UTC" for series, ev, b in held]
    text = "\n".join([head, *lines])
    tg = "\n".join([f"<b>{html.escape(head)}</b>"] + [html.escape(x) for x in lines])
    return Message(f"alerts/{name}/digest-{utcnow():%Y%m%dT%H%M%S}", head, tg, text,
                   lambda src: f"<!doctype html><html><body><h3>{html.escape(head)}</h3>"
                   + "".join(f"<p>{html.escape(x)}</p>" for x in lines) + "</body></html>",
                   lambda base: {"text": text[:3000]}, {"rule": name, "held": [list(map(str, h)) for h in held]})


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s)[:60]


def _chart(project: Project, name: str, rule: AlertRule, key: str, t: datetime) -> Chart:
    """The last 24 h of the series with its bounds, anomalous buckets marked."""
    g = rule_grain(project, rule)
    end = t + timedelta(seconds=g)
    v = judge(project, name, rule, end - timedelta(hours=24), end)
    j = v.series.keys.index(key) if key in v.series.keys else 0
    return render(f"{rule.title or name}" + ("" if key == ALL else f" ({key})"), v.series.times,
                  v.series.values[:, j], v.lower[:, j], v.upper[:, j], v.anomalous[:, j], "alert.png")


def render(title: str, times, values, lower, upper, anomalous, filename: str, spans=()) -> Chart:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 3.4), dpi=100)
    ax.fill_between(times, lower, upper, color="#4C78A8", alpha=0.15, label="expected", step=None)
    ax.plot(times, values, color="#2a3f5f", linewidth=1.4, label="value")
    a = np.asarray(anomalous, dtype=bool)
    if a.any():
        ax.scatter(np.asarray(times, dtype=object)[a], np.asarray(values)[a], color="#E45756", zorder=3, s=18,
                   label="anomalous")
    for s, e in spans:
        ax.axvspan(s, e, color="#E45756", alpha=0.12)
    ax.set_title(title, loc="left", fontsize=11)
    ax.grid(alpha=0.3)
    ax.spines[["top", "right"]].set_visible(False)
    ax.legend(frameon=False, fontsize=8, loc="upper left")
    fig.autofmt_xdate()
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Chart(title, filename, buf.getvalue())


# --- jobs and commands ------------------------------------------------------------------------------


def evaluate_job(project: Project, job: str, now: datetime, attempt: int = 1) -> RunResult:
    spec = project.config.schedules[job]
    names = spec.alerts or list(project.config.alerts)
    events, failures, t0 = 0, [], time.perf_counter()
    for n in names:
        try:
            r = evaluate(project, n, now)
        except UserError as e:
            failures.append(f"{n}: {e}")
            continue
        events += len(r.events)
        failures += [f"{n} → {ch}: {d}" for ch, st, d in r.deliveries if st == "failed"]
    return RunResult("_alerts", now, now, "failed" if failures else "ok", events, time.perf_counter() - t0,
                     "; ".join(failures)[:500] or None, attempt)


def silence(project: Project, name: str, seconds: int, now: datetime | None = None) -> datetime:
    now = now or utcnow()
    until = now + timedelta(seconds=seconds)
    wh = project.warehouse
    with wh.transaction():
        ensure_tables(wh)
        wh.execute(f"INSERT INTO {SILENCES} VALUES ({{{{ r }}}}, {{{{ u }}}}, {{{{ t }}}})",
                   {"r": name, "u": until, "t": now})
    return until


def silences(project: Project, now: datetime | None = None) -> list[tuple]:
    """Silences in force: (rule, silenced until, set at), soonest end first."""
    now = now or utcnow()
    wh = project.warehouse
    with wh.transaction():
        ensure_tables(wh)
    return [tuple(r) for r in wh.fetch(
        f"SELECT rule, max(silenced_until), min(created_at) FROM {SILENCES} WHERE silenced_until > {{{{ t }}}} "
        "GROUP BY rule ORDER BY 2, 1", {"t": now}).rows]


def unsilence(project: Project, name: str, now: datetime | None = None) -> int:
    """Lift a rule's silences now; returns how many were in force."""
    now = now or utcnow()
    wh = project.warehouse
    with wh.transaction():
        ensure_tables(wh)
        return max(wh.execute(f"UPDATE {SILENCES} SET silenced_until = {{{{ t }}}} WHERE rule = {{{{ r }}}} "
                              "AND silenced_until > {{ t }}", {"r": name, "t": now}), 0)


def summarize(incs: list[Incident], until: datetime) -> dict[str, Any]:
    by = defaultdict(list)
    for i in incs:
        by[i.series].append(i)
    return {"incidents": len(incs), "series": {k: len(v) for k, v in by.items()},
            "minutes": sum(i.minutes(until) for i in incs)}
