"""What goes out and when: `channels:`, `reports:` and `schedules:` (alert rules are in alerting.py)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ..timeutil import parse_duration, parse_grain
from .base import Strict, _at, check_timezone


class Channel(Strict):
    """Where reports (and alerts) go. Secrets come from ${VAR}; they are never printed."""

    type: Literal["telegram", "slack", "email", "webhook", "file"]  # how messages go out
    # telegram
    token: str | None = None
    chat_id: str | None = None  # telegram: the chat
    api_base: str = "https://api.telegram.org"  # telegram: the Bot API's address
    # slack
    webhook: str | None = None
    image_base_url: str | None = None  # slack: public URL where the report images are served
    # email
    host: str | None = None
    port: int | None = None  # email: the SMTP port (default: by security)
    security: Literal["starttls", "ssl", "none"] = "starttls"  # email: how the connection is secured
    user: str | None = None  # email: the SMTP login (use ${VAR})
    password: str | None = None  # email: its password (use ${VAR})
    sender: str | None = Field(default=None, alias="from")  # email: the From address
    ca_file: str | None = None  # email: CA certificates to trust (a private CA); default: the system's
    to: list[str] = []  # email: the recipients
    # webhook
    url: str | None = None
    secret: str | None = None  # HMAC-SHA256 of the body in X-Eventmart-Signature
    # file
    path: str = "reports"
    # delivery
    retries: int = Field(default=3, ge=0)
    backoff: float = Field(default=2.0, ge=0)  # seconds before the first retry; doubles
    timeout: float = Field(default=30.0, gt=0)  # seconds for one request

    @model_validator(mode="after")
    def _check(self) -> Channel:
        need = {"slack": ["webhook"], "email": ["host", "to"], "webhook": ["url"]}.get(self.type, [])
        for k in need:
            if not getattr(self, k):
                raise _at(k, f"a {self.type} channel needs `{k}`")
        return self


class Metric(Strict):
    value: str  # an aggregate over the report's mart rows of one day, e.g. sum(views)
    label: str | None = None  # default: the metric's name
    format: Literal["int", "float", "percent"] = "int"  # how the value is written


class ReportChart(Strict):
    metrics: list[str]  # the report's metrics it draws
    title: str | None = None  # default: the metrics' labels
    days: int = Field(default=7, ge=2, le=366)  # how many days it shows


class Report(Strict):
    title: str  # the digest's title
    mart: str  # the mart the metrics read
    metrics: dict[str, Metric]  # by name: what the digest reports for the day
    # days each metric is compared with
    compare: list[Literal["previous_day", "same_day_last_week", "same_day_last_month", "same_day_last_year"]] = [
        "previous_day", "same_day_last_week"]
    charts: list[ReportChart] = []  # charts of the last days
    dashboard: str | None = None  # a link to it, filtered to the charts' days
    base_url: str = "http://127.0.0.1:8050"  # where `eventmart serve` is reachable for readers
    channels: list[str] = ["files"]  # where it is sent

    @model_validator(mode="after")
    def _check(self) -> Report:
        for i, c in enumerate(self.charts):
            for m in c.metrics:
                if m not in self.metrics:
                    raise _at(f"charts.{i}.metrics", f"'{m}' is not one of this report's metrics")
        return self


def _valid_cron(expr: str) -> bool:
    """croniter's verdict, kept between processes (memo.py): every command checks the file's schedules, and
    importing croniter costs more than the rest of a minute's run does."""
    from .. import memo

    if memo.get("cron", expr):
        return True
    from croniter import croniter

    ok = croniter.is_valid(expr)
    if ok:
        memo.put("cron", expr, True)
    return ok


class Schedule(Strict):
    """A job run on a cron schedule by `eventmart serve` (or exported to Airflow)."""

    cron: str  # five-field cron expression, e.g. "15 3 * * *"
    timezone: str = "UTC"  # the zone the cron expression is read in
    run: Literal["marts", "backup", "report", "alerts", "ingest", "vault"] = "marts"  # what the job does
    marts: list[str] | None = None  # run: marts; default all marts
    sources: list[str] | None = None  # run: ingest; default all sources (their declared files or objects)
    window: str | None = None  # run: marts; window size per run (default: each mart's chunk)
    report: str | None = None  # run: report
    alerts: list[str] | None = None  # run: alerts; default all rules
    lookback: int = Field(default=0, ge=0)  # also re-run the last N windows (late events)
    # runs missed while the server was down: all, the latest, or one covering them
    catchup: Literal["all", "latest", "coalesce"] = "all"
    retries: int = Field(default=2, ge=0)  # tries after a failure
    retry_delay: str = "1 minute"  # wait before the first retry; doubles
    start: str | None = None  # first data interval when exported to Airflow (default: the marts' start or yesterday)
    keep: int = Field(default=4, ge=1)  # run: backup; copies kept
    dir: str = "backups"  # run: backup; folder (relative to the project)

    @model_validator(mode="after")
    def _check(self) -> Schedule:
        if len(self.cron.split()) != 5 or not _valid_cron(self.cron):
            raise _at("cron", f"'{self.cron}' is not a five-field cron expression (e.g. '15 3 * * *')")
        check_timezone(self.timezone)
        parse_duration(self.retry_delay)
        if self.window is not None:
            parse_grain(self.window)
        if self.run == "report" and not self.report:
            raise _at("report", "a report job names the report to send: report: <name>")
        if self.start is not None:
            from ..timeutil import parse_time

            try:
                parse_time(self.start, "start")
            except Exception:
                raise _at("start", f"'{self.start}' is not an ISO date or time") from None
        return self

    @property
    def retry_seconds(self) -> int:
        return parse_duration(self.retry_delay)

    @property
    def window_seconds(self) -> int | None:
        return parse_grain(self.window) if self.window else None
