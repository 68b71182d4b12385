"""The scheduler: cron jobs (croniter) that run mart windows and backups, with catch-up and retries.

A job does not remember fire times; it looks at the run ledger. At each fire (and once at start-up)
a mart job runs the windows that closed since the mart's last covered window — so downtime, a failed
night or a new mart are caught up the same way, oldest first, one bounded window at a time — plus
the last ``lookback`` windows again for late events. Missed fires while the process was down are not
replayed one by one: the next fire sees every missing window at once (no storm).

Time comes from a :class:`Clock`, so tests drive the scheduler without sleeping.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING
from zoneinfo import ZoneInfo

from croniter import croniter

from ..config import Schedule
from ..marts import RunResult, mark_interrupted
from ..timeutil import fmt, parse_time, subtract_intervals

if TYPE_CHECKING:
    from ..project import Project


class Clock:
    """Wall-clock time as naive UTC; tests substitute a clock they move by hand."""

    def now(self) -> datetime:
        return datetime.now(UTC).replace(tzinfo=None)

    def wait(self, stop: threading.Event, seconds: float) -> None:
        stop.wait(max(0.0, seconds))


def next_fire(job: Schedule, after: datetime) -> datetime:
    """The first fire time strictly after ``after`` (naive UTC), reading the cron in the job's zone."""
    tz = ZoneInfo(job.timezone)
    local = after.replace(tzinfo=UTC).astimezone(tz)
    nxt = croniter(job.cron, local).get_next(datetime)
    return nxt.astimezone(UTC).replace(tzinfo=None)


def previous_fire(job: Schedule, at: datetime) -> datetime:
    tz = ZoneInfo(job.timezone)
    local = at.replace(tzinfo=UTC).astimezone(tz)
    return croniter(job.cron, local).get_prev(datetime).astimezone(UTC).replace(tzinfo=None)


@dataclass(frozen=True)
class Planned:
    mart: str
    start: datetime
    end: datetime
    lookback: bool = False  # re-opening a covered window for late events

    def line(self) -> str:
        return f"{self.mart} [{fmt(self.start)}, {fmt(self.end)})" + (" (lookback)" if self.lookback else "")


@dataclass
class Retry:
    due: datetime
    job: str
    planned: Planned | None  # None: a backup
    attempt: int


def plan_marts(project: Project, name: str, job: Schedule, now: datetime) -> list[Planned]:
    """The windows a mart job runs at ``now``: closed since the last covered window, plus lookback."""
    runner = project.runner
    out: list[Planned] = []
    size = job.window_seconds
    for mart in job.marts or list(project.config.marts):
        end = runner.floor_chunk(mart, now, size)
        span = runner.data_span(mart)
        if span is not None:  # windows after the last event would only record emptiness: stop at the data
            end = min(end, runner.ceil_chunk(mart, span[1], size))
        # data_span already starts at the mart's `start`; without a source table only `start` is known
        start = project.config.marts[mart].start
        lo = span[0] if span else (runner.floor(mart, runner.from_user(mart, parse_time(start, "start")))
                                   if start else None)
        covered = runner.covered(mart)
        if lo is None and covered:
            lo = covered[0][0]
        if lo is None:
            continue
        lo = runner.floor_chunk(mart, lo, size)  # whole windows, as the scheduler runs them
        if lo >= end:
            continue
        missing = [w for gs, ge in subtract_intervals((lo, end), covered) for w in runner.windows(mart, gs, ge, size)]
        # lookback: the N windows before the newest closed one, run again for events that came late
        back = []
        if job.lookback:
            newest = runner.last_windows(mart, end, 1, size)[0]
            back = runner.last_windows(mart, newest[0], job.lookback, size)
        back = [w for w in back if w[0] >= lo and w not in missing]
        if job.catchup == "latest" and missing:
            missing = missing[-1:]
        if job.catchup == "coalesce" and (missing or back):
            first = min([w[0] for w in missing + back])
            out.append(Planned(mart, first, end, lookback=not missing))
            continue
        windows = sorted([(w, False) for w in missing] + [(w, True) for w in back])
        out.extend(Planned(mart, s, e, lb) for (s, e), lb in windows)
    return out


class Scheduler:
    def __init__(self, project: Project, clock: Clock | None = None, say: Callable[[str], None] = print):
        self.project = project
        self.clock = clock or Clock()
        self.say = say
        self.jobs = project.config.schedules
        self.next: dict[str, datetime] = {}
        self.retries: list[Retry] = []
        self.stop_event = threading.Event()
        self.thread: threading.Thread | None = None
        self.last_error: dict[str, str] = {}

    # --- one step at a time (what tests drive) --------------------------------------------------
    def start_up(self, now: datetime) -> list[RunResult]:
        """Mark interrupted runs, then catch every job up once; later fires follow the cron."""
        with self.project.lock:
            n = mark_interrupted(self.project.warehouse)
        if n:
            self.say(f"{n} run(s) interrupted by a previous stop are marked failed")
        results: list[RunResult] = []
        for name in self.jobs:
            results += self.run_job(name, now, catching_up=True)
            self.next[name] = next_fire(self.jobs[name], now)
        return results

    def tick(self, now: datetime) -> list[RunResult]:
        """Run what is due at ``now``: retries whose delay passed, then jobs whose fire time came."""
        results: list[RunResult] = []
        due, self.retries = [r for r in self.retries if r.due <= now], [r for r in self.retries if r.due > now]
        for r in sorted(due, key=lambda r: r.due):
            results += self._attempt(r.job, r.planned, now, r.attempt)
        for name, job in self.jobs.items():
            if name not in self.next:
                self.next[name] = next_fire(job, now)
            elif self.next[name] <= now:
                results += self.run_job(name, now)
                self.next[name] = next_fire(job, now)  # fires missed meanwhile collapse into this one
        return results

    def wake_at(self) -> datetime | None:
        times = list(self.next.values()) + [r.due for r in self.retries]
        return min(times) if times else None

    def run_job(self, name: str, now: datetime, catching_up: bool = False) -> list[RunResult]:
        job = self.jobs[name]
        if job.run == "alerts":  # catching up too: evaluation judges whatever completed meanwhile
            return self._attempt(name, None, now, 1)
        if job.run in ("backup", "report"):
            if catching_up:  # a backup or a digest is not owed for the time the server was down
                return []
            return self._attempt(name, None, now, 1)
        try:
            with self.project.lock:
                plan = plan_marts(self.project, name, job, now)
        except Exception as e:  # one broken job never stops the others
            self.last_error[name] = str(e)
            self.say(f"{name}: cannot plan: {e}")
            return []
        if plan and catching_up:
            self.say(f"{name}: catching up {len(plan)} window(s)")
        results: list[RunResult] = []
        for p in plan:
            if self.stop_event.is_set():
                break
            results += self._attempt(name, p, now, 1)
        return results

    def _attempt(self, name: str, p: Planned | None, now: datetime, attempt: int) -> list[RunResult]:
        job = self.jobs[name]
        trigger = f"schedule:{name}" + (":lookback" if p and p.lookback else "")
        with self.project.lock:
            if p is None and job.run == "alerts":
                res = self.project.alerts_job(name, now, attempt)
            elif p is None and job.run == "report":
                res = self.project.report_job(name, now, attempt)
            elif p is None:
                res = self.project.backup_job(name, now, attempt)
            else:
                res = self.project.runner.run_window(p.mart, p.start, p.end, trigger=trigger, attempt=attempt)
        self.say(f"{name}: {res.line()}" + (f" (attempt {attempt})" if attempt > 1 else ""))
        if res.status != "ok" and attempt <= job.retries:
            due = now + timedelta(seconds=job.retry_seconds)
            self.retries.append(Retry(due, name, p, attempt + 1))
            self.say(f"{name}: retry {attempt}/{job.retries} at {fmt(due)} UTC")
        return [res]

    # --- the background thread -----------------------------------------------------------------
    def loop(self) -> None:
        self.start_up(self.clock.now())
        while not self.stop_event.is_set():
            wake = self.wake_at()
            if wake is None:
                self.stop_event.wait()
                break
            self.clock.wait(self.stop_event, (wake - self.clock.now()).total_seconds())
            if self.stop_event.is_set():
                break
            try:
                self.tick(self.clock.now())
            except Exception as e:  # keep the scheduler alive; the ledger has the failed run
                self.say(f"scheduler: {type(e).__name__}: {e}")
                time.sleep(1)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.loop, name="eventmart-scheduler", daemon=True)
        self.thread.start()

    def stop(self, timeout: float = 30) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(timeout)
