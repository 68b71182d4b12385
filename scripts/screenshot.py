"""Render the README's pictures in Debian's headless Chromium.

    .venv/bin/python scripts/screenshot.py            # docs/zen-dashboard.png: the Zen demo dashboard
    .venv/bin/python scripts/screenshot.py digest     # docs/feed-digest.png: the feed example's daily digest
    .venv/bin/python scripts/screenshot.py explore    # docs/feed-explore.png, docs/feed-compare.png: the feed
                                                      # example's explore page and its dashboard vs a week earlier
"""

from __future__ import annotations

import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from playwright.sync_api import sync_playwright
from werkzeug.serving import make_server

from eventmart import Project
from eventmart.examples import generate_zen, init_example
from eventmart.server.web import create_server

ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-background-networking",
        "--disable-component-update", "--no-first-run", "--disable-sync"]


DOCS = Path(__file__).parent.parent / "docs"


def digest() -> None:
    from eventmart.examples import generate_feed, init_example

    out = DOCS / "feed-digest.png"
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        init_example("feed", d)
        generate_feed(d, scale=1.0, days=30)
        with Project.load(d) as p:
            for s in p.config.sources:
                p.ingest(s)
            p.backfill(["daily_metrics"])
            res = p.report("daily", dry_run=True)
        with sync_playwright() as pw:
            b = pw.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
            page = b.new_page(viewport={"width": 900, "height": 800})
            page.goto(Path(res.folder, "index.html").as_uri())
            page.screenshot(path=str(out), full_page=True)
            b.close()
    print(f"wrote {out}")


@contextmanager
def served_page(example: str, build, width: int = 1400) -> Iterator[tuple[str, object]]:
    """A bundled example built in a temporary folder (``build(folder)`` makes its data; every source is loaded and
    every mart run), served on loopback: (its URL, a Chromium page)."""
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        init_example(example, d)
        build(d)
        with Project.load(d) as p:
            for s in p.config.sources:
                p.ingest(s)
            p.backfill()
            httpd = make_server("127.0.0.1", 0, create_server(p), threaded=True)
            threading.Thread(target=httpd.serve_forever, daemon=True).start()
            try:
                with sync_playwright() as pw:
                    b = pw.chromium.launch(executable_path=shutil.which("chromium"), args=ARGS)
                    yield (f"http://127.0.0.1:{httpd.server_port}",
                           b.new_page(viewport={"width": width, "height": 1000}, device_scale_factor=1))
                    b.close()
            finally:
                httpd.shutdown()


def charts_drawn(page) -> None:
    page.wait_for_function("() => [...document.querySelectorAll('.js-plotly-plot')]"
                           ".every(g => g.data && g.data.length)", timeout=60_000)
    page.wait_for_timeout(800)


def explore() -> None:
    """The explore page and a dashboard compared with a week earlier, on the feed example's 30 days."""
    from eventmart.examples import generate_feed

    with served_page("feed", lambda d: generate_feed(d, scale=0.3, days=30)) as (base, page):
        page.goto(f"{base}/explore/?mart=feed_daily_by&measure=users&compare=week&grain=day&rows=os"
                  "&cols=age_group&from=2024-03-16&to=2024-03-30")
        page.wait_for_selector(".x-board td", timeout=60_000)
        page.wait_for_selector("#x-pivot-table td", timeout=60_000)
        page.wait_for_timeout(800)
        page.screenshot(path=str(DOCS / "feed-explore.png"), clip={"x": 0, "y": 0, "width": 1400, "height": 1500},
                        full_page=True)
        page.goto(f"{base}/d/feed/?compare=week&from=2024-03-16T00%3A00&to=2024-03-30T00%3A00")
        charts_drawn(page)
        page.screenshot(path=str(DOCS / "feed-compare.png"), full_page=True)
    print(f"wrote {DOCS / 'feed-explore.png'} and {DOCS / 'feed-compare.png'}")


def main() -> None:
    if sys.argv[1:] == ["digest"]:
        return digest()
    if sys.argv[1:] == ["explore"]:
        return explore()
    out = Path(sys.argv[1] if len(sys.argv) > 1 else DOCS / "zen-dashboard.png")
    with served_page("zen", generate_zen) as (base, page):
        page.goto(f"{base}/")
        charts_drawn(page)
        page.screenshot(path=str(out), full_page=True)
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
