"""Backfill of a small file spanning years: eventmart's batched backfill (consecutive days of a declarative mart in
one statement) against the same windows run one day at a time (what backfill did before), each as a whole
`eventmart backfill` process on its own copy of the project.

    .venv/bin/python benchmarks/backfill.py [--days 1461]
"""

from __future__ import annotations

import argparse
import csv
import random
import shutil
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

EVENTMART = str(Path(sys.executable).parent / "eventmart")


def project(d: Path, days: int) -> None:
    rnd = random.Random(3)
    (d / "data").mkdir(parents=True)
    with open(d / "data" / "weather.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["date", "precipitation", "temp_max", "weather"])
        for i in range(days):
            w.writerow([(date(2012, 1, 1) + timedelta(days=i)).isoformat(), f"{rnd.randint(0, 300) / 10:.1f}",
                        f"{rnd.gauss(15, 6):.1f}", rnd.choice(["rain", "sun", "fog", "drizzle", "snow"])])
    subprocess.run([EVENTMART, "init", str(d / "p"), "--from", str(d / "data" / "weather.csv")], check=True,
                   capture_output=True)
    subprocess.run([EVENTMART, "ingest", "weather", "-p", str(d / "p")], check=True, capture_output=True)


def timed(args: list[str], env: dict | None = None) -> float:
    t0 = time.perf_counter()
    subprocess.run(args, check=True, capture_output=True, env=env)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--days", type=int, default=1461)
    days = ap.parse_args().days
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp) / "base"
        project(base, days)
        batched, daily, span = Path(tmp) / "batched", Path(tmp) / "daily", Path(tmp) / "span"
        for d in (batched, daily, span):
            shutil.copytree(base / "p", d)
        t_batched = timed([EVENTMART, "backfill", "-p", str(batched)])
        # the floor: one `run` over the whole span (one window), as a process
        last = (date(2012, 1, 1) + timedelta(days=days)).isoformat()
        t_span = timed([EVENTMART, "run", "--start", "2012-01-01", "--end", last, "-p", str(span)])
        # the same windows one day at a time: a row budget of 1 makes every day a run of its own
        code = ("import sys, eventmart.marts as m; m.BATCH_ROWS = 1; from eventmart.cli import main; "
                "sys.argv = ['eventmart', 'backfill', '-p', sys.argv[1]]; main()")
        t_daily = timed([sys.executable, "-c", code, str(daily)])
    print(f"backfill of {days:,} daily windows ({days:,} rows), whole process:")
    print(f"  batched (eventmart backfill)  {t_batched:7.2f} s")
    print(f"  one window a day (baseline)   {t_daily:7.2f} s")
    print(f"  one run over the span (floor)  {t_span:7.2f} s")
    print(f"  ratio: {t_batched / t_daily:.3f} of the baseline's time ({t_daily / t_batched:.0f}x faster)")
    per = (t_batched - t_span) / days * 1e3
    print(f"  per-window overhead when batched: {per:.2f} ms (goal <= 1 ms: {'met' if per <= 1 else 'not met'}); "
          f"backfill <= 2 s: {'met' if t_batched <= 2 else 'not met'}")


if __name__ == "__main__":
    main()
