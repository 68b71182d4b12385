"""The scheduler: cron jobs (croniter) with catch-up and retries; what a job does is in `jobs.py`.

A job does not remember fire times; it looks at the run ledger (`jobs.plan`). At each fire (and once at
start-up) a mart job runs the windows that closed since the mart's last covered window — so downtime, a
failed night or a new mart are caught up the same way, oldest first, one bounded window at a time — plus
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
from ..jobs import Planned, plan, run_task
from ..ledger import RunResult, mark_interrupted
from ..timeutil import fmt

if TYPE_CHECKING:
    from ..project import Project
    from .metrics import Metrics


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


@dataclass
class Retry:
    due: datetime
    job: str
    planned: Planned | None  # None: a backup
    attempt: int


class Scheduler:
    def __init__(self, project: Project, clock: Clock | None = None, say: Callable[[str], None] = print,
                 metrics: Metrics | None = None):
        self.project, self.metrics = project, metrics
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
        try:
            with self.project.lock:
                tasks = plan(self.project, name, now, catching_up)
        except Exception as e:  # one broken job never stops the others
            self.last_error[name] = str(e)
            self.say(f"{name}: cannot plan: {e}")
            return []
        if catching_up and any(t is not None for t in tasks):
            self.say(f"{name}: catching up {len(tasks)} window(s)")
        results: list[RunResult] = []
        for t in tasks:
            if self.stop_event.is_set():
                break
            results += self._attempt(name, t, now, 1)
        return results

    def _attempt(self, name: str, p: Planned | None, now: datetime, attempt: int) -> list[RunResult]:
        job = self.jobs[name]
        t = time.perf_counter()
        res = run_task(self.project, name, p, now, attempt)
        if self.metrics is not None:
            self.metrics.observe_job(name, res.status, time.perf_counter() - t)
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
