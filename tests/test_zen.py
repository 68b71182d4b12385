"""The Zen example end to end: the generated raw log aggregates, through our pipeline, to the real dash_visits."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow.compute as pc

from eventmart import Project
from eventmart.examples.zen import COLUMNS, calibrated_events, read_real, scaled_events


def real_rows() -> list[tuple[str, ...]]:
    """The real dash_visits as CSV text rows, sorted."""
    real = read_real()
    cols = ["item_topic", "source_topic", "age_segment", "dt", "visits"]
    return sorted((a, b, c, t.strftime("%Y-%m-%d %H:%M:%S"), str(v))
                  for a, b, c, t, v in zip(*(real[k].to_pylist() for k in cols), strict=True))


def test_demo_reproduces_the_real_dash_visits(tmp_path: Path):
    d = tmp_path / "zen"
    r = subprocess.run([sys.executable, "-m", "eventmart", "demo", "zen", str(d), "--no-serve"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert "310,207 loaded, 0 duplicate, 0 rejected" in r.stdout
    # the seed's column order, readable from CSV with a header
    with open(d / "data" / "log_raw.csv", encoding="utf-8") as f:
        assert next(csv.reader(f)) == COLUMNS
    q = subprocess.run([sys.executable, "-m", "eventmart", "query",
                        "select item_topic, source_topic, age_segment, strftime(dt, '%Y-%m-%d %H:%M:%S') as dt, visits "
                        "from dash_visits", "--format", "csv", "-p", str(d)], capture_output=True, text=True)
    assert q.returncode == 0, q.stderr
    got = sorted(tuple(row) for row in list(csv.reader(io.StringIO(q.stdout)))[1:])
    want = real_rows()
    assert len(want) == 30_745 and got == want
    with Project.load(d) as p:
        cols = p.query("SELECT * FROM dash_engagement LIMIT 0").columns
        assert cols == ["dt", "item_topic", "event", "age_segment", "unique_users"]
        funnel = dict(p.query("SELECT event, count(DISTINCT user_id) FROM log_raw GROUP BY 1").rows)
        assert funnel["show"] > funnel["click"] > funnel["view"] > 0
        # users come back: far fewer users than events
        assert sum(funnel.values()) < 310_207 / 5
        assert [s.gaps for s in p.status()] == [[], []]
    j = subprocess.run([sys.executable, "-m", "eventmart", "query", "select count(*) as n, sum(visits) as v from dash_visits",
                        "--format", "json", "-p", str(d)], capture_output=True, text=True)
    assert json.loads(j.stdout) == [{"n": 30745, "v": 310207}]


def test_calibrated_log_has_the_seed_shape():
    t = calibrated_events()
    assert t.column_names == COLUMNS and t.num_rows == 310_207
    assert pc.min(t["ts"]).as_py() >= 1569349680000 and pc.max(t["ts"]).as_py() < 1569351660000
    assert len(pc.unique(t["event_id"])) == t.num_rows
    assert set(pc.unique(t["event"]).to_pylist()) == {"show", "click", "view"}


def test_scaled_log_keeps_the_real_mix():
    t = scaled_events(200_000, days=2)
    assert t.num_rows == 200_000
    real = read_real()
    counts = pc.value_counts(t["age_segment"]).to_pylist()
    got = {c["values"]: c["counts"] / t.num_rows for c in counts}
    tot = sum(real["visits"].to_pylist())
    want: dict[str, float] = {}
    for a, v in zip(real["age_segment"].to_pylist(), real["visits"].to_pylist(), strict=True):
        want[a] = want.get(a, 0) + v / tot
    assert set(got) == set(want)
    for a in want:
        assert abs(got[a] - want[a]) < 0.01
    days = pc.floor(pc.divide(t["ts"], 86_400_000))
    assert len(pc.unique(days)) == 2


def test_demo_on_clickhouse_gives_the_same_marts(tmp_path: Path):
    """`eventmart demo zen DIR --engine clickhouse`, the installed console script: the same dash_visits, row for
    row, from embedded chDB."""
    d = tmp_path / "zen-ch"
    exe = str(Path(sys.executable).parent / "eventmart")
    r = subprocess.run([exe, "demo", "zen", str(d), "--engine", "clickhouse", "--no-serve"], capture_output=True,
                       text=True)
    assert r.returncode == 0, r.stderr
    assert "type: clickhouse" in (d / "eventmart.yml").read_text()
    assert "310,207 loaded, 0 duplicate, 0 rejected" in r.stdout
    q = subprocess.run([exe, "query", "select item_topic, source_topic, age_segment, toString(dt) as dt, visits "
                        "from dash_visits", "--format", "csv", "-p", str(d)], capture_output=True, text=True)
    assert q.returncode == 0, q.stderr
    got = sorted(tuple(row) for row in list(csv.reader(io.StringIO(q.stdout)))[1:])
    want = real_rows()
    assert len(want) == 30_745 and got == want
    s = subprocess.run([exe, "status", "-p", str(d)], capture_output=True, text=True)
    assert s.returncode == 0 and "none" in s.stdout, s.stdout + s.stderr
