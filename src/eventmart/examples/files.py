"""Writing an example's generated data the way exports look."""

from __future__ import annotations

from pathlib import Path

import duckdb
import pyarrow as pa


def write_csv(table: pa.Table, path: Path) -> None:
    """A CSV with a header, the way an export from a database looks."""
    con = duckdb.connect()
    con.register("t", table)
    con.execute("COPY t TO $p (FORMAT csv, HEADER true)", {"p": str(path)})
    con.close()
