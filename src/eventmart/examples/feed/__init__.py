"""The feed & messenger simulator (seed 002): a news feed (views, likes) and a messenger.

A user base with acquisition and retention; daily and weekly seasonality; ~20k feed DAU at scale 1
with CTR (likes / views) near 0.2; a messenger used by about a third of feed users plus a few
messenger-only users. Users keep their attributes (gender, age, country, city, os, source) across
events, so slices by os / gender / age are stable day to day.
"""

from __future__ import annotations

from datetime import datetime, timedelta

import numpy as np
import pyarrow as pa

FEED_COLUMNS = ["user_id", "post_id", "action", "time", "gender", "age", "country", "city", "os", "source"]
MESSAGE_COLUMNS = ["user_id", "receiver_id", "time", "source", "exp_group", "gender", "age", "country", "city", "os"]
COUNTRIES = {"Russia": (0.78, ["Moscow", "Saint Petersburg", "Novosibirsk", "Yekaterinburg", "Kazan", "Samara"]),
             "Ukraine": (0.08, ["Kyiv", "Kharkiv", "Odesa"]), "Belarus": (0.05, ["Minsk", "Gomel"]),
             "Kazakhstan": (0.05, ["Almaty", "Astana"]), "Azerbaijan": (0.02, ["Baku"]),
             "Finland": (0.02, ["Helsinki"])}
# hour-of-day activity: quiet at night, peaks at lunch and in the evening
HOURS = np.array([2, 1, 1, 1, 1, 2, 4, 6, 7, 7, 7, 8, 9, 8, 7, 7, 7, 8, 9, 10, 11, 10, 7, 4], float)
WEEKDAY = np.array([1.0, 0.98, 0.97, 0.99, 1.03, 1.10, 1.08])  # Monday first: busier weekends


def _users(rng: np.random.Generator, n: int, days: int) -> dict[str, np.ndarray]:
    names = list(COUNTRIES)
    country_idx = rng.choice(len(names), n, p=[COUNTRIES[c][0] for c in names])
    country = np.array(names, dtype=object)[country_idx]
    city = np.array([COUNTRIES[c][1][int(k)] for c, k in zip(
        country, rng.integers(0, 100, n) % np.array([len(COUNTRIES[c][1]) for c in country]), strict=True)],
        dtype=object)
    # most of the base exists before day 0; the rest arrives over the period
    join = np.where(rng.random(n) < 0.8, -rng.integers(1, 60, n), rng.integers(0, max(days, 1), n))
    return {
        "user_id": np.arange(1, n + 1, dtype=np.int64) * 7 + 1000,
        "gender": rng.choice([0, 1], n, p=[0.45, 0.55]).astype(np.int64),
        "age": np.clip(rng.gamma(6.0, 4.5, n) + 12, 14, 80).astype(np.int64),
        "country": country,
        "city": city,
        "os": np.where(rng.random(n) < 0.64, "Android", "iOS").astype(object),
        "source": np.where(rng.random(n) < 0.55, "organic", "ads").astype(object),
        "exp_group": rng.integers(0, 5, n).astype(np.int64),
        "join": join,
        # how engaged a user is: retention and views per day scale with it
        "appetite": rng.lognormal(0.0, 0.6, n),
        "ctr": np.clip(rng.beta(4, 16, n), 0.02, 0.6),  # mean 0.2
        "messenger": rng.random(n) < 0.33,
        "messenger_only": rng.random(n) < 0.04,
    }


def incidents(days: int = 30, start: datetime = datetime(2024, 3, 1)) -> list[dict]:
    """The labelled incidents :func:`generate` injects (when the period is long enough to hold them)."""
    if days < 9:
        return []
    d1, d2 = start + timedelta(days=days - 2), start + timedelta(days=days - 3)
    return [
        {"what": "views drop on iOS", "metric": "views", "series": "os=iOS",
         "start": d1 + timedelta(hours=14), "end": d1 + timedelta(hours=14, minutes=45), "factor": 0.25},
        {"what": "like spike", "metric": "likes", "series": "all",
         "start": d2 + timedelta(hours=20), "end": d2 + timedelta(hours=20, minutes=30), "factor": 3.0},
    ]


def generate(days: int = 30, scale: float = 1.0, start: datetime = datetime(2024, 3, 1),
             seed: int = 3, inject: bool = True) -> tuple[pa.Table, pa.Table]:
    """(feed_actions, message_actions) for ``days`` days from ``start`` (naive UTC), with :func:`incidents`."""
    rng = np.random.default_rng(seed)
    n = max(200, int(56_000 * scale))
    u = _users(rng, n, days)
    feed_parts, msg_parts = [], []
    posts_per_day = max(50, int(600 * scale))
    for day in range(days):
        date = start + timedelta(days=day)
        age_days = day - u["join"]
        joined = age_days >= 0
        # retention: a new user is very active, then settles to a plateau
        p_active = np.where(joined, 0.3 + 0.45 * np.exp(-np.maximum(age_days, 0) / 10.0), 0.0)
        p_active = np.clip(p_active * u["appetite"] ** 0.4 * WEEKDAY[date.weekday()], 0, 0.97)
        active = rng.random(n) < p_active
        feed_users = np.flatnonzero(active & ~u["messenger_only"])
        # views: negative binomial around 10 a day for an average user
        views = rng.negative_binomial(2, 2 / (2 + 8 * u["appetite"][feed_users]))
        views = np.maximum(views, 1)
        uidx = np.repeat(feed_users, views)
        k = len(uidx)
        likes = rng.random(k) < u["ctr"][uidx]
        # posts: fresh ones each day, popular ones more often (a day's posts plus yesterday's)
        post = (day * posts_per_day + np.minimum(rng.zipf(1.5, k) - 1, 2 * posts_per_day - 1)
                - rng.integers(0, 2, k) * posts_per_day + 1)
        secs = _seconds(rng, k)
        t_view = np.datetime64(date, "ms") + secs
        like_lag = rng.integers(1_000, 60_000, int(likes.sum()))
        feed_parts.append(_feed(u, uidx, post, t_view, np.full(k, "view", dtype=object)))
        t_like = t_view[likes] + like_lag
        inside = t_like < np.datetime64(start + timedelta(days=days), "ms")  # the log ends with the period
        feed_parts.append(_feed(u, uidx[likes][inside], post[likes][inside], t_like[inside],
                                np.full(int(inside.sum()), "like", dtype=object)))
        # messenger: a subset of the active users, plus messenger-only ones
        senders = np.flatnonzero(active & (u["messenger"] | u["messenger_only"]))
        sent = rng.poisson(3.0 * u["appetite"][senders] ** 0.5) + 1
        sidx = np.repeat(senders, sent)
        m = len(sidx)
        # receivers: someone from the sender's "circle" (nearby ids), never the sender
        recv = np.clip(sidx + rng.integers(-40, 41, m), 0, n - 1)
        recv = np.where(recv == sidx, (sidx + 1) % n, recv)
        msg_parts.append(pa.table({
            "user_id": u["user_id"][sidx], "receiver_id": u["user_id"][recv],
            "time": np.datetime64(date, "ms") + _seconds(rng, m),
            "source": u["source"][sidx], "exp_group": u["exp_group"][sidx], "gender": u["gender"][sidx],
            "age": u["age"][sidx], "country": u["country"][sidx], "city": u["city"][sidx], "os": u["os"][sidx],
        }))
    feed = pa.concat_tables(feed_parts)
    if inject:
        feed = _inject(feed, incidents(days, start), rng)
    feed = feed.sort_by("time")
    msgs = pa.concat_tables(msg_parts).sort_by("time")
    return feed, msgs


def _inject(feed: pa.Table, labelled: list[dict], rng: np.random.Generator) -> pa.Table:
    import pyarrow.compute as pc

    for inc in labelled:
        t = feed["time"]
        inside = pc.and_(pc.greater_equal(t, pa.scalar(inc["start"], pa.timestamp("ms"))),
                         pc.less(t, pa.scalar(inc["end"], pa.timestamp("ms"))))
        if inc["metric"] == "views":  # an iOS release breaks the feed: most views (and their likes) vanish
            hit = pc.and_(inside, pc.equal(feed["os"], "iOS")).to_numpy(zero_copy_only=False)
            drop = hit & (rng.random(len(hit)) > inc["factor"])
            feed = feed.filter(pa.array(~drop))
        else:  # a like bot: every like in the window is repeated on other posts
            hit = pc.and_(inside, pc.equal(feed["action"], "like")).to_numpy(zero_copy_only=False)
            extra = feed.filter(pa.array(hit))
            copies = []
            for k in range(int(inc["factor"]) - 1):
                c = extra.set_column(extra.schema.get_field_index("post_id"), "post_id",
                                     pc.add(extra["post_id"], 7_000_000 * (k + 1)))
                copies.append(c)
            feed = pa.concat_tables([feed, *copies])
    return feed


# activity per minute of the day: the hourly profile, interpolated, so the day has no steps at whole hours
_MINUTE_W = np.interp(np.arange(1440) / 60, np.arange(-0.5, 25.5), np.concatenate([HOURS[-1:], HOURS, HOURS[:1]]))


def _seconds(rng: np.random.Generator, k: int) -> np.ndarray:
    minute = rng.choice(1440, k, p=_MINUTE_W / _MINUTE_W.sum())
    return (minute * 60_000 + rng.integers(0, 60_000, k)).astype("timedelta64[ms]")


def _feed(u: dict, idx: np.ndarray, post: np.ndarray, t: np.ndarray, action: np.ndarray) -> pa.Table:
    return pa.table({
        "user_id": u["user_id"][idx], "post_id": post.astype(np.int64), "action": action,
        "time": t.astype("datetime64[ms]"), "gender": u["gender"][idx], "age": u["age"][idx],
        "country": u["country"][idx], "city": u["city"][idx], "os": u["os"][idx], "source": u["source"][idx],
    })
