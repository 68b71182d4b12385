"""Commands about marts: run, backfill, status, run history, reset, and reading the warehouse (query)."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from ..errors import UserError
from ..timeutil import fmt
from .app import app
from .output import (
    FormatOpt,
    ProjectOpt,
    _emit,
    _format,
    _load,
    _show,
    err,
    out,
)


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
                from ..warehouse import QueryResult

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
    from .. import values

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
def reset(mart: str, project: ProjectOpt = Path(".")) -> None:
    """Drop a mart's table and ledger (after its definition changed); backfill rebuilds it."""
    with _load(project) as p:
        p.reset(mart)
    out.print(f"{mart}: dropped; run `eventmart backfill {mart}` to rebuild it")


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
    from .. import values

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
