"""What the README and the docs say about the bundled examples, checked the way a user would get it: the demo
command, then the backtest; the first project's commands and their output. The numbers are read from the text
itself, so the text and the code cannot drift apart."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from eventmart import Project
from eventmart.examples.feed import incidents

README = Path(__file__).resolve().parent.parent / "README.md"
ALERTS_DOC = README.parent / "docs" / "guide" / "alerts.md"
Q = timedelta(minutes=15)


def test_feed_demo_alert_rules_do_what_the_readme_says(tmp_path):
    text = " ".join(ALERTS_DOC.read_text().split())
    m = re.search(r"`views_iqr`\) raises \*\*(\d+)\*\* incidents; the six seasonal rules raise \*\*(\d+)\*\*", text)
    assert m, "the alerts guide's tuning paragraph changed: update this test with it"
    iqr_claim, seasonal_claim = int(m.group(1)), int(m.group(2))
    d = tmp_path / "feed"
    r = subprocess.run([sys.executable, "-m", "eventmart", "demo", "feed", str(d), "--no-serve"],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    start, end = datetime(2024, 3, 8), datetime(2024, 3, 31)
    truth = incidents(30)
    with Project.load(d) as p:
        _, iqr = p.alerts_backtest("views_iqr", start, end)
        found = []
        for rule in ("users", "active_posts", "views", "likes", "ctr", "views_by_os"):
            found += [(rule, i) for i in p.alerts_backtest(rule, start, end)[1]]
    assert len(iqr) == iqr_claim
    assert len(found) == seasonal_claim

    def inside(i) -> bool:
        return any(i.start < t["end"] + Q and (i.end or t["end"]) > t["start"] for t in truth)

    assert all(inside(i) for _, i in found), found
    by_rule = {r for r, _ in found}
    assert {"views_by_os", "likes"} <= by_rule  # each injected incident is found by the rule made for it
    # the untuned default: auto, no parameters
    m = re.search(r"its two rules \(`views_auto`, `likes_auto`, no parameters\) raise exactly \*\*(\d+)\*\*", text)
    assert m, "the alerts guide's auto paragraph changed: update this test with it"
    with Project.load(d) as p:
        assert p.config.alerts["views_auto"].detector == "auto" and not p.config.alerts["views_auto"].params
        auto = [i for r in ("views_auto", "likes_auto") for i in p.alerts_backtest(r, start, end)[1]]
    assert len(auto) == int(m.group(1)) == 2 and all(inside(i) for i in auto), auto
    assert sorted(i.series for i in auto) == ["all", "os=iOS"]  # the like spike, the iOS drop


def _orders(path: Path) -> None:
    """The README's orders.csv: 5,000 orders a few minutes apart, US-style times, a header as exports write it."""
    import csv
    import random

    rnd = random.Random(11)
    rows, t = [], datetime(2024, 3, 13, 8, 0)
    for i in range(5000):
        t += timedelta(seconds=rnd.randint(30, 400))
        rows.append([str(10_000 + i), t.strftime("%m/%d/%Y %H:%M"), str(rnd.randint(1, 700)),
                     rnd.choice(["books", "toys", "garden", "food & drink"]), f"{rnd.randint(100, 99999) / 100:.2f}"])
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["Order ID", "Created", "User ID", "Category", "Amount"])
        w.writerows(rows)


def test_first_project_section_shows_the_real_output(tmp_path):
    """Every `$ command` of the README's first project, run on the same file: it prints what the README shows
    (durations aside)."""
    import os

    text = README.read_text()
    block = text[text.index("## Your first project"):]
    block = block[block.index("```console") + len("```console"):]
    block = block[:block.index("```")]
    _orders(tmp_path / "orders.csv")
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}:{os.environ['PATH']}"}
    cwd, seen = tmp_path, 0
    steps: list[tuple[str, list[str]]] = []
    for line in block.strip().splitlines():
        if line.startswith("$ "):
            steps.append((line[2:].split("#")[0].strip(), []))
        else:
            steps[-1][1].append(line)
    durations = re.compile(r"in \d+\.\d\ds")
    for cmd, shown in steps:
        for part in cmd.split(" && "):
            if part.startswith("cd "):
                cwd = cwd / part[3:]
                continue
            if part.startswith("eventmart serve"):
                continue  # serves until Ctrl-C: the terminal tests drive it
            r = subprocess.run(part.split(), cwd=cwd, capture_output=True, text=True, env=env, timeout=300)
            assert r.returncode == 0, (part, r.stderr)
            got = [durations.sub("in Ns", ln) for ln in r.stdout.splitlines()]
            want = [durations.sub("in Ns", ln) for ln in shown[:len(got)]]
            assert got == want, (part, got, want)
            shown = shown[len(got):]
            seen += 1
    assert seen == 4
