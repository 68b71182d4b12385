"""The read API on a real server on loopback: numbers equal pandas' on the raw events and the dashboard's own for
the same URL state; tokens are scoped and expire; nothing but names and bound values gets in; the OpenAPI document
is valid and every path it names answers; embed links open one dashboard through basic auth until they expire."""

from __future__ import annotations

import csv
import io
import threading
from datetime import datetime, timedelta

import httpx
import pytest
from werkzeug.serving import make_server

from eventmart import Project
from eventmart.server.web import create_server
from helpers import explore_events, explore_project

TOKEN_A, TOKEN_ALL, TOKEN_OLD = "a" * 24 + "-scoped", "b" * 24 + "-everything", "c" * 24 + "-expired"
SECRET = "s" * 32


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    d = tmp_path_factory.mktemp("api")
    df = explore_events(4000)
    explore_project(d, df, {
        "name": "api",
        "marts": {"hourly": {"from": "ev", "grain": "1 hour", "dimensions": ["topic", "country"],
                             "measures": {"n": "count()", "users": "count_distinct(user_id)", "s": "sum(v)"}},
                  "daily": {"from": "ev", "grain": "1 day", "dimensions": ["country"],
                            "measures": {"n": "count()"}}},
        "dashboards": {
            "main": {"title": "main", "filters": ["time", "topic", "country"], "compare": "week", "charts": {
                "users": {"type": "kpi", "mart": "hourly", "measure": "users"},
                "trend": {"type": "line", "mart": "hourly", "measure": "users", "grain": "1 day"},
                "topics": {"type": "bar", "mart": "hourly", "measure": "n", "dimension": "topic"}}},
            "other": {"title": "other", "charts": {"n": {"type": "kpi", "mart": "daily", "measure": "n"}}}},
        "api": {"tokens": {"analyst": {"token": "${T_A}", "dashboards": ["main"]},
                           "all": {"token": "${T_ALL}", "dashboards": ["*"], "marts": ["*"]},
                           "old": {"token": "${T_OLD}", "marts": ["*"], "expires": "2020-01-01T00:00:00"}},
                "embed_secret": "${EMBED}"}})
    mp = pytest.MonkeyPatch()
    for k, v in {"T_A": TOKEN_A, "T_ALL": TOKEN_ALL, "T_OLD": TOKEN_OLD, "EMBED": SECRET,
                 "EVENTMART_DASH_USER": "u", "EVENTMART_DASH_PASSWORD": "p" * 12}.items():
        mp.setenv(k, v)
    p = Project.load(d)
    p.ingest("ev")
    p.backfill()
    server = create_server(p)
    httpd = make_server("127.0.0.1", 0, server, threaded=True)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}", df, server, p
    httpd.shutdown()
    p.close()
    mp.undo()


def get(base: str, path: str, token: str | None = TOKEN_ALL, **params) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return httpx.get(base + path, params=params, headers=headers, timeout=30)


def test_tokens_are_required_scoped_and_expire(served):
    base, *_ = served
    assert get(base, "/api/v1/marts/hourly", None).status_code == 401
    assert get(base, "/api/v1/marts/hourly", "x" * 30).status_code == 401
    old = get(base, "/api/v1/marts/hourly", TOKEN_OLD)
    assert old.status_code == 401 and "expired" in old.json()["error"]
    # the analyst's token reads its dashboard's charts and the mart they read, nothing else
    assert get(base, "/api/v1/dashboards/main/charts/users", TOKEN_A).status_code == 200
    assert get(base, "/api/v1/marts/hourly", TOKEN_A).status_code == 200
    assert get(base, "/api/v1/marts/daily", TOKEN_A).status_code == 403
    assert get(base, "/api/v1/dashboards/other/charts/n", TOKEN_A).status_code == 403
    assert [m["mart"] for m in get(base, "/api/v1/marts", TOKEN_A).json()["marts"]] == ["hourly"]
    # basic auth does not stand in front of the API's own tokens, nor does a password open it
    assert httpx.get(base + "/api/v1/marts/hourly", auth=("u", "p" * 12)).status_code == 401


def test_mart_rows_equal_pandas_on_the_raw_events(served):
    base, df, *_ = served
    start, end = datetime(2024, 3, 4), datetime(2024, 3, 18)
    r = get(base, "/api/v1/marts/hourly", measures="users,n", group="country", grain="week",
            **{"from": "2024-03-04", "to": "2024-03-18", "topic": ["sport", "Кино"]})
    body = r.json()
    assert r.status_code == 200 and body["columns"] == ["bucket", "country", "users", "n"]
    sel = df[(df.ts >= start) & (df.ts < end) & df.topic.isin(["sport", "Кино"])]
    truth = sel.assign(w=sel.ts.dt.to_period("W-SUN").dt.start_time).groupby(["w", "country"]).agg(
        users=("user_id", "nunique"), n=("id", "size"))
    got = {(datetime.fromisoformat(b), c): (u, n) for b, c, u, n in body["rows"]}
    assert got == {(w.to_pydatetime(), c): (int(u), int(n)) for (w, c), (u, n) in truth.iterrows()}
    # pages: the same rows, a page at a time; CSV holds what JSON holds
    first = get(base, "/api/v1/marts/hourly", measures="n", group="topic,country", limit=5).json()
    second = get(base, "/api/v1/marts/hourly", measures="n", group="topic,country", limit=5,
                 offset=first["next_offset"]).json()
    whole = get(base, "/api/v1/marts/hourly", measures="n", group="topic,country").json()
    assert first["rows"] + second["rows"] == whole["rows"][:10] and whole["next_offset"] is None
    text = get(base, "/api/v1/marts/hourly", measures="n", group="topic,country", format="csv").text
    rows = list(csv.reader(io.StringIO(text)))
    assert rows[0] == whole["columns"] and [[str(x) for x in r] for r in whole["rows"]] == rows[1:]
    # a leaderboard and the events behind it
    lb = get(base, "/api/v1/marts/hourly/leaderboard/topic", measure="users", compare="week",
             **{"from": "2024-03-11", "to": "2024-03-18"}).json()
    now = df[(df.ts >= datetime(2024, 3, 11)) & (df.ts < datetime(2024, 3, 18))]
    then = df[(df.ts >= datetime(2024, 3, 4)) & (df.ts < datetime(2024, 3, 11))]
    assert {r[0]: (r[1], r[3]) for r in lb["rows"]} == {
        t: (now[now.topic == t].user_id.nunique(), then[then.topic == t].user_id.nunique())
        for t in now.topic.unique()}
    ev = get(base, "/api/v1/marts/hourly/events", limit=1000, country="by",
             **{"from": "2024-03-11", "to": "2024-03-12"}).json()
    assert ev["total"] == len(now[(now.country == "by") & (now.ts < datetime(2024, 3, 12))])
    assert [r[ev["columns"].index("id")] for r in ev["rows"]] == list(
        now[(now.country == "by") & (now.ts < datetime(2024, 3, 12))].sort_values(["ts", "id"]).id)


def test_a_chart_answers_what_the_dashboard_draws(served):
    base, df, server, _ = served
    app = server.config["eventmart_apps"]["main"]
    q = "from=2024-03-18T00%3A00&to=2024-03-25T00%3A00&country=ru"
    body = httpx.get(f"{base}/api/v1/dashboards/main/charts/users?{q}",
                     headers={"Authorization": f"Bearer {TOKEN_A}"}).json()
    # the dashboard compares with a week earlier by default: value, earlier value, change, change in percent
    assert body["columns"] == ["value", "compare_value", "change", "change_pct"]
    sel = df[df.country == "ru"]
    now = sel[(sel.ts >= datetime(2024, 3, 18)) & (sel.ts < datetime(2024, 3, 25))].user_id.nunique()
    then = sel[(sel.ts >= datetime(2024, 3, 11)) & (sel.ts < datetime(2024, 3, 18))].user_id.nunique()
    assert body["rows"] == [[now, then, now - then, pytest.approx((now - then) / then * 100)]]
    from eventmart.dashboards.query import State

    st = State.from_query(q, app.dims)
    fig = app.figure("users", st, app.q.window(st), app.q.version())
    assert fig["data"][0]["value"] == now and fig["data"][0]["delta"]["reference"] == then
    # the series: each day's users and the users of the same day a week earlier, as the dashed line draws them
    series = httpx.get(f"{base}/api/v1/dashboards/main/charts/trend?{q}&compare=week",
                       headers={"Authorization": f"Bearer {TOKEN_A}"}).json()
    fig = app.figure("trend", st, app.q.window(st), app.q.version())
    dashed = next(t for t in fig["data"] if t.get("meta") == "earlier")
    for (bucket, value, earlier), x, y in zip(series["rows"], fig["data"][0]["x"], dashed["y"], strict=True):
        day = datetime.fromisoformat(bucket)
        assert x == day.strftime("%Y-%m-%d %H:%M") and y == earlier
        assert value == sel[(sel.ts >= day) & (sel.ts < day + timedelta(days=1))].user_id.nunique()
        assert earlier == sel[(sel.ts >= day - timedelta(days=7)) & (sel.ts < day - timedelta(days=6))] \
            .user_id.nunique()
    # the chart's CSV route (basic auth) holds the same rows
    text = httpx.get(f"{base}/d/main/csv/users?{q}", auth=("u", "p" * 12)).text
    assert list(csv.reader(io.StringIO(text)))[1][:2] == [str(now), str(then)]


@pytest.mark.parametrize("bad", [{"measures": "sum(n)"}, {"measures": "n); DROP TABLE ev; --"},
                                 {"group": "topic' OR '1'='1"}, {"grain": "minute"}, {"grain": "1; --"},
                                 {"nosuch": "1"}, {"limit": "-1"}, {"format": "xml"}, {"from": "yesterday-ish"}])
def test_nothing_but_names_and_values_gets_in(served, bad):
    base, *_ = served
    r = get(base, "/api/v1/marts/hourly", **bad)
    assert r.status_code == 400 and r.json()["error"]


def test_a_value_is_only_a_value(served):
    base, *_ = served
    body = get(base, "/api/v1/marts/hourly", measures="n", topic="x' OR '1'='1").json()
    assert body["rows"] == [[None]] or body["rows"] == [[0]]


def test_the_openapi_document_is_valid_and_every_path_answers(served):
    from openapi_spec_validator import validate

    base, *_ = served
    assert httpx.get(base + "/api/v1/openapi.json").status_code == 401
    doc = get(base, "/api/v1/openapi.json", TOKEN_A).json()
    validate(doc)
    for path, item in doc["paths"].items():
        concrete = path
        for param in item["get"].get("parameters", []):
            if param["in"] == "path":  # the first value the document allows
                concrete = concrete.replace("{" + param["name"] + "}", param["schema"]["enum"][0])
        assert get(base, concrete).status_code == 200, path


def test_an_embed_link_opens_one_dashboard_until_it_expires(served, tmp_path):
    base, _, _, p = served
    from eventmart.server.readapi import embed_token

    assert httpx.get(base + "/d/main/").status_code == 401  # basic auth is on
    token = embed_token(p.config, "main", timedelta(minutes=5))
    with httpx.Client(base_url=base) as c:
        r = c.get("/embed/main/", params={"t": token, "country": "ru"})
        assert r.status_code == 302 and r.headers["location"] == "/d/main/?country=ru"
        assert c.get("/d/main/").status_code == 200
        layout = c.get("/d/main/_dash-layout")
        assert layout.status_code == 200
        # inside the embed the explore page is out of reach (basic auth): the charts offer no events link
        assert "ev-0" in layout.text and '"display":"none"' in layout.text.replace(" ", "")
        assert c.get("/d/other/").status_code == 401  # the cookie opens its own dashboard only
        assert c.get("/runs/").status_code == 401
    with_password = httpx.get(base + "/d/main/_dash-layout", auth=("u", "p" * 12)).text
    assert "ev-0" in with_password and '"display":"none"' not in with_password.replace(" ", "")
    assert httpx.get(base + "/embed/other/", params={"t": token}).status_code == 403
    assert httpx.get(base + "/embed/main/", params={"t": token[:-2] + "xx"}).status_code == 403
    expired = embed_token(p.config, "main", timedelta(seconds=-1))
    assert httpx.get(base + "/embed/main/", params={"t": expired}).status_code == 403
    with httpx.Client(base_url=base, cookies={"eventmart_embed": expired}) as c:
        assert c.get("/d/main/").status_code == 401


def test_a_series_chart_at_a_chosen_grain_and_paged(served):
    base, df, *_ = served
    q = {"from": "2024-03-04T00:00", "to": "2024-04-01T00:00", "grain": "week"}
    body = get(base, "/api/v1/dashboards/main/charts/trend", TOKEN_A, **q).json()
    weeks = {datetime.fromisoformat(b): v for b, v, *_ in body["rows"]}
    start = datetime(2024, 3, 4)
    assert list(weeks) == [start + timedelta(weeks=i) for i in range(4)]
    for w, users in weeks.items():  # distinct users per week, recounted (the chart draws per day by itself)
        assert users == df[(df.ts >= w) & (df.ts < w + timedelta(weeks=1))].user_id.nunique()
    # a finer grain than the chart's own 1 day is refused; a KPI has no grain
    assert get(base, "/api/v1/dashboards/main/charts/trend", TOKEN_A, grain="hour").status_code == 400
    assert get(base, "/api/v1/dashboards/main/charts/users", TOKEN_A, grain="day").status_code == 400
    first = get(base, "/api/v1/dashboards/main/charts/trend", TOKEN_A, limit=2, **{k: v for k, v in q.items()}).json()
    assert first["rows"] == body["rows"][:2] and first["next_offset"] == 2
