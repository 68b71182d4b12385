"""Vault loads at scale (issue 13): the communities vault over 10M group-log events and 50M messages.

    .venv/bin/python benchmarks/vault.py [--log 10000000 --messages 50000000] [--engines duckdb,postgres]

Generates (once, into benchmarks/.data) the seed's group_log and dialogs as Parquet with the example's shapes
(heavy-tailed groups, joins, leaves, messages in groups and private ones), plus a second batch of 1% more of each;
ingests the first batch into a fresh warehouse per engine, times the full vault load (`eventmart vault load`, a
whole process), then ingests the 1% batch and times the incremental load. Goal: incremental ≤ 1/20 of the full
load. Also a rerun with nothing new. Figures are one run on whatever machine runs this: compare ratios.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from zen_marts import DATA, ROOT, child_cmd, measure  # noqa: E402

START = datetime(2022, 3, 1)


def batch(n_log: int, n_msg: int, seed: int, first_msg: int) -> dict:
    import numpy as np
    import pyarrow as pa

    rng = np.random.default_rng(seed)
    n_users, n_groups = max(n_log // 20, 1000), max(n_log // 2000, 50)
    users = np.arange(1, n_users + 1, dtype=np.int64) * 3 + 100
    groups = np.arange(1, n_groups + 1, dtype=np.int64) * 11 + 5000
    weights = rng.pareto(1.3, n_groups) + 1
    weights /= weights.sum()
    base = np.datetime64(START, "us")
    span = 75 * 86400 * 10**6
    g = rng.choice(groups, n_log, p=weights)
    events = rng.choice(np.array(["add", "leave", "create"], dtype=object), n_log, p=[0.85, 0.14, 0.01])
    frm = rng.choice(users, n_log)
    log = pa.table({"group_id": g, "user_id": rng.choice(users, n_log),
                    "user_id_from": pa.array(frm, mask=rng.random(n_log) > 0.3),
                    "event": events, "datetime": base + rng.integers(0, span, n_log).astype("timedelta64[us]")})
    in_group = rng.random(n_msg) < 0.55
    mg = rng.choice(groups, n_msg, p=weights)
    dialogs = pa.table({"message_id": np.arange(first_msg, first_msg + n_msg, dtype=np.int64),
                        "message_ts": base + rng.integers(0, span, n_msg).astype("timedelta64[us]"),
                        "message_from": rng.choice(users, n_msg), "message_to": rng.choice(users, n_msg),
                        "message": np.full(n_msg, "привет всем", dtype=object),
                        "message_group": pa.array(mg, mask=~in_group)})
    user_t = pa.table({"id": users, "chat_name": [f"u{i}" for i in range(n_users)],
                       "registration_dt": base - rng.integers(0, span, n_users).astype("timedelta64[us]"),
                       "country": rng.choice(np.array(["Russia", "Serbia"], dtype=object), n_users),
                       "age": rng.integers(16, 70, n_users)})
    group_t = pa.table({"id": groups, "admin_id": rng.choice(users, n_groups),
                        "group_name": [f"group {i}" for i in range(n_groups)],
                        "registration_dt": base - rng.integers(0, span, n_groups).astype("timedelta64[us]"),
                        "is_private": rng.random(n_groups) < 0.2})
    return {"group_log": log, "dialogs": dialogs, "users": user_t, "groups": group_t}


def prepare(n_log: int, n_msg: int) -> Path:
    import pyarrow.parquet as pq

    d = DATA / f"vault-{n_log}-{n_msg}"
    if (d / "done").exists():
        return d
    d.mkdir(parents=True, exist_ok=True)
    for tag, (nl, nm, seed, first) in {"a": (n_log, n_msg, 1, 1), "b": (n_log // 100, n_msg // 100, 2, n_msg + 1)}.items():
        parts = 10 if tag == "a" else 1  # generated in parts: memory stays modest
        for i in range(parts):
            t = batch(nl // parts, nm // parts, seed * 100 + i, first + i * (nm // parts))
            for name, table in t.items():
                if name in ("users", "groups") and (tag == "b" or i):
                    continue
                pq.write_table(table, d / f"{name}-{tag}{i}.parquet")
            print(f"  generated {tag}{i}", file=sys.stderr, flush=True)
    (d / "done").write_text("")
    return d


def project(d: Path, engine: str, pg: str | None) -> Path:
    import shutil

    import yaml

    from eventmart.examples import HERE

    cfg = yaml.safe_load((HERE / "groups" / "eventmart.yml").read_text())
    cfg["warehouse"] = {"type": "duckdb", "path": "warehouse.duckdb"} if engine == "duckdb" else \
        {"type": engine, "url": pg} if engine == "postgres" else {"type": "clickhouse"}
    for name, src in cfg["sources"].items():
        src["format"] = "parquet"
        src["path"] = str(d / f"{name}-a*.parquet")
    cfg.pop("dashboards"), cfg.pop("schedules"), cfg.pop("marts")
    p = d / f"wh-{engine}"
    if p.exists():
        shutil.rmtree(p)
    p.mkdir()
    (p / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    return p


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--log", type=int, default=10_000_000)
    ap.add_argument("--messages", type=int, default=50_000_000)
    ap.add_argument("--engines", default="duckdb,postgres")
    ap.add_argument("--cap-gib", type=float, default=18)
    a = ap.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from contextlib import nullcontext

    from pgserver import temp_postgres

    eventmart = str(Path(sys.executable).parent / "eventmart")
    cap = int(a.cap_gib * 2**30)
    d = prepare(a.log, a.messages)
    engines = a.engines.split(",")
    out = {}
    with temp_postgres(durable=True) if "postgres" in engines else nullcontext(None) as pg:
        for engine in engines:
            url = None
            if engine == "postgres":
                import psycopg

                with psycopg.connect(f"{pg}/postgres", autocommit=True) as c:
                    c.execute('DROP DATABASE IF EXISTS "vault" WITH (FORCE)')
                    c.execute('CREATE DATABASE "vault"')
                url = f"{pg}/vault"
            p = project(d, engine, url)
            r: dict = {}
            for src in ("users", "groups", "group_log", "dialogs"):
                r[f"ingest {src}"] = measure(child_cmd([eventmart, "ingest", src, "-p", str(p)]), cap)
            r["full"] = measure(child_cmd([eventmart, "vault", "load", "-p", str(p)]), cap)
            r["rerun"] = measure(child_cmd([eventmart, "vault", "load", "-p", str(p)]), cap)
            for src in ("group_log", "dialogs"):
                r[f"ingest 1% {src}"] = measure(child_cmd([eventmart, "ingest", src, str(d / f"{src}-b0.parquet"),
                                                           "-p", str(p)]), cap)
            r["incremental"] = measure(child_cmd([eventmart, "vault", "load", "-p", str(p)]), cap)
            print(f"  {engine}: full {r['full'].get('wall', 0):.1f}s, incremental {r['incremental'].get('wall', 0):.1f}s",
                  file=sys.stderr, flush=True)
            out[engine] = r
    print(f"\n== vault load: {a.log:,} group-log events + {a.messages:,} messages (+1% incremental) ==")
    for engine, r in out.items():
        print(f"  {engine}:")
        for k, v in r.items():
            print(f"    {k:<22} {v.get('wall', 0):9.1f}s  peak {v.get('peak', 0) / 2**20:8,.0f}M"
                  + ("" if v.get("ok") else f"  FAILED {v.get('error')}"))
        if r["full"].get("ok") and r["incremental"].get("ok"):
            f = r["incremental"]["wall"] / r["full"]["wall"]
            print(f"    incremental / full: {f:.3f} (goal <= 0.05: {'met' if f <= 0.05 else 'not met'})")
    (DATA / "vault.json").write_text(json.dumps(out, indent=1, default=str))


if __name__ == "__main__":
    main()
