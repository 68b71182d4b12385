"""A command started often — a minute's `eventmart run` from cron — loads only what it needs: what the project
file's expressions and marts compile to is kept between processes (memo.py), so sqlglot and croniter are not
imported, nor rich for plain lines to a pipe. Checked as the user runs it: the installed console script in a
subprocess, its imports read from ``python -X importtime``; the results checked against pandas on the raw events,
with the cache cold, warm, and after the project file changed."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import duckdb
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from helpers import random_events, write_events_csv

EVENTMART = str(Path(sys.executable).parent / "eventmart")
START, END = "2024-03-10T05:00:00", "2024-03-10T06:00:00"

PROJECT = """\
name: startup
warehouse: {type: duckdb, path: warehouse.duckdb}
sources:
  events:
    format: csv
    path: events.csv
    columns: {id: int, user_id: int, action: string, topic: string, amount: float?, ts: int}
    time: {column: ts, unit: ms}
    key: [id]
marts:
  by_topic:
    from: events
    grain: 1 minute
    dimensions: [topic]
    measures:
      events: count()
      users: count_distinct(user_id)
      amount: MEASURE
channels:
  hook: {type: webhook, url: "${STARTUP_HOOK}"}
schedules:
  minutely: {cron: "* * * * *", run: marts}
"""


def _project(d: Path, amount: str = "sum(amount)") -> Path:
    d.mkdir(parents=True, exist_ok=True)
    write_events_csv(d / "events.csv", random_events(3000, seed=7))
    (d / "eventmart.yml").write_text(PROJECT.replace("MEASURE", amount))
    return d


def _env(cache: Path) -> dict:
    return {**os.environ, "EVENTMART_CACHE_DIR": str(cache), "STARTUP_HOOK": "http://127.0.0.1:9/hook-s3cr3t-t0ken"}


def _run(d: Path, cache: Path, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """The console script with its imports traced (the modules it loaded, by top-level name)."""
    env = {**_env(cache), "PYTHONPROFILEIMPORTTIME": "1"}
    r = subprocess.run([EVENTMART, *args, "-p", str(d)], capture_output=True, text=True, env=env)
    assert r.returncode == 0, r.stderr[-2000:]
    mods = {line.split("|")[-1].strip().split(".")[0] for line in r.stderr.splitlines() if line.startswith("import time:")}
    return r, mods


def _mart(d: Path) -> dict:
    con = duckdb.connect(str(d / "warehouse.duckdb"), read_only=True)
    rows = con.execute("SELECT topic, dt, events, users, amount FROM by_topic ORDER BY topic, dt").fetchall()
    con.close()
    return {(t, dt): (e, u, a) for t, dt, e, u, a in rows}


def _check_against_pandas(d: Path, amount_of, column: str = "amount") -> None:
    import pandas as pd

    df = pd.DataFrame(random_events(3000, seed=7)).drop_duplicates("id")
    df["dt"] = pd.to_datetime(df["ts"], unit="ms").dt.floor("min")
    df = df[(df["dt"] >= START) & (df["dt"] < END)]
    want = {}
    for (topic, dt), g in df.groupby(["topic", "dt"]):
        want[(topic, dt.to_pydatetime())] = (len(g), g["user_id"].nunique(), amount_of(g[column]))
    got = _mart(d)
    assert got.keys() == want.keys()
    for k, (e, u, a) in want.items():
        ge, gu, ga = got[k]
        assert (ge, gu) == (e, u), k
        assert (ga is None and a is None) or ga == pytest.approx(a), k


def test_a_warm_run_loads_neither_sqlglot_nor_croniter_nor_rich_and_counts_the_same(tmp_path):
    d, cache = _project(tmp_path / "p"), tmp_path / "cache"
    subprocess.run([EVENTMART, "ingest", "events", "-p", str(d)], check=True, capture_output=True, env=_env(cache))
    cold, cold_mods = _run(d, cache, "run", "--start", START, "--end", END)
    assert "sqlglot" in cold_mods  # the first run compiles the marts (ingest checked the file, cron included)
    _check_against_pandas(d, lambda s: s.sum(min_count=1) if s.notna().any() else None)
    warm, warm_mods = _run(d, cache, "run", "--start", START, "--end", END)
    heavy = {"sqlglot", "croniter", "rich", "pyarrow", "pandas"} & warm_mods
    assert not heavy, heavy
    assert [line.split(" rows")[0] for line in warm.stdout.splitlines()] == \
        [line.split(" rows")[0] for line in cold.stdout.splitlines()]
    _check_against_pandas(d, lambda s: s.sum(min_count=1) if s.notna().any() else None)
    # nothing secret on disk: the channel's URL came from the environment
    kept = [p.read_text() for p in cache.iterdir()]
    assert kept and not any("s3cr3t" in text for text in kept)


def test_a_changed_measure_is_compiled_again_and_a_bad_one_is_still_refused(tmp_path):
    d, cache = _project(tmp_path / "p"), tmp_path / "cache"
    subprocess.run([EVENTMART, "ingest", "events", "-p", str(d)], check=True, capture_output=True, env=_env(cache))
    _run(d, cache, "run", "--start", START, "--end", END)
    # the same project with another measure: the kept SQL of the old one must not answer
    subprocess.run([EVENTMART, "reset", "by_topic", "-p", str(d)], check=True, capture_output=True, env=_env(cache))
    (d / "eventmart.yml").write_text(PROJECT.replace("MEASURE", "max(amount)"))
    _run(d, cache, "run", "--start", START, "--end", END)
    _check_against_pandas(d, lambda s: s.max() if s.notna().any() else None)
    # a bad expression is never kept as checked: every command refuses it, with its line
    (d / "eventmart.yml").write_text(PROJECT.replace("MEASURE", "sum(nope)"))
    for _ in range(2):
        r = subprocess.run([EVENTMART, "run", "--start", START, "--end", END, "-p", str(d)], capture_output=True,
                           text=True, env=_env(cache))
        assert r.returncode == 2 and "unknown column(s) nope" in r.stderr and "eventmart.yml:" in r.stderr, r.stderr
    # a bad cron expression too (croniter's verdict is kept only when it is yes)
    (d / "eventmart.yml").write_text(PROJECT.replace("MEASURE", "sum(amount)").replace("* * * * *", "61 * * * *"))
    for _ in range(2):
        r = subprocess.run([EVENTMART, "check", "-p", str(d)], capture_output=True, text=True, env=_env(cache))
        assert r.returncode == 2 and "five-field cron" in r.stderr + r.stdout


def test_a_cache_that_cannot_be_written_is_no_cache(tmp_path):
    d = _project(tmp_path / "p")
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the cache folder would go")
    subprocess.run([EVENTMART, "ingest", "events", "-p", str(d)], check=True, capture_output=True, env=_env(blocker))
    for _ in range(2):
        _, mods = _run(d, blocker, "run", "--start", START, "--end", END)
        assert "sqlglot" in mods  # parsed every time, and right
    _check_against_pandas(d, lambda s: s.sum(min_count=1) if s.notna().any() else None)


# --- plain lines to a pipe: exactly what rich writes ---------------------------------------------------

# pieces of text, some of which rich would change (markup, emoji codes, escapes, wide characters)
PIECES = [*"ab Z019:[]/#@\\\t-,.()) _", "Ж", "é", "東", "😀", ":smile:", "[bold]", "[/]", ":100:", ":-1:", "\n", "\x1b",
          "05:00):", "[2024-03-10 05:00, 2024-03-10 06:00)"]
TEXT = st.lists(st.sampled_from(PIECES), max_size=30).map("".join)


@settings(max_examples=300, deadline=None)
@given(text=TEXT, width=st.sampled_from([20, 80, 200]))
def test_a_plain_line_to_a_pipe_reads_as_rich_would_write_it(text, width):
    from rich.console import Console

    from eventmart.cli.output import _Console

    def written(console) -> tuple[str, str | None]:
        buf, saved = io.StringIO(), sys.stdout
        sys.stdout = buf
        try:
            console.print(text)
            return buf.getvalue(), None
        except Exception as e:  # rich refuses bad markup ("[/]" closing nothing): so must we
            return buf.getvalue(), type(e).__name__
        finally:
            sys.stdout = saved

    assert written(_Console(highlight=False, width=width)) == written(Console(highlight=False, width=width))


def test_the_run_lines_take_the_quick_way(tmp_path):
    """The lines `eventmart run` prints are the plain kind: the quick path is the one cron takes."""
    from eventmart.cli.output import _RICH
    from eventmart.ledger import RunResult

    line = RunResult("by_topic", datetime(2024, 3, 10, 5), datetime(2024, 3, 10, 6), "ok", 1234, 0.031).line()
    assert not _RICH.search(line) and len(line) < 200, line


def test_a_value_from_the_environment_in_an_expression_stays_off_the_disk(tmp_path):
    """A measure may read a value from the environment (`count_if(action = '${...}')`): its compiled SQL holds the
    value, so it is compiled every time instead of kept."""
    d, cache = _project(tmp_path / "p"), tmp_path / "cache"
    (d / "eventmart.yml").write_text(PROJECT.replace("MEASURE", "count_if(action = '${STARTUP_ACTION}')"))
    env = {**_env(cache), "STARTUP_ACTION": "share"}
    subprocess.run([EVENTMART, "ingest", "events", "-p", str(d)], check=True, capture_output=True, env=env)
    for _ in range(2):
        r = subprocess.run([EVENTMART, "run", "--start", START, "--end", END, "-p", str(d)], capture_output=True,
                           text=True, env=env)
        assert r.returncode == 0, r.stderr
    kept = {p.name.split("-")[0]: p.read_text() for p in cache.iterdir()}
    assert not any("share" in text for text in kept.values())
    # neither the SQL nor the verdict of the checks (its file is named by a hash of the expressions) is kept;
    # the cron's verdict, which reads nothing from the environment, is
    assert set(kept) == {"cron"}, kept
    _check_against_pandas(d, lambda s: int((s == "share").sum()), column="action")


def test_the_kept_sql_of_a_mart_is_what_compiling_it_gives(tmp_path, monkeypatch):
    """The cache answers with exactly what compile_mart returns, for every bundled example's marts."""
    from eventmart import Project, memo
    from eventmart.examples import init_example
    from eventmart.marts import compile_mart

    monkeypatch.setenv("EVENTMART_CACHE_DIR", str(tmp_path / "cache"))
    for example in ("zen", "feed", "groups"):
        d = tmp_path / example
        init_example(example, d, "duckdb")
        for _ in range(2):  # computed and kept, then found as a second process would
            with Project.load(d) as p:
                for name, mart in p.config.marts.items():
                    if mart.sql is None:
                        assert p.runner.compiled(name) == compile_mart(p.warehouse, name, mart, p.config.sources)
    assert any(f.name.startswith("mart-sql-") for f in (tmp_path / "cache").iterdir())
    assert memo.get("nothing", ["kept"]) is None
