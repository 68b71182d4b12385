"""decimal(P,S) columns: read exactly (a value with more decimals than S is a reject, never rounded), stored and
summed exactly on every engine, printed as written — 4426.0, not 4426.000000000008."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import write_project
from eventmart import Project
from eventmart.errors import ProjectError

EVENTMART = str(Path(sys.executable).parent / "eventmart")


def _weather(d: Path, warehouse: dict, n: int = 400) -> list[tuple[str, str, str]]:
    rnd = random.Random(7)
    rows = [(f"2012-01-{1 + i % 28:02d}", rnd.choice(["rain", "sun", "fog"]), f"{rnd.randint(0, 999) / 10:.1f}")
            for i in range(n)]
    lines = ["k,day,weather,precipitation"] + [f"{i},{a},{b},{c}" for i, (a, b, c) in enumerate(rows)]
    lines += [f"{n},2012-01-02,sun,1.25", f"{n + 1},2012-01-02,sun,12345678.9", f"{n + 2},2012-01-02,sun,1e2",
              f"{n + 3},2012-01-02,sun,-0.50", f"{n + 4},2012-01-03,fog,"]
    (d / "data").mkdir(parents=True, exist_ok=True)
    (d / "data" / "w.csv").write_text("\n".join(lines) + "\n")
    write_project(d, {"name": "w", "warehouse": warehouse, "sources": {"w": {
        "format": "csv", "path": "data/w.csv",
        "columns": {"k": "int", "day": "date", "weather": "string", "precipitation": "decimal(8,1)?"},
        "time": {"column": "day"}, "key": ["k"]}},
        "marts": {"w_daily": {"from": "w", "grain": "1 day", "dimensions": ["dt", "weather"], "measures": {
            "rows": "count()", "total": "sum(precipitation)", "low": "min(precipitation)",
            "high": "max(precipitation)"}}}})
    return rows + [("2012-01-02", "sun", "-0.5"), ("2012-01-03", "fog", None)]


def test_decimal_sums_are_exact_on_every_engine(tmp_path, engine):
    rows = _weather(tmp_path, engine)
    with Project.load(tmp_path) as p:
        res = p.ingest("w")
        assert (res.loaded, res.rejected) == (len(rows), 3)
        reasons = [r[0] for r in p.query("select reason from w_rejects order by line").rows]
        assert all("at most 1 decimal(s) and 7 digit(s) before the point" in r for r in reasons), reasons
        p.backfill()
        got = {(str(d)[:10], w): (n, t, lo, hi) for d, w, n, t, lo, hi in p.query(
            "select dt, weather, rows, total, low, high from w_daily").rows}
    want: dict = {}
    for day, w, v in rows:
        n, t, lo, hi = want.get((day, w), (0, None, None, None))
        x = None if v is None else Decimal(v)
        want[(day, w)] = (n + 1, t if x is None else (t or 0) + x, x if lo is None or (x is not None and x < lo) else lo,
                          x if hi is None or (x is not None and x > hi) else hi)
    assert set(got) == set(want)
    for k, (n, t, lo, hi) in want.items():
        gn, gt, glo, ghi = got[k]
        assert gn == n and isinstance(gt, Decimal | type(None)), (k, got[k])
        assert (gt, glo, ghi) == (t, lo, hi), (k, got[k], want[k])


def test_decimal_prints_as_written(tmp_path):
    rows = _weather(tmp_path, {"type": "duckdb"})
    assert subprocess.run([EVENTMART, "ingest", "w", "-p", str(tmp_path)], capture_output=True).returncode == 0
    assert subprocess.run([EVENTMART, "backfill", "-p", str(tmp_path)], capture_output=True).returncode == 0
    total = sum(Decimal(v) for _, _, v in rows if v is not None)
    for fmt in ("csv", "json", "table"):
        r = subprocess.run([EVENTMART, "query", "select sum(total) as t from w_daily", "--format", fmt,
                            "-p", str(tmp_path)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
        assert str(total) in r.stdout, (fmt, r.stdout, total)
    r = subprocess.run([EVENTMART, "query", "select sum(total) as t, 9223372036854775807 as big from w_daily",
                        "--format", "json", "-p", str(tmp_path)], capture_output=True, text=True)
    assert json.loads(r.stdout, parse_float=Decimal) == [{"t": total, "big": 2**63 - 1}]


@pytest.mark.parametrize("t", ["decimal(0,0)", "decimal(39,2)", "decimal(4,5)", "money"])
def test_bad_decimal_types_are_named(tmp_path, t):
    _weather(tmp_path, {"type": "duckdb"}, n=3)
    import yaml

    cfg = yaml.safe_load((tmp_path / "eventmart.yml").read_text())
    cfg["sources"]["w"]["columns"]["precipitation"] = t
    write_project(tmp_path, cfg)
    with pytest.raises(ProjectError, match=r"eventmart.yml:\d+: sources.w.columns.precipitation.type"):
        Project.load(tmp_path)
