"""Explore and drill benchmark (issue 26): query time of each explore view at 30 days x 3M events a day, p50/p95.

    .venv/bin/python benchmarks/explore.py [SAMPLES] [--big EVENTS,DAYS]   # default 40 samples, 90000000,30

The project is the Zen example on a generated 90M-event log (benchmarks/dashboard.py builds it once into
benchmarks/.data). Each sample is a random range (1 to 30 days) and filters never seen before, so no cache answers;
the time is the explorer's own queries (what the page and the read API run), in process.
Side by side, the baseline: the same figure as a hand-written DuckDB query straight over the raw events (what a tool
that explores the raw table, as Rill does, runs), on the same warehouse.

Then the same views with a daily mart of visits declared beside the minute ones (`dash_visits_daily`: what a user
adds when long ranges matter), which day-aligned views read instead (the measure layer's aggregate awareness).
The project file with it sits in a folder of its own whose warehouse is the same file.
"""

from __future__ import annotations

import json
import random
import statistics
import sys
import time
from datetime import timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from dashboard import DATA, build_zen, pct  # noqa: E402

KINDS = ("leaderboard (visits, vs a week earlier)", "leaderboard (unique users, vs a week earlier)",
         "series per hour/day/week", "pivot topic x day", "drill: a page of events and their count")


def samples(ex_visits, n: int, seed: int) -> list[dict]:
    rnd = random.Random(seed)
    lo, hi = ex_visits.span()
    out = []
    for _ in range(n):
        days = rnd.choice([1, 3, 7, 14, 30])
        start = lo + timedelta(days=rnd.randint(0, max(0, (hi - lo).days - days)))
        flt = {}
        if rnd.random() < 0.5:
            flt["age_segment"] = [rnd.choice(["18-25", "26-30", "31-35", "36-40", "41-45", "45+"])]
        out.append({"window": (start, min(hi, start + timedelta(days=days))), "filters": flt,
                    "dim": rnd.choice(["item_topic", "source_topic", "age_segment"]),
                    "grain": rnd.choice(["hour", "day", "week"])})
    return out


def timed(f) -> float:
    t = time.perf_counter()
    f()
    return time.perf_counter() - t


def eventmart_views(visits, users, s: dict) -> list[float]:
    w, flt, dim = s["window"], s["filters"], s["dim"]
    drill = (w[0] + timedelta(hours=20), w[0] + timedelta(hours=21))
    return [timed(lambda: visits.leaderboard(dim, "visits", w, flt, "week")),
            timed(lambda: users.leaderboard(dim if dim != "source_topic" else "item_topic", "unique_users", w, flt,
                                            "week")),
            timed(lambda: visits.series("visits", w, visits.grain(s["grain"]), flt)),
            timed(lambda: visits.pivot("visits", "item_topic", "time", w, 86400, flt)),
            timed(lambda: visits.drill(drill, {**flt, dim: ["Наука"]} if dim == "item_topic" else flt, 50))]


def raw_views(wh, s: dict) -> list[float]:
    """The same figures straight from the raw events, written by hand."""
    w, flt, dim = s["window"], s["filters"], s["dim"]
    earlier = (w[0] - timedelta(days=7), w[1] - timedelta(days=7))
    cond = " AND age_segment = {{ age }}" if flt else ""
    p = {"age": flt["age_segment"][0]} if flt else {}

    def board(agg: str, d: str) -> None:
        for lo, hi in (w, earlier):
            q = {**p, "lo": lo, "hi": hi}
            wh.fetch(f"SELECT {d}, {agg} FROM log_raw WHERE _time >= {{{{ lo }}}} AND _time < {{{{ hi }}}}{cond} "
                     f"GROUP BY 1 ORDER BY 2 DESC", q)
            wh.fetch(f"SELECT {agg} FROM log_raw WHERE _time >= {{{{ lo }}}} AND _time < {{{{ hi }}}}{cond}", q)

    unit = s["grain"]
    drill_cond = cond + (" AND item_topic = 'Наука'" if dim == "item_topic" else "")
    dq = {**p, "lo": w[0] + timedelta(hours=20), "hi": w[0] + timedelta(hours=21)}
    return [timed(lambda: board("count(*)", dim)),
            timed(lambda: board("count(DISTINCT user_id)", dim if dim != "source_topic" else "item_topic")),
            timed(lambda: wh.fetch(f"SELECT date_trunc('{unit}', _time), count(*) FROM log_raw WHERE _time >= "
                                   f"{{{{ lo }}}} AND _time < {{{{ hi }}}}{cond} GROUP BY 1 ORDER BY 1",
                                   {**p, "lo": w[0], "hi": w[1]})),
            timed(lambda: wh.fetch(f"SELECT item_topic, date_trunc('day', _time), count(*) FROM log_raw WHERE _time >= "
                                   f"{{{{ lo }}}} AND _time < {{{{ hi }}}}{cond} GROUP BY 1, 2",
                                   {**p, "lo": w[0], "hi": w[1]})),
            timed(lambda: (wh.fetch(f"SELECT * FROM log_raw WHERE _time >= {{{{ lo }}}} AND _time < {{{{ hi }}}}"
                                    f"{drill_cond} ORDER BY _time, event_id LIMIT 50", dq),
                           wh.fetch(f"SELECT count(*) FROM log_raw WHERE _time >= {{{{ lo }}}} AND _time < {{{{ hi }}}}"
                                    f"{drill_cond}", dq)))]


DAILY = {"from": "log_raw", "grain": "1 day", "dimensions": ["item_topic", "source_topic", "age_segment", "dt"],
         "measures": {"visits": "count()"}}


def with_daily(d: Path) -> Path:
    """A project folder whose file is ``d``'s plus a daily mart of visits, on ``d``'s warehouse (built once)."""
    import yaml

    from eventmart import Project

    out = d.parent / (d.name + "-daily")
    out.mkdir(exist_ok=True)
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["warehouse"]["path"] = str((d / cfg["warehouse"].get("path", "warehouse.duckdb")).resolve())
    cfg["marts"]["dash_visits_daily"] = DAILY
    (out / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    for sub in ("data",):
        if not (out / sub).exists():
            (out / sub).symlink_to((d / sub).resolve())
    with Project.load(out) as p:
        if not p.warehouse.table_columns("dash_visits_daily"):
            t = time.perf_counter()
            p.backfill(["dash_visits_daily"])
            print(f"built dash_visits_daily in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    return out


def table(title: str, ours: list, base: list) -> list[dict]:
    rows = []
    print(f"\n{title}; seconds per view")
    print(f"{'view':48} {'p50':>7} {'p95':>7}   {'raw p50':>7} {'raw p95':>7}   p95 ratio")
    for i, kind in enumerate(KINDS):
        mine, theirs = [t[i] for t in ours], [t[i] for t in base]
        r = {"view": kind, "p50": statistics.median(mine), "p95": pct(mine, 95),
             "raw_p50": statistics.median(theirs), "raw_p95": pct(theirs, 95)}
        rows.append(r)
        print(f"{kind:48} {r['p50']:7.3f} {r['p95']:7.3f}   {r['raw_p50']:7.3f} {r['raw_p95']:7.3f}   "
              f"{r['p95'] / r['raw_p95']:.2f}x")
    slow = [r["view"] for r in rows if r["p95"] > 0.300]
    print(f"  goal every explore and drill view p95 <= 300 ms: {'met' if not slow else 'not met: ' + ', '.join(slow)}")
    return rows


def main() -> None:
    import argparse

    from eventmart import Project
    from eventmart.dashboards.explore import Explorer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("samples", nargs="?", type=int, default=40)
    ap.add_argument("--big", default="90000000,30", help="EVENTS,DAYS of the project")
    a = ap.parse_args()
    events, days = (int(float(x)) for x in a.big.split(","))
    d = DATA / f"zen-dash-{events / 1e6:g}m-{days}d"
    print(f"building the {events / 1e6:g}M-event Zen project (once; kept in benchmarks/.data)...", file=sys.stderr)
    build_zen(d, events, days, per_day_files=events > 20_000_000)
    out = {}
    for label, folder in (("the Zen marts (per minute)", d), ("with a daily mart of visits too", with_daily(d))):
        with Project.load(folder) as p:
            visits = Explorer(p.config, p.warehouse, "dash_visits")
            users = Explorer(p.config, p.warehouse, "dash_engagement")
            sts = samples(visits, a.samples, 26)
            ours = [eventmart_views(visits, users, s) for s in sts]
            base = [raw_views(p.warehouse, s) for s in sts]
        out[label] = table(f"{events / 1e6:g}M events over {days} days, {label}, {len(sts)} samples (random 1-30 "
                           "day ranges, filters)", ours, base)
    (DATA / "explore.json").write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
