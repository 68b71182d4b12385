"""Sending what a check decided. Each event goes to its rule's targets (routing.py); the events of one check that
share a target and its group go out as one message. Per channel at most ``cap`` messages an hour; a mute timing
or the cap holds the rest, sent as one digest once the mute is over and the hour allows. A silenced rule sends
nothing. Every delivery is recorded."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..config import AlertRule
from ..delivery.channels import ChannelError, Message, deliver
from .messages import digest_message, group_message, message
from .routing import Target, group_key, muted_by, targets
from .store import EVENTS, silenced

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .judge import EvalResult, Event

MUTED = "muted by "  # how a held row names the mute timing that held it


def notify(project: Workspace, results: list[tuple[str, EvalResult]], now: datetime, sleep) -> list[dict]:
    cfg = project.config
    wh = project.warehouse
    rows: list[dict] = []
    groups: dict[tuple, tuple[Target, list[tuple[str, AlertRule, Event]]]] = {}
    caps: dict[str, int] = {}  # per channel: the smallest cap of the rules sending to it

    def row(name: str, e: Event | None, channel: str, status: str, detail: str, event: str | None = None) -> dict:
        return {"at": now, "r": name, "k": e.series if e else "", "e": event or (e.event if e else ""),
                "b": e.bucket if e else None, "v": e.value if e else None, "lo": e.lower if e else None,
                "hi": e.upper if e else None, "ch": channel, "st": status, "d": detail[:500]}

    for name, res in results:
        rule = cfg.alerts[name]
        ts = targets(cfg, name, rule)
        if not ts:  # no channel: history only
            rows += [row(name, e, "", "recorded", "") for e in res.events]
            continue
        quiet = bool(res.events) and silenced(project, name, now)
        for t in ts:
            caps[t.channel] = min(caps.get(t.channel, rule.cap), rule.cap)
            for e in res.events:
                if quiet:
                    rows.append(row(name, e, t.channel, "silenced", "rule silenced"))
                else:
                    groups.setdefault(group_key(t, name, rule, e.series), (t, []))[1].append((name, rule, e))
    sent: dict[str, int] = {}
    for t, items in groups.values():
        ch = t.channel
        if ch not in sent:
            sent[ch] = _sent_last_hour(wh, ch, now)
        mute = muted_by(cfg, t.mute, now)
        cap = min(r.cap for _, r, _ in items)
        if mute:
            st, d = "held", f"{MUTED}{mute}"
        elif sent[ch] >= cap:
            st, d = "held", f"over {cap} messages an hour on {ch}"
        else:
            n, r, e = items[0]
            msg = message(project, n, r, e, t.template) if len(items) == 1 else group_message(project, items,
                                                                                               t.template)
            st, d = send(project, ch, msg, sleep)
            sent[ch] += st == "sent"
        rows += [row(n, e, ch, st, d) for n, _, e in items]
    for ch, cap in caps.items():
        rows += _digest(project, ch, cap, sent.get(ch), rows, now, sleep, row)
    by_rule = dict(results)
    for r in rows:
        if r["r"] in by_rule:  # a digest may carry rules not checked this time
            by_rule[r["r"]].deliveries.append((r["ch"], r["st"], r["d"]))
    return rows


def _sent_last_hour(wh, channel: str, now: datetime) -> int:
    return wh.fetch(f"SELECT count(*) FROM {EVENTS} WHERE channel = {{{{ c }}}} AND status = 'sent' "
                    "AND sent_at > {{ t }}", {"c": channel, "t": now - timedelta(hours=1)}).rows[0][0]


def _digest(project: Workspace, ch: str, cap: int, sent: int | None, rows: list[dict], now: datetime, sleep,
            row) -> list[dict]:
    """One message with what the cap or a mute held on ``ch``, once the hour has room and the mute is over."""
    if any(r["ch"] == ch and r["st"] == "held" for r in rows):
        return []  # still holding back: the digest waits
    wh = project.warehouse
    held = wh.fetch(f"SELECT rule, series, event, bucket, detail FROM {EVENTS} WHERE channel = {{{{ c }}}} "
                    "AND status = 'held' ORDER BY sent_at, rule, series", {"c": ch}).rows
    still = {d for *_, d in held if d.startswith(MUTED) and muted_by(project.config, (d[len(MUTED):],), now)}
    ready = [r for r in held if r[4] not in still]
    if not ready or (sent if sent is not None else _sent_last_hour(wh, ch, now)) >= cap:
        return []
    st, d = send(project, ch, digest_message(ch, [tuple(r[:4]) for r in ready]), sleep)
    if st == "sent":
        params = {"c": ch, **{f"d{i}": x for i, x in enumerate(sorted(still))}}
        keep = "".join(f" AND detail <> {{{{ d{i} }}}}" for i in range(len(still)))
        wh.execute(f"UPDATE {EVENTS} SET status = 'digested' WHERE channel = {{{{ c }}}} AND status = 'held'{keep}",
                   params)
    return [row(name, None, ch, st, d, "digest") for name in sorted({r[0] for r in ready})]


def send(project: Workspace, ch_name: str, msg: Message, sleep) -> tuple[str, str]:
    try:
        return "sent", deliver(project.config.channels[ch_name], ch_name, msg, project.dir, sleep)[:500]
    except ChannelError as e:
        return "failed", str(e)[:500]
