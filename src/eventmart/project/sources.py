"""The facade's commands about sources: ingest (and re-opening the mart windows late rows fall in), the ingest
log, rejects, Kafka (produce, lag) and the data vault."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from ..errors import UserError
from ..warehouse import QueryResult
from .core import _locked

if TYPE_CHECKING:
    from ..sources import IngestResult


class SourceCommands:
    """Mixed into Project (project/__init__.py): ``self`` is the project."""

    # --- commands -------------------------------------------------------------------------------
    @_locked
    def ingest(self, source: str, files: list[str] | None = None,
               progress: Callable[[str, int, int], None] | None = None, force: bool = False) -> IngestResult:
        """Load the source's files (or ``files``); files unchanged since they were loaded are skipped unless
        ``force``. ``progress(file, bytes done, bytes in all)`` is called as the files are read."""
        from ..sources import ingest
        from ..sources.files import resolve_files

        src = self.source(source)
        dims = [d.name for m in self.config.marts.values() if m.from_ == source for d in m.dimensions]
        if src.kafka is not None and not files:
            from ..sources.kafka import consume

            return consume(self.warehouse, source, src, drain=True, dimensions=dims,
                           on_batch=lambda res, spans: self.reopen(source, spans, res.id))
        if src.s3 is not None and not files:
            from ..sources.s3 import ingest_objects

            res = ingest_objects(self.warehouse, source, src, self.dir, progress, force, dims)
        else:
            paths = [] if src.format == "postgres" else resolve_files(src, source, files, self.dir)
            res = ingest(self.warehouse, source, src, paths, progress, force, dims)
        if res.loaded and res.min_time is not None:  # late rows re-open the windows they belong to
            self.reopen(source, [(res.min_time, res.max_time)], res.id)
        return res

    def reopen(self, source: str, spans: list[tuple[datetime, datetime]], ingest: int) -> dict[str, int]:
        """After rows of ``source`` arrived (ingest ``ingest``, event times in ``spans``): mark the mart windows
        they fall in as stale (marts that read the source), and those of the rows they join (SQL marts that
        `join` it), so the scheduler recomputes what changed — a lookback driven by what arrived. Returns
        mart -> windows re-opened."""
        from ..ledger import invalidate

        lo, hi = min(s for s, _ in spans), max(e for _, e in spans)
        out = {}
        wh = self.warehouse
        for name, m in self.config.marts.items():
            if m.from_ == source:
                times = [lo, hi]
            elif m.joins and source in m.joins and wh.table_columns(m.from_) is not None:
                key = wh.q(m.joins[source])
                # the rows they join: their time is the mart's
                row = wh.fetch(f"SELECT min(d._time), max(d._time) FROM {wh.q(m.from_)} d WHERE {key} IN "
                               f"(SELECT {key} FROM {wh.q(source)} WHERE _ingest = {{{{ i }}}} AND _time >= {{{{ lo }}}} "
                               "AND _time <= {{ hi }})", {"i": ingest, "lo": lo, "hi": hi}).rows[0]
                if row[0] is None:
                    continue
                times = list(row)
            else:
                continue
            n = invalidate(wh, name, times, span=True)
            if n:
                out[name] = n
        return out

    @_locked
    def ingests(self, source: str | None = None, limit: int = 50) -> QueryResult:
        """The ingest log, newest first: id, files, rows, the time span they cover, status."""
        from ..sources.log import list_ingests

        if source:
            self.source(source)
        return QueryResult(*list_ingests(self.warehouse, source, limit))

    @_locked
    def undo_ingest(self, ingest_id: int):
        """Remove exactly the rows of one ingest and re-open the mart windows they were in (one transaction)."""
        from ..marts import marts_reading
        from ..sources.log import undo_ingest

        marts = {s: marts_reading(self.config, s) for s in self.config.sources}
        # windows start on grain boundaries (local midnights: whole quarter hours in every zone)
        step = math.gcd(900, *(m.grain_seconds for m in self.config.marts.values()))
        return undo_ingest(self.warehouse, int(ingest_id), marts, step)

    @_locked
    def bad_files(self, source: str | None = None) -> QueryResult:
        """Files of the sources that could not be read at all (source, file, reason, when), newest first."""
        from ..sources.bad_files import listing

        if source:
            self.source(source)
        return QueryResult(*listing(self.warehouse, source))

    @_locked
    def rejects(self, source: str, limit: int | None = None) -> QueryResult:
        self.source(source)
        from ..sources import list_rejects

        cols, rows = list_rejects(self.warehouse, source, limit)
        return QueryResult(cols, rows)

    @_locked
    def replay_rejects(self, source: str) -> IngestResult:
        from ..sources import replay_rejects

        return replay_rejects(self.warehouse, source, self.source(source))

    # --- Kafka -------------------------------------------------------------------------------------------
    def produce(self, source: str, files: list[str], topic: str | None = None) -> int:
        """Publish JSON Lines files to a Kafka source's topic (keyed by the source's key)."""
        from ..sources.kafka import produce

        src = self.source(source)
        if src.kafka is None:
            raise UserError(f"source {source} is not a Kafka source (it has no `kafka:` section)")
        return produce(source, src, files, topic)

    @_locked
    def lag(self, source: str) -> QueryResult:
        """Per partition of a Kafka source: the warehouse's next offset, the partition's end, the lag."""
        from ..sources.kafka import lag

        src = self.source(source)
        if src.kafka is None:
            raise UserError(f"source {source} is not a Kafka source")
        return QueryResult(["partition", "next_offset", "end", "lag"], lag(self.warehouse, source, src))

    # --- the data vault -----------------------------------------------------------------------------
    @_locked
    def vault_load(self, tables: list[str] | None = None):
        """Load hubs, links and satellites from what the raw tables gained since their last load (idempotent)."""
        from ..vault import load

        return load(self.config, self.warehouse, tables)

    @_locked
    def vault_status(self) -> QueryResult:
        from ..vault import status

        return QueryResult(["table", "kind", "keys", "rows", "last_load", "last_ingest", "missing_hub_keys"],
                           status(self.config, self.warehouse))

    @_locked
    def vault_reset(self, tables: list[str] | None = None) -> list[str]:
        """Drop vault tables (all, or some) and their load marks: the next load rebuilds them."""
        from ..vault import reset

        return reset(self.config, self.warehouse, tables)
