"""Zen data generator, calibrated on the real public ``dash_visits`` (seed 000/001).

``dash_visits.csv.gz`` beside this file is the unchanged output of the Yandex.Zen dashboard pipeline,
from the public repository mozheykosn/automatization (file ``dash_visits.csv``): events per minute by
card topic, source topic and age segment, 2019-09-24 18:28-19:00 UTC, 310,207 events in all.

:func:`calibrated_events` synthesises raw events (show/click/view, reused users) whose per-minute
aggregate is exactly that file. :func:`scaled_events` draws larger logs from the same distributions.
"""

from __future__ import annotations

import gzip
from datetime import datetime
from pathlib import Path

import numpy as np
import pyarrow as pa

HERE = Path(__file__).parent
REAL = HERE / "dash_visits.csv.gz"
COLUMNS = ["event_id", "age_segment", "event", "item_id", "item_topic", "item_type", "source_id",
           "source_topic", "source_type", "ts", "user_id"]
EVENTS = np.array(["show", "click", "view"])
# share of events by type; unique users then fall show > click > view, like the seed's funnel
EVENT_P = np.array([0.74, 0.16, 0.10])
AGES = ["18-25", "26-30", "31-35", "36-40", "41-45", "45+"]
ITEM_TYPES = np.array(["post", "video", "gallery"])
SOURCE_TYPES = np.array(["publisher", "blogger"])
EPOCH = np.datetime64("1970-01-01T00:00:00", "ms")


def read_real() -> pa.Table:
    """The real dash_visits as an Arrow table (dt as a naive UTC timestamp)."""
    import pyarrow.csv as pacsv

    with gzip.open(REAL, "rb") as f:
        return pacsv.read_csv(
            f,
            convert_options=pacsv.ConvertOptions(
                column_types={"item_topic": pa.string(), "source_topic": pa.string(), "age_segment": pa.string(),
                              "dt": pa.timestamp("s"), "visits": pa.int64()}
            ),
        )


def _attributes(rng: np.random.Generator, item_topic: np.ndarray, source_topic: np.ndarray,
                age: np.ndarray, n: int, users_per_age: int) -> dict[str, np.ndarray]:
    """Everything but time: event type, items and sources within their topics, Zipf-reused users."""
    topics, t_idx = np.unique(item_topic, return_inverse=True)
    stopics, s_idx = np.unique(source_topic, return_inverse=True)
    ages, a_idx = np.unique(age, return_inverse=True)
    # items: ~40 per topic, popular ones more often; ids are unique per (topic, slot)
    item_slot = np.minimum(rng.zipf(1.6, n) - 1, 39)
    source_slot = np.minimum(rng.zipf(1.8, n) - 1, 19)
    user_slot = np.minimum(rng.zipf(1.3, n) - 1, users_per_age - 1)
    event = EVENTS[rng.choice(3, n, p=EVENT_P)]
    # clicks and views come from a subset of the users who see cards: the funnel narrows
    narrow = event != "show"
    user_slot[narrow] = user_slot[narrow] // np.where(event[narrow] == "click", 3, 7)
    return {
        "age_segment": age,
        "event": event,
        "item_id": (t_idx * 1000 + item_slot + 1000).astype(np.int64),
        "item_topic": item_topic,
        "item_type": ITEM_TYPES[(t_idx + item_slot) % 3],
        "source_id": (s_idx * 100 + source_slot + 100).astype(np.int64),
        "source_topic": source_topic,
        "source_type": SOURCE_TYPES[(s_idx + source_slot) % 2],
        "user_id": (a_idx.astype(np.int64) * 10_000_000 + user_slot + 1_000_000).astype(np.int64),
        "_ages": ages,
    }


def _table(attrs: dict[str, np.ndarray], ts_ms: np.ndarray, first_id: int = 1) -> pa.Table:
    n = len(ts_ms)
    cols = {"event_id": np.arange(first_id, first_id + n, dtype=np.int64)}
    cols.update({k: v for k, v in attrs.items() if not k.startswith("_")})
    cols["ts"] = ts_ms.astype(np.int64)
    return pa.table({c: cols[c] for c in COLUMNS})


def calibrated_events(seed: int = 7) -> pa.Table:
    """Raw events whose count per (item_topic, source_topic, age_segment, minute) equals the real file."""
    real = read_real()
    visits = real["visits"].to_numpy()
    rng = np.random.default_rng(seed)
    rep = lambda col: np.repeat(real[col].to_numpy(zero_copy_only=False), visits)  # noqa: E731
    minute_ms = real["dt"].cast(pa.int64()).to_numpy() * 1000
    ts = np.repeat(minute_ms, visits) + rng.integers(0, 60_000, visits.sum())
    attrs = _attributes(rng, rep("item_topic"), rep("source_topic"), rep("age_segment"), int(visits.sum()), 60_000)
    order = np.argsort(ts, kind="stable")  # a log is written in time order
    attrs = {k: (v[order] if not k.startswith("_") else v) for k, v in attrs.items()}
    return _table(attrs, ts[order])


def scaled_events(events: int, days: int = 1, start: datetime = datetime(2019, 9, 24), seed: int = 11,
                  first_id: int = 1) -> pa.Table:
    """``events`` raw events over ``days`` days, topics/ages drawn from the real mix, a daily cycle in time."""
    real = read_real()
    w = real["visits"].to_numpy().astype(float)
    rng = np.random.default_rng(seed)
    pick = rng.choice(len(w), events, p=w / w.sum())
    col = lambda c: real[c].to_numpy(zero_copy_only=False)[pick]  # noqa: E731
    # a daily cycle: quiet at night, peak in the evening (hour 20), ~4x between trough and peak
    hours = np.arange(24)
    hour_w = 1 + 1.5 * (1 + np.cos((hours - 20) / 24 * 2 * np.pi))
    hour = rng.choice(24, events, p=hour_w / hour_w.sum())
    day = rng.integers(0, days, events)
    start_ms = int((np.datetime64(start, "ms") - EPOCH).astype(np.int64))
    ts = start_ms + (day * 86400 + hour * 3600) * 1000 + rng.integers(0, 3_600_000, events)
    users = max(1000, events // 30)
    attrs = _attributes(rng, col("item_topic"), col("source_topic"), col("age_segment"), events, users)
    order = np.argsort(ts, kind="stable")
    attrs = {k: (v[order] if not k.startswith("_") else v) for k, v in attrs.items()}
    return _table(attrs, ts[order], first_id)
