"""The `eventmart` command: parse, call the library, print. No logic lives here."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from .errors import UserError
from .timeutil import fmt

if TYPE_CHECKING:
    from rich.progress import Progress

    from .project import Project

app = typer.Typer(
    help="eventmart: ingest event logs, build time-bucketed marts, keep them fresh.",
    no_args_is_help=True,
    add_completion=True,  # --install-completion / --show-completion (bash, zsh, fish, PowerShell)
    pretty_exceptions_enable=False,
    rich_markup_mode=None,  # plain click help: fast, and like the usage errors
)
class _Console:
    """rich's Console, created on first use: `eventmart --help` and quick commands do not import rich.

    Hand ``.get()`` (the Console itself) to rich objects that use it as a context manager (Progress, Live)."""

    def __init__(self, **kw: Any):
        self.kw, self.console = kw, None

    def get(self) -> Any:
        if self.console is None:
            from rich.console import Console

            self.console = Console(**self.kw)
        return self.console

    def __getattr__(self, name: str) -> Any:
        return getattr(self.get(), name)

    def __enter__(self) -> Any:
        return self.get().__enter__()

    def __exit__(self, *exc: Any) -> None:
        self.get().__exit__(*exc)


# piped output (scripts, logs) gets wide lines instead of tables squeezed to 80 columns
out = _Console(highlight=False, width=None if sys.stdout.isatty() else 200)
err = _Console(stderr=True, highlight=False)

ProjectOpt = Annotated[Path, typer.Option("--project", "-p",
                                          help="Project folder or its eventmart.yml (default: current folder).")]
FORMATS = ("table", "csv", "json")
FormatOpt = Annotated[str, typer.Option("--format", "-f", help="table (on a terminal), csv (with a header) or json.")]


def _format(format: str) -> str:
    if format not in FORMATS:
        raise UserError(f"--format {format}: use table, csv or json")
    return format


def _port(value: int) -> int:
    if not 0 <= value <= 65535:
        raise typer.BadParameter(f"{value} is not a port; use 1 to 65535 (0: any free port)")
    return value


def _version(value: bool) -> None:
    if value:
        from . import __version__

        out.print(f"eventmart {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """eventmart: ingest event logs, build time-bucketed marts, keep them fresh."""


def _load(project: Path, local: bool = False) -> Project:
    """The project; while `eventmart serve` owns its embedded warehouse, a proxy that asks the server."""
    from .project import Project
    from .warehouse import single_writer

    p = Project.load(project)
    if not local and single_writer(p.config.warehouse):
        from .server.api import RemoteProject, running_server

        state = running_server(p.dir)
        if state is not None:
            return RemoteProject(p.dir, state, p.config)  # type: ignore[return-value]
    return p


def _cell(v: Any) -> str:
    """A value for a table on the screen: floats without binary noise (687.6, not 687.5999999999999)."""
    if v is None:
        return ""
    if isinstance(v, float):
        if v != v:
            return "NaN"
        if v == int(v) and abs(v) < 1e15:
            return f"{int(v)}"
        return f"{v:.6g}" if abs(v) < 1e-3 or abs(v) >= 1e9 else f"{round(v, 6):.6f}".rstrip("0").rstrip(".")
    if isinstance(v, datetime):
        return fmt(v) if v.microsecond == 0 else v.isoformat(sep=" ", timespec="milliseconds")
    if isinstance(v, Decimal):
        from .values import decimal_text

        return decimal_text(v)
    return str(v)


def _show(res: Any) -> None:
    from rich.table import Table

    t = Table(*res.columns, show_lines=False)
    for r in res.rows:
        t.add_row(*(_cell(v) for v in r))
    out.print(t)


@app.command()
def ingest(
    source: Annotated[str, typer.Argument(help="Source name from eventmart.yml.")],
    files: Annotated[list[str] | None, typer.Argument(help="Files or globs (default: the source's path).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Read files again even if unchanged since loaded.")] = False,
    project: ProjectOpt = Path("."),
) -> None:
    """Load files (or a postgres source's table) into the source's raw table.

    Bad lines go to <source>_rejects (one row each); keys already loaded are skipped; files unchanged since
    they were loaded are skipped. Everything commits at once or not at all.
    """
    with _load(project) as p:
        if sys.stderr.isatty():
            with _bytes_progress() as pr:
                task = pr.add_task(f"ingesting {source}", total=None)

                def tick(f: str, done: int, total: int) -> None:
                    pr.update(task, completed=done, total=total, description=f"{Path(f).name}")

                res = p.ingest(source, files, progress=tick, force=force)
        else:
            res = p.ingest(source, files, force=force)
    out.print(res.summary(), markup=False, soft_wrap=True)
    for reason, n in res.reasons.items():
        out.print(f"  rejected {n:,}: {reason}", markup=False)
    if res.rejected:
        out.print(f"  see them with: eventmart rejects {source}", markup=False)
    for _, why in res.bad_files:
        err.print(f"  not read: {why}", markup=False, soft_wrap=True)
    if res.bad_files:  # done, with files left out: a documented status of its own
        from .sources.bad_files import EXIT_REJECTED_FILES

        raise typer.Exit(EXIT_REJECTED_FILES)


def _bytes_progress() -> Progress:
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    return Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                    TimeRemainingColumn(), console=err.get(), transient=True)


ingests_app = typer.Typer(help="The ingest log: list loads, undo one.", invoke_without_command=True, rich_markup_mode=None)
app.add_typer(ingests_app, name="ingests")


@ingests_app.callback()
def ingests_list(
    ctx: typer.Context,
    source: Annotated[str | None, typer.Option("--source", help="Only this source's loads.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    format: FormatOpt = "table",
    project: ProjectOpt = Path("."),
) -> None:
    """Loads, newest first: id, source, files, rows loaded/duplicate/rejected, the time span, status."""
    if ctx.invoked_subcommand:
        return
    _format(format)
    with _load(project) as p:
        _emit(p.ingests(source, limit), format)
        bad = p.bad_files(source)
    if bad.rows and format == "table":
        out.print("files not read (tried again when they change):", markup=False)
        _show(bad)


@ingests_app.command("undo")
def ingests_undo(
    ingest_id: Annotated[int, typer.Argument(metavar="ID", help="The ingest's id (eventmart ingests).")],
    project: ProjectOpt = Path("."),
) -> None:
    """Remove exactly the rows one ingest loaded (and its rejects); the mart windows they were in become gaps
    for backfill to recompute. One transaction."""
    with _load(project) as p:
        res = p.undo_ingest(ingest_id)
    out.print(res.line(), markup=False, soft_wrap=True)


vault_app = typer.Typer(help="The data vault (vault: in eventmart.yml): load, status, reset.", no_args_is_help=True,
                        rich_markup_mode=None)
app.add_typer(vault_app, name="vault")


@vault_app.command("load")
def vault_load(
    tables: Annotated[list[str] | None, typer.Argument(help="Vault tables (default: all).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Load hubs, links and satellites from the raw rows ingested since their last load, in one transaction;
    a rerun adds nothing."""
    with _load(project) as p:
        for r in p.vault_load(tables or None):
            out.print(r.line(), markup=False, soft_wrap=True)


@vault_app.command("status")
def vault_status(format: FormatOpt = "table", project: ProjectOpt = Path(".")) -> None:
    """Each vault table: rows, last load, the last ingest it took, link rows whose hub key is missing."""
    _format(format)
    with _load(project) as p:
        _emit(p.vault_status(), format)


@vault_app.command("reset")
def vault_reset(
    tables: Annotated[list[str] | None, typer.Argument(help="Vault tables (default: all).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Drop vault tables and their load marks; the next `vault load` rebuilds them from the raw tables."""
    with _load(project) as p:
        out.print(f"dropped {', '.join(p.vault_reset(tables or None))}", markup=False)


@app.command()
def rejects(
    action_or_source: Annotated[str, typer.Argument(metavar="[replay] SOURCE", help="SOURCE, or `replay SOURCE`.")],
    source: Annotated[str | None, typer.Argument(hidden=True)] = None,
    limit: Annotated[int, typer.Option(help="Rows to list.")] = 50,
    format: FormatOpt = "table",
    project: ProjectOpt = Path("."),
) -> None:
    """List a source's rejected rows, or `replay` them: validate again and load those that now pass."""
    _format(format)
    with _load(project) as p:
        if source is None:
            _emit(p.rejects(action_or_source, limit), format)
            return
        if action_or_source != "replay":
            raise UserError(f"unknown rejects action '{action_or_source}'; use `eventmart rejects replay {source}`")
        res = p.replay_rejects(source)
    out.print(f"replayed {res.read:,} reject(s): {res.loaded:,} loaded, {res.duplicates:,} duplicate, "
              f"{res.rejected:,} still rejected")


def _print_runs(results: list[Any]) -> None:
    failed = [r for r in results if r.status != "ok"]
    for r in results:
        (out if r.status == "ok" else err).print(r.line())
    if failed:
        raise UserError(f"{len(failed)} mart run(s) failed (above); `eventmart runs --failed` keeps the errors")


@app.command()
def run(
    marts: Annotated[list[str] | None, typer.Argument(help="Marts to run (default: all).")] = None,
    start: Annotated[str, typer.Option(help="Window start, ISO time in UTC (inclusive).")] = ...,
    end: Annotated[str, typer.Option(help="Window end, ISO time in UTC (exclusive).")] = ...,
    project: ProjectOpt = Path("."),
) -> None:
    """Replace the window [start, end) of each mart in one transaction and record it in the run ledger."""
    with _load(project) as p:
        _print_runs(p.run(marts, start=start, end=end))


@app.command()
def backfill(
    marts: Annotated[list[str] | None, typer.Argument(help="Marts to backfill (default: all).")] = None,
    start: Annotated[str | None, typer.Option(help="From (default: the mart's start or first event).")] = None,
    end: Annotated[str | None, typer.Option(help="Until, exclusive (default: after the last event).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show the windows, run nothing.")] = False,
    format: FormatOpt = "table",
    project: ProjectOpt = Path("."),
) -> None:
    """Fill the gaps of each mart, oldest first: a declarative mart's missing days run together (up to 5M source
    rows a statement), a SQL mart's chunk by chunk."""
    _format(format)
    with _load(project) as p:
        if dry_run:
            plan = p.plan_backfill(marts, start=start, end=end)
            if format != "table":
                from .warehouse import QueryResult

                _emit(QueryResult(["mart", "window_start", "window_end"], [tuple(w) for w in plan]), format)
                return
            for n, s, e in plan:
                out.print(f"{n} [{fmt(s)}, {fmt(e)})")
            out.print(f"{len(plan)} window(s) to run")
            return
        if sys.stderr.isatty():
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
                TimeRemainingColumn,
            )

            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          TimeRemainingColumn(), console=err.get(), transient=True) as pr:
                task = pr.add_task("backfill", total=None)

                def tick(r: Any, i: int, n: int) -> None:
                    pr.update(task, completed=i, total=n, description=f"{r.mart} {fmt(r.start)}")

                results = p.backfill(marts, start=start, end=end, progress=tick)
        else:
            results = p.backfill(marts, start=start, end=end)
        waiting = p.unloaded(marts)
    for mart, src in waiting.items():
        out.print(f"{mart}: waiting for source {src} (nothing loaded yet: eventmart ingest {src})", markup=False,
                  soft_wrap=True)
    if not results:
        out.print("nothing to backfill: every mart covers its data")
        return
    for mart in dict.fromkeys(r.mart for r in results):
        ok = [r for r in results if r.mart == mart and r.status == "ok"]
        if ok:
            out.print(f"{mart}: [{fmt(min(r.start for r in ok))}, {fmt(max(r.end for r in ok))}) built in "
                      f"{len(ok)} run(s), {sum(r.rows for r in ok):,} rows in {sum(r.seconds for r in ok):.2f}s",
                      markup=False, soft_wrap=True)
    _print_runs([r for r in results if r.status != "ok"])


@app.command()
def status(format: FormatOpt = "table", project: ProjectOpt = Path(".")) -> None:
    """Each mart's covered intervals, gaps and last run; each Kafka source's lag per partition.

    --format json: {"marts": [...], "sources": [...]} with intervals as [start, end] pairs; --format csv: a row per
    mart (intervals joined by ';')."""
    _format(format)
    with _load(project) as p:
        sts = p.status()
        lags: dict[str, Any] = {}
        for s, src in p.config.sources.items():
            if src.kafka is not None:
                try:
                    lags[s] = p.lag(s)
                except UserError as e:  # the marts' status stands; say why the lag is unknown
                    lags[s] = str(e)
        bad = p.bad_files()
    if format != "table":
        _status_data(sts, lags, format, bad)
        return
    from rich.table import Table

    t = Table("mart", "grain", "rows", "covered", "gaps", "last run")
    for s in sts:
        cov = "\n".join(f"[{fmt(a)}, {fmt(b)})" for a, b in s.covered) or "-"
        gaps = "\n".join(f"[{fmt(a)}, {fmt(b)})" for a, b in s.gaps) or "none"
        last = "-"
        if s.last_run:
            at, st, ws, we, n, e = s.last_run
            last = f"{st} {fmt(at)} [{fmt(ws)}, {fmt(we)}) {n} rows" + (f": {e}" if e else "")
        t.add_row(s.mart, s.grain, f"{s.rows:,}", cov, gaps, last)
    out.print(t)
    if lags:
        k = Table("source", "partition", "loaded up to (next offset)", "end", "lag")
        for source, res in lags.items():
            if isinstance(res, str):
                k.add_row(source, "-", "-", "-", res)
                continue
            for part, nxt, end, lag in res.rows:
                k.add_row(source, str(part), "-" if nxt is None else f"{nxt:,}", f"{end:,}", f"{lag:,}")
        out.print(k)
    if bad.rows:
        out.print("files not read (tried again when they change):", markup=False)
        _show(bad)


def _status_data(sts: list[Any], lags: dict[str, Any], format: str, bad: Any) -> None:
    from . import values

    marts = []
    for s in sts:
        last = dict(zip(("started_at", "status", "window_start", "window_end", "rows", "error"), s.last_run,
                        strict=True)) if s.last_run else None
        marts.append({"mart": s.mart, "grain": s.grain, "rows": s.rows, "covered": [list(w) for w in s.covered],
                      "gaps": [list(w) for w in s.gaps], "last_run": last})
    if format == "json":
        sources = [{"source": src, "error": res} if isinstance(res, str) else
                   {"source": src, "partitions": [dict(zip(("partition", "next_offset", "end", "lag"), r, strict=True))
                                                  for r in res.rows]} for src, res in lags.items()]
        files = [dict(zip(bad.columns, r, strict=True)) for r in bad.rows]
        sys.stdout.write(values.json_value({"marts": marts, "sources": sources, "files_not_read": files}) + "\n")
        return

    def spans(ws: list) -> str:
        return "; ".join(f"{values.text(a)}/{values.text(b)}" for a, b in ws)

    w = csv.writer(sys.stdout, lineterminator="\n")
    w.writerow(["mart", "grain", "rows", "covered", "gaps", "last_status", "last_started_at", "last_window_start",
                "last_window_end", "last_rows", "last_error"])
    for m in marts:
        last = m["last_run"] or {}
        w.writerow([m["mart"], m["grain"], m["rows"], spans(m["covered"]), spans(m["gaps"]),
                    *(values.text(last.get(k)) for k in ("status", "started_at", "window_start", "window_end", "rows",
                                                          "error"))])


@app.command()
def produce(
    source: Annotated[str, typer.Argument(help="A Kafka source (its topic and brokers).")],
    files: Annotated[list[Path], typer.Argument(help="JSON Lines files to publish, a message per line.")],
    topic: Annotated[str | None, typer.Option(help="Another topic than the source's.")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Publish JSON Lines files to a Kafka source's topic, keyed by the source's key (what the seed's hourly
    S3 → Kafka DAG did)."""
    for f in files:
        if not f.is_file():
            raise UserError(f"{f}: no such file")
    with _load(project, local=True) as p:
        n = p.produce(source, [str(f) for f in files], topic)
    out.print(f"published {n:,} message(s) to {topic or p.config.sources[source].kafka.topic}", markup=False)


@app.command()
def runs(
    job: Annotated[str | None, typer.Option("--job", help="Only this scheduled job's runs.")] = None,
    failed: Annotated[bool, typer.Option("--failed", help="Only failed runs.")] = False,
    mart: Annotated[str | None, typer.Option("--mart", help="Only this mart's runs.")] = None,
    limit: Annotated[int, typer.Option(help="Rows to show.")] = 50,
    format: FormatOpt = "table",
    project: ProjectOpt = Path("."),
) -> None:
    """Run history, newest first: job, window, status, rows, duration, attempt, error."""
    _format(format)
    with _load(project) as p:
        _emit(p.runs(job=job, failed=failed, mart=mart, limit=limit), format)


@app.command()
def backup(
    dir: Annotated[str | None, typer.Option("--dir", help="Folder for the copies (default: backups/).")] = None,
    keep: Annotated[int, typer.Option(help="Copies to keep (the newest).")] = 4,
    project: ProjectOpt = Path("."),
) -> None:
    """Write a consistent, timestamped copy of the warehouse, verified by restoring it to scratch."""
    with _load(project) as p:
        res = p.backup(dir, keep)
    out.print(res.line(), soft_wrap=True)
    out.print(f"  {res.path}", soft_wrap=True, markup=False)


@app.command()
def restore(
    path: Annotated[str, typer.Argument(help="A backup file written by `eventmart backup`.")],
    project: ProjectOpt = Path("."),
) -> None:
    """Bring a backup back as the warehouse (stop `eventmart serve` first)."""
    with _load(project) as p:
        out.print(p.restore(path), soft_wrap=True, markup=False)


@app.command()
def report(
    name: Annotated[str, typer.Argument(help="Report name from eventmart.yml.")],
    date_: Annotated[str | None, typer.Option("--date", help="The day to report (default: the mart's newest).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Write it to a folder instead of sending.")] = False,
    out_dir: Annotated[str | None, typer.Option("--out", help="Folder for --dry-run (default: reports/dry-run).")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Build a report now and send it to its channels (exit 2 if a channel failed)."""
    with _load(project) as p:
        res = p.report(name, date_, dry_run=dry_run, out=out_dir)
    for ln in res.lines():
        out.print(ln, markup=False, soft_wrap=True)
    failed = [d for d in res.deliveries if d.status != "ok"]
    if failed:
        raise UserError(f"{len(failed)} of {len(res.deliveries)} channel(s) failed; see above and `eventmart runs --failed`")


alerts_app = typer.Typer(help="Anomaly alerts: check, backtest, silence, history.", no_args_is_help=True,
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
    for r in results:
        out.print(f"{r.rule}: {r.judged} bucket(s) judged, {len(r.events)} event(s)", markup=False)
        for e in r.events:
            if e.event == "late":
                out.print(f"  late: the mart holds data up to {fmt(e.bucket) if e.bucket else 'nothing'} UTC, events "
                          "after that are loaded but not built into it yet (eventmart backfill)", markup=False)
                continue
            bounds = f" (expected {_cell(e.lower)} … {_cell(e.upper)})" if e.event != "reminder" else ""
            out.print(f"  {e.event} {e.series} {fmt(e.bucket) if e.bucket else ''} value {_cell(e.value)}{bounds}",
                      markup=False)
        for ch, st, d in r.deliveries:
            out.print(f"  → {ch or '(history)'}: {st} {d}", markup=False, soft_wrap=True)


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
        from .alerts.engine import render

        j = max(range(len(keys)), key=lambda j: int(v.anomalous[:, j].sum())) if keys else 0
        spans = [(x.start, x.end or times[-1]) for x in incs if x.series == keys[j]]
        chart = render(f"{rule} ({keys[j]})", times, v.series.values[:, j], v.lower[:, j], v.upper[:, j],
                       v.anomalous[:, j], png.name, spans)
        png.write_bytes(chart.png)
        err.print(f"wrote {png} (series {keys[j]})")


def _num(x: Any) -> float | None:
    return None if x is None or x != x else float(x)


def _csvnum(x: Any) -> str:
    return "" if x is None or x != x else repr(float(x))


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


airflow_app = typer.Typer(help="Airflow interop: export the scheduled jobs as DAGs.", no_args_is_help=True,
                          rich_markup_mode=None)
app.add_typer(airflow_app, name="airflow")


@airflow_app.command("dags")
def airflow_dags(
    out_dir: Annotated[Path, typer.Argument(help="Airflow's dags folder (or any folder).")],
    project: ProjectOpt = Path("."),
) -> None:
    """Write one DAG file per scheduled job; each task runs the job for its data interval."""
    from .airflow import write_dags
    from .project import Project

    for path in write_dags(Project.load(project).dir, out_dir):
        out.print(f"wrote {path}", markup=False, soft_wrap=True)


def _jsonable(v: Any) -> Any:
    if isinstance(v, (datetime, date)):
        return v.isoformat(sep=" ") if isinstance(v, datetime) else v.isoformat()
    if isinstance(v, Decimal):
        return float(v)
    return v


@app.command()
def check(project: ProjectOpt = Path("."),
          sql: Annotated[bool, typer.Option("--sql", help="Also print the DDL of the raw tables and marts.")] = False,
          ) -> None:
    """Check the project without writing anything: the file, every mart, dashboard, report and alert rule,
    the warehouse and the sources. Lists every problem with its file:line; exit 2 if there is any."""
    from .errors import ProjectError

    try:
        p = _load(project)
    except ProjectError as e:
        for line in getattr(e, "problems", [str(e)]):
            err.print(line, markup=False, soft_wrap=True)
        raise UserError(f"{len(getattr(e, 'problems', [e]))} problem(s) in the project file") from None
    with p:
        problems, done = p.check()
        if sql and not problems:
            for table, statements in p.ddl():
                out.print(f"-- {table}", markup=False)
                for st in statements:
                    out.print(st + ";", markup=False, soft_wrap=True)
    for line in problems:
        err.print(line, markup=False, soft_wrap=True)
    if problems:
        raise UserError(f"{len(problems)} problem(s); fix them and run `eventmart check` again")
    out.print(f"ok: {len(done)} item(s) checked (warehouse, sources, marts, dashboards, reports, alert rules)")
    from .marts import run_mode

    for name, mart in p.config.marts.items():
        out.print(f"  marts.{name} runs {run_mode(mart)}", markup=False, soft_wrap=True)


@app.command()
def query(
    sql: Annotated[str, typer.Argument(help="SQL to run (read-only).")],
    format: FormatOpt = "table",
    out_file: Annotated[Path | None, typer.Option("--out", "-o", help="Write the whole result to FILE (.csv or "
                                                  ".jsonl), streamed, past query.max_rows and max_bytes.")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """One read (SELECT, DESCRIBE or SHOW) of the warehouse's tables; anything else is refused.

    A read is stopped after query.timeout (default 1 minute) and refused past query.max_rows rows (100,000) or
    query.max_bytes (64MB): --out FILE streams any size to a file. While `eventmart serve` runs, reads go through
    it and never wait for (or delay) its ingests, runs and schedules."""
    _format(format)
    if out_file is not None:
        fmt = {".csv": "csv", ".jsonl": "jsonl"}.get(out_file.suffix.lower())
        if fmt is None:
            raise UserError(f"--out {out_file}: name a .csv or .jsonl file")
        _export(project, sql, fmt, out_file)
        return
    with _load(project) as p:
        res = p.query(sql)
    _emit(res, format)


def _export(project: Path, sql: str, fmt: str, target: Path) -> None:
    """Stream a whole result into ``target`` (written beside, renamed when complete: whole or not at all)."""
    from . import values

    tmp = target.with_name(target.name + ".part")
    try:
        with _load(project) as p, open(tmp, "wb") as f:
            if hasattr(p, "export_to"):  # through eventmart serve
                p.export_to(sql, fmt, f)
                rows = None
            else:
                rows = 0

                def counted(batches: Any) -> Any:
                    nonlocal rows
                    for cols, batch in batches:
                        rows += len(batch)
                        yield cols, batch

                for text in values.export_lines(counted(p.export(sql)), fmt):
                    f.write(text.encode())
        tmp.replace(target)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    size = target.stat().st_size
    what = f"{rows:,} row(s)" if rows is not None else f"{size:,} bytes"
    out.print(f"wrote {what} to {target}", markup=False, soft_wrap=True)


def _emit(res: Any, format: str) -> None:
    """Rows as a terminal table, CSV with a header or a JSON array of objects; numbers exactly as stored."""
    from . import values

    if format == "table":
        _show(res)
    elif format == "csv":
        w = csv.writer(sys.stdout, lineterminator="\n")
        w.writerow(res.columns)
        w.writerows([[values.text(v) for v in r] for r in res.rows])
    else:
        sys.stdout.write(values.json_records(res.columns, res.rows) + "\n")


@app.command()
def reset(mart: str, project: ProjectOpt = Path(".")) -> None:
    """Drop a mart's table and ledger (after its definition changed); backfill rebuilds it."""
    with _load(project) as p:
        p.reset(mart)
    out.print(f"{mart}: dropped; run `eventmart backfill {mart}` to rebuild it")


@app.command()
def init(
    directory: Annotated[Path, typer.Argument(help="Folder to create the project in.")],
    from_: Annotated[Path | None, typer.Option("--from", help="A CSV file of your events: the project is proposed "
                                                                "from it (columns, time, key, a mart, a dashboard).")] = None,
    example: Annotated[str | None, typer.Option(help="A bundled example instead, with its data: zen, feed, groups or "
                                                     "web (see below).")] = None,
) -> None:
    """Start a project: a minimal commented eventmart.yml, one proposed from your CSV (--from), or a bundled example
    with its generated data (--example).

    zen: a content platform's real hour of visits (Yandex.Zen, 310,207 events): per-minute marts, a dashboard.

    feed: a feed & messenger app (30 days, ~20k DAU): daily metrics by os/gender/age, a digest, anomaly alerts.

    groups: a social network's communities: a data vault (hubs, links, satellites) and group conversion.

    web: web analytics from four Kafka topics: joined pageview marts and a live dashboard.

    `eventmart demo NAME DIR` does the same and goes on: loads the data, builds the marts and serves them.
    """
    if example:
        from .examples import create_example, next_steps

        if directory.joinpath("eventmart.yml").exists():
            raise UserError(f"{directory / 'eventmart.yml'}: a project file exists already; choose an empty folder")
        created = not directory.exists()
        try:
            for f in create_example(example, directory, step=_step):
                out.print(f"generated {f}", markup=False, soft_wrap=True)
        except BaseException:
            if created:
                import shutil

                shutil.rmtree(directory, ignore_errors=True)
            raise
        out.print(f"wrote {directory / 'eventmart.yml'}", markup=False, soft_wrap=True)
        for line in next_steps(example, directory, _exe()):
            out.print(f"next: {line}", markup=False, soft_wrap=True)
        return
    else:
        from .scaffold import init_project

        path, notes = init_project(directory, from_)
    out.print(f"wrote {path}", markup=False, soft_wrap=True)
    for n in notes:
        out.print(f"  {n}", markup=False, soft_wrap=True)
    exe = _exe()
    if from_:
        import yaml

        source = next(iter(yaml.safe_load(path.read_text(encoding="utf-8"))["sources"]))
        out.print(f"next: cd {directory} && {exe} check && {exe} ingest {source} && {exe} backfill && {exe} serve",
                  markup=False, soft_wrap=True)


def _step(text: str) -> Any:
    """A long step: a spinner with its name on a terminal (gone when it ends), the name as a line when piped."""
    if sys.stderr.isatty():
        return err.get().status(text, spinner="dots")
    from contextlib import nullcontext

    out.print(text, markup=False, soft_wrap=True)
    return nullcontext()


def _exe() -> str:
    """How to run eventmart again from a shell: `eventmart` when it is on PATH, else its full path."""
    import shutil

    me = Path(sys.argv[0]).resolve() if sys.argv and sys.argv[0] else None
    found = shutil.which("eventmart")
    if found and me and Path(found).resolve() == me:
        return "eventmart"
    if me and me.name == "eventmart":
        return str(me)
    return f"{sys.executable} -m eventmart"


@app.command()
def demo(
    example: Annotated[str, typer.Argument(help="zen, feed, groups or web.")],
    directory: Annotated[Path, typer.Argument(help="Folder for the demo project (created).")],
    scale: Annotated[float, typer.Option(help="zen: events per minute vs the real hour; feed: users (1 = ~20k "
                                                "DAU).")] = 1.0,
    days: Annotated[int, typer.Option(help="zen: days of generated log (0 = the real hour); feed: days (0 = "
                                           "30).")] = 0,
    serve: Annotated[bool, typer.Option("--serve/--no-serve", help="Serve the dashboard afterwards.")] = True,
    port: Annotated[int, typer.Option(help="Port to serve on (0: any free port).", callback=_port)] = 8050,
    engine: Annotated[str, typer.Option(help="Warehouse: duckdb (a file), clickhouse (embedded chDB) or postgres "
                                             "($EVENTMART_PG_URL).")] = "duckdb",
) -> None:
    """Create a bundled example project, generate its data, ingest it, build its marts and serve it.

    zen: the real Yandex.Zen hour (dash_visits, 310,207 events) as raw events, two per-minute marts and the
    Zen dashboard; --scale/--days generate bigger logs with the same mix.

    feed: a feed & messenger simulator (30 days, ~20k DAU, 7M events at scale 1): daily slices by
    os/gender/age, 15-minute marts, a dashboard, the morning digest (written to reports/dry-run) and
    anomaly alerts.

    groups: a social network's users, groups, messages and group log: a declared data vault,
    the group-conversion mart and its dashboard; prints the 10 oldest groups. With
    $EVENTMART_DEMO_S3_ENDPOINT set, the files are uploaded to that S3 server and read from there.

    web: web analytics from four Kafka topics: the public sample records and a generated day
    published to an in-process Kafka cluster ($EVENTMART_KAFKA: your brokers), consumed with an
    exactly-once effect, joined marts, and a dashboard that `serve` keeps live from a replay.
    """
    from .examples import run_demo

    say = lambda m: out.print(m, markup=False, soft_wrap=True)  # noqa: E731
    run_demo(example, directory, scale=scale, days=days, say=say, exe=_exe(), engine=engine, step=_step)
    if serve:
        if example == "web":  # live traffic for the live dashboard
            from .examples import replay_web

            replay_web(directory, say=say)
        _serve(directory, "127.0.0.1", port)


def _serve(project: Path, host: str, port: int) -> None:
    from .server.api import running_server
    from .server.serve import serve as serve_project
    from .server.web import check_auth_env

    check_auth_env()
    with _load(project, local=True) as p:
        state = running_server(p.dir)
        if state is not None:
            raise UserError(f"eventmart serve already runs on this project (pid {state['pid']}, port {state['port']})")
        serve_project(p, host, port, say=lambda m: out.print(m, markup=False, soft_wrap=True))


@app.command()
def serve(
    project: ProjectOpt = Path("."),
    host: Annotated[str, typer.Option(help="Address to bind; anything but loopback warns without auth.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port (0: any free port, printed).", callback=_port)] = 8050,
) -> None:
    """Serve the dashboards, run the schedules, and take other commands' calls for this project.

    Basic auth from $EVENTMART_DASH_USER / $EVENTMART_DASH_PASSWORD. While it runs, `eventmart
    ingest/run/backfill/query/status/runs/backup` on the same project go through it.
    """
    _serve(project, host, port)


def _is(e: BaseException, name: str) -> bool:
    """By class name: typer raises its vendored click's exceptions (0.29) or click's own (older releases)."""
    return any(c.__name__ == name for c in type(e).__mro__)


def main() -> None:
    try:
        rv = app(standalone_mode=False)
    except UserError as e:
        err.print(f"error: {e}", markup=False, soft_wrap=True)
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    except Exception as e:
        if _is(e, "ClickException"):  # usage errors: the usage line and one "Error: ..." line, exit 2
            e.show()
            sys.exit(e.exit_code)
        if _is(e, "Abort"):
            sys.exit(1)
        raise
    if isinstance(rv, int) and rv:
        sys.exit(rv)
