"""Connecting to PostgreSQL without ever showing a credential: a URL that does not parse is named without any of
its pieces, and a server's message is shown only when it holds no credential (found by parsing the URL, never by
masking text inside other words). Used by the warehouse, pg_dump/pg_restore and PostgreSQL sources."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import psycopg

from ..errors import UserError


def redact(url: str) -> str:
    """A connection URL without its password, for messages."""
    try:
        info = psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.ProgrammingError:
        return "<postgres url>"
    return f"postgresql://{info.get('user', '')}@{info.get('host', '')}:{info.get('port', '5432')}/{info.get('dbname', '')}"


def _secrets(url: str, extra: Sequence[str] = ()) -> list[str]:
    """Every credential a URL may carry — the parsed password, and whatever sits where a password would be in the
    URL or keyword form even when it does not parse — with its words of 4+ characters (a message may echo a part)."""
    found = {x for x in extra if x} | set(re.findall(r"://[^:/\s]*:(.+)@[^@]*$", url)) | set(re.findall(r"password\s*=\s*'?([^'\s]+)", url))
    try:
        pw = psycopg.conninfo.conninfo_to_dict(url).get("password")
        if pw:
            found.add(str(pw))
    except psycopg.Error:
        pass
    out = set()
    for secret in found:
        out.add(secret)
        out.update(w for w in re.split(r"[\s:/@%?=&]+", secret) if len(w) >= 4)
    return sorted((s for s in out if s), key=len, reverse=True)


def safe_message(text: str, url: str, extra: Sequence[str] = ()) -> str | None:
    """``text`` (a library's or the server's message) with the URL itself replaced, or None when it still holds
    any credential or a word of one — the caller then says what happened without it. Nothing is masked inside
    other words ('p' in 'accepting' stays), and no part of a credential is ever shown."""
    if url:
        text = text.replace(url, "<postgres url>")
    for secret in _secrets(url, extra):
        if re.search(rf"(?<![A-Za-z0-9]){re.escape(secret)}(?![A-Za-z0-9])", text):
            return None
    return text


def pg_connect(url: str, **kw: Any) -> psycopg.Connection:
    try:
        psycopg.conninfo.conninfo_to_dict(url)
    except psycopg.Error:  # libpq's parse errors quote the URL's pieces: never show them
        raise UserError("the PostgreSQL URL is not valid; write it as postgresql://USER:PASSWORD@HOST:PORT/DB, "
                        "percent-encoding special characters in the user and password (%40 for @, %2F for /, %20 "
                        "for a space, %25 for %)") from None
    try:
        return psycopg.connect(url, autocommit=True, **{"options": "-c TimeZone=UTC", **kw})
    except psycopg.Error as e:
        first = str(e).strip().splitlines()[-1] if str(e).strip() else "connection failed"
        said = safe_message(first, url)
        why = f": {said}" if said else " (the server's message is not shown: it quoted the credentials)"
        raise UserError(f"cannot connect to PostgreSQL at {redact(url)}{why}; check the URL and that the server "
                        "runs") from None
