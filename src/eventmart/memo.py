"""Results of pure functions of the project file kept between processes, so that a command started often (a
minute's `eventmart run` from cron) does not parse again what an earlier one checked and compiled: the project
file's expression checks and the marts' SQL. sqlglot is then not even imported.

A value is found by a hash of everything it depends on: the caller's material, and the code that computed it
(the size and modification time of every module of eventmart and of sqlglot's version file), so an upgrade or an
edited checkout starts afresh. Values are JSON in one small file each under ``$EVENTMART_CACHE_DIR`` (default
``$XDG_CACHE_HOME/eventmart``, or ``~/.cache/eventmart``; ``off`` turns it off). Callers hand in expressions and
column names, never a warehouse's settings; where an expression holds a value from the environment (``${VAR}``,
maybe a secret) they keep nothing of it, not even its hash, so no secret reaches the disk.
Only successes are kept: a bad expression is parsed, and reported, every time. A cache that cannot be read or
written is no cache: the value is computed as before."""

from __future__ import annotations

import hashlib
import json
import os
import threading
from importlib.util import find_spec
from pathlib import Path
from typing import Any

_CODE: str | None = None


def _code() -> str:
    """What the cached values were computed by: every module of this package and sqlglot's installed version."""
    global _CODE
    if _CODE is None:
        h = hashlib.sha256()
        here = Path(__file__).parent
        for root, dirs, files in os.walk(here):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for f in sorted(files):
                if f.endswith(".py"):
                    st = os.stat(os.path.join(root, f))
                    h.update(f"{root[len(str(here)):]}/{f}:{st.st_size}:{st.st_mtime_ns};".encode())
        spec = find_spec("sqlglot")
        if spec and spec.origin:
            for name in ("_version.py", "__init__.py"):
                p = Path(spec.origin).parent / name
                if p.exists():
                    st = p.stat()
                    h.update(f"sqlglot/{name}:{st.st_size}:{st.st_mtime_ns};".encode())
                    break
        _CODE = h.hexdigest()
    return _CODE


def _dir() -> Path | None:
    where = os.environ.get("EVENTMART_CACHE_DIR")
    if where == "off":
        return None
    if where:
        return Path(where)
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "eventmart"


def _path(kind: str, material: Any) -> Path | None:
    d = _dir()
    if d is None:
        return None
    h = hashlib.sha256(_code().encode())
    h.update(json.dumps([kind, material], sort_keys=True, default=str).encode())
    return d / f"{kind}-{h.hexdigest()[:40]}.json"


def get(kind: str, material: Any) -> Any | None:
    """The value kept for ``material`` (JSON-able), or None."""
    p = _path(kind, material)
    if p is None:
        return None
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def put(kind: str, material: Any, value: Any) -> None:
    """Keep ``value`` (JSON-able) for ``material``: written whole or not at all (a reader never sees half)."""
    p = _path(kind, material)
    if p is None:
        return
    try:
        p.parent.mkdir(parents=True, exist_ok=True)
        tmp = p.with_name(f".{p.name}.{os.getpid()}.{threading.get_ident()}.tmp")  # serve's threads write too
        tmp.write_text(json.dumps(value), encoding="utf-8")
        os.replace(tmp, p)
    except OSError:
        pass
