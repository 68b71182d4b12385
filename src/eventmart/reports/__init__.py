"""Reports: build a digest (build.py), render it (render.py), send it to channels (channels.py)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from ..delivery.channels import ChannelError, deliver, write_files
from ..ledger import recorded
from .build import Digest, build
from .render import digest_message

if TYPE_CHECKING:
    from ..workspace import Workspace


@dataclass
class Delivery:
    channel: str
    status: str  # ok | failed
    detail: str  # where it went, or why it failed (never a secret)


@dataclass
class ReportResult:
    report: str
    day: date
    values: dict[str, float | None]
    deliveries: list[Delivery] = field(default_factory=list)
    folder: str | None = None  # --dry-run: where it was written

    def lines(self) -> list[str]:
        out = [f"report {self.report} for {self.day}"]
        if self.folder:
            out.append(f"  written to {self.folder} (dry run: nothing sent)")
        out += [f"  {d.channel}: {d.status}: {d.detail}" for d in self.deliveries]
        return out


def send_report(project: Workspace, name: str, day: date | None = None, dry_run: bool = False,
                out: Path | None = None, trigger: str = "report", sleep=time.sleep) -> ReportResult:
    """Build the digest, then send it to every channel (or, dry run, write it to a folder)."""
    digest: Digest = build(project, name, day)
    res = ReportResult(name, digest.day, digest.values())
    if dry_run:
        res.folder = str(write_files(digest_message(digest), out or project.dir / "reports" / "dry-run"))
        return res
    spec = project.config.reports[name]
    wh = project.warehouse
    window = (datetime.combine(digest.day, datetime.min.time()),
              datetime.combine(digest.day + timedelta(days=1), datetime.min.time()))
    message = digest_message(digest)
    for ch_name in spec.channels:  # one channel failing never stops the others
        with recorded(wh, f"_report:{name}:{ch_name}", *window, trigger, catch=(ChannelError,)) as rec:
            try:
                where = deliver(project.config.channels[ch_name], ch_name, message, project.dir, sleep)
            except ChannelError as e:
                res.deliveries.append(Delivery(ch_name, "failed", str(e)))
                raise
            res.deliveries.append(Delivery(ch_name, "ok", where))
            rec.rows = len(digest.metrics)
    return res
