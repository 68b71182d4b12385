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

import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from ..errors import UserError
from ..ledger import RunResult
from ..timeutil import floor_time, parse_duration, utcnow
from .judge import EvalResult, Event, Incident, Verdicts, backtest, freshness_end, judge, loaded_end
from .messages import _chart, render
from .notify import notify
from .series import ALL, Series, rule_grain
from .store import (
    EVENTS,
    LATE_KEY,
    SILENCES,
    STATE,
    RuleState,
    _insert,
    ensure_tables,
    load_state,
    save_state,
    silence,
    silenced,
    silences,
    unsilence,
)

if TYPE_CHECKING:
    from ..workspace import Workspace

__all__ = ["ALL", "EVENTS", "SILENCES", "STATE", "EvalResult", "Event", "Incident", "Series", "Verdicts", "backtest",
           "ensure_tables", "evaluate", "evaluate_job", "judge", "render", "silence", "silenced", "silences",
           "unsilence"]










# --- live evaluation -------------------------------------------------------------------------------










def evaluate(project: Workspace, name: str, now: datetime | None = None, sleep=time.sleep) -> EvalResult:
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
    state = load_state(wh, name)
    # late: the mart has not been run for more than a bucket of events that are loaded already
    if fresh < loaded_end(project, rule, complete) - timedelta(seconds=g):
        if state.get(LATE_KEY, RuleState()).state != "LATE":
            res.events.append(Event(name, LATE_KEY, "late", fresh if fresh > datetime.min else None))
            state[LATE_KEY] = RuleState("LATE", now, 0, None, now)
    elif LATE_KEY in state and state[LATE_KEY].state == "LATE":
        state[LATE_KEY].state = "OK"
    if fresh <= datetime.min:
        _save(project, name, state, res, now, sleep)
        return res
    last_seen = [s.last_bucket for k, s in state.items() if k != LATE_KEY and s.last_bucket is not None]
    start = min(last_seen) + timedelta(seconds=g) if last_seen else fresh - timedelta(seconds=g * rule.for_)
    start = max(start, fresh - timedelta(days=7))  # a long outage is not replayed bucket by bucket
    if start >= fresh:
        _save(project, name, state, res, now, sleep)
        return res
    v = judge(project, name, rule, start, fresh)
    times = v.series.times
    remind = timedelta(seconds=parse_duration(rule.remind)) if rule.remind else None
    for j, key in enumerate(v.series.keys):
        st = state.get(key) or RuleState()
        for i, t in enumerate(times):
            if st.last_bucket is not None and t <= st.last_bucket:
                continue  # judged before
            res.judged += 1
            value, lo, hi = _f(v.series.values[i, j]), _f(v.lower[i, j]), _f(v.upper[i, j])
            st.last_bucket, st.value, st.lower, st.upper = t, value, lo, hi
            if v.anomalous[i, j]:
                st.consecutive += 1
                if st.state == "OK" and st.consecutive >= rule.for_:
                    st.state, st.since, st.last_notified = "FIRING", t - timedelta(seconds=g * (st.consecutive - 1)), now
                    prev = _f(v.series.values[i - 1, j]) if i else None
                    chart = _chart(project, name, rule, key, t) if rule.channels else None
                    res.events.append(Event(name, key, "fired", t, value, lo, hi, st.since, prev, chart=chart))
            else:
                if st.state == "FIRING":
                    res.events.append(Event(name, key, "resolved", t, value, lo, hi, st.since))
                    st.state, st.since, st.last_notified = "OK", None, now
                st.consecutive = 0
        if st.state == "FIRING" and remind and st.last_notified is not None and now - st.last_notified >= remind:
            res.events.append(Event(name, key, "reminder", st.last_bucket, st.value, st.lower, st.upper, st.since))
            st.last_notified = now
        state[key] = st
    _save(project, name, state, res, now, sleep)
    return res


def _f(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


def _save(project: Workspace, name: str, state: dict[str, RuleState], res: EvalResult, now: datetime, sleep) -> None:
    """Send what the evaluation decided, then write state and history together."""
    wh = project.warehouse
    rule = project.config.alerts[name]
    rows = notify(project, name, rule, res, now, sleep)
    with wh.transaction():
        save_state(wh, name, state)
        _insert(wh, EVENTS, [[r["at"], r["r"], r["k"], r["e"], r["b"], r["v"], r["lo"], r["hi"], r["ch"], r["st"],
                              r["d"]] for r in rows])


# --- jobs and commands ------------------------------------------------------------------------------


def evaluate_job(project: Workspace, job: str, now: datetime, attempt: int = 1) -> RunResult:
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


def summarize(incs: list[Incident], until: datetime) -> dict[str, Any]:
    by = defaultdict(list)
    for i in incs:
        by[i.series].append(i)
    return {"incidents": len(incs), "series": {k: len(v) for k, v in by.items()},
            "minutes": sum(i.minutes(until) for i in incs)}
