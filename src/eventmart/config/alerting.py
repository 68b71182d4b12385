"""Alerting: the rules (`alerts:`) and where their messages go (`alerting:` routes by label, grouping, mute timings
and message templates)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import Field, model_validator

from ..timeutil import parse_duration, parse_grain
from .base import NAME_RE, Strict, _at, check_timezone

WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class AlertRule(Strict):
    """An anomaly rule on a metric: a mart measure (or SQL), per series of `by`, judged by a detector."""

    mart: str | None = None  # the mart whose measure it watches (or `sql`)
    measure: str | None = None  # an aggregate over the mart's columns per bucket, e.g. sum(views)
    sql: str | None = None  # or: SQL reading {{ start }}/{{ end }}, returning bucket [, by columns], value
    grain: str | None = None  # default: the mart's grain
    by: list[str] = []  # one series per value (e.g. os)
    # auto (recommended: daily cycles, level shifts, counts or ratios, stuck values) | iqr | zscore | mad |
    # pct_change | seasonal | threshold
    detector: Literal["auto", "iqr", "zscore", "mad", "pct_change", "seasonal", "threshold"] = "auto"
    params: dict[str, Any] = {}  # the detector's: a, n, k, period, lag, threshold, lower, upper, min_spread, ...
    direction: Literal["up", "down", "both"] = "both"  # which way counts as anomalous
    min_history: int = Field(default=12, ge=0)  # buckets of history before a series is judged
    for_: int = Field(default=1, ge=1, alias="for")  # anomalous buckets in a row before it fires
    remind: str | None = None  # while firing, repeat every ... (e.g. "1 hour")
    cap: int = Field(default=10, ge=1)  # messages per channel per hour; the rest go out as one digest
    history: str = "2 days"  # how far back the detector may look (seasonal: at least k periods)
    fill: Literal["zero", "none"] = "zero"  # a bucket without rows: 0 (counts) or missing (ratios)
    channels: list[str] = []  # where its messages go
    dashboard: str | None = None  # a dashboard its messages link to
    base_url: str = "http://127.0.0.1:8050"  # where `eventmart serve` is reachable for readers
    title: str | None = None  # its messages' title (default: the rule's name)
    top: int | None = Field(default=None, ge=1)  # with `by`: only the N values with the most volume (firing ones stay)
    labels: dict[str, str] = {}  # for routing (alerting.routes match them), shown in messages
    severity: Literal["critical", "warning", "info"] = "warning"  # a label routes can match, shown in messages
    # no events from the source for `no_data_after`: alert (a NoData notice), keep (the last state) or ok (resolve)
    no_data: Literal["alert", "keep", "ok"] = "alert"
    no_data_after: str | None = None  # default: 3 buckets, at least 1 hour
    # the rule cannot be evaluated (bad SQL, warehouse down): alert (an Error notice), keep, or ok (resolve)
    on_error: Literal["alert", "keep", "ok"] = "alert"
    template: str | None = None  # a template of alerting.templates for its messages (else the route's, the default)

    @model_validator(mode="after")
    def _check(self) -> AlertRule:
        for k in self.labels:
            if not NAME_RE.match(k):
                raise _at("labels", f"'{k}' is not a label name; use letters, digits and _")
        if (self.mart is None) == (self.sql is None):
            raise ValueError("an alert rule takes `mart` + `measure`, or `sql`")
        if self.mart is not None and not self.measure:
            raise _at("measure", "an alert on a mart needs `measure` (e.g. sum(views))")
        if self.sql is not None and not self.grain:
            raise _at("grain", "an alert with `sql` needs its `grain`")
        for key in ("grain",):
            if getattr(self, key):
                parse_grain(getattr(self, key))
        if self.top is not None and not self.by:
            raise _at("top", "`top` picks values of `by`; give the dimension(s) in `by`")
        for key in ("remind", "history", "no_data_after"):
            if getattr(self, key):
                try:
                    parse_duration(getattr(self, key))
                except ValueError as e:
                    raise _at(key, str(e)) from None
        from .detectors import DetectorError, check_params

        try:
            check_params(self.detector, self.params, self.direction)
        except DetectorError as e:
            raise _at("params", str(e)) from None
        return self


class MuteInterval(Strict):
    """When a mute timing holds notifications back: on these weekdays, between these times (in its zone)."""

    weekdays: list[str] = []  # mon … sun, or ranges such as mon-fri; empty: every day
    times: list[str] = []  # HH:MM-HH:MM, may cross midnight (22:00-07:00); empty: the whole day
    timezone: str = "UTC"  # the zone the weekdays and times are read in

    @model_validator(mode="after")
    def _check(self) -> MuteInterval:
        check_timezone(self.timezone)
        for w in self.weekdays:
            try:
                weekday_set(w)
            except ValueError as e:
                raise _at("weekdays", str(e)) from None
        for t in self.times:
            try:
                minutes_span(t)
            except ValueError as e:
                raise _at("times", str(e)) from None
        return self


def weekday_set(text: str) -> set[int]:
    """'mon' -> {0}; 'fri-mon' -> {4, 5, 6, 0}."""
    parts = [p.strip().lower()[:3] for p in text.split("-")]
    if len(parts) > 2 or any(p not in WEEKDAYS for p in parts):
        raise ValueError(f"'{text}' is not a weekday or range; use mon … sun or e.g. mon-fri")
    a, b = WEEKDAYS.index(parts[0]), WEEKDAYS.index(parts[-1])
    return {(a + i) % 7 for i in range((b - a) % 7 + 1)}


def minutes_span(text: str) -> tuple[int, int]:
    """'22:00-07:00' -> (1320, 420): minutes of the day, start inclusive, end exclusive."""
    try:
        a, b = (p.strip() for p in text.split("-"))
        out = []
        for p in (a, b):
            h, m = p.split(":")
            if not (0 <= int(h) <= 24 and 0 <= int(m) < 60) or (int(h) == 24 and int(m)):
                raise ValueError
            out.append(int(h) * 60 + int(m))
    except ValueError:
        raise ValueError(f"'{text}' is not a time range; use HH:MM-HH:MM, e.g. 22:00-07:00") from None
    return out[0], out[1]


class Template(Strict):
    """A message's words, in Jinja (sandboxed): {{ rule }}, {{ title }}, {{ series }}, {{ event }}, {{ value }},
    {{ lower }}, {{ upper }}, {{ since }}, {{ bucket }}, {{ severity }}, {{ labels.team }}, {{ dashboard_url }},
    {{ explore_url }}; a grouped message also has {{ alerts }} (each with the same fields)."""

    title: str | None = None  # the first line (default: eventmart's)
    body: str | None = None  # the lines under it (default: eventmart's)


class Route(Strict):
    """Where the messages of rules whose labels match go; routes are tried in order, the first match wins."""

    match: dict[str, str | list[str]] = {}  # label: value (or any of a list); `severity` and `rule` too; {}: all
    channels: list[str]  # where the messages go
    # events of one check with equal values of these go out as one message: rule, series, severity or a label
    group_by: list[str] = ["rule"]
    mute: list[str] = []  # mute timings (alerting.mute_timings) during which messages are held, then digested
    template: str | None = None  # a template of alerting.templates (a rule's own wins)
    continue_: bool = Field(default=False, alias="continue")  # also try the routes after this one


class Alerting(Strict):
    """Routing of alert messages, shared by every rule."""

    routes: list[Route] = []  # by labels to channels (besides a rule's own `channels`)
    group_by: list[str] = ["rule"]  # grouping for a rule's own `channels`
    mute_timings: dict[str, list[MuteInterval]] = {}  # named; a route mutes during any of its intervals
    templates: dict[str, Template] = {}  # named message templates

    @model_validator(mode="after")
    def _check(self) -> Alerting:
        for name, t in self.templates.items():
            for key in ("title", "body"):
                text = getattr(t, key)
                if text is not None:
                    problem = template_problem(text)
                    if problem:
                        raise _at(f"templates.{name}.{key}", problem)
        return self


def template_problem(text: str) -> str | None:
    """Why a Jinja template cannot be used, or None (kept between processes: jinja2 takes 0.1 s to import)."""
    from .. import memo

    if memo.get("template", text):
        return None
    from jinja2 import TemplateSyntaxError
    from jinja2.sandbox import SandboxedEnvironment

    try:
        SandboxedEnvironment().parse(text)
    except TemplateSyntaxError as e:
        return f"template line {e.lineno}: {e.message}; see the Jinja syntax ({{{{ value }}}}, {{% if … %}})"
    memo.put("template", text, True)
    return None
