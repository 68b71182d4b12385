"""The Zen dashboard in a real headless Chromium (Debian's, driven by Playwright; never downloaded).

Expected figures come from the real dash_visits file (read with pyarrow), not from the marts.
"""

from __future__ import annotations

import csv
import io
import subprocess
import sys
import threading
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from werkzeug.serving import make_server

from conftest import events_config, write_project
from eventmart import Project
from eventmart.examples import generate_zen, init_example
from eventmart.examples.zen import read_real
from eventmart.server.web import create_server
from helpers import T0, random_events, write_events_csv
from pgserver import free_port

# chart ids follow the order of `charts` in the Zen project file
EVENTS, USERS, CTR, VIEW_RATE, HISTORY, SOURCES, FUNNEL, TOPICS = range(8)


class Served:
    def __init__(self, project: Project):
        self.project = project
        self.httpd = make_server("127.0.0.1", 0, create_server(project), threaded=True)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.project.close()


@pytest.fixture(scope="module")
def zen(tmp_path_factory) -> Iterator[Served]:
    d = tmp_path_factory.mktemp("zen")
    init_example("zen", d)
    generate_zen(d)
    p = Project.load(d)
    p.ingest("log_raw")
    p.backfill()
    s = Served(p)
    yield s
    s.stop()


def wait_rendered(page, chart: int = HISTORY) -> None:
    page.wait_for_function(
        "i => { const g = document.querySelector('#c-' + i + ' .js-plotly-plot');"
        " return g && g.data && g.data.length > 0; }", arg=chart, timeout=20_000)


def traces(page, chart: int) -> list[dict]:
    return page.evaluate(
        "i => document.querySelector('#c-' + i + ' .js-plotly-plot').data.map(t => "
        "({name: t.name, x: t.x, y: t.y, labels: t.labels, values: t.values, value: t.value, type: t.type}))", chart)


def kpi(page, chart: int = EVENTS) -> float:
    return traces(page, chart)[0]["value"]


def wait_kpi(page, want: float, chart: int = EVENTS) -> None:
    page.wait_for_function(
        "([i, want]) => { const g = document.querySelector('#c-' + i + ' .js-plotly-plot');"
        " return g && g.data && g.data[0] && Math.abs(g.data[0].value - want) < 1e-6; }",
        arg=[chart, want], timeout=20_000)


def visits(**equal) -> int:
    """Events in the real dash_visits where each column equals (or is in) the given value(s)."""
    t = read_real()
    for col, v in equal.items():
        t = t.filter(pc.is_in(t[col], value_set=pa.array(v if isinstance(v, list) else [v])))
    return pc.sum(t["visits"]).as_py()


def test_page_loads_with_the_seed_charts(zen, page):
    page.goto(zen.url + "/")
    wait_rendered(page)
    real = read_real()
    topics = set(real["item_topic"].to_pylist())
    history = traces(page, HISTORY)
    assert {t["name"] for t in history} == topics  # one stacked series per card topic, Russian names intact
    per_minute = {}
    for t in history:
        for x, y in zip(t["x"], t["y"], strict=True):
            per_minute[x] = per_minute.get(x, 0) + y
    assert sum(per_minute.values()) == pc.sum(real["visits"]).as_py() == 310_207
    pie = traces(page, SOURCES)[0]
    assert sum(pie["values"]) == 310_207 and "other" in pie["labels"]
    funnel = traces(page, FUNNEL)[0]
    assert funnel["x"] == ["show", "click", "view"]
    assert funnel["y"][0] == 100 and funnel["y"][0] > funnel["y"][1] > funnel["y"][2] > 0
    assert kpi(page) == 310_207
    heat = traces(page, TOPICS)[0]
    assert heat["type"] == "heatmap"
    # the last event the marts hold, not the end of the last window
    last = read_real()  # events of the last real minute, 19:00, fall anywhere in it: the generator's last one
    assert "data up to 2019-09-24 19:00:" in page.inner_text("#fresh") and pc.max(last["dt"]).as_py().minute == 0
    # the real hour has a 16-minute hole: counts there are zero, not a line drawn across it
    hole = [t["y"][t["x"].index("2019-09-24 18:45")] for t in history]
    assert hole and all(v == 0 for v in hole)
    # the area chart is the biggest thing on the page, as in the seed
    box = {i: page.locator(f"#c-{i}").bounding_box() for i in (HISTORY, SOURCES, FUNNEL)}
    assert box[HISTORY]["width"] * box[HISTORY]["height"] >= sum(
        b["width"] * b["height"] for i, b in box.items() if i != HISTORY)


def test_filters_change_the_data_and_the_url(zen, page):
    page.goto(zen.url + "/d/zen/")
    wait_rendered(page)
    page.fill("#f-from", "2019-09-24 18:50")
    page.press("#f-from", "Enter")
    since = datetime(2019, 9, 24, 18, 50)
    want = pc.sum(read_real().filter(pc.greater_equal(read_real()["dt"], since))["visits"]).as_py()
    wait_kpi(page, want)
    assert "from=2019-09-24T18%3A50" in page.url
    # a multi-select, through its UI
    page.click("#f-0")
    page.get_by_role("option", name="18-25", exact=True).click()
    page.keyboard.press("Escape")
    real = read_real()
    sel = real.filter(pc.and_(pc.greater_equal(real["dt"], since), pc.equal(real["age_segment"], "18-25")))
    wait_kpi(page, pc.sum(sel["visits"]).as_py())
    assert "age_segment=18-25" in page.url
    history = traces(page, HISTORY)
    assert min(min(t["x"]) for t in history) >= "2019-09-24 18:50"


def test_a_shared_url_restores_the_view(zen, page):
    q = urllib.parse.urlencode([("age_segment", "26-30"), ("item_topic", "Наука"), ("item_topic", "Юмор")])
    page.goto(f"{zen.url}/d/zen/?{q}")
    wait_kpi(page, visits(age_segment="26-30", item_topic=["Наука", "Юмор"]))
    wait_rendered(page)
    assert {t["name"] for t in traces(page, HISTORY)} == {"Наука", "Юмор"}
    assert "Наука" in page.inner_text("#f-1") and "26-30" in page.inner_text("#f-0")


def test_clicking_a_slice_cross_filters_and_reset_clears(zen, page):
    page.goto(zen.url + "/d/zen/")
    wait_rendered(page, SOURCES)
    pie = traces(page, SOURCES)[0]
    label = pie["labels"][0]  # the biggest source topic
    page.locator(f"#c-{SOURCES} path.surface").first.click()
    wait_kpi(page, visits(source_topic=label))
    assert "source_topic=" + urllib.parse.quote_plus(label) in page.url
    page.click("#reset")
    wait_kpi(page, 310_207)
    assert "source_topic" not in page.url


def test_csv_download_matches_a_query(zen, page):
    page.goto(zen.url + "/d/zen/?age_segment=45%2B")
    wait_kpi(page, visits(age_segment="45+"))
    href = page.get_attribute(f"#csv-{SOURCES}", "href")
    assert "age_segment=45%2B" in href
    body = page.request.get(zen.url + href).text()
    rows = list(csv.reader(io.StringIO(body)))
    assert rows[0] == ["category", "value"]
    got = {r[0]: int(r[1]) for r in rows[1:]}
    want = zen.project.query("SELECT source_topic, sum(visits) FROM dash_visits WHERE age_segment = '45+' "
                             "GROUP BY 1").rows
    assert got == {k: int(v) for k, v in want}


def test_new_mart_windows_appear_without_a_restart(tmp_path, page):
    cfg = events_config()
    cfg["dashboards"] = {"live": {"title": "Live", "refresh": 1, "filters": ["time"], "charts": {
        "total": {"type": "kpi", "mart": "by_topic", "measure": "sum(events)"},
        "trend": {"type": "line", "mart": "by_topic", "measure": "events"}}}}
    events = random_events(500, seed=3, hours=2)
    write_events_csv(tmp_path / "data" / "e.csv", events)
    write_project(tmp_path, cfg)
    p = Project.load(tmp_path)
    p.ingest("events")
    p.run(start=T0, end=T0 + timedelta(hours=1))
    s = Served(p)
    try:
        first = sum(1 for e in events if e["ts"] < (T0 + timedelta(hours=1) - datetime(1970, 1, 1)).total_seconds() * 1000)
        page.goto(s.url + "/")
        wait_kpi(page, first, chart=0)
        last = max(e["ts"] for e in events if e["ts"] < (T0 + timedelta(hours=1) - datetime(1970, 1, 1))
                   .total_seconds() * 1000)
        assert f"data up to {datetime(1970, 1, 1) + timedelta(milliseconds=last):%Y-%m-%d %H:%M:%S} UTC" \
            in page.inner_text("#fresh")
        p.run(start=T0 + timedelta(hours=1), end=T0 + timedelta(hours=2))  # e.g. the scheduler, in-process
        wait_kpi(page, len(events), chart=0)  # the next auto-refresh shows it
        last = datetime(1970, 1, 1) + timedelta(milliseconds=max(e["ts"] for e in events))
        page.wait_for_function("t => document.querySelector('#fresh').innerText.includes(t)",
                               arg=f"data up to {last:%Y-%m-%d %H:%M:%S} UTC")
    finally:
        s.stop()


def test_basic_auth_from_the_environment(zen, monkeypatch):
    import base64

    monkeypatch.setenv("EVENTMART_DASH_USER", "ana")
    monkeypatch.setenv("EVENTMART_DASH_PASSWORD", "s3cret")
    client = create_server(zen.project).test_client()
    assert client.get("/d/zen/").status_code == 401
    bad = base64.b64encode(b"ana:wrong").decode()
    assert client.get("/d/zen/", headers={"Authorization": f"Basic {bad}"}).status_code == 401
    good = base64.b64encode(b"ana:s3cret").decode()
    assert client.get("/d/zen/", headers={"Authorization": f"Basic {good}"}).status_code == 200


def test_serving_beyond_loopback_without_auth_warns(tmp_path):
    cfg = events_config()
    cfg["dashboards"] = {"d": {"title": "T", "charts": {"k": {"type": "kpi", "mart": "by_topic", "measure": "sum(events)"}}}}
    write_project(tmp_path, cfg)
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "eventmart", "serve", "-p", str(tmp_path), "--host", "0.0.0.0",
                             "--port", str(port)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        first = proc.stdout.readline()
        assert first.startswith("warning: serving on 0.0.0.0 without authentication")
        assert "EVENTMART_DASH_PASSWORD" in first
    finally:
        proc.kill()
        proc.wait()
    assert Path(tmp_path / "eventmart.yml").exists()


def test_clicking_a_heatmap_cell_filters_by_both_dimensions(zen, page):
    page.goto(zen.url + "/d/zen/")
    wait_rendered(page, TOPICS)
    cells = page.locator(f"#c-{TOPICS} .nsewdrag").first
    cells.scroll_into_view_if_needed()
    box = cells.bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.5, box["y"] + box["height"] * 0.5)
    page.wait_for_function("() => location.search.includes('source_topic') && location.search.includes('item_topic')")
    qs = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    (src,), (item,) = qs["source_topic"], qs["item_topic"]
    wait_kpi(page, visits(source_topic=src, item_topic=item))
    assert {t["name"] for t in traces(page, HISTORY)} == {item}


def test_runs_page_previews_then_runs_a_backfill(tmp_path, page):
    cfg = events_config()
    cfg["dashboards"] = {"d": {"title": "T", "charts": {"k": {"type": "kpi", "mart": "by_topic",
                                                              "measure": "sum(events)"}}}}
    cfg["marts"]["by_topic"]["chunk"] = "1 day"
    events = random_events(400, seed=6, hours=48)
    write_events_csv(tmp_path / "data" / "e.csv", events)
    write_project(tmp_path, cfg)
    p = Project.load(tmp_path)
    p.ingest("events")
    p.run(start=T0, end=T0 + timedelta(days=1))
    s = Served(p)
    try:
        page.goto(s.url + "/runs/")
        page.wait_for_selector("tr.run-ok")
        assert page.locator("tr.run-ok").count() == 1
        page.click("#bf-preview")
        page.wait_for_function("() => document.querySelector('#bf-plan').innerText.includes('will run')")
        plan = page.inner_text("#bf-plan")
        assert plan.startswith("1 window(s) will run") and "by_topic [2024-03-11 00:00" in plan
        assert page.locator("tr.run-ok").count() == 1  # a preview runs nothing
        page.click("#bf-run")
        page.wait_for_function("() => document.querySelectorAll('tr.run-ok').length == 2", timeout=30_000)
        assert p.status()[0].gaps == []
        # coverage: a bar spanning each day, on an axis fitted to them
        page.wait_for_function("() => document.querySelector('#calendar .js-plotly-plot').data"
                               ".find(t => t.name == 'done').x.length == 2")
        bars = page.evaluate("() => { const g = document.querySelector('#calendar .js-plotly-plot');"
                             " const t = g.data.find(t => t.name == 'done');"
                             " return {base: t.base, x: t.x, range: g.layout.xaxis.range}; }")
        assert sorted(b[:10] for b in bars["base"]) == ["2024-03-10", "2024-03-11"]
        assert bars["x"] == [86_400_000, 86_400_000]
        assert bars["range"][0] < "2024-03-10" and "2024-03-12" < bars["range"][1] < "2024-03-13"
    finally:
        s.stop()


def test_csv_links_leave_plotly_buttons_free_and_700px_keeps_titles_apart(zen, browser):
    ctx = browser.new_context(viewport={"width": 700, "height": 1000})
    page = ctx.new_page()
    try:
        page.goto(zen.url + "/d/zen/")
        wait_rendered(page)

        def overlap(a: dict, b: dict) -> bool:
            return not (a["x"] + a["width"] <= b["x"] or b["x"] + b["width"] <= a["x"]
                        or a["y"] + a["height"] <= b["y"] or b["y"] + b["height"] <= a["y"])

        for i in (HISTORY, SOURCES, FUNNEL, TOPICS):
            page.hover(f"#c-{i}")
            bar = page.locator(f"#c-{i} .modebar-container").bounding_box()
            link = page.locator(f"#csv-{i}").bounding_box()
            assert bar and link and not overlap(bar, link), (i, bar, link)
        titles = [page.locator(".em-title").nth(k).bounding_box() for k in range(page.locator(".em-title").count())]
        cards = [page.locator(".em-card").nth(k).bounding_box() for k in range(page.locator(".em-card").count())]
        for group in (titles, cards):
            for a in range(len(group)):
                for b in range(a + 1, len(group)):
                    assert not overlap(group[a], group[b]), (a, b, group[a], group[b])
        assert all(c["x"] + c["width"] <= 700 for c in cards)  # nothing runs off the screen
    finally:
        ctx.close()
