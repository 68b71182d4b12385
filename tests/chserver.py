"""A ClickHouse server for the tests: chDB's engine (ClickHouse 26.x in-process) behind ClickHouse's HTTP interface.

No modern clickhouse-server can be installed here (Debian's is 18.16, older than what clickhouse-connect talks
to), so this process serves a chDB folder over HTTP on loopback the way ClickHouse's HTTP interface does: the SQL in
the ``query`` parameter or the body, data for ``INSERT … FORMAT x`` in the body (compressed or not), typed query
parameters as ``param_<name>``, settings as URL parameters, ``database``, HTTP basic auth or X-ClickHouse-User/
-Key headers, errors as status 500 with ``Code: N. DB::Exception: …`` and X-ClickHouse-Exception-Code, and the
X-ClickHouse-Summary/-Format/-Timezone headers. clickhouse-connect's HTTP client — its protocol code, Native
format, compression, parameter binding — runs unchanged against it. What it is not: the server's own network
layer, users and grants, sessions (each request stands alone), or a cluster.

    python tests/chserver.py --path DIR --port PORT [--user U --password P]
"""

from __future__ import annotations

import argparse
import base64
import gzip
import json
import os
import re
import sys
import tempfile
import threading
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qsl, urlsplit

# URL parameters that are the transport's, not settings
TRANSPORT = {"query", "database", "default_format", "query_id", "session_id", "session_timeout", "session_check",
             "compress", "decompress", "enable_http_compression", "wait_end_of_query", "user", "password",
             "quota_key", "send_progress_in_http_headers", "http_headers_progress_interval_ms",
             "client_protocol_version", "role"}
_FORMAT = re.compile(r"\s+FORMAT\s+(\w+)\s*;?\s*$", re.I | re.S)
_INSERT = re.compile(r"^\s*INSERT\s+INTO\s+(.+?)\s+FORMAT\s+(\w+)\s*$", re.I | re.S)
_BODY_INSERT = re.compile(rb"^\s*(INSERT\s.+?\bFORMAT\s+\w+)[ \t]*\r?\n", re.I | re.S)
_READS = re.compile(r"^\s*(SELECT|WITH|DESCRIBE|DESC|SHOW|EXISTS|EXPLAIN)\b", re.I)


def _decompress(body: bytes, encoding: str | None) -> bytes:
    if not encoding or not body:
        return body
    if encoding == "gzip":
        return gzip.decompress(body)
    if encoding == "deflate":
        return zlib.decompress(body)
    if encoding == "lz4":
        import lz4.frame

        return lz4.frame.decompress(body)
    if encoding == "zstd":
        try:
            from compression import zstd  # type: ignore[import-not-found]
        except ImportError:
            from backports import zstd  # clickhouse-connect's own dependency
        return zstd.decompress(body)
    raise ValueError(f"unsupported Content-Encoding {encoding}")


def _literal(v: str) -> str:
    return "'" + v.replace("\\", "\\\\").replace("'", "\\'") + "'"


class Engine:
    """One chDB session; requests take turns (chDB runs one query at a time per session)."""

    def __init__(self, path: str):
        from chdb import session

        self.session = session.Session(path)
        self.lock = threading.Lock()

    def run(self, sql: str, fmt: str, params: dict[str, str], settings: dict[str, str], database: str | None,
            data: bytes | None) -> bytes:
        with self.lock:
            s = self.session
            s.query(f"USE {database or 'default'}")
            m = _INSERT.match(sql) if data is not None else None
            if m:  # the body is the data: read it as a file of that format
                fd, tmp = tempfile.mkstemp(prefix="chserver-")
                with os.fdopen(fd, "wb") as f:
                    f.write(data)
                try:
                    # `*`, in the data's own column order (the INSERT's column list): naming columns would pick
                    # file()'s virtual columns (_time, _path, …) over the data's
                    sql = f"INSERT INTO {m.group(1)} SELECT * FROM file({_literal(tmp)}, {m.group(2)})"
                    return self._with_settings(sql, fmt, params, settings)
                finally:
                    os.unlink(tmp)
            return self._with_settings(sql, fmt, params, settings)

    def _with_settings(self, sql: str, fmt: str, params: dict[str, str], settings: dict[str, str]) -> bytes:
        s = self.session
        if settings.get("readonly", "0") != "0" and not _READS.match(sql):
            # what the server answers; a SET readonly here could not be undone for the next request
            raise RuntimeError("Code: 164. DB::Exception: Cannot execute query in readonly mode. (READONLY)")
        if settings and _READS.match(sql):
            # a read carries its settings in a SETTINGS clause (before a trailing FORMAT), scoped to it alone
            clause = ", ".join(f"{k} = {_literal(v)}" for k, v in settings.items())
            fm = _FORMAT.search(sql)
            body, tail = (sql[:fm.start()], sql[fm.start():]) if fm else (sql, "")
            return s.query(f"{body}\nSETTINGS {clause}{tail}", fmt, params=params).bytes()
        saved = {}
        if settings:
            names = ", ".join(_literal(k) for k in settings)
            for line in s.query(f"SELECT name, value FROM system.settings WHERE name IN ({names})",
                                "JSONEachRow").bytes().splitlines():
                row = json.loads(line)
                saved[row["name"]] = row["value"]
            for k, v in settings.items():
                s.query(f"SET {k} = {_literal(v)}")
        try:
            return s.query(sql, fmt, params=params).bytes()
        finally:
            for k, v in saved.items():
                s.query(f"SET {k} = {_literal(v)}")


def make_handler(engine: Engine, user: str | None, password: str | None):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args) -> None:  # quiet
            pass

        def _auth_ok(self) -> bool:
            if user is None:
                return True
            got_user = self.headers.get("X-ClickHouse-User")
            got_pw = self.headers.get("X-ClickHouse-Key")
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Basic "):
                got_user, _, got_pw = base64.b64decode(auth[6:]).decode().partition(":")
            return got_user == user and got_pw == password

        def _reply(self, code: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(code)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self) -> None:  # noqa: N802
            if urlsplit(self.path).path in ("/ping", "/"):
                if not urlsplit(self.path).query:
                    self._reply(200, b"Ok.\n")
                    return
            self._handle(b"")

        def do_POST(self) -> None:  # noqa: N802
            if "chunked" in self.headers.get("Transfer-Encoding", ""):  # clickhouse-connect streams inserts
                parts = []
                while (size := int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)):
                    parts.append(self.rfile.read(size))
                    self.rfile.readline()
                self.rfile.readline()
                body = b"".join(parts)
            else:
                n = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(n) if n else b""
            self._handle(body)

        def _handle(self, body: bytes) -> None:
            if not self._auth_ok():
                self._reply(516, b"Code: 516. DB::Exception: default: Authentication failed. (AUTHENTICATION_FAILED)\n",
                            {"X-ClickHouse-Exception-Code": "516"})
                return
            qs = dict(parse_qsl(urlsplit(self.path).query, keep_blank_values=True))
            try:
                body = _decompress(body, self.headers.get("Content-Encoding"))
                sql = qs.get("query")
                data = None
                if sql is None:
                    head = _BODY_INSERT.match(body)
                    if head:  # `INSERT … FORMAT x` then the data, in one body
                        sql, data = head.group(1).decode(), body[head.end():]
                    else:
                        sql = body.decode()
                elif body:
                    data = body
                params = {k[6:]: v for k, v in qs.items() if k.startswith("param_")}
                settings = {k: v for k, v in qs.items() if k not in TRANSPORT and not k.startswith("param_")}
                fm = _FORMAT.search(sql)
                fmt = fm.group(1) if fm else qs.get("default_format", "TabSeparated")
                if os.environ.get("CHSERVER_LOG"):
                    print(repr(sql[:300]), params, settings, len(data or b""), file=sys.stderr, flush=True)
                out = engine.run(sql, fmt, params, settings, qs.get("database"), data)
            except Exception as e:  # the engine's message, as ClickHouse sends it
                text = str(e).strip() or type(e).__name__
                m = re.search(r"Code: (\d+)", text)
                self._reply(500, (text + "\n").encode(), {"X-ClickHouse-Exception-Code": m.group(1) if m else "1"})
                return
            summary = {"read_rows": "0", "read_bytes": "0", "written_rows": "0", "written_bytes": "0",
                       "total_rows_to_read": "0", "result_rows": "0", "result_bytes": str(len(out)),
                       "elapsed_ns": "0"}
            self._reply(200, out, {"X-ClickHouse-Summary": json.dumps(summary), "X-ClickHouse-Format": fmt,
                                   "X-ClickHouse-Timezone": "UTC", "X-ClickHouse-Query-Id": qs.get("query_id", ""),
                                   "Content-Type": "application/octet-stream"})

    return Handler


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--path", required=True)
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--user")
    ap.add_argument("--password", default=os.environ.get("CHSERVER_PASSWORD"))
    args = ap.parse_args()
    server = ThreadingHTTPServer(("127.0.0.1", args.port), make_handler(Engine(args.path), args.user, args.password))
    print("ready", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
