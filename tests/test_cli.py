"""The command line as a user runs it: the installed console script in a subprocess, with natural mistakes.

Usage mistakes print click's usage line and one `Error: …` line and exit 2; mistakes in the project or the data
print one `error: …` line (file:line where there is one) and exit 2; nothing prints a traceback.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import events_config, write_project
from helpers import random_events, write_events_csv

EVENTMART = str(Path(sys.executable).parent / "eventmart")


def em(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess:
    r = subprocess.run([EVENTMART, *args], capture_output=True, text=True, cwd=cwd, timeout=120)
    assert "Traceback" not in r.stderr, r.stderr
    return r


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    write_events_csv(tmp_path / "data" / "e.csv", random_events(200, seed=3, hours=2))
    return write_project(tmp_path, events_config())


def test_version():
    from eventmart import __version__

    r = em("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"eventmart {__version__}"


@pytest.mark.parametrize("args, needle", [
    (["ingest"], "Missing argument"),
    (["run", "--start", "2024-03-10"], "Missing option '--end'"),
    (["runz"], "No such command 'runz'. Did you mean 'run'"),
    (["serve", "--port", "abc"], "Invalid value for '--port'"),
    (["demo", "zen"], "Missing argument"),
    (["status", "--bogus"], "No such option: --bogus"),
    (["alerts", "silence"], "Missing argument"),
])
def test_usage_mistakes_are_one_error_line_and_exit_2(args, needle, tmp_path):
    r = em(*args, cwd=tmp_path)
    assert r.returncode == 2, (r.stdout, r.stderr)
    lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
    assert lines[0].startswith("Usage: eventmart") and lines[-1].startswith("Error: ") and needle in lines[-1]
    assert len(lines) <= 3


def test_unknown_names_suggest_the_close_one(proj):
    r = em("run", "by_topik", "--start", "2024-03-10", "--end", "2024-03-11", "-p", str(proj))
    assert r.returncode == 2 and "unknown mart 'by_topik'; did you mean 'by_topic'?" in r.stderr
    r = em("ingest", "evnts", "-p", str(proj))
    assert r.returncode == 2 and "did you mean 'events'?" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1


def test_project_option_takes_the_file_too(proj):
    r = em("ingest", "events", "-p", str(proj / "eventmart.yml"))
    assert r.returncode == 0, r.stderr
    assert "200 loaded" in r.stdout
    r = em("status", "-p", str(proj / "other.yml"))
    assert r.returncode == 2 and "a project file is named eventmart.yml" in r.stderr


def test_a_bad_measure_stops_every_command_with_its_line(proj):
    cfg = yaml.safe_load((proj / "eventmart.yml").read_text())
    cfg["marts"]["by_topic"]["measures"]["visits"] = "cnt()"
    write_project(proj, cfg)
    r = em("status", "-p", str(proj))
    assert r.returncode == 2
    text = (proj / "eventmart.yml").read_text().splitlines()
    line = next(i for i, t in enumerate(text, 1) if "cnt()" in t)
    assert f"eventmart.yml:{line}: marts.by_topic.measures.visits: 'cnt()' is not a measure" in r.stderr


def test_check_lists_every_problem_at_once(proj):
    cfg = yaml.safe_load((proj / "eventmart.yml").read_text())
    r = em("check", "-p", str(proj))
    assert r.returncode == 0 and r.stdout.startswith("ok:"), r.stderr
    # three independent mistakes in the file: all reported, each with its line
    cfg["marts"]["by_topic"]["grian"] = "1 hour"
    cfg["sources"]["events"]["time"]["unit"] = "minutes"
    cfg["schedules"] = {"nightly": {"cron": "61 3 * * *"}}
    write_project(proj, cfg)
    r = em("check", "-p", str(proj))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert any("marts.by_topic.grian: unknown key 'grian'; did you mean 'grain'?" in ln for ln in lines)
    assert any("sources.events.time.unit" in ln for ln in lines)
    assert any("schedules.nightly.cron" in ln for ln in lines)
    assert lines[-1].startswith("error: 3 problem(s)")


@pytest.mark.parametrize("case", ["format+column", "unknown key+column", "two columns", "key+time column",
                                  "bad type+measure"])
def test_check_lists_problems_of_different_kinds(proj, case):
    """A problem pydantic reports first (a bad choice, an unknown key, a bad type) no longer hides the checks behind
    it; two problems in one item are both named; nothing else is invented."""
    cfg = yaml.safe_load((proj / "eventmart.yml").read_text())
    mart, src = cfg["marts"]["by_topic"], cfg["sources"]["events"]
    want = []
    if case == "format+column":
        src["format"] = "xlsx"
        mart["dimensions"].append("city")
        want = ["sources.events.format: Input should be", "marts.by_topic.dimensions: 'city' is not a column"]
    elif case == "unknown key+column":
        mart["grian"] = "1 hour"
        mart["measures"]["spend"] = "sum(price)"
        want = ["marts.by_topic.grian: unknown key", "marts.by_topic.measures.spend: unknown column(s) price"]
    elif case == "two columns":
        mart["dimensions"].append("city")
        mart["measures"]["spend"] = "sum(price)"
        want = ["marts.by_topic.dimensions: 'city' is not a column", "marts.by_topic.measures.spend: unknown column"]
    elif case == "key+time column":
        src["key"] = ["uid"]
        src["time"]["column"] = "when"
        want = ["sources.events.time.column: 'when' is not one of the declared columns",
                "sources.events.key: key column 'uid' is not one of the declared columns"]
    else:
        src["columns"]["amount"] = "money?"
        mart["measures"]["bad"] = "median(amount)"
        want = ["sources.events.columns.amount.type: 'money' is not a column type"]
    write_project(proj, cfg)
    r = em("check", "-p", str(proj))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    for w in want:
        assert sum(w in ln for ln in lines) == 1, (w, lines)
    assert lines[-1] == f"error: {len(want)} problem(s) in the project file", lines


def test_check_finds_what_needs_the_warehouse(proj, tmp_path):
    cfg = yaml.safe_load((proj / "eventmart.yml").read_text())
    cfg["marts"]["broken_sql"] = {"from": "events", "grain": "1 hour",
                                  "sql": "select _time as dt, no_such_column from events "
                                         "where _time >= {{ start }} and _time < {{ end }}"}
    cfg["sources"]["more"] = dict(cfg["sources"]["events"], path="nowhere/*.csv")
    write_project(proj, cfg)
    assert em("ingest", "events", "-p", str(proj)).returncode == 0
    r = em("check", "-p", str(proj))
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert any("sources.more" in ln and "no file matches" in ln for ln in lines), lines
    assert any("marts.broken_sql" in ln and "no_such_column" in ln for ln in lines), lines
    # nothing was written: the warehouse has no ledger, the mart no table
    assert "broken_sql" not in em("query", "select table_name from information_schema.tables", "-p",
                                  str(proj)).stdout


def test_init_writes_a_minimal_project_that_checks(tmp_path):
    r = em("init", str(tmp_path / "mine"))
    assert r.returncode == 0, r.stderr
    text = (tmp_path / "mine" / "eventmart.yml").read_text()
    assert "#" in text and "sources:" in text  # commented
    assert em("check", "-p", str(tmp_path / "mine")).returncode == 2  # no data yet: says which path matches nothing
    assert em("init", str(tmp_path / "mine")).returncode == 2  # never overwrites


@pytest.mark.parametrize("kind", ["ms", "iso"])
def test_init_from_a_csv_proposes_a_working_project(tmp_path, kind):
    """CSV in, then the five commands of the README's first-project section: check, ingest, backfill, a
    dashboard that answers — each through the console script."""
    import csv as csvmod
    from datetime import datetime, timedelta

    rows = []
    t0 = datetime(2024, 5, 1)
    for i in range(500):
        t = t0 + timedelta(minutes=7 * i)
        rows.append({"event_id": 1000 + i, "user_id": i % 37, "page": ["home", "cart", "pay"][i % 3],
                     "country": ["DE", "FR"][i % 2],
                     "ts": int(t.timestamp() * 1000) if kind == "ms" else t.isoformat() + "Z",
                     "price": "" if i % 5 == 0 else f"{i * 1.5:.2f}"})
    src = tmp_path / "my events.csv"
    with open(src, "w", newline="") as f:
        w = csvmod.DictWriter(f, list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    d = tmp_path / "first"
    r = em("init", str(d), "--from", str(src))
    assert r.returncode == 0, r.stderr
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    (name, source), = cfg["sources"].items()
    assert name == "my_events"
    assert source["time"] == ({"column": "ts", "unit": "ms"} if kind == "ms" else {"column": "ts"})
    assert source["key"] == ["event_id"] and source["columns"]["price"] == "decimal(18,2)?"
    (mart_name, mart), = cfg["marts"].items()
    assert mart_name == "my_events_by_15min" and mart["grain"] == "15 minutes"  # events 7 minutes apart
    assert mart["dimensions"] == ["page", "country"] and "users" in mart["measures"]
    assert mart["measures"]["price_sum"] == "sum(price)"
    assert (d / "data" / "my events.csv").exists()
    for args in (["check"], ["ingest", name], ["backfill"], ["check"]):
        r = em(*args, "-p", str(d))
        assert r.returncode == 0, (args, r.stdout, r.stderr)
    r = em("query", "select sum(events), count(*) from my_events_by_15min", "--format", "json", "-p", str(d))
    assert r.returncode == 0 and '"sum(events)": 500' in r.stdout.replace(" ", "").replace(":", ": ")
    from eventmart import Project
    from eventmart.server.web import create_server

    with Project.load(d) as p:
        assert create_server(p).test_client().get("/d/overview/").status_code == 200


def test_demo_help_describes_each_example_and_a_taken_port_is_one_line(tmp_path):
    r = em("demo", "--help")
    assert "zen:" in r.stdout and "feed:" in r.stdout
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        write_events_csv(tmp_path / "data" / "e.csv", random_events(20, seed=1, hours=1))
        write_project(tmp_path, events_config())
        r = em("serve", "--port", str(port), "-p", str(tmp_path))
    assert r.returncode == 2
    assert r.stderr.strip() == f"error: port {port} on 127.0.0.1 is in use (another eventmart serve, or another " \
                               "program); pass --port N"


def test_listing_commands_speak_csv_and_json(proj):
    """Every command that lists things takes --format table|csv|json; the JSON and CSV say the same as the
    warehouse does."""
    import csv as csvmod
    import io
    import json

    assert em("ingest", "events", "-p", str(proj)).returncode == 0
    assert em("backfill", "-p", str(proj)).returncode == 0
    truth = em("query", "select count(*) as n, min(window_start) as s from _eventmart_runs", "-f", "json",
               "-p", str(proj))
    (want,) = json.loads(truth.stdout)
    for args in (["status"], ["runs"], ["ingests"], ["rejects", "events"], ["backfill", "--dry-run"],
                 ["alerts", "history"], ["alerts", "status"], ["alerts", "silences"]):
        for fmt in ("csv", "json"):
            r = em(*args, "--format", fmt, "-p", str(proj))
            assert r.returncode == 0, (args, fmt, r.stderr)
            if fmt == "json":
                data = json.loads(r.stdout)
                assert isinstance(data, dict | list), args
            else:
                rows = list(csvmod.reader(io.StringIO(r.stdout)))
                assert rows and all(len(x) == len(rows[0]) for x in rows), (args, r.stdout)
    runs = json.loads(em("runs", "-f", "json", "-p", str(proj)).stdout)
    assert len(runs) == want["n"] and min(r["window_start"] for r in runs) == want["s"]
    status = json.loads(em("status", "-f", "json", "-p", str(proj)).stdout)
    (m,) = status["marts"]
    assert m["mart"] == "by_topic" and m["gaps"] == [] and m["covered"][0][0] == want["s"]
    assert m["rows"] == json.loads(em("query", "select count(*) as n from by_topic", "-f", "json", "-p",
                                      str(proj)).stdout)[0]["n"]
    r = em("status", "--format", "xml", "-p", str(proj))
    assert r.returncode == 2 and r.stderr.strip() == "error: --format xml: use table, csv or json"


def test_dot_env_beside_the_project_is_read_and_the_environment_wins(proj):
    import os

    cfg = yaml.safe_load((proj / "eventmart.yml").read_text())
    cfg["sources"]["events"]["path"] = "${EVENTS_GLOB}"
    write_project(proj, cfg)
    r = em("ingest", "events", "-p", str(proj))
    assert r.returncode == 2 and "environment variable EVENTS_GLOB is not set" in r.stderr
    (proj / ".env").write_text("# where the events are\nEVENTS_GLOB=data/*.csv\n")
    r = em("ingest", "events", "-p", str(proj))
    assert r.returncode == 0 and "200 loaded" in r.stdout, r.stderr
    env = {**os.environ, "EVENTS_GLOB": "nowhere/*.csv"}
    r = subprocess.run([EVENTMART, "ingest", "events", "--force", "-p", str(proj)], capture_output=True, text=True,
                       env=env, timeout=120)
    assert r.returncode == 2 and "nowhere" in r.stderr  # the environment wins over .env


def test_shell_completion_is_offered(tmp_path):
    import os

    r = em("--help")
    assert "--install-completion" in r.stdout
    r = em("--show-completion", "bash")
    assert r.returncode == 0 and "_eventmart_completion" in r.stdout
    env = {**os.environ, "_EVENTMART_COMPLETE": "complete_bash", "COMP_WORDS": "eventmart alerts hi",
           "COMP_CWORD": "2"}
    r = subprocess.run([EVENTMART], capture_output=True, text=True, env=env, timeout=60)
    assert r.stdout.split() == ["history"]


def test_a_failed_init_leaves_nothing_and_every_example_is_listed(tmp_path):
    f = tmp_path / "no time.csv"
    f.write_text("name,colour\nann,red\nbob,blue\n")
    r = em("init", str(tmp_path / "p"), "--from", str(f))
    assert r.returncode == 2 and "no column reads as the event time" in r.stderr
    assert not (tmp_path / "p").exists()
    r = em("init", str(tmp_path / "q"), "--example", "nope")
    assert r.returncode == 2 and "available: zen, feed, groups, web" in r.stderr and not (tmp_path / "q").exists()
    help_text = " ".join(em("init", "--help").stdout.split())
    for name in ("zen:", "feed:", "groups:", "web:"):
        assert name in help_text


@pytest.mark.parametrize("example", ["zen", "feed", "groups", "web"])
def test_a_fresh_example_checks_before_anything_is_loaded(tmp_path, example):
    d = tmp_path / example
    assert em("init", str(d), "--example", example).returncode == 0
    r = em("check", "-p", str(d))
    assert r.returncode == 0 and r.stdout.startswith("ok: "), r.stdout + r.stderr
