"""The same project on DuckDB, PostgreSQL and ClickHouse (chDB) gives the same mart, row by row, equal to Python's
exact arithmetic on the events: counts, sums past 2^53 and past 2^63 (no wrap), decimals, averages (within 1e-9),
distinct counts, count_if, max, a boolean dimension from an expression, Unicode text. And every output prints a
PostgreSQL sum as the integer it is: query csv/json/table, a dashboard's CSV, a report's digest."""

from __future__ import annotations

import json
import random
import subprocess
import sys
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path

import pytest

from conftest import write_project
from eventmart import Project

EVENTMART = str(Path(sys.executable).parent / "eventmart")
T0 = datetime(2024, 3, 10)
TOPICS = ["Кино, \"сериалы\"", "sport", "naïve café", "🎬 trailers"]
EDGES = [2**53 + 1, 2**53 + 3, 2**62, 2**62, 2**63 - 1, 2**63 - 1, -(2**62), -(2**63) + 1, 0]


def _events(n: int = 1500) -> list[dict]:
    rnd = random.Random(17)
    out = []
    for i in range(n):
        v = EDGES[i] if i < len(EDGES) else rnd.randint(-10**6, 10**6)
        out.append({"id": i, "ts": (T0 + timedelta(seconds=rnd.randint(0, 2 * 86400 - 1))).isoformat(sep=" "),
                    "topic": TOPICS[rnd.randrange(4)] if i >= len(EDGES) else TOPICS[0],
                    "v": v, "amount": f"{rnd.randint(-99999, 99999) / 100:.2f}", "f": repr(rnd.uniform(-1e6, 1e6)),
                    "user_id": rnd.randint(1, 90)})
    return out


def _project(d: Path, wh: dict, events: list[dict]) -> Path:
    import csv

    (d / "data").mkdir(parents=True, exist_ok=True)
    with open(d / "data" / "e.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, list(events[0]))
        w.writeheader()
        w.writerows(events)
    write_project(d, {"name": "x", "warehouse": wh, "sources": {"ev": {
        "format": "csv", "path": "data/e.csv",
        "columns": {"id": "int", "ts": "timestamp", "topic": "string", "v": "int", "amount": "decimal(18,2)",
                    "f": "float", "user_id": "int"},
        "time": {"column": "ts"}, "key": ["id"]}},
        "marts": {"m": {"from": "ev", "grain": "1 day",
                        "dimensions": ["topic", {"big": "v > 9007199254740992"}],
                        "measures": {"n": "count()", "s": "sum(v)", "avg_f": "avg(f)", "users": "count_distinct(user_id)",
                                     "positive": "count_if(v > 0)", "top": "max(v)", "amt": "sum(amount)",
                                     "low": "min(amount)"}}},
        "dashboards": {"d": {"title": "x", "charts": {"total": {"type": "kpi", "mart": "m", "measure": "s"}}}},
        "reports": {"daily": {"title": "x", "mart": "m", "metrics": {"total": {"value": "sum(s)"}},
                              "channels": ["files"]}},
        "channels": {"files": {"type": "file", "path": "reports"}}})
    with Project.load(d) as p:
        assert p.ingest("ev").loaded == len(events)
        assert all(r.status == "ok" for r in p.backfill())
    return d


def _truth(events: list[dict]) -> dict:
    groups: dict = {}
    for e in events:
        day = datetime.fromisoformat(e["ts"]).replace(hour=0, minute=0, second=0)
        groups.setdefault((day, e["topic"], e["v"] > 2**53), []).append(e)
    out = {}
    for k, es in groups.items():
        fs = [float(e["f"]) for e in es]
        out[k] = {"n": len(es), "s": sum(e["v"] for e in es), "avg_f": sum(fs) / len(fs),
                  "users": len({e["user_id"] for e in es}), "positive": sum(e["v"] > 0 for e in es),
                  "top": max(e["v"] for e in es), "amt": sum(Decimal(e["amount"]) for e in es),
                  "low": min(Decimal(e["amount"]) for e in es)}
    return out


def _mart(d: Path) -> dict:
    with Project.load(d) as p:
        res = p.query("SELECT dt, topic, big, n, s, avg_f, users, positive, top, amt, low FROM m")
    return {(r[0], r[1], bool(r[2])): dict(zip(res.columns[3:], r[3:], strict=True)) for r in res.rows}


def test_three_engines_build_the_same_exact_mart(tmp_path, pg_url, ch_warehouse):
    events = _events()
    truth = _truth(events)
    assert sum(e["v"] for e in events if e["v"] > 2**62) > 2**63  # sums past what an Int64 holds
    for name, wh in (("duckdb", {"type": "duckdb"}), ("postgres", {"type": "postgres", "url": pg_url}),
                     ("clickhouse", ch_warehouse)):
        got = _mart(_project(tmp_path / name, wh, events))
        assert set(got) == set(truth), name
        for k, want in truth.items():
            row = got[k]
            for col, v in want.items():
                g = row[col]
                if col == "avg_f":
                    assert abs(float(g) - v) <= 1e-9 * max(1.0, abs(v)), (name, k, col, g, v)
                else:
                    assert g == v and not isinstance(g, float), (name, k, col, g, v)


def test_postgres_sums_print_as_integers_everywhere(tmp_path, pg_url):
    events = _events(300)
    d = _project(tmp_path, {"type": "postgres", "url": pg_url}, events)
    total = sum(e["v"] for e in events)
    sql = "SELECT sum(s) AS total FROM m"
    r = subprocess.run([EVENTMART, "query", sql, "-f", "csv", "-p", str(d)], capture_output=True, text=True)
    assert r.stdout.splitlines()[1] == str(total), r.stdout + r.stderr
    r = subprocess.run([EVENTMART, "query", sql, "-f", "json", "-p", str(d)], capture_output=True, text=True)
    assert json.loads(r.stdout)[0]["total"] == total and "e+" not in r.stdout and ".0" not in r.stdout
    r = subprocess.run([EVENTMART, "query", sql, "-p", str(d)], capture_output=True, text=True)
    assert str(total) in r.stdout
    with Project.load(d) as p:
        from eventmart.server.web import create_server

        csv_text = create_server(p).test_client().get("/d/d/csv/total").data.decode()
        assert csv_text.splitlines()[1] == str(total), csv_text
        day = p.report("daily", "2024-03-11", dry_run=True)
    digest = json.loads(next((d / "reports" / "dry-run").rglob("digest.json")).read_text())
    per_day = sum(e["v"] for e in events if e["ts"].startswith("2024-03-11"))
    assert digest["metrics"]["total"]["value"] == per_day, (digest, day)


@pytest.mark.parametrize("engine", ["duckdb", "postgres", "clickhouse"], indirect=True)
def test_columns_named_like_sql_keywords_are_columns_on_every_engine(tmp_path, engine):
    """`user` unquoted is CURRENT_USER on PostgreSQL: a distinct count of it was 1 there. Measures, dimension
    expressions and chart measures read the column."""
    rows = [{"id": i, "user": f"u{i % 41}", "ts": (T0 + timedelta(minutes=7 * i)).isoformat(sep=" ")}
            for i in range(900)]
    d = tmp_path / "kw"
    (d / "data").mkdir(parents=True)
    (d / "data" / "e.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_project(d, {"name": "kw", "warehouse": engine,
                      "sources": {"ev": {"format": "jsonl", "path": "data/*.jsonl",
                                         "columns": {"id": "int", "user": "string", "ts": "timestamp"},
                                         "time": {"column": "ts"}, "key": ["id"]}},
                      "marts": {"daily": {"from": "ev", "grain": "1 day",
                                          "dimensions": ["dt", {"name": "odd", "expr": "user in ('u1', 'u3')"}],
                                          "measures": {"users": "count_distinct(user)",
                                                       "named": "count_if(user = 'u5')"}}}})
    with Project.load(d) as p:
        p.ingest("ev")
        p.backfill()
        got = {(str(dt)[:10], bool(odd)): (u, n) for dt, odd, u, n in
               p.query("SELECT dt, odd, users, named FROM daily").rows}
    want: dict[tuple[str, bool], list] = {}
    for r in rows:
        k = (r["ts"][:10], r["user"] in ("u1", "u3"))
        v = want.setdefault(k, [set(), 0])
        v[0].add(r["user"])
        v[1] += r["user"] == "u5"
    assert got == {k: (len(s), n) for k, (s, n) in want.items()}


@pytest.mark.parametrize("engine", ["duckdb", "postgres", "clickhouse"], indirect=True)
def test_a_mart_of_distinct_counts_alone_counts_what_count_distinct_would(tmp_path, engine):
    """A mart whose every measure is a distinct count of one column runs as distinct rows, then a count: the same
    numbers as COUNT(DISTINCT), NULLs not counted (a bucket of NULLs alone is 0), a source column named like the
    compiler's own (`__v`) left alone, an expression dimension, in a time zone too."""
    rnd = random.Random(5)
    rows = [{"id": i, "uid": None if rnd.random() < 0.2 else rnd.randint(1, 30), "__v": rnd.randint(1, 3),
             "kind": rnd.choice(["a", "b", "c"]), "ts": (T0 + timedelta(minutes=rnd.randint(0, 4 * 1440))).isoformat(sep=" ")}
            for i in range(2000)]
    rows += [{"id": 5000 + i, "uid": None, "__v": 9, "kind": "only-nulls", "ts": "2024-03-11 12:00:00"} for i in range(3)]
    d = tmp_path / "dc"
    (d / "data").mkdir(parents=True)
    (d / "data" / "e.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    write_project(d, {"name": "dc", "warehouse": engine,
                      "sources": {"ev": {"format": "jsonl", "path": "data/*.jsonl",
                                         "columns": {"id": "int", "uid": "int?", "__v": "int", "kind": "string",
                                                     "ts": "timestamp"},
                                         "time": {"column": "ts"}, "key": ["id"]}},
                      "marts": {"utc": {"from": "ev", "grain": "1 day",
                                        "dimensions": ["kind", {"name": "hi", "expr": "__v > 1"}],
                                        "measures": {"users": "count_distinct(uid)", "again": "count_distinct(uid)"}},
                                "local": {"from": "ev", "grain": "1 day", "timezone": "Asia/Tokyo",
                                          "dimensions": ["kind"], "measures": {"users": "count_distinct(uid)"}}}})
    with Project.load(d) as p:
        p.ingest("ev")
        assert all(r.status == "ok" for r in p.backfill())
        utc = {(str(dt)[:10], k, bool(hi)): (u, a) for dt, k, hi, u, a in
               p.query("SELECT dt, kind, hi, users, again FROM utc").rows}
        local = {(str(dt)[:10], k): u for dt, k, u in p.query("SELECT dt, kind, users FROM local").rows}
    want_utc: dict = {}
    want_local: dict = {}
    for r in rows:
        t = datetime.fromisoformat(r["ts"])
        s = want_utc.setdefault((r["ts"][:10], r["kind"], r["__v"] > 1), set())
        sl = want_local.setdefault(((t + timedelta(hours=9)).date().isoformat(), r["kind"]), set())
        if r["uid"] is not None:
            s.add(r["uid"])
            sl.add(r["uid"])
    assert utc == {k: (len(s), len(s)) for k, s in want_utc.items()}
    assert utc[("2024-03-11", "only-nulls", True)] == (0, 0)
    assert local == {k: len(s) for k, s in want_local.items()}


@pytest.mark.parametrize("engine", ["duckdb", "postgres", "clickhouse"], indirect=True)
def test_the_read_api_and_the_explore_leaderboard_keep_every_digit(tmp_path, engine, monkeypatch):
    """Sums past 2^53 and 2^63 come out of the read API's JSON and CSV and a leaderboard exactly."""
    import yaml

    from eventmart.dashboards.explore import Explorer
    from eventmart.server.web import create_server

    events = _events()
    d = _project(tmp_path / "api", engine, events)
    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["api"] = {"tokens": {"t": {"token": "${API_T}", "marts": ["*"]}}}
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    monkeypatch.setenv("API_T", "t" * 20)
    by_topic: dict[str, int] = {}
    for e in events:
        by_topic[e["topic"]] = by_topic.get(e["topic"], 0) + e["v"]
    assert max(by_topic.values()) > 2**63
    with Project.load(d) as p:
        client = create_server(p).test_client()
        got = client.get("/api/v1/marts/m?measures=s,amt&group=topic", headers={"Authorization": "Bearer " + "t" * 20})
        assert got.status_code == 200, got.data
        body = json.loads(got.data)  # Python reads JSON integers whole
        assert {r[0]: r[1] for r in body["rows"]} == by_topic
        assert all(isinstance(r[1], int) for r in body["rows"])
        text = client.get("/api/v1/marts/m?measures=s&group=topic&format=csv",
                          headers={"Authorization": "Bearer " + "t" * 20}).data.decode()
        import csv
        import io

        assert {t: int(s) for t, s in list(csv.reader(io.StringIO(text)))[1:]} == by_topic
        span = Explorer(p.config, p.warehouse, "m").span()
        board = Explorer(p.config, p.warehouse, "m").leaderboard("topic", "s", span)
        assert {r.value: r.current for r in board.rows} == by_topic and board.total == sum(by_topic.values())
