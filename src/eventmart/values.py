"""How a value from the warehouse is written out (CSV, JSON, a terminal table): numbers exactly as stored.

Integers stay integers at any size (2^63 - 1 is not 9.223372036854776e+18), decimals keep their digits (a
PostgreSQL or DECIMAL sum is 4426.0, never a float near it), floats print their shortest exact form, times ISO.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Sequence
from datetime import date, datetime, time
from decimal import Decimal
from typing import Any


def decimal_text(d: Decimal) -> str:
    """Positional notation (no exponent), as the number is stored: Decimal('1E+3') -> '1000'."""
    if not d.is_finite():
        return str(d)
    return format(d, "f")


def time_text(v: datetime | date | time) -> str:
    if isinstance(v, datetime):
        return v.isoformat(sep=" ")
    return v.isoformat()


def text(v: Any) -> str:
    """A CSV cell: empty for NULL, numbers exact, times ISO."""
    if v is None:
        return ""
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, Decimal):
        return decimal_text(v)
    if isinstance(v, float):
        return "" if math.isnan(v) else repr(v)
    if isinstance(v, (datetime, date, time)):
        return time_text(v)
    return str(v)


def json_value(v: Any) -> str:
    """One JSON value, numbers written with every digit they have (JSON numbers have no size limit)."""
    if v is None:
        return "null"
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, Decimal):
        return decimal_text(v) if v.is_finite() else "null"
    if isinstance(v, float):
        return repr(v) if math.isfinite(v) else "null"
    if isinstance(v, (datetime, date, time)):
        return json.dumps(time_text(v))
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(json_value(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{json.dumps(str(k), ensure_ascii=False)}: {json_value(x)}" for k, x in v.items()) + "}"
    return json.dumps(v if isinstance(v, str) else str(v), ensure_ascii=False)


def json_records(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """Rows as a JSON array of objects, one key per column."""
    keys = [json.dumps(c, ensure_ascii=False) for c in columns]
    return "[" + ", ".join("{" + ", ".join(f"{k}: {json_value(v)}" for k, v in zip(keys, r, strict=True)) + "}"
                           for r in rows) + "]"


def export_lines(batches: Iterable[tuple[Sequence[str], Sequence[Sequence[Any]]]], fmt: str) -> Iterable[str]:
    """A result's batches as the text of a file: CSV with a header, or JSON Lines (an object per row)."""
    import csv
    import io

    header = None
    for cols, rows in batches:
        if fmt == "jsonl":
            keys = [json.dumps(c, ensure_ascii=False) for c in cols]
            yield "".join("{" + ", ".join(f"{k}: {json_value(v)}" for k, v in zip(keys, r, strict=True)) + "}\n"
                          for r in rows)
            continue
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        if header is None:
            header = list(cols)
            w.writerow(header)
        w.writerows([text(v) for v in r] for r in rows)
        yield buf.getvalue()
