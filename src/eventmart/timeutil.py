"""Grains, half-open UTC windows and their alignment.

Every window is ``[start, end)`` in naive UTC datetimes; an event belongs to the bucket
``floor(time to grain)``. Grains divide a day evenly, so day windows always align.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

from .errors import UserError

_UNITS = {"second": 1, "minute": 60, "hour": 3600, "day": 86400}
_GRAIN_RE = re.compile(r"^\s*(\d+)?\s*(second|minute|hour|day)s?\s*$")
_DAY = 86400
EPOCH = datetime(1970, 1, 1)
ORIGIN = datetime(1970, 1, 5)  # a Monday at midnight: where time buckets count from


def parse_grain(text: str) -> int:
    """'1 minute', '15 minutes', 'hour', '1 day' -> seconds. Raises ValueError when unusable."""
    m = _GRAIN_RE.match(text.lower())
    if not m:
        raise ValueError(f"'{text}' is not a grain; use e.g. '1 minute', '15 minutes', '1 hour', '1 day'")
    seconds = int(m.group(1) or 1) * _UNITS[m.group(2)]
    if seconds < 60 or seconds > _DAY or _DAY % seconds:
        raise ValueError(f"grain '{text}' must be between 1 minute and 1 day and divide a day evenly")
    return seconds


_SPAN_RE = re.compile(r"^\s*last\s+(\d+)?\s*(minute|hour|day|week)s?\s*$")


def parse_last(text: str) -> int:
    """'last 24 hours', 'last 7 days', 'last week' -> seconds. Raises ValueError when unusable."""
    m = _SPAN_RE.match(text.lower())
    if not m:
        raise ValueError(f"'{text}' is not a range; use 'all' or e.g. 'last 30 minutes', 'last 24 hours', 'last 7 days'")
    return int(m.group(1) or 1) * {**_UNITS, "week": 7 * _DAY}[m.group(2)]


_DURATION_RE = re.compile(r"^\s*(\d+)?\s*(second|minute|hour|day|week)s?\s*$")


_SHORT_RE = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$")
_SHORT = {"s": 1, "m": 60, "h": 3600, "d": _DAY, "w": 7 * _DAY}


def parse_duration(text: str) -> int:
    """'30 seconds', '1 minute', '2 hours', '1 week', or short: '30s', '15m', '2h', '1d', '1w' -> seconds."""
    short = _SHORT_RE.match(str(text).lower())
    if short:
        return int(short.group(1)) * _SHORT[short.group(2)]
    m = _DURATION_RE.match(str(text).lower())
    if not m:
        raise ValueError(f"'{text}' is not a duration; use e.g. '30 seconds', '1 minute', '2 hours' or 2h")
    return int(m.group(1) or 1) * {**_UNITS, "week": 7 * _DAY}[m.group(2)]


def grain_label(seconds: int) -> str:
    if seconds % (7 * _DAY) == 0:
        n = seconds // (7 * _DAY)
        return f"{n} week" + ("s" if n != 1 else "")
    for unit in ("day", "hour", "minute"):
        n, rem = divmod(seconds, _UNITS[unit])
        if not rem:
            return f"{n} {unit}" + ("s" if n != 1 else "")
    return f"{seconds} seconds"


def utcnow() -> datetime:
    """Now as a naive UTC datetime, whole seconds."""
    return datetime.now(UTC).replace(tzinfo=None, microsecond=0)


def utcnow_precise() -> datetime:
    """Now as a naive UTC datetime with microseconds (the run ledger's order)."""
    return datetime.now(UTC).replace(tzinfo=None)


def parse_time(text: str, what: str = "time") -> datetime:
    """Parse an ISO time from the CLI as UTC; an offset, if given, is converted to UTC."""
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    except ValueError:
        raise UserError(f"{what} '{text}' is not an ISO time; use e.g. 2019-09-24 or '2019-09-24 18:00'") from None
    if t.tzinfo is not None:
        t = t.astimezone(UTC).replace(tzinfo=None)
    return t


def floor_time(t: datetime, grain: int) -> datetime:
    """Buckets count from ORIGIN on every engine: midnight UTC for grains that divide a day, Monday for weeks."""
    s = int((t - ORIGIN).total_seconds())
    return ORIGIN + timedelta(seconds=s - s % grain)


def ceil_time(t: datetime, grain: int) -> datetime:
    f = floor_time(t, grain)
    return f if f == t else f + timedelta(seconds=grain)


def is_aligned(t: datetime, grain: int) -> bool:
    return floor_time(t, grain) == t and t.microsecond == 0


def chunks(start: datetime, end: datetime, size: int) -> Iterator[tuple[datetime, datetime]]:
    """Split [start, end) into consecutive pieces at most ``size`` seconds long, cut on multiples of size."""
    t = start
    while t < end:
        nxt = min(floor_time(t, size) + timedelta(seconds=size), end)
        yield t, nxt
        t = nxt


def merge_intervals(intervals: list[tuple[datetime, datetime]]) -> list[tuple[datetime, datetime]]:
    out: list[tuple[datetime, datetime]] = []
    for s, e in sorted(intervals):
        if out and s <= out[-1][1]:
            if e > out[-1][1]:
                out[-1] = (out[-1][0], e)
        else:
            out.append((s, e))
    return out


def subtract_intervals(
    span: tuple[datetime, datetime], covered: list[tuple[datetime, datetime]]
) -> list[tuple[datetime, datetime]]:
    """The parts of ``span`` not covered by the (merged) ``covered`` intervals."""
    gaps = []
    cur, end = span
    for s, e in merge_intervals(covered):
        if e <= cur or s >= end:
            continue
        if s > cur:
            gaps.append((cur, s))
        cur = max(cur, e)
    if cur < end:
        gaps.append((cur, end))
    return gaps


def fmt(t: datetime) -> str:
    return t.strftime("%Y-%m-%d %H:%M:%S") if t.second else t.strftime("%Y-%m-%d %H:%M")


# --- comparison periods: "compared with what?" -------------------------------------------------------

COMPARISONS = {"previous": "the previous period", "week": "a week earlier", "month": "a month earlier",
               "year": "a year earlier"}


def add_months(t: datetime, n: int) -> datetime:
    """``t`` moved by ``n`` calendar months; the 31st becomes the month's last day where it has fewer."""
    import calendar

    y, m = divmod(t.month - 1 + n, 12)
    year, month = t.year + y, m + 1
    return t.replace(year=year, month=month, day=min(t.day, calendar.monthrange(year, month)[1]))


def earlier(t: datetime, how: str, span: timedelta) -> datetime:
    """Where ``t`` of a period ``span`` long falls in the comparison period ``how`` (one of COMPARISONS)."""
    if how == "previous":
        return t - span
    if how == "week":
        return t - timedelta(days=7)
    return add_months(t, -1 if how == "month" else -12)


def later(t: datetime, how: str, span: timedelta) -> datetime:
    """The inverse of :func:`earlier`: a time of the comparison period drawn on the current one."""
    if how == "previous":
        return t + span
    if how == "week":
        return t + timedelta(days=7)
    return add_months(t, 1 if how == "month" else 12)


def comparison_span(window: tuple[datetime, datetime], grain: int | None = None) -> timedelta:
    """How far back "the previous period" lies: the window's length, rounded up to whole buckets of ``grain`` so
    that a series' earlier buckets fall on its current ones."""
    span = window[1] - window[0]
    if grain:
        span = timedelta(seconds=-(-span.total_seconds() // grain) * grain)
    return span


def comparison(window: tuple[datetime, datetime], how: str, grain: int | None = None) -> tuple[datetime, datetime]:
    """The comparison period of ``window``: the previous one of equal length (in whole ``grain`` buckets, for a
    series), or the same one a week, a month or a year earlier."""
    if how not in COMPARISONS:
        raise ValueError(f"'{how}' is not a comparison; use one of {', '.join(COMPARISONS)}")
    span = comparison_span(window, grain)
    return earlier(window[0], how, span), earlier(window[1], how, span)
