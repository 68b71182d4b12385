"""Zen marts benchmark: one day of Zen events, the two Zen marts, every way side by side.

    make bench                                   # 5M and 20M events
    .venv/bin/python benchmarks/zen_marts.py --sizes 1000000   # quick look

For each size, each variant runs as its own process and persists its result (whole-process wall time and
peak RSS from wait4):
  (a) seed     the hand-made pipeline as written: read_sql of the window from PostgreSQL into pandas,
               groupby count/nunique, delete the window, to_sql back (sqlalchemy + psycopg)
  (b) pandas   the same pandas computation alone, from Parquet (only the columns it needs), written to Parquet
  (c) duckdb   `eventmart run` for the day on the embedded DuckDB warehouse; (c1) the same for one hour
  (d) postgres `eventmart run` on a PostgreSQL server (default durability settings)
  (e) polars, chdb  peers computing the same two marts from the same Parquet, written to Parquet
Each is run twice and the second run is reported: a daily job re-running a day that exists already
(the warehouse variants replace the window). Also the ingest rate from CSV and Parquet (and, at the largest
size, a copy of the CSV with mixed line endings and a few hundred bad lines: peak memory and rejects), the
start-up of `eventmart --help`, and a lower bound: the bytes the marts must scan divided by this machine's
measured memory read bandwidth. The figures are a single run on whatever machine runs this; compare ratios,
not seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "benchmarks" / ".data"
DAY = ("2019-09-24T00:00:00", "2019-09-25T00:00:00")
VISITS_DIMS = ["item_topic", "source_topic", "age_segment", "dt"]
ENGAGE_DIMS = ["dt", "item_topic", "event", "age_segment"]
NEEDED = ["ts", "item_topic", "source_topic", "age_segment", "event", "user_id"]


# --- the variants, each run in a child process -----------------------------------------------------


def variant_seed(parquet: Path, pg: str) -> dict:
    import pandas as pd
    from sqlalchemy import create_engine, text

    engine = create_engine(pg.replace("postgresql://", "postgresql+psycopg://"))
    # the seed's query (seed 000), with bound parameters instead of str.format
    query = text("""SELECT event_id, age_segment, event, item_id, item_topic, item_type, source_id, source_topic,
                    source_type, TO_TIMESTAMP(ts/1000) AT TIME ZONE 'Etc/UTC' as dt, user_id
                    FROM log_raw
                    WHERE TO_TIMESTAMP(ts/1000) AT TIME ZONE 'Etc/UTC' BETWEEN :s ::TIMESTAMP AND :e ::TIMESTAMP""")
    start, end = DAY[0], "2019-09-24T23:59:59"
    with engine.connect() as c:
        data_raw = pd.read_sql(query, con=c, index_col="event_id", params={"s": start, "e": end})
    for column in ["age_segment", "event", "item_topic", "source_topic", "item_type", "source_type"]:
        data_raw[column] = data_raw[column].astype(str)
    for column in ["item_id", "source_id", "user_id"]:
        data_raw[column] = pd.to_numeric(data_raw[column], errors="coerce")
    # the seed rounds to the nearest minute (a boundary bug eventmart fixes); kept, it costs the same
    data_raw["dt"] = pd.to_datetime(data_raw["dt"]).dt.round("min")
    visits = data_raw.groupby(VISITS_DIMS).agg({"user_id": "count"}).rename(columns={"user_id": "visits"})
    visits = visits.fillna(0).reset_index()
    engagement = data_raw.groupby(ENGAGE_DIMS).agg({"user_id": "nunique"})
    engagement = engagement.rename(columns={"user_id": "unique_users"}).fillna(0).reset_index()
    with engine.begin() as c:
        c.execute(text("CREATE SCHEMA IF NOT EXISTS seed"))
    for name, frame in {"dash_visits": visits, "dash_engagement": engagement}.items():
        with engine.begin() as c:
            exists = c.execute(text("SELECT to_regclass(:t)"), {"t": f"seed.{name}"}).scalar()
            if exists:
                c.execute(text(f"DELETE FROM seed.{name} WHERE dt BETWEEN :s ::TIMESTAMP AND :e ::TIMESTAMP"),
                          {"s": start, "e": end})
        frame.to_sql(name=name, con=engine, schema="seed", if_exists="append", index=False)
    return {"dash_visits": len(visits), "dash_engagement": len(engagement)}


def variant_pandas(parquet: Path, pg: str) -> dict:
    import pandas as pd

    df = pd.read_parquet(parquet, columns=NEEDED)
    df["dt"] = pd.to_datetime(df["ts"], unit="ms").dt.floor("min")
    visits = df.groupby(VISITS_DIMS).agg(visits=("user_id", "count")).reset_index()
    engagement = df.groupby(ENGAGE_DIMS).agg(unique_users=("user_id", "nunique")).reset_index()
    visits.to_parquet(parquet.parent / "out-pandas-visits.parquet")
    engagement.to_parquet(parquet.parent / "out-pandas-engagement.parquet")
    return {"dash_visits": len(visits), "dash_engagement": len(engagement)}


def variant_polars(parquet: Path, pg: str) -> dict:
    import polars as pl

    lf = pl.scan_parquet(parquet).select(NEEDED).with_columns(
        dt=pl.from_epoch("ts", time_unit="ms").dt.truncate("1m"))
    visits, engagement = pl.collect_all([
        lf.group_by(VISITS_DIMS).agg(visits=pl.len()),
        lf.group_by(ENGAGE_DIMS).agg(unique_users=pl.col("user_id").n_unique()),
    ])
    visits.write_parquet(parquet.parent / "out-polars-visits.parquet")
    engagement.write_parquet(parquet.parent / "out-polars-engagement.parquet")
    return {"dash_visits": visits.height, "dash_engagement": engagement.height}


def variant_chdb(parquet: Path, pg: str) -> dict:
    import chdb
    import pyarrow as pa

    src = f"file('{parquet}', Parquet)"
    dt = "toStartOfMinute(fromUnixTimestamp64Milli(ts, 'UTC'))"
    out = {}
    import pyarrow.parquet as pq

    for name, sql in {
        "dash_visits": f"SELECT item_topic, source_topic, age_segment, {dt} AS dt, count() AS visits FROM {src} "
                       "GROUP BY item_topic, source_topic, age_segment, dt",
        "dash_engagement": f"SELECT {dt} AS dt, item_topic, event, age_segment, uniqExact(user_id) AS unique_users "
                           f"FROM {src} GROUP BY dt, item_topic, event, age_segment",
    }.items():
        res = chdb.query(sql, "Arrow")
        table = pa.ipc.open_file(pa.BufferReader(res.bytes())).read_all()
        pq.write_table(table, parquet.parent / f"out-chdb-{name}.parquet")
        out[name] = table.num_rows
    return out


def variant_scheduler(parquet: Path, pg: str) -> dict:
    """The day and an hour as `eventmart serve`'s scheduler runs them: the project loaded once, warehouse open,
    each window's run timed inside the process (best of three)."""
    from eventmart import Project

    hour = ("2019-09-24T20:00:00", "2019-09-24T21:00:00")
    out = {}
    with Project.load(parquet.parent / "duck-parquet") as p:
        for name, (s, e) in {"day": DAY, "hour": hour}.items():
            best = float("inf")
            for _ in range(3):
                t0 = time.perf_counter()
                p.run(start=s, end=e)
                best = min(best, time.perf_counter() - t0)
            out[name] = best
        # the evening peak hour holds more than a 24th of the day: the floor of the ratio is the data's
        n = p.query("SELECT count(*) FILTER (WHERE _time >= TIMESTAMP '2019-09-24 20:00:00' AND _time < "
                    "TIMESTAMP '2019-09-24 21:00:00'), count(*) FROM log_raw").rows[0]
        out["hour_share"] = n[0] / n[1]
    return out


VARIANTS = {"seed": variant_seed, "pandas": variant_pandas, "polars": variant_polars, "chdb": variant_chdb,
            "scheduler": variant_scheduler}


# --- measuring a child process ---------------------------------------------------------------------


def measure(cmd: list[str], cap_bytes: int) -> dict:
    """Wall time and peak RSS of one process; killed (and reported) if its RSS passes the cap."""
    t0 = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    killed = threading.Event()

    def rss(pid: int) -> int:
        try:
            with open(f"/proc/{pid}/status") as f:
                return next((int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS")), 0)
        except OSError:  # the process just ended
            return 0

    def watch() -> None:  # a machine without swap: guard it against the OOM killer
        while p.poll() is None:
            try:
                kids = Path(f"/proc/{p.pid}/task/{p.pid}/children").read_text().split()
            except OSError:
                kids = []
            total = rss(p.pid) + sum(rss(int(k)) for k in kids)
            if total > cap_bytes:
                killed.set()
                os.killpg(p.pid, signal.SIGKILL)
                return
            time.sleep(0.1)

    threading.Thread(target=watch, daemon=True).start()
    out, err = p.communicate()
    wall = time.perf_counter() - t0
    # the wrapper reports the child's own ru_maxrss (RUSAGE_CHILDREN here would mix all variants)
    res = {"wall": wall, "ok": p.returncode == 0 and not killed.is_set()}
    if killed.is_set():
        res["error"] = f"killed: resident memory passed {cap_bytes / 2**30:.0f} GiB"
    elif p.returncode != 0:
        res["error"] = (err.strip().splitlines() or [f"exit {p.returncode}"])[-1][:200]
    for line in out.splitlines():
        if line.startswith("{"):
            res.update(json.loads(line))
    return res


def child_cmd(args: list[str]) -> list[str]:
    """Run a command under a tiny wrapper that prints its peak RSS (ru_maxrss) and wall time as JSON at exit."""
    return [sys.executable, __file__, "--wrap", json.dumps(args)]


def wrap(args: list[str]) -> None:
    import resource

    t0 = time.perf_counter()
    r = subprocess.run(args, capture_output=True, text=True)
    wall = time.perf_counter() - t0  # the command's own process, not this wrapper's start-up (~60 ms)
    sys.stderr.write(r.stderr)
    peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
    info = {"peak": peak, "wall": wall}
    for line in r.stdout.splitlines():
        if line.startswith("{"):
            info.update(json.loads(line))
    print(json.dumps(info))
    sys.exit(r.returncode)


# --- preparing data --------------------------------------------------------------------------------


def prepare(n: int) -> Path:
    d = DATA / f"zen-{n}"
    if (d / "events.parquet").exists() and (d / "events.csv").exists():
        return d
    import pyarrow.parquet as pq

    from eventmart.examples import write_csv
    from eventmart.examples.zen import scaled_events

    d.mkdir(parents=True, exist_ok=True)
    t = scaled_events(n, days=1)
    pq.write_table(t, d / "events.parquet.tmp")
    write_csv(t, d / "events.csv.tmp")
    (d / "events.parquet.tmp").rename(d / "events.parquet")
    (d / "events.csv.tmp").rename(d / "events.csv")
    return d


def project(d: Path, name: str, fmt: str, warehouse: dict) -> Path:
    import yaml

    from eventmart.examples import HERE

    cfg = yaml.safe_load((HERE / "zen" / "eventmart.yml").read_text())
    cfg["warehouse"] = warehouse
    cfg["sources"]["log_raw"]["format"] = fmt
    cfg["sources"]["log_raw"]["path"] = str(d / f"events.{fmt}")
    p = d / name
    if p.exists():
        import shutil

        shutil.rmtree(p)
    p.mkdir()
    (p / "eventmart.yml").write_text(yaml.safe_dump(cfg, sort_keys=False))
    return p


def scan_bytes(parquet: Path) -> int:
    """What the two marts must read at least: their input columns, decoded, once."""
    import pyarrow.parquet as pq

    return pq.read_table(parquet, columns=NEEDED).nbytes


def memory_bandwidth() -> float:
    """Single-core sequential read bandwidth (bytes/s): the best of several sums over 1 GiB."""
    import numpy as np

    a = np.ones(2**27, dtype=np.float64)
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t0)
    return a.nbytes / best


# --- the report -----------------------------------------------------------------------------------


def fmt_row(name: str, r: dict, base: dict | None) -> str:
    if not r.get("ok"):
        return f"  {name:<10} {'-':>9} {'-':>9}   {r.get('error', 'failed')}"
    ratio = ""
    if base and base.get("ok"):
        ratio = f"{base['wall'] / r['wall']:7.1f}x faster, {r['peak'] / base['peak']:5.2f}x memory"
    return f"  {name:<11} {r['wall']:8.2f}s {r['peak'] / 2**20:8.0f}M   {ratio}"


BAD_LINES = [b"only,three,fields", b"x,18-25,show,1,T,post,1,S,publisher,1569349680000,7",
             b"999999999991,18-25,show,1,T,post,1,S,publisher,1569349680,7",
             b"999999999992,18-25,show,1,caf\xe9,post,1,S,publisher,1569349680000,7",
             b'999999999993,18-25,show,1,"open,post,1,S,publisher,1569349680000,7']


def messy_csv(d: Path, every: int = 50_000) -> Path:
    """The size's CSV as real pipelines leave it: every other line CRLF (two writers), and every ``every``-th
    line followed by a bad one — short, a non-integer id, seconds for ms, invalid UTF-8, a quote left open."""
    out = d / "events-messy.csv"
    if out.exists():
        return out
    n = bad = 0
    with open(d / "events.csv", "rb") as f, open(str(out) + ".tmp", "wb") as w:
        w.write(f.readline())
        buf: list[bytes] = []
        for line in f:
            n += 1
            if n % every == 0:
                buf.append(BAD_LINES[bad % len(BAD_LINES)] + b"\n")
                bad += 1
            buf.append(line if n % 2 else line[:-1] + b"\r\n")
            if len(buf) > 100_000:
                w.writelines(buf)
                buf = []
        w.writelines(buf)
    Path(str(out) + ".tmp").rename(out)
    return out


def startup(eventmart: str) -> float:
    """`eventmart --help`, whole process: the best of five."""
    best = float("inf")
    for _ in range(5):
        t0 = time.perf_counter()
        subprocess.run([eventmart, "--help"], capture_output=True, check=True)
        best = min(best, time.perf_counter() - t0)
    return best


def run_size(n: int, pg_base: str, cap: int, eventmart: str, messy: bool = False) -> dict:
    import psycopg

    d = prepare(n)
    parquet = d / "events.parquet"
    out: dict = {"n": n}
    # ingest rate (fresh warehouses), then the marts on what was loaded
    ing = {}
    for fmt in ("csv", "parquet"):
        p = project(d, f"duck-{fmt}", fmt, {"type": "duckdb", "path": "warehouse.duckdb"})
        ing[fmt] = measure(child_cmd([eventmart, "ingest", "log_raw", "-p", str(p)]), cap)
    dbname = f"zen{n}"
    with psycopg.connect(f"{pg_base}/postgres", autocommit=True) as c:
        c.execute(f'DROP DATABASE IF EXISTS "{dbname}" WITH (FORCE)')
        c.execute(f'CREATE DATABASE "{dbname}"')
    pg = f"{pg_base}/{dbname}"
    pgp = project(d, "pg", "parquet", {"type": "postgres", "url": pg})
    ing["postgres"] = measure(child_cmd([eventmart, "ingest", "log_raw", "-p", str(pgp)]), cap)
    out["ingest"] = ing
    for k, r in ing.items():
        if not r["ok"]:
            raise SystemExit(f"ingest into {k} failed: {r.get('error')}")
    with psycopg.connect(pg, autocommit=True) as c:
        c.execute("VACUUM ANALYZE log_raw")

    if messy:
        m = messy_csv(d)
        p = project(d, "duck-messy", "csv", {"type": "duckdb", "path": "warehouse.duckdb"})
        cfg = (p / "eventmart.yml").read_text().replace(str(d / "events.csv"), str(m))
        (p / "eventmart.yml").write_text(cfg)
        r = measure(child_cmd([eventmart, "ingest", "log_raw", "-p", str(p)]), cap)
        import duckdb

        con = duckdb.connect(str(p / "warehouse.duckdb"), read_only=True)
        r["rejects"] = con.execute("SELECT count(*), count(DISTINCT line) FROM log_raw_rejects").fetchone()
        r["loaded"] = con.execute("SELECT count(*) FROM log_raw").fetchone()[0]
        con.close()
        out["messy"] = r
    run = ["run", "--start", DAY[0], "--end", DAY[1]]
    hour = ["run", "--start", "2019-09-24T20:00:00", "--end", "2019-09-24T21:00:00"]
    minute = ["run", "--start", "2019-09-24T20:00:00", "--end", "2019-09-24T20:01:00"]
    cmds = {
        "seed": child_cmd([sys.executable, __file__, "--variant", "seed", str(parquet), pg]),
        "pandas": child_cmd([sys.executable, __file__, "--variant", "pandas", str(parquet), pg]),
        "duckdb": child_cmd([eventmart, *run, "-p", str(d / "duck-parquet")]),
        "duckdb-hour": child_cmd([eventmart, *hour, "-p", str(d / "duck-parquet")]),
        "duckdb-minute": child_cmd([eventmart, *minute, "-p", str(d / "duck-parquet")]),
        "postgres": child_cmd([eventmart, *run, "-p", str(pgp)]),
        "polars": child_cmd([sys.executable, __file__, "--variant", "polars", str(parquet), pg]),
        "chdb": child_cmd([sys.executable, __file__, "--variant", "chdb", str(parquet), pg]),
    }
    res = {}
    for name, cmd in cmds.items():
        first = measure(cmd, cap)
        res[name] = measure(cmd, cap) if first["ok"] else first
        print(f"    {name}: {res[name].get('wall', 0):.2f}s", file=sys.stderr, flush=True)
    for name in ("duckdb", "postgres"):
        if res[name]["ok"]:
            res[name].update(mart_rows(d, name, pg))
    sched = measure(child_cmd([sys.executable, __file__, "--variant", "scheduler", str(parquet), pg]), cap)
    out["scheduler"] = {k: sched.get(k) for k in ("day", "hour", "hour_share")} if sched["ok"] else None
    out["help"] = startup(eventmart)
    out["runs"] = res
    out["scan_bytes"] = scan_bytes(parquet)
    return out


def mart_rows(d: Path, name: str, pg: str) -> dict:
    sql = "SELECT (SELECT count(*) FROM dash_visits), (SELECT count(*) FROM dash_engagement)"
    if name == "duckdb":
        import duckdb

        con = duckdb.connect(str(d / "duck-parquet" / "warehouse.duckdb"), read_only=True)
        v, e = con.execute(sql).fetchone()
        con.close()
    else:
        import psycopg

        with psycopg.connect(pg) as c:
            v, e = c.execute(sql).fetchone()
    return {"dash_visits": v, "dash_engagement": e}


def report(results: list[dict], bw: float) -> None:
    print(f"\nmachine: {os.cpu_count()} cores; memory read bandwidth {bw / 1e9:.1f} GB/s (one core)")
    for o in results:
        n, r = o["n"], o["runs"]
        print(f"\n== {n:,} events, one day, marts dash_visits + dash_engagement ==")
        print("  ingest (whole process, fresh DuckDB / PostgreSQL warehouse):")
        for k, v in o["ingest"].items():
            print(f"    from {k:<9} {n / v['wall']:12,.0f} events/s  ({v['wall']:.1f}s, peak {v['peak'] / 2**20:,.0f}M)")
        if "messy" in o:
            v = o["messy"]
            print(f"    messy CSV {n / v['wall']:12,.0f} events/s  ({v['wall']:.1f}s, peak {v['peak'] / 2**20:,.0f}M; "
                  f"{v['loaded']:,} loaded, rejects {v['rejects'][0]} rows on {v['rejects'][1]} distinct lines, "
                  f"{n // 50_000} bad lines injected)")
        print(f"  {'variant':<11} {'wall':>9} {'peak RSS':>9}   vs (b) pandas")
        for name in ("seed", "pandas", "duckdb", "duckdb-hour", "duckdb-minute", "postgres", "polars", "chdb"):
            print(fmt_row(name, r[name], r["pandas"]))
        if o.get("scheduler"):
            sc = o["scheduler"]
            print(f"  inside serve's scheduler (project open): the day {sc['day']:.3f}s, an hour {sc['hour']:.3f}s "
                  f"({sc['day'] / sc['hour']:.1f}x cheaper; the hour holds {sc['hour_share']:.1%} of the day's "
                  f"events, 1/{1 / sc['hour_share']:.0f})")
        print(f"  eventmart --help: {o['help']:.3f}s")
        lb = o["scan_bytes"] / bw
        print(f"  lower bound: {o['scan_bytes'] / 2**20:,.0f} MiB to scan / {bw / 1e9:.1f} GB/s = {lb:.3f}s")
        rows = {k: (v.get("dash_visits"), v.get("dash_engagement")) for k, v in r.items() if v.get("ok")}
        print("  mart rows (visits, engagement): " + ", ".join(f"{k} {v}" for k, v in rows.items())
              + "  [seed rounds to the nearest minute, so its rows differ]")
        goals(r, o)


def goals(r: dict, o: dict) -> None:
    def x(a: str, b: str) -> float | None:
        return r[b]["wall"] / r[a]["wall"] if r[a].get("ok") and r[b].get("ok") else None

    def show(text: str, ok: bool | None) -> None:
        print(f"  goal {text}: {'met' if ok else 'not met' if ok is not None else 'n/a'}")

    d, p = r["duckdb"], r["pandas"]
    s = x("duckdb", "pandas")
    show(f"(c) >= 3x faster than (b) [{s:.1f}x]" if s else "(c) >= 3x faster than (b)", s and s >= 3)
    m = d["peak"] / p["peak"] if d.get("ok") and p.get("ok") else None
    show(f"(c) <= 1/2 the memory of (b) [{m:.2f}]" if m else "(c) <= 1/2 memory of (b)", m and m <= 0.5)
    s = x("duckdb", "seed")
    show(f"(c) >= 20x faster than (a) [{s:.1f}x]" if s else "(c) >= 20x faster than (a)", s and s >= 20)
    s = x("postgres", "seed")
    show(f"(d) >= 5x faster than (a) [{s:.1f}x]" if s else "(d) >= 5x faster than (a)", s and s >= 5)
    if r["polars"].get("ok") and d.get("ok"):
        f = d["wall"] / r["polars"]["wall"]
        show(f"(c) <= 1.0x Polars' whole-process time [{f:.2f}x its time]", f <= 1)
        if o["n"] >= 20_000_000:
            show(f"(c) ahead of Polars at {o['n'] / 1e6:.0f}M [{f:.2f}x its time]", f < 1)
    h = x("duckdb-hour", "duckdb")
    show(f"(c1) an hour >= 10x cheaper than the day, whole process [{h:.1f}x]" if h else "(c1) hour >= 10x", h and h >= 10)
    sc = o.get("scheduler")
    if sc:
        show(f"an hour >= 20x cheaper than the day inside serve's scheduler [{sc['day'] / sc['hour']:.1f}x]",
             sc["day"] / sc["hour"] >= 20)
    m = r.get("duckdb-minute", {})
    if m.get("ok"):
        show(f"a 1-minute window as a process <= 0.35s [{m['wall']:.3f}s]", m["wall"] <= 0.35)
    show(f"eventmart --help <= 0.12s [{o['help']:.3f}s]", o["help"] <= 0.12)
    csv = o["ingest"]["csv"]
    rate = o["n"] / csv["wall"] if csv.get("ok") else 0
    show(f"ingest >= 1M events/s from CSV into DuckDB, whole process [{rate / 1e6:.2f}M/s]", rate >= 1e6)
    if "messy" in o:
        v = o["messy"]
        injected = o["n"] // 50_000
        show(f"messy CSV under 1 GiB peak [{v['peak'] / 2**30:.2f} GiB] with every bad line stored once "
             f"[{v['rejects'][0]} rejects, {injected} injected]",
             v.get("ok") and v["peak"] < 2**30 and v["rejects"][0] == v["rejects"][1] == injected)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="5000000,20000000")
    ap.add_argument("--cap-gib", type=float, default=16, help="kill a variant whose memory passes this")
    ap.add_argument("--json", type=Path, help="also write the raw figures here")
    ap.add_argument("--variant", nargs=3, metavar=("NAME", "PARQUET", "PG"), help=argparse.SUPPRESS)
    ap.add_argument("--wrap", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.wrap:
        return wrap(json.loads(a.wrap))
    if a.variant:
        name, parquet, pg = a.variant
        print(json.dumps(VARIANTS[name](Path(parquet), pg)))
        return
    sys.path.insert(0, str(ROOT / "tests"))
    from pgserver import temp_postgres

    eventmart = str(Path(sys.executable).parent / "eventmart")
    bw = memory_bandwidth()
    results = []
    with temp_postgres(durable=True) as pg:
        sizes = [int(float(s)) for s in a.sizes.split(",")]
        for n in sizes:
            print(f"-- {n:,} events", file=sys.stderr, flush=True)
            results.append(run_size(n, pg, int(a.cap_gib * 2**30), eventmart, messy=n == max(sizes)))
    report(results, bw)
    if a.json:
        a.json.write_text(json.dumps({"bandwidth": bw, "results": results}, indent=1))


if __name__ == "__main__":
    main()
