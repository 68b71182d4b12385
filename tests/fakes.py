"""Loopback stand-ins for the Telegram Bot API, Slack/webhook receivers and an SMTP server: real protocols, strict
checks.

The Telegram stand-in checks what the real Bot API requires of these methods (path /bot<token>/<method>,
chat_id, text length, HTML parse mode with only the supported tags, photos as multipart file parts
named by attach://, at most 10 MB each, 2-10 per media group) and answers like it, including 429
with parameters.retry_after. Scripted failures let tests exercise retries.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.parser import BytesParser
from html.parser import HTMLParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs

TOKEN_RE = re.compile(r"^/bot(\d+:[A-Za-z0-9_-]{35})/(\w+)$")
TELEGRAM_TAGS = {"b", "strong", "i", "em", "u", "ins", "s", "strike", "del", "a", "code", "pre", "tg-spoiler",
                 "span", "blockquote"}


class _TagCheck(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.bad: list[str] = []
        self.text = []

    def handle_starttag(self, tag, attrs):
        if tag not in TELEGRAM_TAGS:
            self.bad.append(tag)

    def handle_data(self, data):
        self.text.append(data)


def parse_form(headers, body: bytes) -> tuple[dict[str, str], dict[str, bytes]]:
    ctype = headers.get("Content-Type", "")
    if ctype.startswith("application/x-www-form-urlencoded"):
        return {k: v[0] for k, v in parse_qs(body.decode()).items()}, {}
    if ctype.startswith("application/json"):
        return {k: (v if isinstance(v, str) else json.dumps(v)) for k, v in json.loads(body).items()}, {}
    if ctype.startswith("multipart/form-data"):
        msg = BytesParser(policy=policy.default).parsebytes(f"Content-Type: {ctype}\r\n\r\n".encode() + body)
        fields, files = {}, {}
        for part in msg.iter_parts():
            name = part.get_param("name", header="content-disposition")
            if part.get_filename():
                files[name] = part.get_payload(decode=True)
            else:
                fields[name] = part.get_content()
        return fields, files
    raise ValueError(f"unsupported content type {ctype!r}")


class Recorder(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler):
        super().__init__(("127.0.0.1", 0), handler)
        self.calls: list[dict] = []
        self.script: list[tuple[int, dict, dict]] = []  # (status, body, headers) answered before normal ones
        self.lock = threading.Lock()
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"

    def next_scripted(self):
        with self.lock:
            return self.script.pop(0) if self.script else None

    def close(self) -> None:
        self.shutdown()
        self.server_close()


class _Handler(BaseHTTPRequestHandler):
    def log_message(self, *a):  # quiet
        pass

    def reply(self, status: int, body, headers: dict | None = None) -> None:
        raw = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json" if not isinstance(body, bytes) else "text/plain")
        for k, v in (headers or {}).items():
            self.send_header(k, str(v))
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def body(self) -> bytes:
        return self.rfile.read(int(self.headers.get("Content-Length", 0)))


class TelegramHandler(_Handler):
    def do_POST(self):
        raw = self.body()
        m = TOKEN_RE.match(self.path)
        if not m:
            return self.reply(404, {"ok": False, "error_code": 404, "description": "Not Found"})
        token, method = m.groups()
        scripted = self.server.next_scripted()
        call = {"method": method, "token": token}
        self.server.calls.append(call)
        if scripted:
            call["scripted"] = scripted[0]
            return self.reply(*scripted)
        try:
            fields, files = parse_form(self.headers, raw)
        except ValueError as e:
            return self.reply(400, {"ok": False, "error_code": 400, "description": str(e)})
        call.update(fields=fields, files={k: len(v) for k, v in files.items()}, png={k: v[:8] for k, v in files.items()})
        error = self.check(method, fields, files)
        if error:
            call["error"] = error
            return self.reply(400, {"ok": False, "error_code": 400, "description": f"Bad Request: {error}"})
        return self.reply(200, {"ok": True, "result": {"message_id": len(self.server.calls)}})

    @staticmethod
    def check(method: str, fields: dict, files: dict) -> str | None:
        if not fields.get("chat_id"):
            return "chat_id is empty"
        for name, data in files.items():
            if len(data) > 10 * 2**20:
                return f"file {name} is too big"
        if method == "sendMessage":
            text = fields.get("text", "")
            if not text:
                return "message text is empty"
            if fields.get("parse_mode") == "HTML":
                p = _TagCheck()
                p.feed(text)
                if p.bad:
                    return f"can't parse entities: unsupported start tag \"{p.bad[0]}\""
                if len("".join(p.text)) > 4096:
                    return "message is too long"
            elif len(text) > 4096:
                return "message is too long"
        elif method == "sendPhoto":
            if "photo" not in files:
                return "there is no photo in the request"
            if len(fields.get("caption", "")) > 1024:
                return "message caption is too long"
        elif method == "sendMediaGroup":
            media = json.loads(fields.get("media", "[]"))
            if not 2 <= len(media) <= 10:
                return "wrong number of media in the group"
            for item in media:
                ref = item.get("media", "")
                if not ref.startswith("attach://") or ref[len("attach://"):] not in files:
                    return f"wrong file identifier {ref}"
        else:
            return f"method {method} not found"
        return None


class SlackHandler(_Handler):
    def do_POST(self):
        raw = self.body()
        scripted = self.server.next_scripted()
        if scripted:
            self.server.calls.append({"scripted": scripted[0]})
            return self.reply(*scripted)
        try:
            body = json.loads(raw)
        except ValueError:
            return self.reply(400, b"invalid_payload")
        self.server.calls.append({"path": self.path, "body": body})
        if not self.path.startswith("/services/"):
            return self.reply(404, b"no_service")
        if not body.get("text") and not body.get("blocks"):
            return self.reply(400, b"no_text")
        for b in body.get("blocks", []):
            if b.get("type") == "section" and len(b.get("fields", [])) > 10:
                return self.reply(400, b"invalid_blocks")
            if b.get("type") == "image" and not b.get("image_url", "").startswith("http"):
                return self.reply(400, b"invalid_blocks")
        return self.reply(200, b"ok")


def webhook_handler(secret: str):
    class WebhookHandler(_Handler):
        def do_POST(self):
            raw = self.body()
            sig = self.headers.get("X-Eventmart-Signature", "")
            want = "sha256=" + hmac.new(secret.encode(), raw, hashlib.sha256).hexdigest()
            self.server.calls.append({"body": json.loads(raw), "signed": hmac.compare_digest(sig, want)})
            return self.reply(200 if hmac.compare_digest(sig, want) else 401, {"ok": True})

    return WebhookHandler


@contextmanager
def smtp_inbox() -> Iterator[tuple[int, list]]:
    """A real SMTP server (aiosmtpd) on a free loopback port, no TLS or login: yields (port, the envelopes it got)."""
    from aiosmtpd.controller import Controller

    from pgserver import free_port

    got: list = []

    class Handler:
        async def handle_DATA(self, server, session, envelope):
            got.append(envelope)
            return "250 OK"

    port = free_port()
    smtp = Controller(Handler(), hostname="127.0.0.1", port=port)
    smtp.start()
    try:
        yield port, got
    finally:
        smtp.stop()
