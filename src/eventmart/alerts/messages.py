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
    if series not in (ALL, "(data)"):
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
    if series not in (ALL, "(data)"):
        q += [tuple(part.split("=", 1)) for part in series.split(", ")]
    return f"{(base or rule.base_url).rstrip('/')}/explore/?{urllib.parse.urlencode(q)}"


def fmt_minute(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M")


def message(project: Workspace, name: str, rule: AlertRule, e: Event) -> Message:
    import html

    what = rule.title or name
    series = "" if e.series == ALL else f" ({e.series})"
    link = dashboard_link(rule, e.series, e.bucket)
    explore = explore_link(project, rule, e.series, e.since, e.bucket) if e.event != "late" else None
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
                   + ([f'<a href="{esc(link, quote=True)}">Open the dashboard</a>'] if link else [])
                   + ([f'<a href="{esc(explore, quote=True)}">Explore the incident</a>'] if explore else []))
    text = "\n".join([head, *lines] + ([f"Dashboard: {link}"] if link else [])
                      + ([f"Explore: {explore}"] if explore else []))
    images = [e.chart] if e.chart else []

    def page(src: dict[str, str]) -> str:
        imgs = "".join(f"<p><img src='{esc(src[c.filename], quote=True)}' style='max-width:100%'></p>" for c in images)
        return (f"<!doctype html><html><head><meta charset='utf-8'><title>{esc(head)}</title></head><body "
                f"style='font-family:system-ui,sans-serif'><h3>{esc(head)}</h3>"
                + "".join(f"<p>{esc(x)}</p>" for x in lines) + imgs
                + (f"<p><a href='{esc(link, quote=True)}'>Open the dashboard</a></p>" if link else "")
                + (f"<p><a href='{esc(explore, quote=True)}'>Explore the incident</a></p>" if explore else "")
                + "</body></html>")

    def slack(base: str | None) -> dict:
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": f"*{head}*\n" + "\n".join(lines)}}]
        blocks += [{"type": "image", "image_url": f"{base}/{c.filename}", "alt_text": c.title} for c in images if base]
        if link:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{link}|Open the dashboard>"}})
        if explore:
            blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{explore}|Explore the incident>"}})
        return {"text": text[:3000], "blocks": blocks}

    stamp = (e.bucket or utcnow()).strftime("%Y%m%dT%H%M")
    key = f"alerts/{name}/{stamp}-{e.event}-{_slug(e.series)}"
    payload = {"rule": name, "series": e.series, "event": e.event, "bucket": e.bucket, "value": e.value,
               "lower": e.lower, "upper": e.upper, "since": e.since, "dashboard_url": link,
               "explore_url": explore}
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


def _chart(project: Workspace, name: str, rule: AlertRule, key: str, t: datetime) -> Chart:
    """The last 24 h of the series with its bounds, anomalous buckets marked."""
    from .judge import judge  # the chart shows what the engine judged

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


