"""What a scheduled job does, decided once: `eventmart serve`'s scheduler and the Airflow export both call here.

A job is planned at a fire time (:func:`plan`) into tasks — the mart windows to run, or the job's one action
(a backup, yesterday's report, an alert check, loading new files or objects, a vault load) — and each task runs
with :func:`run_task`. The scheduler adds
its retries and catch-up around that; an Airflow task runs the same plan for its data interval.

A mart job does not remember fire times; it looks at the run ledger. At each fire it runs the windows that
closed since the mart's first window and are not covered — up to the last loaded event, never beyond it and
never before the first — plus the last ``lookback`` windows again for late events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from .config import Schedule
from .errors import UserError
from .ledger import RunResult, recorded
from .timeutil import fmt, parse_time, subtract_intervals

if TYPE_CHECKING:
    from .project import Project


@dataclass(frozen=True)
class Planned:
    """One mart window a job runs."""

    mart: str
    start: datetime
    end: datetime
    lookback: bool = False  # re-opening a covered window for late events

    def line(self) -> str:
        return f"{self.mart} [{fmt(self.start)}, {fmt(self.end)})" + (" (lookback)" if self.lookback else "")


# a task is a mart window, or None: the job's single action (backup, report, alerts)
Task = Planned | None


def plan_marts(project: Project, name: str, job: Schedule, now: datetime) -> list[Planned]:
    """The windows a mart job runs at ``now``: closed since the mart's first window and not covered, plus lookback.

    Windows never lie outside the data: none wholly before the first event (or the mart's `start`) or after the
    last loaded event, so no run records an emptiness that is only "no data yet".
    """
    runner = project.runner
    out: list[Planned] = []
    size = job.window_seconds
    for mart in job.marts or list(project.config.marts):
        end = runner.floor_chunk(mart, now, size)
        span = runner.data_span(mart)
        if span is not None:  # whole windows up to the one holding the last event
            end = min(end, runner.ceil_chunk(mart, span[1], size))
        # data_span already starts at the mart's `start`; without a source table only `start` is known
        start = project.config.marts[mart].start
        first = span[0] if span else (runner.floor(mart, runner.from_user(mart, parse_time(start, "start")))
                                      if start else None)
        covered = runner.covered(mart)
        if first is None and covered:
            first = covered[0][0]
        if first is None:
            continue
        lo = runner.floor_chunk(mart, first, size)  # whole windows where the data allows
        if lo >= end:
            continue
        # a gap wholly before the first event or after the last is no data, not a missing window
        last = span[1] if span else end
        missing = [w for gs, ge in subtract_intervals((lo, end), covered) if ge > first and gs < last
                   for w in runner.windows(mart, gs, ge, size)]
        # lookback: the N windows before the newest closed one, run again for events that came late
        back = []
        if job.lookback:
            newest = runner.last_windows(mart, end, 1, size)[0]
            back = runner.last_windows(mart, newest[0], job.lookback, size)
        back = [(max(s, lo), min(e, end)) for s, e in back]
        back = [w for w in back if w[0] < w[1] and w not in missing]
        if job.catchup == "latest" and missing:
            missing = missing[-1:]
        if job.catchup == "coalesce" and (missing or back):
            first = min([w[0] for w in missing + back])
            out.append(Planned(mart, first, end, lookback=not missing))
            continue
        windows = sorted([(w, False) for w in missing] + [(w, True) for w in back])
        out.extend(Planned(mart, s, e, lb) for (s, e), lb in windows)
    return out


def plan(project: Project, name: str, now: datetime, catching_up: bool = False) -> list[Task]:
    """The tasks job ``name`` runs when it fires at ``now`` (or, ``catching_up``, when a server starts)."""
    job = project.config.schedules[name]
    if job.run == "marts":
        return list(plan_marts(project, name, job, now))
    if job.run in ("backup", "report") and catching_up:
        return []  # a backup or a digest is not owed for the time the server was down
    return [None]  # alerts, ingest, vault: catching up too (they take whatever is there)


def run_task(project: Project, name: str, task: Task, now: datetime, attempt: int = 1,
             trigger: str | None = None) -> RunResult:
    """Run one planned task of job ``name``; never raises for a failure the ledger can record."""
    job = project.config.schedules[name]
    trigger = trigger or f"schedule:{name}"
    with project.lock:
        if job.run == "marts":
            assert task is not None
            return project.runner.run_window(task.mart, task.start, task.end,
                                             trigger=trigger + (":lookback" if task.lookback else ""), attempt=attempt)
        if job.run == "backup":
            return _backup(project, name, now, attempt, trigger)
        if job.run == "report":
            return _report(project, name, now, attempt, trigger)
        if job.run == "ingest":
            return _ingest(project, name, now, attempt, trigger)
        if job.run == "vault":
            return _vault(project, now, attempt, trigger)
        return _alerts(project, name, now, attempt)


def _ingest(project: Project, name: str, now: datetime, attempt: int, trigger: str) -> RunResult:
    """New and changed files (or S3 objects) of the job's sources, recorded as `_ingest` with the rows loaded;
    a source with nothing new is no failure."""
    spec = project.config.schedules[name]
    sources = spec.sources or [s for s, src in project.config.sources.items() if src.paths or src.s3
                               or src.format == "postgres"]
    with recorded(project.warehouse, "_ingest", now, now, trigger, attempt) as rec:
        notes = []
        for s in sources:
            res = project.ingest(s)
            rec.rows += res.loaded
            notes.append(f"{s}: {res.loaded} loaded, {res.rejected} rejected"
                         + (f", {len(res.bad_files)} file(s) not read" if res.bad_files else ""))
        rec.note = "; ".join(notes)[:500]
    return rec.result


def _vault(project: Project, now: datetime, attempt: int, trigger: str) -> RunResult:
    """A vault load (hubs, links, satellites from what the raw tables gained), recorded as `_vault`."""
    with recorded(project.warehouse, "_vault", now, now, trigger, attempt) as rec:
        res = project.vault_load()
        rec.rows = sum(r.rows for r in res)
        missing = sum(n for r in res for n in r.orphans.values())
        rec.note = f"{missing} link row(s) with a missing hub key" if missing else None
    return rec.result


def _backup(project: Project, name: str, now: datetime, attempt: int, trigger: str) -> RunResult:
    """A backup, recorded in the run ledger as mart `_backup`."""
    spec = project.config.schedules[name]
    with recorded(project.warehouse, "_backup", now, now, trigger, attempt) as rec:
        b = project.backup(spec.dir, spec.keep)
        rec.rows, rec.note = sum(b.tables.values()), b.path.name
    return rec.result


def _report(project: Project, name: str, now: datetime, attempt: int, trigger: str) -> RunResult:
    """Yesterday's digest (relative to the fire time); each channel has its own ledger row."""
    spec = project.config.schedules[name]
    day = (now - timedelta(days=1)).date()
    try:
        res = project.report(spec.report, day, trigger=trigger)
    except UserError as e:
        return RunResult(f"_report:{spec.report}", now, now, "failed", 0, 0.0, str(e)[:500], attempt)
    failed = [d for d in res.deliveries if d.status != "ok"]
    return RunResult(f"_report:{spec.report}", now, now, "failed" if failed else "ok",
                     len(res.deliveries) - len(failed), 0.0, "; ".join(d.detail for d in failed) or None, attempt)


def _alerts(project: Project, name: str, now: datetime, attempt: int) -> RunResult:
    from .alerts.engine import evaluate_job

    return evaluate_job(project, name, now, attempt)


def run_job(project: Project, name: str, now: datetime, trigger: str | None = None) -> list[RunResult]:
    """Plan and run every task of job ``name`` at ``now``, once each (what an Airflow task does)."""
    return [run_task(project, name, t, now, trigger=trigger) for t in plan(project, name, now)]
