"""Judging a rule's series, bucket by bucket as of each bucket's own time — the live check, the backtest and the
Alerts page share it — and what a judgement produces: verdicts, incidents, events."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

import numpy as np

from ..config import AlertRule
from ..delivery.charts import Chart
from ..timeutil import floor_time
from .detectors import detect_matrix, incidents
from .series import Series, history_seconds, load_series, rule_grain

if TYPE_CHECKING:
    from ..workspace import Workspace


@dataclass
class Verdicts:
    series: Series
    lower: np.ndarray
    upper: np.ndarray
    anomalous: np.ndarray
    judged: np.ndarray | None = None  # had a value and enough history (else neither normal nor anomalous)


def judge(project: Workspace, name: str, rule: AlertRule, start: datetime, end: datetime,
          keep: frozenset[str] = frozenset()) -> Verdicts:
    """Every bucket in [start, end) judged as of its own time (history loaded from before ``start``). With `top`,
    only the series with the most volume over that history, and those in ``keep`` (the firing ones)."""
    g = rule_grain(project, rule)
    lo = floor_time(start - timedelta(seconds=history_seconds(rule, g)), g)
    s = load_series(project, name, rule, lo, end)
    if rule.top and len(s.keys) > rule.top:
        volume = np.nansum(np.abs(s.values), axis=0)
        idx = sorted(set(np.argsort(-volume, kind="stable")[:rule.top].tolist())
                     | {i for i, k in enumerate(s.keys) if k in keep})
        s = Series(g, s.times, [s.keys[i] for i in idx], s.values[:, idx], s.last_row)
    j = detect_matrix(s.values, rule.detector, g, rule.params, rule.direction, rule.min_history)
    first = int((start - lo).total_seconds() // g)
    cut = Series(g, s.times[first:], s.keys, s.values[first:], s.last_row)
    return Verdicts(cut, j.lower[first:], j.upper[first:], j.anomalous[first:], j.judged[first:])


@dataclass
class Incident:
    series: str
    start: datetime
    end: datetime | None  # None: still going at the end of the range

    def minutes(self, until: datetime) -> float:
        return ((self.end or until) - self.start).total_seconds() / 60


def backtest(project: Workspace, name: str, start: datetime, end: datetime) -> tuple[Verdicts, list[Incident]]:
    rule = project.config.alerts[name]
    v = judge(project, name, rule, start, end)
    out = []
    for j, key in enumerate(v.series.keys):
        for a, b in incidents(v.anomalous[:, j], v.series.times, rule.for_):
            out.append(Incident(key, v.series.times[a], v.series.times[b] if b < len(v.series.times) else None))
    return v, sorted(out, key=lambda i: (i.start, i.series))


@dataclass
class Event:
    rule: str
    series: str
    event: str  # fired | reminder | resolved | late | nodata | error
    bucket: datetime | None
    value: float | None = None
    lower: float | None = None
    upper: float | None = None
    since: datetime | None = None
    previous: float | None = None
    chart: Chart | None = None
    detail: str | None = None  # why: an error's message, or why a series was resolved without being judged


@dataclass
class EvalResult:
    rule: str
    judged: int = 0
    events: list[Event] = field(default_factory=list)
    deliveries: list[tuple[str, str, str]] = field(default_factory=list)  # (channel, status, detail)
    error: str | None = None  # why the rule could not be evaluated (its Error state)


def freshness_end(project: Workspace, rule: AlertRule, complete: datetime) -> datetime:
    """The end of the data that may be judged: complete buckets the mart has been run for."""
    if rule.mart is None:
        return complete
    covered = project.runner.covered(rule.mart)
    if not covered:
        return min(complete, datetime.min)
    return min(complete, covered[-1][1])


def loaded_end(project: Workspace, rule: AlertRule, complete: datetime) -> datetime:
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
