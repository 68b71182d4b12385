"""Alert rules at work: series from the warehouse, judged bucket by bucket, with state and noise control.

A rule × series moves OK → FIRING → OK. It fires after ``for`` anomalous buckets in a row (one message:
value, expected range, deviation, a 24-hour chart with the bounds, the anomalous points and the incident as a
band, a dashboard link), may remind every ``remind``, and sends one recovery message. Only complete buckets are
judged: the one still filling never, nor one the mart has not been run for yet (then a single "data is late"
notice instead of a false drop). The rule itself may be NoData (its source stalled) or Error (it cannot be
evaluated), each with its policy: alert, keep the last state, or treat as OK. State lives in the warehouse, so a
restart never re-sends a firing alert. Where messages go, grouped how, muted when and in which words is
routing.py and notify.py; silenced rules keep their state and history but send nothing.

The backtest runs the same detectors and the same state machine over history (``incidents``).
"""

from __future__ import annotations

import copy
import time
from collections import defaultdict
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

import numpy as np

from ..ledger import RunResult
from ..timeutil import floor_time, parse_duration, utcnow
from .judge import EvalResult, Event, Incident, Verdicts, backtest, freshness_end, judge, loaded_end
from .messages import _chart, render
from .notify import notify
from .routing import targets
from .series import ALL, Series, load_series, rule_grain
from .store import (
    ERROR_KEY,
    EVENTS,
    LATE_KEY,
    NODATA_KEY,
    PSEUDO,
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
           "ensure_tables", "evaluate", "evaluate_job", "evaluate_many", "judge", "render", "silence", "silenced", "silences",
           "unsilence"]


# --- live evaluation -------------------------------------------------------------------------------


def evaluate(project: Workspace, name: str, now: datetime | None = None, sleep=time.sleep) -> EvalResult:
    """Judge the buckets completed since the last evaluation, move the state, notify."""
    return evaluate_many(project, [name], now, sleep)[0]


def evaluate_many(project: Workspace, names: list[str], now: datetime | None = None, sleep=time.sleep
                  ) -> list[EvalResult]:
    """Decide every rule, send what they decided (grouped across rules by the routes), then write every state and
    the history together."""
    wh = project.warehouse
    now = now or utcnow()
    with wh.transaction():
        ensure_tables(wh)
    decided = [(n, *_decide(project, n, now)) for n in names]
    rows = notify(project, [(n, res) for n, res, _ in decided], now, sleep)
    with wh.transaction():
        for n, _, state in decided:
            save_state(wh, n, state)
        _insert(wh, EVENTS, [[r["at"], r["r"], r["k"], r["e"], r["b"], r["v"], r["lo"], r["hi"], r["ch"], r["st"],
                              r["d"]] for r in rows])
    return [res for _, res, _ in decided]


def _decide(project: Workspace, name: str, now: datetime) -> tuple[EvalResult, dict[str, RuleState]]:
    """The rule's events and new state; a rule that cannot be evaluated is in its Error state instead."""
    rule = project.config.alerts[name]
    res = EvalResult(name)
    state = load_state(project.warehouse, name)
    before = copy.deepcopy(state)
    try:
        _judge(project, name, rule, state, res, now)
    except Exception as e:  # noqa: BLE001 - whatever stops a rule (bad SQL, a server down) is its Error state
        res.events, res.judged, res.error = [], 0, (str(e).strip().splitlines() or [type(e).__name__])[0][:300]
        _errored(name, rule, before, res, now)
        return res, before
    err = state.get(ERROR_KEY)
    if err is not None and err.state == "ERROR":
        if rule.on_error == "alert":
            res.events.append(Event(name, ERROR_KEY, "resolved", None))
        state[ERROR_KEY] = RuleState()
    return res, state


def _errored(name: str, rule, state: dict[str, RuleState], res: EvalResult, now: datetime) -> None:
    st = state.get(ERROR_KEY) or RuleState()
    if st.state != "ERROR":
        state[ERROR_KEY] = RuleState("ERROR", now, 0, None, now)
        if rule.on_error == "alert":
            res.events.append(Event(name, ERROR_KEY, "error", None, detail=res.error))
    if rule.on_error == "ok":
        _resolve_all(name, state, res, now, "treated as OK: the rule cannot be evaluated")


def _resolve_all(name: str, state: dict[str, RuleState], res: EvalResult, now: datetime, why: str) -> None:
    """A policy of `ok`: every firing series resolved without a verdict, with the reason."""
    for key, st in state.items():
        if key not in PSEUDO and st.state == "FIRING":
            res.events.append(Event(name, key, "resolved", st.last_bucket, since=st.since, detail=why))
            st.state, st.since, st.consecutive, st.last_notified = "OK", None, 0, now


def _no_data(project: Workspace, name: str, rule, state: dict[str, RuleState], res: EvalResult, now: datetime,
             complete: datetime, loaded: datetime, g: int) -> None:
    """NoData: no events for `no_data_after` (a stalled source), handled by the rule's `no_data` policy."""
    after = timedelta(seconds=parse_duration(rule.no_data_after) if rule.no_data_after else max(3 * g, 3600))
    if rule.mart is None:  # SQL: the newest bucket its query returns a row for
        last = load_series(project, name, rule, floor_time(complete - after, g), complete).last_row
        newest = last + timedelta(seconds=g) if last is not None else None
    else:
        newest = loaded if loaded > datetime.min else None
    stalled = newest is None or newest <= complete - after
    st = state.get(NODATA_KEY) or RuleState()
    if stalled and st.state != "NODATA":
        state[NODATA_KEY] = RuleState("NODATA", now, 0, newest, now)
        if rule.no_data == "alert":
            # the last day of its (first) series, the silence since the newest event drawn as the band
            keys = [k for k in state if k not in PSEUDO] or [ALL]
            drawn = newest is not None and targets(project.config, name, rule)
            chart = _chart(project, name, rule, keys[0], complete - timedelta(seconds=g), newest, "no data") \
                if drawn else None
            res.events.append(Event(name, NODATA_KEY, "nodata", newest, chart=chart))
    elif not stalled and st.state == "NODATA":
        if rule.no_data == "alert":
            res.events.append(Event(name, NODATA_KEY, "resolved", newest))
        state[NODATA_KEY] = RuleState()
    if stalled and rule.no_data == "ok":
        _resolve_all(name, state, res, now, "treated as OK: no data")


def _judge(project: Workspace, name: str, rule, state: dict[str, RuleState], res: EvalResult, now: datetime) -> None:
    g = rule_grain(project, rule)
    complete = floor_time(now, g)
    fresh = freshness_end(project, rule, complete)
    loaded = loaded_end(project, rule, complete)
    # late: the mart has not been run for more than a bucket of events that are loaded already
    if fresh < loaded - timedelta(seconds=g):
        if state.get(LATE_KEY, RuleState()).state != "LATE":
            res.events.append(Event(name, LATE_KEY, "late", fresh if fresh > datetime.min else None))
            state[LATE_KEY] = RuleState("LATE", now, 0, None, now)
    elif LATE_KEY in state and state[LATE_KEY].state == "LATE":
        state[LATE_KEY].state = "OK"
    _no_data(project, name, rule, state, res, now, complete, loaded, g)
    if fresh <= datetime.min:
        return
    last_seen = [s.last_bucket for k, s in state.items() if k not in PSEUDO and s.last_bucket is not None]
    start = min(last_seen) + timedelta(seconds=g) if last_seen else fresh - timedelta(seconds=g * rule.for_)
    start = max(start, fresh - timedelta(days=7))  # a long outage is not replayed bucket by bucket
    if start >= fresh:
        return
    firing = frozenset(k for k, s in state.items() if s.state == "FIRING")
    v = judge(project, name, rule, start, fresh, keep=firing)
    times = v.series.times
    remind = timedelta(seconds=parse_duration(rule.remind)) if rule.remind else None
    drawn = bool(targets(project.config, name, rule))  # a chart only for messages that go somewhere
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
                    chart = _chart(project, name, rule, key, t, st.since) if drawn else None
                    res.events.append(Event(name, key, "fired", t, value, lo, hi, st.since, prev, chart=chart))
            else:
                if st.state == "FIRING":
                    chart = _chart(project, name, rule, key, t, st.since) if drawn else None
                    res.events.append(Event(name, key, "resolved", t, value, lo, hi, st.since, chart=chart))
                    st.state, st.since, st.last_notified = "OK", None, now
                st.consecutive = 0
        if st.state == "FIRING" and remind and st.last_notified is not None and now - st.last_notified >= remind:
            chart = _chart(project, name, rule, key, st.last_bucket, st.since) if drawn else None
            res.events.append(Event(name, key, "reminder", st.last_bucket, st.value, st.lower, st.upper, st.since,
                                    chart=chart))
            st.last_notified = now
        state[key] = st


def _f(x: Any) -> float | None:
    return None if x is None or (isinstance(x, float) and np.isnan(x)) else float(x)


# --- jobs and commands ------------------------------------------------------------------------------


def evaluate_job(project: Workspace, job: str, now: datetime, attempt: int = 1) -> RunResult:
    spec = project.config.schedules[job]
    names = spec.alerts or list(project.config.alerts)
    events, failures, t0 = 0, [], time.perf_counter()
    for r in evaluate_many(project, names, now):
        if r.error:
            failures.append(f"{r.rule}: {r.error}")
        events += len(r.events)
        failures += [f"{r.rule} → {ch}: {d}" for ch, st, d in r.deliveries if st == "failed"]
    return RunResult("_alerts", now, now, "failed" if failures else "ok", events, time.perf_counter() - t0,
                     "; ".join(failures)[:500] or None, attempt)


def summarize(incs: list[Incident], until: datetime) -> dict[str, Any]:
    by = defaultdict(list)
    for i in incs:
        by[i.series].append(i)
    return {"incidents": len(incs), "series": {k: len(v) for k, v in by.items()},
            "minutes": sum(i.minutes(until) for i in incs)}
