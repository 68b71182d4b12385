"""Commands about sources: ingest, the ingest log, rejects, producing to Kafka, the data vault."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .app import app
from .output import (
    FormatOpt,
    ProjectOpt,
    _bytes_progress,
    _emit,
    _format,
    _load,
    _show,
    err,
    out,
)


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
        from ..sources.bad_files import EXIT_REJECTED_FILES

        raise typer.Exit(EXIT_REJECTED_FILES)

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
