"""A digest as text: Telegram HTML, an HTML page (e-mail, file), Slack blocks, a JSON payload."""

from __future__ import annotations

import html
from typing import Any

from ..delivery.channels import Message
from .build import COMPARE_LABEL, Digest, MetricValue, _fmt_value


def arrow(change: float | None) -> str:
    if change is None:
        return "—"
    mark = "▲" if change > 0.0005 else "▼" if change < -0.0005 else "＝"
    return f"{mark} {change * 100:+.1f}%"


def line(m: MetricValue, compare: list[str]) -> str:
    parts = [f"{arrow(m.change(c))} {COMPARE_LABEL[c]}" for c in compare]
    return f"{m.label}: {_fmt_value(m.value, m.format)}" + (f"  ({'; '.join(parts)})" if parts else "")


def telegram_html(d: Digest) -> str:
    """Telegram's HTML parse mode: only <b>, <i>, <a>, <code>; everything else escaped."""
    e = html.escape
    out = [f"<b>{e(d.title)}</b>", f"{d.day:%A, %d %B %Y}", ""]
    for m in d.metrics:
        parts = [f"{arrow(m.change(c))} {e(COMPARE_LABEL[c])}" for c in d.compare]
        out.append(f"<b>{e(m.label)}</b>: {e(_fmt_value(m.value, m.format))}"
                   + (f"  <i>{e('; '.join(parts))}</i>" if parts else ""))
    if d.dashboard_url:
        out += ["", f'<a href="{e(d.dashboard_url, quote=True)}">Open the dashboard</a>']
    return "\n".join(out)


def plain_text(d: Digest) -> str:
    out = [d.title, f"{d.day:%A, %d %B %Y}", ""] + [line(m, d.compare) for m in d.metrics]
    if d.dashboard_url:
        out += ["", f"Dashboard: {d.dashboard_url}"]
    return "\n".join(out)


def html_page(d: Digest, image_src: dict[str, str]) -> str:
    """A self-contained page; ``image_src`` maps chart file names to src (a cid: or a relative path)."""
    e = html.escape
    rows = []
    for m in d.metrics:
        cells = "".join(
            f"<td style='padding:4px 10px;color:{_color(m.change(c))}'>{e(arrow(m.change(c)))}</td>"
            for c in d.compare)
        rows.append(f"<tr><td style='padding:4px 10px'>{e(m.label)}</td>"
                    f"<td style='padding:4px 10px;text-align:right'><b>{e(_fmt_value(m.value, m.format))}</b></td>"
                    f"{cells}</tr>")
    head = "".join(f"<th style='padding:4px 10px;text-align:left'>{e(COMPARE_LABEL[c])}</th>" for c in d.compare)
    imgs = "".join(f"<p><img src='{e(image_src[c.filename], quote=True)}' alt='{e(c.title, quote=True)}' "
                   f"style='max-width:100%'></p>" for c in d.charts)
    link = (f"<p><a href='{e(d.dashboard_url, quote=True)}'>Open the dashboard</a></p>" if d.dashboard_url else "")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{e(d.title)} — {d.day}</title></head>"
            f"<body style='font-family:system-ui,sans-serif;color:#222'><h2>{e(d.title)}</h2>"
            f"<p>{d.day:%A, %d %B %Y}</p><table style='border-collapse:collapse'><tr><th></th><th></th>{head}</tr>"
            f"{''.join(rows)}</table>{imgs}{link}</body></html>")


def _color(change: float | None) -> str:
    if change is None or abs(change) < 0.0005:
        return "#666"
    return "#2e7d32" if change > 0 else "#c62828"


def payload(d: Digest) -> dict[str, Any]:
    return {
        "report": d.report, "title": d.title, "date": d.day.isoformat(), "dashboard_url": d.dashboard_url,
        "metrics": {m.name: {"label": m.label, "value": m.value, "format": m.format,
                             "compare": {c: {"value": m.compare.get(c), "change": m.change(c)} for c in d.compare}}
                    for m in d.metrics},
        "charts": [c.filename for c in d.charts],
    }


def slack_blocks(d: Digest, image_base: str | None) -> dict[str, Any]:
    fields = [{"type": "mrkdwn", "text": f"*{m.label}*\n{_fmt_value(m.value, m.format)}  "
                                         f"{' '.join(arrow(m.change(c)) for c in d.compare)}"} for m in d.metrics]
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": d.title[:150]}},
        {"type": "context", "elements": [{"type": "mrkdwn", "text": f"{d.day:%A, %d %B %Y}; arrows: "
                                          + ", ".join(COMPARE_LABEL[c] for c in d.compare)}]},
    ]
    for i in range(0, len(fields), 10):  # Slack takes at most 10 fields per section
        blocks.append({"type": "section", "fields": fields[i:i + 10]})
    for c in d.charts:
        if image_base:  # the folder where this digest's images are served
            blocks.append({"type": "image", "image_url": f"{image_base.rstrip('/')}/{c.filename}",
                           "alt_text": c.title})
    if d.dashboard_url:
        blocks.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{d.dashboard_url}|Open the dashboard>"}})
    return {"text": plain_text(d)[:3000], "blocks": blocks}


def digest_message(d: Digest) -> Message:
    """The digest as every channel sends it."""
    return Message(f"{d.report}/{d.day.isoformat()}", f"{d.title} — {d.day}", telegram_html(d), plain_text(d),
                   lambda src: html_page(d, src), lambda base: slack_blocks(d, base), payload(d), list(d.charts))
