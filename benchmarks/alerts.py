"""Alerts benchmark (issue 6): 100 rules x 50 series x 30 days of 15-minute buckets on the feed example.

    .venv/bin/python benchmarks/alerts.py

Measures (a) a backtest of every rule over the 30 days — 100 x 50 x 2,880 = 14.4M judged buckets,
SQL included — and (b) one live evaluation of all 100 rules (the scheduler's 15-minute tick).
Side by side: seed 002's way, its pandas `check_anomaly` called per series on the trailing window,
for one tick (a backtest that way would take hours, so it is extrapolated from the tick).
"""

from __future__ import annotations

import random
import sys
import tempfile
import time
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd
import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))
from seedcode import check_anomaly  # noqa: E402  (the seed's detector, shared with the tests)

DETECTORS = [("auto", {"a": 5.5}), ("iqr", {"a": 4, "n": 5}), ("zscore", {"a": 4, "n": 16}), ("mad", {"a": 5, "n": 16}),
             ("pct_change", {"threshold": 0.5, "lag": "1 day"}),
             ("seasonal", {"a": 4, "k": 7, "period": "1 day", "counts": True})]


def build(d: Path) -> None:
    from eventmart import Project
    from eventmart.examples import generate_feed, init_example

    init_example("feed", d)
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["marts"]["feed_15min_by_shard"] = {
        "from": "feed_actions", "grain": "15 minutes", "dimensions": ["dt", {"shard": "user_id % 50"}],
        "measures": {"views": "count_if(action = 'view')", "likes": "count_if(action = 'like')",
                     "users": "count_distinct(user_id)"}}
    rng = random.Random(1)
    cfg["alerts"] = {}
    for i in range(100):
        det, params = DETECTORS[i % len(DETECTORS)]
        params = {**params, **({"a": params["a"] + rng.choice([0, 0.5, 1])} if "a" in params else {})}
        cfg["alerts"][f"r{i:03d}"] = {"mart": "feed_15min_by_shard", "measure": rng.choice(
            ["sum(views)", "sum(likes)", "sum(users)"]), "by": ["shard"], "detector": det, "params": params,
            "for": rng.choice([1, 2]), "history": "8 days"}
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    generate_feed(d, scale=0.5, days=31)
    with Project.load(d) as p:
        p.ingest("feed_actions")
        p.backfill(["feed_15min_by_shard"])


def main() -> None:
    from eventmart import Project
    from eventmart.alerts.engine import backtest, evaluate

    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        print("building the feed example (31 days, 50 shards)...", file=sys.stderr)
        build(d)
        with Project.load(d) as p:
            rules = list(p.config.alerts)
            start, end = datetime(2024, 3, 1, 12), datetime(2024, 3, 31, 12)  # 30 days = 2,880 buckets
            t0 = time.perf_counter()
            judged = incidents = 0
            for r in rules:
                v, incs = backtest(p, r, start, end)
                judged += v.anomalous.size
                incidents += len(incs)
            backtest_s = time.perf_counter() - t0
            now = end + timedelta(minutes=1)
            t0 = time.perf_counter()
            for r in rules:  # a first live evaluation: state for 5,000 series
                evaluate(p, r, now - timedelta(minutes=15))
            first_s = time.perf_counter() - t0
            t0 = time.perf_counter()
            for r in rules:  # the steady 15-minute tick
                evaluate(p, r, now)
            tick_s = time.perf_counter() - t0
            # seed 002's way for one tick: per series, the trailing day into pandas and check_anomaly
            res = p.query("SELECT dt, shard, views FROM feed_15min_by_shard WHERE dt >= '2024-03-30 12:00' "
                          "AND dt < '2024-03-31 12:00' ORDER BY 2, 1")
        df = pd.DataFrame(res.rows, columns=res.columns)
        groups = [g for _, g in df.groupby("shard")]
        t0 = time.perf_counter()
        for _ in range(2):  # 100 rules x 50 series = 100 passes over these 50 series; time 2, scale
            for g in groups:
                check_anomaly(g[["views"]].astype(float).copy(), "views")
        seed_tick = (time.perf_counter() - t0) / 2 * 100
    buckets = int((end - start).total_seconds() // 900)
    print(f"\n== 100 rules x 50 series x {buckets:,} buckets (30 days of 15 minutes), feed example, DuckDB ==")
    print(f"  backtest of every rule (each bucket judged as of its time): {backtest_s:6.2f} s "
          f"for {judged:,} judged buckets ({judged / backtest_s / 1e6:.1f}M/s), {incidents:,} incidents")
    print(f"  live evaluation, first (state for 5,000 series):           {first_s:6.2f} s")
    print(f"  live evaluation, a 15-minute tick of all 100 rules:        {tick_s:6.2f} s")
    print(f"  seed 002's check_anomaly per series, one tick:              {seed_tick:6.2f} s "
          f"({seed_tick / tick_s:.0f}x eventmart's tick); a backtest that way ~{seed_tick * buckets / 3600:.0f} h")
    print(f"  goal: 100 x 50 x 30 days in < 5 s: {'met' if backtest_s < 5 else 'not met'} ({backtest_s:.2f} s)")


if __name__ == "__main__":
    main()
