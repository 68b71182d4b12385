"""Every main command typed in a terminal (a pseudo-terminal, as a person runs them): progress and colours on a
terminal, plain lines when piped, NO_COLOR respected, never a traceback."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from conftest import events_config, write_project
from helpers import random_events, write_events_csv
from terminal import COLOUR, EVENTMART, terminal_env, typed


@pytest.fixture
def proj(tmp_path: Path) -> Path:
    write_events_csv(tmp_path / "data" / "e.csv", random_events(30_000, seed=5, hours=60))
    return write_project(tmp_path, events_config())


def test_ingest_and_backfill_show_progress_on_a_terminal(proj):
    r = typed("ingest", "events", "-p", str(proj))
    assert r.rc == 0, r.text
    assert "events: 30,000 loaded, 0 duplicate, 0 rejected" in r.text
    assert "━" in r.raw  # the progress bar was drawn (and erased: transient)
    r = typed("backfill", "-p", str(proj))
    assert r.rc == 0, r.text
    assert r.lines[-1].startswith("by_topic: [2024-03-09 23:59, ") and "built in 1 run(s)" in r.lines[-1]
    assert COLOUR.search(r.raw)


def test_no_color_and_pipes_get_plain_text(proj):
    r = typed("ingest", "events", "-p", str(proj), env=terminal_env(NO_COLOR="1"))
    assert r.rc == 0 and "30,000 loaded" in r.text
    assert not COLOUR.search(r.raw), r.raw[:300]
    piped = subprocess.run([EVENTMART, "status", "-p", str(proj)], capture_output=True, text=True, timeout=120)
    assert piped.returncode == 0 and "\x1b[" not in piped.stdout + piped.stderr


def test_init_check_run_status_query_in_a_terminal(tmp_path, proj):
    r = typed("init", str(tmp_path / "fresh"))
    assert r.rc == 0 and "wrote" in r.text
    r = typed("check", cwd=tmp_path / "fresh")  # the template names files that are not there yet: said, exit 2
    assert r.rc == 2 and r.lines[-1].startswith("error: ") and "no file matches" in r.text
    r = typed("run", "--start", "2024-03-10", "--end", "2024-03-11", cwd=proj)  # before any ingest
    assert r.rc == 2 and r.lines == ["error: mart by_topic reads source events, which has never been loaded; run "
                                     "`eventmart ingest events` first"], r.lines
    r = typed("backfill", cwd=proj)
    assert r.rc == 2 and "nothing loaded yet" in r.text and len(r.lines) == 1
    assert typed("check", cwd=proj).rc == 0
    assert typed("ingest", "events", cwd=proj).rc == 0
    r = typed("run", "--start", "2024-03-10", "--end", "2024-03-11", cwd=proj)
    assert r.rc == 0 and r.lines[0].startswith("by_topic [2024-03-10 00:00, 2024-03-11 00:00): ")
    r = typed("status", cwd=proj, cols=160)
    assert r.rc == 0 and "by_topic" in r.text and "┃" in r.text  # a table, drawn for the terminal
    r = typed("query", "select count(*) as n, sum(events) as e from by_topic", cwd=proj)
    assert r.rc == 0 and "┃ n" in r.text
    r = typed("query", "delete from by_topic", cwd=proj)
    assert r.rc == 2 and r.lines[-1].startswith("error: ")


def test_serve_answers_and_stops_on_ctrl_c(proj):
    import httpx
    import pexpect

    from terminal import spawn

    assert typed("ingest", "events", cwd=proj).rc == 0
    child = spawn("serve", "--port", "0", cwd=proj, timeout=60)
    child.expect(r"at (http://127\.0\.0\.1:\d+/)")
    try:
        assert httpx.get(child.match.group(1), follow_redirects=True, timeout=30).status_code == 200
    finally:
        child.sendintr()
        child.expect(pexpect.EOF)
        child.close()
    assert child.exitstatus == 0 and "stopping after" in child.before
    r = typed("serve", "--port", "99999", cwd=proj)
    assert r.rc == 2 and "99999" in r.text and "Traceback" not in r.text


def test_demo_alerts_backtest_and_vault_in_a_terminal(tmp_path):
    d = tmp_path / "feed"
    r = typed("demo", "feed", str(d), "--scale", "0.05", "--days", "10", "--no-serve", timeout=600)
    assert r.rc == 0, r.text
    assert "⠋" in r.raw or "⠙" in r.raw  # a spinner named the long steps
    assert "built marts:" in r.text and "daily digest for" in r.text
    r = typed("alerts", "backtest", "users", "--start", "2024-03-02", "--end", "2024-03-11", cwd=d)
    assert r.rc == 0 and re.search(r"users: [\d,]+ bucket\(s\) judged", r.text), r.text
    g = tmp_path / "groups"
    r = typed("init", str(g), "--example", "groups")
    assert r.rc == 0 and "next: " in r.text
    for source in ("users", "groups", "dialogs", "group_log"):
        assert typed("ingest", source, cwd=g).rc == 0
    r = typed("vault", "load", cwd=g)
    assert r.rc == 0 and re.search(r"h_users: [\d,]+ new", r.text), r.text


def test_the_terminal_harness_works_past_fd_1024():
    """chDB's thread pools keep /proc files open, so a long test process holds 1,000+ descriptors; the harness must
    still read its terminal (select() cannot watch fd 1024+, poll() can)."""
    import os

    held = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        r = typed("--help")
        assert r.rc == 0 and "ingest" in r.text
    finally:
        for fd in held:
            os.close(fd)
