"""Ingest of one very large CSV (issue 10: "a 100M-event CSV (~8 GB) loads on this 24 GiB machine").

    .venv/bin/python benchmarks/ingest_big.py [--events 100000000]

Writes the file once (in 20M-event parts of generated Zen events with distinct ids, under benchmarks/.data),
then times `eventmart ingest` of it into a fresh DuckDB warehouse as a whole process: wall time, events/s and
peak RSS, side by side with the same for the 20M-event file (so the ratio shows memory does not grow with the
file). Then a second ingest of the same file, which the file ledger skips.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zen_marts import DATA, child_cmd, measure, prepare, project  # noqa: E402

PART = 20_000_000


def big_csv(n: int) -> Path:
    d = DATA / f"zen-big-{n}"
    out = d / "events.csv"
    if out.exists():
        return d
    from datetime import datetime, timedelta

    from eventmart.examples import write_csv
    from eventmart.examples.zen import scaled_events

    d.mkdir(parents=True, exist_ok=True)
    tmp = d / "events.csv.tmp"
    with open(tmp, "wb") as w:
        for i in range(0, n, PART):
            k = min(PART, n - i)
            part = d / "part.csv"
            t = scaled_events(k, days=1, start=datetime(2019, 9, 24) + timedelta(days=i // PART), seed=11 + i // PART,
                              first_id=i + 1)
            write_csv(t, part)
            del t
            with open(part, "rb") as f:
                if i:
                    f.readline()  # one header for the whole file
                while chunk := f.read(1 << 24):
                    w.write(chunk)
            part.unlink()
            print(f"  wrote {i + k:,} events", file=sys.stderr)
    tmp.rename(out)
    return d


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--events", type=int, default=100_000_000)
    ap.add_argument("--cap-gib", type=float, default=16)
    args = ap.parse_args()
    eventmart = str(Path(sys.executable).parent / "eventmart")
    cap = int(args.cap_gib * 2**30)
    rows = []
    for n, d in ((PART, prepare(PART)), (args.events, big_csv(args.events))):
        p = project(d, "duck-csv-big", "csv", {"type": "duckdb", "path": "warehouse.duckdb"})
        r = measure(child_cmd([eventmart, "ingest", "log_raw", "-p", str(p)]), cap)
        again = measure(child_cmd([eventmart, "ingest", "log_raw", "-p", str(p)]), cap)
        import duckdb

        con = duckdb.connect(str(p / "warehouse.duckdb"), read_only=True)
        loaded = con.execute("SELECT count(*), count(DISTINCT event_id) FROM log_raw").fetchone()
        con.close()
        size = (d / "events.csv").stat().st_size
        rows.append((n, size, r, again, loaded))
    print(f"{'events':>12} {'file':>9} {'wall':>8} {'events/s':>11} {'peak RSS':>9} {'again':>7}  loaded (distinct ids)")
    for n, size, r, again, loaded in rows:
        if not r["ok"]:
            print(f"{n:>12,} {size / 2**30:>7.1f}G  failed: {r.get('error')}")
            continue
        print(f"{n:>12,} {size / 2**30:>7.1f}G {r['wall']:>7.1f}s {n / r['wall']:>11,.0f} "
              f"{r['peak'] / 2**20:>8,.0f}M {again['wall']:>6.1f}s  {loaded[0]:,} ({loaded[1]:,})")
    (n0, _, r0, _, _), (n1, _, r1, _, l1) = rows
    if r0["ok"] and r1["ok"]:
        print(f"peak memory {n1 // n0}x the events: {r1['peak'] / r0['peak']:.2f}x the memory")
        ok = l1[0] == l1[1] == n1
        print(f"goal: {n1:,} events from one CSV load on this machine, every event once: {'met' if ok else 'not met'}")


if __name__ == "__main__":
    main()
