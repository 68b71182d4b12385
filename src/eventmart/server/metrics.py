"""``/metrics``: the process as Prometheus sees it, so an existing Prometheus and Grafana can watch eventmart.

What the warehouse records (mart runs, loads, alert states) is read at scrape time from the ledgers, so the
figures survive restarts and count work done by other processes (the CLI, Airflow) too. What only this process
knows (its scheduler's jobs) is counted in memory. prometheus_client writes the exposition format.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, SummaryMetricFamily
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    import flask

    from ..workspace import Workspace


def _ts(t) -> float:
    import calendar

    return float(calendar.timegm(t.timetuple())) + t.microsecond / 1e6


class WarehouseCollector(Collector):
    """Gauges and counters read from the run ledger, the ingest log, the alert state and Kafka offsets."""

    def __init__(self, project: Workspace):
        self.project = project

    def collect(self) -> Iterator:
        from ..alerts.store import STATE
        from ..ledger import RUNS
        from ..rawtables import INGESTS

        wh = self.project.warehouse
        q = wh.q
        ok = GaugeMetricFamily("eventmart_up", "1: the scrape read the warehouse", value=1)
        try:
            if wh.concurrent_table_exists(RUNS):
                runs = CounterMetricFamily("eventmart_mart_runs", "mart window runs by outcome",
                                           labels=["mart", "status"])
                secs = SummaryMetricFamily("eventmart_mart_run_seconds", "time spent running mart windows",
                                           labels=["mart"])
                last = GaugeMetricFamily("eventmart_mart_last_success_window_end_seconds",
                                         "end of the newest window that ran ok (unix time)", labels=["mart"])
                for mart, status, n, total, end in wh.concurrent_fetch(
                        f"SELECT mart, status, count(*), sum(seconds), max(window_end) FROM {q(RUNS)} "
                        "GROUP BY mart, status ORDER BY 1, 2").rows:
                    runs.add_metric([mart, status], n)
                    if status == "ok":
                        secs.add_metric([mart], n, float(total or 0))
                        if end is not None:
                            last.add_metric([mart], _ts(end))
                yield from (runs, secs, last)
            if wh.concurrent_table_exists(INGESTS):
                fams = {k: CounterMetricFamily(f"eventmart_source_rows_{k}", f"rows {k} by loads of each source",
                                               labels=["source"]) for k in ("loaded", "rejected", "duplicate")}
                newest = GaugeMetricFamily("eventmart_source_last_event_seconds",
                                           "the newest event time loaded (unix time)", labels=["source"])
                for src, loaded, rejected, dup, mx in wh.concurrent_fetch(
                        f"SELECT source, sum(loaded), sum(rejected), sum(duplicates), max(max_time) FROM {q(INGESTS)} "
                        "WHERE status IS NULL OR status <> 'undone' GROUP BY source ORDER BY 1").rows:
                    for k, v in (("loaded", loaded), ("rejected", rejected), ("duplicate", dup)):
                        fams[k].add_metric([src], int(v or 0))
                    if mx is not None:
                        newest.add_metric([src], _ts(mx))
                yield from (*fams.values(), newest)
            if wh.concurrent_table_exists(STATE):
                st = GaugeMetricFamily("eventmart_alert_state", "1 for each alert rule and series in its state",
                                       labels=["rule", "series", "state"])
                for rule, series, state in wh.concurrent_fetch(
                        f"SELECT rule, series, state FROM {q(STATE)} ORDER BY 1, 2").rows:
                    st.add_metric([rule, series, state], 1)
                yield st
        except Exception:  # a scrape never fails the server; eventmart_up says it did not read
            ok = GaugeMetricFamily("eventmart_up", "1: the scrape read the warehouse", value=0)
        yield from self.kafka()
        yield ok

    def kafka(self) -> Iterator:
        sources = [n for n, s in self.project.config.sources.items() if s.kafka is not None]
        if not sources:
            return
        lag = GaugeMetricFamily("eventmart_kafka_lag", "messages in a partition not yet loaded",
                                labels=["source", "partition"])
        for name in sources:
            try:
                from ..sources.kafka import lag as partition_lag

                for part, _next, _end, behind in partition_lag(self.project.warehouse, name,
                                                               self.project.config.sources[name], concurrent=True):
                    lag.add_metric([name, str(part)], behind)
            except Exception:  # the broker is away: no figure rather than a stale one
                continue
        yield lag


class Metrics:
    """The process's own counters, and the registry /metrics answers from."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.jobs = Counter("eventmart_job_runs", "scheduled job runs by outcome", ["job", "status"],
                            registry=self.registry)
        self.job_seconds = Histogram("eventmart_job_seconds", "how long a scheduled job's run took", ["job"],
                                     registry=self.registry,
                                     buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600))
        self._lock = threading.Lock()

    def observe_job(self, job: str, status: str, seconds: float) -> None:
        self.jobs.labels(job, status).inc()
        self.job_seconds.labels(job).observe(seconds)

    def watch(self, project: Workspace) -> None:
        with self._lock:
            self.registry.register(WarehouseCollector(project))


def register(server: flask.Flask, project: Workspace, metrics: Metrics) -> None:
    import flask

    metrics.watch(project)

    @server.get("/metrics")
    def prometheus():
        t = time.perf_counter()
        body = generate_latest(metrics.registry)
        took = f"# eventmart scrape took {time.perf_counter() - t:.3f}s\n".encode()
        return flask.Response(body + took, mimetype="text/plain; version=0.0.4; charset=utf-8")


__all__ = ["Metrics", "register"]
