"""Sending what an evaluation decided: per channel at most ``cap`` messages an hour, the rest held and sent as
one digest once the hour allows; a silenced rule sends nothing. Every delivery is recorded."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..config import AlertRule
from ..delivery.channels import ChannelError, Message, deliver
from .messages import digest_message, message
from .store import EVENTS, silenced

if TYPE_CHECKING:
    from ..workspace import Workspace
    from .judge import EvalResult, Event


def notify(project: Workspace, name: str, rule: AlertRule, res: EvalResult, now: datetime, sleep) -> list[dict]:
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
                rows.append(send(project, ch, ch_name, message(project, name, rule, e), row(e, ch_name, "", ""), sleep))
                sent += rows[-1]["st"] == "sent"
        # a digest of what the cap held back, once the hour has room again
        held = wh.fetch(f"SELECT series, event, bucket FROM {EVENTS} WHERE rule = {{{{ r }}}} AND channel = {{{{ c }}}} "
                        "AND status = 'held' ORDER BY sent_at", {"r": name, "c": ch_name}).rows
        held_now = [r for r in rows if r["ch"] == ch_name and r["st"] == "held"]
        if (held or held_now) and sent < rule.cap and not quiet and not held_now:
            msg = digest_message(name, rule, [(s, e, b) for s, e, b in held])
            r = send(project, ch, ch_name, msg, row(None, ch_name, "", "", "digest"), sleep)
            rows.append(r)
            if r["st"] == "sent":
                wh.execute(f"UPDATE {EVENTS} SET status = 'digested' WHERE rule = {{{{ r }}}} AND "
                           "channel = {{ c }} AND status = 'held'", {"r": name, "c": ch_name})
    for r in rows:
        res.deliveries.append((r["ch"], r["st"], r["d"]))
    return rows


def send(project: Workspace, ch, ch_name: str, msg: Message, r: dict, sleep) -> dict:
    try:
        r["d"] = deliver(ch, ch_name, msg, project.dir, sleep)[:500]
        r["st"] = "sent"
    except ChannelError as e:
        r["st"], r["d"] = "failed", str(e)[:500]
    return r


