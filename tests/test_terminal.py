"""Every main command typed in a terminal (a pseudo-terminal, as a person runs them): progress and colours on a
terminal, plain lines when piped, NO_COLOR respected, never a traceback."""

from __future__ import annotations

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
