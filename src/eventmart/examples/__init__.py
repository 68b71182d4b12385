"""Bundled example projects: a project file each, plus a data generator calibrated on real data."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import duckdb
import pyarrow as pa

from ..errors import UserError

HERE = Path(__file__).parent
EXAMPLES = ("zen",)


def init_example(example: str, directory: Path) -> Path:
    if example not in EXAMPLES:
        raise UserError(f"unknown example '{example}'; available: {', '.join(EXAMPLES)}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "eventmart.yml"
    if target.exists():
        raise UserError(f"{target}: a project file exists already; choose an empty folder")
    shutil.copyfile(HERE / example / "eventmart.yml", target)
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


def run_demo(example: str, directory: Path, scale: float = 1.0, days: int = 0,
             say: Callable[[str], None] = print) -> None:
    from ..project import Project

    if not (directory / "eventmart.yml").exists():
        init_example(example, directory)
    path = generate_zen(directory, scale, days)
    say(f"generated {path}")
    with Project.load(directory) as p:
        res = p.ingest("log_raw")
        say(res.summary())
        results = p.backfill()
        ok = [r for r in results if r.status == "ok"]
        say(f"built marts: {len(ok)} window(s), {sum(r.rows for r in ok):,} rows")
    say(f"try: cd {directory} && eventmart query \"select * from dash_visits order by dt, visits desc limit 5\"")
