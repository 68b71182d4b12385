"""Running a project: check it, start one (init, demo), serve it, back it up, send a report, export to Airflow."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated

import typer

from ..errors import UserError
from .app import app
from .output import (
    ProjectOpt,
    _exe,
    _load,
    _port,
    _step,
    err,
    out,
)


@app.command()
def check(project: ProjectOpt = Path("."),
          sql: Annotated[bool, typer.Option("--sql", help="Also print the DDL of the raw tables and marts.")] = False,
          ) -> None:
    """Check the project without writing anything: the file, every mart, dashboard, report and alert rule,
    the warehouse and the sources. Lists every problem with its file:line; exit 2 if there is any."""
    from ..errors import ProjectError

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
    from ..marts import run_mode

    for name, mart in p.config.marts.items():
        out.print(f"  marts.{name} runs {run_mode(mart)}", markup=False, soft_wrap=True)


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
        from ..examples import create_example, next_steps

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
        from ..scaffold import init_project

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
    published to a Kafka broker process started on loopback (Tansu, from the kafka extra; librdkafka's
    mock cluster where it is missing; $EVENTMART_KAFKA: your brokers), consumed with an
    exactly-once effect, joined marts, and a dashboard that `serve` keeps live from a replay.
    """
    from ..examples import run_demo

    say = lambda m: out.print(m, markup=False, soft_wrap=True)  # noqa: E731
    run_demo(example, directory, scale=scale, days=days, say=say, exe=_exe(), engine=engine, step=_step)
    if serve:
        if example == "web":  # live traffic for the live dashboard
            from ..examples import replay_web

            replay_web(directory, say=say)
        _serve(directory, "127.0.0.1", port)


def _serve(project: Path, host: str, port: int) -> None:
    from ..server.api import running_server
    from ..server.serve import serve as serve_project
    from ..server.web import check_auth_env

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


@app.command()
def embed(
    dashboard: Annotated[str, typer.Argument(help="The dashboard the link opens.")],
    ttl: Annotated[str, typer.Option(help="How long the link works, e.g. 1 hour, 7 days.")] = "1 day",
    url: Annotated[str, typer.Option(help="Where `eventmart serve` answers, as the viewer's browser reaches it.")]
    = "http://127.0.0.1:8050",
    project: ProjectOpt = Path("."),
) -> None:
    """Print a signed link that opens DASHBOARD (an iframe's src) until it expires, past basic auth.

    Signed with api.embed_secret; anyone holding the link sees that dashboard (only it) until then.
    """
    from datetime import timedelta

    from ..config.load import load_config
    from ..server.readapi import embed_token
    from ..timeutil import parse_duration

    try:
        seconds = parse_duration(ttl)
    except ValueError as e:
        raise UserError(f"--ttl: {e}") from None
    token = embed_token(load_config(project), dashboard, timedelta(seconds=seconds))
    out.print(f"{url.rstrip('/')}/embed/{dashboard}/?t={token}", markup=False, soft_wrap=True)


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

airflow_app = typer.Typer(help="Airflow interop: export the scheduled jobs as DAGs.", no_args_is_help=True,
                          rich_markup_mode=None)
app.add_typer(airflow_app, name="airflow")


@airflow_app.command("dags")
def airflow_dags(
    out_dir: Annotated[Path, typer.Argument(help="Airflow's dags folder (or any folder).")],
    project: ProjectOpt = Path("."),
) -> None:
    """Write one DAG file per scheduled job; each task runs the job for its data interval."""
    from ..airflow import write_dags
    from ..project import Project

    for path in write_dags(Project.load(project).dir, out_dir):
        out.print(f"wrote {path}", markup=False, soft_wrap=True)


superset_app = typer.Typer(help="Apache Superset interop: the dashboards as Superset's import bundle, or pushed "
                            "into a running Superset.", no_args_is_help=True, rich_markup_mode=None)
app.add_typer(superset_app, name="superset")
UriOpt = Annotated[str | None, typer.Option(
    "--uri", help="The database Superset connects to (SQLAlchemy URI; default: bi.duckdb for DuckDB, the server "
                  "itself for PostgreSQL and ClickHouse — give a read-only role here).")]


def _bundle(project: Path, dashboard: str | None, uri: str | None):
    from ..project import Project
    from ..superset import build

    with Project.load(project) as p:
        b = build(p, dashboard, uri)
    for note in b.notes:
        out.print(note, markup=False, soft_wrap=True)
    return b


@superset_app.command("export")
def superset_export(
    dashboard: Annotated[str | None, typer.Argument(help="One dashboard (default: all of them).")] = None,
    output: Annotated[Path, typer.Option("--out", "-o", help="The ZIP to write.")] = Path("superset-bundle.zip"),
    uri: UriOpt = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Write Superset's import bundle (Dashboards → Import in Superset): the database, a dataset per mart with its
    measures as metrics that re-aggregate correctly, the charts, the dashboard with its filters. What cannot be
    carried over is named, with the reason."""
    b = _bundle(project, dashboard, uri)
    tmp = output.with_name(output.name + ".part")
    tmp.write_bytes(b.zip())
    tmp.replace(output)
    charts = sum(1 for f in b.files if f.startswith("charts/"))
    out.print(f"wrote {output}: {charts} chart(s)", markup=False, soft_wrap=True)


@superset_app.command("push")
def superset_push(
    url: Annotated[str, typer.Argument(help="Superset's address, e.g. http://127.0.0.1:8088")],
    dashboard: Annotated[str | None, typer.Argument(help="One dashboard (default: all of them).")] = None,
    uri: UriOpt = None,
    password_env: Annotated[str | None, typer.Option(
        help="Environment variable holding the database password Superset should store.")] = None,
    project: ProjectOpt = Path("."),
) -> None:
    """Import the bundle into a running Superset through its REST API, as $SUPERSET_USER with $SUPERSET_PASSWORD
    (an admin or a role that may import dashboards). Importing again updates what the last push created."""
    from ..superset import push

    b = _bundle(project, dashboard, uri)  # loads the project, and its .env
    user, password = os.environ.get("SUPERSET_USER"), os.environ.get("SUPERSET_PASSWORD")
    if not user or not password:
        raise UserError("superset push: set SUPERSET_USER and SUPERSET_PASSWORD in the environment (or .env)")
    db_password = os.environ.get(password_env) if password_env else None
    if password_env and not db_password:
        raise UserError(f"superset push: ${password_env} is not set")
    push(url, b, user, password, db_password)
    charts = sum(1 for f in b.files if f.startswith("charts/"))
    out.print(f"imported into {url}: {charts} chart(s)", markup=False, soft_wrap=True)


@app.command()
def schema(
    output: Annotated[Path | None, typer.Option("--out", "-o", help="Write it to FILE instead of printing it.")] = None,
) -> None:
    """The project file's JSON Schema: editors (VS Code, JetBrains, vim with yaml-language-server) validate and
    complete eventmart.yml with it. `eventmart init` writes it beside the project file, which names it on its first
    line (# yaml-language-server: $schema=eventmart.schema.json)."""
    from ..config import json_schema

    if output is None:
        sys.stdout.write(json_schema())
        return
    output.write_text(json_schema(), encoding="utf-8")
    out.print(f"wrote {output}", markup=False, soft_wrap=True)
