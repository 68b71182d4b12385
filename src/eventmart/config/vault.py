"""`vault:` — a data vault declared over the sources: hubs, links, satellites."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator

from .base import Strict


class Hub(Strict):
    """One business entity: its business key(s), taken from a source. ``key`` maps the hub's key column names to
    the source's columns (a list: the same names)."""

    source: str  # the source its business keys come from
    key: dict[str, str]  # hub column: source column (or a list of the source's columns, same names)
    hash_key: str | None = None  # the hash key's column name (default hk_<hub>)
    record_source: str | None = None  # written into record_source (default: the source's name)

    @field_validator("key", mode="before")
    @classmethod
    def _key_list(cls, v: Any) -> Any:
        if isinstance(v, str):
            return {v: v}
        return {k: k for k in v} if isinstance(v, list) else v


class Link(Strict):
    """A relationship between hubs seen in a source: for each hub, the source's columns holding its business key
    (in the hub's key order). Rows where any of them is empty are not relationships and are skipped."""

    source: str  # the source the relationship is seen in
    hubs: dict[str, list[str]]  # hub: the source's columns holding its business key
    hash_key: str | None = None  # the hash key's column name (default hk_<link>)
    record_source: str | None = None  # written into record_source (default: the source's name)

    @field_validator("hubs", mode="before")
    @classmethod
    def _one_column(cls, v: Any) -> Any:
        return {h: [c] if isinstance(c, str) else c for h, c in v.items()} if isinstance(v, dict) else v


class Satellite(Strict):
    """Descriptive attributes of a hub or link over time: a row only when they change (hashdiff), placed at the
    record's effective time (default: the source's event time), so late and out-of-order records land where
    they belong."""

    parent: str  # a hub or a link
    source: str  # the source the attributes come from
    attributes: list[str]  # the source's columns kept over time
    key: list[str] | None = None  # the source's columns with the parent's business key (default: the parent's own)
    effective: str | None = None  # a timestamp column of the source (default: its event time)
    record_source: str | None = None  # written into record_source (default: the source's name)


class Vault(Strict):
    hubs: dict[str, Hub] = {}  # business keys, by name
    links: dict[str, Link] = {}  # relations between hubs, by name
    satellites: dict[str, Satellite] = {}  # attributes of a hub or link over time, by name
