"""What every part of the project file shares: the strict model base, names, problems collected per model,
and small parsers (sizes, decimal types, time zones, header names)."""

from __future__ import annotations

import re
from datetime import date, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator

PROJECT_FILE = "eventmart.yml"

NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")

TYPES = ("string", "int", "float", "bool", "timestamp", "date")

RESERVED = ("_time", "_loaded_at")


def _at(sub: str, msg: str) -> ValueError:
    """A model-level error that points at the sub-key ``sub`` (dotted) of the model."""
    return ValueError(f"@{sub}@ {msg}")

_SEP = "\x1e"  # between the problems one validator found (pydantic keeps one error per validator)


class _Problems:
    """Independent checks of one model, every failure kept: `check` lists them all, not the first.

        with _Problems() as bad:
            if ...: bad.add("key", "...")
    """

    def __init__(self) -> None:
        self.found: list[str] = []

    def add(self, sub: str | None, msg: str) -> None:
        self.found.append(f"@{sub}@ {msg}" if sub else msg)

    def __enter__(self) -> _Problems:
        return self

    def __exit__(self, et: Any, e: Any, tb: Any) -> None:
        if et is not None and issubclass(et, ValueError):  # a helper's own check (a name, a zone): one more
            self.found.append(str(e))
        if self.found:
            raise ValueError(_SEP.join(self.found)) from None


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    @field_validator("*", mode="before")
    @classmethod
    def _dates_as_text(cls, v: Any) -> Any:
        # YAML reads an unquoted 2019-09-24 as a date; the models take times as ISO text
        if isinstance(v, datetime | date):
            return v.isoformat()
        return v

_TZ_RE = re.compile(r"^[A-Za-z0-9_+\-]+(/[A-Za-z0-9_+\-]+)*$")


def check_timezone(v: str) -> str:
    """An IANA zone name (validated, so it may be written into SQL as a literal)."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    if not _TZ_RE.match(v):
        raise ValueError(f"'{v}' is not a time zone name; use an IANA name such as Europe/Moscow")
    try:
        ZoneInfo(v)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"unknown time zone '{v}'; use an IANA name such as Europe/Moscow or UTC") from None
    return v


def normal_name(text: str) -> str:
    """A header cell as a column name: 'Max Temp (C)' -> 'max_temp_c', '2nd value' -> 'c_2nd_value'."""
    out = re.sub(r"[^0-9A-Za-z]+", "_", text.strip()).strip("_").lower() or "column"
    return out if NAME_RE.match(out) else f"c_{out}"


def match_header(header: list[str], declared: list[str]) -> tuple[list[str], list[str]]:
    """The header with each declared column's cell renamed to it — written exactly, or as its normal name
    ('Max Temp' for max_temp) — and the declared columns it lacks."""
    out, missing = list(header), []
    normal: dict[str, list[int]] = {}
    for i, h in enumerate(header):
        normal.setdefault(normal_name(h), []).append(i)
    for c in declared:
        if c in header:
            continue
        hits = [i for i in normal.get(c, []) if header[i] not in declared]
        if len(hits) == 1:
            out[hits[0]] = c
        else:
            missing.append(c)
    return out, missing


def _check_name(v: str) -> str:
    if not NAME_RE.match(v):
        raise ValueError(f"'{v}' is not a valid name; use letters, digits and _ (not starting with a digit)")
    return v

_DECIMAL_RE = re.compile(r"^\s*decimal\s*\(\s*(\d+)\s*,\s*(\d+)\s*\)\s*$", re.I)


def decimal_spec(t: str) -> tuple[int, int] | None:
    """(precision, scale) of a `decimal(P,S)` column type, else None."""
    m = _DECIMAL_RE.match(t)
    return (int(m.group(1)), int(m.group(2))) if m else None


def did_you_mean(word: str, choices: list[str] | set[str] | dict) -> str:
    """"; did you mean 'x'?" for a near miss, else ""."""
    import difflib

    hits = difflib.get_close_matches(str(word), [str(c) for c in choices], n=1, cutoff=0.6)
    return f"; did you mean '{hits[0]}'?" if hits else ""

_SIZE_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)\s*$", re.I)

_SIZE_UNITS = {"b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12, "kib": 2**10, "mib": 2**20,
               "gib": 2**30, "tib": 2**40}


def parse_size(text: str) -> int:
    """'64MB', '1.5GiB' -> bytes. Raises ValueError when unusable."""
    m = _SIZE_RE.match(str(text))
    if not m:
        raise ValueError(f"'{text}' is not a size like 512MB, 8GB or 16GiB")
    return int(float(m.group(1)) * _SIZE_UNITS[m.group(2).lower()])
