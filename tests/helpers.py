"""Test data: event logs with the edge cases that break hand-made pipelines, and a pandas reference."""

from __future__ import annotations

import csv
import random
from datetime import datetime, timedelta
from pathlib import Path

import pandas as pd

T0 = datetime(2024, 3, 10, 0, 0)
TOPICS = ["Авто", "Кино, сериалы", 'Сказать "да"', "x' OR '1'='1", "naïve café", "plain"]
ACTIONS = ["view", "like", "share"]
EPOCH = datetime(1970, 1, 1)


def ms(t: datetime) -> int:
    return int((t - EPOCH).total_seconds() * 1000)


def random_events(n: int, seed: int = 1, start: datetime = T0, hours: int = 24) -> list[dict]:
    """Events with many on exact minute/hour/day boundaries and 1 ms either side of them."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if rng.random() < 0.3:
            base = start + timedelta(minutes=rng.randrange(hours * 60))
            t = base + timedelta(milliseconds=rng.choice([0, -1, 1, 59_999]))
        else:
            t = start + timedelta(milliseconds=rng.randrange(hours * 3_600_000))
        out.append({
            "id": i + 1,
            "user_id": rng.randrange(1, 40),
            "action": rng.choice(ACTIONS),
            "topic": rng.choice(TOPICS),
            "amount": None if rng.random() < 0.1 else round(rng.uniform(0, 100), 2),
            "ts": ms(t),
        })
    return out


def write_events_csv(path: Path, events: list[dict], extra_lines: list[str] = ()) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f, lineterminator="\n")
        w.writerow(["id", "user_id", "action", "topic", "amount", "ts"])
        for e in events:
            w.writerow(["" if e[k] is None else e[k] for k in ("id", "user_id", "action", "topic", "amount", "ts")])
        for line in extra_lines:
            f.write(line + "\n")
    return path


def reference_by_topic(events: list[dict], start: datetime, end: datetime, grain_s: int = 60) -> pd.DataFrame:
    """The mart `by_topic` computed independently with pandas: floor to grain, half-open window."""
    cols = ["id", "user_id", "action", "topic", "amount", "ts"]
    df = pd.DataFrame(events, columns=cols).drop_duplicates("id")
    df["t"] = pd.to_datetime(df["ts"], unit="ms")
    df = df[(df["t"] >= start) & (df["t"] < end)]
    df["dt"] = df["t"].dt.floor(f"{grain_s}s")
    g = df.groupby(["dt", "topic", "action"])
    ref = pd.DataFrame({
        "events": g.size(),
        "users": g["user_id"].nunique(),
        "likes": g["action"].apply(lambda s: int((s == "like").sum())),
        "amount_sum": g["amount"].sum(min_count=1),
        "amount_min": g["amount"].min(),
        "amount_max": g["amount"].max(),
    }).reset_index()
    return ref.sort_values(["dt", "topic", "action"]).reset_index(drop=True)


def mart_frame(project, mart: str = "by_topic") -> pd.DataFrame:
    res = project.query(f"SELECT * FROM {mart}")
    df = pd.DataFrame(res.rows, columns=res.columns)
    if df.empty:
        return df
    df["dt"] = pd.to_datetime(df["dt"])
    return df.sort_values(["dt", "topic", "action"]).reset_index(drop=True)


def assert_frames_equal(got: pd.DataFrame, ref: pd.DataFrame) -> None:
    assert len(got) == len(ref), (len(got), len(ref))
    if not len(ref):
        return
    got = got[list(ref.columns)].copy()
    ref = ref.copy()
    for c in ("events", "users", "likes"):
        got[c] = got[c].astype("int64")
        ref[c] = ref[c].astype("int64")
    for c in ("amount_sum", "amount_min", "amount_max"):
        got[c] = got[c].astype("float64").round(6)
        ref[c] = ref[c].astype("float64").round(6)
    got["dt"] = got["dt"].astype("datetime64[us]")
    ref = ref.copy()
    ref["dt"] = ref["dt"].astype("datetime64[us]")
    pd.testing.assert_frame_equal(got.reset_index(drop=True), ref.reset_index(drop=True), check_dtype=False)


EXPLORE_T0 = datetime(2024, 2, 26, 3)  # a Monday
EXPLORE_TOPICS = ["Кино", "sport", "naïve café", "news"]
EXPLORE_COUNTRIES = ["ru", "kz", "by"]


def explore_events(n: int = 6000) -> pd.DataFrame:
    """Events over 40 days from a Monday, across a month's end; the topic `news` starts on day 20."""
    rnd = random.Random(5)
    rows = []
    for i in range(n):
        ts = EXPLORE_T0 + timedelta(seconds=rnd.randint(0, 40 * 86400 - 1))
        rows.append({"id": i, "ts": ts, "topic": rnd.choice(EXPLORE_TOPICS[:3] if ts < EXPLORE_T0 + timedelta(days=20) else EXPLORE_TOPICS),
                     "country": rnd.choices(EXPLORE_COUNTRIES, [5, 2, 1])[0], "user_id": rnd.randint(1, 300),
                     "v": rnd.randint(-50, 1000)})
    return pd.DataFrame(rows)


def built_example(name: str, d: Path, engine: dict):
    """A bundled example at a small scale on ``engine``, its sources loaded (marts not run), schedules off."""
    from eventmart import Project
    from eventmart.examples import (
        WEB_SOURCES,
        generate_feed,
        generate_groups,
        generate_web,
        generate_zen,
        init_example,
    )

    init_example(name, d)
    import yaml

    cfg = yaml.safe_load((d / "eventmart.yml").read_text())
    cfg["warehouse"] = engine
    cfg.pop("schedules", None)
    if name == "web":  # the topics' records, read from their files (no broker needed for the marts)
        for src in cfg["sources"].values():
            src.pop("kafka")
            src["path"] = "data/none"
            # what the broker adds to a record (its timestamp) a file does not have: optional here
            src["columns"] = {c: t if not c.startswith("kafka_") or t.endswith("?") else t + "?"
                              for c, t in src["columns"].items()}
    (d / "eventmart.yml").write_text(yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False))
    files = {"zen": lambda: generate_zen(d, 0.05, 1), "feed": lambda: generate_feed(d, 0.02, 4),
             "groups": lambda: generate_groups(d, 0.05), "web": lambda: generate_web(d, 0.05)}[name]()
    p = Project.load(d)
    if name == "web":
        _stamp_web(files)
        for f in files:
            p.ingest(WEB_SOURCES[Path(f).name.split("_")[0]], [str(f)])
    else:
        for s in p.config.sources:
            p.ingest(s)
    if p.config.vault.hubs:
        p.vault_load()
    return p


def _stamp_web(files: list) -> None:
    """What a broker would stamp on the web example's records (kafka_ts, when each arrived; three topics have no
    time of their own): a second after the pageview each belongs to, so the marts' joins line up as in `demo web`."""
    import json
    from datetime import datetime

    rows = {Path(f): [json.loads(line) for line in Path(f).read_text().splitlines() if line.strip()] for f in files}
    by_event, by_click = {}, {}
    for f, recs in rows.items():
        if f.name.startswith("browser"):
            for r in recs:
                ms = int(datetime.fromisoformat(r["event_timestamp"]).timestamp() * 1000)
                by_event[r["event_id"]] = ms
                by_click[r["click_id"]] = min(ms, by_click.get(r["click_id"], ms))
    for f, recs in rows.items():
        for r in recs:
            ms = by_event.get(r.get("event_id")) if "event_id" in r else by_click.get(r.get("click_id"))
            r["kafka_ts"] = (ms or 0) + (0 if f.name.startswith("browser") else 1000)
        f.write_text("".join(json.dumps(r) + "\n" for r in recs))


EXPLORE_SOURCE = {"format": "csv", "path": "data/e.csv",
                  "columns": {"id": "int", "ts": "timestamp", "topic": "string", "country": "string", "user_id": "int",
                              "v": "int"},
                  "time": {"column": "ts"}, "key": ["id"]}


def explore_project(d: Path, df: pd.DataFrame, config: dict, extra_lines: tuple[str, ...] = ()) -> Path:
    """A project in ``d`` reading ``df`` (explore_events) from data/e.csv as source `ev` — then ``extra_lines``, raw —
    with the rest of its file from ``config`` (marts, dashboards, …; name `x` unless it says)."""
    import yaml

    (d / "data").mkdir(parents=True, exist_ok=True)
    text = df.astype({"ts": str}).to_csv(index=False)
    (d / "data" / "e.csv").write_text(text + "".join(line + "\n" for line in extra_lines), encoding="utf-8")
    (d / "eventmart.yml").write_text(yaml.safe_dump({"name": "x", "sources": {"ev": EXPLORE_SOURCE}, **config},
                                                    allow_unicode=True, sort_keys=False), encoding="utf-8")
    return d
