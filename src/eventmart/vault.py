"""A data vault declared in the project file (``vault:`` hubs, links, satellites), loaded from the raw tables.

The hash contract (the same hex on DuckDB, PostgreSQL, ClickHouse and in Python's hashlib): each business-key
value as text (integers and text as written, dates ``YYYY-MM-DD``, timestamps ``YYYY-MM-DD HH:MM:SS.ffffff``,
booleans ``true``/``false``), trimmed of spaces, parts joined with ``||`` in declared order, then the MD5 digest
as 32 lowercase hex digits. Text is not case-folded: the engines disagree on upper() outside ASCII (PostgreSQL's
follows its collation, ClickHouse's is ASCII-only), so a key that is case-insensitive is normalised upstream. A row whose key has an empty part is not loaded into that hub or link (a
message outside any group is no group-dialog link). A satellite's hashdiff is the same digest over its attributes
in declared order, an empty attribute written ``^^``.

Loads are idempotent and incremental: each table remembers, per source, the last ingest it took
(``_eventmart_vault``), and each load takes the raw rows of the ingests after it; hubs and links insert only hash
keys they do not hold; a satellite row is inserted only where its hashdiff differs from the row before it in
effective-time order — existing rows of the same keys included — so a rerun adds nothing, a repeated record adds
nothing, and a late or out-of-order record lands at its own effective time. ``load_dt`` is when the raw row was
ingested (not the wall clock of the vault load), ``record_source`` the source's name. One transaction per load
(engines without transactions: every insert is an anti-join, so a rerun after a crash converges). Links whose
hub keys are missing from their hub are counted in ``status`` (and reported by ``load``), not dropped.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from .errors import UserError
from .timeutil import utcnow
from .warehouse.base import TableLayout

if TYPE_CHECKING:
    from .config import Hub, Link, ProjectConfig, Satellite, Source
    from .warehouse import Warehouse

LOG = "_eventmart_vault"
NULL_MARK = "^^"


@dataclass
class LoadResult:
    table: str
    kind: str  # hub | link | satellite
    rows: int
    seconds: float
    ingests: tuple[int, int] | None = None  # (after, up to): the raw rows it took
    # link: hub -> link keys of this load's raw rows whose hub key is missing (`status` counts the whole link)
    orphans: dict[str, int] = field(default_factory=dict)

    def line(self) -> str:
        took = f" from ingests {self.ingests[0] + 1}..{self.ingests[1]}" if self.ingests else " (nothing new)"
        miss = "".join(f"; {n:,} row(s) whose {h} key is not in {h}" for h, n in self.orphans.items() if n)
        return f"{self.kind} {self.table}: {self.rows:,} new row(s){took} in {self.seconds:.2f}s{miss}"


# --- the hash contract --------------------------------------------------------------------------------------


def part_sql(wh: Warehouse, column: str, type_: str, null_mark: bool = False) -> str:
    """One business-key (or attribute) value as normalised text."""
    text = wh.canonical_text_sql(wh.q(column), type_)
    out = f"TRIM({text})"
    return f"COALESCE({out}, '{NULL_MARK}')" if null_mark else out


def hash_sql(wh: Warehouse, src: Source, columns: list[str], null_mark: bool = False) -> str:
    """The MD5 hex digest of the columns' normalised text joined with '||'."""
    parts = [part_sql(wh, c, src.columns[c].type, null_mark) for c in columns]
    return wh.md5_hex_sql(" || '||' || ".join(parts))


def not_null(wh: Warehouse, columns: list[str]) -> str:
    return " AND ".join(f"{wh.q(c)} IS NOT NULL" for c in columns) or "1 = 1"


# --- what each table looks like -------------------------------------------------------------------------------


def hub_hk(name: str, hub: Hub) -> str:
    return hub.hash_key or f"hk_{name}"


def parent_columns(cfg: ProjectConfig, parent: str) -> list[str]:
    """The parent's business-key columns in its own source, in hash order."""
    v = cfg.vault
    if parent in v.hubs:
        return list(v.hubs[parent].key.values())
    return [c for cols in v.links[parent].hubs.values() for c in cols]


def parent_hk(cfg: ProjectConfig, parent: str) -> str:
    v = cfg.vault
    if parent in v.hubs:
        return hub_hk(parent, v.hubs[parent])
    return v.links[parent].hash_key or f"hk_{parent}"


def tables(cfg: ProjectConfig, wh: Warehouse) -> dict[str, tuple[str, list[tuple[str, str]], TableLayout]]:
    """name -> (kind, columns with engine types, layout), in load order: hubs, links, satellites."""
    v, t = cfg.vault, wh.type_name
    out: dict = {}
    for n, h in v.hubs.items():
        src = cfg.sources[h.source]
        cols = [(hub_hk(n, h), t("string")), *((k, t(src.columns[c].type)) for k, c in h.key.items()),
                ("load_dt", t("timestamp")), ("record_source", t("string"))]
        out[n] = ("hub", cols, TableLayout(order_by=[hub_hk(n, h)]))
    for n, link in v.links.items():
        hk = link.hash_key or f"hk_{n}"
        cols = [(hk, t("string")), *((hub_hk(h, v.hubs[h]), t("string")) for h in link.hubs),
                ("load_dt", t("timestamp")), ("record_source", t("string"))]
        out[n] = ("link", cols, TableLayout(order_by=[hk]))
    for n, s in v.satellites.items():
        src = cfg.sources[s.source]
        hk = parent_hk(cfg, s.parent)
        cols = [(hk, t("string")), ("hashdiff", t("string")), *((a, t(src.columns[a].type)) for a in s.attributes),
                ("effective_from", t("timestamp")), ("load_dt", t("timestamp")), ("record_source", t("string"))]
        out[n] = ("satellite", cols, TableLayout(order_by=[hk, "effective_from"]))
    return out


def ensure(cfg: ProjectConfig, wh: Warehouse) -> None:
    for name, (_, cols, layout) in tables(cfg, wh).items():
        have = wh.table_columns(name)
        if have is None:
            wh.create_table(name, cols, layout=layout)
        elif have != [c for c, _ in cols]:
            raise UserError(f"vault.{name}: the table's columns ({', '.join(have)}) are not what the project file "
                            f"declares ({', '.join(c for c, _ in cols)}); drop the table to rebuild it from the raw "
                            "tables (eventmart vault reset)")
    if wh.table_columns(LOG) is None:
        wh.create_table(LOG, [("vault_table", wh.type_name("string")), ("source", wh.type_name("string")),
                              ("last_ingest", wh.type_name("int")), ("loaded_at", wh.type_name("timestamp"))])


def _watermark(wh: Warehouse, table: str, source: str) -> int:
    rows = wh.fetch(f"SELECT max(last_ingest) FROM {wh.q(LOG)} WHERE vault_table = {{{{ t }}}} "
                    "AND source = {{ s }}", {"t": table, "s": source}).rows
    return int(rows[0][0] or 0) if rows else 0


def _set_watermark(wh: Warehouse, table: str, source: str, upto: int, now: datetime) -> None:
    wh.delete_rows(LOG, "vault_table = {{ t }} AND source = {{ s }}", {"t": table, "s": source})
    wh.execute(f"INSERT INTO {wh.q(LOG)} (vault_table, source, last_ingest, loaded_at) VALUES "
               "({{ t }}, {{ s }}, {{ u }}, {{ n }})", {"t": table, "s": source, "u": upto, "n": now})


# --- loading ----------------------------------------------------------------------------------------------------


def _new_keys_sql(wh: Warehouse, name: str, source: str, hk: str, hk_sql: str, columns: list[tuple[str, str]],
                  key_columns: list[str]) -> str:
    """Insert into hub or link ``name`` the hash keys (``hk_sql`` over a raw row) of the new raw rows it does not
    hold yet. ``columns``: (name, SQL over the raw row) besides the hash key; several raw spellings of one key
    (' 5' and '5') share a hash key: one row, the first load time."""
    q = wh.q
    inner = (f"SELECT {hk_sql} AS {hk}, " + ", ".join(f"{e} AS {c}" for c, e in columns)
             + f", _loaded_at FROM {q(source)} WHERE _ingest > {{{{ lo }}}} AND _ingest <= {{{{ hi }}}} "
             f"AND {not_null(wh, key_columns)}")
    agg = ", ".join(f"min(s.{c}) AS {c}" for c, _ in columns)
    # the table's keys are filtered by the batch's (a semi-join: the batch is the small side) before the anti-join,
    # so an engine never builds a hash table of the whole hub or link
    return (f"INSERT INTO {q(name)} ({hk}, {', '.join(c for c, _ in columns)}, load_dt, record_source) "
            f"WITH s AS ({inner}) SELECT s.{hk}, {agg}, min(s._loaded_at), {{{{ rs }}}} FROM s "
            f"LEFT JOIN (SELECT {hk} FROM {q(name)} WHERE {hk} IN (SELECT {hk} FROM s)) t ON t.{hk} = s.{hk} "
            f"WHERE t.{hk} IS NULL GROUP BY s.{hk}")


def _hub_sql(wh: Warehouse, cfg: ProjectConfig, name: str, hub: Hub) -> str:
    src, keys = cfg.sources[hub.source], list(hub.key.items())
    return _new_keys_sql(wh, name, hub.source, wh.q(hub_hk(name, hub)), hash_sql(wh, src, [c for _, c in keys]),
                         [(wh.q(k), wh.q(c)) for k, c in keys], [c for _, c in keys])


def _link_sql(wh: Warehouse, cfg: ProjectConfig, name: str, link: Link) -> str:
    src, v = cfg.sources[link.source], cfg.vault
    all_cols = [c for cols in link.hubs.values() for c in cols]
    hub_keys = [(wh.q(hub_hk(h, v.hubs[h])), hash_sql(wh, src, cols)) for h, cols in link.hubs.items()]
    return _new_keys_sql(wh, name, link.source, wh.q(link.hash_key or f"hk_{name}"), hash_sql(wh, src, all_cols),
                         hub_keys, all_cols)


def _satellite_sql(wh: Warehouse, cfg: ProjectConfig, name: str, sat: Satellite) -> str:
    q, src = wh.q, cfg.sources[sat.source]
    hk = q(parent_hk(cfg, sat.parent))
    keys = sat.key or parent_columns(cfg, sat.parent)
    eff = q(sat.effective) if sat.effective else q("_time")
    attrs = ", ".join(q(a) for a in sat.attributes)
    new = (f"SELECT {hash_sql(wh, src, keys)} AS {hk}, {hash_sql(wh, src, sat.attributes, null_mark=True)} AS "
           f"hashdiff, {attrs}, {eff} AS effective_from, _loaded_at FROM {q(sat.source)} WHERE _ingest > {{{{ lo }}}} "
           f"AND _ingest <= {{{{ hi }}}} AND {not_null(wh, keys)} AND {eff} IS NOT NULL")
    # identical records (a file read twice, a repeated event) are one; the existing rows of the batch's keys only
    return f"""INSERT INTO {q(name)} ({hk}, hashdiff, {attrs}, effective_from, load_dt, record_source)
WITH b AS ({new}),
d AS (SELECT {hk}, hashdiff, {attrs}, effective_from, _loaded_at AS load_dt FROM (
        SELECT b.*, row_number() OVER (PARTITION BY {hk}, hashdiff, effective_from ORDER BY _loaded_at) AS n FROM b
      ) x WHERE n = 1),
o AS (SELECT s.{hk}, s.hashdiff, s.effective_from FROM {q(name)} s WHERE s.{hk} IN (SELECT {hk} FROM d)),
a AS (SELECT {hk}, hashdiff, effective_from, 0 AS is_new FROM o
      UNION ALL SELECT {hk}, hashdiff, effective_from, 1 AS is_new FROM d),
r AS (SELECT {hk}, hashdiff, effective_from, is_new,
             lag(hashdiff) OVER (PARTITION BY {hk} ORDER BY effective_from, is_new, hashdiff) AS prev FROM a)
SELECT d.{hk}, d.hashdiff, {', '.join('d.' + q(a) for a in sat.attributes)}, d.effective_from, d.load_dt,
       {{{{ rs }}}}
FROM d JOIN r ON r.{hk} = d.{hk} AND r.hashdiff = d.hashdiff AND r.effective_from = d.effective_from
WHERE r.is_new = 1 AND (r.prev IS NULL OR r.prev <> r.hashdiff)"""


def _finished_upto(wh: Warehouse, source: str) -> int:
    """The newest ingest of ``source`` whose rows are all in: an ingest still running (its process alive) and every
    later one wait for the next load, or their later chunks would be missed."""
    from .ledger import _alive
    from .rawtables import INGESTS

    hi = int(wh.fetch(f"SELECT COALESCE(max(_ingest), 0) FROM {wh.q(source)}").rows[0][0])
    if wh.table_columns(INGESTS) is not None:
        running = [int(i) for i, owner in wh.fetch(f"SELECT id, owner FROM {wh.q(INGESTS)} WHERE source = {{{{ s }}}} "
                                                   "AND status = 'running'", {"s": source}).rows if _alive(owner)]
        if running:
            hi = min(hi, min(running) - 1)
    return hi


def _count(wh: Warehouse, table: str) -> int:
    return int(wh.fetch(f"SELECT count(*) FROM {wh.q(table)}").rows[0][0])


def orphans(cfg: ProjectConfig, wh: Warehouse, link: str) -> dict[str, int]:
    """hub -> rows of ``link`` whose hash key for that hub is not in the hub."""
    out = {}
    for h in cfg.vault.links[link].hubs:
        hk = wh.q(hub_hk(h, cfg.vault.hubs[h]))
        out[h] = int(wh.fetch(f"SELECT count(*) FROM {wh.q(link)} l LEFT JOIN {wh.q(h)} h ON h.{hk} = l.{hk} "
                              f"WHERE h.{hk} IS NULL").rows[0][0])
    return out


def batch_orphans(cfg: ProjectConfig, wh: Warehouse, link: str, lo: int, hi: int) -> dict[str, int]:
    """hub -> link keys among the raw rows of ingests (lo, hi] whose key for that hub is not in the hub: what one
    load reports, at the cost of its batch (`status` counts the whole link)."""
    q, ln = wh.q, cfg.vault.links[link]
    src = cfg.sources[ln.source]
    all_cols = [c for cols in ln.hubs.values() for c in cols]
    out = {}
    for h, cols in ln.hubs.items():
        hk = q(hub_hk(h, cfg.vault.hubs[h]))
        out[h] = int(wh.fetch(
            f"SELECT count(DISTINCT s.lk) FROM (SELECT {hash_sql(wh, src, all_cols)} AS lk, {hash_sql(wh, src, cols)} "
            f"AS hk FROM {q(ln.source)} WHERE _ingest > {{{{ lo }}}} AND _ingest <= {{{{ hi }}}} AND "
            f"{not_null(wh, all_cols)}) s LEFT JOIN {q(h)} t ON t.{hk} = s.hk WHERE t.{hk} IS NULL",
            {"lo": lo, "hi": hi}).rows[0][0])
    return out


def load(cfg: ProjectConfig, wh: Warehouse, only: list[str] | None = None) -> list[LoadResult]:
    """Load what the raw tables gained since each vault table's last load: hubs, then links, then satellites."""
    v = cfg.vault
    if not (v.hubs or v.links or v.satellites):
        raise UserError("no vault declared: add a `vault:` section with hubs, links and satellites to eventmart.yml")
    plan = tables(cfg, wh)
    for n in only or []:
        if n not in plan:
            raise UserError(f"unknown vault table '{n}' (tables: {', '.join(plan)})")
    results = []
    now = utcnow()
    analyzed: set[str] = set()
    with wh.transaction():
        wh.lock("vault")
        ensure(cfg, wh)
        for name, (kind, _, _) in plan.items():
            if only and name not in only:
                continue
            t0 = time.perf_counter()
            item = v.hubs.get(name) or v.links.get(name) or v.satellites[name]
            source = item.source
            if wh.table_columns(source) is None:  # the source has not been loaded yet
                results.append(LoadResult(name, kind, 0, time.perf_counter() - t0))
                continue
            lo = _watermark(wh, name, source)
            hi = _finished_upto(wh, source)
            rows, took = 0, None
            if hi > lo:
                if source not in analyzed:  # a stream's batches, or an ingest of another version, left no statistics
                    wh.analyze(source)
                    analyzed.add(source)
                sql = {"hub": _hub_sql, "link": _link_sql, "satellite": _satellite_sql}[kind](wh, cfg, name, item)
                # counting a big table costs a scan on PostgreSQL: the engine's own row count where it gives one
                before = None if wh.counts_rows else _count(wh, name)
                rows = wh.execute(sql, {"lo": lo, "hi": hi, "rs": item.record_source or source})
                if before is not None:
                    rows = _count(wh, name) - before
                took = (lo, hi)
                _set_watermark(wh, name, source, hi, now)
                if rows:
                    wh.analyze(name)  # links and satellites after it read this table
            if kind == "link" and took:
                orphaned = batch_orphans(cfg, wh, name, lo, hi)
            else:
                orphaned = {}
            results.append(LoadResult(name, kind, rows, time.perf_counter() - t0, took, orphaned))
    return results


def keys(cfg: ProjectConfig, name: str) -> str:
    """What identifies a vault table's rows, for its documentation: hash key <- business key, or parent."""
    v = cfg.vault
    if name in v.hubs:
        h = v.hubs[name]
        return f"{hub_hk(name, h)} <- md5({', '.join(f'{h.source}.{c}' for c in h.key.values())})"
    if name in v.links:
        link = v.links[name]
        return f"{link.hash_key or 'hk_' + name} <- " + " + ".join(
            f"{hub_hk(h, v.hubs[h])}" for h in link.hubs)
    s = v.satellites[name]
    return f"{parent_hk(cfg, s.parent)} ({s.parent}), effective_from <- {s.source}.{s.effective or '_time'}"


def status(cfg: ProjectConfig, wh: Warehouse) -> list[tuple]:
    """(table, kind, keys, rows, last load, sources' last ingest taken, missing hub keys) per vault table."""
    out = []
    for name, (kind, _, _) in tables(cfg, wh).items():
        if wh.table_columns(name) is None:
            out.append((name, kind, keys(cfg, name), 0, None, None, ""))
            continue
        last = wh.fetch(f"SELECT max(loaded_at), max(last_ingest) FROM {wh.q(LOG)} WHERE vault_table = {{{{ t }}}}",
                        {"t": name}).rows[0] if wh.table_columns(LOG) else (None, None)
        miss = orphans(cfg, wh, name) if kind == "link" else {}
        out.append((name, kind, keys(cfg, name), _count(wh, name), last[0], last[1],
                    ", ".join(f"{h}: {n:,}" for h, n in miss.items() if n) or ("none" if kind == "link" else "")))
    return out


def reset(cfg: ProjectConfig, wh: Warehouse, names: list[str] | None = None) -> list[str]:
    """Drop vault tables (all, or ``names``) and their load marks: the next load rebuilds them from the raw tables."""
    plan = tables(cfg, wh)
    names = names or list(plan)
    for n in names:
        if n not in plan:
            raise UserError(f"unknown vault table '{n}' (tables: {', '.join(plan)})")
    with wh.transaction():
        for n in names:
            wh.drop_table(n)
            if wh.table_columns(LOG) is not None:
                wh.delete_rows(LOG, "vault_table = {{ t }}", {"t": n})
    return names
