"""Channels: Telegram, Slack, e-mail, webhook, files — what digests and alert messages go out through. Each retries
with backoff; secrets never reach a message.

Every API call is retried on its own (a 429 waits as long as the server asks, 5xx and network errors
back off and double, other 4xx fail at once), so a retry never sends a message twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import shutil
import smtplib
import ssl
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from ..config import Channel
from ..values import json_value
from .charts import Chart

TELEGRAM_TEXT_LIMIT = 4096
TELEGRAM_CAPTION_LIMIT = 1024
MAX_RETRY_AFTER = 120.0


@dataclass
class Message:
    """What every channel can send: reports and alerts both become one."""

    key: str  # where it lives under a file channel's folder, e.g. "daily/2024-03-30"
    subject: str
    telegram: str  # Telegram HTML parse mode
    text: str  # plain text
    html: Callable[[dict[str, str]], str]  # an HTML page, given each image's src
    slack: Callable[[str | None], dict]  # Slack webhook body, given where images are served
    payload: dict
    images: list[Chart] = field(default_factory=list)


class ChannelError(Exception):
    """A delivery that failed for good; the message names the channel, never a secret."""


class _Retry(Exception):
    def __init__(self, msg: str, after: float | None = None):
        super().__init__(msg)
        self.after = after


class _Fail(Exception):
    pass


def _host(url: str) -> str:
    """Where a request went, without path or query (Telegram puts the token in the path)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname}" + (f":{parts.port}" if parts.port else "")


def with_retries(ch: Channel, name: str, what: str, call: Callable[[], Any],
                 sleep: Callable[[float], None] = time.sleep) -> Any:
    delay = ch.backoff
    for attempt in range(ch.retries + 1):
        try:
            return call()
        except _Retry as e:
            if attempt == ch.retries:
                raise ChannelError(f"channel {name}: {what}: {e} (after {attempt + 1} attempts)") from None
            sleep(min(e.after, MAX_RETRY_AFTER) if e.after is not None else delay)
            if e.after is None:
                delay *= 2
        except _Fail as e:
            raise ChannelError(f"channel {name}: {what}: {e}") from None
    raise ChannelError(f"channel {name}: {what}: no attempt made")


def _http(client, method: str, url: str, **kw: Any):
    import httpx

    try:
        r = client.request(method, url, **kw)
    except httpx.TimeoutException:
        raise _Retry(f"timed out talking to {_host(url)}") from None
    except httpx.HTTPError as e:  # the exception's text may carry the URL: keep only its kind
        raise _Retry(f"{type(e).__name__} talking to {_host(url)}") from None
    if r.status_code == 429:
        after = r.headers.get("Retry-After")
        try:
            after = float(after) if after else float(r.json().get("parameters", {}).get("retry_after", 1))
        except (ValueError, AttributeError):
            after = 1.0
        raise _Retry(f"rate limited by {_host(url)}", after)
    if r.status_code >= 500:
        raise _Retry(f"{_host(url)} answered {r.status_code}")
    if r.status_code >= 400:
        detail = ""
        try:
            detail = str(r.json().get("description", ""))[:200]
        except ValueError:
            detail = r.text[:200]
        raise _Fail(f"{_host(url)} refused the request ({r.status_code}{': ' + detail if detail else ''})")
    return r


# --- the channels --------------------------------------------------------------------------------


def send_telegram(ch: Channel, name: str, d: Message, sleep=time.sleep) -> None:
    import httpx

    if not ch.token or not ch.chat_id:
        raise ChannelError(f"channel {name}: token and chat_id are empty; set them (e.g. token: ${{TELEGRAM_BOT_TOKEN}})")
    base = f"{ch.api_base.rstrip('/')}/bot{ch.token}"
    with httpx.Client(timeout=ch.timeout) as client:
        for chunk in split_message(d.telegram, TELEGRAM_TEXT_LIMIT):
            with_retries(ch, name, "sendMessage", lambda c=chunk: _telegram_ok(_http(
                client, "POST", f"{base}/sendMessage",
                data={"chat_id": ch.chat_id, "text": c, "parse_mode": "HTML", "disable_web_page_preview": "true"})),
                sleep)
        charts = d.images
        if len(charts) == 1:
            c = charts[0]
            with_retries(ch, name, "sendPhoto", lambda: _telegram_ok(_http(
                client, "POST", f"{base}/sendPhoto", data={"chat_id": ch.chat_id, "caption": c.title[:1024]},
                files={"photo": (c.filename, c.png, "image/png")})), sleep)
        for i in range(0, len(charts) if len(charts) > 1 else 0, 10):
            group = charts[i:i + 10]
            if len(group) == 1:  # a media group needs two or more
                group = charts[i - 1:i + 1]
            media = [{"type": "photo", "media": f"attach://photo{k}", "caption": c.title[:TELEGRAM_CAPTION_LIMIT]}
                     for k, c in enumerate(group)]
            files = {f"photo{k}": (c.filename, c.png, "image/png") for k, c in enumerate(group)}
            with_retries(ch, name, "sendMediaGroup", lambda m=media, f=files: _telegram_ok(_http(
                client, "POST", f"{base}/sendMediaGroup", data={"chat_id": ch.chat_id, "media": json.dumps(m)},
                files=f)), sleep)


def _telegram_ok(r) -> None:
    body = r.json()
    if not body.get("ok"):
        raise _Fail(f"Telegram said: {str(body.get('description', 'not ok'))[:200]}")


def split_message(text: str, limit: int) -> list[str]:
    """Pieces of at most ``limit`` characters, cut at line ends (a line is never split inside a tag)."""
    out, cur = [], ""
    for ln in text.split("\n"):
        if len(ln) > limit:
            ln = ln[: limit - 1] + "…"
        if cur and len(cur) + 1 + len(ln) > limit:
            out.append(cur)
            cur = ln
        else:
            cur = f"{cur}\n{ln}" if cur else ln
    if cur:
        out.append(cur)
    return out


def send_slack(ch: Channel, name: str, d: Message, sleep=time.sleep) -> None:
    import httpx

    body = d.slack(f"{ch.image_base_url.rstrip('/')}/{d.key}" if ch.image_base_url else None)
    with httpx.Client(timeout=ch.timeout) as client:
        with_retries(ch, name, "webhook", lambda: _http(client, "POST", ch.webhook, json=body), sleep)


def build_email(ch: Channel, d: Message) -> EmailMessage:
    msg = EmailMessage()
    msg["Subject"] = d.subject
    msg["From"] = ch.sender or (ch.user or "eventmart@localhost")
    msg["To"] = ", ".join(ch.to)
    msg.set_content(d.text)
    cids = {c.filename: make_msgid(domain="eventmart.local") for c in d.images}
    msg.add_alternative(d.html({f: "cid:" + cid[1:-1] for f, cid in cids.items()}), subtype="html")
    html_part = msg.get_payload()[1]
    for c in d.images:
        html_part.add_related(c.png, maintype="image", subtype="png", cid=cids[c.filename], filename=c.filename)
    return msg


def send_email(ch: Channel, name: str, d: Message, sleep=time.sleep) -> None:
    msg = build_email(ch, d)
    port = ch.port or {"ssl": 465, "starttls": 587, "none": 25}[ch.security]

    def deliver() -> None:
        try:
            tls = ssl.create_default_context(cafile=ch.ca_file)  # certificates are always verified
            if ch.security == "ssl":
                smtp = smtplib.SMTP_SSL(ch.host, port, timeout=ch.timeout, context=tls)
            else:
                smtp = smtplib.SMTP(ch.host, port, timeout=ch.timeout)
            with smtp:
                if ch.security == "starttls":
                    smtp.starttls(context=tls)
                if ch.user:
                    try:
                        smtp.login(ch.user, ch.password or "")
                    except (smtplib.SMTPException, OSError):  # a wrong password does not get better by retrying
                        raise _Fail(f"{ch.host}:{port} refused the login for {ch.user}") from None
                smtp.send_message(msg)
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as e:
            raise _Fail(f"{ch.host}:{port} refused the message ({type(e).__name__})") from None
        except (OSError, smtplib.SMTPException) as e:
            raise _Retry(f"{type(e).__name__} talking to {ch.host}:{port}") from None

    with_retries(ch, name, "smtp", deliver, sleep)


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def send_webhook(ch: Channel, name: str, d: Message, sleep=time.sleep) -> None:
    import httpx

    body = json_value(d.payload).encode()  # numbers as stored: a decimal total stays a number, every digit kept
    headers = {"Content-Type": "application/json"}
    if ch.secret:
        headers["X-Eventmart-Signature"] = sign(ch.secret, body)
    with httpx.Client(timeout=ch.timeout) as client:
        with_retries(ch, name, "POST", lambda: _http(client, "POST", ch.url, content=body, headers=headers), sleep)


def write_files(d: Message, folder: Path) -> Path:
    """index.html + the images + digest.json into ``folder/<key>/``, replaced whole."""
    target = folder / d.key
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".tmp-", dir=target.parent))
    for c in d.images:
        (tmp / c.filename).write_bytes(c.png)
    (tmp / "index.html").write_text(d.html({c.filename: c.filename for c in d.images}), encoding="utf-8")
    (tmp / "digest.json").write_text(json_value(d.payload),
                                     encoding="utf-8")
    if target.exists():
        shutil.rmtree(target)
    tmp.rename(target)
    return target


SENDERS = {"telegram": send_telegram, "slack": send_slack, "email": send_email, "webhook": send_webhook}


def deliver(ch: Channel, name: str, d: Message, project_dir: Path, sleep=time.sleep) -> str:
    """Send to one channel; returns where it went (no secrets); raises ChannelError."""
    if ch.type == "file":
        folder = Path(ch.path) if Path(ch.path).is_absolute() else project_dir / ch.path
        try:
            return str(write_files(d, folder))
        except OSError as e:
            raise ChannelError(f"channel {name}: cannot write {folder}: {e.strerror}") from None
    for key in ("token", "chat_id", "webhook", "url", "user", "password", "secret", "host"):
        value = getattr(ch, key, None)
        if isinstance(value, str) and any(c in value for c in "\r\n\t\x00"):
            # a secret pasted with its line break: say which setting, never its value
            raise ChannelError(f"channel {name}: `{key}` contains a line break or control character; check the "
                               "environment variable it comes from")
    SENDERS[ch.type](ch, name, d, sleep)
    if ch.type == "telegram":
        return f"telegram chat {ch.chat_id}"
    if ch.type == "email":
        return f"e-mail to {', '.join(ch.to)}"
    return _host(ch.webhook if ch.type == "slack" else ch.url)
