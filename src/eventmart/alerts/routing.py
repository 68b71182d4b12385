"""Where an alert's messages go (`alerting:`): a rule's own channels, plus the first route whose `match` its labels
meet (and the routes after one with `continue`); how events of one check are grouped into one message; when a
mute timing holds them back."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from ..config import AlertRule, ProjectConfig
from ..config.alerting import minutes_span, weekday_set


@dataclass(frozen=True)
class Target:
    """One channel a rule's messages go to, and how: grouped by what, muted when, in which words."""

    channel: str
    group_by: tuple[str, ...]
    mute: tuple[str, ...] = ()
    template: str | None = None
    route: int | None = None  # the route's index in alerting.routes; None: the rule's own channels


def rule_labels(name: str, rule: AlertRule) -> dict[str, str]:
    """What routes match and groups split on: the rule's labels, its severity and its name."""
    return {**rule.labels, "severity": rule.severity, "rule": name}


def matches(match: dict[str, str | list[str]], labels: dict[str, str]) -> bool:
    for k, want in match.items():
        have = labels.get(k)
        if have is None or have not in ([want] if isinstance(want, str) else want):
            return False
    return True


def targets(config: ProjectConfig, name: str, rule: AlertRule) -> list[Target]:
    """Every channel the rule's messages go to (each once: a rule's own channel wins over a route's)."""
    a = config.alerting
    out = [Target(c, tuple(a.group_by), (), rule.template) for c in rule.channels]
    labels = rule_labels(name, rule)
    for i, r in enumerate(a.routes):
        if not matches(r.match, labels):
            continue
        out += [Target(c, tuple(r.group_by), tuple(r.mute), rule.template or r.template, i) for c in r.channels
                if c not in {t.channel for t in out}]
        if not r.continue_:
            break
    return out


def group_key(t: Target, name: str, rule: AlertRule, series: str) -> tuple:
    labels = {**rule_labels(name, rule), "series": series}
    return (t.channel, t.route, t.template, t.mute, tuple(labels.get(k, "") for k in t.group_by))


def muted_by(config: ProjectConfig, names: tuple[str, ...], now: datetime) -> str | None:
    """The first of the mute timings ``names`` in force at ``now`` (naive UTC), or None."""
    for n in names:
        for iv in config.alerting.mute_timings.get(n, []):
            local = now.replace(tzinfo=ZoneInfo("UTC")).astimezone(ZoneInfo(iv.timezone))
            minute = local.hour * 60 + local.minute
            days = set().union(*(weekday_set(w) for w in iv.weekdays)) if iv.weekdays else set(range(7))
            if not iv.times:
                if local.weekday() in days:
                    return n
                continue
            for span in iv.times:
                a, b = minutes_span(span)
                if a < b and a <= minute < b and local.weekday() in days:
                    return n
                # across midnight: the evening part belongs to its own day, the morning part to the day before
                if a >= b and ((minute >= a and local.weekday() in days)
                               or (minute < b and (local.weekday() - 1) % 7 in days)):
                    return n
    return None
