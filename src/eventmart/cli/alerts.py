"""`eventmart alerts …`: check, test, backtest, evaluate, tune, silence, history, status."""

from __future__ import annotations

import csv
import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from ..timeutil import fmt
from .app import app
from .output import (
    FormatOpt,
    ProjectOpt,
    _cell,
    _csvnum,
    _emit,
    _format,
    _jsonable,
    _load,
    _num,
    err,
    out,
)

alerts_app = typer.Typer(help="Anomaly alerts: check, test, backtest, silence, history.", no_args_is_help=True,
                         rich_markup_mode=None)
app.add_typer(alerts_app, name="alerts")


@alerts_app.command("check")
def alerts_check(
    rules: Annotated[list[str] | None, typer.Argument(help="Rules (default: all).")] = None,
    now: Annotated[str | None, typer.Option("--now", help="Evaluate as of this UTC time (default: now).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Judge the buckets completed since the last check; fire, remind or resolve; notify."""
    with _load(project) as p:
        results = p.alerts_check(rules, now)
    from ..alerts.store import ERROR_KEY, NODATA_KEY

    for r in results:
        out.print(f"{r.rule}: {r.judged} bucket(s) judged, {len(r.events)} event(s)", markup=False)
        for e in r.events:
            if e.event == "late":
                out.print(f"  late: the mart holds data up to {fmt(e.bucket) if e.bucket else 'nothing'} UTC, events "
                          "after that are loaded but not built into it yet (eventmart backfill)", markup=False)
                continue
            if e.event == "nodata" or e.series == NODATA_KEY:
                out.print(f"  {'no data' if e.event == 'nodata' else 'data again'}: the newest events end "
                          f"{fmt(e.bucket) if e.bucket else '(none yet)'} UTC", markup=False)
                continue
            if e.event == "error" or e.series == ERROR_KEY:
                out.print(f"  {'error: ' + (e.detail or '') if e.event == 'error' else 'evaluated again'}",
                          markup=False)
                continue
            bounds = f" (expected {_cell(e.lower)} … {_cell(e.upper)})" if e.event != "reminder" else ""
            out.print(f"  {e.event} {e.series} {fmt(e.bucket) if e.bucket else ''} value {_cell(e.value)}{bounds}",
                      markup=False)
        for ch, st, d in r.deliveries:
            out.print(f"  → {ch or '(history)'}: {st} {d}", markup=False, soft_wrap=True)
    failed = [r for r in results if r.error]
    if failed:  # recorded as the rule's Error state (and sent, by its on_error policy); the command still fails
        raise UserError("; ".join(f"alerts.{r.rule}: cannot be evaluated: {r.error}" for r in failed))


@alerts_app.command("backtest")
def alerts_backtest(
    rule: Annotated[str, typer.Argument(help="Rule name from eventmart.yml.")],
    start: Annotated[str, typer.Option(help="From (UTC).")] = ...,
    end: Annotated[str, typer.Option(help="Until, exclusive (UTC).")] = ...,
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    png: Annotated[Path | None, typer.Option(help="Write the series, bounds and incidents as a PNG.")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Replay a rule over history, each bucket judged as of its own time: how many incidents, when, how long."""
    if format not in ("table", "csv", "json"):
        raise UserError(f"--format {format}: use table, csv or json")
    with _load(project) as p:
        v, incs = p.alerts_backtest(rule, start, end)
    times, keys = v.series.times, v.series.keys
    if format == "json":
        rows = [{"series": k, "time": _jsonable(t), "value": _num(v.series.values[i, j]),
                 "lower": _num(v.lower[i, j]), "upper": _num(v.upper[i, j]), "anomalous": bool(v.anomalous[i, j])}
                for j, k in enumerate(keys) for i, t in enumerate(times)]
        inc = [{"series": x.series, "start": _jsonable(x.start), "end": _jsonable(x.end) if x.end else None}
               for x in incs]
        sys.stdout.write(json.dumps({"buckets": rows, "incidents": inc}) + "\n")
    elif format == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(["kind", "series", "time", "value", "lower", "upper", "anomalous", "end"])
        for j, k in enumerate(keys):
            for i, t in enumerate(times):
                w.writerow(["bucket", k, _jsonable(t), _csvnum(v.series.values[i, j]), _csvnum(v.lower[i, j]),
                            _csvnum(v.upper[i, j]), int(bool(v.anomalous[i, j])), ""])
        for x in incs:
            w.writerow(["incident", x.series, _jsonable(x.start), "", "", "", "", _jsonable(x.end) if x.end else ""])
    else:
        judged = len(times) * len(keys)
        flagged = int(v.anomalous.sum())
        out.print(f"{rule}: {judged:,} bucket(s) judged over {len(keys)} series, {flagged:,} anomalous, "
                  f"{len(incs)} incident(s)", markup=False)
        from rich.table import Table

        t = Table("series", "start", "end", "minutes")
        for x in incs:
            t.add_row(x.series, fmt(x.start), fmt(x.end) if x.end else "(open)", f"{x.minutes(times[-1]):.0f}")
        out.print(t)
    if png:
        from ..alerts.rehearse import replay_chart

        chart = replay_chart(rule, v, incs, png.name)
        if chart is not None:
            png.write_bytes(chart.png)
            err.print(f"wrote {png} ({chart.title})")


@alerts_app.command("test")
def alerts_test(
    rule: Annotated[str, typer.Argument(help="Rule name from eventmart.yml.")],
    start: Annotated[str | None, typer.Option(help="From (UTC); default: --days before --end.")] = None,
    end: Annotated[str | None, typer.Option(help="Until, exclusive (UTC); default: the end of the built data.")] = None,
    days: Annotated[int, typer.Option(min=1, help="How far back without --start.")] = 7,
    png: Annotated[Path | None, typer.Option(help="Where the chart goes (default: RULE-test.png here).")] = None,
    format: Annotated[str, typer.Option("--format", "-f", help="table or json.")] = "table",
    project: ProjectOpt = Path("."),
) -> None:
    """Try a rule on history before switching it on: the alerts it would have sent, where, in which words, and a
    chart of the series with its bounds and the incidents as bands. Sends and stores nothing."""
    if format not in ("table", "json"):
        raise UserError(f"--format {format}: use table or json")
    with _load(project) as p:
        r = p.alerts_test(rule, start, end, days)
    png = png or Path(f"{rule}-test.png")
    if r.chart is not None:
        png.write_bytes(r.chart.png)
    v = r.verdicts
    judged = int(v.judged.sum()) if v.judged is not None else len(v.series.times) * len(v.series.keys)
    if format == "json":
        sys.stdout.write(json.dumps({
            "rule": rule, "start": r.start, "end": r.end, "buckets": judged, "series": len(v.series.keys),
            "firings": [{"series": f.series, "at": f.at, "end": f.end, "value": f.value,
                         "deliveries": [{"channel": c, "status": st, "message": m} for c, st, m in f.deliveries]}
                        for f in r.firings], "png": str(png) if r.chart else None}, default=_jsonable) + "\n")
        return
    per = 1000 * len(r.firings) / judged if judged else 0.0
    out.print(f"{rule}: {fmt(r.start)} … {fmt(r.end)} UTC, {judged:,} bucket(s) judged over {len(v.series.keys)} "
              f"series: {len(r.firings)} alert(s) would have fired ({per:.1f} per 1,000 buckets)", markup=False)
    for f in r.firings:
        until = f"until {fmt(f.end)}" if f.end else "still firing"
        out.print(f"  {fmt(f.at)}  {f.series}  value {_cell(f.value)}, {until}", markup=False, soft_wrap=True)
        for c, st, m in f.deliveries:
            out.print(f"      → {c}: {st}: {m}", markup=False, soft_wrap=True)
        if not f.deliveries:
            out.print("      → history only (no channel or route)", markup=False)
    if r.chart is not None:
        err.print(f"wrote {png}: the series, its bounds, anomalous buckets and incidents")


@alerts_app.command("evaluate")
def alerts_evaluate(
    rules: Annotated[list[str] | None, typer.Argument(help="Rules (default: all).")] = None,
    labels: Annotated[str, typer.Option(help="Labelled incidents: a CSV (start, end[, series]) or table:NAME.")]
    = ...,
    start: Annotated[str, typer.Option(help="From (UTC).")] = ...,
    end: Annotated[str, typer.Option(help="Until, exclusive (UTC).")] = ...,
    tolerance: Annotated[int, typer.Option(help="An alert within this many buckets of an incident finds it.")] = 2,
    format: Annotated[str, typer.Option("--format", "-f", help="table, csv or json.")] = "table",
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Also write the scores to FILE (.csv or .json), "
                                                "with the per-series detail in the JSON.")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Score rules against labelled incidents: precision, recall, F1 (by events), alerts per 1,000 buckets and
    per week, and a NAB-style score (0 = never alerting, 100 = every incident at its start)."""
    if format not in ("table", "csv", "json"):
        raise UserError(f"--format {format}: use table, csv or json")
    if output is not None and output.suffix.lower() not in (".csv", ".json"):
        raise UserError(f"--out {output}: name a .csv or .json file")
    if not labels.startswith("table:"):
        labels = str(Path(labels).resolve())
    with _load(project) as p:
        scores = p.alerts_evaluate(rules, labels, start, end, tolerance)
    rows = [s.row() for s in scores]
    if output is not None:
        tmp = output.with_name(output.name + ".part")  # whole or not at all
        with open(tmp, "w", newline="") as f:
            if output.suffix.lower() == ".json":
                json.dump([{**r, "series": s.details} for r, s in zip(rows, scores, strict=True)], f,
                          default=str, indent=1)
            else:
                w = csv.DictWriter(f, list(rows[0]) if rows else ["rule"], lineterminator="\n")
                w.writeheader()
                w.writerows(rows)
        tmp.replace(output)
    if format == "json":
        sys.stdout.write(json.dumps(rows) + "\n")
    elif format == "csv":
        w = csv.DictWriter(sys.stdout, list(rows[0]) if rows else ["rule"], lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    else:
        from rich.table import Table

        t = Table(*(rows[0] if rows else ["rule"]))
        for r in rows:
            t.add_row(*(_cell(v) for v in r.values()))
        out.print(t)


@alerts_app.command("tune")
def alerts_tune(
    rule: Annotated[str, typer.Argument(help="Rule name from eventmart.yml.")],
    start: Annotated[str, typer.Option(help="From (UTC): the history to learn from.")] = ...,
    end: Annotated[str, typer.Option(help="Until, exclusive (UTC).")] = ...,
    budget: Annotated[float, typer.Option(help="Alerts per week per series at most.")] = 2.0,
    labels: Annotated[str | None, typer.Option(help="Labelled incidents (a CSV or table:NAME): choose by F1 "
                                                "within the budget.")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Choose a rule's parameters from its own history: on the first 60% of [start, end), the most sensitive
    setting within the alert budget (or the best F1 on labels); then what it does on the remaining 40%."""
    if labels and not labels.startswith("table:"):
        labels = str(Path(labels).resolve())
    with _load(project) as p:
        res = p.alerts_tune(rule, start, end, budget, labels)
    for line in res.lines():
        out.print(line, markup=False, soft_wrap=True)


@alerts_app.command("silence")
def alerts_silence(
    rule: Annotated[str, typer.Argument(help="Rule name.")],
    for_: Annotated[str, typer.Option("--for", help="How long, e.g. 2h, 30m, '1 day'.")] = "1 hour",
    project: ProjectOpt = Path("."),
) -> None:
    """Send nothing for a rule for a while (its state and history still move)."""
    with _load(project) as p:
        until = p.alerts_silence(rule, for_)
    out.print(f"{rule}: silenced until {fmt(until)} UTC", markup=False)


@alerts_app.command("silences")
def alerts_silences(format: FormatOpt = "table", project: ProjectOpt = Path(".")) -> None:
    """Silences in force: which rule, until when."""
    _format(format)
    with _load(project) as p:
        res = p.alerts_silences()
    if not res.rows and format == "table":
        out.print("no rule is silenced")
        return
    _emit(res, format)


@alerts_app.command("unsilence")
def alerts_unsilence(
    rule: Annotated[str, typer.Argument(help="Rule name.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Lift a rule's silence now: its next events are sent again."""
    with _load(project) as p:
        n = p.alerts_unsilence(rule)
    out.print(f"{rule}: silence lifted" if n else f"{rule}: was not silenced", markup=False)


@alerts_app.command("history")
def alerts_history(
    rule: Annotated[str | None, typer.Option("--rule", help="Only this rule.")] = None,
    limit: Annotated[int, typer.Option(help="Rows.")] = 50,
    format: FormatOpt = "table",
    project: ProjectOpt = Path("."),
) -> None:
    """Alert events: fired, reminder, resolved, late, digest; per channel sent/failed/held/silenced."""
    _format(format)
    with _load(project) as p:
        _emit(p.alerts_history(rule, limit), format)


@alerts_app.command("status")
def alerts_status(format: FormatOpt = "table", project: ProjectOpt = Path(".")) -> None:
    """Each rule and series: OK or FIRING, since when, the last judged bucket."""
    _format(format)
    with _load(project) as p:
        _emit(p.alerts_state(), format)
