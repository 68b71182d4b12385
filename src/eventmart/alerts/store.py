"""What alerting keeps in the warehouse: each rule × series's state, the history of events and deliveries,
silences. State is named (:class:`RuleState`), never positional."""

from __future__ import annotations

from dataclasses import astuple, dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from ..timeutil import utcnow

if TYPE_CHECKING:
    from ..workspace import Workspace

STATE, EVENTS, SILENCES = "_eventmart_alert_state", "_eventmart_alert_events", "_eventmart_silences"
# pseudo-series: the data is late (the mart behind its source), no data (the source stalled), the rule errs
LATE_KEY, NODATA_KEY, ERROR_KEY = "(data)", "(nodata)", "(error)"
PSEUDO = (LATE_KEY, NODATA_KEY, ERROR_KEY)


@dataclass
class RuleState:
    """One rule × series: OK / FIRING (or LATE, NODATA, ERROR for the pseudo-series), since when, anomalous buckets in a row, the last judged bucket and
    its value and bounds, when it last notified."""

    state: str = "OK"
    since: datetime | None = None
    consecutive: int = 0
    last_bucket: datetime | None = None
    last_notified: datetime | None = None
    value: float | None = None
    lower: float | None = None
    upper: float | None = None


def load_state(wh, rule: str) -> dict[str, RuleState]:
    rows = wh.fetch(f"SELECT series, state, since, consecutive, last_bucket, last_notified, value, lower, upper "
                    f"FROM {STATE} WHERE rule = {{{{ r }}}}", {"r": rule}).rows
    return {r[0]: RuleState(*r[1:]) for r in rows}


def save_state(wh, rule: str, state: dict[str, RuleState]) -> None:
    """Inside the caller's transaction: the rule's state replaced as a whole."""
    wh.execute(f"DELETE FROM {STATE} WHERE rule = {{{{ r }}}}", {"r": rule})
    _insert(wh, STATE, [[rule, key, *astuple(st)] for key, st in state.items()])


def ensure_tables(wh) -> None:
    wh.lock("alerts")
    t = wh.type_name
    wh.create_table(STATE, [("rule", t("string")), ("series", t("string")), ("state", t("string")),
                            ("since", t("timestamp")), ("consecutive", t("int")), ("last_bucket", t("timestamp")),
                            ("last_notified", t("timestamp")), ("value", t("float")), ("lower", t("float")),
                            ("upper", t("float"))])
    wh.create_table(EVENTS, [("sent_at", t("timestamp")), ("rule", t("string")), ("series", t("string")),
                             ("event", t("string")), ("bucket", t("timestamp")), ("value", t("float")),
                             ("lower", t("float")), ("upper", t("float")), ("channel", t("string")),
                             ("status", t("string")), ("detail", t("string"))])
    wh.create_table(SILENCES, [("rule", t("string")), ("silenced_until", t("timestamp")),
                               ("created_at", t("timestamp"))])


def _insert(wh, table: str, rows: list[list], batch: int = 200) -> None:
    """Many rows in few statements, every value bound (one INSERT per row costs ~1 ms)."""
    for i in range(0, len(rows), batch):
        part = rows[i:i + batch]
        params = {f"p{j}_{k}": v for j, r in enumerate(part) for k, v in enumerate(r)}
        values = ", ".join("(" + ", ".join(f"{{{{ p{j}_{k} }}}}" for k in range(len(r))) + ")"
                           for j, r in enumerate(part))
        wh.execute(f"INSERT INTO {table} VALUES {values}", params)


def silenced(project: Workspace, name: str, now: datetime) -> bool:
    wh = project.warehouse
    return bool(wh.fetch(f"SELECT count(*) FROM {SILENCES} WHERE rule = {{{{ r }}}} AND silenced_until > {{{{ t }}}}",
                         {"r": name, "t": now}).rows[0][0])


def silence(project: Workspace, name: str, seconds: int, now: datetime | None = None) -> datetime:
    now = now or utcnow()
    until = now + timedelta(seconds=seconds)
    wh = project.warehouse
    with wh.transaction():
        ensure_tables(wh)
        wh.execute(f"INSERT INTO {SILENCES} VALUES ({{{{ r }}}}, {{{{ u }}}}, {{{{ t }}}})",
                   {"r": name, "u": until, "t": now})
    return until


def silences(project: Workspace, now: datetime | None = None) -> list[tuple]:
    """Silences in force: (rule, silenced until, set at), soonest end first."""
    now = now or utcnow()
    wh = project.warehouse
    with wh.transaction():
        ensure_tables(wh)
    return [tuple(r) for r in wh.fetch(
        f"SELECT rule, max(silenced_until), min(created_at) FROM {SILENCES} WHERE silenced_until > {{{{ t }}}} "
        "GROUP BY rule ORDER BY 2, 1", {"t": now}).rows]


def unsilence(project: Workspace, name: str, now: datetime | None = None) -> int:
    """Lift a rule's silences now; returns how many were in force."""
    now = now or utcnow()
    wh = project.warehouse
    with wh.transaction():
        ensure_tables(wh)
        return max(wh.update_rows(SILENCES, "silenced_until = {{ t }}", "rule = {{ r }} AND silenced_until > {{ t }}",
                                  {"r": name, "t": now}), 0)


