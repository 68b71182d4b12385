"""Readers that turn files and tables into validated rows, with every bad row kept in a rejects table."""

from .ingest import ingest
from .log import IngestResult
from .rejects import list_rejects, replay_rejects

__all__ = ["IngestResult", "ingest", "list_rejects", "replay_rejects"]
