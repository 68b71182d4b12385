"""Kafka sources consumed continuously inside `eventmart serve`, with the marts kept live.

One thread per Kafka source reads its topic batch by batch (the same exactly-once path as `eventmart ingest`),
holding the server's writer lock only while a batch commits. After a batch, the windows its rows fall in — and
those of the rows they join — are re-opened and run again at once (at most every ``refresh`` seconds), the
window still filling included: dashboards show events seconds after they were produced.
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..project import Project


class Streams:
    def __init__(self, project: Project, say, refresh: float = 1.0):
        self.project, self.say, self.refresh = project, say, refresh
        self.stop_event = threading.Event()
        self.threads: list[threading.Thread] = []
        self.batches = 0
        self.last_refresh = 0.0
        self.errors: dict[str, str] = {}
        self.pending: set[str] = set()

    @property
    def sources(self) -> list[str]:
        return [n for n, s in self.project.config.sources.items() if s.kafka is not None]

    def marts_of(self, source: str) -> list[str]:
        cfg = self.project.config
        return [n for n, m in cfg.marts.items() if m.from_ == source or source in (m.joins or {})]

    def on_batch(self, source: str, res, spans) -> None:
        """A batch committed: re-open the windows it touched; run them now, or within ``refresh`` seconds."""
        p = self.project
        self.batches += 1
        with p.lock:
            p.reopen(source, spans, res.id)
            self.pending.update(self.marts_of(source))
        if time.monotonic() - self.last_refresh >= self.refresh:
            self.run_pending()

    def run_pending(self) -> None:
        p = self.project
        with p.lock:
            marts, self.pending = sorted(self.pending), set()
            self.last_refresh = time.monotonic()
            if marts:
                for r in p.runner.backfill(marts, None, None):
                    if r.status != "ok":
                        self.say(f"{r.line()}")

    def refresher(self) -> None:
        """Batches that came in faster than ``refresh`` are run here, at most ``refresh`` seconds later."""
        while not self.stop_event.wait(self.refresh):
            if self.pending:
                try:
                    self.run_pending()
                except Exception as e:  # the next batch tries again
                    self.say(f"refreshing marts failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")

    def run(self, source: str) -> None:
        from ..sources.kafka import consume

        p = self.project
        src = p.config.sources[source]
        dims = [d.name for m in p.config.marts.values() if m.from_ == source for d in m.dimensions]
        while not self.stop_event.is_set():
            try:
                consume(p.warehouse, source, src, drain=False, stop=self.stop_event, dimensions=dims,
                        on_batch=lambda res, spans: self.on_batch(source, res, spans), lock=p.lock)
            except Exception as e:  # a broker away, a topic missing: say it, wait, try again
                msg = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
                if self.errors.get(source) != msg:
                    self.say(f"kafka source {source}: {msg}; retrying")
                self.errors[source] = msg
                self.stop_event.wait(5)

    def start(self) -> None:
        if not self.sources:
            return
        for s in self.sources:
            t = threading.Thread(target=self.run, args=(s,), daemon=True, name=f"eventmart-kafka-{s}")
            t.start()
            self.threads.append(t)
        t = threading.Thread(target=self.refresher, daemon=True, name="eventmart-kafka-refresh")
        t.start()
        self.threads.append(t)

    def stop(self) -> None:
        self.stop_event.set()
        for t in self.threads:
            t.join(15)


class Publisher:
    """Every ``every`` seconds, if a mart ran since the last time, the marts go to ``bi.duckdb`` for BI tools (an
    embedded warehouse only: a server's clients read it directly)."""

    def __init__(self, project: Project, say, every: float = 30.0):
        self.project, self.say, self.every = project, say, every
        self.stop_event = threading.Event()
        self.seen = None
        self.thread: threading.Thread | None = None

    def version(self):
        from ..ledger import RUNS

        wh = self.project.warehouse
        if not wh.concurrent_table_exists(RUNS):
            return None
        return tuple(wh.concurrent_fetch(f"SELECT count(*), max(seq) FROM {wh.q(RUNS)} WHERE status = 'ok'").rows[0])

    def tick(self) -> None:
        v = self.version()
        if v is not None and v != self.seen:
            if self.project.publish() is None:
                self.stop_event.set()  # a server's warehouse: nothing to publish, ever
            self.seen = v

    def run(self) -> None:
        while not self.stop_event.is_set():
            try:
                self.tick()
            except Exception as e:  # a full disk: say it, keep serving
                self.say(f"publishing bi.duckdb failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}")
            self.stop_event.wait(self.every)

    def start(self) -> None:
        self.thread = threading.Thread(target=self.run, daemon=True, name="eventmart-publish")
        self.thread.start()

    def stop(self) -> None:
        self.stop_event.set()
        if self.thread:
            self.thread.join(10)
