"""The web-analytics example (seed 004): pageviews with browser, device, geo and location/UTM parts that arrive
on four Kafka topics, the parts minutes after their pageview.

The four real sample files of the seed (``*_events.jsonl.gz``, 1,000 records each, from the public repository
n-surkov/newprolab-project, ``data/sample/``) ship here unchanged; :func:`generate` makes more with the same
schema and the samples' mixes (browsers, devices, countries, pages, referrers, UTM campaigns): traffic that follows
the hour of day, visitors (``click_id``) with several pageviews each, a path through the shop
(/home → /product → /cart → /payment → /confirmation), and device/geo/location records sent a few seconds to
minutes after the pageview they belong to.
"""

from __future__ import annotations

import gzip
import json
import uuid
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

HERE = Path(__file__).parent
PARTS = ("browser", "device", "geo", "location")
HOURS = np.array([2, 1, 1, 1, 1, 2, 3, 5, 7, 8, 8, 9, 9, 9, 8, 8, 8, 9, 10, 11, 11, 9, 6, 4], float)
PATHS = ["/home", "/product_a", "/product_b", "/cart", "/payment", "/confirmation"]


def sample(part: str) -> list[dict]:
    with gzip.open(HERE / f"{part}_events.jsonl.gz", "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def _pick(rng: np.random.Generator, values: list, n: int) -> list:
    return [values[i] for i in rng.integers(0, len(values), n)]


def generate(n: int, start: datetime, hours: float = 24.0, seed: int = 4) -> tuple[dict[str, list[dict]], list[float]]:
    """``n`` pageviews from ``start`` over ``hours``: the four parts' records, and each record's delay (seconds after
    its pageview) for the parts, 0 for the pageviews themselves."""
    rng = np.random.default_rng(seed)
    s = {p: sample(p) for p in PARTS}
    visitors = max(n // 8, 1)
    # visitor-level parts: one device and one place per visitor, drawn from the samples
    dev = _pick(rng, s["device"], visitors)
    geo = _pick(rng, s["geo"], visitors)
    clicks = [str(uuid.UUID(int=int(x))) for x in rng.integers(0, 2**62, visitors)]
    loc = s["location"]
    referrers = [(r["referer_url"], r["referer_medium"], r["utm_medium"], r["utm_source"], r["utm_content"],
                  r["utm_campaign"]) for r in loc]
    if hours < 1:  # a few seconds of live traffic: evenly over them
        secs = np.sort(rng.uniform(0, hours * 3600, n))
    else:  # days: more in the evening than at night
        weights = HOURS / HOURS.sum()
        secs = rng.integers(0, max(int(hours // 24), 1), n) * 86400 + rng.choice(24, n, p=weights) * 3600 \
            + rng.uniform(0, 3600, n)
        secs = np.sort(secs[secs < hours * 3600])
    who = rng.integers(0, visitors, len(secs))
    depth = {}
    out: dict[str, list[dict]] = {p: [] for p in PARTS}
    delays: dict[str, list[float]] = {p: [] for p in PARTS}
    browsers = [(b["browser_name"], b["browser_user_agent"], b["browser_language"]) for b in s["browser"]]
    for i, (t, v) in enumerate(zip(secs, who, strict=True)):
        eid = str(uuid.UUID(int=int(rng.integers(0, 2**62)) + i))
        step = depth.get(v, 0)
        path = PATHS[min(step + (1 if step and rng.random() < 0.5 else 0), len(PATHS) - 1)] if step else "/home"
        depth[v] = step + 1 if rng.random() < 0.45 else 0
        bname, agent, lang = browsers[v % len(browsers)]
        ts = start + timedelta(seconds=float(t))
        out["browser"].append({"event_id": eid, "event_timestamp": ts.strftime("%Y-%m-%d %H:%M:%S.%f"),
                               "event_type": "pageview", "click_id": clicks[v], "browser_name": bname,
                               "browser_user_agent": agent, "browser_language": lang})
        delays["browser"].append(0.0)
        ref = referrers[v % len(referrers)]
        out["location"].append({"event_id": eid, "page_url": f"http://www.dummywebsite.com{path}",
                                "page_url_path": path, "referer_url": ref[0], "referer_medium": ref[1],
                                "utm_medium": ref[2], "utm_source": ref[3], "utm_content": ref[4],
                                "utm_campaign": ref[5]})
        delays["location"].append(float(rng.exponential(20)))
        if step == 0:  # a visitor's first pageview of a visit brings the device and place records
            out["device"].append({**dev[v], "click_id": clicks[v]})
            out["geo"].append({**geo[v], "click_id": clicks[v]})
            delays["device"].append(float(rng.exponential(60)))
            delays["geo"].append(float(rng.exponential(90)))
    return out, delays


def write(records: dict[str, list[dict]], folder: Path, tag: str = "") -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for part, rows in records.items():
        path = folder / f"{part}_events{tag}.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            f.writelines(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        paths.append(path)
    return paths


def write_samples(folder: Path) -> list[Path]:
    return write({p: sample(p) for p in PARTS}, folder, "")
