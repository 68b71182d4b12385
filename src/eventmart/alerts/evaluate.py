"""How good an alert rule is, measured: against labelled incidents, and by the alerts it would send.

Scoring is by events, as a person reading alerts would judge them: an incident is **found** when an alert
(the first bucket of a run of anomalous buckets) lands within ``tolerance`` buckets of it; **precision** is the
share of alerts that land near some incident. Also the alert volume (per 1,000 judged buckets, per week and
series) and a NAB-style score (Numenta Anomaly Benchmark, standard profile): an incident found early is worth up
to +1, found late less, missed -1, each alert far from any incident -0.11; normalised so that never alerting
scores 0 and finding every incident at its start scores 100.

:func:`tune` picks a rule's parameters from its own history under an alert budget, causally: it chooses on the
earlier part of the history and reports what the choice does on the later part.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError
from ..timeutil import parse_time

if TYPE_CHECKING:
    from ..workspace import Workspace

A_TP, A_FP, A_FN = 1.0, -0.11, -1.0


@dataclass
class Label:
    series: str  # a series key ("os=iOS") or "all"; "*" matches any series of the rule
    start: datetime
    end: datetime  # inclusive: the last anomalous bucket's start


@dataclass
class Score:
    rule: str
    incidents: int = 0
    found: int = 0
    alerts: int = 0
    true_alerts: int = 0
    buckets: int = 0
    weeks: float = 0.0
    series: int = 0
    nab: float = 0.0
    details: list[dict] = field(default_factory=list)

    @property
    def precision(self) -> float:
        return self.true_alerts / self.alerts if self.alerts else 0.0

    @property
    def recall(self) -> float:
        return self.found / self.incidents if self.incidents else 0.0

    @property
    def f1(self) -> float:
        p, r = self.precision, self.recall
        return 2 * p * r / (p + r) if p + r else 0.0

    @property
    def per_1000(self) -> float:
        return 1000 * self.alerts / self.buckets if self.buckets else 0.0

    @property
    def per_week(self) -> float:
        return self.alerts / (self.weeks * max(self.series, 1)) if self.weeks else 0.0

    def row(self) -> dict[str, Any]:
        return {"rule": self.rule, "incidents": self.incidents, "found": self.found, "alerts": self.alerts,
                "precision": round(self.precision, 3), "recall": round(self.recall, 3), "f1": round(self.f1, 3),
                "alerts_per_1000_buckets": round(self.per_1000, 2),
                "alerts_per_week_per_series": round(self.per_week, 2), "nab": round(self.nab, 1)}


def read_labels(path: str | Path) -> list[Label]:
    """A CSV with columns start, end (ISO times, UTC; end may be empty for one bucket) and optionally series."""
    p = Path(path)
    if not p.is_file():
        raise UserError(f"{path}: no such labels file; give a CSV with columns start, end[, series] "
                        "(or table:NAME for a warehouse table with those columns)")
    with open(p, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        if not reader.fieldnames or "start" not in reader.fieldnames:
            raise UserError(f"{path}:1: the labels need a header with a start column (and end, series)")
        return labels_from_rows(list(reader), str(path), first_line=2)


def labels_from_rows(rows: list[dict[str, Any]], where: str, first_line: int = 1) -> list[Label]:
    """Labels from rows with start, end (times or ISO text) and optionally series; ``where`` names their origin."""
    out = []
    for i, row in enumerate(rows, first_line):
        try:
            start = _as_time(row.get("start"), "start")
            end = _as_time(row["end"], "end") if row.get("end") not in (None, "") else start
        except UserError as e:
            raise UserError(f"{where}:{i}: {e}") from None
        if end < start:
            raise UserError(f"{where}:{i}: end {end} is before start {start}")
        out.append(Label(str(row.get("series") or "*").strip() or "*", start, end))
    return out


def _as_time(v: Any, what: str) -> datetime:
    if isinstance(v, datetime):
        return v.replace(tzinfo=None) if v.tzinfo is None else v.astimezone(UTC).replace(tzinfo=None)
    if v is None or v == "":
        raise UserError(f"{what} is empty; give an ISO time such as 2024-03-29 14:00")
    return parse_time(str(v), what)


def episodes(anomalous: np.ndarray) -> list[tuple[int, int]]:
    """(first, last+1) bucket indexes of each run of anomalous buckets."""
    a = np.concatenate([[False], np.asarray(anomalous, dtype=bool), [False]])
    edges = np.flatnonzero(a[1:] != a[:-1])
    return list(zip(edges[0::2].tolist(), edges[1::2].tolist(), strict=True))


def _sigmoid(y: float) -> float:
    return 2 / (1 + math.exp(5 * y)) - 1


def score_series(times: list[datetime], anomalous: np.ndarray, judged: np.ndarray, labels: list[Label],
                 grain: int, tolerance: int = 2, for_buckets: int = 1) -> dict[str, Any]:
    """Event scores for one series; ``labels`` already narrowed to it."""
    g = timedelta(seconds=grain)
    alerts = [times[s + for_buckets - 1] for s, e in episodes(anomalous) if e - s >= for_buckets]
    windows = [(lab.start - tolerance * g, lab.end + tolerance * g, lab) for lab in labels]
    found = sum(any(a0 <= t <= a1 for t in alerts) for a0, a1, _ in windows)
    true_alerts = sum(any(a0 <= t <= a1 for a0, a1, _ in windows) for t in alerts)
    # NAB: the first alert in a window earns by how early it came; alerts outside every window cost
    nab = 0.0
    used = set()
    for a0, a1, _ in windows:
        hits = [t for t in alerts if a0 <= t <= a1]
        if hits:
            first = min(hits)
            width = max((a1 - a0).total_seconds(), 1)
            # -1 at the window's start (early: ~+1), 0 at its end (0)
            nab += A_TP * _sigmoid((first - a1).total_seconds() / width)
            used.update(hits)
        else:
            nab += A_FN
    nab += A_FP * sum(1 for t in alerts if t not in used)
    return {"incidents": len(windows), "found": found, "alerts": len(alerts), "true_alerts": true_alerts,
            "buckets": int(np.asarray(judged, dtype=bool).sum()), "nab": nab}


def normalise_nab(raw: float, incidents: int) -> float:
    """NAB's normalisation: never alerting scores 0, every incident found at its window's start 100."""
    null, perfect = A_FN * incidents, A_TP * _sigmoid(-1) * incidents
    return 100 * (raw - null) / (perfect - null) if perfect != null else 0.0


def evaluate_rule(project: Workspace, name: str, start: datetime, end: datetime, labels: list[Label],
                  tolerance: int = 2, params: dict | None = None) -> Score:
    """Backtest rule ``name`` over [start, end) (with ``params`` instead of its own, when given) and score it."""
    from .judge import judge

    rule = project.config.alerts[name]
    if params is not None:
        rule = rule.model_copy(update={"params": params})
    v = judge(project, name, rule, start, end)
    g = v.series.grain
    res = Score(name, weeks=(end - start).total_seconds() / (7 * 86400), series=len(v.series.keys))
    raw = 0.0
    for j, key in enumerate(v.series.keys):
        mine = [lab for lab in labels if lab.series in ("*", key) and lab.end >= start and lab.start < end]
        judged = v.judged[:, j] if v.judged is not None else ~np.isnan(v.series.values[:, j])
        s = score_series(v.series.times, v.anomalous[:, j], judged, mine, g, tolerance, rule.for_)
        res.incidents += s["incidents"]
        res.found += s["found"]
        res.alerts += s["alerts"]
        res.true_alerts += s["true_alerts"]
        res.buckets += s["buckets"]
        raw += s["nab"]
        res.details.append({"series": key, **s})
    res.nab = normalise_nab(raw, res.incidents)
    return res


# --- tuning ------------------------------------------------------------------------------------------

GRID: dict[str, dict[str, list]] = {
    "auto": {"a": [3.5, 4, 5, 6, 7, 8]},
    "iqr": {"a": [3, 4, 5, 6, 8], "n": [5, 12, 24, 48]},
    "zscore": {"a": [3, 4, 5, 6], "n": [12, 24, 48]},
    "mad": {"a": [3.5, 4.5, 6, 8], "n": [12, 24, 48]},
    "seasonal": {"a": [3, 4, 5, 6, 8]},
    "pct_change": {"threshold": [0.2, 0.3, 0.5, 0.8, 1.2]},
}


@dataclass
class Tuning:
    rule: str
    detector: str
    chosen: dict[str, Any]
    budget: float  # alerts per week per series
    tune_span: tuple[datetime, datetime]
    check_span: tuple[datetime, datetime]
    tried: list[dict[str, Any]]
    check: dict[str, Any]
    reason: str

    def lines(self) -> list[str]:
        t0, t1 = self.tune_span
        c0, c1 = self.check_span
        out = [f"{self.rule}: tuned on {t0:%Y-%m-%d %H:%M}..{t1:%Y-%m-%d %H:%M}, checked on "
               f"{c0:%Y-%m-%d %H:%M}..{c1:%Y-%m-%d %H:%M} (budget {self.budget:g} alerts/week/series)"]
        for t in self.tried:
            mark = "→" if t["params"] == self.chosen else " "
            extra = f", F1 {t['f1']:.2f}" if "f1" in t else ""
            out.append(f"  {mark} {t['params']}: {t['per_week']:.2f} alerts/week/series{extra}")
        out.append(f"  chosen: params: {self.chosen}  ({self.reason})")
        extra = f", F1 {self.check['f1']:.2f}" if "f1" in self.check else ""
        out.append(f"  on the later part: {self.check['per_week']:.2f} alerts/week/series{extra}")
        return out


def _combinations(grid: dict[str, list]) -> Iterable[dict[str, Any]]:
    keys = list(grid)
    if not keys:
        yield {}
        return
    first, rest = keys[0], {k: grid[k] for k in keys[1:]}
    for v in grid[first]:
        for r in _combinations(rest):
            yield {first: v, **r}


def tune(project: Workspace, name: str, start: datetime, end: datetime, budget: float = 2.0,
         labels: list[Label] | None = None, split: float = 0.6) -> Tuning:
    """Pick the rule's parameters on [start, split point) under ``budget`` alerts per week per series — the most
    sensitive setting within the budget, or with labels the best F1 within it — and report the later part."""
    rule = project.config.alerts[name]
    if rule.detector not in GRID:
        raise UserError(f"alerts.{name}: a {rule.detector} rule has nothing to tune; give its bounds yourself")
    cut = start + (end - start) * split
    tried = []
    for combo in _combinations(GRID[rule.detector]):
        params = {**rule.params, **combo}
        s = evaluate_rule(project, name, start, cut, labels or [], params=params)
        t = {"params": combo, "per_week": s.per_week, "alerts": s.alerts}
        if labels:
            t["f1"] = s.f1
        tried.append(t)
    within = [t for t in tried if t["per_week"] <= budget]
    if labels and within:
        best = max(within, key=lambda t: (t["f1"], -t["per_week"]))
        reason = "the best F1 on the labels among the settings within the budget"
    elif within:
        best = max(within, key=lambda t: t["per_week"])
        reason = "the most sensitive setting within the budget"
    else:
        best = min(tried, key=lambda t: t["per_week"])
        reason = "no setting stays within the budget: the quietest one"
    s = evaluate_rule(project, name, cut, end, labels or [], params={**rule.params, **best["params"]})
    check = {"per_week": s.per_week, "alerts": s.alerts}
    if labels:
        check["f1"] = s.f1
    return Tuning(name, rule.detector, best["params"], budget, (start, cut), (cut, end), tried, check, reason)


def as_dict(x: Any) -> Any:
    return asdict(x)
