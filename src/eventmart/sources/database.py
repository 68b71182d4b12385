"""A PostgreSQL table as a source (the seed's ``log_raw``): rows stream out with COPY and are checked as text."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator

from psycopg import sql

from ..config import CsvOptions, Source
from ..errors import InputError
from ..warehouse.base import quote_ident as q
from ..warehouse.pgconnect import pg_connect
from .chunks import Chunk
from .csv_chunks import csv_chunks


def _check(pg, src: Source, name: str) -> None:
    parts = (src.table or "").split(".")
    exists = pg.execute("SELECT to_regclass(%s)", (".".join(q(p) for p in parts),)).fetchone()[0]
    if exists is None:
        raise InputError(f"sources.{name}.table: table {src.table} does not exist in the source database")
    have = {r[0] for r in pg.execute(sql.SQL("SELECT * FROM {} LIMIT 0").format(sql.Identifier(*parts))).description
            or []}
    missing = [c for c in src.columns if c not in have]
    if missing:
        raise InputError(f"sources.{name}: table {src.table} lacks declared column(s) {', '.join(missing)}")


def _url(src: Source, name: str) -> str:
    if not src.url:
        raise InputError(f"sources.{name}.url: a postgres source needs a connection URL; use url: ${{MY_PG_URL}}")
    return src.url


def check_table(src: Source, name: str) -> None:
    """The source database answers and has the table with the declared columns."""
    with pg_connect(_url(src, name)) as pg:
        _check(pg, src, name)


def postgres_chunks(src: Source, name: str) -> Iterator[Chunk]:
    """The table's rows as CSV text (COPY), read in chunks like a file: every value checked the same way."""
    url = _url(src, name)
    parts = (src.table or "").split(".")
    ident = sql.Identifier(*parts)
    cols = sql.SQL(", ").join(sql.SQL("{}::text").format(sql.Identifier(c)) for c in src.columns)
    fd, tmp = tempfile.mkstemp(suffix=".csv", prefix="eventmart-pg-")
    os.close(fd)
    try:
        with pg_connect(url) as pg:
            _check(pg, src, name)
            copy = sql.SQL("COPY (SELECT {} FROM {}) TO STDOUT (FORMAT csv, HEADER true)").format(cols, ident)
            with pg.cursor() as cur, cur.copy(copy) as cp, open(tmp, "wb") as f:
                for chunk in cp:
                    f.write(chunk)
        as_csv = src.model_copy(update={"csv": CsvOptions()})
        with open(tmp, "rb") as f:
            yield from csv_chunks(f, f"postgres:{src.table}", as_csv)
    finally:
        os.unlink(tmp)
