"""Compare, explore and drill in a real headless Chromium, each number checked against pandas on the raw events
(never the mart): a KPI and a series compared with a week earlier, a leaderboard, a grain switch made through the
page, a leaderboard click that filters, a click on a point that shows the events behind it, a dashboard's point
that opens them, and an incident drawn as a band."""

from __future__ import annotations

import threading
import urllib.parse
from collections.abc import Iterator
from datetime import datetime, timedelta

import pytest
from werkzeug.serving import make_server

from eventmart import Project
from eventmart.server.web import create_server
from eventmart.timeutil import floor_time
from helpers import explore_events, explore_project

FROM, TO = datetime(2024, 3, 11), datetime(2024, 3, 25)


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> Iterator[tuple]:
    d = tmp_path_factory.mktemp("xb")
    df = explore_events(4000)
    explore_project(d, df, {
        "name": "xb",
        "marts": {"hourly": {"from": "ev", "grain": "1 hour", "dimensions": ["topic", "country"],
                             "measures": {"n": "count()", "users": "count_distinct(user_id)", "s": "sum(v)"}}},
        "dashboards": {"main": {"title": "main", "filters": ["time", "topic", "country"], "charts": {
            "users": {"type": "kpi", "mart": "hourly", "measure": "users"},
            "trend": {"type": "line", "mart": "hourly", "measure": "users", "grain": "1 day"}}}}})
    p = Project.load(d)
    p.ingest("ev")
    p.backfill()
    httpd = make_server("127.0.0.1", 0, create_server(p), threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", df, p
    httpd.shutdown()
    p.close()


def _in(df, start, end, **eq):
    sel = df[(df.ts >= start) & (df.ts < end)]
    for k, v in eq.items():
        sel = sel[sel[k].isin(v if isinstance(v, list) else [v])]
    return sel


def boards(page) -> dict[str, list[dict]]:
    """Each leaderboard's rows as the page shows them."""
    return page.evaluate("""() => Object.fromEntries([...document.querySelectorAll('.x-board')].map(b => [
        b.querySelector('h4').firstChild.textContent,
        [...b.querySelectorAll('tr')].slice(1).map(tr => Object.fromEntries(
            [...tr.querySelectorAll('td')].map(td => [td.getAttribute('data-col'), td.innerText])))]))""")


def series(page, selector: str = "#x-series") -> list[dict]:
    return page.evaluate(f"() => document.querySelector('{selector} .js-plotly-plot').data.map(t => "
                         "({name: t.name, x: t.x, y: t.y, meta: t.meta, value: t.value, delta: t.delta}))")


def wait_total(page, want: int) -> None:
    page.wait_for_function("w => document.querySelector('#x-total') && "
                           "document.querySelector('#x-total').innerText.endsWith(': ' + w)",
                           arg=f"{want:,}", timeout=20_000)


def click_point(page, selector: str) -> None:
    """Click the middle of a Plotly chart's plot area: the nearest point is clicked (hovermode x unified)."""
    page.locator(selector).scroll_into_view_if_needed()
    box = page.locator(f"{selector} .nsewdrag").first.bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)


def test_explore_compares_ranks_switches_grain_and_filters(served, page):
    base, df, _ = served
    q = urllib.parse.urlencode({"mart": "hourly", "measure": "users", "from": "2024-03-11", "to": "2024-03-25",
                                "compare": "week", "grain": "day"})
    page.goto(f"{base}/explore/?{q}")
    now, then = _in(df, FROM, TO), _in(df, FROM - timedelta(days=7), TO - timedelta(days=7))
    wait_total(page, now.user_id.nunique())
    assert f"vs a week earlier ({then.user_id.nunique():,})" in page.inner_text("#x-change")
    page.wait_for_selector(".x-board td")
    shown = boards(page)
    for dim in ("topic", "country"):
        want = now.groupby(dim).user_id.nunique().sort_values(ascending=False)
        prev = then.groupby(dim).user_id.nunique()
        assert [r["value"] for r in shown[dim]] == list(want.index)
        for r in shown[dim]:
            v = want[r["value"]]
            assert int(r["measure"].replace(",", "")) == v
            assert float(r["share"]) == pytest.approx(100 * v / now.user_id.nunique(), abs=0.05)
            if r["value"] in prev:
                assert r["change"] == f"{(v - prev[r['value']]) / prev[r['value']] * 100:+.1f}%"
    # the series per day, and the week before dashed onto it
    traces = series(page)
    per_day = now.assign(d=now.ts.dt.floor("D")).groupby("d").user_id.nunique()
    assert traces[0]["y"] == [per_day[datetime.strptime(x, "%Y-%m-%d %H:%M")] for x in traces[0]["x"]]
    earlier = next(t for t in traces if t["meta"] == "earlier")
    week_ago = then.assign(d=then.ts.dt.floor("D")).groupby("d").user_id.nunique()
    assert earlier["y"] == [week_ago[datetime.strptime(x, "%Y-%m-%d %H:%M") - timedelta(days=7)]
                            for x in earlier["x"]]

    # the grain switch, through the page: distinct users per (Monday) week, recounted, not summed from days
    page.click("#x-grain")
    page.get_by_role("option", name="week", exact=True).click()
    page.wait_for_function("() => location.search.includes('grain=week')", timeout=20_000)
    page.wait_for_function("() => document.querySelector('#x-series .js-plotly-plot').data[0].x.length <= 3",
                           timeout=20_000)
    weeks = now.assign(w=now.ts.map(lambda t: floor_time(t.to_pydatetime(), 7 * 86400))).groupby("w").user_id.nunique()
    traces = series(page)
    assert traces[0]["y"] == [weeks[datetime.strptime(x, "%Y-%m-%d %H:%M")] for x in traces[0]["x"]]
    assert sum(traces[0]["y"]) < sum(per_day)  # a user of two days of a week is one user of that week

    # a leaderboard's search (any case, bound as a value) and the ranking by change
    page.fill("input[placeholder='search topic']", "CAF")
    page.press("input[placeholder='search topic']", "Enter")
    page.wait_for_function("() => location.search.includes('find_topic=CAF')", timeout=20_000)
    page.wait_for_function("() => document.querySelectorAll('.x-board')[0].querySelectorAll('tbody tr').length == 1",
                           timeout=20_000)
    assert [r["value"] for r in boards(page)["topic"]] == ["naïve café"]
    page.fill("input[placeholder='search topic']", "")
    page.press("input[placeholder='search topic']", "Enter")
    page.wait_for_function("() => !location.search.includes('find_topic')", timeout=20_000)
    page.click("#x-sort")
    page.get_by_role("option", name="the change in %", exact=True).click()
    page.wait_for_function("() => location.search.includes('sort=pct')", timeout=20_000)
    page.wait_for_function("() => document.querySelector('.x-board tbody tr').innerText.startsWith('news')",
                           timeout=20_000)  # the topic new this week moved most
    by_change = [abs(float(r["change"].rstrip("%"))) for r in boards(page)["topic"]]
    assert by_change == sorted(by_change, reverse=True)

    # a leaderboard row filters everything by its value (and the URL keeps it)
    page.locator(".x-board").first.locator("td[data-col=value]", has_text="sport").click()
    page.wait_for_function("() => location.search.includes('topic=sport')", timeout=20_000)
    wait_total(page, _in(df, FROM, TO, topic="sport").user_id.nunique())
    country = {r["value"]: int(r["measure"].replace(",", "")) for r in boards(page)["country"]}
    assert country == _in(df, FROM, TO, topic="sport").groupby("country").user_id.nunique().to_dict()


def test_a_pivot_counts_each_pair(served, page):
    base, df, _ = served
    q = urllib.parse.urlencode({"mart": "hourly", "measure": "users", "from": "2024-03-11", "to": "2024-03-25",
                                "rows": "topic", "cols": "country"})
    page.goto(f"{base}/explore/?{q}")
    page.wait_for_selector("#x-pivot-table td", timeout=20_000)
    table = page.evaluate("() => [...document.querySelectorAll('#x-pivot-table tr')].map(tr => "
                          "[...tr.children].map(c => c.innerText))")
    pairs = _in(df, FROM, TO).groupby(["topic", "country"]).user_id.nunique()
    head, rows = table[0], table[1:]
    assert head[1:] == sorted(df.country.unique())
    assert {r[0] for r in rows} == set(_in(df, FROM, TO).topic)
    for r in rows:
        assert [int(v) for v in r[1:]] == [pairs[(r[0], c)] for c in head[1:]]


def test_a_clicked_point_shows_the_events_behind_it(served, page):
    base, df, _ = served
    q = urllib.parse.urlencode({"mart": "hourly", "measure": "n", "from": "2024-03-18", "to": "2024-03-21",
                                "grain": "day", "country": "kz"})
    page.goto(f"{base}/explore/?{q}")
    sel = _in(df, datetime(2024, 3, 18), datetime(2024, 3, 21), country="kz")
    wait_total(page, len(sel))
    assert f"of {len(sel):,}" in page.inner_text("#x-page")
    click_point(page, "#x-series")
    page.wait_for_function("() => location.search.includes('drill_from')", timeout=20_000)
    qs = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    start = datetime.fromisoformat(qs["drill_from"][0])
    assert datetime.fromisoformat(qs["drill_to"][0]) == start + timedelta(days=1)
    day = _in(df, start, start + timedelta(days=1), country="kz").sort_values(["ts", "id"])
    page.wait_for_function("n => document.querySelector('#x-page').innerText.endsWith('of ' + n)",
                           arg=f"{len(day):,}", timeout=20_000)
    ids = page.evaluate("() => [...document.querySelectorAll('#x-events-table td[data-col=\"1\"]')]"
                        ".map(td => +td.innerText)")
    assert ids == list(day.id[:50])
    # the CSV of the events holds the same rows
    body = page.request.get(base + page.get_attribute("#x-events-csv", "href")).text()
    assert [int(line.split(",")[1]) for line in body.splitlines()[1:]] == list(day.id)


def test_a_dashboard_compares_and_its_point_opens_the_events(served, page):
    base, df, _ = served
    page.goto(f"{base}/d/main/?from=2024-03-11T00%3A00&to=2024-03-25T00%3A00&compare=week")
    page.wait_for_function("() => { const g = document.querySelector('#c-1 .js-plotly-plot');"
                           " return g && g.data && g.data.length == 2; }", timeout=20_000)
    now, then = _in(df, FROM, TO), _in(df, FROM - timedelta(days=7), TO - timedelta(days=7))
    kpi = series(page, "#c-0")[0]
    assert kpi["value"] == now.user_id.nunique() and kpi["delta"]["reference"] == then.user_id.nunique()
    dashed = next(t for t in series(page, "#c-1") if t["meta"] == "earlier")
    week_ago = then.assign(d=then.ts.dt.floor("D")).groupby("d").user_id.nunique()
    assert dashed["y"] == [week_ago[datetime.strptime(x, "%Y-%m-%d %H:%M") - timedelta(days=7)] for x in dashed["x"]]
    assert "compare=week" in page.url
    # the point of 2024-03-15, clicked: Plotly's click event as dcc.Graph hears it (a mouse click in the middle of
    # this page's chart did not hover in headless Chromium; the explore page's test clicks with the mouse)
    page.evaluate("""() => { const gd = document.querySelector('#c-1 .js-plotly-plot');
        const i = gd.data[0].x.indexOf('2024-03-15 00:00');
        gd.emit('plotly_click', {points: [{curveNumber: 0, pointNumber: i, x: gd.data[0].x[i], y: gd.data[0].y[i]}]}); }""")
    page.wait_for_url("**/explore/**", timeout=20_000)
    qs = urllib.parse.parse_qs(urllib.parse.urlparse(page.url).query)
    start = datetime.fromisoformat(qs["drill_from"][0])
    assert start == datetime(2024, 3, 15)
    day = _in(df, start, start + timedelta(days=1))
    page.wait_for_function("n => document.querySelector('#x-page') && "
                           "document.querySelector('#x-page').innerText.endsWith('of ' + n)",
                           arg=f"{len(day):,}", timeout=20_000)
    # a point of the dashed line: the events of the day it shows, a week earlier
    page.goto(f"{base}/d/main/?from=2024-03-11T00%3A00&to=2024-03-25T00%3A00&compare=week")
    page.wait_for_function("() => { const g = document.querySelector('#c-1 .js-plotly-plot');"
                           " return g && g.data && g.data.length == 2; }", timeout=20_000)
    page.evaluate("""() => { const gd = document.querySelector('#c-1 .js-plotly-plot');
        const i = gd.data[1].x.indexOf('2024-03-15 00:00');
        gd.emit('plotly_click', {points: [{curveNumber: 1, pointNumber: i, x: gd.data[1].x[i], y: gd.data[1].y[i]}]}); }""")
    page.wait_for_url("**/explore/**drill_from=2024-03-08**", timeout=20_000)
    week = _in(df, datetime(2024, 3, 8), datetime(2024, 3, 9))
    page.wait_for_function("n => document.querySelector('#x-page') && "
                           "document.querySelector('#x-page').innerText.endsWith('of ' + n)",
                           arg=f"{len(week):,}", timeout=20_000)


def test_an_incident_is_drawn_as_a_band(served, page):
    from eventmart.alerts.messages import explore_link
    from eventmart.config import AlertRule

    base, _, p = served
    rule = AlertRule(mart="hourly", measure="sum(n)", grain="1 hour")
    link = explore_link(p, rule, "topic=sport", datetime(2024, 3, 20, 5), datetime(2024, 3, 20, 7), base=base)
    page.goto(link)
    page.wait_for_function("() => { const g = document.querySelector('#x-series .js-plotly-plot');"
                           " return g && g.layout && g.layout.shapes && g.layout.shapes.length > 0; }",
                           timeout=20_000)
    shape = page.evaluate("() => document.querySelector('#x-series .js-plotly-plot').layout.shapes[0]")
    assert (shape["x0"], shape["x1"]) == ("2024-03-20 05:00", "2024-03-20 08:00")
    assert "topic=sport" in page.url and "measure=n" in page.url
