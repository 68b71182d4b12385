"""Bundled example projects: a project file each, plus a data generator calibrated on real data."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from ..errors import UserError

HERE = Path(__file__).parent
EXAMPLES = ("zen", "feed")
# the warehouse section of an example for each engine (`eventmart demo … --engine`)
ENGINES = {
    "duckdb": None,  # as shipped
    "clickhouse": "warehouse:\n  type: clickhouse          # embedded chDB in this folder; `url: ${EVENTMART_CH_URL}` "
                  "for a server\n  path: warehouse.chdb\n",
    "postgres": "warehouse:\n  type: postgres\n  url: ${EVENTMART_PG_URL}\n",
}


def init_example(example: str, directory: Path, engine: str = "duckdb") -> Path:
    if example not in EXAMPLES:
        raise UserError(f"unknown example '{example}'; available: {', '.join(EXAMPLES)}")
    if engine not in ENGINES:
        raise UserError(f"unknown engine '{engine}'; available: {', '.join(ENGINES)}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "eventmart.yml"
    if target.exists():
        raise UserError(f"{target}: a project file exists already; choose an empty folder")
    text = (HERE / example / "eventmart.yml").read_text(encoding="utf-8")
    if ENGINES[engine]:
        text = re.sub(r"^warehouse:\n(?:[ \t]+.*\n)+", ENGINES[engine], text, count=1, flags=re.M)
    target.write_text(text, encoding="utf-8")
    (directory / "data").mkdir(exist_ok=True)
    return target


def write_csv(table: pa.Table, path: Path) -> None:
    """A CSV with a header, the way an export from a database looks."""
    con = duckdb.connect()
    con.register("t", table)
    con.execute("COPY t TO $p (FORMAT csv, HEADER true)", {"p": str(path)})
    con.close()


def generate_zen(directory: Path, scale: float = 1.0, days: int = 0) -> Path:
    from .zen import calibrated_events, read_real, scaled_events

    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    path = data / "log_raw.csv"
    if days <= 0 and scale == 1.0:
        table = calibrated_events()
    else:
        n = int(read_real()["visits"].to_numpy().sum() * scale * max(days, 1) * 24)
        table = scaled_events(n, days=max(days, 1))
    write_csv(table, path)
    return path


def generate_feed(directory: Path, scale: float = 1.0, days: int = 30) -> list[Path]:
    import pyarrow.parquet as pq

    from .feed import generate

    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    feed, msgs = generate(days=days or 30, scale=scale)
    out = [data / "feed_actions.parquet", data / "message_actions.parquet"]
    pq.write_table(feed, out[0])
    pq.write_table(msgs, out[1])
    return out


def run_demo(example: str, directory: Path, scale: float = 1.0, days: int = 0,
             say: Callable[[str], None] = print, exe: str = "eventmart", engine: str = "duckdb") -> None:
    from ..project import Project

    if example not in EXAMPLES:
        raise UserError(f"unknown example '{example}'; available: {', '.join(EXAMPLES)}")
    if not (directory / "eventmart.yml").exists():
        init_example(example, directory, engine)
    paths = [generate_zen(directory, scale, days)] if example == "zen" else generate_feed(directory, scale, days)
    for path in paths:
        say(f"generated {path}")
    with Project.load(directory) as p:
        for source in p.config.sources:
            say(p.ingest(source).summary())
        results = p.backfill()
        ok = [r for r in results if r.status == "ok"]
        say(f"built marts: {len(ok)} window(s), {sum(r.rows for r in ok):,} rows")
        if example == "feed":
            res = p.report("daily", dry_run=True)
            say(f"daily digest for {res.day}: {res.folder}/index.html")
    hint = {"zen": "select * from dash_visits order by dt, visits desc limit 5",
            "feed": "select * from daily_metrics order by dt desc limit 7"}[example]
    say(f"try: cd {directory} && {exe} query \"{hint}\"")
