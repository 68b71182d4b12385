"""What an alert says: the message per channel (Telegram HTML, Slack blocks, e-mail, webhook JSON, a page for
the file channel), the 24-hour chart with bounds and anomalous buckets, the dashboard link."""

from __future__ import annotations

import io
import urllib.parse
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from ..config import AlertRule
from ..delivery.channels import Message
from ..delivery.charts import Chart
from ..timeutil import fmt, utcnow
from .series import ALL, rule_grain
from .store import ERROR_KEY, NODATA_KEY, PSEUDO

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .judge import Event


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
    if series not in (ALL, *PSEUDO):  # a pseudo-series (late, no data, error) filters nothing
        q += [tuple(part.split("=", 1)) for part in series.split(", ")]
    return f"{rule.base_url.rstrip('/')}/d/{rule.dashboard}/?{urllib.parse.urlencode(q)}"


def explore_link(project: Workspace, rule: AlertRule, series: str, since: datetime | None, t: datetime | None,
                 base: str | None = None) -> str | None:
    """The explore page on the rule's mart around an incident, the incident drawn as a band ([since, t + grain)),
    filtered to its series; the measure is the mart column the rule's measure reads (when it reads one)."""
    import re

    if rule.mart is None or t is None:
        return None
    start = since or t
    end = t + timedelta(seconds=rule_grain(project, rule))
    q = [("mart", rule.mart)]
    words = set(re.findall(r"[A-Za-z_][A-Za-z0-9_]*", rule.measure or ""))
    named = [m for m in project.config.marts[rule.mart].measures if m in words]
    if named:
        q.append(("measure", named[0]))
    context = max(end - start, timedelta(hours=6))
    q += [("from", fmt_minute(start - context)), ("to", fmt_minute(end + context / 3)),
          ("band_from", fmt_minute(start)), ("band_to", fmt_minute(end))]
    if series not in (ALL, *PSEUDO):  # a pseudo-series (late, no data, error) filters nothing
        q += [tuple(part.split("=", 1)) for part in series.split(", ")]
    return f"{(base or rule.base_url).rstrip('/')}/explore/?{urllib.parse.urlencode(q)}"


def fmt_minute(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def _words(project: Workspace, name: str, rule: AlertRule, e: Event) -> tuple[str, list[str], dict]:
    """eventmart's own head and lines for an event, and the fields a template sees."""
    what = rule.title or name
    series = "" if e.series in (ALL, NODATA_KEY, ERROR_KEY) else f" ({e.series})"
    link = dashboard_link(rule, e.series, e.bucket)
    explore = (explore_link(project, rule, e.series, e.since, e.bucket)
               if e.event not in ("late", "nodata", "error") and e.series not in (NODATA_KEY, ERROR_KEY) else None)
    if e.event == "late":
        head = f"⏳ {what}: data is late"
        lines = [f"The mart has data up to {fmt(e.bucket) if e.bucket else 'nothing yet'} UTC; "
                 "buckets after that are not judged until it is run (no alert on a drop that is only late data)."]
    elif e.event == "nodata":
        head = f"⚫ {what}: no data"
        lines = [f"The newest event arrived before {fmt(e.bucket)} UTC" if e.bucket else "No events have arrived yet",
                 "a stalled source, or a pipeline that stopped: check `eventmart status` and the ingest job"]
    elif e.event == "error":
        head = f"⚠️ {what}: cannot be evaluated"
        lines = [e.detail or "the rule failed", "its series are not judged until this is fixed"]
    elif e.event == "resolved" and e.series == NODATA_KEY:
        head, lines = f"✅ {what}: data is arriving again", [f"events up to {fmt(e.bucket)} UTC"]
    elif e.event == "resolved" and e.series == ERROR_KEY:
        head, lines = f"✅ {what}: evaluated again", ["the rule's series are judged again"]
    elif e.event == "resolved":
        head = f"✅ {what}{series} is back to normal"
        lines = ([f"{e.detail}"] if e.detail else
                 [f"value {_fmt(e.value)} at {fmt(e.bucket)} UTC, expected {_fmt(e.lower)} … {_fmt(e.upper)}"])
        if e.since and e.bucket:
            lines.append(f"anomalous since {fmt(e.since)} UTC ({(e.bucket - e.since).total_seconds() / 60:.0f} min)")
    else:
        head = ("🔔 still: " if e.event == "reminder" else "🔴 ") + f"{what}{series} is anomalous"
        dev = deviation(e)
        change = (e.value / e.previous - 1) if e.previous and e.value is not None else None
        lines = [f"value {_fmt(e.value)} at {fmt(e.bucket)} UTC, expected {_fmt(e.lower)} … {_fmt(e.upper)}"
                 + (f" ({dev * 100:+.1f}% beyond the bound)" if dev is not None else ""),
                 f"since {fmt(e.since)} UTC" + (f"; {change * 100:+.1f}% vs the bucket before" if change is not None
                                                 else "")]
    dev = deviation(e)
    fields = {"rule": name, "title": what, "series": e.series, "event": e.event, "value": e.value,
              "lower": e.lower, "upper": e.upper, "since": e.since, "bucket": e.bucket, "severity": rule.severity,
              "labels": dict(rule.labels), "dashboard_url": link, "explore_url": explore, "detail": e.detail,
              "deviation_pct": None if dev is None else round(dev * 100, 1), "head": head, "lines": lines}
    return head, lines, fields


def _templated(project: Workspace, template: str | None, head: str, lines: list[str], fields: dict
               ) -> tuple[str, list[str]]:
    """A template's title and body in place of eventmart's words (each part it gives), rendered sandboxed."""
    if not template:
        return head, lines
    from jinja2 import TemplateError
    from jinja2.sandbox import SandboxedEnvironment

    t = project.config.alerting.templates[template]
    env = SandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
    env.filters["num"] = _fmt
    try:
        title = env.from_string(t.title).render(**fields).strip() if t.title else head
        body = env.from_string(t.body).render(**fields).strip().splitlines() if t.body else lines
    except TemplateError as e:  # the alert still goes out, in eventmart's words, saying why
        return head, [*lines, f"(template {template} failed: {e})"]
    return title or head, body


def message(project: Workspace, name: str, rule: AlertRule, e: Event, template: str | None = None) -> Message:
    head, lines, fields = _words(project, name, rule, e)
    head, lines = _templated(project, template, head, lines, fields)
    links = [(x, fields[k]) for x, k in (("Open the dashboard", "dashboard_url"), ("Explore the incident",
                                                                                  "explore_url")) if fields[k]]
    stamp = (e.bucket or utcnow()).strftime("%Y%m%dT%H%M")
    key = f"alerts/{name}/{stamp}-{e.event}-{_slug(e.series)}"
    payload = {"rule": name, "series": e.series, "event": e.event, "bucket": e.bucket, "value": e.value,
               "lower": e.lower, "upper": e.upper, "since": e.since, "severity": rule.severity,
               "labels": dict(rule.labels), "dashboard_url": fields["dashboard_url"],
               "explore_url": fields["explore_url"], "detail": e.detail}
    return _build(key, head, lines, links, [e.chart] if e.chart else [], payload)


def group_message(project: Workspace, items: list[tuple[str, AlertRule, Event]], template: str | None = None,
                  max_charts: int = 4) -> Message:
    """Several events of one check as one message: a line each, the charts of the first few."""
    words = [_words(project, n, r, e) for n, r, e in items]
    firing = sum(e.event in ("fired", "reminder") for _, _, e in items)
    resolved = sum(e.event == "resolved" for _, _, e in items)
    rules = sorted({n for n, _, _ in items})
    what = items[0][1].title or items[0][0] if len(rules) == 1 else ", ".join(rules[:3]) + (" …" if len(rules) > 3
                                                                                           else "")
    counts = [f"🔴 {firing} firing"] * bool(firing) + [f"✅ {resolved} resolved"] * bool(resolved)
    counts += [f"{len(items) - firing - resolved} other"] * bool(len(items) - firing - resolved)
    head = " · ".join(counts) + f": {what}"
    lines = [f"{h} — {ln[0]}" if ln else h for h, ln, _ in words]
    fields = {**words[0][2], "head": head, "lines": lines, "alerts": [f for _, _, f in words], "count": len(items)}
    head, lines = _templated(project, template, head, lines, fields)
    links = [(f"Explore {e.series}", f["explore_url"]) for (_, _, e), (_, _, f) in zip(items, words, strict=True)
             if f["explore_url"]][:max_charts]
    images = [e.chart for _, _, e in items if e.chart][:max_charts]
    stamp = max((e.bucket for _, _, e in items if e.bucket), default=utcnow()).strftime("%Y%m%dT%H%M")
    key = f"alerts/{rules[0] if len(rules) == 1 else 'group'}/{stamp}-group-{len(items)}"
    payload = {"group": True, "alerts": [{k: f[k] for k in ("rule", "series", "event", "bucket", "value", "lower",
                                                             "upper", "since", "severity", "labels", "explore_url")}
                                         for _, _, f in words]}
    return _build(key, head, lines, links, images, payload)


def _build(key: str, head: str, lines: list[str], links: list[tuple[str, str]], images: list[Chart],
           payload: dict) -> Message:
    """One message in every channel's form."""
    import html

    esc = html.escape
    tg = "\n".join([f"<b>{esc(head)}</b>"] + [esc(x) for x in lines]
                   + [f'<a href="{esc(u, quote=True)}">{esc(t)}</a>' for t, u in links])
    text = "\n".join([head, *lines] + [f"{t}: {u}" for t, u in links])

    def page(src: dict[str, str]) -> str:
        imgs = "".join(f"<p><img src='{esc(src[c.filename], quote=True)}' style='max-width:100%'></p>" for c in images)
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(head)}</title></head><body "
                f"style='font-family:system-ui,sans-serif'><h3>{esc(head)}</h3>"
                + "".join(f"<p>{esc(x)}</p>" for x in lines) + imgs
                + "".join(f"<p><a href='{esc(u, quote=True)}'>{esc(t)}</a></p>" for t, u in links)
                + "</body></html>")

    def slack(base: str | None) -> dict:
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*\n" + "\n".join(lines)}}]
        blocks += [{"type": "image", "image_url": f"{base}/{c.filename}", "alt_text": c.title} for c in images if base]
        blocks += [{"type": "section", "text": {"type": "mrkdwn", "text": f"<{u}|{t}>"}} for t, u in links]
        return {"text": text[:3000], "blocks": blocks}

    return Message(key, head, tg, text, page, slack, payload, images)


def digest_message(channel: str, held: list[tuple]) -> Message:
    """What a channel's cap or mute held back: (rule, series, event, bucket) each."""
    head = f"🧾 {len(held)} alert message(s) held back (hourly cap or mute timing)"
    lines = [f"{rule}: {ev} {series} at {fmt(b) if b else '—'} UTC" for rule, series, ev, b in held]
    return _build(f"alerts/_digest/{channel}-{utcnow():%Y%m%dT%H%M%S}", head, lines, [], [],
                  {"channel": channel, "held": [list(map(str, h)) for h in held]})


def _slug(s: str) -> str:
    return "".join(c if c.isalnum() else "-" for c in s)[:60]


def _chart(project: Workspace, name: str, rule: AlertRule, key: str, t: datetime,
           since: datetime | None = None, what: str | None = None) -> Chart | None:
    """The last 24 h of the series with its bounds, anomalous buckets marked, the incident ([since, t]) a band
    (None when the rule has no series to draw)."""
    from .judge import judge  # the chart shows what the engine judged

    g = rule_grain(project, rule)
    end = t + timedelta(seconds=g)
    v = judge(project, name, rule, end - timedelta(hours=24), end)
    if not v.series.keys:
        return None
    j = v.series.keys.index(key) if key in v.series.keys else 0
    key = v.series.keys[j]
    title = f"{rule.title or name}" + ("" if key == ALL else f" ({key})") + (f": {what}" if what else "")
    values, lower, upper, anomalous = v.series.values[:, j], v.lower[:, j], v.upper[:, j], v.anomalous[:, j]
    if what == "no data" and since is not None:  # after the newest event there is nothing, not zeros to judge
        after = np.asarray(v.series.times, dtype=object) >= since
        values, lower, upper = (np.where(after, np.nan, a) for a in (values, lower, upper))
        anomalous = anomalous & ~after
    return render(title, v.series.times, values, lower, upper, anomalous,
                  f"alert-{_slug(name)}-{_slug(key)}.png", [(since, end)] if since else ())


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


