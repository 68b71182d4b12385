"""`eventmart alerts test RULE`: a rule replayed over history before it is switched on — every bucket judged as of
its own time, the incidents it would have fired, where each message would have gone (or been held by a mute), in
which words, and a chart of the series with its bounds and the incidents as bands. Nothing is sent or stored."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..delivery.charts import Chart
from ..errors import UserError
from ..timeutil import floor_time, utcnow
from .judge import Event, Incident, Verdicts, backtest, freshness_end
from .messages import _templated, _words, render
from .routing import muted_by, targets
from .series import rule_grain

if TYPE_CHECKING:
    from ..workspace import Workspace


@dataclass
class Firing:
    series: str
    at: datetime  # the bucket whose verdict fires it (`for` buckets into the incident)
    end: datetime | None
    value: float | None
    # (channel, "sent" | "held: muted by …", the message's first line in the rule's or route's template's words)
    deliveries: list[tuple[str, str, str]] = field(default_factory=list)


@dataclass
class Rehearsal:
    rule: str
    start: datetime
    end: datetime
    verdicts: Verdicts
    incidents: list[Incident]
    firings: list[Firing]
    chart: Chart | None  # the series with the most anomalous buckets


def rehearse(project: Workspace, name: str, start: datetime | None = None, end: datetime | None = None,
             days: int = 7) -> Rehearsal:
    rule = project.config.alerts[name]
    g = rule_grain(project, rule)
    if end is None:
        end = freshness_end(project, rule, floor_time(utcnow(), g))
        if end <= datetime.min:
            raise UserError(f"alerts.{name}: mart {rule.mart} has not been built yet; run `eventmart run` first "
                            "(or give --start and --end)")
    start = start or end - timedelta(days=days)
    if start >= end:
        raise UserError(f"alerts test {name}: --start {start} is not before the end of the data, {end}; give an "
                        "earlier --start (or --end)")
    v, incs = backtest(project, name, start, end)
    times, keys = v.series.times, v.series.keys
    firings = []
    for inc in incs:
        at = inc.start + timedelta(seconds=g * (rule.for_ - 1))
        j, i = keys.index(inc.series), times.index(at) if at in times else None
        value = float(v.series.values[i, j]) if i is not None else None
        lo = float(v.lower[i, j]) if i is not None else None
        hi = float(v.upper[i, j]) if i is not None else None
        e = Event(name, inc.series, "fired", at, value, lo, hi, inc.start)
        head, lines, fields = _words(project, name, rule, e)
        deliveries = []
        for t in targets(project.config, name, rule):
            mute = muted_by(project.config, t.mute, at + timedelta(seconds=g))  # checked once the bucket is over
            words = _templated(project, t.template, head, lines, fields)[0]
            deliveries.append((t.channel, f"held: muted by {mute}" if mute else "sent", words))
        firings.append(Firing(inc.series, at, inc.end, value, deliveries))
    return Rehearsal(name, start, end, v, incs, firings, replay_chart(rule.title or name, v, incs, f"{name}.png"))


def replay_chart(title: str, v: Verdicts, incs: list[Incident], filename: str) -> Chart | None:
    """The replayed series with the most anomalous buckets: its bounds, anomalous buckets and incidents as bands."""
    times, keys = v.series.times, v.series.keys
    if not keys or not times:
        return None
    j = max(range(len(keys)), key=lambda j: int(v.anomalous[:, j].sum()))
    end = times[-1] + timedelta(seconds=v.series.grain)
    spans = [(x.start, x.end or end) for x in incs if x.series == keys[j]]
    return render(title + ("" if len(keys) == 1 else f" ({keys[j]})"), times, v.series.values[:, j], v.lower[:, j],
                  v.upper[:, j], v.anomalous[:, j], filename, spans)
