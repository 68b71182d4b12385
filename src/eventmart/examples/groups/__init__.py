"""The communities example (seed 003): users, groups, messages and the group log of a social network.

Shapes the marketers' question depends on: group sizes heavy-tailed (a few big communities, many small ones);
each group's conversion (the share of joiners who then write in it) drawn between ~10 % and ~60 %; joins spread
after a group's registration; invited joins (``user_id_from``); members who leave, some of whom rejoin; writers
who wrote before they joined and writers who never joined (the seed counts them); private messages outside any
group; a few malformed group-log lines. Registrations start well before the activity window, so "the 10 oldest
groups" are a real subset.

The files are what the seed downloads from S3: ``users.csv``, ``groups.csv``, ``dialogs.csv``,
``group_log.csv`` (group_id, user_id, user_id_from, event, datetime).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa

START = datetime(2022, 3, 1)  # the first group registers here
DAYS = 75  # activity runs this long
COUNTRIES = ["Russia", "Belarus", "Kazakhstan", "Armenia", "Georgia", "Serbia", "Turkey"]
WEIGHTS = [0.62, 0.1, 0.1, 0.05, 0.05, 0.04, 0.04]
THEMES = ["Кино", "Книги", "Путешествия", "Футбол", "Кулинария", "Фото", "Музыка", "IT", "Игры", "Сад и огород",
          "Авто", "Психология", "Языки", "Бег", "Йога", "Мемы"]
WORDS = ["привет", "всем", "кто", "идёт", "сегодня", "спасибо", "отлично", "вопрос", "ссылка", "фото", "да", "нет"]
# lines a real export contains now and then: too few fields, a non-integer id, a date that is not one
BAD_LINES = ["12,34", "abc,17,,add,2022-03-05 10:00:00", "5,17,,add,not a date", "7,,,leave,2022-03-09 11:00:00"]


def _ts(base: datetime, seconds: np.ndarray) -> np.ndarray:
    return (np.datetime64(base, "us") + (seconds * 1e6).astype("timedelta64[us]"))


def generate(scale: float = 1.0, seed: int = 3) -> dict[str, pa.Table]:
    rng = np.random.default_rng(seed)
    n_users = max(int(20_000 * scale), 500)
    n_groups = max(int(160 * scale), 20)
    end = DAYS * 86400.0

    users = {
        "id": np.arange(1, n_users + 1, dtype=np.int64) * 3 + 100,
        "chat_name": np.array([f"user_{i:06d}" for i in range(n_users)], dtype=object),
        "registration_dt": _ts(START - timedelta(days=400), rng.uniform(0, 400 * 86400, n_users)),
        "country": rng.choice(np.array(COUNTRIES, dtype=object), n_users, p=WEIGHTS),
        "age": rng.integers(16, 70, n_users),
    }
    uid = users["id"]
    # a long tail of registrations before the window, then a steady stream during it
    reg = np.sort(np.concatenate([rng.uniform(-200, -10, n_groups // 8) * 86400,
                                  rng.uniform(0, (DAYS - 10) * 86400, n_groups - n_groups // 8)]))
    gid = np.arange(1, n_groups + 1, dtype=np.int64) * 11 + 5000
    admins = rng.choice(uid, n_groups)
    groups = {
        "id": gid,
        "admin_id": admins,
        "group_name": np.array([f"{THEMES[i % len(THEMES)]} #{i + 1}" for i in range(n_groups)], dtype=object),
        "registration_dt": _ts(START, reg),
        "is_private": rng.random(n_groups) < 0.2,
    }
    sizes = np.minimum((rng.pareto(1.3, n_groups) + 1) * 60, n_users * 0.3).astype(int)
    conversion = rng.uniform(0.1, 0.6, n_groups)
    log = {"group_id": [], "user_id": [], "user_id_from": [], "event": [], "datetime": []}
    msgs = {"message_ts": [], "message_from": [], "message_to": [], "message_group": []}

    def add_log(g: int, users_: np.ndarray, frm: np.ndarray, event: str, t: np.ndarray) -> None:
        keep = t < end
        log["group_id"].append(np.full(keep.sum(), g, dtype=np.int64))
        log["user_id"].append(users_[keep])
        log["user_id_from"].append(frm[keep])
        log["event"].append(np.full(keep.sum(), event, dtype=object))
        log["datetime"].append(t[keep])

    def add_msgs(g: int | None, frm: np.ndarray, to: np.ndarray, t: np.ndarray) -> None:
        keep = (t < end) & (t >= 0)
        msgs["message_ts"].append(t[keep])
        msgs["message_from"].append(frm[keep])
        msgs["message_to"].append(to[keep])
        msgs["message_group"].append(np.full(keep.sum(), -1 if g is None else g, dtype=np.int64))

    for k in range(n_groups):
        g, t0 = int(gid[k]), max(reg[k], 0.0)
        add_log(g, np.array([admins[k]]), np.array([-1]), "create", np.array([reg[k]]))
        members = rng.choice(uid, min(sizes[k], n_users), replace=False)
        joined = t0 + rng.exponential(12 * 86400, len(members))
        invited = rng.random(len(members)) < 0.3
        frm = np.where(invited, rng.choice(np.append(members, admins[k]), len(members)), -1)
        add_log(g, members, frm, "add", joined)
        # some leave; a third of those come back
        leaves = rng.random(len(members)) < 0.12
        left = joined + rng.exponential(10 * 86400, len(members))
        add_log(g, members[leaves], np.full(leaves.sum(), -1), "leave", left[leaves])
        back = leaves & (rng.random(len(members)) < 0.33)
        add_log(g, members[back], np.full(back.sum(), -1), "add", left[back] + rng.exponential(5 * 86400, back.sum()))
        # writers: joiners who then write in the group's dialogs, at the group's conversion rate
        writes = rng.random(len(members)) < conversion[k]
        for _ in range(3):  # up to three messages each
            t = joined + rng.exponential(4 * 86400, len(members))
            add_msgs(g, members[writes], rng.choice(members, writes.sum()), t[writes])
            writes &= rng.random(len(members)) < 0.6
        early = rng.random(len(members)) < 0.05  # wrote before joining: not a conversion by itself
        add_msgs(g, members[early], rng.choice(members, early.sum()), joined[early] - rng.uniform(60, 86400, early.sum()))
        outsiders = rng.choice(uid, max(int(len(members) * 0.08), 1))  # wrote without ever joining
        add_msgs(g, outsiders, rng.choice(members, len(outsiders)), rng.uniform(t0, end, len(outsiders)))
    n_private = int(sum(len(x) for x in msgs["message_ts"]) * 0.8)
    add_msgs(None, rng.choice(uid, n_private), rng.choice(uid, n_private), rng.uniform(0, end, n_private))

    cat = {k: np.concatenate(v) for k, v in log.items()}
    order = np.argsort(cat["datetime"], kind="stable")
    group_log = {
        "group_id": cat["group_id"][order],
        "user_id": cat["user_id"][order],
        "user_id_from": pa.array(cat["user_id_from"][order], mask=cat["user_id_from"][order] < 0, type=pa.int64()),
        "event": cat["event"][order],
        "datetime": _ts(START, cat["datetime"][order].astype(float)),
    }
    m = {k: np.concatenate(v) for k, v in msgs.items()}
    order = np.argsort(m["message_ts"], kind="stable")
    n = len(order)
    dialogs = {
        "message_id": np.arange(1, n + 1, dtype=np.int64) + 10_000_000,
        "message_ts": _ts(START, m["message_ts"][order]),
        "message_from": m["message_from"][order],
        "message_to": m["message_to"][order],
        "message": np.array([" ".join(rng.choice(WORDS, 3)) for _ in range(n)], dtype=object),
        "message_group": pa.array(m["message_group"][order], mask=m["message_group"][order] < 0, type=pa.int64()),
    }
    return {"users": pa.table(users), "groups": pa.table(groups), "dialogs": pa.table(dialogs),
            "group_log": pa.table(group_log)}


def write(tables: dict[str, pa.Table], folder: Path) -> list[Path]:
    """One CSV per table (the seed's files), with the bad lines at the end of group_log.csv."""
    from ..files import write_csv

    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for name, t in tables.items():
        path = folder / f"{name}.csv"
        write_csv(t, path)
        out.append(path)
    with open(folder / "group_log.csv", "a", encoding="utf-8") as f:
        f.write("".join(line + "\n" for line in BAD_LINES))
    return out
