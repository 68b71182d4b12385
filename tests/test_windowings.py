"""A mart is the same table whatever windows built it: every bundled example's marts built in one window, day by
day, and in random grain-aligned splits hold the same rows — on DuckDB, PostgreSQL and ClickHouse (chDB). A SQL
mart whose rows depend on the window as a whole (the communities' group_conversion: a snapshot as of each day's
end) runs one grain step at a time to get there."""

from __future__ import annotations

import math
import random
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from eventmart import Project
from helpers import built_example


def _table(p: Project, mart: str) -> list[tuple]:
    cols = [c for c in p.warehouse.table_columns(mart) if not c.endswith("__state")]
    rows = p.warehouse.fetch(f"SELECT {', '.join(p.warehouse.q(c) for c in cols)} FROM {p.warehouse.q(mart)}").rows
    norm = []
    for r in rows:
        out = []
        for v in r:
            if isinstance(v, float):
                v = None if math.isnan(v) else round(v, 9)
            elif isinstance(v, Decimal):
                v = round(float(v), 9) if v != v.to_integral_value() else int(v)
            out.append(v)
        norm.append(tuple(out))
    return sorted(norm, key=repr)


def _windows(runner, name: str, lo: datetime, hi: datetime, how: str, rnd: random.Random) -> list[tuple]:
    if how == "one":
        return [(lo, hi)]
    if how == "days":
        return list(runner.windows(name, lo, hi, 86400))
    points = {lo, hi}
    for _ in range(rnd.randint(2, 6)):
        t = lo + timedelta(seconds=rnd.uniform(0, (hi - lo).total_seconds()))
        f = runner.floor(name, t)
        if lo < f < hi:
            points.add(f)
    pts = sorted(points)
    return list(zip(pts, pts[1:], strict=False))


@pytest.mark.parametrize("example", ["zen", "feed", "groups", "web"])
def test_every_bundled_mart_is_the_same_whatever_the_windows(tmp_path, engine, example):
    p = built_example(example, tmp_path / example, engine)
    rnd = random.Random(hash((example, engine["type"])) % 1000)
    try:
        runner = p.runner
        for name, mart in p.config.marts.items():
            span = runner.data_span(name)
            if span is None:
                continue
            lo, hi = span
            if mart.start:
                lo = max(lo, runner.floor(name, runner.from_user(name, datetime.fromisoformat(str(mart.start)))))
            got = {}
            for how in ("one", "days", "random"):
                p.reset(name)
                for s, e in _windows(runner, name, lo, hi, how, rnd):
                    r = runner.run_window(name, s, e)
                    assert r.status == "ok", (name, how, r.error)
                got[how] = _table(p, name)
            assert got["one"], (example, name)
            assert got["one"] == got["days"] == got["random"], (example, name, runner.stepwise(name))
    finally:
        p.close()


def test_a_snapshot_mart_is_run_step_by_step_and_check_says_so(tmp_path):
    p = built_example("groups", tmp_path / "g", {"type": "duckdb"})
    try:
        assert "computed from the window's start" in p.runner.stepwise("group_conversion")
        assert p.runner.stepwise("join_cohorts") is None
        res = p.run(["group_conversion"], start="2022-03-01", end="2022-03-22")
        assert res[0].status == "ok"
        days = p.query("SELECT count(DISTINCT dt) FROM group_conversion").rows[0][0]
        assert days == 21  # a snapshot per day, not 21 days collapsed into one dated 2022-03-01
        steps = p.query("SELECT count(*) FROM _eventmart_runs WHERE mart = 'group_conversion'").rows[0][0]
        assert steps == 21
    finally:
        p.close()
    import subprocess
    import sys

    r = subprocess.run([str(Path(sys.executable).parent / "eventmart"), "check", "-p", str(tmp_path / "g")],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "marts.group_conversion runs one 1 day step per statement (its time column dt is computed" in r.stdout
    assert "marts.join_cohorts runs chunk by chunk" in r.stdout
