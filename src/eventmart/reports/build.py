"""Building a digest: a report's metrics for one day, its comparisons and its charts (matplotlib, server-side)."""

from __future__ import annotations

import io
import urllib.parse
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from ..config import Report
from ..delivery.charts import Chart
from ..errors import UserError
from ..measures import MeasureLayer, Query

if TYPE_CHECKING:
    from ..workspace import Workspace

COMPARE_LABEL = {"previous_day": "vs day before", "same_day_last_week": "vs week before",
                 "same_day_last_month": "vs month before", "same_day_last_year": "vs year before"}


def compare_day(day: date, key: str) -> date:
    """The day a digest's day is compared with: a day, a week, a calendar month or a year earlier (the 31st
    against the month before's last day)."""
    from ..timeutil import add_months

    if key in ("previous_day", "same_day_last_week"):
        return day - timedelta(days=1 if key == "previous_day" else 7)
    return add_months(datetime.combine(day, datetime.min.time()), -1 if key == "same_day_last_month" else -12).date()


@dataclass
class MetricValue:
    name: str
    label: str
    format: str
    value: float | None
    compare: dict[str, float | None] = field(default_factory=dict)  # compare key -> that day's value
    series: list[tuple[date, float | None]] = field(default_factory=list)

    def change(self, key: str) -> float | None:
        """Relative change vs a comparison day (None when either side is missing or zero)."""
        other = self.compare.get(key)
        if self.value is None or other in (None, 0):
            return None
        return (float(self.value) - float(other)) / abs(float(other))


@dataclass
class Digest:
    report: str
    title: str
    day: date
    metrics: list[MetricValue]
    charts: list[Chart]
    dashboard_url: str | None
    compare: list[str]

    def values(self) -> dict[str, Any]:
        return {m.name: m.value for m in self.metrics}


def _num(v: Any) -> float | int | Decimal | None:
    """A metric's value as the engine gave it when exact (an integer, a decimal: 27021597764222979 stays so), else
    a float."""
    if v is None or isinstance(v, (int, Decimal)) and not isinstance(v, bool):
        return v
    return float(v)


def latest_day(project: Workspace, report: Report) -> date:
    """The newest day the report's mart has rows for."""
    m = project.config.marts[report.mart]
    wh = project.warehouse
    if wh.table_columns(report.mart) is None:
        raise UserError(f"mart {report.mart} has no table yet; build it with `eventmart backfill {report.mart}`")
    last = wh.fetch(f"SELECT max({wh.q(m.time_column)}) FROM {wh.q(report.mart)}").rows[0][0]
    if last is None:
        raise UserError(f"mart {report.mart} is empty; run `eventmart backfill {report.mart}` first")
    return last.date() if isinstance(last, datetime) else last


def build(project: Workspace, name: str, day: date | None = None) -> Digest:
    report = project.config.reports[name]
    wh = project.warehouse
    day = day or latest_day(project, report)
    layer = MeasureLayer(project.config, wh)
    exprs = {k: layer.metric(report.mart, m.value, f"reports.{name}.metrics.{k}.value")
             for k, m in report.metrics.items()}
    back = max([7] + [c.days for c in report.charts] + [(day - compare_day(day, c)).days for c in report.compare])
    lo, hi = datetime.combine(day - timedelta(days=back), datetime.min.time()), \
        datetime.combine(day + timedelta(days=1), datetime.min.time())
    by_day: dict[date, dict[str, Any]] = {}
    for style in (True, False):  # measures by name and aggregates over buckets are separate queries
        part = {k: m for k, m in exprs.items() if m.over_buckets == style}
        if not part:
            continue
        sql, params, *_ = layer.sql(Query(report.mart, part, lo, hi, grain=86400))
        for r in wh.fetch(f"SELECT * FROM ({sql}) r ORDER BY 1", params).rows:
            d = r[0].date() if isinstance(r[0], datetime) else r[0]
            by_day.setdefault(d, {k: None for k in exprs}).update(zip(part, r[1:], strict=True))
    if day not in by_day:
        raise UserError(f"report {name}: mart {report.mart} has no rows for {day}; run the mart for that day "
                        f"(eventmart run {report.mart} --start {day} --end {day + timedelta(days=1)})")
    metrics = []
    for k, m in report.metrics.items():
        mv = MetricValue(k, m.label or k, m.format, _num(by_day[day][k]))
        for c in report.compare:
            other = by_day.get(compare_day(day, c))
            mv.compare[c] = _num(other[k]) if other else None
        days = max([c.days for c in report.charts if k in c.metrics] or [0])
        mv.series = [(d, _num(by_day[d][k]) if d in by_day else None)
                     for d in (day - timedelta(days=i) for i in range(days - 1, -1, -1))]
        metrics.append(mv)
    charts = [render_chart(c.title or ", ".join(report.metrics[m].label or m for m in c.metrics),
                           [mv for mv in metrics if mv.name in c.metrics], day, f"chart-{i + 1}.png")
              for i, c in enumerate(report.charts)]
    return Digest(name, report.title, day, metrics, charts, dashboard_link(report, day), list(report.compare))


def dashboard_link(report: Report, day: date) -> str | None:
    if not report.dashboard:
        return None
    days = max([c.days for c in report.charts] or [7])
    q = urllib.parse.urlencode({"from": f"{day - timedelta(days=days - 1)}T00:00", "to": f"{day + timedelta(days=1)}T00:00"})
    return f"{report.base_url.rstrip('/')}/d/{report.dashboard}/?{q}"


def render_chart(title: str, metrics: list[MetricValue], day: date, filename: str) -> Chart:
    import matplotlib

    matplotlib.use("Agg")  # no display: charts are files
    import matplotlib.pyplot as plt
    from matplotlib.ticker import FuncFormatter

    fig, ax = plt.subplots(figsize=(8, 3.4), dpi=110)
    percent = all(m.format == "percent" for m in metrics)
    for m in metrics:
        xs = [d for d, v in m.series if v is not None]
        ys = [v * (100 if percent else 1) for d, v in m.series if v is not None]
        ax.plot(xs, ys, marker="o", linewidth=2, label=m.label)
        if xs and xs[-1] == day:
            ax.annotate(_fmt_value(m.value, m.format), (xs[-1], ys[-1]), textcoords="offset points",
                        xytext=(0, 8), ha="center", fontsize=9)
    ax.set_title(title, loc="left", fontsize=12)
    ax.grid(alpha=0.3)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:.2f}%" if percent else f"{v:,.0f}"))
    ax.xaxis.set_major_formatter(matplotlib.dates.DateFormatter("%a %d.%m"))
    ax.spines[["top", "right"]].set_visible(False)
    if len(metrics) > 1:
        ax.legend(frameon=False, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return Chart(title, filename, buf.getvalue())


def _fmt_value(v: float | int | Decimal | None, fmt: str) -> str:
    """A metric as a reader sees it; integers and decimals keep every digit (no float on the way)."""
    if v is None:
        return "—"
    if fmt == "percent":
        return f"{v * 100:.2f}%"
    if fmt == "float":
        return f"{v:,.2f}"
    if isinstance(v, (int, Decimal)):
        return f"{round(v):,}"
    return f"{v:,.0f}"
