"""The project file: one-line errors naming file, line and key; ${VAR} substitution; exit status 2."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from conftest import events_config, write_project
from eventmart import Project, ProjectError
from eventmart.timeutil import chunks, parse_grain, subtract_intervals

GOOD = """\
name: t
warehouse:
  type: duckdb
sources:
  events:
    format: csv
    path: data/*.csv
    columns:
      id: int
      ts: int
    time: {column: ts, unit: ms}
    key: [id]
marts:
  m:
    from: events
    grain: 1 minute
    measures:
      n: count()
"""


def _err(tmp_path: Path, text: str) -> str:
    (tmp_path / "eventmart.yml").write_text(text)
    with pytest.raises(ProjectError) as e:
        Project.load(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg and msg.startswith(str(tmp_path / "eventmart.yml"))
    return msg.split("eventmart.yml", 1)[1]


def test_good_file_loads(tmp_path: Path):
    (tmp_path / "eventmart.yml").write_text(GOOD)
    p = Project.load(tmp_path)
    assert p.config.marts["m"].grain_seconds == 60


@pytest.mark.parametrize("old,new,expect", [
    ("grain: 1 minute", "grain: 7 minutes", ":16: marts.m.grain: grain '7 minutes' must be between 1 minute and 1 day and divide a day evenly"),
    ("grain: 1 minute", "grain: fortnightly", ":16: marts.m.grain: 'fortnightly' is not a grain"),
    ("from: events", "from: evnts", ":15: marts.m.from: 'evnts' is not a declared source"),
    ("      ts: int\n", "      ts: integer\n", ":10: sources.events.columns.ts.type: 'integer' is not a column type"),
    ("    key: [id]", "    key: [uid]", ":12: sources.events.key: key column 'uid' is not one of the declared columns"),
    ("    format: csv", "    format: xlsx", ":6: sources.events.format: Input should be"),
    ("    grain: 1 minute", "    grain: 1 minute\n    grian: 1 hour", ":17: marts.m.grian: unknown key 'grian'; did you mean 'grain'?"),
    ("time: {column: ts, unit: ms}", "time: {column: ts, unit: ns}", ":11: sources.events.time.unit: Input should be"),
    ("time: {column: ts, unit: ms}", "time: {column: ts}", ":11: sources.events.time: time column 'ts' with unit timestamp must be declared as timestamp, date or string"),
    ("    path: data/*.csv", "    path: [data/*.csv", ":8: not valid YAML"),
    ("  type: duckdb", "  type: duckdb\n  memory_limit: lots", ":4: warehouse.memory_limit: 'lots' is not a size"),
])
def test_errors_name_line_and_key(tmp_path: Path, old: str, new: str, expect: str):
    assert old in GOOD
    msg = _err(tmp_path, GOOD.replace(old, new, 1))
    assert msg.startswith(expect), msg


def test_env_substitution_and_missing_variable(tmp_path: Path, monkeypatch):
    text = GOOD.replace("  type: duckdb", "  type: duckdb\n  path: ${WH_FILE:-w.duckdb}").replace(
        "name: t", "name: ${PROJECT_NAME}")
    monkeypatch.setenv("PROJECT_NAME", "zen-prod")
    (tmp_path / "eventmart.yml").write_text(text)
    p = Project.load(tmp_path)
    assert p.config.name == "zen-prod" and p.config.warehouse.path == "w.duckdb"
    monkeypatch.delenv("PROJECT_NAME")
    assert _err(tmp_path, text) == ":1: name: environment variable PROJECT_NAME is not set; export PROJECT_NAME=... before running eventmart"


def test_secret_never_appears_in_errors(tmp_path: Path, monkeypatch):
    monkeypatch.setenv("PG_URL", "postgresql://u:s3cr3t-pw@127.0.0.1:1/db")
    write_project(tmp_path, events_config(warehouse={"type": "postgres", "url": "${PG_URL}"}))
    r = subprocess.run([sys.executable, "-m", "eventmart", "status", "-p", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2
    assert "s3cr3t-pw" not in r.stderr + r.stdout
    assert "cannot connect to PostgreSQL at postgresql://u@127.0.0.1:1/db" in r.stderr


def test_cli_reports_project_errors_with_exit_2(tmp_path: Path):
    r = subprocess.run([sys.executable, "-m", "eventmart", "status", "-p", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and "no project file here" in r.stderr and r.stderr.count("\n") == 1
    (tmp_path / "eventmart.yml").write_text(GOOD.replace("grain: 1 minute", "grain: 7 minutes"))
    r = subprocess.run([sys.executable, "-m", "eventmart", "status", "-p", str(tmp_path)], capture_output=True, text=True)
    assert r.returncode == 2 and ":16: marts.m.grain" in r.stderr
    r = subprocess.run([sys.executable, "-m", "eventmart", "run", "--start", "x", "--end", "y", "-p", str(tmp_path)],
                       capture_output=True, text=True)
    assert r.returncode == 2


def test_every_command_has_help():
    for cmd in ["ingest", "rejects", "run", "backfill", "status", "query", "reset", "init", "demo"]:
        r = subprocess.run([sys.executable, "-m", "eventmart", cmd, "--help"], capture_output=True, text=True)
        assert r.returncode == 0 and "Usage" in r.stdout, cmd


def test_grains_and_intervals():
    assert [parse_grain(g) for g in ("minute", "15 minutes", "1 hour", "1 day")] == [60, 900, 3600, 86400]
    for bad in ("7 minutes", "30 seconds", "2 days", "soon"):
        with pytest.raises(ValueError):
            parse_grain(bad)
    from datetime import datetime as D
    assert list(chunks(D(2024, 1, 1, 20), D(2024, 1, 3, 2), 86400)) == [
        (D(2024, 1, 1, 20), D(2024, 1, 2)), (D(2024, 1, 2), D(2024, 1, 3)), (D(2024, 1, 3), D(2024, 1, 3, 2))]
    assert subtract_intervals((D(2024, 1, 1), D(2024, 1, 5)), [(D(2024, 1, 2), D(2024, 1, 3)), (D(2024, 1, 2, 12), D(2024, 1, 4))]) == [
        (D(2024, 1, 1), D(2024, 1, 2)), (D(2024, 1, 4), D(2024, 1, 5))]


def test_duckdb_memory_limit_holds_and_comes_back_after_an_ingest(tmp_path: Path):
    """warehouse.memory_limit bounds DuckDB (beyond it, it spills); an ingest lowers it for its own chunks and
    restores the project's limit, not DuckDB's default (80 % of the machine)."""
    from eventmart.warehouse.duckdb import default_memory_limit
    from helpers import random_events, write_events_csv

    def limit(p: Project) -> str:
        return p.warehouse.con.execute("SELECT current_setting('memory_limit')").fetchone()[0]

    write_events_csv(tmp_path / "data" / "e.csv", random_events(50, seed=1))
    write_project(tmp_path, events_config({"type": "duckdb", "memory_limit": "1536MB"}))
    with Project.load(tmp_path) as p:
        assert limit(p) == "1.4 GiB"  # DuckDB prints 1536 MB (10^6) as GiB
        assert p.ingest("events").loaded == 50
        assert limit(p) == "1.4 GiB"
    write_project(tmp_path, events_config({"type": "duckdb"}))
    with Project.load(tmp_path) as p:
        half = int(default_memory_limit().removesuffix("MiB"))
        shown = limit(p)
        assert shown.endswith("GiB") and abs(float(shown.split()[0]) * 1024 - half) < 0.06 * half, (shown, half)
