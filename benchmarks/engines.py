"""The same project on each engine (issue 12): the two Zen marts over one day of events on DuckDB, ClickHouse
(embedded chDB) and PostgreSQL, as whole `eventmart` processes.

    .venv/bin/python benchmarks/engines.py [--sizes 20000000,50000000] [--engines duckdb,clickhouse,postgres]

For each size (one day of generated Zen events, from Parquet; generated once into benchmarks/.data): a fresh
warehouse per engine, `eventmart ingest`, then `eventmart run` of the day and of one hour, each twice (the
second is reported: a job re-running a window that exists already). Prints wall time and peak RSS per step
and each engine's ratio to DuckDB, measured side by side in the same run, and checks that every engine built
the same mart rows. Figures are one run on whatever machine runs this: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zen_marts import DAY, ROOT, child_cmd, measure, prepare, project  # noqa: E402

HOUR = ("2019-09-24T20:00:00", "2019-09-24T21:00:00")
COUNTS = "SELECT (SELECT count(*) FROM dash_visits) AS a, (SELECT sum(visits) FROM dash_visits) AS b, " \
         "(SELECT count(*) FROM dash_engagement) AS c, (SELECT sum(unique_users) FROM dash_engagement) AS d"


def warehouse(engine: str, pg: str | None, n: int) -> dict:
    if engine == "duckdb":
        return {"type": "duckdb", "path": "warehouse.duckdb"}
    if engine == "clickhouse":
        return {"type": "clickhouse", "path": "warehouse.chdb"}
    return {"type": "postgres", "url": f"{pg}/zen{n}"}


def counts(p: Path, eventmart: str) -> list:
    import subprocess

    r = subprocess.run([eventmart, "query", COUNTS, "--format", "json", "-p", str(p)], capture_output=True, text=True)
    if r.returncode:
        return [r.stderr.strip()]
    return [int(v) for v in json.loads(r.stdout)[0].values()]


def run_size(n: int, engines: list[str], pg: str | None, cap: int, eventmart: str) -> dict:
    d = prepare(n)
    out: dict = {}
    for engine in engines:
        if engine == "postgres":
            import psycopg

            with psycopg.connect(f"{pg}/postgres", autocommit=True) as c:
                c.execute(f'DROP DATABASE IF EXISTS "zen{n}" WITH (FORCE)')
                c.execute(f'CREATE DATABASE "zen{n}"')
        p = project(d, f"engine-{engine}", "parquet", warehouse(engine, pg, n))
        res = {"ingest": measure(child_cmd([eventmart, "ingest", "log_raw", "-p", str(p)]), cap)}
        for step, (s, e) in (("day", DAY), ("hour", HOUR)):
            cmd = child_cmd([eventmart, "run", "--start", s, "--end", e, "-p", str(p)])
            first = measure(cmd, cap)
            res[step] = measure(cmd, cap) if first["ok"] else first
        # the day again last, so the marts hold the whole day for the comparison
        cmd = child_cmd([eventmart, "run", "--start", DAY[0], "--end", DAY[1], "-p", str(p)])
        measure(cmd, cap)
        res["counts"] = counts(p, eventmart)
        print(f"    {engine}: ingest {res['ingest'].get('wall', 0):.1f}s, day {res['day'].get('wall', 0):.2f}s, "
              f"hour {res['hour'].get('wall', 0):.2f}s", file=sys.stderr, flush=True)
        out[engine] = res
    return out


def report(n: int, res: dict) -> None:
    print(f"\n== {n:,} events (one day), marts dash_visits + dash_engagement, whole processes ==")
    print(f"  {'engine':<11} {'ingest':>10} {'events/s':>11} {'day':>9} {'peak':>8} {'hour':>8}  vs DuckDB (day, hour)")
    base = res.get("duckdb")
    for engine, r in res.items():
        ing, day, hour = r["ingest"], r["day"], r["hour"]
        if not (ing.get("ok") and day.get("ok") and hour.get("ok")):
            print(f"  {engine:<11} failed: {ing.get('error') or day.get('error') or hour.get('error')}")
            continue
        ratio = ""
        if base and engine != "duckdb":
            ratio = f"{day['wall'] / base['day']['wall']:.2f}x, {hour['wall'] / base['hour']['wall']:.2f}x"
        print(f"  {engine:<11} {ing['wall']:9.1f}s {n / ing['wall']:11,.0f} {day['wall']:8.2f}s "
              f"{day['peak'] / 2**20:7,.0f}M {hour['wall']:7.2f}s  {ratio}")
    same = len({json.dumps(r["counts"]) for r in res.values()}) == 1
    print("  mart rows and totals (visits rows, sum visits, engagement rows, sum users): "
          + "; ".join(f"{k} {v['counts']}" for k, v in res.items()) + ("  — identical" if same else "  — DIFFER"))
    if base and "clickhouse" in res and res["clickhouse"]["day"].get("ok"):
        f = res["clickhouse"]["day"]["wall"] / base["day"]["wall"]
        print(f"  chDB / DuckDB, the day: {f:.2f}x (goals: within 1.2x at 20M, ahead at 50M)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="20000000,50000000")
    ap.add_argument("--engines", default="duckdb,clickhouse,postgres")
    ap.add_argument("--cap-gib", type=float, default=16)
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from contextlib import nullcontext

    from pgserver import temp_postgres

    engines = a.engines.split(",")
    eventmart = str(Path(sys.executable).parent / "eventmart")
    results = {}
    with temp_postgres(durable=True) if "postgres" in engines else nullcontext(None) as pg:
        for n in [int(float(s)) for s in a.sizes.split(",")]:
            print(f"-- {n:,} events", file=sys.stderr, flush=True)
            results[n] = run_size(n, engines, pg, int(a.cap_gib * 2**30), eventmart)
    for n, res in results.items():
        report(n, res)
    if a.json:
        a.json.write_text(json.dumps({str(k): v for k, v in results.items()}, indent=1, default=str))


if __name__ == "__main__":
    main()
